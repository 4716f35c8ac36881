"""Applying the consumer-group records (key versions 3 to 8) to the shard's groups.

Each record type upserts (or, as a tombstone, deletes) one piece of a group, so replaying a
record twice changes nothing the second time. A record for a group id held by a classic group
replaces it only when it creates state (the log holds the classic tombstone first); consumer
tombstones never touch a classic group.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from strom.coordinator.group.classic_group import ClassicGroup, ClassicState
from strom.coordinator.group.consumer_group import (
    LEAVE_GROUP_MEMBER_EPOCH,
    Assignment,
    ConsumerGroup,
    ConsumerMember,
    MemberState,
    TopicMeta,
)
from strom.coordinator.group.context import ShardContext
from strom.coordinator.group.generated.consumer_group_current_member_assignment_key import (
    ConsumerGroupCurrentMemberAssignmentKey,
)
from strom.coordinator.group.generated.consumer_group_member_metadata_key import (
    ConsumerGroupMemberMetadataKey,
)
from strom.coordinator.group.generated.consumer_group_metadata_key import ConsumerGroupMetadataKey
from strom.coordinator.group.generated.consumer_group_partition_metadata_key import (
    ConsumerGroupPartitionMetadataKey,
)
from strom.coordinator.group.generated.consumer_group_target_assignment_member_key import (
    ConsumerGroupTargetAssignmentMemberKey,
)
from strom.coordinator.group.generated.consumer_group_target_assignment_metadata_key import (
    ConsumerGroupTargetAssignmentMetadataKey,
)
from strom.coordinator.group.records import DecodedRecord


def _assignment(topics: list[tuple[uuid.UUID, list[int]]]) -> Assignment:
    return {tid: frozenset(ps) for tid, ps in topics if ps}


def _group(ctx: ShardContext, group_id: str, create: bool) -> ConsumerGroup | None:
    group = ctx.groups.get(group_id)
    if isinstance(group, ConsumerGroup):
        return group
    if not create:
        return None
    if isinstance(group, ClassicGroup):
        group.state = ClassicState.DEAD
    new = ConsumerGroup(group_id)
    ctx.groups[group_id] = new
    return new


def replay_consumer_record(
    ctx: ShardContext, decoded: DecodedRecord
) -> tuple[str, ConsumerMember] | None:
    """Apply one record; returns (group id, member) when a member was created or changed."""
    key, value = decoded.key, decoded.value
    if isinstance(key, ConsumerGroupMetadataKey):
        group = _group(ctx, key.group_id, value is not None)
        if group is None:
            return None
        if value is not None:
            group.group_epoch = value.epoch
        else:
            group.dead = True
            del ctx.groups[key.group_id]
        return None
    if isinstance(key, ConsumerGroupPartitionMetadataKey):
        group = _group(ctx, key.group_id, value is not None)
        if group is not None:
            group.subscription_metadata = (
                {}
                if value is None
                else {
                    t.topic_name: TopicMeta(t.topic_name, t.topic_id, t.num_partitions)
                    for t in value.topics
                }
            )
        return None
    if isinstance(key, ConsumerGroupTargetAssignmentMetadataKey):
        group = _group(ctx, key.group_id, value is not None)
        if group is not None:
            group.assignment_epoch = -1 if value is None else value.assignment_epoch
        return None
    if isinstance(key, ConsumerGroupTargetAssignmentMemberKey):
        group = _group(ctx, key.group_id, value is not None)
        if group is not None:
            if value is None:
                group.target.pop(key.member_id, None)
            else:
                group.target[key.member_id] = _assignment(
                    [(tp.topic_id, tp.partitions) for tp in value.topic_partitions]
                )
        return None
    if isinstance(key, ConsumerGroupMemberMetadataKey):
        group = _group(ctx, key.group_id, value is not None)
        if group is None:
            return None
        if value is None:
            group.remove_member(key.member_id)
            return None
        member = replace(
            group.members.get(key.member_id) or ConsumerMember(key.member_id),
            instance_id=value.instance_id,
            rack_id=value.rack_id,
            client_id=value.client_id,
            client_host=value.client_host,
            subscribed_topic_names=tuple(value.subscribed_topic_names),
            subscribed_topic_regex=value.subscribed_topic_regex,
            rebalance_timeout_ms=value.rebalance_timeout_ms,
            server_assignor=value.server_assignor,
        )
        group.put_member(member)
        return key.group_id, member
    if isinstance(key, ConsumerGroupCurrentMemberAssignmentKey):
        group = _group(ctx, key.group_id, value is not None)
        if group is None:
            return None
        old = group.members.get(key.member_id)
        if value is None:
            if old is not None:
                # The member is leaving: it owns nothing any more (its metadata
                # tombstone follows and removes it).
                group.put_member(
                    replace(
                        old,
                        member_epoch=LEAVE_GROUP_MEMBER_EPOCH,
                        previous_member_epoch=LEAVE_GROUP_MEMBER_EPOCH,
                        assigned={},
                        pending_revocation={},
                    )
                )
            return None
        try:
            state = MemberState(value.state)
        except ValueError:
            state = MemberState.UNKNOWN
        member = replace(
            old or ConsumerMember(key.member_id),
            member_epoch=value.member_epoch,
            previous_member_epoch=value.previous_member_epoch,
            state=state,
            assigned=_assignment(
                [(tp.topic_id, tp.partitions) for tp in value.assigned_partitions]
            ),
            pending_revocation=_assignment(
                [(tp.topic_id, tp.partitions) for tp in value.partitions_pending_revocation]
            ),
        )
        group.put_member(member)
        return key.group_id, member
    return None
