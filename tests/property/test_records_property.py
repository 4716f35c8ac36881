"""Properties of record batch encoding, validation and decoding."""

from __future__ import annotations

import contextlib
import struct

import pytest
from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strom.protocol.compression import CompressionError, compress, decompress
from strom.protocol.records.batch_header import BATCH_HEADER_SIZE, iter_batch_headers
from strom.protocol.records.codec import Record, build_batch, decode_records
from strom.protocol.records.errors import CorruptRecordError, RecordError
from strom.protocol.records.recompression import recompress
from strom.protocol.records.validation import validate_batches

pytestmark = pytest.mark.property

CODECS = st.integers(0, 4)
# Timestamps near each other, so deltas stay int64 (as with any real producer).
TIMESTAMPS = st.integers(-1, 2**50)

optional_bytes = st.none() | st.binary(max_size=64)
headers = st.lists(st.tuples(st.text(max_size=8), optional_bytes), max_size=3)


@st.composite
def record_lists(draw: st.DrawFn, min_size: int = 0, max_size: int = 40) -> list[Record]:
    n = draw(st.integers(min_size, max_size))
    base = draw(st.integers(0, 2**40))
    gaps = draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))
    offsets, at = [], base
    for gap in gaps:
        offsets.append(at)
        at += gap
    return [
        Record(offset, draw(TIMESTAMPS), draw(optional_bytes), draw(optional_bytes), draw(headers))
        for offset in offsets
    ]


@settings(max_examples=150, deadline=None)
@given(record_lists(), CODECS)
def test_round_trip(recs: list[Record], codec: int) -> None:
    batch = build_batch(recs, compression=codec)
    (header,) = validate_batches(batch, from_client=False)
    assert header.records_count == len(recs)
    got_header, got = decode_records(batch)
    assert got_header == header
    assert got == recs


@settings(max_examples=100, deadline=None)
@given(record_lists(min_size=1), CODECS)
def test_client_batches_validate(recs: list[Record], codec: int) -> None:
    recs = [
        Record(recs[0].offset + i, r.timestamp, r.key, r.value, r.headers)
        for i, r in enumerate(recs)
    ]
    batch = build_batch(recs, compression=codec, producer_id=7, producer_epoch=1, base_sequence=3)
    (header,) = validate_batches(memoryview(batch))
    assert header.last_offset_delta == len(recs) - 1
    assert decode_records(batch)[1] == recs


@settings(max_examples=20, deadline=None)
@given(st.integers(200, 3000), CODECS)
def test_many_records(n: int, codec: int) -> None:
    recs = [Record(i, 1000 + i % 7, b"k%d" % (i % 13), b"v" * (i % 50), []) for i in range(n)]
    batch = build_batch(recs, compression=codec)
    validate_batches(batch)
    assert decode_records(batch)[1] == recs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record_lists(min_size=1, max_size=8), CODECS, st.data())
def test_any_single_byte_change_in_crc_region_is_caught(
    recs: list[Record], codec: int, data: st.DataObject
) -> None:
    batch = bytearray(build_batch(recs, compression=codec))
    index = data.draw(st.integers(21, len(batch) - 1))
    batch[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(CorruptRecordError):
        validate_batches(batch, from_client=False)


@settings(max_examples=200, deadline=None)
@given(record_lists(min_size=1, max_size=8), CODECS, st.data())
def test_truncation(recs: list[Record], codec: int, data: st.DataObject) -> None:
    batch = build_batch(recs, compression=codec)
    cut = data.draw(st.integers(1, len(batch) - 1))
    with pytest.raises(CorruptRecordError):
        validate_batches(batch[:cut], from_client=False)
    with pytest.raises(CorruptRecordError):
        decode_records(batch[:cut])
    # A torn tail after a whole batch: iteration yields the whole one and stops.
    assert [p for p, _ in iter_batch_headers(batch + batch[:cut])] == [0]


def _only_record_errors(buf: bytes) -> None:
    for check in (
        lambda: validate_batches(buf),
        lambda: validate_batches(buf, from_client=False),
        lambda: list(iter_batch_headers(buf)),
        lambda: decode_records(buf, max_decompressed=1 << 20),
    ):
        with contextlib.suppress(RecordError):
            check()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_record_errors(buf: bytes) -> None:
    _only_record_errors(buf)


@settings(max_examples=400, deadline=None)
@given(
    st.binary(max_size=400),
    st.integers(0, 7),
    st.integers(-2, 5),
    st.integers(-1, 2**31 - 1),
)
def test_random_records_section_raises_only_record_errors(
    body: bytes, codec: int, count: int, last_offset_delta: int
) -> None:
    """A header that passes every check, over random record (and compressed) bytes."""
    head = bytearray(BATCH_HEADER_SIZE)
    struct.pack_into(
        ">qiibIHiqqqhii", head, 0, 0, 49 + len(body), 0, 2, 0, codec, last_offset_delta,
        0, 0, -1, -1, -1, count,
    )  # fmt: skip
    buf = head + body
    struct.pack_into(">I", buf, 17, crc32c(memoryview(buf)[21:]))
    _only_record_errors(bytes(buf))


@settings(max_examples=300, deadline=None)
@given(record_lists(min_size=1, max_size=6), CODECS, st.data())
def test_mutated_batches_raise_only_record_errors(
    recs: list[Record], codec: int, data: st.DataObject
) -> None:
    """Mutations anywhere, with the CRC fixed up, so the record parser and decompressors see
    damaged input."""
    buf = bytearray(build_batch(recs, compression=codec))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(buf) - 1))
        buf[index] = data.draw(st.integers(0, 255))
    if len(buf) > 21:
        struct.pack_into(">I", buf, 17, crc32c(memoryview(buf)[21:]))
    _only_record_errors(bytes(buf))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.binary(max_size=200))
def test_decompress_random_bytes_raises_only_compression_errors(codec: int, raw: bytes) -> None:
    with contextlib.suppress(CompressionError):
        decompress(codec, raw, max_size=1 << 20)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.binary(max_size=3000), st.data())
def test_compression_round_trip_and_damage(codec: int, raw: bytes, data: st.DataObject) -> None:
    packed = bytearray(compress(codec, raw))
    assert decompress(codec, packed) == raw
    index = data.draw(st.integers(0, len(packed) - 1))
    packed[index] ^= data.draw(st.integers(1, 255))
    with contextlib.suppress(CompressionError):
        decompress(codec, packed, max_size=1 << 20)


@settings(max_examples=100, deadline=None)
@given(
    record_lists(min_size=1),
    CODECS,
    CODECS,
    st.integers(0, 2**40),
    st.integers(0, 32767),
    st.integers(0, 2**31 - 1),
    st.booleans(),
)
def test_recompression_keeps_records_and_producer_fields(
    recs: list[Record],
    source: int,
    target: int,
    producer_id: int,
    epoch: int,
    sequence: int,
    transactional: bool,
) -> None:
    recs = [Record(i, max(r.timestamp, 0), r.key, r.value, r.headers) for i, r in enumerate(recs)]
    batch = build_batch(
        recs,
        compression=source,
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=sequence,
        is_transactional=transactional,
    )
    (header,) = validate_batches(batch)
    rebuilt = recompress(batch, header, target, None)
    (again,) = validate_batches(rebuilt.batch)
    assert again == rebuilt.header
    assert again.compression == target
    assert (again.producer_id, again.producer_epoch, again.base_sequence) == (
        producer_id,
        epoch,
        sequence,
    )
    assert again.is_transactional == transactional and not again.is_control
    assert again.records_count == len(recs) and again.last_offset_delta == len(recs) - 1
    assert again.first_timestamp == recs[0].timestamp
    assert again.max_timestamp == max(r.timestamp for r in recs)
    assert decode_records(rebuilt.batch)[1] == recs
