"""The lz4 frame header checksum of message format v0 (magic 0), which old Kafka got wrong.

An lz4 frame starts with magic u32 LE (0x184D2204), FLG, BD, [content size u64 LE when FLG bit
3], [dictionary id u32 LE when FLG bit 0], then HC: the second byte of xxHash32 (seed 0) over
the descriptor bytes from FLG up to HC. Kafka's first lz4 writer (0.8/0.9, message format v0)
hashed from the frame magic instead, so every magic 0 lz4 wrapper in the wild carries that
"broken" HC. Kafka therefore ignores HC when it reads a magic 0 wrapper and writes the broken
one when it writes magic 0; with magic 1 it writes and checks the correct one. Clients do the
same (librdkafka and kafka-python repair the header before decoding magic 0).

Strom decodes with a strict lz4 frame decoder, so :func:`repair_header_checksum` rewrites the HC
of a magic 0 payload before decoding it, and :func:`break_header_checksum` turns a correct frame
into Kafka's magic 0 variant.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["break_header_checksum", "repair_header_checksum", "xxh32"]

_MASK: Final = 0xFFFFFFFF
_P1: Final = 2654435761
_P2: Final = 2246822519
_P3: Final = 3266489917
_P4: Final = 668265263
_P5: Final = 374761393
_LZ4_MAGIC: Final = b"\x04\x22\x4d\x18"
_LE_U32: Final = struct.Struct("<I")


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & _MASK


def xxh32(data: bytes, seed: int = 0) -> int:
    """xxHash32 of ``data`` (the frame header checksum's hash; headers are a few bytes)."""
    n = len(data)
    i = 0
    if n >= 16:
        v1 = (seed + _P1 + _P2) & _MASK
        v2 = (seed + _P2) & _MASK
        v3 = seed & _MASK
        v4 = (seed - _P1) & _MASK
        while i + 16 <= n:
            w1, w2, w3, w4 = struct.unpack_from("<4I", data, i)
            v1 = (_rotl((v1 + w1 * _P2) & _MASK, 13) * _P1) & _MASK
            v2 = (_rotl((v2 + w2 * _P2) & _MASK, 13) * _P1) & _MASK
            v3 = (_rotl((v3 + w3 * _P2) & _MASK, 13) * _P1) & _MASK
            v4 = (_rotl((v4 + w4 * _P2) & _MASK, 13) * _P1) & _MASK
            i += 16
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _MASK
    else:
        h = (seed + _P5) & _MASK
    h = (h + n) & _MASK
    while i + 4 <= n:
        (word,) = _LE_U32.unpack_from(data, i)
        h = (_rotl((h + word * _P3) & _MASK, 17) * _P4) & _MASK
        i += 4
    while i < n:
        h = (_rotl((h + data[i] * _P5) & _MASK, 11) * _P1) & _MASK
        i += 1
    h ^= h >> 15
    h = (h * _P2) & _MASK
    h ^= h >> 13
    h = (h * _P3) & _MASK
    h ^= h >> 16
    return h


def _hc_position(frame: bytes) -> int | None:
    """Where the HC byte of the frame at the start of ``frame`` is; None if it is no lz4
    frame (the decoder then reports the problem)."""
    if len(frame) < 7 or frame[:4] != _LZ4_MAGIC:
        return None
    flg = frame[4]
    position = 6 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0)
    return position if position < len(frame) else None


def repair_header_checksum(frame: bytes) -> bytes:
    """``frame`` with the first frame's HC recomputed as the lz4 format defines it."""
    at = _hc_position(frame)
    if at is None:
        return frame
    hc = (xxh32(frame[4:at]) >> 8) & 0xFF
    if frame[at] == hc:
        return frame
    return frame[:at] + bytes((hc,)) + frame[at + 1 :]


def break_header_checksum(frame: bytes) -> bytes:
    """``frame`` with the first frame's HC computed from the frame magic on, as Kafka writes
    message format v0."""
    at = _hc_position(frame)
    if at is None:
        return frame
    hc = (xxh32(frame[:at]) >> 8) & 0xFF
    return frame[:at] + bytes((hc,)) + frame[at + 1 :]
