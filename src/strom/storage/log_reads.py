"""Reads over a partition's segments: batches for Fetch, timestamp lookups for ListOffsets and
aborted transactions for read_committed.

Pure functions of a segment list (the caller passes the list it holds, so a concurrent swap by
the cleaner or retention never changes it mid-read; a segment closed under the read raises
SegmentClosedError, which `PartitionLog.read` answers by reading the new list).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from strom.protocol.records.batch_header import BatchHeader, iter_batch_headers
from strom.protocol.records.codec import decode_records
from strom.storage.segment import Segment
from strom.storage.txn_index import AbortedTxn


def read_batches(
    segments: Sequence[Segment],
    fetch_offset: int,
    max_bytes: int,
    limit: int,
    min_one_batch: bool,
    nowait: bool,
) -> tuple[bytes | memoryview, int, int] | None:
    """(records, first batch's base offset, next offset) of the whole batches from the batch
    holding `fetch_offset` below `limit`, from the first segment that has any; None if none.

    `segments` starts with the segment that would hold `fetch_offset`. At most `max_bytes`,
    except that with `min_one_batch` the first batch is returned whole even when bigger. The
    records are the bytes read (or a view of them cut at the last whole batch): never copied
    on their way from the file to the socket.
    """
    for segment in segments:
        if segment.base_offset >= limit:
            break
        found = segment.locate(fetch_offset, nowait)
        if found is None:
            continue  # nothing at or after fetch_offset here (e.g. compacted away)
        start, first = found
        if first.last_offset >= limit and first.base_offset >= limit:
            break
        if limit >= segment.next_offset:
            stop = segment.size
        else:
            boundary = segment.locate(limit, nowait)
            stop = segment.size if boundary is None else boundary[0]
        if stop <= start:
            break  # the first batch straddles the limit
        read = segment.read_nowait if nowait else segment.read
        data = read(start, min(stop - start, max_bytes))
        cut = 0
        last: BatchHeader | None = None
        for rel, header in iter_batch_headers(memoryview(data)):
            cut, last = rel + header.size, header
        if last is None:
            if not min_one_batch:
                break
            data, cut, last = read(start, first.size), first.size, first
        segment.remember_read_end(last.next_offset, start + cut)
        records: bytes | memoryview = (
            data if cut == len(data) and isinstance(data, bytes) else memoryview(data)[:cut]
        )
        return records, first.base_offset, last.next_offset
    return None


def collect_aborted_txns(
    segments: Sequence[Segment], fetch_offset: int, upper_bound: int
) -> list[AbortedTxn]:
    """Aborted transactions overlapping [fetch_offset, upper_bound); `segments` starts with
    the one holding `fetch_offset`."""
    found: list[AbortedTxn] = []
    for segment in segments:
        entries, complete = segment.txn_index.collect(fetch_offset, upper_bound)
        found.extend(entries)
        if complete:
            break
    return found


def offset_for_timestamp(
    segments: Sequence[Segment], log_start_offset: int, timestamp: int
) -> tuple[int, int] | None:
    """(offset, timestamp) of the first record at or after `timestamp`, or None."""
    for segment in segments:
        if segment.max_timestamp < timestamp or segment.next_offset <= log_start_offset:
            continue
        for position, header in segment.locate_timestamp(timestamp):
            if header.max_timestamp < timestamp or header.last_offset < log_start_offset:
                continue
            _, records = decode_records(memoryview(segment.read(position, header.size)))
            for record in records:  # LogAppendTime records decode with the batch time
                if record.timestamp >= timestamp and record.offset >= log_start_offset:
                    return record.offset, record.timestamp
    return None


def latest_timestamp(segments: Sequence[Segment], log_start_offset: int) -> tuple[int, int]:
    """(offset, timestamp) of the record with the largest timestamp; (-1, -1) when none."""
    best: Segment | None = None
    for segment in segments:
        if segment.next_offset <= log_start_offset or segment.max_timestamp < 0:
            continue
        if best is None or segment.max_timestamp > best.max_timestamp:
            best = segment
    if best is None:
        return -1, -1
    found = best.locate(best.offset_of_max_timestamp)
    if found is not None:
        position, header = found
        _, records = decode_records(memoryview(best.read(position, header.size)))
        for record in records:
            if record.timestamp == header.max_timestamp:
                return record.offset, header.max_timestamp
    return best.offset_of_max_timestamp, best.max_timestamp


def offsets_before(
    segments: Sequence[Segment],
    log_start_offset: int,
    timestamp: int,
    max_num_offsets: int,
    now_ms: int,
) -> list[int]:
    """ListOffsets v0: up to `max_num_offsets` segment start offsets, newest first.

    The candidates are each segment's base offset (raised to the log start offset) stamped with
    its file's modification time, plus the log end offset stamped `now_ms` when the active
    segment holds any bytes. -1 (latest) starts from the last candidate, -2 (earliest) from the
    first; another timestamp starts from the last candidate modified at or before it. From
    there the offsets are taken backwards. This is the granularity of Kafka's message format
    v0, which had no timestamps: whole segments, by file time.
    """
    candidates = [(max(s.base_offset, log_start_offset), _modified_ms(s)) for s in segments]
    if segments[-1].size > 0:
        candidates.append((segments[-1].next_offset, now_ms))
    if timestamp == -1:
        start = len(candidates) - 1
    elif timestamp == -2:
        start = 0
    else:
        start = len(candidates) - 1
        while start >= 0 and candidates[start][1] > timestamp:
            start -= 1
    count = min(max_num_offsets, start + 1)
    return sorted((candidates[start - j][0] for j in range(max(count, 0))), reverse=True)


def _modified_ms(segment: Segment) -> int:
    try:
        return os.stat(segment.log_path).st_mtime_ns // 1_000_000
    except FileNotFoundError:  # deleted by retention meanwhile: as Java's File.lastModified
        return 0
