"""ShareCoordinatorShard: the durable state of share partitions, one `__share_group_state`
partition's worth (KIP-932's share coordinator).

A share partition (group, topic id, partition) is kept under the key `group:topicId:partition`
on partition `abs(java_hash(key)) % partitions` of `__share_group_state`, in Kafka's records:

| key type | key / value                  | what                                              |
|----------|------------------------------|---------------------------------------------------|
| 0        | ShareSnapshotKey / Value     | the whole state: start offset, in-flight batches  |
| 1        | ShareUpdateKey / Value       | a change: new start offset, batches overlaid      |
| 1000     | ShareSnapshotKey / Strom's   | delays, due records, backoff, dead-letter copier  |
|          | extension (extension.py)     | (issue #16), written with the snapshot it extends |

A record key is an int16 record type followed by the key struct; a value is an int16 version
(0) followed by the value struct; a value of null (tombstone) deletes the state. Strom writes a
ShareSnapshot on every change (the in-flight window is bounded, so a snapshot is small) and
reads both kinds, so a log written by Kafka loads too. The extension record is written beside
a snapshot only when the extension changes (a tombstone when it goes); a snapshot replayed
keeps the extension its partition has, and a new state epoch (initialize) or a deletion drops
it. Acquired records are persisted as
Available with their delivery counts: a lock does not survive its broker.

The operations are those of Kafka's share-state RPCs, with its rules:
- initialize (InitializeShareGroupState, from the group coordinator): a fresh snapshot at a
  state epoch, start offset -1 when the share partition leader is to choose it
  (share.auto.offset.reset), leader epoch -1; the same epoch and start again is a no-op;
- read (ReadShareGroupState, from the share partition leader when it loads the partition):
  refused for a state never initialized (INVALID_REQUEST) and for a leader epoch older than
  the one recorded (FENCED_LEADER_EPOCH); a newer leader epoch is written, which fences the
  previous leader's writes;
- write (WriteShareGroupState): refused for an uninitialized state, an older leader epoch or an
  older state epoch (FENCED_STATE_EPOCH: the group coordinator initialized the state again,
  AlterShareGroupOffsets); the batches are laid over the state, the start offset never moves
  back, and batches before it go;
- delete (DeleteShareGroupState) writes a tombstone; a summary (ReadShareGroupStateSummary)
  reads the start offset, epochs and delivery-complete count.

I/O-free like the group coordinator: handlers return records, the state changes only in
`replay`.
"""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from strom.coordinator.group.records import CoordinatorRecord
from strom.coordinator.share.extension import EXTENSION_RECORD_TYPE, ShareExtension
from strom.coordinator.share.generated.share_snapshot_key import ShareSnapshotKey
from strom.coordinator.share.generated.share_snapshot_value import (
    ShareSnapshotValue,
)
from strom.coordinator.share.generated.share_snapshot_value import (
    StateBatch as SnapshotBatch,
)
from strom.coordinator.share.generated.share_update_key import ShareUpdateKey
from strom.coordinator.share.generated.share_update_value import ShareUpdateValue
from strom.coordinator.share.generated.share_update_value import StateBatch as UpdateBatch
from strom.coordinator.share.partition import RecordState, StateBatch
from strom.protocol.errors import ErrorCode, ProtocolError

__all__ = [
    "UNINITIALIZED_START_OFFSET",
    "Outcome",
    "ShareCoordinatorShard",
    "ShareState",
    "StateKey",
    "StateWrite",
    "coordinator_key",
]

_INT16 = struct.Struct(">h")
SNAPSHOT = 0
UPDATE = 1
# Kafka's PartitionFactory: a start offset not chosen yet, epochs not set yet.
UNINITIALIZED_START_OFFSET = -1
UNINITIALIZED_EPOCH = -1

StateKey = tuple[str, uuid.UUID, int]  # group id, topic id, partition


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
    leader_epoch: int = UNINITIALIZED_EPOCH
    create_timestamp: int = 0
    # Records at or after the start offset whose delivery is complete (acknowledged or
    # archived; KIP-1226), -1 when unknown.
    delivery_complete_count: int = -1
    extension: ShareExtension | None = None  # Strom's, beyond Kafka's state (issue #16)

    @property
    def delayed_records(self) -> int:
        """Records waiting for their delivery time, as last written."""
        timer = self.extension.timer if self.extension is not None else None
        return timer.pending if timer is not None else 0


@dataclass(frozen=True)
class StateWrite:
    """What a WriteShareGroupState carries for one share partition."""

    state_epoch: int
    leader_epoch: int
    start_offset: int  # -1: not being written
    batches: list[StateBatch]
    delivery_complete_count: int = -1
    # Strom's extension as of this write (None: none), when `with_extension`. Writes that do
    # not carry one (a Kafka broker's WriteShareGroupState) leave it as it is.
    extension: ShareExtension | None = None
    with_extension: bool = False


@dataclass(frozen=True)
class Outcome:
    """An operation's answer: its error (and message), and for reads the state."""

    error: ErrorCode = ErrorCode.NONE
    message: str | None = None
    state: ShareState | None = None


def _state_of(code: int) -> RecordState:
    try:
        return RecordState(code)
    except ValueError:
        return RecordState.AVAILABLE


def _invalid(message: str) -> Outcome:
    return Outcome(ErrorCode.INVALID_REQUEST, message)


class ShareCoordinatorShard:
    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.states: dict[StateKey, ShareState] = {}
        # Extension records replayed before their partition's snapshot (compaction keeps
        # the newest record per key, so the snapshot may come later in the log).
        self._early_extensions: dict[StateKey, ShareExtension] = {}

    # -- handlers ------------------------------------------------------------------------

    def initialize(
        self, key: StateKey, state_epoch: int, start_offset: int, now_ms: int
    ) -> tuple[Outcome, list[CoordinatorRecord]]:
        if key[2] < 0:
            return _invalid("The partition id cannot be a negative number."), []
        if state_epoch < 0:
            return _invalid("The state epoch cannot be a negative number."), []
        current = self.states.get(key)
        if (
            current is not None
            and current.state_epoch == state_epoch
            and current.start_offset == start_offset
        ):
            return Outcome(), []  # a repeated request
        state = ShareState(
            start_offset=start_offset,
            state_epoch=state_epoch,
            snapshot_epoch=current.snapshot_epoch + 1 if current is not None else 0,
            create_timestamp=now_ms,
            # From a chosen start offset the completed deliveries are counted; from -1 the
            # share partition has not started.
            delivery_complete_count=-1 if start_offset == UNINITIALIZED_START_OFFSET else 0,
        )
        records = [_snapshot_record(key, state, now_ms)]
        if current is not None and current.extension is not None:
            records.append(CoordinatorRecord(_extension_key(key), None))
        return Outcome(), records

    def read(
        self, key: StateKey, leader_epoch: int, now_ms: int
    ) -> tuple[Outcome, list[CoordinatorRecord]]:
        """The state for a share partition leader loading it; a newer leader epoch is
        recorded (one snapshot), fencing the writes of the previous leader."""
        if key[2] < 0:
            return _invalid("The partition id cannot be a negative number."), []
        if leader_epoch < 0:
            return _invalid("The leader epoch cannot be a negative number."), []
        state = self.states.get(key)
        if state is None:
            return _invalid("Read operation on uninitialized share partition not allowed."), []
        if state.leader_epoch > leader_epoch:
            return Outcome(ErrorCode.FENCED_LEADER_EPOCH), []
        answer = Outcome(state=_copy(state))
        if state.leader_epoch == leader_epoch:
            return answer, []
        updated = _copy(state)
        updated.leader_epoch = leader_epoch
        updated.snapshot_epoch += 1
        return answer, [_snapshot_record(key, updated, now_ms)]

    def write(
        self, key: StateKey, write: StateWrite, now_ms: int
    ) -> tuple[Outcome, list[CoordinatorRecord]]:
        if key[2] < 0:
            return _invalid("The partition id cannot be a negative number."), []
        if write.leader_epoch < 0:
            return _invalid("The leader epoch cannot be a negative number."), []
        if write.state_epoch < 0:
            return _invalid("The state epoch cannot be a negative number."), []
        state = self.states.get(key)
        if state is None:
            return _invalid("Write operation on uninitialized share partition not allowed."), []
        if state.leader_epoch > write.leader_epoch:
            return Outcome(ErrorCode.FENCED_LEADER_EPOCH), []
        if state.state_epoch > write.state_epoch:
            return Outcome(ErrorCode.FENCED_STATE_EPOCH), []
        start = max(write.start_offset, state.start_offset)
        # Kafka's choice of the delivery-complete count: the writer's, unless it wrote from
        # behind the recorded start offset.
        complete = write.delivery_complete_count
        if write.start_offset == state.start_offset:
            complete = max(complete, state.delivery_complete_count)
        elif write.start_offset < state.start_offset:
            complete = state.delivery_complete_count
        updated = _copy(state)
        updated.start_offset = start
        updated.batches = combine(state.batches, write.batches, start)
        updated.snapshot_epoch += 1
        updated.delivery_complete_count = complete
        records = [_snapshot_record(key, updated, now_ms)]
        if write.with_extension:
            extension = write.extension if write.extension and not write.extension.empty else None
            if extension is not None:
                encoded = extension.encode()
                if state.extension is None or state.extension.encode() != encoded:
                    records.append(CoordinatorRecord(_extension_key(key), encoded))
            elif state.extension is not None:
                records.append(CoordinatorRecord(_extension_key(key), None))
        return Outcome(), records

    def delete(self, key: StateKey) -> list[CoordinatorRecord]:
        state = self.states.get(key)
        if state is None:
            return []
        records = [CoordinatorRecord(_snapshot_key(key), None)]
        if state.extension is not None:
            records.append(CoordinatorRecord(_extension_key(key), None))
        return records

    def summary(self, key: StateKey) -> ShareState | None:
        state = self.states.get(key)
        return _copy(state) if state is not None else None

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
        elif record_type == EXTENSION_RECORD_TYPE:
            xkey = ShareSnapshotKey.decode(body, SNAPSHOT)
            self._replay_extension((xkey.group_id, xkey.topic_id, xkey.partition), record.value)
            return
        else:
            return  # a record type of a newer Kafka: skipped
        if record.value is None:
            self.states.pop(ident, None)
            self._early_extensions.pop(ident, None)
            return
        value = memoryview(record.value)[2:]
        if record_type == SNAPSHOT:
            snap = ShareSnapshotValue.decode(value, 0)
            old = self.states.get(ident)
            self.states[ident] = ShareState(
                start_offset=snap.start_offset,
                batches=_batches(snap.state_batches),
                state_epoch=snap.state_epoch,
                snapshot_epoch=snap.snapshot_epoch,
                leader_epoch=snap.leader_epoch,
                create_timestamp=snap.create_timestamp,
                delivery_complete_count=snap.delivery_complete_count,
                extension=(
                    old.extension if old is not None else self._early_extensions.pop(ident, None)
                ),
            )
            return
        update = ShareUpdateValue.decode(value, 0)
        state = self.states.get(ident)
        if state is None:
            state = self.states[ident] = ShareState(start_offset=update.start_offset)
        state.leader_epoch = max(state.leader_epoch, update.leader_epoch)
        state.start_offset = max(state.start_offset, update.start_offset)
        state.batches = combine(state.batches, _batches(update.state_batches), state.start_offset)
        if update.delivery_complete_count >= 0:
            state.delivery_complete_count = update.delivery_complete_count

    def _replay_extension(self, ident: StateKey, value: bytes | None) -> None:
        extension = None if value is None else ShareExtension.decode(value)
        owner = self.states.get(ident)
        if owner is not None:
            owner.extension = extension
        elif extension is not None:
            self._early_extensions[ident] = extension
        else:
            self._early_extensions.pop(ident, None)

    # -- the runtime's contract ----------------------------------------------------------

    def next_deadline_ms(self) -> int | None:
        return None

    def unload(self) -> None:
        self.states.clear()
        self._early_extensions.clear()


def combine(
    batches: list[StateBatch], new: Iterable[StateBatch], start_offset: int
) -> list[StateBatch]:
    """`batches` with each of `new` written over the offsets it covers, in order, and nothing
    before `start_offset` (a batch across it is cut there)."""
    out = list(batches)
    for batch in new:
        out = _overlay(out, batch)
    kept: list[StateBatch] = []
    for b in out:
        if b.last_offset < start_offset:
            continue
        if b.first_offset < start_offset:
            b = StateBatch(start_offset, b.last_offset, b.state, b.delivery_count)
        kept.append(b)
    return kept


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


def _batches(raw: Iterable[SnapshotBatch | UpdateBatch]) -> list[StateBatch]:
    return [
        StateBatch(b.first_offset, b.last_offset, _state_of(b.delivery_state), b.delivery_count)
        for b in raw
    ]


def _copy(state: ShareState) -> ShareState:
    return ShareState(
        start_offset=state.start_offset,
        batches=list(state.batches),
        state_epoch=state.state_epoch,
        snapshot_epoch=state.snapshot_epoch,
        leader_epoch=state.leader_epoch,
        create_timestamp=state.create_timestamp,
        delivery_complete_count=state.delivery_complete_count,
        extension=state.extension,
    )


def _extension_key(key: StateKey) -> bytes:
    return _INT16.pack(EXTENSION_RECORD_TYPE) + ShareSnapshotKey(*key).encode(0)


def _snapshot_key(key: StateKey) -> bytes:
    return _INT16.pack(SNAPSHOT) + ShareSnapshotKey(*key).encode(0)


def _snapshot_record(key: StateKey, state: ShareState, now_ms: int) -> CoordinatorRecord:
    value = ShareSnapshotValue(
        snapshot_epoch=state.snapshot_epoch,
        state_epoch=state.state_epoch,
        leader_epoch=state.leader_epoch,
        start_offset=state.start_offset,
        delivery_complete_count=state.delivery_complete_count,
        create_timestamp=state.create_timestamp,
        write_timestamp=now_ms,
        state_batches=[
            SnapshotBatch(b.first_offset, b.last_offset, int(b.state), b.delivery_count)
            for b in state.batches
        ],
    )
    return CoordinatorRecord(_snapshot_key(key), _INT16.pack(0) + value.encode(0))
