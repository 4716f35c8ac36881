"""ConsumerGroupHeartbeat (key 68), versions 0-1: the KIP-848 consumer group protocol.

One request both joins and heartbeats; the shard's server-side assignor (uniform or range)
computes the target assignment and the member reconciles towards it epoch by epoch. With the
finalized `group.version` below 1 the protocol is off: UNSUPPORTED_VERSION, as Kafka 4.x.
"""

from __future__ import annotations

from collections.abc import Awaitable

from strom.cluster.features import consumer_protocol_enabled
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.consumer_group_heartbeat_request import ConsumerGroupHeartbeatRequest
from strom.protocol.messages.consumer_group_heartbeat_response import (
    ConsumerGroupHeartbeatResponse,
)
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize
from strom.server.context import RequestContext
from strom.server.handlers.classic_group import client_host
from strom.server.registry import handles


@handles(68, 0, 1)
def handle_consumer_group_heartbeat(
    ctx: RequestContext, request: ConsumerGroupHeartbeatRequest
) -> ConsumerGroupHeartbeatResponse | Awaitable[ConsumerGroupHeartbeatResponse]:
    if not consumer_protocol_enabled(ctx.broker.metadata.finalized_features):
        return ConsumerGroupHeartbeatResponse(error_code=ErrorCode.UNSUPPORTED_VERSION)
    version = ctx.api_version
    if not authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        return ConsumerGroupHeartbeatResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    return ctx.broker.groups.run(
        request.group_id,
        lambda shard: shard.consumer_group_heartbeat(
            request, version, ctx.client_id or "", client_host(ctx)
        ),
        lambda code: ConsumerGroupHeartbeatResponse(error_code=code),
    )
