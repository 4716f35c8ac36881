"""Shared helpers for the storage tests: produce-style buffers, appends, reads."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from strom.protocol.records.batch_header import BatchHeader
from strom.protocol.records.codec import Record, build_batch, decode_records
from strom.protocol.records.validation import validate_batches
from strom.storage.log_config import LogConfig
from strom.storage.partition_log import AppendResult, PartitionLog

TOPIC_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def produce_buffer(
    values: Sequence[bytes | None],
    *,
    keys: list[bytes | None] | None = None,
    timestamp: int = 1_000,
    timestamps: list[int] | None = None,
    producer_id: int = -1,
) -> tuple[bytearray, list[BatchHeader]]:
    """One client batch (offsets from 0) as a produce request would carry it."""
    records = [
        Record(
            i,
            timestamps[i] if timestamps is not None else timestamp + i,
            keys[i] if keys is not None else None,
            value,
        )
        for i, value in enumerate(values)
    ]
    data = build_batch(
        records,
        producer_id=producer_id,
        producer_epoch=0 if producer_id >= 0 else -1,
        base_sequence=0 if producer_id >= 0 else -1,
    )
    headers = validate_batches(data)
    return bytearray(data), headers


def append(
    plog: PartitionLog,
    values: Sequence[bytes | None],
    *,
    now_ms: int = 10_000,
    epoch: int = 0,
    **kwargs: object,
) -> AppendResult:
    buf, headers = produce_buffer(values, **kwargs)  # type: ignore[arg-type]
    result = plog.append_as_leader(buf, headers, epoch, now_ms)
    plog.update_high_watermark(plog.log_end_offset)
    return result


def records_of(data: bytes | memoryview) -> list[Record]:
    """Decode every batch in `data`."""
    out: list[Record] = []
    position = 0
    view = memoryview(data)
    while position < len(data):
        header, records = decode_records(view[position:])
        out.extend(records)
        position += header.size
    return out


def read_all(plog: PartitionLog, start: int | None = None) -> list[Record]:
    """Every record from `start` (log start) to the high watermark, segment by segment."""
    offset = plog.log_start_offset if start is None else start
    out: list[Record] = []
    while offset < plog.high_watermark:
        result = plog.read(offset, 1 << 30, plog.high_watermark, True)
        if not result.records:
            break
        out.extend(r for r in records_of(result.records) if r.offset >= offset)
        offset = result.next_offset
    return out


def open_log(
    directory: Path,
    config: LogConfig | None = None,
    *,
    recovery_point: int | None = None,
    clean: bool = True,
    log_start_offset: int | None = None,
) -> PartitionLog:
    return PartitionLog.open(
        directory / "t-0",
        "t",
        0,
        TOPIC_ID,
        config or LogConfig(),
        recovery_point,
        clean,
        log_start_offset,
        now_ms=0,
    )


def producer_append(
    plog: PartitionLog,
    pid: int,
    seq: int,
    keys: Sequence[bytes | None],
    values: Sequence[bytes | None],
    *,
    epoch: int = 0,
    transactional: bool = False,
    timestamp: int = 1_000,
    now_ms: int = 10_000,
) -> AppendResult:
    """An idempotent (or transactional) producer's batch, as a produce request carries it."""
    records = [
        Record(i, timestamp + i, key, value)
        for i, (key, value) in enumerate(zip(keys, values, strict=True))
    ]
    data = build_batch(
        records,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        is_transactional=transactional,
    )
    result = plog.append_as_leader(bytearray(data), validate_batches(data), 0, now_ms)
    plog.update_high_watermark(plog.log_end_offset)
    return result


def end_txn(plog: PartitionLog, pid: int, commit: bool, *, epoch: int = 0) -> int:
    """The transaction coordinator's marker for `pid`; returns its offset."""
    offset = plog.append_marker(pid, epoch, 0, commit, 0, 20_000)
    plog.update_high_watermark(plog.log_end_offset)
    return offset


def stored_batches(plog: PartitionLog) -> list[tuple[BatchHeader, list[Record]]]:
    """Every batch in the log's segment files, decoded, in offset order."""
    out: list[tuple[BatchHeader, list[Record]]] = []
    for segment in plog.segments:
        for position, header in segment.batches():
            out.append(decode_records(segment.read(position, header.size)))
    return out
