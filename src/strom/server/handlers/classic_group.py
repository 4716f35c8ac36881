"""The classic group protocol: JoinGroup (11) v0-9, SyncGroup (14) v0-5, Heartbeat (12) v0-4,
LeaveGroup (13) v0-5.

The coordinator shard decides everything (see strom.coordinator.group); these handlers only
route a request to the shard of its group, persist what the shard returns, and answer. A
JoinGroup or SyncGroup that must wait for the other members parks as a future that the shard
completes (from another member's request or a timer). In cluster mode an answer goes out once
what the shard wrote is replicated to the ISR (`CoordinatorRuntime.run`). JoinGroup v0 has no
rebalance timeout: the session timeout serves as both, as in Kafka. Each needs READ on the group
(GROUP_AUTHORIZATION_FAILED), checked before the coordinator is asked.
"""

from __future__ import annotations

from collections.abc import Awaitable

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.heartbeat_request import HeartbeatRequest
from strom.protocol.messages.heartbeat_response import HeartbeatResponse
from strom.protocol.messages.join_group_request import JoinGroupRequest
from strom.protocol.messages.join_group_response import JoinGroupResponse
from strom.protocol.messages.leave_group_request import LeaveGroupRequest
from strom.protocol.messages.leave_group_response import LeaveGroupResponse
from strom.protocol.messages.sync_group_request import SyncGroupRequest
from strom.protocol.messages.sync_group_response import SyncGroupResponse
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize
from strom.server.context import RequestContext
from strom.server.registry import handles


def client_host(ctx: RequestContext) -> str:
    """The client's address as Kafka reports it (InetAddress.toString: "/127.0.0.1")."""
    return "/" + ctx.peer.rsplit(":", 1)[0]


@handles(11, 0, 9)
def handle_join_group(
    ctx: RequestContext, request: JoinGroupRequest
) -> JoinGroupResponse | Awaitable[JoinGroupResponse]:
    version = ctx.api_version

    def failed(code: ErrorCode) -> JoinGroupResponse:
        return JoinGroupResponse(error_code=code, generation_id=-1, member_id=request.member_id)

    if not authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        return failed(ErrorCode.GROUP_AUTHORIZATION_FAILED)
    return ctx.broker.groups.run_waiting(
        request.group_id,
        lambda shard, respond: shard.join_group(
            request, version, ctx.client_id or "", client_host(ctx), respond
        ),
        failed,
    )


@handles(14, 0, 5)
def handle_sync_group(
    ctx: RequestContext, request: SyncGroupRequest
) -> SyncGroupResponse | Awaitable[SyncGroupResponse]:
    version = ctx.api_version
    if not authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        return SyncGroupResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    return ctx.broker.groups.run_waiting(
        request.group_id,
        lambda shard, respond: shard.sync_group(request, version, respond),
        lambda code: SyncGroupResponse(error_code=code),
    )


@handles(12, 0, 4)
def handle_heartbeat(
    ctx: RequestContext, request: HeartbeatRequest
) -> HeartbeatResponse | Awaitable[HeartbeatResponse]:
    version = ctx.api_version
    if not authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        return HeartbeatResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    return ctx.broker.groups.run(
        request.group_id,
        lambda shard: shard.heartbeat(request, version),
        lambda code: HeartbeatResponse(error_code=code),
    )


@handles(13, 0, 5)
def handle_leave_group(
    ctx: RequestContext, request: LeaveGroupRequest
) -> LeaveGroupResponse | Awaitable[LeaveGroupResponse]:
    version = ctx.api_version
    if not authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        return LeaveGroupResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    return ctx.broker.groups.run(
        request.group_id,
        lambda shard: shard.leave_group(request, version),
        lambda code: LeaveGroupResponse(error_code=code),
    )
