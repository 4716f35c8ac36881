"""The share coordinator shard: Kafka's share-state operations (initialize, read with the
leader epoch, write with its fencing, delete, summary) over ShareSnapshot/ShareUpdate records of
__share_group_state."""

from __future__ import annotations

import struct
import uuid

from strom.coordinator.group.records import CoordinatorRecord
from strom.coordinator.share.coordinator import (
    ShareCoordinatorShard,
    StateWrite,
    coordinator_key,
)
from strom.coordinator.share.extension import ShareExtension, TimerState
from strom.coordinator.share.generated.share_update_key import ShareUpdateKey
from strom.coordinator.share.generated.share_update_value import ShareUpdateValue, StateBatch
from strom.coordinator.share.partition import RecordState
from strom.coordinator.share.partition import StateBatch as Batch
from strom.protocol.errors import ErrorCode

TID = uuid.UUID("12345678-1234-5678-1234-567812345678")
KEY = ("g", TID, 3)


class Log:
    """A shard and the records it wrote, applied as the runtime does."""

    def __init__(self) -> None:
        self.shard = ShareCoordinatorShard(0)
        self.records: list[CoordinatorRecord] = []

    def apply(self, result: tuple[object, list[CoordinatorRecord]]) -> object:
        outcome, records = result
        for r in records:
            self.shard.replay(r)
        self.records += records
        return outcome

    def reloaded(self) -> ShareCoordinatorShard:
        fresh = ShareCoordinatorShard(0)
        for r in self.records:
            fresh.replay(r)
        return fresh


def write(state_epoch: int, leader_epoch: int, start: int, *batches: Batch) -> StateWrite:
    return StateWrite(state_epoch, leader_epoch, start, list(batches), -1)


def test_initialize_read_write_and_reload() -> None:
    log = Log()
    assert log.apply(log.shard.initialize(KEY, 4, -1, now_ms=1000)).error == ErrorCode.NONE
    read = log.apply(log.shard.read(KEY, 7, now_ms=1100))
    assert read.error == ErrorCode.NONE and read.state.start_offset == -1
    assert read.state.state_epoch == 4 and read.state.batches == []
    batches = [
        Batch(10, 12, RecordState.ACKNOWLEDGED, 1),
        Batch(13, 13, RecordState.AVAILABLE, 2),
        Batch(14, 20, RecordState.ARCHIVED, 5),
    ]
    w = StateWrite(4, 7, 10, batches, 3)
    assert log.apply(log.shard.write(KEY, w, now_ms=2000)).error == ErrorCode.NONE
    (record,) = log.records[-1:]
    assert record.key[:2] == b"\x00\x00" and record.value is not None
    assert record.value[:2] == b"\x00\x00"  # a ShareSnapshot, value version 0
    for shard in (log.shard, log.reloaded()):
        state = shard.summary(KEY)
        assert state is not None and state.start_offset == 10 and state.batches == batches
        assert state.leader_epoch == 7 and state.state_epoch == 4
        assert state.create_timestamp == 1000 and state.delivery_complete_count == 3
    # Read again at the same leader epoch: nothing written.
    before = len(log.records)
    assert log.apply(log.shard.read(KEY, 7, now_ms=3000)).state.start_offset == 10
    assert len(log.records) == before
    assert log.shard.summary(("g", TID, 4)) is None and log.shard.summary(("h", TID, 3)) is None


def test_fencing() -> None:
    log = Log()
    log.apply(log.shard.initialize(KEY, 1, 0, now_ms=0))
    assert log.apply(log.shard.read(KEY, 5, now_ms=1)).error == ErrorCode.NONE
    # An older leader can neither read nor write any more; a newer one takes over.
    assert log.apply(log.shard.read(KEY, 4, now_ms=2)).error == ErrorCode.FENCED_LEADER_EPOCH
    old = log.apply(log.shard.write(KEY, write(1, 4, 3), now_ms=3))
    assert old.error == ErrorCode.FENCED_LEADER_EPOCH
    assert log.apply(log.shard.read(KEY, 6, now_ms=4)).error == ErrorCode.NONE
    assert log.apply(log.shard.write(KEY, write(1, 5, 3), 5)).error == ErrorCode.FENCED_LEADER_EPOCH
    # Initialized again at a newer state epoch (AlterShareGroupOffsets): older writes fenced.
    log.apply(log.shard.initialize(KEY, 2, 100, now_ms=6))
    stale = log.apply(log.shard.write(KEY, write(1, 6, 3), 7))
    assert stale.error == ErrorCode.FENCED_STATE_EPOCH
    assert log.apply(log.shard.write(KEY, write(2, 6, 101), 8)).error == ErrorCode.NONE
    assert log.reloaded().summary(KEY).start_offset == 101


def test_refusals() -> None:
    shard = ShareCoordinatorShard(0)
    outcome, records = shard.read(KEY, 0, now_ms=0)
    assert outcome.error == ErrorCode.INVALID_REQUEST and records == []
    assert shard.write(KEY, write(0, 0, 0), 0)[0].error == ErrorCode.INVALID_REQUEST
    assert shard.initialize(("g", TID, -1), 0, 0, 0)[0].error == ErrorCode.INVALID_REQUEST
    assert shard.initialize(KEY, -1, 0, 0)[0].error == ErrorCode.INVALID_REQUEST
    assert shard.read(KEY, -1, 0)[0].error == ErrorCode.INVALID_REQUEST
    assert shard.delete(KEY) == []


def test_writes_overlay_and_the_start_offset_never_moves_back() -> None:
    log = Log()
    log.apply(log.shard.initialize(KEY, 0, 0, now_ms=0))
    log.apply(log.shard.write(KEY, write(0, 0, 0, Batch(0, 9, RecordState.AVAILABLE, 1)), 1))
    log.apply(log.shard.write(KEY, write(0, 0, 2, Batch(4, 5, RecordState.ACKNOWLEDGED, 1)), 2))
    assert log.shard.summary(KEY).batches == [
        Batch(2, 3, RecordState.AVAILABLE, 1),
        Batch(4, 5, RecordState.ACKNOWLEDGED, 1),
        Batch(6, 9, RecordState.AVAILABLE, 1),
    ]
    log.apply(log.shard.write(KEY, write(0, 0, 1), 3))  # behind: the start stays at 2
    assert log.shard.summary(KEY).start_offset == 2
    assert log.apply(log.shard.initialize(KEY, 0, 0, now_ms=4)).error == ErrorCode.NONE
    assert log.shard.summary(KEY).start_offset == 0  # a new initialization replaces it


def test_update_records_overlay_and_tombstone() -> None:
    log = Log()
    log.apply(log.shard.initialize(KEY, 0, 0, now_ms=0))
    log.apply(log.shard.write(KEY, write(0, 0, 0, Batch(0, 9, RecordState.AVAILABLE, 1)), 1))
    key = struct.pack(">h", 1) + ShareUpdateKey(*KEY).encode(1)
    value = ShareUpdateValue(
        snapshot_epoch=0, leader_epoch=3, start_offset=2, state_batches=[StateBatch(4, 5, 2, 1)]
    )
    log.shard.replay(CoordinatorRecord(key, struct.pack(">h", 0) + value.encode(0)))
    state = log.shard.summary(KEY)
    assert state is not None and state.start_offset == 2 and state.leader_epoch == 3
    assert state.batches == [
        Batch(2, 3, RecordState.AVAILABLE, 1),
        Batch(4, 5, RecordState.ACKNOWLEDGED, 1),
        Batch(6, 9, RecordState.AVAILABLE, 1),
    ]
    for r in log.shard.delete(KEY):
        log.shard.replay(r)
    assert log.shard.summary(KEY) is None


def test_coordinator_key_is_kafkas() -> None:
    # SharePartitionKey: "group:<topic id in Kafka's base64>:partition"
    assert coordinator_key("g", TID, 7) == "g:EjRWeBI0VngSNFZ4EjRWeA:7"


def _with_extension(w: StateWrite, extension: ShareExtension | None) -> StateWrite:
    return StateWrite(
        w.state_epoch,
        w.leader_epoch,
        w.start_offset,
        w.batches,
        w.delivery_complete_count,
        extension=extension,
        with_extension=True,
    )


def test_strom_extension_rides_with_the_snapshot() -> None:
    """Issue #16's extension record (type 1000): written with a write that carries a changed
    one, kept by writes that do not carry one (a Kafka broker's) and by a read's new leader
    epoch, gone with a tombstone at a new state epoch; reloads find what the shard had, also
    when compaction left the extension before its snapshot."""
    ext = ShareExtension(timer=TimerState(5_000, 7, 3, 2, b"tok"), rejected=[4])
    log = Log()
    log.apply(log.shard.initialize(KEY, 1, 0, now_ms=1))
    log.apply(log.shard.read(KEY, 1, now_ms=2))
    log.apply(log.shard.write(KEY, _with_extension(write(1, 1, 3), ext), now_ms=3))
    types = [struct.unpack_from(">h", r.key)[0] for r in log.records]
    assert types[-2:] == [0, 1000]
    assert log.shard.states[KEY].extension == ext
    # The same extension again is not written again.
    count = len(log.records)
    log.apply(log.shard.write(KEY, _with_extension(write(1, 1, 3), ext), now_ms=3))
    assert [struct.unpack_from(">h", r.key)[0] for r in log.records[count:]] == [0]
    # A write from a Kafka broker: Kafka's fields only, the extension stays.
    log.apply(log.shard.write(KEY, write(1, 1, 4), now_ms=4))
    assert log.shard.states[KEY].extension == ext
    # A new leader epoch: one snapshot, the extension stays; a read hands it out.
    read = log.apply(log.shard.read(KEY, 2, now_ms=5))
    assert read.state.extension == ext and log.shard.states[KEY].extension == ext
    assert log.reloaded().states[KEY].extension == ext
    # Compaction keeps the newest record per key: the extension may come first.
    newest: dict[bytes, CoordinatorRecord] = {}
    for r in log.records:
        newest.pop(r.key, None)
        newest[r.key] = r
    extension_first = sorted(newest.values(), key=lambda r: r.key[:2] != b"\x03\xe8")
    shard = ShareCoordinatorShard(0)
    for r in extension_first:
        shard.replay(r)
    assert shard.states[KEY].extension == ext
    # A local write without an extension removes it; so does a new state epoch.
    log.apply(log.shard.write(KEY, _with_extension(write(1, 2, 4), None), now_ms=6))
    assert log.shard.states[KEY].extension is None
    assert struct.unpack_from(">h", log.records[-1].key)[0] == 1000
    assert log.records[-1].value is None
    log.apply(log.shard.write(KEY, _with_extension(write(1, 2, 4), ext), now_ms=7))
    log.apply(log.shard.initialize(KEY, 2, 9, now_ms=8))
    assert log.shard.states[KEY].extension is None
    assert log.reloaded().states[KEY].extension is None
