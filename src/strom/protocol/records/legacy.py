"""Message sets of message format v0 and v1 (magic 0 and 1): parsing and building them.

Before record batch v2 (Kafka 0.11) a partition's data was a message set: messages back to
back, each an entry of (big endian)::

    offset         int64
    message_size   int32    bytes of the message that follows
    message:
      crc          uint32   CRC-32 (IEEE, as zlib.crc32) of the bytes from magic to the end
      magic        int8     0 or 1
      attributes   int8     bits 0-2 codec (0 none, 1 gzip, 2 snappy, 3 lz4);
                            magic 1: bit 3 timestamp type (1 LogAppendTime)
      timestamp    int64    magic 1 only
      key          int32 length (-1 null) and bytes
      value        int32 length (-1 null) and bytes

A message whose codec is not none is a wrapper: its value is a whole message set compressed
(lz4 with the magic 0 quirk of :mod:`.legacy_lz4`), its key null. The inner messages are not
compressed. Inner offsets: magic 0 stores absolute offsets; magic 1 stores offsets relative to
the first inner message (0, 1, ...) and the wrapper's offset is the absolute offset of the last
one (a producer may leave the wrapper's offset at 0). A magic 1 inner message of a LogAppendTime
wrapper takes the wrapper's timestamp. There are no producer ids, sequences, transactions or
headers: a message set never carries an idempotent or transactional producer's data.

Error codes follow Kafka's readers (``AbstractLegacyRecordBatch``, ``LegacyRecord``,
``ByteBufferLogInputStream``): impossible sizes, a bad magic byte and CRC mismatches are
CORRUPT_MESSAGE; a wrapper with no value or no inner messages, a compressed inner message, a
zstd wrapper and impossible inner offsets are INVALID_RECORD.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from typing import Final, NamedTuple

from strom.protocol.compression import (
    CODEC_GZIP,
    CODEC_LZ4,
    CODEC_NONE,
    CODEC_SNAPPY,
    CODEC_ZSTD,
    DEFAULT_MAX_DECOMPRESSED,
    CompressionError,
    UnknownCodecError,
    compress,
    decompress,
)
from strom.protocol.records.errors import (
    CorruptRecordError,
    InvalidRecordError,
    RecordTooLargeError,
    UnsupportedCompressionError,
)
from strom.protocol.records.legacy_lz4 import break_header_checksum, repair_header_checksum

__all__ = [
    "ATTR_LOG_APPEND_TIME",
    "LEGACY_CODECS",
    "LegacyMessage",
    "encode_message",
    "encode_wrapper",
    "inner_messages",
    "is_legacy",
    "iter_message_set",
    "message_set_magic",
]

LOG_OVERHEAD: Final = 12  # offset + message_size
MAGIC_OFFSET: Final = 16  # of the magic byte, from the start of an entry
RECORD_OVERHEAD_V0: Final = 14  # crc, magic, attributes, key length, value length
RECORD_OVERHEAD_V1: Final = 22  # the same and the timestamp
ATTR_CODEC_MASK: Final = 0x07
ATTR_LOG_APPEND_TIME: Final = 0x08
NO_TIMESTAMP: Final = -1
# The codecs a wrapper may use; zstd came with record batch v2.
LEGACY_CODECS: Final = (CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4)

_ENTRY_V0: Final = struct.Struct(">qiIbb")  # offset, size, crc, magic, attributes
_ENTRY_V1: Final = struct.Struct(">qiIbbq")  # ... and the timestamp
_ENTRY_HEAD: Final = struct.Struct(">qi")
_I32: Final = struct.Struct(">i")
_NULL: Final = b"\xff\xff\xff\xff"


class LegacyMessage(NamedTuple):
    """One message of a v0/v1 message set.

    ``offset`` is as stored for a shallow message and absolute for the inner messages that
    :func:`inner_messages` returns; ``timestamp`` is -1 for magic 0 and, for an inner message of
    a LogAppendTime wrapper, the wrapper's. ``size`` counts the whole entry (12 bytes of offset
    and size included), as Kafka compares it with ``max.message.bytes``.
    """

    offset: int
    magic: int
    attributes: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    size: int

    @property
    def codec(self) -> int:
        return self.attributes & ATTR_CODEC_MASK

    @property
    def log_append_time(self) -> bool:
        """The timestamp type bit (magic 1 only; magic 0 messages have no timestamp type)."""
        return self.magic > 0 and bool(self.attributes & ATTR_LOG_APPEND_TIME)


def is_legacy(buf: bytes | bytearray | memoryview) -> bool:
    """Whether ``buf`` starts with a magic 0 or 1 entry (its magic byte is at the same place as
    a v2 batch's)."""
    return len(buf) > MAGIC_OFFSET and buf[MAGIC_OFFSET] in (0, 1)


def _read_bytes(view: memoryview, pos: int, end: int, what: str) -> tuple[bytes | None, int]:
    if end - pos < 4:
        raise CorruptRecordError(f"message ends inside its {what} length")
    (length,) = _I32.unpack_from(view, pos)
    pos += 4
    if length < 0:
        return None, pos
    if length > end - pos:
        raise CorruptRecordError(f"{what} of {length} bytes runs past its message")
    return view[pos : pos + length].tobytes(), pos + length


def _parse_message(view: memoryview, pos: int, end: int, check_crc: bool) -> LegacyMessage:
    """The entry at ``pos`` whose message ends at ``end``; its magic is 0 or 1 (the caller
    checked). Bytes after the value are ignored, as Kafka does."""
    magic = view[pos + MAGIC_OFFSET]
    size = end - pos
    if magic == 0:
        offset, _, crc, _, attributes = _ENTRY_V0.unpack_from(view, pos)
        timestamp = NO_TIMESTAMP
        at = pos + LOG_OVERHEAD + 6
    else:
        if size - LOG_OVERHEAD < RECORD_OVERHEAD_V1:
            raise CorruptRecordError(
                f"magic 1 message of {size - LOG_OVERHEAD} bytes is below the message overhead"
            )
        offset, _, crc, _, attributes, timestamp = _ENTRY_V1.unpack_from(view, pos)
        at = pos + LOG_OVERHEAD + 14
    if check_crc and zlib.crc32(view[pos + MAGIC_OFFSET : end]) != crc:
        raise CorruptRecordError(f"message at offset {offset} is corrupt (CRC-32 mismatch)")
    key, at = _read_bytes(view, at, end, "key")
    value, at = _read_bytes(view, at, end, "value")
    return LegacyMessage(offset, magic, attributes & 0xFF, timestamp, key, value, size)


def iter_message_set(
    buf: bytes | bytearray | memoryview, max_entry_size: int | None = None
) -> Iterator[LegacyMessage]:
    """The shallow messages of a produced message set, CRCs checked.

    Wrappers are returned as they are (see :func:`inner_messages`). Raises
    :class:`CorruptRecordError` for a message size below 14 bytes, a magic byte other than
    0-2, a CRC mismatch and bytes after the last whole entry (Kafka silently drops a trailing
    partial entry from a produce request; Strom refuses it, as it does for v2 batches),
    :class:`RecordTooLargeError` for an entry larger than ``max_entry_size`` (checked before
    its CRC, as Kafka does) and :class:`InvalidRecordError` for a magic 2 batch among the
    messages.
    """
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    end = len(view)
    pos = 0
    while pos < end:
        if end - pos < LOG_OVERHEAD:
            raise CorruptRecordError(f"truncated message header at byte {pos}")
        _, message_size = _ENTRY_HEAD.unpack_from(view, pos)
        if message_size < RECORD_OVERHEAD_V0:
            raise CorruptRecordError(
                f"message size {message_size} at byte {pos} is below the message overhead"
            )
        if end - pos <= MAGIC_OFFSET:
            raise CorruptRecordError(f"truncated message at byte {pos}")
        magic = view[pos + MAGIC_OFFSET]
        if magic > 2:
            raise CorruptRecordError(f"invalid magic {magic} in message at byte {pos}")
        if magic == 2:
            raise InvalidRecordError(
                f"a record batch with magic 2 at byte {pos} follows messages with magic "
                f"{view[MAGIC_OFFSET]}"
            )
        entry_end = pos + LOG_OVERHEAD + message_size
        if entry_end > end:
            raise CorruptRecordError(
                f"message at byte {pos} needs {LOG_OVERHEAD + message_size} bytes, "
                f"only {end - pos} remain"
            )
        if max_entry_size is not None and entry_end - pos > max_entry_size:
            raise RecordTooLargeError(
                f"message of {entry_end - pos} bytes exceeds the maximum of {max_entry_size}"
            )
        yield _parse_message(view, pos, entry_end, check_crc=True)
        pos = entry_end


def _decompress_value(wrapper: LegacyMessage, max_size: int) -> bytes:
    codec = wrapper.codec
    if codec == CODEC_ZSTD:
        raise InvalidRecordError("a magic 0/1 wrapper message cannot use zstd")
    value = wrapper.value
    if value is None:
        raise InvalidRecordError(
            f"compressed message set with a null value (magic {wrapper.magic})"
        )
    if codec == CODEC_LZ4 and wrapper.magic == 0:
        value = repair_header_checksum(value)
    try:
        return decompress(codec, value, max_size)
    except UnknownCodecError as exc:
        raise UnsupportedCompressionError(str(exc)) from None
    except CompressionError as exc:
        raise CorruptRecordError(f"cannot decompress message set: {exc}") from None


def inner_messages(
    wrapper: LegacyMessage, max_decompressed: int = DEFAULT_MAX_DECOMPRESSED
) -> list[LegacyMessage]:
    """The messages inside a wrapper, with absolute offsets (magic 1) and effective timestamps.

    As Kafka's deep iterator: a trailing partial entry inside the decompressed set is ignored;
    an inner entry below 14 bytes and an inner CRC mismatch are CORRUPT_MESSAGE; no inner
    message, a compressed inner message, or (magic 1) a non-zero wrapper offset below the last
    relative offset are INVALID_RECORD. Inner messages keep their own magic; the caller
    refuses one that differs from the wrapper's (its CRC is not checked).
    """
    data = memoryview(_decompress_value(wrapper, max_decompressed))
    end = len(data)
    found: list[LegacyMessage] = []
    pos = 0
    while end - pos >= LOG_OVERHEAD:
        _, message_size = _ENTRY_HEAD.unpack_from(data, pos)
        if message_size < RECORD_OVERHEAD_V0:
            raise CorruptRecordError(
                f"inner message size {message_size} is below the message overhead"
            )
        entry_end = pos + LOG_OVERHEAD + message_size
        if entry_end > end:
            break
        magic = data[pos + MAGIC_OFFSET]
        if magic > 1:
            # Not a message this format knows; the caller refuses it for its magic.
            offset, _ = _ENTRY_HEAD.unpack_from(data, pos)
            found.append(LegacyMessage(offset, magic, 0, NO_TIMESTAMP, None, None, 0))
        else:
            # Kafka checks an inner CRC only once the magic matched the wrapper's; a
            # mismatched message is refused for its magic instead.
            found.append(_parse_message(data, pos, entry_end, magic == wrapper.magic))
        pos = entry_end
    if not found:
        raise InvalidRecordError("compressed message set with no inner messages")
    if any(m.codec != CODEC_NONE for m in found):
        raise InvalidRecordError("inner messages must not be compressed")
    if wrapper.magic == 0:
        return found
    wrapper_offset = wrapper.offset
    last_inner = found[-1].offset
    if wrapper_offset == 0:
        base = 0  # some librdkafka versions leave the wrapper's offset at 0
    elif wrapper_offset < last_inner:
        raise InvalidRecordError(
            f"wrapper offset {wrapper_offset} is below the last inner offset {last_inner}"
        )
    else:
        base = wrapper_offset - last_inner
    wrapper_lat = wrapper.log_append_time
    return [
        m._replace(
            offset=base + m.offset,
            timestamp=wrapper.timestamp if wrapper_lat and m.magic == 1 else m.timestamp,
        )
        for m in found
    ]


# --------------------------------------------------------------------------------------------
# Building


def _nullable(data: bytes | None) -> bytes:
    return _NULL if data is None else _I32.pack(len(data)) + data


def encode_message(
    magic: int,
    offset: int,
    timestamp: int,
    key: bytes | None,
    value: bytes | None,
    attributes: int = 0,
) -> bytes:
    """One entry (offset, size, message) with its CRC. ``timestamp`` is ignored for magic 0."""
    if magic == 0:
        body = b"\x00" + bytes((attributes & 0xFF,)) + _nullable(key) + _nullable(value)
    elif magic == 1:
        body = (
            b"\x01"
            + bytes((attributes & 0xFF,))
            + struct.pack(">q", timestamp)
            + _nullable(key)
            + _nullable(value)
        )
    else:
        raise ValueError(f"message format magic {magic} is not 0 or 1")
    return _ENTRY_HEAD.pack(offset, len(body) + 4) + struct.pack(">I", zlib.crc32(body)) + body


def encode_wrapper(
    magic: int,
    codec: int,
    inner: Sequence[tuple[int, int, bytes | None, bytes | None]],
    *,
    log_append_time: int | None = None,
) -> bytes:
    """A wrapper entry holding ``inner`` messages, given as (absolute offset, timestamp, key,
    value) in increasing offset order, compressed with ``codec`` as Kafka writes it.

    Magic 1: relative inner offsets, the wrapper at the last absolute offset, stamped with
    the largest inner timestamp or, with ``log_append_time``, that time on the wrapper and
    every inner message (whose timestamp type bit is set too). Magic 0: absolute inner offsets;
    lz4 gets the broken header checksum of :mod:`.legacy_lz4`.
    """
    if codec not in LEGACY_CODECS:
        raise ValueError(f"codec {codec} cannot wrap a magic {magic} message set")
    if not inner:
        raise ValueError("a wrapper needs at least one inner message")
    base = inner[0][0]
    lat_bit = ATTR_LOG_APPEND_TIME if magic == 1 and log_append_time is not None else 0
    parts = []
    max_timestamp = NO_TIMESTAMP
    for offset, timestamp, key, value in inner:
        if log_append_time is not None:
            timestamp = log_append_time
        max_timestamp = max(max_timestamp, timestamp)
        inner_offset = offset - base if magic == 1 else offset
        parts.append(encode_message(magic, inner_offset, timestamp, key, value, lat_bit))
    payload = compress(codec, b"".join(parts))
    if codec == CODEC_LZ4 and magic == 0:
        payload = break_header_checksum(payload)
    return encode_message(magic, inner[-1][0], max_timestamp, None, payload, codec | lat_bit)


def message_set_magic(buf: bytes | bytearray | memoryview) -> int | None:
    """The magic byte of the first entry of ``buf``, or None when it is too short to hold one."""
    return buf[MAGIC_OFFSET] if len(buf) > MAGIC_OFFSET else None
