"""Malformed message sets (v0/v1) against the produce path's up-conversion.

Inputs are derived deterministically from valid sets of every magic and codec: every truncation
point, single-byte changes (each followed by a CRC repair, so the damage reaches the fields
behind the CRC), hostile values over every length and offset field, and random bytes. The only
outcomes allowed are a converted batch or a RecordError (whose code the broker answers with).
"""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from strom.protocol.compression import compress
from strom.protocol.records.codec import decode_records
from strom.protocol.records.errors import RecordError
from strom.protocol.records.legacy import encode_message, encode_wrapper
from strom.protocol.records.up_conversion import AppendRules, up_convert

pytestmark = pytest.mark.fuzz

NOW = 1_700_000_000_000
HOSTILE_I32 = [0, 1, -1, -2, 13, 14, 21, 22, 0x7FFFFFFF, -0x80000000, 1 << 20]


def samples() -> list[bytes]:
    out = []
    for magic in (0, 1):
        plain = b"".join(encode_message(magic, i, NOW + i, b"k%d" % i, b"v" * i) for i in range(4))
        out.append(plain)
        for codec in (1, 2, 3):
            out.append(encode_wrapper(magic, codec, [(i, NOW, b"k", b"v" * i) for i in range(4)]))
        # A wrapper whose inner set is uncompressed-looking garbage after one good message.
        inner = encode_message(magic, 0, NOW, b"k", b"v") + b"\x00\x00\x00\x00\x00\x00\x00\x01"
        out.append(encode_message(magic, 0, NOW, None, compress(1, inner), 1))
    return out


def fix_crcs(buf: bytearray) -> None:
    """Recompute the CRC of every entry whose bounds are plausible (so a mutation behind the
    CRC is not simply caught by it)."""
    pos = 0
    while len(buf) - pos >= 17:
        (size,) = struct.unpack_from(">i", buf, pos + 8)
        end = pos + 12 + size
        if size < 5 or end > len(buf):
            return
        struct.pack_into(">I", buf, pos + 12, zlib.crc32(buf[pos + 16 : end]))
        pos = end


def check(buf: bytes) -> None:
    try:
        result = up_convert(buf, AppendRules(now_ms=NOW, max_message_bytes=1 << 20))
    except RecordError as exc:
        assert exc.error_code in (2, 10, 32, 76, 87), exc
        return
    decode_records(result.batch)  # whatever was taken converts to a readable batch


@pytest.mark.parametrize("index", range(len(samples())))
def test_truncations_and_byte_changes(index: int) -> None:
    sample = samples()[index]
    rng = random.Random(index)
    for cut in range(len(sample)):
        check(sample[:cut])
    for _ in range(400):
        buf = bytearray(sample)
        at = rng.randrange(len(buf))
        buf[at] = rng.randrange(256)
        if rng.random() < 0.7:
            fix_crcs(buf)
        check(bytes(buf))


@pytest.mark.parametrize("index", range(len(samples())))
def test_hostile_lengths_and_offsets(index: int) -> None:
    sample = samples()[index]
    for at in range(0, len(sample) - 4):
        for value in HOSTILE_I32:
            buf = bytearray(sample)
            struct.pack_into(">i", buf, at, value)
            fix_crcs(buf)
            check(bytes(buf))


def test_random_bytes() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        n = rng.randrange(0, 80)
        head = struct.pack(">qi", rng.randrange(-5, 5), n) if rng.random() < 0.5 else b""
        body = bytes([rng.randrange(256)]) * 4 + bytes([rng.choice([0, 1])]) + rng.randbytes(n)
        buf = bytearray(head + body)
        fix_crcs(buf)
        check(bytes(buf))


@pytest.mark.parametrize("magic", [0, 1])
def test_damaged_inner_message_sets(magic: int) -> None:
    """Damage behind an intact compression: the inner entries themselves are hostile."""
    inner = b"".join(encode_message(magic, i, NOW, b"k", b"v" * i) for i in range(3))
    rng = random.Random(magic)
    for _ in range(600):
        buf = bytearray(inner)
        if rng.random() < 0.5:
            struct.pack_into(">i", buf, rng.randrange(len(buf) - 4), rng.choice(HOSTILE_I32))
        else:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        if rng.random() < 0.7:
            fix_crcs(buf)
        wrapper_offset = rng.choice([0, 2, 1 << 40])
        check(encode_message(magic, wrapper_offset, NOW, None, compress(1, bytes(buf)), 1))
