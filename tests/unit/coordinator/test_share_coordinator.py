"""The share coordinator shard: ShareSnapshot/ShareUpdate records of __share_group_state."""

from __future__ import annotations

import struct
import uuid

from strom.coordinator.group.records import CoordinatorRecord
from strom.coordinator.share.coordinator import ShareCoordinatorShard, coordinator_key
from strom.coordinator.share.generated.share_update_key import ShareUpdateKey
from strom.coordinator.share.generated.share_update_value import ShareUpdateValue, StateBatch
from strom.coordinator.share.partition import RecordState
from strom.coordinator.share.partition import StateBatch as Batch

TID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def test_snapshot_round_trip_and_fresh_load() -> None:
    shard = ShareCoordinatorShard(0)
    batches = [
        Batch(10, 12, RecordState.ACKNOWLEDGED, 1),
        Batch(13, 13, RecordState.AVAILABLE, 2),
        Batch(14, 20, RecordState.ARCHIVED, 5),
    ]
    records = shard.write_state("g", TID, 3, 10, batches, now_ms=1000)
    (record,) = records
    assert record.key[:2] == b"\x00\x00" and record.value is not None
    assert record.value[:2] == b"\x00\x00"  # value version 0
    log = list(records)
    for r in records:
        shard.replay(r)
    state = shard.read_state("g", TID, 3)
    assert state is not None and state.start_offset == 10 and state.batches == batches
    more = shard.write_state("g", TID, 3, 14, batches[2:], now_ms=2000)
    log += more
    for r in more:
        shard.replay(r)
    fresh = ShareCoordinatorShard(0)
    for r in log:
        fresh.replay(r)
    again = fresh.read_state("g", TID, 3)
    assert again is not None and again.start_offset == 14 and again.snapshot_epoch == 1
    assert again.create_timestamp == 1000
    assert shard.read_state("g", TID, 4) is None and shard.read_state("h", TID, 3) is None


def test_update_records_overlay_and_tombstone() -> None:
    shard = ShareCoordinatorShard(0)
    for r in shard.write_state("g", TID, 0, 0, [Batch(0, 9, RecordState.AVAILABLE, 1)], 1):
        shard.replay(r)
    key = struct.pack(">h", 1) + ShareUpdateKey("g", TID, 0).encode(1)
    value = ShareUpdateValue(
        snapshot_epoch=0, leader_epoch=0, start_offset=2, state_batches=[StateBatch(4, 5, 2, 1)]
    )
    shard.replay(CoordinatorRecord(key, struct.pack(">h", 0) + value.encode(0)))
    state = shard.read_state("g", TID, 0)
    assert state is not None and state.start_offset == 2
    assert state.batches == [
        Batch(0, 3, RecordState.AVAILABLE, 1),
        Batch(4, 5, RecordState.ACKNOWLEDGED, 1),
        Batch(6, 9, RecordState.AVAILABLE, 1),
    ]
    for r in shard.delete_state("g", TID, 0):
        shard.replay(r)
    assert shard.read_state("g", TID, 0) is None


def test_coordinator_key_is_kafkas() -> None:
    # SharePartitionKey: "group:<topic id in Kafka's base64>:partition"
    assert coordinator_key("g", TID, 7) == "g:EjRWeBI0VngSNFZ4EjRWeA:7"
