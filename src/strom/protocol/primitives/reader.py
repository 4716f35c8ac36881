"""`Reader`: bounds-checked decoding of Kafka's wire primitives from a byte buffer.

It reads every primitive type of Kafka's protocol: fixed-width big-endian integers, float64,
uuid (two uint64, the all-zero uuid is `ZERO_UUID`), unsigned varints (at most 32 bits) and
zig-zag varint / varlong, int16-length and compact (uvarint length + 1, 0 for null) strings,
int32-length and compact bytes and records, int32 and compact array lengths, and tagged-field
sections.

Safety invariant: no read allocates more than the bytes that remain in the buffer. Every length
prefix is compared with the remaining byte count before anything is sliced, decoded or
allocated, and an array's element count is rejected when it exceeds the remaining bytes (every
element takes at least one byte on the wire, so a larger count cannot be honest). A hostile
5-byte frame therefore costs a 5-byte parse, never a 2^31-element list.

All failures on malformed input raise `ProtocolError` naming what was being read and the
absolute offset at which it failed.
"""

from __future__ import annotations

import struct
import uuid
from typing import Final

from strom.protocol.errors import ProtocolError

__all__ = ["ZERO_UUID", "Reader"]

_unpack_i8 = struct.Struct(">b").unpack_from
_unpack_i16 = struct.Struct(">h").unpack_from
_unpack_i32 = struct.Struct(">i").unpack_from
_unpack_i64 = struct.Struct(">q").unpack_from
_unpack_u16 = struct.Struct(">H").unpack_from
_unpack_u32 = struct.Struct(">I").unpack_from
_unpack_f64 = struct.Struct(">d").unpack_from
_unpack_uuid = struct.Struct(">QQ").unpack_from

ZERO_UUID: Final = uuid.UUID(int=0)

_MAX_INT16: Final = 0x7FFF
_U32_LIMIT: Final = 1 << 32
_U64_LIMIT: Final = 1 << 64


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
