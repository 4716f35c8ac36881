"""Walking the record batches stored in a `.log` file.

A segment file is record batches back to back. Every batch starts with Kafka's log entry framing,
an int64 base offset and an int32 length of the rest of the batch, so the batch at byte p ends at
p + 12 + length. Everything else about a batch (its 61-byte header, CRC, records) is the business
of `strom.protocol.records`; this module only reads file ranges with os.pread and hands them to it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator

from strom.protocol.records.batch_header import (
    BATCH_HEADER_SIZE,
    BatchHeader,
    iter_batch_headers,
    parse_batch_header,
)
from strom.protocol.records.errors import RecordError

FRAMING = struct.Struct(">qi")  # base offset, batch length (bytes after this field)
LOG_OVERHEAD = FRAMING.size
SCAN_CHUNK = 64 * 1024

# read(size, position) -> bytes: a locked pread on a segment's file (see Segment.read).
Reader = Callable[[int, int], bytes | bytearray]


def pread_exact(fd: int, size: int, position: int) -> bytes:
    """pread that retries short reads; returns fewer bytes only at end of file."""
    data = os.pread(fd, size, position)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = os.pread(fd, size - got, position + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def read_batch_header(read: Reader, position: int) -> BatchHeader | None:
    """The fixed header of the batch at `position`, or None if it is not a whole v2 header."""
    data = read(BATCH_HEADER_SIZE, position)
    if len(data) < BATCH_HEADER_SIZE:
        return None
    try:
        return parse_batch_header(memoryview(data))
    except RecordError:
        return None


def batch_size_at(read: Reader, position: int, end: int) -> int | None:
    """Size of the batch starting at `position` per its framing, or None if it cannot fit."""
    if end - position < BATCH_HEADER_SIZE:
        return None
    prefix = read(LOG_OVERHEAD, position)
    if len(prefix) < LOG_OVERHEAD:
        return None
    length: int = FRAMING.unpack(prefix)[1]
    size = length + LOG_OVERHEAD
    if size < BATCH_HEADER_SIZE or position + size > end:
        return None
    return size


def scan_headers(read: Reader, start: int, end: int) -> Iterator[tuple[int, BatchHeader]]:
    """Yield (position, header) for every whole batch in [start, end).

    Stops silently at a partial or unparsable batch: callers that must tell a torn tail from a
    clean end (recovery) validate batch by batch instead. Reads in 64 KiB chunks; a batch bigger
    than a chunk is read on its own.
    """
    position = start
    while position < end:
        chunk = read(min(SCAN_CHUNK, end - position), position)
        consumed = 0
        try:
            for rel, header in iter_batch_headers(memoryview(chunk)):
                yield position + rel, header
                consumed = rel + header.size
        except RecordError:
            return
        if consumed == 0:
            size = batch_size_at(read, position, end)
            if size is None:
                return
            whole = read(size, position)
            try:
                first = next(iter_batch_headers(memoryview(whole)), None)
            except RecordError:
                return
            if first is None:
                return
            yield position, first[1]
            consumed = size
        position += consumed
