"""ShareCoordinatorShard: the durable state of share partitions, one `__share_group_state`
partition's worth (KIP-932's share coordinator).

A share partition (group, topic id, partition) is kept under the key `group:topicId:partition`
on partition `abs(java_hash(key)) % partitions` of `__share_group_state`, in Kafka's records:

| key type | key / value                  | what                                              |
|----------|------------------------------|---------------------------------------------------|
| 0        | ShareSnapshotKey / Value     | the whole state: start offset, in-flight batches  |
| 1        | ShareUpdateKey / Value       | a change: new start offset, batches overlaid      |

A record key is an int16 record type followed by the key struct; a value is an int16 version
(0) followed by the value struct; a value of null (tombstone) deletes the state. Strom writes a
ShareSnapshot on every change (the in-flight window is bounded, so a snapshot is small) and
reads both kinds, so a log written by Kafka loads too. Acquired records are persisted as
Available with their delivery counts: a lock does not survive its broker.

I/O-free like the group coordinator: handlers return records, the state changes only in
`replay`.
"""

from __future__ import annotations

import base64
import struct
import uuid
from dataclasses import dataclass, field

from strom.coordinator.group.records import CoordinatorRecord
from strom.coordinator.share.generated.share_snapshot_key import ShareSnapshotKey
from strom.coordinator.share.generated.share_snapshot_value import (
    ShareSnapshotValue,
)
from strom.coordinator.share.generated.share_snapshot_value import (
    StateBatch as SnapshotBatch,
)
from strom.coordinator.share.generated.share_update_key import ShareUpdateKey
from strom.coordinator.share.generated.share_update_value import ShareUpdateValue
from strom.coordinator.share.partition import RecordState, StateBatch
from strom.protocol.errors import ProtocolError

__all__ = ["ShareCoordinatorShard", "ShareState", "coordinator_key"]

_INT16 = struct.Struct(">h")
SNAPSHOT = 0
UPDATE = 1

StateKey = tuple[str, uuid.UUID, int]


def coordinator_key(group_id: str, topic_id: uuid.UUID, partition: int) -> str:
    """Kafka's SharePartitionKey as a coordinator key: where the state lives."""
    return f"{group_id}:{_kafka_uuid(topic_id)}:{partition}"


def _kafka_uuid(topic_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(topic_id.bytes).decode().rstrip("=")


@dataclass
class ShareState:
    start_offset: int
    batches: list[StateBatch] = field(default_factory=list)
    state_epoch: int = 0
    snapshot_epoch: int = 0
    leader_epoch: int = 0
    create_timestamp: int = 0


def _state_of(code: int) -> RecordState:
    try:
        return RecordState(code)
    except ValueError:
        return RecordState.AVAILABLE


class ShareCoordinatorShard:
    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.states: dict[StateKey, ShareState] = {}

    # -- handlers ------------------------------------------------------------------------

    def read_state(self, group_id: str, topic_id: uuid.UUID, partition: int) -> ShareState | None:
        return self.states.get((group_id, topic_id, partition))

    def write_state(
        self,
        group_id: str,
        topic_id: uuid.UUID,
        partition: int,
        start_offset: int,
        batches: list[StateBatch],
        now_ms: int,
    ) -> list[CoordinatorRecord]:
        """A ShareSnapshot of the partition's new state."""
        old = self.states.get((group_id, topic_id, partition))
        value = ShareSnapshotValue(
            snapshot_epoch=(old.snapshot_epoch + 1) if old is not None else 0,
            state_epoch=old.state_epoch if old is not None else 0,
            leader_epoch=old.leader_epoch if old is not None else 0,
            start_offset=start_offset,
            create_timestamp=old.create_timestamp if old is not None else now_ms,
            write_timestamp=now_ms,
            state_batches=[
                SnapshotBatch(b.first_offset, b.last_offset, int(b.state), b.delivery_count)
                for b in batches
                if b.last_offset >= start_offset
            ],
        )
        key = _INT16.pack(SNAPSHOT) + ShareSnapshotKey(group_id, topic_id, partition).encode(0)
        return [CoordinatorRecord(key, _INT16.pack(0) + value.encode(0))]

    def delete_state(
        self, group_id: str, topic_id: uuid.UUID, partition: int
    ) -> list[CoordinatorRecord]:
        if (group_id, topic_id, partition) not in self.states:
            return []
        key = _INT16.pack(SNAPSHOT) + ShareSnapshotKey(group_id, topic_id, partition).encode(0)
        return [CoordinatorRecord(key, None)]

    def group_states(self, group_id: str) -> dict[tuple[uuid.UUID, int], ShareState]:
        return {(t, p): s for (g, t, p), s in self.states.items() if g == group_id}

    # -- replay --------------------------------------------------------------------------

    def replay(self, record: CoordinatorRecord) -> None:
        if len(record.key) < 2:
            raise ProtocolError("share state record key shorter than its type")
        (record_type,) = _INT16.unpack_from(record.key)
        body = memoryview(record.key)[2:]
        if record_type == SNAPSHOT:
            skey = ShareSnapshotKey.decode(body, SNAPSHOT)
            ident = (skey.group_id, skey.topic_id, skey.partition)
        elif record_type == UPDATE:
            ukey = ShareUpdateKey.decode(body, UPDATE)
            ident = (ukey.group_id, ukey.topic_id, ukey.partition)
        else:
            return  # a record type of a newer Kafka: skipped
        if record.value is None:
            self.states.pop(ident, None)
            return
        value = memoryview(record.value)[2:]
        if record_type == SNAPSHOT:
            snap = ShareSnapshotValue.decode(value, 0)
            self.states[ident] = ShareState(
                start_offset=snap.start_offset,
                batches=[
                    StateBatch(
                        b.first_offset, b.last_offset, _state_of(b.delivery_state), b.delivery_count
                    )
                    for b in snap.state_batches
                ],
                state_epoch=snap.state_epoch,
                snapshot_epoch=snap.snapshot_epoch,
                leader_epoch=snap.leader_epoch,
                create_timestamp=snap.create_timestamp,
            )
            return
        update = ShareUpdateValue.decode(value, 0)
        state = self.states.get(ident)
        if state is None:
            state = self.states[ident] = ShareState(start_offset=update.start_offset)
        if update.start_offset >= 0:
            state.start_offset = update.start_offset
        for b in update.state_batches:
            new = StateBatch(
                b.first_offset, b.last_offset, _state_of(b.delivery_state), b.delivery_count
            )
            state.batches = _overlay(state.batches, new)
        state.batches = [b for b in state.batches if b.last_offset >= state.start_offset]

    # -- the runtime's contract ----------------------------------------------------------

    def next_deadline_ms(self) -> int | None:
        return None

    def unload(self) -> None:
        self.states.clear()


def _overlay(batches: list[StateBatch], new: StateBatch) -> list[StateBatch]:
    """`batches` with `new` written over the offsets it covers (trimming what it overlaps)."""
    out: list[StateBatch] = []
    for b in batches:
        if b.last_offset < new.first_offset or b.first_offset > new.last_offset:
            out.append(b)
            continue
        if b.first_offset < new.first_offset:
            out.append(StateBatch(b.first_offset, new.first_offset - 1, b.state, b.delivery_count))
        if b.last_offset > new.last_offset:
            out.append(StateBatch(new.last_offset + 1, b.last_offset, b.state, b.delivery_count))
    out.append(new)
    out.sort(key=lambda b: b.first_offset)
    return out
