"""Transactions in the log: the last stable offset and the transaction index."""

from __future__ import annotations

import struct
from pathlib import Path

from storage_helpers import append, open_log, records_of

from strom.protocol.records.codec import Record, build_batch, decode_records
from strom.protocol.records.validation import validate_batches
from strom.storage.cleaner import clean
from strom.storage.log_config import LogConfig
from strom.storage.partition_log import PartitionLog
from strom.storage.txn_index import AbortedTxn, TransactionIndex


def txn_batch(
    plog: PartitionLog, pid: int, seq: int, count: int = 2, key: bytes | None = None
) -> int:
    records = [Record(i, 1_000, key or b"k%d" % i, b"v%d" % i) for i in range(count)]
    data = build_batch(
        records, producer_id=pid, producer_epoch=0, base_sequence=seq, is_transactional=True
    )
    result = plog.append_as_leader(bytearray(data), validate_batches(data), 0, 10_000)
    plog.update_high_watermark(plog.log_end_offset)
    return result.first_offset


def marker(plog: PartitionLog, pid: int, commit: bool) -> int:
    offset = plog.append_marker(pid, 0, 0, commit, 0, 20_000)
    plog.update_high_watermark(plog.log_end_offset)
    return offset


def test_lso_stops_at_an_open_transaction_and_abort_is_indexed(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    append(plog, [b"a", b"b"])  # 0-1, plain
    first = txn_batch(plog, 10, 0)  # 2-3
    append(plog, [b"c"])  # 4, plain, after the transaction began
    assert plog.high_watermark == 5
    assert plog.last_stable_offset == first == 2
    read = plog.read(0, 1 << 20, plog.last_stable_offset, True)
    assert read.next_offset == 2
    txn_batch(plog, 10, 2)  # 5-6
    abort_at = marker(plog, 10, commit=False)  # 7
    assert abort_at == 7
    assert plog.last_stable_offset == plog.high_watermark == 8
    assert plog.collect_aborted_txns(0, 8) == [AbortedTxn(10, 2, 7, 8)]
    assert plog.collect_aborted_txns(8, 9) == []
    assert plog.collect_aborted_txns(7, 8) == [AbortedTxn(10, 2, 7, 8)]
    # The marker batch is a control batch holding an ABORT record.
    data = plog.read(7, 1 << 20, 8, True).records
    header, records = decode_records(data)
    assert header.is_control and header.is_transactional and header.producer_id == 10
    assert records[0].key == b"\x00\x00\x00\x00"
    # Index file format: 34 bytes, version 0.
    raw = (tmp_path / "t-0" / "00000000000000000000.txnindex").read_bytes()
    assert raw == struct.pack(">hqqqq", 0, 10, 2, 7, 8)
    plog.close()


def test_commit_is_not_indexed_and_lso_waits_for_the_other_producer(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    txn_batch(plog, 1, 0)  # 0-1
    txn_batch(plog, 2, 0)  # 2-3
    assert plog.last_stable_offset == 0
    marker(plog, 1, commit=False)  # 4
    # Producer 2's transaction is still open: the entry's LSO is its first offset.
    assert plog.collect_aborted_txns(0, 5) == [AbortedTxn(1, 0, 4, 2)]
    assert plog.last_stable_offset == 2
    marker(plog, 2, commit=True)  # 5
    assert plog.last_stable_offset == 6
    assert len(plog.collect_aborted_txns(0, 6)) == 1
    plog.close()


def test_lso_waits_for_the_high_watermark_after_the_marker(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    txn_batch(plog, 1, 0)  # 0-1
    plog.append_marker(1, 0, 0, True, 0, 20_000)  # 2, the high watermark not moved yet
    assert plog.high_watermark == 2
    assert plog.last_stable_offset == 0
    plog.update_high_watermark(plog.log_end_offset)
    assert plog.last_stable_offset == 3
    plog.close()


def test_aborted_transactions_spanning_segments(tmp_path: Path) -> None:
    plog = open_log(tmp_path, LogConfig(segment_bytes=250))
    txn_batch(plog, 1, 0)
    for i in range(6):
        append(plog, [b"x" * 40 + bytes([i])])
    marker(plog, 1, commit=False)
    assert len(plog.segments) > 2
    marker_segment = plog.segments[-1]
    assert marker_segment.txn_index.entries()[0].first_offset == 0
    # A fetch of the first segment sees the abort whose marker is in a later segment.
    assert [t.producer_id for t in plog.collect_aborted_txns(0, 2)] == [1]
    plog.close()


def test_transaction_index_truncation_and_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "x.txnindex"
    index = TransactionIndex(path, 0)
    index.append(AbortedTxn(1, 0, 5, 6))
    index.append(AbortedTxn(2, 3, 9, 10))
    index.close()
    path.write_bytes(path.read_bytes() + b"\x00\x01")  # a torn entry
    again = TransactionIndex(path, 0)
    assert again.entries() == [AbortedTxn(1, 0, 5, 6), AbortedTxn(2, 3, 9, 10)]
    assert path.stat().st_size == 68
    again.truncate_to(9)
    assert TransactionIndex(path, 0).entries() == [AbortedTxn(1, 0, 5, 6)]
    again.close()


def test_cleaner_keeps_the_index_and_ignores_aborted_records_for_keys(tmp_path: Path) -> None:
    config = LogConfig(
        segment_bytes=400, cleanup_policy=frozenset({"compact"}), min_cleanable_dirty_ratio=0.0
    )
    plog = open_log(tmp_path, config)
    append(plog, [b"committed"], keys=[b"k"])  # 0
    txn_batch(plog, 7, 0, count=1, key=b"k")  # 1: aborted, must not shadow offset 0
    marker(plog, 7, commit=False)  # 2
    for i in range(8):
        append(plog, [b"filler" * 5], keys=[b"f%d" % i])
    plog.roll()
    assert clean(plog, 100_000) is not None
    kept = records_of(plog.read(0, 1 << 20, plog.high_watermark, True).records)
    assert any(r.offset == 0 and r.value == b"committed" for r in kept)
    assert plog.collect_aborted_txns(0, plog.log_end_offset) == [AbortedTxn(7, 1, 2, 3)]
    plog.close()
    reopened = open_log(tmp_path, config)
    assert reopened.collect_aborted_txns(0, reopened.log_end_offset) == [AbortedTxn(7, 1, 2, 3)]
    reopened.close()


def test_cleaner_stops_below_an_open_transaction(tmp_path: Path) -> None:
    config = LogConfig(
        segment_bytes=300, cleanup_policy=frozenset({"compact"}), min_cleanable_dirty_ratio=0.0
    )
    plog = open_log(tmp_path, config)
    txn_batch(plog, 7, 0, count=1, key=b"k")
    for _ in range(10):
        append(plog, [b"v" * 30], keys=[b"k"])
    plog.roll()
    assert clean(plog, 100_000) is None  # everything is above the LSO (0)
    plog.close()
