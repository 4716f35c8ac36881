"""The fixed header of a v2 record batch: its layout, parsing it, and stamping it for an append.

Batch layout (big endian; offsets from the start of the batch)::

     0  base_offset             int64    assigned by the broker, outside the CRC
     8  batch_length            int32    bytes after this field (batch size - 12)
    12  partition_leader_epoch  int32    stamped by the broker, outside the CRC
    16  magic                   int8     2
    17  crc                     uint32   CRC-32C of bytes 21 .. end
    21  attributes              int16    bits 0-2 codec, 3 timestamp type (1 LogAppendTime),
                                         4 transactional, 5 control, 6 delete horizon set
    23  last_offset_delta       int32
    27  base_timestamp          int64    first record's timestamp (or the delete horizon)
    35  max_timestamp           int64
    43  producer_id             int64
    51  producer_epoch          int16
    53  base_sequence           int32
    57  records_count           int32
    61  records (compressed as one stream when the codec is not 0)

The layout constants (field offsets, attribute bits, the header struct) are public so that the
sibling modules that validate and build batches use the same ones; outside this package only
the names in ``__all__`` are meant to be used.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final, NamedTuple

from crc32c import crc32c

from strom.protocol.records.errors import CorruptRecordError, UnsupportedMagicError

__all__ = [
    "BATCH_HEADER_SIZE",
    "LOG_OVERHEAD",
    "MAGIC",
    "NO_PRODUCER_ID",
    "NO_SEQUENCE",
    "NO_TIMESTAMP",
    "TIMESTAMP_CREATE_TIME",
    "TIMESTAMP_LOG_APPEND_TIME",
    "BatchHeader",
    "assign_offsets",
    "iter_batch_headers",
    "parse_batch_header",
]

BATCH_HEADER_SIZE: Final = 61
# base_offset + batch_length: the bytes not counted by batch_length.
LOG_OVERHEAD: Final = 12
MAGIC: Final = 2
# Smallest legal batch_length: a header with no records.
MIN_BATCH_LENGTH: Final = BATCH_HEADER_SIZE - LOG_OVERHEAD

NO_TIMESTAMP: Final = -1
NO_PRODUCER_ID: Final = -1
NO_SEQUENCE: Final = -1
TIMESTAMP_CREATE_TIME: Final = 0
TIMESTAMP_LOG_APPEND_TIME: Final = 1

_INT32_MAX: Final = 0x7FFFFFFF

# Field offsets inside a batch.
_EPOCH_OFFSET: Final = 12
MAGIC_OFFSET: Final = 16
CRC_OFFSET: Final = 17
ATTRIBUTES_OFFSET: Final = 21
_MAX_TIMESTAMP_OFFSET: Final = 35

ATTR_CODEC_MASK: Final = 0x07
ATTR_TIMESTAMP_TYPE: Final = 0x08
ATTR_TRANSACTIONAL: Final = 0x10
ATTR_CONTROL: Final = 0x20
ATTR_DELETE_HORIZON: Final = 0x40

# The whole fixed header in one struct; the field order is BatchHeader's.
HEADER_STRUCT: Final = struct.Struct(">qiibIHiqqqhii")
_I64: Final = struct.Struct(">q")
_I32: Final = struct.Struct(">i")
_U32: Final = struct.Struct(">I")
_U16: Final = struct.Struct(">H")

assert HEADER_STRUCT.size == BATCH_HEADER_SIZE


class BatchHeader(NamedTuple):
    """The 61-byte fixed header of a v2 record batch."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    first_timestamp: int  # baseTimestamp in Kafka's format description
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def compression(self) -> int:
        return self.attributes & ATTR_CODEC_MASK

    @property
    def timestamp_type(self) -> int:
        """0 CreateTime, 1 LogAppendTime."""
        return (self.attributes >> 3) & 1

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & ATTR_CONTROL)

    @property
    def has_delete_horizon(self) -> bool:
        return bool(self.attributes & ATTR_DELETE_HORIZON)

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def size(self) -> int:
        """Bytes of the whole batch, header included."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_sequence(self) -> int:
        """Sequence of the last record; sequences wrap from 2**31-1 to 0 as in Kafka."""
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        seq = self.base_sequence + self.last_offset_delta
        return seq - (_INT32_MAX + 1) if seq > _INT32_MAX else seq


def parse_batch_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """The 61-byte header at ``pos`` (the batch itself may extend past ``buf``).

    Raises :class:`CorruptRecordError` when fewer than 61 bytes remain or the length is below
    the header size, :class:`UnsupportedMagicError` for a magic other than 2.
    """
    if len(buf) - pos < BATCH_HEADER_SIZE:
        raise CorruptRecordError(f"truncated batch header at byte {pos}")
    header = BatchHeader._make(HEADER_STRUCT.unpack_from(buf, pos))
    if header.magic != MAGIC:
        raise UnsupportedMagicError(f"batch at byte {pos} has magic {header.magic}")
    if header.batch_length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(
            f"batch at byte {pos} has length {header.batch_length}, below the header size"
        )
    return header


def iter_batch_headers(buf: bytes | bytearray | memoryview) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` for each complete batch in ``buf``.

    Stops quietly at a trailing partial batch (a fetch response may end in one, a log segment
    may have a torn tail): the caller compares the end position with ``len(buf)`` and decides.
    Raises :class:`UnsupportedMagicError` for a magic other than 2 and
    :class:`CorruptRecordError` for a batch length below the header size, since then the next
    batch cannot be found. The CRC is not checked.
    """
    end = len(buf)
    pos = 0
    unpack = HEADER_STRUCT.unpack_from
    make = BatchHeader._make
    while end - pos >= BATCH_HEADER_SIZE:
        header = make(unpack(buf, pos))
        if header.magic != MAGIC:
            raise UnsupportedMagicError(f"batch at byte {pos} has magic {header.magic}")
        if header.batch_length < MIN_BATCH_LENGTH:
            raise CorruptRecordError(
                f"batch at byte {pos} has length {header.batch_length}, below the header size"
            )
        size = header.batch_length + LOG_OVERHEAD
        if size > end - pos:
            return
        yield pos, header
        pos += size


def assign_offsets(
    buf: bytearray | memoryview,
    position: int,
    base_offset: int,
    partition_leader_epoch: int,
    log_append_time_ms: int | None = None,
) -> None:
    """Stamp the batch at ``position`` of the writable ``buf`` for appending to a log.

    Base offset and partition leader epoch lie outside the CRC and are simply written. With
    ``log_append_time_ms`` (a topic with ``message.timestamp.type=LogAppendTime``) this does what
    Kafka's ``DefaultRecordBatch.setMaxTimestamp`` does: set the timestamp-type attribute bit and
    the max timestamp, leave the base timestamp and record deltas alone (readers give every
    record of such a batch the max timestamp), and recompute the CRC, unless nothing changed.
    """
    _I64.pack_into(buf, position, base_offset)
    _I32.pack_into(buf, position + _EPOCH_OFFSET, partition_leader_epoch)
    if log_append_time_ms is None:
        return
    (attributes,) = _U16.unpack_from(buf, position + ATTRIBUTES_OFFSET)
    (max_timestamp,) = _I64.unpack_from(buf, position + _MAX_TIMESTAMP_OFFSET)
    new_attributes = attributes | ATTR_TIMESTAMP_TYPE
    if new_attributes == attributes and max_timestamp == log_append_time_ms:
        return
    _U16.pack_into(buf, position + ATTRIBUTES_OFFSET, new_attributes)
    _I64.pack_into(buf, position + _MAX_TIMESTAMP_OFFSET, log_append_time_ms)
    (batch_length,) = _I32.unpack_from(buf, position + 8)
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    crc = crc32c(view[position + ATTRIBUTES_OFFSET : position + LOG_OVERHEAD + batch_length])
    _U32.pack_into(buf, position + CRC_OFFSET, crc)
