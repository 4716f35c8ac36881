"""Record batch v2 (magic 2): the unit Kafka produces, stores and fetches.

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

Record layout (varints are zigzag, as protobuf's sint32/sint64)::

    length varint (bytes after it), attributes int8 (unused, 0), timestamp_delta varlong,
    offset_delta varint, key_length varint (-1 null), key, value_length varint (-1 null), value,
    header_count varint, then per header: key_length varint, key (UTF-8), value_length varint
    (-1 null), value

The produce path never looks at records: :func:`validate_batches` checks the fixed header and the
CRC (one ``crc32c`` call per batch, over a memoryview) and :func:`assign_offsets` patches the
header in place. Records are decoded (:func:`decode_records`) only where a feature needs them:
compaction, control records, tools and tests.

Errors are :class:`RecordError` subclasses whose ``error_code`` is the Kafka code to answer with:
CRC, length and truncation problems of a batch are CORRUPT_MESSAGE (2), as in Kafka's
``DefaultRecordBatch.ensureValid``; what Kafka's ``ProduceRequest.validateRecords`` and
``LogValidator.validateBatch`` refuse (a magic other than 2, more than one batch, bad record
counts, control batches from clients) and malformed records inside a batch are INVALID_RECORD
(87); a codec id above 4 is UNSUPPORTED_COMPRESSION_TYPE (76); a batch above the size limit is
MESSAGE_TOO_LARGE (10).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from crc32c import crc32c

from strom.protocol.compression import (
    DEFAULT_MAX_DECOMPRESSED,
    CompressionError,
    UnknownCodecError,
    compress,
    decompress,
)

__all__ = [
    "BATCH_HEADER_SIZE",
    "CONTROL_ABORT",
    "CONTROL_COMMIT",
    "LOG_OVERHEAD",
    "MAGIC",
    "NO_PRODUCER_ID",
    "NO_SEQUENCE",
    "NO_TIMESTAMP",
    "TIMESTAMP_CREATE_TIME",
    "TIMESTAMP_LOG_APPEND_TIME",
    "BatchHeader",
    "CorruptRecordError",
    "InvalidRecordError",
    "Record",
    "RecordError",
    "RecordTooLargeError",
    "UnsupportedCompressionError",
    "UnsupportedMagicError",
    "assign_offsets",
    "build_batch",
    "build_control_batch",
    "check_timestamps",
    "decode_records",
    "iter_batch_headers",
    "parse_batch_header",
    "parse_control_record",
    "validate_batches",
]

BATCH_HEADER_SIZE: Final = 61
# base_offset + batch_length: the bytes not counted by batch_length.
LOG_OVERHEAD: Final = 12
MAGIC: Final = 2
# Smallest legal batch_length: a header with no records.
_MIN_BATCH_LENGTH: Final = BATCH_HEADER_SIZE - LOG_OVERHEAD

NO_TIMESTAMP: Final = -1
NO_PRODUCER_ID: Final = -1
NO_SEQUENCE: Final = -1
TIMESTAMP_CREATE_TIME: Final = 0
TIMESTAMP_LOG_APPEND_TIME: Final = 1
CONTROL_ABORT: Final = 0
CONTROL_COMMIT: Final = 1

_INT32_MAX: Final = 0x7FFFFFFF

# Field offsets inside a batch.
_EPOCH_OFFSET: Final = 12
_MAGIC_OFFSET: Final = 16
_CRC_OFFSET: Final = 17
_ATTRIBUTES_OFFSET: Final = 21
_MAX_TIMESTAMP_OFFSET: Final = 35

_ATTR_CODEC_MASK: Final = 0x07
_ATTR_TIMESTAMP_TYPE: Final = 0x08
_ATTR_TRANSACTIONAL: Final = 0x10
_ATTR_CONTROL: Final = 0x20
_ATTR_DELETE_HORIZON: Final = 0x40

# Error codes (plain ints: protocol/errors.py is written separately and not imported here).
_CORRUPT_MESSAGE: Final = 2
_MESSAGE_TOO_LARGE: Final = 10
_UNSUPPORTED_COMPRESSION_TYPE: Final = 76
_INVALID_RECORD: Final = 87

# The whole fixed header in one struct; the field order is BatchHeader's.
_HEADER: Final = struct.Struct(">qiibIHiqqqhii")
_I64: Final = struct.Struct(">q")
_I32: Final = struct.Struct(">i")
_U32: Final = struct.Struct(">I")
_U16: Final = struct.Struct(">H")
_CONTROL_KEY: Final = struct.Struct(">hh")  # version, type
_END_TXN_VALUE: Final = struct.Struct(">hi")  # version, coordinator epoch

assert _HEADER.size == BATCH_HEADER_SIZE


class RecordError(Exception):
    """A batch or record is malformed. ``error_code`` is the Kafka error code to answer with."""

    error_code: int = _CORRUPT_MESSAGE


class CorruptRecordError(RecordError):
    """Bad CRC, impossible lengths, truncated data, undecodable compressed data."""

    error_code = _CORRUPT_MESSAGE


class InvalidRecordError(RecordError):
    """A well-formed batch that Kafka's validation refuses, or malformed records inside one."""

    error_code = _INVALID_RECORD


class UnsupportedMagicError(RecordError):
    """A magic other than 2. Kafka answers INVALID_RECORD for this on Produce v3+."""

    error_code = _INVALID_RECORD


class UnsupportedCompressionError(RecordError):
    """Codec id 5-7."""

    error_code = _UNSUPPORTED_COMPRESSION_TYPE


class RecordTooLargeError(RecordError):
    """The batch is larger than the caller's limit (``message.max.bytes``)."""

    error_code = _MESSAGE_TOO_LARGE


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
        return self.attributes & _ATTR_CODEC_MASK

    @property
    def timestamp_type(self) -> int:
        """0 CreateTime, 1 LogAppendTime."""
        return (self.attributes >> 3) & 1

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _ATTR_TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _ATTR_CONTROL)

    @property
    def has_delete_horizon(self) -> bool:
        return bool(self.attributes & _ATTR_DELETE_HORIZON)

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


@dataclass(slots=True)
class Record:
    """One decoded record. ``offset`` and ``timestamp`` are absolute."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Batch headers: the hot path


def parse_batch_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """The 61-byte header at ``pos`` (the batch itself may extend past ``buf``).

    Raises :class:`CorruptRecordError` when fewer than 61 bytes remain or the length is below
    the header size, :class:`UnsupportedMagicError` for a magic other than 2.
    """
    if len(buf) - pos < BATCH_HEADER_SIZE:
        raise CorruptRecordError(f"truncated batch header at byte {pos}")
    header = BatchHeader._make(_HEADER.unpack_from(buf, pos))
    if header.magic != MAGIC:
        raise UnsupportedMagicError(f"batch at byte {pos} has magic {header.magic}")
    if header.batch_length < _MIN_BATCH_LENGTH:
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
    unpack = _HEADER.unpack_from
    make = BatchHeader._make
    while end - pos >= BATCH_HEADER_SIZE:
        header = make(unpack(buf, pos))
        if header.magic != MAGIC:
            raise UnsupportedMagicError(f"batch at byte {pos} has magic {header.magic}")
        if header.batch_length < _MIN_BATCH_LENGTH:
            raise CorruptRecordError(
                f"batch at byte {pos} has length {header.batch_length}, below the header size"
            )
        size = header.batch_length + LOG_OVERHEAD
        if size > end - pos:
            return
        yield pos, header
        pos += size


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
    unpack = _HEADER.unpack_from
    make = BatchHeader._make
    while pos < end:
        remaining = end - pos
        if from_client and headers:
            raise InvalidRecordError("a produce request may carry only one batch per partition")
        # The magic decides how the rest is laid out, so it is checked before any length.
        if remaining > _MAGIC_OFFSET and view[pos + _MAGIC_OFFSET] != MAGIC:
            raise UnsupportedMagicError(
                f"batch at byte {pos} has magic {view[pos + _MAGIC_OFFSET]}, only 2 is supported"
            )
        if remaining < BATCH_HEADER_SIZE:
            raise CorruptRecordError(f"truncated batch header at byte {pos}")
        header = make(unpack(view, pos))
        if header.batch_length < _MIN_BATCH_LENGTH:
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
        if crc32c(view[pos + _ATTRIBUTES_OFFSET : pos + size]) != header.crc:
            raise CorruptRecordError(f"CRC mismatch in batch at byte {pos}")
        if header.attributes & _ATTR_CODEC_MASK > 4:
            raise UnsupportedCompressionError(
                f"unknown compression codec id {header.attributes & _ATTR_CODEC_MASK}"
            )
        count = header.records_count
        delta = header.last_offset_delta
        if from_client:
            if delta < 0 or count <= 0 or count != delta + 1:
                raise InvalidRecordError(
                    f"batch has records_count {count} and last_offset_delta {delta}"
                )
            if header.attributes & _ATTR_CONTROL:
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
    (attributes,) = _U16.unpack_from(buf, position + _ATTRIBUTES_OFFSET)
    (max_timestamp,) = _I64.unpack_from(buf, position + _MAX_TIMESTAMP_OFFSET)
    new_attributes = attributes | _ATTR_TIMESTAMP_TYPE
    if new_attributes == attributes and max_timestamp == log_append_time_ms:
        return
    _U16.pack_into(buf, position + _ATTRIBUTES_OFFSET, new_attributes)
    _I64.pack_into(buf, position + _MAX_TIMESTAMP_OFFSET, log_append_time_ms)
    (batch_length,) = _I32.unpack_from(buf, position + 8)
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    crc = crc32c(view[position + _ATTRIBUTES_OFFSET : position + LOG_OVERHEAD + batch_length])
    _U32.pack_into(buf, position + _CRC_OFFSET, crc)


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


# --------------------------------------------------------------------------------------------
# Records: decoding


def _read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read one zigzag varint (up to 10 bytes, enough for a varlong) from ``data[pos:end]``."""
    if pos >= end:
        raise InvalidRecordError("record ends inside a varint")
    b = data[pos]
    if b < 0x80:  # one byte: by far the most common case
        return (b >> 1) ^ -(b & 1), pos + 1
    value = b & 0x7F
    shift = 7
    pos += 1
    while True:
        if pos >= end:
            raise InvalidRecordError("record ends inside a varint")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
        if shift >= 70:
            raise InvalidRecordError("varint longer than 10 bytes")


def _parse_records(
    data: bytes, count: int, base_offset: int, base_timestamp: int, log_append_time: int | None
) -> list[Record]:
    end = len(data)
    # Every record takes at least 7 bytes (length, attributes, timestamp delta, offset delta,
    # key length, value length, header count): refuse absurd counts before looping.
    if count > end // 7:
        raise InvalidRecordError(f"records_count {count} does not fit in {end} bytes")
    records: list[Record] = []
    pos = 0
    read = _read_varint
    for _ in range(count):
        length, pos = read(data, pos, end)
        if length < 0 or length > end - pos:
            raise InvalidRecordError(f"record length {length} out of range")
        rec_end = pos + length
        if pos >= rec_end:
            raise InvalidRecordError("empty record")
        pos += 1  # attributes: unused
        timestamp_delta, pos = read(data, pos, rec_end)
        offset_delta, pos = read(data, pos, rec_end)
        key_len, pos = read(data, pos, rec_end)
        if key_len < 0:
            if key_len != -1:
                raise InvalidRecordError(f"negative key length {key_len}")
            key = None
        else:
            if key_len > rec_end - pos:
                raise InvalidRecordError("key runs past its record")
            key = data[pos : pos + key_len]
            pos += key_len
        value_len, pos = read(data, pos, rec_end)
        if value_len < 0:
            if value_len != -1:
                raise InvalidRecordError(f"negative value length {value_len}")
            value = None
        else:
            if value_len > rec_end - pos:
                raise InvalidRecordError("value runs past its record")
            value = data[pos : pos + value_len]
            pos += value_len
        header_count, pos = read(data, pos, rec_end)
        if header_count < 0 or header_count > (rec_end - pos) // 2:
            raise InvalidRecordError(f"header count {header_count} out of range")
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(header_count):
            hkey_len, pos = read(data, pos, rec_end)
            if hkey_len < 0 or hkey_len > rec_end - pos:
                raise InvalidRecordError(f"header key length {hkey_len} out of range")
            # surrogateescape keeps keys that are not UTF-8 byte-exact through a re-encode.
            hkey = data[pos : pos + hkey_len].decode("utf-8", "surrogateescape")
            pos += hkey_len
            hval_len, pos = read(data, pos, rec_end)
            if hval_len < 0:
                if hval_len != -1:
                    raise InvalidRecordError(f"negative header value length {hval_len}")
                hval = None
            else:
                if hval_len > rec_end - pos:
                    raise InvalidRecordError("header value runs past its record")
                hval = data[pos : pos + hval_len]
                pos += hval_len
            headers.append((hkey, hval))
        if pos != rec_end:
            raise InvalidRecordError(f"{rec_end - pos} unread bytes at the end of a record")
        timestamp = (
            log_append_time if log_append_time is not None else base_timestamp + timestamp_delta
        )
        records.append(Record(base_offset + offset_delta, timestamp, key, value, headers))
    if pos != end:
        raise InvalidRecordError(f"{end - pos} bytes left after the last record of the batch")
    return records


def decode_records(
    batch: bytes | bytearray | memoryview, max_decompressed: int = DEFAULT_MAX_DECOMPRESSED
) -> tuple[BatchHeader, list[Record]]:
    """Decode the batch at the start of ``batch`` (bytes past its end are ignored).

    Decompresses (at most ``max_decompressed`` bytes). The CRC is not checked here; batches
    reach this point through :func:`validate_batches` or from the log. In a LogAppendTime batch
    every record gets the batch's max timestamp, as Kafka's readers do.
    """
    view = batch if isinstance(batch, memoryview) else memoryview(batch)
    if len(view) > _MAGIC_OFFSET and view[_MAGIC_OFFSET] != MAGIC:
        raise UnsupportedMagicError(f"magic {view[_MAGIC_OFFSET]}, only 2 is supported")
    if len(view) < BATCH_HEADER_SIZE:
        raise CorruptRecordError("truncated batch header")
    header = BatchHeader._make(_HEADER.unpack_from(view, 0))
    if header.batch_length < _MIN_BATCH_LENGTH:
        raise CorruptRecordError(f"batch length {header.batch_length} below the header size")
    size = header.batch_length + LOG_OVERHEAD
    if size > len(view):
        raise CorruptRecordError(f"batch needs {size} bytes, only {len(view)} present")
    if header.records_count < 0:
        raise CorruptRecordError(f"negative records_count {header.records_count}")
    body = view[BATCH_HEADER_SIZE:size]
    codec = header.attributes & _ATTR_CODEC_MASK
    try:
        data = decompress(codec, body, max_decompressed)
    except UnknownCodecError as exc:
        raise UnsupportedCompressionError(str(exc)) from None
    except CompressionError as exc:
        raise CorruptRecordError(f"cannot decompress batch: {exc}") from None
    log_append_time = header.max_timestamp if header.attributes & _ATTR_TIMESTAMP_TYPE else None
    records = _parse_records(
        data, header.records_count, header.base_offset, header.first_timestamp, log_append_time
    )
    return header, records


# --------------------------------------------------------------------------------------------
# Records: encoding


def _write_varint(out: bytearray, value: int) -> None:
    """Append ``value`` (an int64) as a zigzag varint."""
    zz = (value << 1) ^ (value >> 63)
    while zz >= 0x80:
        out.append((zz & 0x7F) | 0x80)
        zz >>= 7
    out.append(zz)


def _encode_records(records: Sequence[Record], base_offset: int, base_timestamp: int) -> bytearray:
    out = bytearray()
    body = bytearray()
    previous_delta = -1
    for record in records:
        offset_delta = record.offset - base_offset
        if offset_delta <= previous_delta or offset_delta > _INT32_MAX:
            raise ValueError(
                f"record offset {record.offset} out of order or out of range for base offset "
                f"{base_offset}"
            )
        previous_delta = offset_delta
        body.clear()
        body.append(0)  # attributes
        _write_varint(body, record.timestamp - base_timestamp)
        _write_varint(body, offset_delta)
        if record.key is None:
            body.append(1)  # zigzag(-1)
        else:
            _write_varint(body, len(record.key))
            body += record.key
        if record.value is None:
            body.append(1)
        else:
            _write_varint(body, len(record.value))
            body += record.value
        _write_varint(body, len(record.headers))
        for hkey, hval in record.headers:
            encoded = hkey.encode("utf-8", "surrogateescape")
            _write_varint(body, len(encoded))
            body += encoded
            if hval is None:
                body.append(1)
            else:
                _write_varint(body, len(hval))
                body += hval
        _write_varint(out, len(body))
        out += body
    return out


def build_batch(
    records: Sequence[Record],
    *,
    base_offset: int | None = None,
    compression: int = 0,
    timestamp_type: int = TIMESTAMP_CREATE_TIME,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = -1,
    base_sequence: int = NO_SEQUENCE,
    is_transactional: bool = False,
    is_control: bool = False,
    has_delete_horizon: bool = False,
    partition_leader_epoch: int = -1,
    last_offset_delta: int | None = None,
    first_timestamp: int | None = None,
    max_timestamp: int | None = None,
) -> bytes:
    """Encode ``records`` as one v2 batch with a correct CRC.

    Records carry absolute offsets, which must increase; gaps are kept (compaction output).
    ``base_offset`` defaults to the first record's offset (0 for no records),
    ``last_offset_delta`` to the last record's delta (give it to keep a compacted batch's
    original last offset), ``first_timestamp`` to the first record's timestamp (give it for a
    delete horizon), ``max_timestamp`` to the largest record timestamp; both are
    ``NO_TIMESTAMP`` for an empty batch. Record timestamps are stored relative to
    ``first_timestamp``. Misuse (bad offsets, unknown codec) raises ``ValueError``.
    """
    if base_offset is None:
        base_offset = records[0].offset if records else 0
    if first_timestamp is None:
        first_timestamp = records[0].timestamp if records else NO_TIMESTAMP
    if max_timestamp is None:
        max_timestamp = max(r.timestamp for r in records) if records else NO_TIMESTAMP
    natural_last_delta = records[-1].offset - base_offset if records else 0
    if last_offset_delta is None:
        last_offset_delta = natural_last_delta
    elif last_offset_delta < natural_last_delta or last_offset_delta > _INT32_MAX:
        raise ValueError(f"last_offset_delta {last_offset_delta} does not cover the records")
    if not 0 <= compression <= 4:
        raise ValueError(f"unknown compression codec id {compression}")
    attributes = (
        compression
        | (_ATTR_TIMESTAMP_TYPE if timestamp_type == TIMESTAMP_LOG_APPEND_TIME else 0)
        | (_ATTR_TRANSACTIONAL if is_transactional else 0)
        | (_ATTR_CONTROL if is_control else 0)
        | (_ATTR_DELETE_HORIZON if has_delete_horizon else 0)
    )
    body: bytes | bytearray = _encode_records(records, base_offset, first_timestamp)
    if compression:
        body = compress(compression, body)
    out = bytearray(BATCH_HEADER_SIZE)
    out += body
    _HEADER.pack_into(
        out,
        0,
        base_offset,
        len(out) - LOG_OVERHEAD,
        partition_leader_epoch,
        MAGIC,
        0,  # CRC, computed below over the finished bytes
        attributes,
        last_offset_delta,
        first_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    )
    _U32.pack_into(out, _CRC_OFFSET, crc32c(memoryview(out)[_ATTRIBUTES_OFFSET:]))
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Control records (transaction markers)


def build_control_batch(
    kind: int,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    base_offset: int,
    timestamp: int,
    partition_leader_epoch: int = -1,
) -> bytes:
    """A transaction marker: a transactional control batch holding one control record.

    Key: int16 version 0, int16 type (0 abort, 1 commit). Value (the end-transaction marker):
    int16 version 0, int32 coordinator epoch. No sequence, CreateTime, uncompressed, as Kafka's
    ``MemoryRecords.withEndTransactionMarker`` writes it.
    """
    if kind not in (CONTROL_ABORT, CONTROL_COMMIT):
        raise ValueError(f"control record type {kind} is not abort (0) or commit (1)")
    record = Record(
        base_offset,
        timestamp,
        _CONTROL_KEY.pack(0, kind),
        _END_TXN_VALUE.pack(0, coordinator_epoch),
    )
    return build_batch(
        [record],
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        is_transactional=True,
        is_control=True,
        partition_leader_epoch=partition_leader_epoch,
    )


def parse_control_record(record: Record) -> tuple[int, int]:
    """``(type, coordinator_epoch)`` of a control record.

    Types other than abort (0) and commit (1) (Kafka also has leader-change and snapshot
    records) have no coordinator epoch; -1 is returned for them. Newer key and value versions
    are read like version 0, as Kafka does.
    """
    key = record.key
    if key is None or len(key) < _CONTROL_KEY.size:
        raise InvalidRecordError("control record key shorter than 4 bytes")
    version, kind = _CONTROL_KEY.unpack_from(key)
    if version < 0:
        raise InvalidRecordError(f"negative control record key version {version}")
    if kind not in (CONTROL_ABORT, CONTROL_COMMIT):
        return kind, -1
    value = record.value
    if value is None or len(value) < _END_TXN_VALUE.size:
        raise InvalidRecordError("end transaction marker value shorter than 6 bytes")
    _, coordinator_epoch = _END_TXN_VALUE.unpack_from(value)
    return kind, coordinator_epoch
