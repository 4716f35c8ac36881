"""`Writer`: encoding of Kafka's wire primitives into a list of chunks.

It writes the same types `Reader` reads, in the same encodings (big-endian fixed width, varints
with zig-zag for the signed ones, int16 / compact string lengths, int32 / compact bytes
lengths, -1 or 0 for null). Values out of their type's range raise `ValueError`: that is a bug
in the caller, not bad input.

Small writes accumulate in a bytearray; large `bytes` / `memoryview` payloads (record batches)
are kept as separate chunks, so a fetch response can reach the socket without its record data
ever being copied.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Sequence
from typing import Final

__all__ = ["ZERO_COPY_MIN", "Writer"]

_pack_i8 = struct.Struct(">b").pack
_pack_i16 = struct.Struct(">h").pack
_pack_i32 = struct.Struct(">i").pack
_pack_i64 = struct.Struct(">q").pack
_pack_u16 = struct.Struct(">H").pack
_pack_u32 = struct.Struct(">I").pack
_pack_f64 = struct.Struct(">d").pack

_MAX_INT16: Final = 0x7FFF
_MAX_INT32: Final = 0x7FFFFFFF
_U32_LIMIT: Final = 1 << 32

# Payloads at least this large become their own chunk instead of being copied
# into the write buffer; below it a copy is cheaper than another chunk.
ZERO_COPY_MIN: Final = 1024

_EMPTY_TAGGED: Final = b"\x00"


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
