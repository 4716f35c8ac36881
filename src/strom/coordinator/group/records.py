"""The records of `__consumer_offsets`, in Kafka's own key/value format.

A record key is an int16 *key version* followed by the key struct written at that version; the
key version says what the record is (Kafka reuses the key's schema version as a type tag).
A value is an int16 value version followed by the value struct. A record with no value
(a tombstone) deletes what its key names, and lets compaction drop the key.

| key version | key / value                               | meaning                              |
|-------------|-------------------------------------------|--------------------------------------|
| 0, 1        | OffsetCommitKey / OffsetCommitValue       | a committed offset                   |
| 2           | GroupMetadataKey / GroupMetadataValue     | a classic group, members, assignment |
| 3           | ConsumerGroupMetadata                     | consumer group epoch                 |
| 4           | ConsumerGroupPartitionMetadata            | subscribed topics' metadata          |
| 5           | ConsumerGroupMemberMetadata               | a member's subscription              |
| 6           | ConsumerGroupTargetAssignmentMetadata     | target assignment epoch              |
| 7           | ConsumerGroupTargetAssignmentMember       | a member's target partitions         |
| 8           | ConsumerGroupCurrentMemberAssignment      | a member's epoch and partitions      |

Values are written at the versions Kafka 3.x/4.0 writes (OffsetCommitValue v3, or v1 when
the commit carries an explicit expiry; GroupMetadataValue v3; consumer-group values v0), so
Kafka's tools can read a Strom `__consumer_offsets`. The share groups' records (types 10-15)
are decoded here and built by `strom.coordinator.share.records`. Other types
(regular expressions, streams groups) are not used by Strom; `decode` returns None for them
and loading skips them, as Kafka skips record types it does not know.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from strom.coordinator.group.generated.consumer_group_current_member_assignment_key import (
    ConsumerGroupCurrentMemberAssignmentKey,
)
from strom.coordinator.group.generated.consumer_group_current_member_assignment_value import (
    ConsumerGroupCurrentMemberAssignmentValue,
    TopicPartitions,
)
from strom.coordinator.group.generated.consumer_group_member_metadata_key import (
    ConsumerGroupMemberMetadataKey,
)
from strom.coordinator.group.generated.consumer_group_member_metadata_value import (
    ConsumerGroupMemberMetadataValue,
)
from strom.coordinator.group.generated.consumer_group_metadata_key import ConsumerGroupMetadataKey
from strom.coordinator.group.generated.consumer_group_metadata_value import (
    ConsumerGroupMetadataValue,
)
from strom.coordinator.group.generated.consumer_group_partition_metadata_key import (
    ConsumerGroupPartitionMetadataKey,
)
from strom.coordinator.group.generated.consumer_group_partition_metadata_value import (
    ConsumerGroupPartitionMetadataValue,
    TopicMetadata,
)
from strom.coordinator.group.generated.consumer_group_target_assignment_member_key import (
    ConsumerGroupTargetAssignmentMemberKey,
)
from strom.coordinator.group.generated.consumer_group_target_assignment_member_value import (
    ConsumerGroupTargetAssignmentMemberValue,
    TopicPartition,
)
from strom.coordinator.group.generated.consumer_group_target_assignment_metadata_key import (
    ConsumerGroupTargetAssignmentMetadataKey,
)
from strom.coordinator.group.generated.consumer_group_target_assignment_metadata_value import (
    ConsumerGroupTargetAssignmentMetadataValue,
)
from strom.coordinator.group.generated.group_metadata_key import GroupMetadataKey
from strom.coordinator.group.generated.group_metadata_value import (
    GroupMetadataValue,
    MemberMetadata,
)
from strom.coordinator.group.generated.legacy_offset_commit_key import LegacyOffsetCommitKey
from strom.coordinator.group.generated.offset_commit_key import OffsetCommitKey
from strom.coordinator.group.generated.offset_commit_value import OffsetCommitValue
from strom.coordinator.group.generated.share_group_current_member_assignment_key import (
    ShareGroupCurrentMemberAssignmentKey,
)
from strom.coordinator.group.generated.share_group_current_member_assignment_value import (
    ShareGroupCurrentMemberAssignmentValue,
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
from strom.coordinator.group.generated.share_group_state_partition_metadata_value import (
    ShareGroupStatePartitionMetadataValue,
)
from strom.coordinator.group.generated.share_group_target_assignment_member_key import (
    ShareGroupTargetAssignmentMemberKey,
)
from strom.coordinator.group.generated.share_group_target_assignment_member_value import (
    ShareGroupTargetAssignmentMemberValue,
)
from strom.coordinator.group.generated.share_group_target_assignment_metadata_key import (
    ShareGroupTargetAssignmentMetadataKey,
)
from strom.coordinator.group.generated.share_group_target_assignment_metadata_value import (
    ShareGroupTargetAssignmentMetadataValue,
)
from strom.protocol.errors import ProtocolError

__all__ = [
    "GROUP_METADATA_VALUE_VERSION",
    "OFFSET_COMMIT_KEY_VERSION",
    "SHARE_GROUP_RECORD_TYPES",
    "CoordinatorRecord",
    "DecodedRecord",
    "GroupMetadataValue",
    "MemberMetadata",
    "decode",
    "encode_record",
    "group_metadata",
    "group_metadata_tombstone",
    "offset_commit",
    "offset_commit_tombstone",
]

_INT16 = struct.Struct(">h")

OFFSET_COMMIT_KEY_VERSION = 1  # 0 was written by Kafka 0.8's offsets; every later one writes 1
GROUP_METADATA_KEY_VERSION = 2
CONSUMER_GROUP_METADATA_KEY_VERSION = 3
CONSUMER_GROUP_PARTITION_METADATA_KEY_VERSION = 4
CONSUMER_GROUP_MEMBER_METADATA_KEY_VERSION = 5
CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY_VERSION = 6
CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY_VERSION = 7
CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION = 8

# The newest non-flexible versions: older Kafka brokers (and tools) can still read them.
OFFSET_COMMIT_VALUE_VERSION = 3
OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY = 1  # the only version with expireTimestamp
GROUP_METADATA_VALUE_VERSION = 3

# key version -> (key class, value class)
_TYPES: dict[int, tuple[Any, Any]] = {
    0: (LegacyOffsetCommitKey, OffsetCommitValue),
    1: (OffsetCommitKey, OffsetCommitValue),
    2: (GroupMetadataKey, GroupMetadataValue),
    3: (ConsumerGroupMetadataKey, ConsumerGroupMetadataValue),
    4: (ConsumerGroupPartitionMetadataKey, ConsumerGroupPartitionMetadataValue),
    5: (ConsumerGroupMemberMetadataKey, ConsumerGroupMemberMetadataValue),
    6: (ConsumerGroupTargetAssignmentMetadataKey, ConsumerGroupTargetAssignmentMetadataValue),
    7: (ConsumerGroupTargetAssignmentMemberKey, ConsumerGroupTargetAssignmentMemberValue),
    8: (ConsumerGroupCurrentMemberAssignmentKey, ConsumerGroupCurrentMemberAssignmentValue),
    10: (ShareGroupMemberMetadataKey, ShareGroupMemberMetadataValue),
    11: (ShareGroupMetadataKey, ShareGroupMetadataValue),
    12: (ShareGroupTargetAssignmentMetadataKey, ShareGroupTargetAssignmentMetadataValue),
    13: (ShareGroupTargetAssignmentMemberKey, ShareGroupTargetAssignmentMemberValue),
    14: (ShareGroupCurrentMemberAssignmentKey, ShareGroupCurrentMemberAssignmentValue),
    15: (ShareGroupStatePartitionMetadataKey, ShareGroupStatePartitionMetadataValue),
}
SHARE_GROUP_RECORD_TYPES = range(10, 16)


@dataclass(frozen=True, slots=True)
class CoordinatorRecord:
    """One record for `__consumer_offsets`: key and value bytes, value None for a tombstone."""

    key: bytes
    value: bytes | None


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    """A record's key and value structs (value None for a tombstone)."""

    key_version: int
    key: Any
    value: Any | None
    value_version: int = -1


def _encode(key_version: int, key: Any, value_version: int, value: Any | None) -> CoordinatorRecord:
    key_bytes = _INT16.pack(key_version) + key.encode(key_version)
    if value is None:
        return CoordinatorRecord(key_bytes, None)
    return CoordinatorRecord(key_bytes, _INT16.pack(value_version) + value.encode(value_version))


def encode_record(
    key_version: int, key: Any, value_version: int, value: Any | None
) -> CoordinatorRecord:
    """A record of any type: the key at its record type, the value at `value_version`."""
    return _encode(key_version, key, value_version, value)


def decode(record: CoordinatorRecord) -> DecodedRecord | None:
    """Decode a record; None for record types Strom does not know (they are skipped).

    Raises ProtocolError for bytes that do not parse.
    """
    if len(record.key) < 2:
        raise ProtocolError("coordinator record key shorter than its version")
    (key_version,) = _INT16.unpack_from(record.key)
    types = _TYPES.get(key_version)
    if types is None:
        return None
    key_cls, value_cls = types
    key = key_cls.decode(memoryview(record.key)[2:], key_version)
    if isinstance(key, LegacyOffsetCommitKey):
        # Kafka 0.8's record type: the same key, read as every later offset commit.
        key = OffsetCommitKey(key.group, key.topic, key.partition)
    if record.value is None:
        return DecodedRecord(key_version, key, None)
    if len(record.value) < 2:
        raise ProtocolError("coordinator record value shorter than its version")
    (value_version,) = _INT16.unpack_from(record.value)
    value = value_cls.decode(memoryview(record.value)[2:], value_version)
    return DecodedRecord(key_version, key, value, value_version)


# -- offsets ---------------------------------------------------------------------------------


def offset_commit(
    group_id: str,
    topic: str,
    partition: int,
    offset: int,
    leader_epoch: int,
    metadata: str,
    commit_timestamp_ms: int,
    expire_timestamp_ms: int | None = None,
) -> CoordinatorRecord:
    key = OffsetCommitKey(group_id, topic, partition)
    if expire_timestamp_ms is None:
        value = OffsetCommitValue(offset, leader_epoch, metadata, commit_timestamp_ms, -1)
        return _encode(OFFSET_COMMIT_KEY_VERSION, key, OFFSET_COMMIT_VALUE_VERSION, value)
    # v1 has no leader epoch: a commit with an explicit retention loses it, as in Kafka.
    value = OffsetCommitValue(offset, -1, metadata, commit_timestamp_ms, expire_timestamp_ms)
    return _encode(OFFSET_COMMIT_KEY_VERSION, key, OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY, value)


def offset_commit_tombstone(group_id: str, topic: str, partition: int) -> CoordinatorRecord:
    return _encode(OFFSET_COMMIT_KEY_VERSION, OffsetCommitKey(group_id, topic, partition), 0, None)


# -- classic groups --------------------------------------------------------------------------


def group_metadata(group_id: str, value: GroupMetadataValue) -> CoordinatorRecord:
    return _encode(
        GROUP_METADATA_KEY_VERSION, GroupMetadataKey(group_id), GROUP_METADATA_VALUE_VERSION, value
    )


def group_metadata_tombstone(group_id: str) -> CoordinatorRecord:
    return _encode(GROUP_METADATA_KEY_VERSION, GroupMetadataKey(group_id), 0, None)


# -- consumer groups (KIP-848) ---------------------------------------------------------------

TopicPartitionsMap = Mapping[uuid.UUID, Iterable[int]]


def consumer_group_epoch(group_id: str, epoch: int) -> CoordinatorRecord:
    return _encode(
        CONSUMER_GROUP_METADATA_KEY_VERSION,
        ConsumerGroupMetadataKey(group_id),
        0,
        ConsumerGroupMetadataValue(epoch),
    )


def consumer_group_epoch_tombstone(group_id: str) -> CoordinatorRecord:
    return _encode(CONSUMER_GROUP_METADATA_KEY_VERSION, ConsumerGroupMetadataKey(group_id), 0, None)


def consumer_group_partition_metadata(
    group_id: str, topics: Iterable[tuple[str, uuid.UUID, int]]
) -> CoordinatorRecord:
    """The metadata (name, id, partition count) of every topic the group subscribes to."""
    value = ConsumerGroupPartitionMetadataValue(
        [TopicMetadata(topic_id, name, count, []) for name, topic_id, count in sorted(topics)]
    )
    return _encode(
        CONSUMER_GROUP_PARTITION_METADATA_KEY_VERSION,
        ConsumerGroupPartitionMetadataKey(group_id),
        0,
        value,
    )


def consumer_group_partition_metadata_tombstone(group_id: str) -> CoordinatorRecord:
    return _encode(
        CONSUMER_GROUP_PARTITION_METADATA_KEY_VERSION,
        ConsumerGroupPartitionMetadataKey(group_id),
        0,
        None,
    )


def consumer_group_member(
    group_id: str, member_id: str, value: ConsumerGroupMemberMetadataValue
) -> CoordinatorRecord:
    return _encode(
        CONSUMER_GROUP_MEMBER_METADATA_KEY_VERSION,
        ConsumerGroupMemberMetadataKey(group_id, member_id),
        0,
        value,
    )


def consumer_group_member_tombstone(group_id: str, member_id: str) -> CoordinatorRecord:
    return _encode(
        CONSUMER_GROUP_MEMBER_METADATA_KEY_VERSION,
        ConsumerGroupMemberMetadataKey(group_id, member_id),
        0,
        None,
    )


def consumer_group_target_epoch(group_id: str, epoch: int) -> CoordinatorRecord:
    return _encode(
        CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY_VERSION,
        ConsumerGroupTargetAssignmentMetadataKey(group_id),
        0,
        ConsumerGroupTargetAssignmentMetadataValue(epoch),
    )


def consumer_group_target_epoch_tombstone(group_id: str) -> CoordinatorRecord:
    return _encode(
        CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA_KEY_VERSION,
        ConsumerGroupTargetAssignmentMetadataKey(group_id),
        0,
        None,
    )


def consumer_group_target_member(
    group_id: str, member_id: str, partitions: TopicPartitionsMap
) -> CoordinatorRecord:
    value = ConsumerGroupTargetAssignmentMemberValue(
        [TopicPartition(tid, sorted(parts)) for tid, parts in sorted(partitions.items())]
    )
    return _encode(
        CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY_VERSION,
        ConsumerGroupTargetAssignmentMemberKey(group_id, member_id),
        0,
        value,
    )


def consumer_group_target_member_tombstone(group_id: str, member_id: str) -> CoordinatorRecord:
    return _encode(
        CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER_KEY_VERSION,
        ConsumerGroupTargetAssignmentMemberKey(group_id, member_id),
        0,
        None,
    )


def consumer_group_current_assignment(
    group_id: str,
    member_id: str,
    member_epoch: int,
    previous_member_epoch: int,
    state: int,
    assigned: TopicPartitionsMap,
    pending_revocation: TopicPartitionsMap,
) -> CoordinatorRecord:
    value = ConsumerGroupCurrentMemberAssignmentValue(
        member_epoch,
        previous_member_epoch,
        state,
        [TopicPartitions(tid, sorted(parts)) for tid, parts in sorted(assigned.items())],
        [TopicPartitions(tid, sorted(parts)) for tid, parts in sorted(pending_revocation.items())],
    )
    return _encode(
        CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION,
        ConsumerGroupCurrentMemberAssignmentKey(group_id, member_id),
        0,
        value,
    )


def consumer_group_current_assignment_tombstone(group_id: str, member_id: str) -> CoordinatorRecord:
    return _encode(
        CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT_KEY_VERSION,
        ConsumerGroupCurrentMemberAssignmentKey(group_id, member_id),
        0,
        None,
    )
