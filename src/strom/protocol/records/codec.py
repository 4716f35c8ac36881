"""Records inside a v2 batch: decoding them and building whole batches from them.

Record layout (varints are zigzag, as protobuf's sint32/sint64)::

    length varint (bytes after it), attributes int8 (unused, 0), timestamp_delta varlong,
    offset_delta varint, key_length varint (-1 null), key, value_length varint (-1 null), value,
    header_count varint, then per header: key_length varint, key (UTF-8), value_length varint
    (-1 null), value

All records of a batch follow its fixed header (:mod:`strom.protocol.records.batch_header`),
compressed as one stream when the batch's codec is not 0.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from crc32c import crc32c

from strom.protocol.compression import (
    DEFAULT_MAX_DECOMPRESSED,
    CompressionError,
    UnknownCodecError,
    compress,
    decompress,
)
from strom.protocol.records.batch_header import (
    ATTR_CODEC_MASK,
    ATTR_CONTROL,
    ATTR_DELETE_HORIZON,
    ATTR_TIMESTAMP_TYPE,
    ATTR_TRANSACTIONAL,
    ATTRIBUTES_OFFSET,
    BATCH_HEADER_SIZE,
    CRC_OFFSET,
    HEADER_STRUCT,
    LOG_OVERHEAD,
    MAGIC,
    MAGIC_OFFSET,
    MIN_BATCH_LENGTH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    NO_TIMESTAMP,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    BatchHeader,
)
from strom.protocol.records.errors import (
    CorruptRecordError,
    InvalidRecordError,
    UnsupportedCompressionError,
    UnsupportedMagicError,
)

__all__ = ["Record", "build_batch", "build_empty_batch", "decode_records"]

_INT32_MAX: Final = 0x7FFFFFFF
_U32: Final = struct.Struct(">I")


@dataclass(slots=True)
class Record:
    """One decoded record. ``offset`` and ``timestamp`` are absolute."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Decoding


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
    if len(view) > MAGIC_OFFSET and view[MAGIC_OFFSET] != MAGIC:
        raise UnsupportedMagicError(f"magic {view[MAGIC_OFFSET]}, only 2 is supported")
    if len(view) < BATCH_HEADER_SIZE:
        raise CorruptRecordError("truncated batch header")
    header = BatchHeader._make(HEADER_STRUCT.unpack_from(view, 0))
    if header.batch_length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(f"batch length {header.batch_length} below the header size")
    size = header.batch_length + LOG_OVERHEAD
    if size > len(view):
        raise CorruptRecordError(f"batch needs {size} bytes, only {len(view)} present")
    if header.records_count < 0:
        raise CorruptRecordError(f"negative records_count {header.records_count}")
    body = view[BATCH_HEADER_SIZE:size]
    codec = header.attributes & ATTR_CODEC_MASK
    try:
        data = decompress(codec, body, max_decompressed)
    except UnknownCodecError as exc:
        raise UnsupportedCompressionError(str(exc)) from None
    except CompressionError as exc:
        raise CorruptRecordError(f"cannot decompress batch: {exc}") from None
    log_append_time = header.max_timestamp if header.attributes & ATTR_TIMESTAMP_TYPE else None
    records = _parse_records(
        data, header.records_count, header.base_offset, header.first_timestamp, log_append_time
    )
    return header, records


# --------------------------------------------------------------------------------------------
# Encoding


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
    compression_level: int | None = None,
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
    ``first_timestamp``. ``compression_level`` is Kafka's level for the codec (None: the
    codec's default). Misuse (bad offsets, unknown codec) raises ``ValueError``.
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
        | (ATTR_TIMESTAMP_TYPE if timestamp_type == TIMESTAMP_LOG_APPEND_TIME else 0)
        | (ATTR_TRANSACTIONAL if is_transactional else 0)
        | (ATTR_CONTROL if is_control else 0)
        | (ATTR_DELETE_HORIZON if has_delete_horizon else 0)
    )
    body: bytes | bytearray = _encode_records(records, base_offset, first_timestamp)
    if compression:
        body = compress(compression, body, compression_level)
    out = bytearray(BATCH_HEADER_SIZE)
    out += body
    HEADER_STRUCT.pack_into(
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
    _U32.pack_into(out, CRC_OFFSET, crc32c(memoryview(out)[ATTRIBUTES_OFFSET:]))
    return bytes(out)


def build_empty_batch(header: BatchHeader) -> bytes:
    """The header-only batch that stands for `header`'s batch once compaction removed all of its
    records (Kafka's ``DefaultRecordBatch.writeEmptyHeader``): same offsets, producer id, epoch,
    base sequence, leader epoch, timestamp type, transactional and control bits and max
    timestamp; no records, no compression, no delete horizon, base timestamp ``NO_TIMESTAMP``.
    """
    attributes = (
        (ATTR_TIMESTAMP_TYPE if header.timestamp_type == TIMESTAMP_LOG_APPEND_TIME else 0)
        | (ATTR_TRANSACTIONAL if header.is_transactional else 0)
        | (ATTR_CONTROL if header.is_control else 0)
    )
    out = bytearray(BATCH_HEADER_SIZE)
    HEADER_STRUCT.pack_into(
        out,
        0,
        header.base_offset,
        BATCH_HEADER_SIZE - LOG_OVERHEAD,
        header.partition_leader_epoch,
        MAGIC,
        0,
        attributes,
        header.last_offset_delta,
        NO_TIMESTAMP,
        header.max_timestamp,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        0,
    )
    _U32.pack_into(out, CRC_OFFSET, crc32c(memoryview(out)[ATTRIBUTES_OFFSET:]))
    return bytes(out)
