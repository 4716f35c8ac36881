"""Fetch v0-3: record batches v2 converted down to message format v0 or v1.

Kafka 3.x converts what a Fetch v0-1 (magic 0) or v2-3 (magic 1) reads from a log of v2 batches
(``LazyDownConversionRecords``, ``RecordsUtil.downConvert``); :func:`down_convert` does the same:

- control batches (transaction markers) are dropped: the old formats cannot hold them. Nothing
  else is: these fetch versions have no isolation level, so, as from Kafka, they read
  uncommitted and aborted transactional records like any other;
- an uncompressed batch becomes one message per record, skipping the records before the fetch
  offset (a consumer that stopped in the middle of a batch asks from there);
- a compressed batch becomes one wrapper of the same codec holding all its records (the
  consumer skips those before its offset); magic 1 wrappers carry relative inner offsets;
- a zstd batch cannot be converted (zstd came with v2): UNSUPPORTED_COMPRESSION_TYPE when it
  is the first batch to convert, else the conversion stops before it so that the consumer gets
  the error when it fetches from there;
- timestamps: magic 1 keeps each record's timestamp and the batch's timestamp type (a
  LogAppendTime batch's time for every record); magic 0 has none. Headers are dropped.

Size: the first converted batch is always returned whole (as Kafka guarantees one), the
following messages only while the total stays within the size of the v2 data that was read.
Kafka fills that size exactly, ending in a partial message that old consumers skip; Strom
returns whole messages only.

Nothing to convert: when the data read holds batches but none of them converts to a message
(transaction markers, batches emptied by compaction), the answer is not empty but Kafka's
12-byte "overflow" entry (``LazyDownConversionRecordsSend``): offset -1 and a message size of
61 with no message after it. An old consumer takes it for a message larger than its fetch
size: librdkafka doubles its fetch size and asks again (so a longer read reaches the data
past the empty batches), kafka-python and the Java client report RecordTooLarge (Fetch v0-2)
or "failed to make progress" (v3), instead of waiting without end for a fetch that never
moves; a consumer waiting at a trailing marker gets the same until more data arrives, as from
Kafka. A read of no whole batch stays empty.
"""

from __future__ import annotations

import struct
from typing import Final

from strom.protocol.compression import CODEC_NONE, CODEC_ZSTD, DEFAULT_MAX_DECOMPRESSED
from strom.protocol.records.batch_header import NO_TIMESTAMP, iter_batch_headers
from strom.protocol.records.codec import decode_records
from strom.protocol.records.errors import UnsupportedCompressionError
from strom.protocol.records.legacy import ATTR_LOG_APPEND_TIME, encode_message, encode_wrapper

__all__ = ["OVERFLOW_ENTRY", "down_convert", "down_convert_magic"]

# Offset -1 and a size of one record batch header (61), the smallest length Kafka writes there;
# the 12 bytes are the whole answer, so the message never arrives.
OVERFLOW_ENTRY: Final = struct.pack(">qi", -1, 61)


def down_convert_magic(fetch_version: int) -> int | None:
    """The message format a Fetch version can carry, when it is below v2: 0 for v0-1, 1 for
    v2-3, None from v4 (record batch v2, served unconverted)."""
    if fetch_version <= 1:
        return 0
    if fetch_version <= 3:
        return 1
    return None


def down_convert(
    records: bytes | bytearray | memoryview,
    to_magic: int,
    fetch_offset: int,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
) -> bytes:
    """Convert the whole v2 batches of ``records`` to a magic ``to_magic`` message set.

    Returns :data:`OVERFLOW_ENTRY` when ``records`` holds whole batches but none converts.
    Raises :class:`UnsupportedCompressionError` when the first batch to convert is zstd, and
    the :class:`~strom.protocol.records.errors.RecordError` of a batch that cannot be decoded.
    """
    if to_magic not in (0, 1):
        raise ValueError(f"cannot down-convert to magic {to_magic}")
    view = records if isinstance(records, memoryview) else memoryview(records)
    limit = len(view)
    out: list[bytes] = []
    size = 0
    batches = 0
    for position, header in iter_batch_headers(view):
        batches += 1
        if header.is_control:
            continue
        codec = header.compression
        if codec == CODEC_ZSTD:
            if out:
                break
            raise UnsupportedCompressionError(
                "zstd-compressed batches cannot be converted to message format "
                f"v{to_magic}; fetch with a newer request version"
            )
        _, decoded = decode_records(view[position : position + header.size], max_decompressed)
        log_append_time = header.max_timestamp if header.timestamp_type else None
        if codec == CODEC_NONE:
            attributes = ATTR_LOG_APPEND_TIME if to_magic == 1 and log_append_time else 0
            first_batch = not out
            for record in decoded:
                if record.offset < fetch_offset:
                    continue
                message = encode_message(
                    to_magic,
                    record.offset,
                    record.timestamp if to_magic else NO_TIMESTAMP,
                    record.key,
                    record.value,
                    attributes,
                )
                if not first_batch and size + len(message) > limit:
                    return b"".join(out)
                out.append(message)
                size += len(message)
        elif decoded:
            wrapper = encode_wrapper(
                to_magic,
                codec,
                [(r.offset, r.timestamp, r.key, r.value) for r in decoded],
                log_append_time=log_append_time,
            )
            if out and size + len(wrapper) > limit:
                break
            out.append(wrapper)
            size += len(wrapper)
    if not out and batches:
        return OVERFLOW_ENTRY
    return b"".join(out)
