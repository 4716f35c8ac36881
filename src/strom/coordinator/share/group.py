"""The share group of KIP-932 (ShareGroupHeartbeat): its data model, records and replay.

A share group is persisted in `__consumer_offsets` in Kafka's share-group records:

| type | key / value                          | what                                       |
|------|--------------------------------------|--------------------------------------------|
| 10   | ShareGroupMemberMetadata             | a member's client, host, rack, topics      |
| 11   | ShareGroupMetadata                   | the group epoch                            |
| 12   | ShareGroupTargetAssignmentMetadata   | the epoch the target assignment is for     |
| 13   | ShareGroupTargetAssignmentMember     | a member's target partitions               |
| 14   | ShareGroupCurrentMemberAssignment    | a member's epoch and assigned partitions   |
| 15   | ShareGroupStatePartitionMetadata     | partitions whose share state exists        |

Members of a share group share partitions, so no partition is ever revoked before another
member gets it: a member moves to the target assignment in one step. The group changes only
in `replay`; `heartbeat.py` computes the records from a read-only view.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from strom.coordinator.group.generated.share_group_current_member_assignment_key import (
    ShareGroupCurrentMemberAssignmentKey,
)
from strom.coordinator.group.generated.share_group_current_member_assignment_value import (
    ShareGroupCurrentMemberAssignmentValue,
    TopicPartitions,
)
from strom.coordinator.group.generated.share_group_member_metadata_key import (
    ShareGroupMemberMetadataKey,
)
from strom.coordinator.group.generated.share_group_member_metadata_value import (
    ShareGroupMemberMetadataValue,
)
from strom.coordinator.group.generated.share_group_metadata_key import ShareGroupMetadataKey
from strom.coordinator.group.generated.share_group_metadata_value import ShareGroupMetadataValue
from strom.coordinator.group.generated.share_group_state_partition_metadata_key import (
    ShareGroupStatePartitionMetadataKey,
)
from strom.coordinator.group.generated.share_group_target_assignment_member_key import (
    ShareGroupTargetAssignmentMemberKey,
)
from strom.coordinator.group.generated.share_group_target_assignment_member_value import (
    ShareGroupTargetAssignmentMemberValue,
    TopicPartition,
)
from strom.coordinator.group.generated.share_group_target_assignment_metadata_key import (
    ShareGroupTargetAssignmentMetadataKey,
)
from strom.coordinator.group.generated.share_group_target_assignment_metadata_value import (
    ShareGroupTargetAssignmentMetadataValue,
)
from strom.coordinator.group.records import CoordinatorRecord, DecodedRecord, encode_record
from strom.coordinator.share.state_partitions import (
    StatePartitions,
    replay_state_partitions,
    state_partitions_tombstone,
)

__all__ = [
    "Assignment",
    "ShareGroup",
    "ShareGroupState",
    "ShareMember",
    "current_assignment_record",
    "group_epoch_record",
    "member_record",
    "replay_share_record",
    "target_epoch_record",
    "target_member_record",
]

Assignment = dict[uuid.UUID, frozenset[int]]

MEMBER_METADATA = 10
GROUP_METADATA = 11
TARGET_METADATA = 12
TARGET_MEMBER = 13
CURRENT_ASSIGNMENT = 14


class ShareGroupState(Enum):
    EMPTY = "Empty"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(frozen=True)
class ShareMember:
    member_id: str
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: tuple[str, ...] = ()
    member_epoch: int = 0
    previous_member_epoch: int = 0
    assigned: Assignment = field(default_factory=dict)


@dataclass(eq=False)
class ShareGroup:
    group_id: str
    group_epoch: int = 0
    metadata_hash: int = 0
    assignment_epoch: int = 0
    members: dict[str, ShareMember] = field(default_factory=dict)
    target: dict[str, Assignment] = field(default_factory=dict)
    state_partitions: StatePartitions = field(default_factory=StatePartitions)
    dead: bool = False

    @property
    def state(self) -> ShareGroupState:
        if self.dead:
            return ShareGroupState.DEAD
        return ShareGroupState.STABLE if self.members else ShareGroupState.EMPTY

    def is_empty(self) -> bool:
        return not self.members

    def subscribed_topic_names(self) -> set[str]:
        names: set[str] = set()
        for member in self.members.values():
            names.update(member.subscribed_topic_names)
        return names

    def is_subscribed_to_topic(self, topic: str) -> bool:
        return any(topic in m.subscribed_topic_names for m in self.members.values())

    def tombstones(self) -> list[CoordinatorRecord]:
        """Records that delete the whole group (members first, the epoch record last)."""
        gid = self.group_id
        records: list[CoordinatorRecord] = []
        for member_id in self.members:
            records.append(_tombstone(CURRENT_ASSIGNMENT, _current_key(gid, member_id)))
        for member_id in self.target:
            records.append(_tombstone(TARGET_MEMBER, _target_key(gid, member_id)))
        records.append(_tombstone(TARGET_METADATA, ShareGroupTargetAssignmentMetadataKey(gid)))
        for member_id in self.members:
            records.append(_tombstone(MEMBER_METADATA, _member_key(gid, member_id)))
        if not self.state_partitions.is_empty():
            records.append(state_partitions_tombstone(gid))
        records.append(_tombstone(GROUP_METADATA, ShareGroupMetadataKey(gid)))
        return records


# -- records ---------------------------------------------------------------------------------


def _member_key(group_id: str, member_id: str) -> ShareGroupMemberMetadataKey:
    return ShareGroupMemberMetadataKey(group_id, member_id)


def _target_key(group_id: str, member_id: str) -> ShareGroupTargetAssignmentMemberKey:
    return ShareGroupTargetAssignmentMemberKey(group_id, member_id)


def _current_key(group_id: str, member_id: str) -> ShareGroupCurrentMemberAssignmentKey:
    return ShareGroupCurrentMemberAssignmentKey(group_id, member_id)


def _tombstone(record_type: int, key: object) -> CoordinatorRecord:
    return encode_record(record_type, key, 0, None)


def member_record(group_id: str, member: ShareMember) -> CoordinatorRecord:
    value = ShareGroupMemberMetadataValue(
        rack_id=member.rack_id,
        client_id=member.client_id,
        client_host=member.client_host,
        subscribed_topic_names=sorted(member.subscribed_topic_names),
    )
    return encode_record(MEMBER_METADATA, _member_key(group_id, member.member_id), 0, value)


def member_tombstone(group_id: str, member_id: str) -> CoordinatorRecord:
    return _tombstone(MEMBER_METADATA, _member_key(group_id, member_id))


def group_epoch_record(group_id: str, epoch: int, metadata_hash: int) -> CoordinatorRecord:
    value = ShareGroupMetadataValue(epoch=epoch, metadata_hash=metadata_hash)
    return encode_record(GROUP_METADATA, ShareGroupMetadataKey(group_id), 0, value)


def target_epoch_record(group_id: str, epoch: int, now_ms: int) -> CoordinatorRecord:
    value = ShareGroupTargetAssignmentMetadataValue(
        assignment_epoch=epoch, assignment_timestamp=now_ms
    )
    return encode_record(TARGET_METADATA, ShareGroupTargetAssignmentMetadataKey(group_id), 0, value)


def target_member_record(group_id: str, member_id: str, target: Assignment) -> CoordinatorRecord:
    value = ShareGroupTargetAssignmentMemberValue(
        [TopicPartition(tid, sorted(parts)) for tid, parts in sorted(target.items())]
    )
    return encode_record(TARGET_MEMBER, _target_key(group_id, member_id), 0, value)


def target_member_tombstone(group_id: str, member_id: str) -> CoordinatorRecord:
    return _tombstone(TARGET_MEMBER, _target_key(group_id, member_id))


def current_assignment_record(group_id: str, member: ShareMember) -> CoordinatorRecord:
    value = ShareGroupCurrentMemberAssignmentValue(
        member_epoch=member.member_epoch,
        previous_member_epoch=member.previous_member_epoch,
        state=0,
        assigned_partitions=[
            TopicPartitions(tid, sorted(parts)) for tid, parts in sorted(member.assigned.items())
        ],
    )
    return encode_record(CURRENT_ASSIGNMENT, _current_key(group_id, member.member_id), 0, value)


def current_assignment_tombstone(group_id: str, member_id: str) -> CoordinatorRecord:
    return _tombstone(CURRENT_ASSIGNMENT, _current_key(group_id, member_id))


# -- replay ----------------------------------------------------------------------------------


def _assignment(topics: list[tuple[uuid.UUID, list[int]]]) -> Assignment:
    return {tid: frozenset(ps) for tid, ps in topics if ps}


def replay_share_record(
    groups: dict[str, Any], decoded: DecodedRecord, now_ms: int
) -> ShareGroup | None:
    """Apply one share-group record to `groups` (the shard's groups of every type); returns
    the share group it touched. A record for a group id held by a group of another type
    replaces that group, as the log's order decides."""
    key, value = decoded.key, decoded.value
    gid: str = key.group_id
    group = groups.get(gid)
    if not isinstance(group, ShareGroup):
        if value is None:
            return None
        group = groups[gid] = ShareGroup(gid)
    if isinstance(key, ShareGroupMetadataKey):
        if value is None:
            group.dead = True
            del groups[gid]
        else:
            group.group_epoch = value.epoch
            group.metadata_hash = value.metadata_hash
    elif isinstance(key, ShareGroupTargetAssignmentMetadataKey):
        group.assignment_epoch = -1 if value is None else value.assignment_epoch
    elif isinstance(key, ShareGroupTargetAssignmentMemberKey):
        if value is None:
            group.target.pop(key.member_id, None)
        else:
            group.target[key.member_id] = _assignment(
                [(tp.topic_id, tp.partitions) for tp in value.topic_partitions]
            )
    elif isinstance(key, ShareGroupMemberMetadataKey):
        if value is None:
            group.members.pop(key.member_id, None)
        else:
            group.members[key.member_id] = replace(
                group.members.get(key.member_id) or ShareMember(key.member_id),
                rack_id=value.rack_id,
                client_id=value.client_id,
                client_host=value.client_host,
                subscribed_topic_names=tuple(value.subscribed_topic_names),
            )
    elif isinstance(key, ShareGroupCurrentMemberAssignmentKey):
        old = group.members.get(key.member_id)
        if value is None:
            if old is not None:
                group.members[key.member_id] = replace(
                    old, member_epoch=-1, previous_member_epoch=-1, assigned={}
                )
        else:
            group.members[key.member_id] = replace(
                old or ShareMember(key.member_id),
                member_epoch=value.member_epoch,
                previous_member_epoch=value.previous_member_epoch,
                assigned=_assignment(
                    [(tp.topic_id, tp.partitions) for tp in value.assigned_partitions]
                ),
            )
    elif isinstance(key, ShareGroupStatePartitionMetadataKey):
        group.state_partitions = replay_state_partitions(value, now_ms)
    return group
