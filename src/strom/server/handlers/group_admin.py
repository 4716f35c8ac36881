"""Group administration: DescribeGroups (15) v0-5, ListGroups (16) v0-5, DeleteGroups (42)
v0-2, ConsumerGroupDescribe (69) v0.

ListGroups asks every coordinator shard; the others go to the shard of each named group.
Authorization as Kafka's: a described group needs DESCRIBE (GROUP_AUTHORIZATION_FAILED), a
deleted one DELETE; ListGroups lists every group to a principal that may DESCRIBE the cluster,
else the groups it may DESCRIBE. `include_authorized_operations` (DescribeGroups v3+,
ConsumerGroupDescribe) reports the operations the principal may perform on each group found.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from strom.cluster.features import consumer_protocol_enabled
from strom.coordinator.group.records import CoordinatorRecord
from strom.coordinator.group.shard import GroupCoordinatorShard
from strom.coordinator.share.coordinator import Outcome
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.consumer_group_describe_request import ConsumerGroupDescribeRequest
from strom.protocol.messages.consumer_group_describe_response import (
    ConsumerGroupDescribeResponse,
)
from strom.protocol.messages.consumer_group_describe_response import (
    DescribedGroup as ConsumerDescribedGroup,
)
from strom.protocol.messages.delete_groups_request import DeleteGroupsRequest
from strom.protocol.messages.delete_groups_response import (
    DeletableGroupResult,
    DeleteGroupsResponse,
)
from strom.protocol.messages.describe_groups_request import DescribeGroupsRequest
from strom.protocol.messages.describe_groups_response import DescribedGroup, DescribeGroupsResponse
from strom.protocol.messages.list_groups_request import ListGroupsRequest
from strom.protocol.messages.list_groups_response import ListedGroup, ListGroupsResponse
from strom.runtime.coordinator_runtime import gather, then
from strom.runtime.errors import ApiError
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import (
    AUTHORIZED_OPERATIONS_OMITTED,
    authorize,
    authorize_cluster,
    authorized_names,
    authorized_operations,
)
from strom.server.context import RequestContext
from strom.server.registry import handles

# Share-state deletions still waiting for their commit (kept referenced until done).
_DELETIONS: set[asyncio.Future[Outcome]] = set()


@handles(15, 0, 5)
def handle_describe_groups(
    ctx: RequestContext, request: DescribeGroupsRequest
) -> DescribeGroupsResponse:
    described: list[DescribedGroup] = []
    for group_id in request.groups:
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
        described.extend(shard.describe_groups([group_id], ctx.api_version))
    wanted = ctx.api_version >= 3 and request.include_authorized_operations
    for group in described:
        group.authorized_operations = (
            authorized_operations(ctx, ResourceType.GROUP, group.group_id)
            if wanted and group.error_code == ErrorCode.NONE
            else AUTHORIZED_OPERATIONS_OMITTED
        )
    return DescribeGroupsResponse(groups=described)


@handles(16, 0, 5)
def handle_list_groups(ctx: RequestContext, request: ListGroupsRequest) -> ListGroupsResponse:
    listed: list[ListedGroup] = []
    for _, shard in sorted(ctx.broker.groups.shards.items()):
        listed.extend(shard.list_groups(list(request.states_filter), list(request.types_filter)))
    if not authorize_cluster(ctx, AclOperation.DESCRIBE, log_denied=False):
        visible = authorized_names(
            ctx,
            AclOperation.DESCRIBE,
            ResourceType.GROUP,
            (g.group_id for g in listed),
            log_denied=False,
        )
        listed = [g for g in listed if g.group_id in visible]
    return ListGroupsResponse(error_code=ErrorCode.NONE, groups=listed)


def _deleter(
    group_id: str,
) -> Callable[[GroupCoordinatorShard], tuple[list[tuple[str, int]], list[CoordinatorRecord]]]:
    return lambda shard: shard.delete_groups([group_id])


def _failed(group_id: str) -> Callable[[ErrorCode], list[tuple[str, int]]]:
    return lambda code: [(group_id, code)]


@handles(42, 0, 2)
def handle_delete_groups(
    ctx: RequestContext, request: DeleteGroupsRequest
) -> DeleteGroupsResponse | Awaitable[DeleteGroupsResponse]:
    names = list(dict.fromkeys(request.groups_names))
    allowed = authorized_names(ctx, AclOperation.DELETE, ResourceType.GROUP, names)
    share_states = {
        g: known for g in names if g in allowed and (known := _share_partitions(ctx, g)) is not None
    }
    outcomes: list[list[tuple[str, int]] | Awaitable[list[tuple[str, int]]]] = [
        ctx.broker.groups.run(group_id, _deleter(group_id), _failed(group_id))
        if group_id in allowed
        else [(group_id, ErrorCode.GROUP_AUTHORIZATION_FAILED)]
        for group_id in names
    ]

    def answer(done: list[list[tuple[str, int]]]) -> DeleteGroupsResponse:
        results = [(g, code) for outcome in done for g, code in outcome]
        for g, code in results:
            if code == ErrorCode.NONE and g in share_states:
                _delete_share_state(ctx, g, share_states[g])
        return DeleteGroupsResponse(
            results=[DeletableGroupResult(group_id=g, error_code=code) for g, code in results]
        )

    return then(gather(outcomes), answer)


def _share_partitions(ctx: RequestContext, group_id: str) -> dict[uuid.UUID, frozenset[int]] | None:
    """The partitions with share state of a share group (None: not a share group here)."""
    try:
        _, shard = ctx.broker.groups.shard_for(group_id)
    except ApiError:
        return None
    state = shard.share_group_state_partitions(group_id)
    return state.known() if state is not None else None


def _delete_share_state(
    ctx: RequestContext, group_id: str, partitions: dict[uuid.UUID, frozenset[int]]
) -> None:
    """A deleted share group's share-partition states go too (DeleteShareGroupState to their
    share coordinators: tombstones in `__share_group_state`), as in Kafka; the group's answer
    does not wait for them."""
    for topic_id, parts in partitions.items():
        found = ctx.broker.metadata.topic_by_id(topic_id)
        for partition in sorted(parts):
            if found is not None:
                ctx.broker.shares.store.drop((group_id, found.name, partition))
            deleted = ctx.broker.share_persister.delete((group_id, topic_id, partition))
            if isinstance(deleted, Awaitable):
                task = asyncio.ensure_future(deleted)
                _DELETIONS.add(task)
                task.add_done_callback(_DELETIONS.discard)


@handles(69, 0, 0)
def handle_consumer_group_describe(
    ctx: RequestContext, request: ConsumerGroupDescribeRequest
) -> ConsumerGroupDescribeResponse:
    if not consumer_protocol_enabled(ctx.broker.metadata.finalized_features):
        # group.version below 1: every group answers UNSUPPORTED_VERSION, as Kafka 4.x.
        return ConsumerGroupDescribeResponse(
            groups=[
                ConsumerDescribedGroup(error_code=ErrorCode.UNSUPPORTED_VERSION, group_id=g)
                for g in request.group_ids
            ]
        )
    described: list[ConsumerDescribedGroup] = []
    for group_id in request.group_ids:
        if not authorize(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
            described.append(
                ConsumerDescribedGroup(
                    error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, group_id=group_id
                )
            )
            continue
        try:
            _, shard = ctx.broker.groups.shard_for(group_id)
        except ApiError as exc:
            described.append(ConsumerDescribedGroup(error_code=exc.code, group_id=group_id))
            continue
        described.extend(shard.consumer_group_describe([group_id], ctx.api_version))
    for group in described:
        group.authorized_operations = (
            authorized_operations(ctx, ResourceType.GROUP, group.group_id)
            if request.include_authorized_operations and group.error_code == ErrorCode.NONE
            else AUTHORIZED_OPERATIONS_OMITTED
        )
    return ConsumerGroupDescribeResponse(groups=described)
