"""Kafka's compaction rules on the stored batches: which empty batches stay, transactions and
their markers, delete horizons kept in the batches across restarts, producer state after a pass."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from crc32c import crc32c
from storage_helpers import (
    append,
    end_txn,
    open_log,
    producer_append,
    stored_batches,
)

from strom.protocol.records.validation import validate_batches
from strom.storage import cleaner
from strom.storage.log_config import LogConfig
from strom.storage.partition_log import PartitionLog
from strom.storage.producer_append import OutOfOrderSequenceError
from strom.storage.segment import Segment

COMPACT = LogConfig(
    segment_bytes=600,
    cleanup_policy=frozenset({"compact"}),
    retention_ms=-1,
    delete_retention_ms=1000,
    min_cleanable_dirty_ratio=0.0,
)


def _offsets(plog: PartitionLog) -> list[int]:
    return [header.base_offset for header, _ in stored_batches(plog)]


def _values(plog: PartitionLog) -> dict[bytes | None, bytes | None]:
    """The latest value per key, as a consumer reading the whole log sees them."""
    return {
        record.key: record.value
        for header, records in stored_batches(plog)
        if not header.is_control
        for record in records
    }


def _reopen(tmp_path: Path, plog: PartitionLog, config: LogConfig = COMPACT) -> PartitionLog:
    plog.close()
    return open_log(tmp_path, config)


def _every_file_is_valid(directory: Path) -> None:
    for path in sorted(directory.glob("*.log")):
        validate_batches(path.read_bytes(), from_client=False)


def test_overwrites_in_small_segments_leave_no_empty_batch(tmp_path: Path) -> None:
    plog = open_log(tmp_path, COMPACT)
    latest: dict[bytes, bytes] = {}
    for round_ in range(2):
        for r in range(30):
            for k in range(4):
                key, value = b"k%d" % k, b"v%d-%d-" % (round_, r) + b"." * 40
                append(plog, [value], keys=[key], timestamp=100 + r)
                latest[key] = value
        plog.roll()
        segments_before = len(plog.segments)
        assert cleaner.clean(plog, now_ms=10_000) is not None
        batches = stored_batches(plog)
        assert all(records for _, records in batches), "an empty batch was left behind"
        assert len(batches) == 4
        assert _values(plog) == latest
        assert len(plog.segments) < segments_before
    _every_file_is_valid(tmp_path / "t-0")
    reopened = _reopen(tmp_path, plog)
    assert _values(reopened) == latest
    reopened.close()


def test_batch_ending_at_the_upper_bound_is_kept_empty_until_it_is_not_last(
    tmp_path: Path,
) -> None:
    plog = open_log(tmp_path, COMPACT)
    for i in range(3):
        append(plog, [b"v%d" % i], keys=[b"k"])
    last = append(plog, [b"keyless"], keys=[None])  # compaction drops keyless records
    plog.roll()
    assert cleaner.clean(plog, now_ms=10_000) is not None
    batches = stored_batches(plog)
    assert [(h.base_offset, len(r)) for h, r in batches] == [(2, 1), (last.first_offset, 0)]
    empty = batches[-1][0]
    assert empty.next_offset == plog.active_segment.base_offset  # the pass's upper bound
    append(plog, [b"w"], keys=[b"other"])
    plog.roll()
    assert cleaner.clean(plog, now_ms=10_000) is not None
    assert [(h.base_offset, len(r)) for h, r in stored_batches(plog)] == [(2, 1), (4, 1)]
    plog.close()


def _kafka_empty_header(
    base_offset: int,
    last_offset_delta: int,
    max_timestamp: int,
    pid: int,
    epoch: int,
    base_sequence: int,
    attributes: int,
) -> bytes:
    """The bytes of Kafka's DefaultRecordBatch.writeEmptyHeader, spelled out field by field."""
    body = struct.pack(
        ">hiqqqhii", attributes, last_offset_delta, -1, max_timestamp, pid, epoch, base_sequence, 0
    )
    crc = crc32c(body)
    return struct.pack(">qiibI", base_offset, 49, 0, 2, crc) + body


def test_last_batch_of_each_active_producer_stays_as_an_empty_batch(tmp_path: Path) -> None:
    plog = open_log(tmp_path, COMPACT)
    producer_append(plog, 5, 0, [b"a", b"b"], [b"a0", b"b0"])
    producer_append(plog, 5, 2, [b"a"], [b"a1"])
    p5_last = producer_append(plog, 5, 3, [b"b"], [b"b1"], timestamp=3_000)
    producer_append(plog, 6, 0, [b"c"], [b"c0"])
    p6_last = producer_append(plog, 6, 1, [b"c"], [b"c1"])
    for key in (b"a", b"b", b"c"):
        append(plog, [key + b"-plain"], keys=[key])
    plog.roll()
    state = {
        pid: (e.producer_epoch, e.last_seq, e.last_data_offset)
        for pid, e in plog.producer_state.producers.items()
    }
    assert cleaner.clean(plog, now_ms=10_000) is not None
    batches = stored_batches(plog)
    empties = [h for h, records in batches if not records]
    assert [(h.producer_id, h.base_sequence, h.last_offset) for h in empties] == [
        (5, 3, p5_last.last_offset),
        (6, 1, p6_last.last_offset),
    ]
    assert all(h.producer_id == -1 for h, records in batches if records)
    assert _values(plog) == {b"a": b"a-plain", b"b": b"b-plain", b"c": b"c-plain"}
    # Byte for byte what Kafka writes for an emptied batch.
    segment = plog.segments[0]
    position, header = next((p, h) for p, h in segment.batches() if h.producer_id == 5)
    assert segment.read(position, header.size) == _kafka_empty_header(
        p5_last.first_offset, 0, 3_000, 5, 0, 3, 0
    )
    _every_file_is_valid(tmp_path / "t-0")
    # Rebuilt from the log alone (no snapshot, unclean): the same producer state.
    plog.close()
    for snapshot in (tmp_path / "t-0").glob("*.snapshot"):
        snapshot.unlink()
    reopened = open_log(tmp_path, COMPACT, recovery_point=0, clean=False)
    rebuilt = reopened.producer_state.producers
    assert {
        pid: (e.producer_epoch, e.last_seq, e.last_data_offset) for pid, e in rebuilt.items()
    } == state
    retry = producer_append(reopened, 5, 3, [b"b"], [b"b1"])  # a retry of the last batch
    assert retry.duplicate and retry.first_offset == p5_last.first_offset
    with pytest.raises(OutOfOrderSequenceError):
        producer_append(reopened, 6, 5, [b"c"], [b"c9"])
    assert not producer_append(reopened, 6, 2, [b"c"], [b"c2"]).duplicate
    reopened.close()


def test_tombstone_horizon_is_stored_in_the_batch_and_survives_a_restart(tmp_path: Path) -> None:
    plog = open_log(tmp_path, COMPACT)
    for i in range(3):
        append(plog, [b"v%d" % i], keys=[b"k"], timestamp=100)
    tombstone = append(plog, [None], keys=[b"k"], timestamp=200)
    append(plog, [b"x"], keys=[b"pad"], timestamp=200)
    plog.roll()
    assert cleaner.clean(plog, now_ms=5_000) is not None
    batches = {h.base_offset: (h, r) for h, r in stored_batches(plog)}
    header, records = batches[tombstone.first_offset]
    assert header.has_delete_horizon and header.first_timestamp == 6_000
    assert records[0].value is None and records[0].timestamp == 200  # record time unchanged
    assert plog.cleaner_horizon_ms == 6_000
    _every_file_is_valid(tmp_path / "t-0")
    plog = _reopen(tmp_path, plog)
    assert plog.cleaner_horizon_ms is None  # not known until the batches are read
    assert cleaner.clean(plog, now_ms=5_500) is None  # not dirty; the horizon is ahead
    assert plog.cleaner_horizon_ms == 6_000  # read back from the batch
    assert _values(plog)[b"k"] is None
    plog = _reopen(tmp_path, plog)
    assert cleaner.clean(plog, now_ms=6_000) is not None  # due by the stored horizon alone
    assert _values(plog) == {b"pad": b"x"}
    assert plog.cleaner_horizon_ms == cleaner.NO_HORIZON
    assert cleaner.clean(plog, now_ms=10**9) is None
    plog.close()


def _dirty(plog: PartitionLog, key: bytes) -> None:
    append(plog, [b"filler"], keys=[key])
    plog.roll()


def test_aborted_records_then_markers_go_as_kafka_removes_them(tmp_path: Path) -> None:
    plog = open_log(tmp_path, COMPACT)
    producer_append(plog, 7, 0, [b"a"], [b"aborted"], transactional=True)  # 0
    abort = end_txn(plog, 7, commit=False)  # 1
    producer_append(plog, 8, 0, [b"b"], [b"b1"], transactional=True)  # 2
    first_commit = end_txn(plog, 8, commit=True)  # 3
    append(plog, [b"a1"], keys=[b"a"])  # 4
    producer_append(plog, 7, 1, [b"x"], [b"x1"], transactional=True)  # 5
    end_txn(plog, 7, commit=True)  # 6
    producer_append(plog, 8, 1, [b"b"], [b"b2"], transactional=True)  # 7: supersedes 2
    end_txn(plog, 8, commit=True)  # 8
    plog.roll()
    assert [t.producer_id for t in plog.collect_aborted_txns(0, 9)] == [7]
    expected = {b"a": b"a1", b"x": b"x1", b"b": b"b2"}

    # Pass 1: the aborted record goes (the aborted transaction index says so), and so does the
    # superseded committed record; the markers stay, the abort keeps its index entry.
    assert cleaner.clean(plog, now_ms=5_000) is not None
    assert _offsets(plog) == [abort, first_commit, 4, 5, 6, 7, 8]
    assert _values(plog) == expected
    assert [t.producer_id for t in plog.collect_aborted_txns(0, 9)] == [7]

    # Pass 2: no batch of either transaction is left: both markers get a delete horizon and
    # the abort leaves the index.
    _dirty(plog, b"f1")
    assert cleaner.clean(plog, now_ms=6_000) is not None
    batches = {h.base_offset: h for h, _ in stored_batches(plog)}
    for offset in (abort, first_commit):
        assert batches[offset].is_control and batches[offset].has_delete_horizon
        assert batches[offset].first_timestamp == 7_000
    assert not batches[6].has_delete_horizon and not batches[8].has_delete_horizon
    assert plog.collect_aborted_txns(0, plog.log_end_offset) == []
    assert plog.cleaner_horizon_ms == 7_000

    # A restart in between: the horizons are read back from the batches.
    plog = _reopen(tmp_path, plog)
    _dirty(plog, b"f2")
    assert cleaner.clean(plog, now_ms=6_500) is not None
    assert abort in _offsets(plog) and first_commit in _offsets(plog)
    assert plog.cleaner_horizon_ms == 7_000
    plog = _reopen(tmp_path, plog)

    # At the horizon the markers go, without any new write.
    assert cleaner.clean(plog, now_ms=7_000) is not None
    offsets = _offsets(plog)
    assert abort not in offsets and first_commit not in offsets
    assert offsets[:5] == [4, 5, 6, 7, 8]
    assert {k: v for k, v in _values(plog).items() if k in expected} == expected
    _every_file_is_valid(tmp_path / "t-0")
    # The producers' last batches and epochs are still there for idempotence and fencing.
    state = plog.producer_state.producers
    assert (state[7].last_data_offset, state[8].last_data_offset) == (5, 7)
    plog.close()


def test_marker_of_a_producer_without_data_stays_while_it_is_its_last_record(
    tmp_path: Path,
) -> None:
    plog = open_log(tmp_path, COMPACT)
    producer_append(plog, 9, 0, [b"k"], [b"x"], transactional=True)  # 0
    end_txn(plog, 9, commit=False)  # 1
    end_txn(plog, 9, commit=False, epoch=1)  # 2: an epoch bump forgets the data batches
    append(plog, [b"v"], keys=[b"other"])  # 3
    plog.roll()
    assert plog.producer_state.producers[9].last_data_offset == -1
    for now in (5_000, 6_000, 7_000, 8_000):
        _dirty(plog, b"f%d" % now)
        assert cleaner.clean(plog, now_ms=now) is not None
    headers = {h.base_offset: (h, r) for h, r in stored_batches(plog)}
    assert 0 not in headers and 1 not in headers
    header, records = headers[2]  # the producer's last marker, emptied but kept
    assert header.is_control and header.producer_epoch == 1 and not records
    plog.close()


def _layout_with_a_superseded_tail(plog: PartitionLog) -> dict[bytes, bytes]:
    """Segments: [u] [k0] [k0..k4] [k0..k4 final]: the first group's second segment contributes
    nothing and the next one does not fit beside the first one's output."""
    append(plog, [b"u" * 40], keys=[b"u"])
    plog.roll()
    append(plog, [b"old" * 13], keys=[b"k0"])
    plog.roll()
    for k in range(5):
        append(plog, [b"older" * 8], keys=[b"k%d" % k])
    plog.roll()
    latest = {b"u": b"u" * 40}
    for k in range(5):
        value = b"final-%d" % k + b"." * 33
        append(plog, [value], keys=[b"k%d" % k])
        latest[b"k%d" % k] = value
    plog.roll()
    return latest


def test_a_group_takes_in_segments_after_one_that_contributed_nothing(tmp_path: Path) -> None:
    plog = open_log(tmp_path, COMPACT)
    latest = _layout_with_a_superseded_tail(plog)
    assert cleaner.clean(plog, now_ms=10_000) is not None
    assert all(records for _, records in stored_batches(plog))
    assert _values(plog) == latest
    plog.close()


def test_crash_in_a_swap_never_brings_back_a_superseded_segment(tmp_path: Path) -> None:
    plog = open_log(tmp_path, COMPACT)
    latest = _layout_with_a_superseded_tail(plog)

    class Crash(Exception):
        pass

    def crashing_delete(self: Segment, unlink: object = None) -> None:
        raise Crash  # right after the swap's commit, before any old segment is gone

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Segment, "delete", crashing_delete)
        with pytest.raises(Crash):
            cleaner.clean(plog, now_ms=10_000)
    assert list((tmp_path / "t-0").glob("*.log.swap"))
    for segment in plog.segments:
        segment.close()
    reopened = open_log(tmp_path, COMPACT, recovery_point=0, clean=False)
    records = [r for _, rs in stored_batches(reopened) for r in rs]
    assert [r.offset for r in records] == sorted({r.offset for r in records})
    assert {r.key: r.value for r in records} == latest
    assert len(records) == len(latest), "a superseded record came back"
    reopened.close()
