"""StopReplica (key 5), versions 0-4: the controller tells a broker to stop hosting
partitions, and to delete their logs when `delete_partition` (v3+, before: the request-wide
`delete_partitions`) is set; Strom's controller sends it for deleted topics.

Cluster mode only; fencing as LeaderAndIsr, and a partition is only removed once ZooKeeper
confirms this broker no longer hosts it (see `strom.runtime.controller_requests`). A refused
request answers the top-level error and the same code for every partition, as Kafka. A single
broker answers CLUSTER_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.stop_replica_request import StopReplicaRequest
from strom.protocol.messages.stop_replica_response import (
    StopReplicaPartitionError,
    StopReplicaResponse,
)
from strom.security.acl import AclOperation
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles

FIRST_BROKER_EPOCH_VERSION = 1


def _partitions(request: StopReplicaRequest, version: int) -> list[tuple[str, int]]:
    if version == 0:
        return [(p.topic_name, p.partition_index) for p in request.ungrouped_partitions]
    if version <= 2:
        return [(t.name, p) for t in request.topics for p in t.partition_indexes]
    return [
        (t.topic_name, p.partition_index) for t in request.topic_states for p in t.partition_states
    ]


def _response(
    request: StopReplicaRequest,
    version: int,
    top: ErrorCode,
    codes: Mapping[tuple[str, int], ErrorCode],
) -> StopReplicaResponse:
    return StopReplicaResponse(
        error_code=top,
        partition_errors=[
            StopReplicaPartitionError(t, p, int(codes.get((t, p), top)))
            for t, p in _partitions(request, version)
        ],
    )


@handles(5, 0, 4)
def handle_stop_replica(
    ctx: RequestContext, request: StopReplicaRequest
) -> StopReplicaResponse | Awaitable[StopReplicaResponse]:
    version = ctx.api_version
    runtime = ctx.broker.cluster
    if runtime is None or not authorize_cluster(ctx, AclOperation.CLUSTER_ACTION):
        return _response(request, version, ErrorCode.CLUSTER_AUTHORIZATION_FAILED, {})

    async def run() -> StopReplicaResponse:
        broker_epoch = request.broker_epoch if version >= FIRST_BROKER_EPOCH_VERSION else -1
        refused = await runtime.control.check(
            ctx.listener, ctx.peer, request.controller_id, request.controller_epoch, broker_epoch
        )
        if refused != ErrorCode.NONE:
            return _response(request, version, refused, {})
        codes = await runtime.control.stop_replicas(ctx.listener, request, version)
        return _response(request, version, ErrorCode.NONE, codes)

    return run()
