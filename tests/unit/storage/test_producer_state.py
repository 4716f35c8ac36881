"""Producer state: sequence and epoch rules, duplicates, snapshots, rebuilding after a crash."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from crc32c import crc32c
from storage_helpers import open_log

from strom.protocol.records.batch_header import BatchHeader
from strom.protocol.records.codec import Record, build_batch
from strom.protocol.records.validation import validate_batches
from strom.storage.log_config import LogConfig
from strom.storage.partition_log import PartitionLog
from strom.storage.producer_append import (
    INT32_MAX,
    InvalidProducerEpochError,
    InvalidTxnStateError,
    Origin,
    OutOfOrderSequenceError,
    ProducerStateEntry,
    TransactionCoordinatorFencedError,
)
from strom.storage.producer_snapshot import snapshot_path
from strom.storage.producer_state import ProducerStateManager, read_entries, write_entries

PID = 1000


def batch(
    seq: int,
    count: int = 1,
    *,
    pid: int = PID,
    epoch: int = 0,
    txn: bool = False,
    ts: int = 5_000,
) -> tuple[bytearray, list[BatchHeader]]:
    records = [Record(i, ts, b"k%d" % i, b"v%d" % i) for i in range(count)]
    data = build_batch(
        records, producer_id=pid, producer_epoch=epoch, base_sequence=seq, is_transactional=txn
    )
    return bytearray(data), validate_batches(data)


def produce(plog: PartitionLog, seq: int, count: int = 1, **kwargs: object) -> tuple[int, bool]:
    buf, headers = batch(seq, count, **kwargs)  # type: ignore[arg-type]
    result = plog.append_as_leader(buf, headers, 0, 10_000)
    plog.update_high_watermark(plog.log_end_offset)
    return result.first_offset, result.duplicate


# -- the sequence rules -------------------------------------------------------------------------

# (state before: (epoch, last sequence) or None for an unknown producer, batch epoch, batch first
# sequence, batch records) -> None (accepted) or the error.
RULES: list[tuple[tuple[int, int] | None, int, int, int, type[Exception] | None]] = [
    (None, 0, 0, 1, None),  # a new producer starts at 0
    (None, 0, 17, 1, None),  # unknown producer: any sequence (KIP-360, no UNKNOWN_PRODUCER_ID)
    (None, 3, 5, 2, None),
    ((0, 4), 0, 5, 1, None),  # in sequence
    ((0, 4), 0, 5, 10, None),
    ((0, 4), 0, 6, 1, OutOfOrderSequenceError),  # a gap
    ((0, 4), 0, 4, 2, OutOfOrderSequenceError),  # neither next nor a remembered batch
    ((0, 4), 0, 0, 1, OutOfOrderSequenceError),
    ((0, INT32_MAX), 0, 0, 1, None),  # wraps from 2**31-1 to 0
    ((0, INT32_MAX), 0, INT32_MAX, 2, OutOfOrderSequenceError),
    ((0, 4), 1, 0, 1, None),  # a bumped epoch restarts at 0
    ((0, 4), 1, 5, 1, OutOfOrderSequenceError),  # ... and only at 0
    ((2, 4), 1, 5, 1, InvalidProducerEpochError),  # an older epoch is fenced
    ((2, 4), 1, 0, 1, InvalidProducerEpochError),
]


@pytest.mark.parametrize(("before", "epoch", "seq", "count", "error"), RULES)
def test_sequence_rules(
    tmp_path: Path,
    before: tuple[int, int] | None,
    epoch: int,
    seq: int,
    count: int,
    error: type[Exception] | None,
) -> None:
    state = ProducerStateManager(tmp_path, "t-0")
    if before is not None:
        known_epoch, last_seq = before
        entry = ProducerStateEntry(PID)
        entry.add_batch(known_epoch, last_seq, 99, 0, 1_000)
        state.load_entry(entry)
    _, headers = batch(seq, count, epoch=epoch)
    if error is None:
        analysis = state.analyze(headers, 100, Origin.CLIENT)
        assert analysis.duplicate is None
        state.apply(analysis, None)
        assert state.producers[PID].last_seq == (seq + count - 1) % (INT32_MAX + 1)
        assert state.producers[PID].producer_epoch == epoch
    else:
        with pytest.raises(error):
            state.analyze(headers, 100, Origin.CLIENT)


def test_replication_origin_checks_nothing(tmp_path: Path) -> None:
    state = ProducerStateManager(tmp_path, "t-0")
    entry = ProducerStateEntry(PID)
    entry.add_batch(2, 4, 99, 0, 1_000)
    state.load_entry(entry)
    _, headers = batch(50, epoch=1)
    state.apply(state.analyze(headers, 100, Origin.REPLICATION), None)
    assert state.producers[PID].last_seq == 50


# -- duplicates and fencing through the log ------------------------------------------------------


def test_duplicate_is_acknowledged_with_its_original_offset(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    produce(plog, 0, 1, pid=7, ts=1)  # another producer first, so offsets differ from sequences
    first = [produce(plog, seq, 2) for seq in (0, 2, 4, 6, 8)]
    assert first == [(1, False), (3, False), (5, False), (7, False), (9, False)]
    end = plog.log_end_offset
    # Every one of the last five batches is recognised, in any order, and not written again.
    for seq, (offset, _) in reversed(list(zip((0, 2, 4, 6, 8), first, strict=True))):
        assert produce(plog, seq, 2) == (offset, True)
    assert plog.log_end_offset == end
    assert produce(plog, 10, 2) == (end, False)
    # The oldest batch has now left the window of five: its retry is out of order.
    with pytest.raises(OutOfOrderSequenceError):
        produce(plog, 0, 2)
    plog.close()


def test_duplicate_must_match_the_whole_range(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    produce(plog, 0, 3)
    with pytest.raises(OutOfOrderSequenceError):
        produce(plog, 0, 2)
    plog.close()


def test_epoch_fencing_and_bump(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    produce(plog, 0, 1, epoch=1)
    produce(plog, 1, 1, epoch=1)
    with pytest.raises(InvalidProducerEpochError) as err:
        produce(plog, 2, 1, epoch=0)
    assert err.value.error_code == 47
    assert produce(plog, 0, 1, epoch=2) == (2, False)
    with pytest.raises(InvalidProducerEpochError):
        produce(plog, 2, 1, epoch=1)
    # A duplicate of the old epoch is not recognised after the bump.
    with pytest.raises(InvalidProducerEpochError):
        produce(plog, 1, 1, epoch=1)
    plog.close()


def test_non_idempotent_batches_skip_producer_state(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    data = build_batch([Record(0, 1, None, b"x")])
    for _ in range(3):
        plog.append_as_leader(bytearray(data), validate_batches(data), 0, 10)
    assert plog.log_end_offset == 3
    assert plog.producer_state.producers == {}
    plog.close()


def test_plain_batch_inside_a_transaction_is_refused(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    produce(plog, 0, 1, txn=True)
    with pytest.raises(InvalidTxnStateError):
        produce(plog, 1, 1, txn=False)
    plog.close()


def test_marker_fencing(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    produce(plog, 0, 1, epoch=3, txn=True)
    with pytest.raises(InvalidProducerEpochError):
        plog.append_marker(PID, 2, 0, True, 0, 20_000)
    plog.append_marker(PID, 3, 5, True, 0, 20_000)
    produce(plog, 1, 1, epoch=3, txn=True)
    with pytest.raises(TransactionCoordinatorFencedError):
        plog.append_marker(PID, 3, 4, True, 0, 20_000)
    # Transaction version 2: the marker carries a bumped epoch; the same epoch is refused
    # while a transaction is open.
    with pytest.raises(InvalidProducerEpochError):
        plog.append_marker(PID, 3, 5, False, 0, 20_000, transaction_version=2)
    plog.append_marker(PID, 4, 5, False, 0, 20_000, transaction_version=2)
    assert plog.producer_state.producers[PID].producer_epoch == 4
    plog.close()


# -- snapshots ------------------------------------------------------------------------------------


def test_snapshot_byte_layout_and_round_trip(tmp_path: Path) -> None:
    a = ProducerStateEntry(5, 2, 7, 123_456, None)
    a.add_batch(2, 41, 1_000, 9, 123_456)
    b = ProducerStateEntry(6, 0, -1, 99, 1_500)  # inside a transaction, no batch remembered
    path = snapshot_path(tmp_path, 2_000)
    assert path.name == "00000000000000002000.snapshot"
    write_entries(path, [a, b], sync=True)
    data = path.read_bytes()
    assert len(data) == 2 + 4 + 4 + 2 * 46
    version, crc, count = struct.unpack_from(">hIi", data)
    assert (version, count) == (1, 2)
    assert crc == crc32c(data[6:])
    assert struct.unpack_from(">qhiqiqiq", data, 10) == (5, 2, 41, 1_000, 9, 123_456, 7, -1)
    assert struct.unpack_from(">qhiqiqiq", data, 56) == (6, 0, -1, -1, 0, 99, -1, 1_500)
    loaded = {entry.producer_id: entry for entry in read_entries(path)}
    assert loaded[5].producer_epoch == 2
    assert (loaded[5].first_seq, loaded[5].last_seq, loaded[5].last_data_offset) == (32, 41, 1_000)
    assert loaded[5].coordinator_epoch == 7
    assert loaded[6].current_txn_first_offset == 1_500
    assert loaded[6].is_empty


def test_corrupt_snapshot_is_skipped(tmp_path: Path) -> None:
    plog = open_log(tmp_path, LogConfig(segment_bytes=300))
    for seq in range(6):
        produce(plog, seq * 2, 2)
    plog.close()
    snaps = sorted((tmp_path / "t-0").glob("*.snapshot"))
    assert len(snaps) >= 2
    latest = snaps[-1]
    raw = bytearray(latest.read_bytes())
    raw[-1] ^= 0xFF
    latest.write_bytes(bytes(raw))
    plog = open_log(tmp_path, LogConfig(segment_bytes=300))
    assert not latest.exists() or latest.read_bytes() != bytes(raw)
    assert plog.producer_state.producers[PID].last_seq == 11
    plog.close()


def _state(plog: PartitionLog) -> dict[int, tuple[object, ...]]:
    return {
        pid: (
            e.producer_epoch,
            e.last_seq,
            e.last_data_offset,
            e.coordinator_epoch,
            e.current_txn_first_offset,
            e.last_timestamp,
        )
        for pid, e in plog.producer_state.producers.items()
    }


def _busy_log(tmp_path: Path) -> tuple[PartitionLog, LogConfig]:
    config = LogConfig(segment_bytes=400, index_interval_bytes=50)
    plog = open_log(tmp_path, config)
    for i in range(4):
        produce(plog, i * 2, 2, pid=1)
        produce(plog, i, 1, pid=2, epoch=3, txn=True)
        if i % 2:
            plog.append_marker(2, 3, 1, i == 3, 0, 20_000 + i)
        produce(plog, i * 3, 3, pid=3, epoch=1, txn=True)
    plog.append_marker(3, 1, 0, False, 0, 30_000)
    produce(plog, 12, 1, pid=3, epoch=1, txn=True)  # left open
    plog.update_high_watermark(plog.log_end_offset)
    return plog, config


def test_rebuild_after_unclean_shutdown_gives_the_same_state(tmp_path: Path) -> None:
    plog, config = _busy_log(tmp_path)
    assert len(plog.segments) > 2
    expected = _state(plog)
    expected_lso = plog.last_stable_offset
    expected_aborts = plog.collect_aborted_txns(0, plog.log_end_offset)
    assert expected_lso < plog.high_watermark
    assert [t.producer_id for t in expected_aborts] == [2, 3]
    # A crash: no close (so no snapshot at the log end), nothing flushed, indexes torn.
    for segment in plog.segments:
        segment.close()
    for path in (tmp_path / "t-0").glob("*.txnindex"):
        path.write_bytes(b"")
    reopened = PartitionLog.open(
        tmp_path / "t-0", "t", 0, plog.topic_id, config, 0, False, now_ms=0
    )
    assert _state(reopened) == expected
    assert reopened.last_stable_offset == expected_lso
    assert reopened.collect_aborted_txns(0, reopened.log_end_offset) == expected_aborts
    reopened.close()
    # And from the clean close's snapshot, replaying nothing.
    again = open_log(tmp_path, config)
    assert _state(again) == expected
    assert again.last_stable_offset == expected_lso
    again.close()


def test_clean_close_writes_a_snapshot_at_the_log_end(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    produce(plog, 0, 3)
    plog.close()
    assert (tmp_path / "t-0" / "00000000000000000003.snapshot").exists()


def test_truncation_reloads_producer_state(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=150)
    plog = open_log(tmp_path, config)
    for seq in range(8):
        produce(plog, seq, 1)
    assert len(plog.segments) > 2
    plog.truncate_to(3)
    assert plog.producer_state.producers[PID].last_seq == 2
    assert all(int(p.stem) <= 3 for p in (tmp_path / "t-0").glob("*.snapshot"))
    assert produce(plog, 3, 1) == (3, False)
    plog.close()


def test_retention_deletes_snapshots_with_segments(tmp_path: Path) -> None:
    from strom.storage.retention import delete_expired_segments

    config = LogConfig(segment_bytes=300, retention_bytes=0)
    plog = open_log(tmp_path, config)
    for seq in range(8):
        produce(plog, seq, 1)
    bases = {s.base_offset for s in plog.segments}
    snapshots = {int(p.stem) for p in (tmp_path / "t-0").glob("*.snapshot")}
    assert snapshots <= bases
    delete_expired_segments(plog, 10_000)
    remaining = {int(p.stem) for p in (tmp_path / "t-0").glob("*.snapshot")}
    assert all(offset >= plog.segments[0].base_offset for offset in remaining)
    plog.close()


def test_expiry_keeps_producers_inside_a_transaction(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    produce(plog, 0, 1, pid=1, ts=1_000)
    produce(plog, 0, 1, pid=2, ts=1_000, txn=True)
    produce(plog, 0, 1, pid=3, ts=9_000)
    plog.producer_id_expiration_ms = 5_000
    assert plog.remove_expired_producers(10_000) == 1
    assert set(plog.producer_state.producers) == {2, 3}
    # An expired producer is unknown again: any sequence is accepted.
    assert produce(plog, 42, 1, pid=1)[1] is False
    plog.close()


def test_truncation_below_every_snapshot_replays_from_the_start(tmp_path: Path) -> None:
    plog = open_log(tmp_path, LogConfig(segment_bytes=150))
    for seq in range(8):
        produce(plog, seq, 1)
    plog.truncate_to(1)  # every snapshot (at segment bases >= 2) is above the new end
    # They are gone; the replay from the log start wrote one at the new end.
    assert [p.name for p in (tmp_path / "t-0").glob("*.snapshot")] == [
        "00000000000000000001.snapshot"
    ]
    assert plog.producer_state.producers[PID].last_seq == 0
    with pytest.raises(OutOfOrderSequenceError):
        produce(plog, 5, 1)
    assert produce(plog, 1, 1) == (1, False)
    plog.close()
