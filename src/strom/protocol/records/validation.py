"""Checks on whole record batches that need no record decoded: the produce and replication paths.

:func:`validate_batches` checks each fixed header and the CRC (one ``crc32c`` call per batch,
over a memoryview); :func:`check_timestamps` applies the CreateTime bounds from the header.
What is refused and with which error code is in :mod:`strom.protocol.records.errors`.
"""

from __future__ import annotations

from crc32c import crc32c

from strom.protocol.records.batch_header import (
    ATTR_CODEC_MASK,
    ATTR_CONTROL,
    ATTRIBUTES_OFFSET,
    BATCH_HEADER_SIZE,
    HEADER_STRUCT,
    LOG_OVERHEAD,
    MAGIC,
    MAGIC_OFFSET,
    MIN_BATCH_LENGTH,
    NO_TIMESTAMP,
    BatchHeader,
)
from strom.protocol.records.errors import (
    CorruptRecordError,
    InvalidRecordError,
    RecordTooLargeError,
    UnsupportedCompressionError,
    UnsupportedMagicError,
)

__all__ = ["check_timestamps", "validate_batches"]


def validate_batches(
    buf: bytes | bytearray | memoryview,
    max_batch_size: int | None = None,
    *,
    from_client: bool = True,
) -> list[BatchHeader]:
    """Check that ``buf`` is a sequence of whole, intact v2 batches; return their headers.

    Per batch: magic 2, batch length at least the header and within ``buf``, size at most
    ``max_batch_size`` (header included, as Kafka compares with ``message.max.bytes``), the
    CRC-32C, a known codec. With ``from_client`` (a Produce request), also what Kafka refuses
    from clients: an empty buffer or more than one batch, ``records_count`` not positive or not
    ``last_offset_delta + 1``, a control batch, a producer id without a base sequence. Without
    it (replication, log recovery) empty batches and offset gaps left by compaction are allowed.

    No record is looked at. Unlike Kafka, which silently trims a trailing partial batch from a
    produce request, any bytes after the last whole batch are an error here.
    """
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    end = len(view)
    if end == 0 and from_client:
        raise InvalidRecordError("no record batch")
    headers: list[BatchHeader] = []
    pos = 0
    unpack = HEADER_STRUCT.unpack_from
    make = BatchHeader._make
    while pos < end:
        remaining = end - pos
        if from_client and headers:
            raise InvalidRecordError("a produce request may carry only one batch per partition")
        # The magic decides how the rest is laid out, so it is checked before any length.
        if remaining > MAGIC_OFFSET and view[pos + MAGIC_OFFSET] != MAGIC:
            raise UnsupportedMagicError(
                f"batch at byte {pos} has magic {view[pos + MAGIC_OFFSET]}, only 2 is supported"
            )
        if remaining < BATCH_HEADER_SIZE:
            raise CorruptRecordError(f"truncated batch header at byte {pos}")
        header = make(unpack(view, pos))
        if header.batch_length < MIN_BATCH_LENGTH:
            raise CorruptRecordError(
                f"batch at byte {pos} has length {header.batch_length}, below the header size"
            )
        size = header.batch_length + LOG_OVERHEAD
        if size > remaining:
            raise CorruptRecordError(
                f"batch at byte {pos} needs {size} bytes, only {remaining} remain"
            )
        if max_batch_size is not None and size > max_batch_size:
            raise RecordTooLargeError(
                f"batch of {size} bytes exceeds the maximum of {max_batch_size}"
            )
        if crc32c(view[pos + ATTRIBUTES_OFFSET : pos + size]) != header.crc:
            raise CorruptRecordError(f"CRC mismatch in batch at byte {pos}")
        if header.attributes & ATTR_CODEC_MASK > 4:
            raise UnsupportedCompressionError(
                f"unknown compression codec id {header.attributes & ATTR_CODEC_MASK}"
            )
        count = header.records_count
        delta = header.last_offset_delta
        if from_client:
            if delta < 0 or count <= 0 or count != delta + 1:
                raise InvalidRecordError(
                    f"batch has records_count {count} and last_offset_delta {delta}"
                )
            if header.attributes & ATTR_CONTROL:
                raise InvalidRecordError("clients may not write control batches")
            if header.producer_id >= 0 and header.base_sequence < 0:
                raise InvalidRecordError(
                    f"batch of producer id {header.producer_id} has no base sequence"
                )
        elif delta < 0 or count < 0 or count > delta + 1:
            # Compaction may remove records (count below delta + 1) but never adds any.
            raise CorruptRecordError(
                f"batch has records_count {count} and last_offset_delta {delta}"
            )
        headers.append(header)
        pos += size
    return headers


def check_timestamps(
    header: BatchHeader, now_ms: int, before_max_ms: int, after_max_ms: int
) -> bool:
    """Whether the batch's timestamps are within ``[now - before_max, now + after_max]``.

    For CreateTime topics (``log.message.timestamp.before.max.ms`` / ``after.max.ms``). Kafka
    checks every record; from the header alone we check ``max_timestamp`` against the upper
    bound and the base (first record's) timestamp against the lower bound. That is exact for
    batches whose timestamps do not decrease, which is how producers stamp records; a record
    timestamped earlier than the first one of its batch escapes the lower-bound check.
    ``NO_TIMESTAMP`` (-1) is not checked, as in Kafka.
    """
    max_ts = header.max_timestamp
    if max_ts != NO_TIMESTAMP and max_ts - now_ms > after_max_ms:
        return False
    first_ts = header.first_timestamp
    return first_ts == NO_TIMESTAMP or now_ms - first_ts <= before_max_ms
