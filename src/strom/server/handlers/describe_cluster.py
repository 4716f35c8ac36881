"""DescribeCluster (key 60), versions 0-1: cluster id, controller and the brokers.

A single broker is its own controller, so `controller_id` is this broker's id and the broker
list has one entry; in cluster mode they are the live brokers and the elected controller. Only the broker endpoint type (1) is served: asking a broker for the
controller endpoints (2) answers MISMATCHED_ENDPOINT_TYPE, any other type
UNSUPPORTED_ENDPOINT_TYPE. include_cluster_authorized_operations reports what the principal may
do to the cluster (0 without DESCRIBE on it, as Kafka answers).
"""

from __future__ import annotations

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.describe_cluster_request import DescribeClusterRequest
from strom.protocol.messages.describe_cluster_response import (
    DescribeClusterBroker,
    DescribeClusterResponse,
)
from strom.security.acl import CLUSTER_NAME, AclOperation, ResourceType
from strom.server.authz import (
    AUTHORIZED_OPERATIONS_OMITTED,
    authorize_cluster,
    authorized_operations,
)
from strom.server.context import RequestContext
from strom.server.registry import handles

BROKER_ENDPOINTS = 1
CONTROLLER_ENDPOINTS = 2


@handles(60, 0, 1)
def handle_describe_cluster(
    ctx: RequestContext, request: DescribeClusterRequest
) -> DescribeClusterResponse:
    broker = ctx.broker
    endpoint_type = request.endpoint_type if ctx.api_version >= 1 else BROKER_ENDPOINTS
    response = DescribeClusterResponse(
        endpoint_type=endpoint_type,
        cluster_id=broker.metadata.cluster_id,
        controller_id=broker.controller_id(),
        brokers=[],
        cluster_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
    )
    if endpoint_type != BROKER_ENDPOINTS:
        if endpoint_type == CONTROLLER_ENDPOINTS:
            response.error_code = ErrorCode.MISMATCHED_ENDPOINT_TYPE
            response.error_message = (
                "This is a broker endpoint; it does not describe controller endpoints."
            )
        else:
            response.error_code = ErrorCode.UNSUPPORTED_ENDPOINT_TYPE
            response.error_message = f"Unknown endpoint type {endpoint_type}."
        response.controller_id = -1
        return response
    # The endpoints of the listener the request came in on, as Kafka answers.
    nodes = (
        broker.cluster.nodes(ctx.listener)
        if broker.cluster is not None
        else [broker.node_for(ctx.listener)]
    )
    response.brokers = [
        DescribeClusterBroker(
            broker_id=node.node_id, host=node.host, port=node.port, rack=node.rack
        )
        for node in nodes
    ]
    if request.include_cluster_authorized_operations:
        response.cluster_authorized_operations = (
            authorized_operations(ctx, ResourceType.CLUSTER, CLUSTER_NAME)
            if authorize_cluster(ctx, AclOperation.DESCRIBE)
            else 0
        )
    return response
