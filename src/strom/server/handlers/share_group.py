"""ShareGroupHeartbeat (76) v1 and ShareGroupDescribe (77) v1: share group membership (KIP-932).

Both go to the group coordinator of the group id (FindCoordinator key type 0, as for every
group), which keeps share groups in `__consumer_offsets` with Kafka's share-group records. A
heartbeat that subscribes the group to partitions without share state starts their
initialization (`ShareStateInitializer`); members are assigned them at a later heartbeat.
Version 0 (Kafka 3.9's early access, with a server-generated member id) is not served. With
the finalized `share.version` below 1 share groups are off: UNSUPPORTED_VERSION (per group for
describe), as Kafka 4.2.
ShareGroupHeartbeat needs READ on the group, ShareGroupDescribe DESCRIBE
(GROUP_AUTHORIZATION_FAILED), as Kafka's; the latter reports the authorized operations asked for.
"""

from __future__ import annotations

from collections.abc import Awaitable

from strom.cluster.features import share_groups_enabled
from strom.coordinator.share.heartbeat import HeartbeatResult
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.share_group_describe_request import ShareGroupDescribeRequest
from strom.protocol.messages.share_group_describe_response import (
    DescribedGroup,
    ShareGroupDescribeResponse,
)
from strom.protocol.messages.share_group_heartbeat_request import ShareGroupHeartbeatRequest
from strom.protocol.messages.share_group_heartbeat_response import ShareGroupHeartbeatResponse
from strom.runtime.coordinator_runtime import then
from strom.runtime.errors import ApiError
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import AUTHORIZED_OPERATIONS_OMITTED, authorize, authorized_operations
from strom.server.context import RequestContext
from strom.server.handlers.classic_group import client_host
from strom.server.registry import handles


@handles(76, 1, 1)
def handle_share_group_heartbeat(
    ctx: RequestContext, request: ShareGroupHeartbeatRequest
) -> ShareGroupHeartbeatResponse | Awaitable[ShareGroupHeartbeatResponse]:
    if not share_groups_enabled(ctx.broker.metadata.finalized_features):
        return ShareGroupHeartbeatResponse(error_code=ErrorCode.UNSUPPORTED_VERSION)
    if not authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        return ShareGroupHeartbeatResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    if request.member_epoch == -1 and request.member_id:
        # Leaving: what the member still holds goes back to the others at once.
        ctx.broker.shares.release_member(request.group_id, request.member_id)
    answer = ctx.broker.groups.run(
        request.group_id,
        lambda shard: shard.share_group_heartbeat(request, ctx.client_id or "", client_host(ctx)),
        lambda code: (ShareGroupHeartbeatResponse(error_code=code), None),
    )

    def started(result: HeartbeatResult) -> ShareGroupHeartbeatResponse:
        response, initialization = result
        # Share state for newly subscribed partitions: asked for once the heartbeat's records
        # are committed, without holding its answer (the partitions come in a later one).
        ctx.broker.share_initializer.start(initialization)
        return response

    return then(answer, started)


@handles(77, 1, 1)
def handle_share_group_describe(
    ctx: RequestContext, request: ShareGroupDescribeRequest
) -> ShareGroupDescribeResponse:
    if not share_groups_enabled(ctx.broker.metadata.finalized_features):
        return ShareGroupDescribeResponse(
            groups=[
                DescribedGroup(error_code=ErrorCode.UNSUPPORTED_VERSION, group_id=g)
                for g in request.group_ids
            ]
        )
    described: list[DescribedGroup] = []
    for group_id in request.group_ids:
        if not authorize(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
            described.append(
                DescribedGroup(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, group_id=group_id)
            )
            continue
        try:
            _, shard = ctx.broker.groups.shard_for(group_id)
        except ApiError as exc:
            described.append(DescribedGroup(error_code=exc.code, group_id=group_id))
            continue
        described.extend(shard.share_group_describe([group_id]))
    for group in described:
        group.authorized_operations = (
            authorized_operations(ctx, ResourceType.GROUP, group.group_id)
            if request.include_authorized_operations and group.error_code == ErrorCode.NONE
            else AUTHORIZED_OPERATIONS_OMITTED
        )
    return ShareGroupDescribeResponse(groups=described)
