"""Compression codecs, and record batches cross-checked with real client encoders/decoders.

kafka-python ships its own record batch code and xerial snappy framing, but its codecs need
python-snappy / lz4 / zstandard, which are not installed: gzip runs for real; for snappy,
kafka-python's own xerial framing runs over a raw-snappy shim backed by cramjam; lz4 and zstd
use shims only to exercise kafka-python's batch layout. aiokafka (Cython record builder and
reader, cramjam codecs with its own framing choices) covers all codecs for real.
"""

from __future__ import annotations

import gzip
import os
import struct
import types
from collections.abc import Iterator
from typing import Any

import cramjam
import pytest

from strom.protocol import compression as comp
from strom.protocol.compression import (
    CODEC_GZIP,
    CODEC_LZ4,
    CODEC_NONE,
    CODEC_SNAPPY,
    CODEC_ZSTD,
    CompressionError,
    DecompressedTooLargeError,
    UnknownCodecError,
    compress,
    decompress,
)
from strom.protocol.records.codec import Record, build_batch, decode_records
from strom.protocol.records.validation import validate_batches

ALL_CODECS = [CODEC_NONE, CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD]
COMPRESSED = [CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD]

PAYLOADS = {
    "empty": b"",
    "one": b"x",
    "text": b"the quick brown fox jumps over the lazy dog " * 1000,
    "random": os.urandom(70_000),
    "mixed": os.urandom(1000) + bytes(300_000) + b"abc" * 50_000,
}


@pytest.mark.parametrize("codec", ALL_CODECS)
@pytest.mark.parametrize("name", list(PAYLOADS))
def test_round_trip(codec: int, name: str) -> None:
    data = PAYLOADS[name]
    packed = compress(codec, data)
    assert decompress(codec, packed) == data
    assert decompress(codec, memoryview(packed)) == data
    assert decompress(codec, bytearray(packed)) == data


@pytest.mark.parametrize("codec", [5, 6, 7, -1, 8])
def test_unknown_codec(codec: int) -> None:
    with pytest.raises(UnknownCodecError) as info:
        decompress(codec, b"abc")
    assert info.value.error_code == 76
    with pytest.raises(UnknownCodecError):
        compress(codec, b"abc")


# ---------------------------------------------------------------------------- snappy


def _xerial(blocks: list[bytes], version: int = 1, compat: int = 1) -> bytes:
    out = [b"\x82SNAPPY\x00", struct.pack(">ii", version, compat)]
    for block in blocks:
        raw = bytes(cramjam.snappy.compress_raw(block))
        out += [struct.pack(">i", len(raw)), raw]
    return b"".join(out)


def test_snappy_writes_xerial_with_32k_blocks() -> None:
    data = PAYLOADS["mixed"]
    packed = compress(CODEC_SNAPPY, data)
    assert packed[:16] == b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
    pos, sizes = 16, []
    while pos < len(packed):
        (n,) = struct.unpack_from(">i", packed, pos)
        block = packed[pos + 4 : pos + 4 + n]
        sizes.append(cramjam.snappy.decompress_raw_len(block))
        pos += 4 + n
    assert pos == len(packed)
    assert all(s == 32 * 1024 for s in sizes[:-1]) and sum(sizes) == len(data)


def test_snappy_reads_xerial_and_raw() -> None:
    parts = [b"a" * 10, os.urandom(5000), b"", b"zz" * 40_000]
    assert decompress(CODEC_SNAPPY, _xerial(parts)) == b"".join(parts)
    # snappy-java readers ignore the version numbers; so do we.
    assert decompress(CODEC_SNAPPY, _xerial(parts, 2, 1)) == b"".join(parts)
    assert decompress(CODEC_SNAPPY, _xerial([])) == b""
    raw = bytes(cramjam.snappy.compress_raw(PAYLOADS["text"]))
    assert decompress(CODEC_SNAPPY, raw) == PAYLOADS["text"]


@pytest.mark.parametrize(
    "bad",
    [
        b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1) + b"\x00\x00",  # short chunk length
        b"\x82SNAPPY\x00" + struct.pack(">iii", 1, 1, 100) + b"abc",  # chunk past the end
        b"\x82SNAPPY\x00" + struct.pack(">iii", 1, 1, -5),
        b"\xff\xff\xff\xff\x0f",  # raw block claiming 4 GiB
        b"\x05abc",
    ],
)
def test_snappy_malformed(bad: bytes) -> None:
    with pytest.raises(CompressionError):
        decompress(CODEC_SNAPPY, bad)


# ---------------------------------------------------------------------------- lz4


def _xxh32_short(data: bytes, seed: int = 0) -> int:
    """xxHash32 for inputs under 16 bytes (all an lz4 frame descriptor needs)."""
    p1, p2, p3, p4, p5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
    mask = 0xFFFFFFFF
    assert len(data) < 16

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & mask

    h = (seed + p5 + len(data)) & mask
    i = 0
    while i + 4 <= len(data):
        (word,) = struct.unpack_from("<I", data, i)
        h = (rotl((h + word * p3) & mask, 17) * p4) & mask
        i += 4
    for b in data[i:]:
        h = (rotl((h + b * p5) & mask, 11) * p1) & mask
    h ^= h >> 15
    h = (h * p2) & mask
    h ^= h >> 13
    h = (h * p3) & mask
    h ^= h >> 16
    return h


def _java_lz4_header_check(frame: bytes) -> None:
    """What Kafka's Lz4BlockInputStream checks in a frame header (read from its source)."""
    assert struct.unpack_from("<I", frame)[0] == 0x184D2204
    flg, bd = frame[4], frame[5]
    assert flg & 0x03 == 0, "reserved FLG bits (dict id) must be 0"
    assert flg & 0x20, "Kafka refuses dependent blocks"
    assert flg >> 6 == 1, "version 1"
    assert bd & 0x0F == 0 and bd & 0x80 == 0, "reserved BD bits"
    assert 4 <= (bd >> 4) & 7 <= 7
    desc_end = 6 + (8 if flg & 0x08 else 0)
    assert frame[desc_end] == (_xxh32_short(frame[4:desc_end]) >> 8) & 0xFF, "header checksum"


def _lz4_frame(
    chunks: list[bytes],
    *,
    content_size: bool = False,
    stored: bool = False,
    block_size_id: int = 4,
) -> bytes:
    """An lz4 frame as Kafka's Java client and librdkafka write it (independent blocks, no
    checksums), built by hand from raw lz4 blocks."""
    flg = 0x60 | (0x08 if content_size else 0)
    desc = bytes([flg, block_size_id << 4])
    if content_size:
        desc += struct.pack("<Q", sum(map(len, chunks)))
    out = [struct.pack("<I", 0x184D2204), desc, bytes([(_xxh32_short(desc) >> 8) & 0xFF])]
    for chunk in chunks:
        if stored:
            out += [struct.pack("<I", len(chunk) | 0x80000000), chunk]
        else:
            block = bytes(cramjam.lz4.compress_block(chunk, store_size=False))
            out += [struct.pack("<I", len(block)), block]
    out.append(b"\x00\x00\x00\x00")
    return b"".join(out)


def test_xxh32_helper() -> None:
    # Published xxHash32 test vectors, then the header checksums the lz4 library writes.
    assert _xxh32_short(b"") == 0x02CC5D05
    assert _xxh32_short(b"a") == 0x550D7456
    assert _xxh32_short(b"abc") == 0x32D153FF
    for linked in (True, False):
        c = cramjam.lz4.Compressor(block_linked=linked)
        c.compress(b"hello")
        frame = bytes(c.finish())
        assert frame[6] == (_xxh32_short(frame[4:6]) >> 8) & 0xFF


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_lz4_output_is_acceptable_to_kafka_java_reader(name: str) -> None:
    _java_lz4_header_check(compress(CODEC_LZ4, PAYLOADS[name]))


@pytest.mark.parametrize("content_size", [False, True])
@pytest.mark.parametrize("stored", [False, True])
def test_lz4_reads_java_style_frames(content_size: bool, stored: bool) -> None:
    data = PAYLOADS["mixed"]
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    frame = _lz4_frame(chunks, content_size=content_size, stored=stored)
    _java_lz4_header_check(frame)
    assert decompress(CODEC_LZ4, frame) == data


def test_lz4_reads_linked_blocks_and_other_block_sizes() -> None:
    data = PAYLOADS["mixed"]
    c = cramjam.lz4.Compressor()  # linked blocks, checksums
    c.compress(data)
    assert decompress(CODEC_LZ4, bytes(c.finish())) == data
    frame = _lz4_frame([data], block_size_id=7)
    assert decompress(CODEC_LZ4, frame) == data


def test_lz4_malformed() -> None:
    good = _lz4_frame([PAYLOADS["text"]])
    bad_hc = bytearray(good)
    bad_hc[6] ^= 0xFF
    cases = [
        good[:-4],
        good[:5],
        bytes(bad_hc),
        b"\x00" * 20,
        good.replace(good[:4], b"\x05\x22\x4d\x18", 1),
        # content size that lies (smaller than the data)
        _lz4_frame([b"a" * 1000], content_size=True)[:6]
        + struct.pack("<Q", 10)
        + _lz4_frame([b"a" * 1000], content_size=True)[14:],
    ]
    for case in cases:
        with pytest.raises(CompressionError):
            decompress(CODEC_LZ4, case)


# ---------------------------------------------------------------------------- zstd


def test_zstd_streaming_frames_without_content_size() -> None:
    data = PAYLOADS["mixed"]
    c = cramjam.zstd.Compressor()
    c.compress(data)
    frame = bytes(c.finish())
    assert frame[4] >> 6 == 0 and not frame[4] & 0x20  # no content size field
    assert decompress(CODEC_ZSTD, frame) == data


def test_zstd_multiple_and_skippable_frames() -> None:
    a = bytes(cramjam.zstd.compress(b"first "))
    b = bytes(cramjam.zstd.compress(b"second"))
    skippable = struct.pack("<II", 0x184D2A53, 3) + b"xyz"
    assert decompress(CODEC_ZSTD, a + skippable + b) == b"first second"


def test_zstd_malformed() -> None:
    good = compress(CODEC_ZSTD, PAYLOADS["text"])
    for case in [good[:-3], good[:6], b"\x28\xb5\x2f\xfd", os.urandom(50), good + b"\x00"]:
        with pytest.raises(CompressionError):
            decompress(CODEC_ZSTD, case)


# ---------------------------------------------------------------------------- gzip


def test_gzip_reads_concatenated_members_and_stdlib_output() -> None:
    data = gzip.compress(b"abc") + gzip.compress(b"def", mtime=0)
    assert decompress(CODEC_GZIP, data) == b"abcdef"
    assert gzip.decompress(compress(CODEC_GZIP, PAYLOADS["text"])) == PAYLOADS["text"]


def test_gzip_malformed() -> None:
    good = compress(CODEC_GZIP, PAYLOADS["text"])
    for case in [good[:-10], good[:5], b"\x1f\x8b" + os.urandom(40), good + b"junk"]:
        with pytest.raises(CompressionError):
            decompress(CODEC_GZIP, case)


# ---------------------------------------------------------------------------- limits


@pytest.mark.parametrize("codec", ALL_CODECS)
def test_output_limit(codec: int) -> None:
    data = bytes(2_000_000)
    packed = compress(codec, data)
    with pytest.raises(DecompressedTooLargeError) as info:
        decompress(codec, packed, max_size=1_000_000)
    assert info.value.error_code == 2
    assert decompress(codec, packed, max_size=2_000_000) == data


@pytest.mark.parametrize("codec", [CODEC_GZIP, CODEC_SNAPPY, CODEC_ZSTD])
def test_output_limit_is_exact_when_size_is_known(codec: int) -> None:
    data = b"y" * 100_001
    packed = compress(codec, data)
    assert decompress(codec, packed, max_size=100_001) == data
    with pytest.raises(DecompressedTooLargeError):
        decompress(codec, packed, max_size=100_000)


def test_bombs_are_refused_quickly() -> None:
    # 256 MiB of zeros behind a few kilobytes (zstd, one streaming frame without a content
    # size) or about a megabyte (gzip, 256 members of 1 MiB each).
    zc = cramjam.zstd.Compressor(level=1)
    chunk = bytes(1 << 24)
    for _ in range(16):
        zc.compress(chunk)
    bombs = {
        CODEC_ZSTD: bytes(zc.finish()),
        CODEC_GZIP: gzip.compress(bytes(1 << 20), compresslevel=1) * 256,
    }
    for codec, bomb in bombs.items():
        with pytest.raises(DecompressedTooLargeError):
            decompress(codec, bomb)


def test_error_codes() -> None:
    assert CompressionError.error_code == 2
    assert DecompressedTooLargeError.error_code == 2
    assert UnknownCodecError.error_code == 76
    assert comp.DEFAULT_MAX_DECOMPRESSED == 64 * 1024 * 1024


# ---------------------------------------------------------------------------- client cross-checks

SampleRecord = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]
_SPECIAL: list[SampleRecord] = [
    (None, b"value-0", []),
    (b"key-1", None, [("h1", b"v1")]),
    (b"key-2", b"payload " * 300, [("a", None), ("b", b"")]),
    (b"", b"", []),
]
SAMPLE: list[SampleRecord] = _SPECIAL + [
    (b"k%d" % i, b"value %d " % i * 20, [("idx", str(i).encode())]) for i in range(4, 60)
]


@pytest.fixture
def kafka_python_codecs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Make kafka-python's codec checks pass without python-snappy/lz4/zstandard installed."""
    import kafka.codec as kcodec
    import kafka.record.default_records as kdr

    snappy_shim = types.SimpleNamespace(
        compress=lambda d: bytes(cramjam.snappy.compress_raw(bytes(d))),
        decompress=lambda d: bytes(cramjam.snappy.decompress_raw(bytes(d))),
    )
    monkeypatch.setattr(kcodec, "snappy", snappy_shim)
    monkeypatch.setattr(kcodec, "lz4", types.SimpleNamespace())
    monkeypatch.setattr(kcodec, "zstd", types.SimpleNamespace())
    monkeypatch.setattr(kdr, "lz4_encode", lambda d: comp.compress(CODEC_LZ4, d))
    monkeypatch.setattr(kdr, "lz4_decode", lambda d: bytes(cramjam.lz4.decompress(d)))
    monkeypatch.setattr(kdr, "zstd_encode", lambda d: bytes(cramjam.zstd.compress(d)))
    monkeypatch.setattr(kdr, "zstd_decode", lambda d: bytes(cramjam.zstd.decompress(d)))
    yield kdr


def _check_ours_reads(raw: bytes, codec: int, base_ts: int, producer: bool) -> None:
    (header,) = validate_batches(memoryview(raw))
    assert header.compression == codec
    assert header.records_count == len(SAMPLE)
    if producer:
        assert (header.producer_id, header.producer_epoch, header.base_sequence) == (77, 3, 10)
    got_header, records = decode_records(raw)
    assert got_header == header
    assert [(r.key, r.value, r.headers) for r in records] == [(k, v, h) for k, v, h in SAMPLE]
    assert [r.offset for r in records] == list(range(len(SAMPLE)))
    assert [r.timestamp for r in records] == [base_ts + i for i in range(len(SAMPLE))]


@pytest.mark.parametrize("codec", ALL_CODECS)
def test_kafka_python_builder_read_by_us(codec: int, kafka_python_codecs: Any) -> None:
    kdr = kafka_python_codecs
    builder = kdr.DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=False,
        producer_id=77,
        producer_epoch=3,
        base_sequence=10,
        batch_size=1 << 20,
    )
    base_ts = 1_700_000_000_000
    for i, (k, v, h) in enumerate(SAMPLE):
        builder.append(i, timestamp=base_ts + i, key=k, value=v, headers=h)
    _check_ours_reads(bytes(builder.build()), codec, base_ts, True)


@pytest.mark.parametrize("codec", ALL_CODECS)
def test_aiokafka_builder_read_by_us(codec: int) -> None:
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(2, codec, 0, 77, 3, 10, 1 << 20)
    base_ts = 1_700_000_000_000
    for i, (k, v, h) in enumerate(SAMPLE):
        builder.append(i, base_ts + i, k, v, h)
    raw = bytes(builder.build())
    _check_ours_reads(raw, codec, base_ts, True)
    if codec == CODEC_LZ4:
        _java_lz4_header_check(raw[61:])


def _our_batch(codec: int, base_ts: int) -> bytes:
    records = [Record(500 + i, base_ts + i, k, v, list(h)) for i, (k, v, h) in enumerate(SAMPLE)]
    return build_batch(
        records,
        compression=codec,
        producer_id=77,
        producer_epoch=3,
        base_sequence=10,
    )


@pytest.mark.parametrize("codec", ALL_CODECS)
def test_ours_read_by_kafka_python(codec: int, kafka_python_codecs: Any) -> None:
    from kafka.record.memory_records import MemoryRecords

    base_ts = 1_600_000_000_000
    raw = _our_batch(codec, base_ts) * 2  # two batches back to back
    records = MemoryRecords(raw)
    batches = 0
    while records.has_next():
        batch = records.next_batch()
        assert batch.validate_crc()
        assert batch.compression_type == codec
        assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (77, 3, 10)
        got = [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in batch]
        assert got == [(500 + i, base_ts + i, k, v, h) for i, (k, v, h) in enumerate(SAMPLE)]
        batches += 1
    assert batches == 2


@pytest.mark.parametrize("codec", ALL_CODECS)
def test_ours_read_by_aiokafka(codec: int) -> None:
    from aiokafka.record.memory_records import MemoryRecords

    base_ts = 1_600_000_000_000
    raw = _our_batch(codec, base_ts)
    batch = MemoryRecords(raw).next_batch()
    assert batch is not None
    assert batch.validate_crc()
    got = [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in batch]
    assert got == [(500 + i, base_ts + i, k, v, h) for i, (k, v, h) in enumerate(SAMPLE)]


def test_ours_read_by_kafka_python_real_gzip() -> None:
    # No shims at all: kafka-python's gzip path uses the standard library.
    from kafka.record.default_records import DefaultRecordBatch

    raw = _our_batch(CODEC_GZIP, 0)
    batch = DefaultRecordBatch(bytearray(raw))
    assert batch.validate_crc()
    assert [r.value for r in batch] == [v for _, v, _ in SAMPLE]


# ------------------------------------------------------------------------ levels (KIP-390)


@pytest.mark.parametrize(("level", "xfl"), [(1, 4), (-1, 0), (6, 0), (9, 2)])
def test_gzip_level_is_kafkas_scale(level: int, xfl: int) -> None:
    """-1 is the JDK's default (zlib 6); the gzip header's XFL byte shows 1 and 9."""
    packed = compress(CODEC_GZIP, PAYLOADS["text"], level)
    assert packed[8] == xfl
    assert gzip.decompress(packed) == PAYLOADS["text"]
    assert compress(CODEC_GZIP, PAYLOADS["text"]) == compress(CODEC_GZIP, PAYLOADS["text"], 6)


@pytest.mark.parametrize("level", [1, 2, 3, 9, 12, 17])
def test_lz4_levels_round_trip_and_suit_kafkas_reader(level: int) -> None:
    data = PAYLOADS["mixed"]
    packed = compress(CODEC_LZ4, data, level)
    _java_lz4_header_check(packed)
    assert decompress(CODEC_LZ4, packed) == data


def test_lz4_default_level_is_the_fast_compressor_and_others_are_hc() -> None:
    """Kafka's level 9 is lz4-java's fast compressor; the others are LZ4 HC, which compresses
    text better."""
    text = b" ".join(f"word{i % 997} {i * 7919 % 1013}".encode() for i in range(50_000))
    fast = compress(CODEC_LZ4, text)
    assert fast == compress(CODEC_LZ4, text, 9)
    assert len(compress(CODEC_LZ4, text, 12)) < len(fast)


@pytest.mark.parametrize("level", [-131072, -5, 1, 3, 19, 22])
def test_zstd_levels_round_trip(level: int) -> None:
    data = PAYLOADS["text"]
    assert decompress(CODEC_ZSTD, compress(CODEC_ZSTD, data, level)) == data
    if level in (-5, 19):
        assert len(compress(CODEC_ZSTD, data, 19)) <= len(compress(CODEC_ZSTD, data, -5))


def test_snappy_has_no_level() -> None:
    assert compress(CODEC_SNAPPY, PAYLOADS["text"], 5) == compress(CODEC_SNAPPY, PAYLOADS["text"])
