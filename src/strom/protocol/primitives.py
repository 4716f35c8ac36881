"""Kafka wire primitives: a bounds-checked `Reader` and a chunk-collecting `Writer`.

Safety invariant of `Reader`: no read allocates more than the bytes that remain
in its buffer. Every length prefix is compared with the remaining byte count
before anything is sliced, decoded or allocated, and an array's element count
is rejected when it exceeds the remaining bytes (every element takes at least
one byte on the wire, so a larger count cannot be honest). A hostile 5-byte
frame therefore costs a 5-byte parse, never a 2^31-element list.

All failures on malformed input raise `ProtocolError` naming what was being
read and the absolute offset at which it failed.

`Writer` collects small writes in a bytearray and keeps large `bytes` /
`memoryview` payloads (record batches) as separate chunks, so a fetch response
can reach the socket without its record data ever being copied.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Sequence
from typing import Final

from strom.protocol.errors import ProtocolError

__all__ = ["ZERO_UUID", "ProtocolError", "Reader", "Writer"]

_I8: Final = struct.Struct(">b")
_I16: Final = struct.Struct(">h")
_I32: Final = struct.Struct(">i")
_I64: Final = struct.Struct(">q")
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_F64: Final = struct.Struct(">d")
_UUID: Final = struct.Struct(">QQ")

_unpack_i8 = _I8.unpack_from
_unpack_i16 = _I16.unpack_from
_unpack_i32 = _I32.unpack_from
_unpack_i64 = _I64.unpack_from
_unpack_u16 = _U16.unpack_from
_unpack_u32 = _U32.unpack_from
_unpack_f64 = _F64.unpack_from
_unpack_uuid = _UUID.unpack_from
_pack_i8 = _I8.pack
_pack_i16 = _I16.pack
_pack_i32 = _I32.pack
_pack_i64 = _I64.pack
_pack_u16 = _U16.pack
_pack_u32 = _U32.pack
_pack_f64 = _F64.pack

ZERO_UUID: Final = uuid.UUID(int=0)

_MAX_INT16: Final = 0x7FFF
_MAX_INT32: Final = 0x7FFFFFFF
_U32_LIMIT: Final = 1 << 32
_U64_LIMIT: Final = 1 << 64

# Payloads at least this large become their own chunk instead of being copied
# into the write buffer; below it a copy is cheaper than another chunk.
ZERO_COPY_MIN: Final = 1024

_EMPTY_TAGGED: Final = b"\x00"


class Reader:
    """Sequential reader over a byte buffer; every read is bounds-checked."""

    __slots__ = ("_base", "_buf", "_end", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview, base: int = 0) -> None:
        buf = data if isinstance(data, memoryview) else memoryview(data)
        if buf.format != "B" or buf.ndim != 1:
            buf = buf.cast("B")
        self._buf: memoryview = buf
        self._pos = 0
        self._end = len(buf)
        # Offset of this buffer inside the outermost frame, for error messages.
        self._base = base

    # -- position -------------------------------------------------------------

    @property
    def pos(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def _error(self, what: str, need: int) -> ProtocolError:
        return ProtocolError(
            f"truncated {what} at offset {self._base + self._pos}: "
            f"need {need} bytes, {self._end - self._pos} remain"
        )

    def _bad(self, message: str, at: int | None = None) -> ProtocolError:
        where = self._base + (self._pos if at is None else at)
        return ProtocolError(f"{message} at offset {where}")

    def skip(self, n: int) -> None:
        if n < 0 or n > self._end - self._pos:
            raise self._error("skipped field", n)
        self._pos += n

    def read_raw(self, n: int) -> memoryview:
        """`n` bytes as a zero-copy slice."""
        pos = self._pos
        end = pos + n
        if n < 0 or end > self._end:
            raise self._error("raw bytes", n)
        self._pos = end
        return self._buf[pos:end]

    def read_remaining(self) -> memoryview:
        pos = self._pos
        self._pos = self._end
        return self._buf[pos:]

    def sub_reader(self, n: int) -> Reader:
        """A reader over the next `n` bytes, which this reader then skips."""
        pos = self._pos
        end = pos + n
        if n < 0 or end > self._end:
            raise self._error("tagged field", n)
        self._pos = end
        return Reader(self._buf[pos:end], self._base + pos)

    # -- fixed width ----------------------------------------------------------

    def read_int8(self) -> int:
        pos = self._pos
        try:
            (v,) = _unpack_i8(self._buf, pos)
        except struct.error:
            raise self._error("int8", 1) from None
        self._pos = pos + 1
        return int(v)

    def read_bool(self) -> bool:
        pos = self._pos
        if pos >= self._end:
            raise self._error("bool", 1)
        self._pos = pos + 1
        return self._buf[pos] != 0

    def read_int16(self) -> int:
        pos = self._pos
        try:
            (v,) = _unpack_i16(self._buf, pos)
        except struct.error:
            raise self._error("int16", 2) from None
        self._pos = pos + 2
        return int(v)

    def read_uint16(self) -> int:
        pos = self._pos
        try:
            (v,) = _unpack_u16(self._buf, pos)
        except struct.error:
            raise self._error("uint16", 2) from None
        self._pos = pos + 2
        return int(v)

    def read_int32(self) -> int:
        pos = self._pos
        try:
            (v,) = _unpack_i32(self._buf, pos)
        except struct.error:
            raise self._error("int32", 4) from None
        self._pos = pos + 4
        return int(v)

    def read_uint32(self) -> int:
        pos = self._pos
        try:
            (v,) = _unpack_u32(self._buf, pos)
        except struct.error:
            raise self._error("uint32", 4) from None
        self._pos = pos + 4
        return int(v)

    def read_int64(self) -> int:
        pos = self._pos
        try:
            (v,) = _unpack_i64(self._buf, pos)
        except struct.error:
            raise self._error("int64", 8) from None
        self._pos = pos + 8
        return int(v)

    def read_float64(self) -> float:
        pos = self._pos
        try:
            (v,) = _unpack_f64(self._buf, pos)
        except struct.error:
            raise self._error("float64", 8) from None
        self._pos = pos + 8
        return float(v)

    def read_uuid(self) -> uuid.UUID:
        pos = self._pos
        try:
            hi, lo = _unpack_uuid(self._buf, pos)
        except struct.error:
            raise self._error("uuid", 16) from None
        self._pos = pos + 16
        if hi == 0 and lo == 0:
            return ZERO_UUID
        return uuid.UUID(int=(hi << 64) | lo)

    # -- variable width -------------------------------------------------------

    def _read_varint_bits(self, what: str, max_bytes: int, limit: int) -> int:
        buf = self._buf
        pos = self._pos
        end = self._end
        result = 0
        shift = 0
        for _ in range(max_bytes):
            if pos >= end:
                raise self._error(what, pos - self._pos + 1)
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                if result >= limit:
                    raise self._bad(f"{what} does not fit in {limit.bit_length() - 1} bits")
                self._pos = pos
                return result
            shift += 7
        raise self._bad(f"{what} longer than {max_bytes} bytes")

    def read_uvarint(self) -> int:
        """Unsigned varint of at most 32 bits (lengths, tags, counts)."""
        pos = self._pos
        if pos < self._end:
            b = self._buf[pos]
            if b < 0x80:
                self._pos = pos + 1
                return b
        return self._read_varint_bits("unsigned varint", 5, _U32_LIMIT)

    def read_varint(self) -> int:
        """Zig-zag signed varint of at most 32 bits."""
        u = self._read_varint_bits("varint", 5, _U32_LIMIT)
        return (u >> 1) ^ -(u & 1)

    def read_varlong(self) -> int:
        """Zig-zag signed varint of at most 64 bits."""
        u = self._read_varint_bits("varlong", 10, _U64_LIMIT)
        return (u >> 1) ^ -(u & 1)

    # -- strings --------------------------------------------------------------

    def _utf8(self, n: int) -> str:
        pos = self._pos
        end = pos + n
        if end > self._end:
            raise self._error("string", n)
        try:
            s = str(self._buf[pos:end], "utf-8")
        except UnicodeDecodeError as exc:
            raise self._bad(f"malformed UTF-8 in string ({exc.reason})", pos + exc.start) from None
        self._pos = end
        return s

    def read_string(self) -> str:
        n = self.read_int16()
        if n < 0:
            raise self._bad(f"length {n} for a non-nullable string", self._pos - 2)
        return self._utf8(n) if n else ""

    def read_nullable_string(self) -> str | None:
        n = self.read_int16()
        if n < 0:
            if n == -1:
                return None
            raise self._bad(f"negative string length {n}", self._pos - 2)
        return self._utf8(n) if n else ""

    def read_compact_string(self) -> str:
        start = self._pos
        n = self.read_uvarint() - 1
        if n < 0:
            raise self._bad("null for a non-nullable compact string", start)
        if n > _MAX_INT16:
            raise self._bad(f"compact string length {n} exceeds 32767", start)
        return self._utf8(n) if n else ""

    def read_compact_nullable_string(self) -> str | None:
        start = self._pos
        n = self.read_uvarint() - 1
        if n < 0:
            return None
        if n > _MAX_INT16:
            raise self._bad(f"compact string length {n} exceeds 32767", start)
        return self._utf8(n) if n else ""

    # -- bytes ----------------------------------------------------------------

    def _slice(self, n: int, what: str) -> memoryview:
        pos = self._pos
        end = pos + n
        if end > self._end:
            raise self._error(what, n)
        self._pos = end
        return self._buf[pos:end]

    def read_bytes(self) -> bytes:
        n = self.read_int32()
        if n < 0:
            raise self._bad(f"length {n} for non-nullable bytes", self._pos - 4)
        return bytes(self._slice(n, "bytes"))

    def read_nullable_bytes(self) -> bytes | None:
        n = self.read_int32()
        if n < 0:
            if n == -1:
                return None
            raise self._bad(f"negative bytes length {n}", self._pos - 4)
        return bytes(self._slice(n, "bytes"))

    def read_compact_bytes(self) -> bytes:
        start = self._pos
        n = self.read_uvarint() - 1
        if n < 0:
            raise self._bad("null for non-nullable compact bytes", start)
        return bytes(self._slice(n, "compact bytes"))

    def read_compact_nullable_bytes(self) -> bytes | None:
        n = self.read_uvarint() - 1
        if n < 0:
            return None
        return bytes(self._slice(n, "compact bytes"))

    # Records are returned as zero-copy slices: produce appends them to the log
    # as they came, so copying here would be pure waste.

    def read_records(self) -> memoryview:
        n = self.read_int32()
        if n < 0:
            raise self._bad(f"length {n} for non-nullable records", self._pos - 4)
        return self._slice(n, "records")

    def read_nullable_records(self) -> memoryview | None:
        n = self.read_int32()
        if n < 0:
            if n == -1:
                return None
            raise self._bad(f"negative records length {n}", self._pos - 4)
        return self._slice(n, "records")

    def read_compact_records(self) -> memoryview:
        start = self._pos
        n = self.read_uvarint() - 1
        if n < 0:
            raise self._bad("null for non-nullable compact records", start)
        return self._slice(n, "compact records")

    def read_compact_nullable_records(self) -> memoryview | None:
        n = self.read_uvarint() - 1
        if n < 0:
            return None
        return self._slice(n, "compact records")

    # -- arrays ---------------------------------------------------------------

    def _check_count(self, n: int, at: int) -> int:
        if n > self._end - self._pos:
            raise self._bad(
                f"array of {n} elements but only {self._end - self._pos} bytes remain", at
            )
        return n

    def read_array_length(self) -> int:
        start = self._pos
        n = self.read_int32()
        if n < 0:
            raise self._bad(f"length {n} for a non-nullable array", start)
        return self._check_count(n, start)

    def read_nullable_array_length(self) -> int:
        """Element count, or -1 for a null array."""
        start = self._pos
        n = self.read_int32()
        if n < 0:
            if n == -1:
                return -1
            raise self._bad(f"negative array length {n}", start)
        return self._check_count(n, start)

    def read_compact_array_length(self) -> int:
        start = self._pos
        n = self.read_uvarint() - 1
        if n < 0:
            raise self._bad("null for a non-nullable compact array", start)
        return self._check_count(n, start)

    def read_compact_nullable_array_length(self) -> int:
        """Element count, or -1 for a null array."""
        start = self._pos
        n = self.read_uvarint() - 1
        if n < 0:
            return -1
        return self._check_count(n, start)

    def _fixed_list(self, code: str, width: int, n: int, what: str) -> list[int]:
        pos = self._pos
        end = pos + n * width
        if end > self._end:
            raise self._error(what, n * width)
        values = list(struct.unpack_from(f">{n}{code}", self._buf, pos))
        self._pos = end
        return values

    def read_int8s(self, n: int) -> list[int]:
        return self._fixed_list("b", 1, n, "int8 array")

    def read_int16s(self, n: int) -> list[int]:
        return self._fixed_list("h", 2, n, "int16 array")

    def read_int32s(self, n: int) -> list[int]:
        return self._fixed_list("i", 4, n, "int32 array")

    def read_int64s(self, n: int) -> list[int]:
        return self._fixed_list("q", 8, n, "int64 array")

    def read_uint16s(self, n: int) -> list[int]:
        return self._fixed_list("H", 2, n, "uint16 array")

    def read_uint32s(self, n: int) -> list[int]:
        return self._fixed_list("I", 4, n, "uint32 array")

    def read_float64s(self, n: int) -> list[float]:
        pos = self._pos
        end = pos + n * 8
        if end > self._end:
            raise self._error("float64 array", n * 8)
        values = list(struct.unpack_from(f">{n}d", self._buf, pos))
        self._pos = end
        return values

    # -- tagged fields --------------------------------------------------------

    def skip_tagged_fields(self) -> None:
        """Skip a whole tagged-field section (used where no tag is known)."""
        pos = self._pos
        if pos < self._end and self._buf[pos] == 0:
            self._pos = pos + 1
            return
        for _ in range(self.read_uvarint()):
            self.read_uvarint()
            self.skip(self.read_uvarint())


class Writer:
    """Collects the encoding of a message as a list of chunks.

    Small values accumulate in a bytearray; payloads of `ZERO_COPY_MIN` bytes
    or more are kept as chunks of their own (not copied). The caller must not
    mutate such a payload until the chunks have been written out.
    """

    __slots__ = ("_buf", "_chunks", "_flushed")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._chunks: list[bytes | memoryview] = []
        self._flushed = 0

    # -- output ---------------------------------------------------------------

    def _flush(self) -> None:
        if self._buf:
            self._chunks.append(bytes(self._buf))
            self._flushed += len(self._buf)
            self._buf.clear()

    @property
    def chunks(self) -> list[bytes | memoryview]:
        """The encoding so far, as chunks (the list is the writer's own)."""
        self._flush()
        return self._chunks

    @property
    def size(self) -> int:
        return self._flushed + len(self._buf)

    def getvalue(self) -> bytes:
        if not self._chunks:
            return bytes(self._buf)
        self._flush()
        return b"".join(self._chunks)

    def write_raw(self, data: bytes | bytearray | memoryview) -> None:
        if len(data) >= ZERO_COPY_MIN:
            self._flush()
            self._chunks.append(data if isinstance(data, bytes | memoryview) else bytes(data))
            self._flushed += len(data)
        else:
            self._buf += data

    def extend(self, other: Writer) -> None:
        """Append everything `other` holds (its chunks are shared, not copied)."""
        if other._chunks:
            self._flush()
            self._chunks.extend(other._chunks)
            self._flushed += other._flushed
        self._buf += other._buf

    # -- fixed width ----------------------------------------------------------

    def write_int8(self, v: int) -> None:
        try:
            self._buf += _pack_i8(v)
        except struct.error:
            raise ValueError(f"int8 out of range: {v!r}") from None

    def write_bool(self, v: bool) -> None:
        self._buf.append(1 if v else 0)

    def write_int16(self, v: int) -> None:
        try:
            self._buf += _pack_i16(v)
        except struct.error:
            raise ValueError(f"int16 out of range: {v!r}") from None

    def write_uint16(self, v: int) -> None:
        try:
            self._buf += _pack_u16(v)
        except struct.error:
            raise ValueError(f"uint16 out of range: {v!r}") from None

    def write_int32(self, v: int) -> None:
        try:
            self._buf += _pack_i32(v)
        except struct.error:
            raise ValueError(f"int32 out of range: {v!r}") from None

    def write_uint32(self, v: int) -> None:
        try:
            self._buf += _pack_u32(v)
        except struct.error:
            raise ValueError(f"uint32 out of range: {v!r}") from None

    def write_int64(self, v: int) -> None:
        try:
            self._buf += _pack_i64(v)
        except struct.error:
            raise ValueError(f"int64 out of range: {v!r}") from None

    def write_float64(self, v: float) -> None:
        self._buf += _pack_f64(v)

    def write_uuid(self, v: uuid.UUID) -> None:
        self._buf += v.bytes

    # -- variable width -------------------------------------------------------

    def write_uvarint(self, v: int) -> None:
        if 0 <= v < 0x80:
            self._buf.append(v)
            return
        if v < 0 or v >= _U32_LIMIT:
            raise ValueError(f"unsigned varint out of range: {v!r}")
        self._write_varint_bits(v)

    def _write_varint_bits(self, v: int) -> None:
        buf = self._buf
        while v >= 0x80:
            buf.append((v & 0x7F) | 0x80)
            v >>= 7
        buf.append(v)

    def write_varint(self, v: int) -> None:
        if not -0x80000000 <= v <= _MAX_INT32:
            raise ValueError(f"varint out of range: {v!r}")
        self._write_varint_bits(((v << 1) ^ (v >> 31)) & 0xFFFFFFFF)

    def write_varlong(self, v: int) -> None:
        if not -(1 << 63) <= v < (1 << 63):
            raise ValueError(f"varlong out of range: {v!r}")
        self._write_varint_bits(((v << 1) ^ (v >> 63)) & 0xFFFFFFFFFFFFFFFF)

    # -- strings --------------------------------------------------------------

    def write_string(self, v: str) -> None:
        data = v.encode()
        n = len(data)
        if n > _MAX_INT16:
            raise ValueError(f"string of {n} bytes does not fit an int16 length")
        self._buf += _pack_i16(n)
        self._buf += data

    def write_nullable_string(self, v: str | None) -> None:
        if v is None:
            self._buf += b"\xff\xff"
        else:
            self.write_string(v)

    def write_compact_string(self, v: str) -> None:
        data = v.encode()
        n = len(data)
        if n > _MAX_INT16:
            raise ValueError(f"string of {n} bytes is longer than a Kafka string may be")
        self.write_uvarint(n + 1)
        self._buf += data

    def write_compact_nullable_string(self, v: str | None) -> None:
        if v is None:
            self._buf.append(0)
        else:
            self.write_compact_string(v)

    # -- bytes and records ----------------------------------------------------

    def write_bytes(self, v: bytes | bytearray | memoryview) -> None:
        self.write_int32(len(v))
        self.write_raw(v)

    def write_nullable_bytes(self, v: bytes | bytearray | memoryview | None) -> None:
        if v is None:
            self._buf += b"\xff\xff\xff\xff"
        else:
            self.write_int32(len(v))
            self.write_raw(v)

    def write_compact_bytes(self, v: bytes | bytearray | memoryview) -> None:
        self.write_uvarint(len(v) + 1)
        self.write_raw(v)

    def write_compact_nullable_bytes(self, v: bytes | bytearray | memoryview | None) -> None:
        if v is None:
            self._buf.append(0)
        else:
            self.write_uvarint(len(v) + 1)
            self.write_raw(v)

    # Records share the bytes encodings; the names keep generated code readable.
    write_records = write_bytes
    write_nullable_records = write_nullable_bytes
    write_compact_records = write_compact_bytes
    write_compact_nullable_records = write_compact_nullable_bytes

    # -- arrays ---------------------------------------------------------------

    def write_array_length(self, n: int) -> None:
        self.write_int32(n)

    def write_compact_array_length(self, n: int) -> None:
        self.write_uvarint(n + 1)

    def write_null_array(self) -> None:
        self._buf += b"\xff\xff\xff\xff"

    def write_compact_null_array(self) -> None:
        self._buf.append(0)

    def _fixed_list(self, code: str, values: Sequence[int] | Sequence[float], what: str) -> None:
        if not values:
            return
        try:
            self._buf += struct.pack(f">{len(values)}{code}", *values)
        except struct.error:
            raise ValueError(f"{what} element out of range") from None

    def write_int8s(self, values: Sequence[int]) -> None:
        self._fixed_list("b", values, "int8 array")

    def write_int16s(self, values: Sequence[int]) -> None:
        self._fixed_list("h", values, "int16 array")

    def write_int32s(self, values: Sequence[int]) -> None:
        self._fixed_list("i", values, "int32 array")

    def write_int64s(self, values: Sequence[int]) -> None:
        self._fixed_list("q", values, "int64 array")

    def write_uint16s(self, values: Sequence[int]) -> None:
        self._fixed_list("H", values, "uint16 array")

    def write_uint32s(self, values: Sequence[int]) -> None:
        self._fixed_list("I", values, "uint32 array")

    def write_float64s(self, values: Sequence[float]) -> None:
        self._fixed_list("d", values, "float64 array")

    def write_uuids(self, values: Iterable[uuid.UUID]) -> None:
        for v in values:
            self._buf += v.bytes

    # -- tagged fields --------------------------------------------------------

    def write_empty_tagged_fields(self) -> None:
        self._buf += _EMPTY_TAGGED

    def write_tagged_field(self, tag: int, payload: Writer) -> None:
        self.write_uvarint(tag)
        self.write_uvarint(payload.size)
        self.extend(payload)
