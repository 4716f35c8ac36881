"""ListGroups, DescribeGroups, ConsumerGroupDescribe and DeleteGroups."""

from __future__ import annotations

from strom.coordinator.group.classic_group import ClassicGroup, ClassicState
from strom.coordinator.group.consumer_group import Assignment, ConsumerGroup
from strom.coordinator.group.context import ShardContext
from strom.coordinator.group.offsets import Offsets
from strom.coordinator.group.records import CoordinatorRecord, group_metadata_tombstone
from strom.coordinator.share.group import ShareGroup
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.consumer_group_describe_response import (
    Assignment as DescribedAssignment,
)
from strom.protocol.messages.consumer_group_describe_response import (
    DescribedGroup as ConsumerDescribedGroup,
)
from strom.protocol.messages.consumer_group_describe_response import (
    Member as DescribedMember,
)
from strom.protocol.messages.consumer_group_describe_response import (
    TopicPartitions as DescribedTopicPartitions,
)
from strom.protocol.messages.describe_groups_response import (
    DescribedGroup,
    DescribedGroupMember,
)
from strom.protocol.messages.list_groups_response import ListedGroup

CLASSIC_TYPE = "classic"
CONSUMER_TYPE = "consumer"
SHARE_TYPE = "share"


def list_groups(
    ctx: ShardContext, states_filter: list[str], types_filter: list[str]
) -> list[ListedGroup]:
    """Groups of this shard; filters match case-insensitively, an empty filter matches all."""
    states = {s.strip().lower() for s in states_filter}
    types = {t.strip().lower() for t in types_filter}
    listed: list[ListedGroup] = []
    for group in ctx.groups.values():
        if isinstance(group, ClassicGroup):
            state, group_type, protocol_type = (
                group.state.value,
                CLASSIC_TYPE,
                group.protocol_type or "",
            )
        elif isinstance(group, ShareGroup):
            state, group_type, protocol_type = group.state.value, SHARE_TYPE, SHARE_TYPE
        else:
            state, group_type, protocol_type = group.state.value, CONSUMER_TYPE, "consumer"
        if state == ClassicState.DEAD.value:
            continue
        if states and state.lower() not in states:
            continue
        if types and group_type not in types:
            continue
        listed.append(ListedGroup(group.group_id, protocol_type, state, group_type))
    return listed


def describe_groups(ctx: ShardContext, group_ids: list[str]) -> list[DescribedGroup]:
    """DescribeGroups answers for classic groups; an unknown (or consumer-protocol) group
    is reported as Dead, as Kafka does."""
    described: list[DescribedGroup] = []
    for group_id in group_ids:
        if not group_id:
            described.append(
                DescribedGroup(error_code=ErrorCode.INVALID_GROUP_ID, group_id=group_id)
            )
            continue
        group = ctx.groups.get(group_id)
        if not isinstance(group, ClassicGroup):
            described.append(DescribedGroup(group_id=group_id, group_state=ClassicState.DEAD.value))
            continue
        # Metadata and assignments are only meaningful once the generation is settled.
        stable = group.is_in(ClassicState.STABLE)
        members = [
            DescribedGroupMember(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                member_metadata=m.metadata(group.protocol_name) if stable else b"",
                member_assignment=m.assignment if stable else b"",
            )
            for m in group.members.values()
        ]
        described.append(
            DescribedGroup(
                group_id=group_id,
                group_state=group.state.value,
                protocol_type=group.protocol_type or "",
                protocol_data=(group.protocol_name or "") if stable else "",
                members=members,
            )
        )
    return described


def _describe_assignment(group: ConsumerGroup, assignment: Assignment) -> DescribedAssignment:
    return DescribedAssignment(
        [
            DescribedTopicPartitions(tid, group.topic_name(tid) or "", sorted(parts))
            for tid, parts in sorted(assignment.items())
        ]
    )


def consumer_group_describe(
    ctx: ShardContext, group_ids: list[str], default_assignor: str
) -> list[ConsumerDescribedGroup]:
    described: list[ConsumerDescribedGroup] = []
    for group_id in group_ids:
        group = ctx.groups.get(group_id)
        if not isinstance(group, ConsumerGroup):
            described.append(
                ConsumerDescribedGroup(error_code=ErrorCode.GROUP_ID_NOT_FOUND, group_id=group_id)
            )
            continue
        members = [
            DescribedMember(
                member_id=m.member_id,
                instance_id=m.instance_id,
                rack_id=m.rack_id,
                member_epoch=m.member_epoch,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topic_names=sorted(m.subscribed_topic_names),
                subscribed_topic_regex=m.subscribed_topic_regex,
                assignment=_describe_assignment(group, m.assigned),
                target_assignment=_describe_assignment(group, group.target.get(m.member_id, {})),
            )
            for m in group.members.values()
        ]
        described.append(
            ConsumerDescribedGroup(
                group_id=group_id,
                group_state=group.state.value,
                group_epoch=group.group_epoch,
                assignment_epoch=group.assignment_epoch,
                assignor_name=group.preferred_assignor(default_assignor),
                members=members,
            )
        )
    return described


def delete_groups(
    ctx: ShardContext, offsets: Offsets, group_ids: list[str]
) -> tuple[list[tuple[str, int]], list[CoordinatorRecord]]:
    """Delete empty groups: tombstones for every offset and for the group itself."""
    results: list[tuple[str, int]] = []
    records: list[CoordinatorRecord] = []
    for group_id in group_ids:
        if not group_id:
            results.append((group_id, ErrorCode.INVALID_GROUP_ID))
            continue
        group = ctx.groups.get(group_id)
        if group is None:
            results.append((group_id, ErrorCode.GROUP_ID_NOT_FOUND))
            continue
        if isinstance(group, ClassicGroup):
            if group.is_in(ClassicState.DEAD):
                results.append((group_id, ErrorCode.GROUP_ID_NOT_FOUND))
                continue
            if not group.is_in(ClassicState.EMPTY):
                results.append((group_id, ErrorCode.NON_EMPTY_GROUP))
                continue
            records += offsets.delete_all(group_id)
            records.append(group_metadata_tombstone(group_id))
        else:
            if not group.is_empty():
                results.append((group_id, ErrorCode.NON_EMPTY_GROUP))
                continue
            records += offsets.delete_all(group_id)
            records += group.tombstones()
        results.append((group_id, ErrorCode.NONE))
    return results, records
