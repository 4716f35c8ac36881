from __future__ import annotations

import struct

import pytest
from crc32c import crc32c

from strom.protocol.records.batch_header import (
    BATCH_HEADER_SIZE,
    BatchHeader,
    assign_offsets,
    iter_batch_headers,
)
from strom.protocol.records.codec import Record, build_batch, decode_records
from strom.protocol.records.control import (
    CONTROL_ABORT,
    CONTROL_COMMIT,
    build_control_batch,
    parse_control_record,
)
from strom.protocol.records.errors import (
    CorruptRecordError,
    InvalidRecordError,
    RecordError,
    RecordTooLargeError,
    UnsupportedCompressionError,
    UnsupportedMagicError,
)
from strom.protocol.records.validation import check_timestamps, validate_batches

TS = 1_700_000_000_000


def records(n: int, start: int = 0) -> list[Record]:
    return [
        Record(start + i, TS + i, b"k%d" % i, b"value-%d" % i, [("h", b"%d" % i)]) for i in range(n)
    ]


def refresh_crc(buf: bytearray, pos: int = 0) -> None:
    (length,) = struct.unpack_from(">i", buf, pos + 8)
    struct.pack_into(">I", buf, pos + 17, crc32c(memoryview(buf)[pos + 21 : pos + 12 + length]))


def patched(batch: bytes, fmt: str, offset: int, value: int, fix_crc: bool = True) -> bytes:
    buf = bytearray(batch)
    struct.pack_into(fmt, buf, offset, value)
    if fix_crc:
        refresh_crc(buf)
    return bytes(buf)


# ---------------------------------------------------------------------------- header


def test_header_layout_and_properties() -> None:
    batch = build_batch(
        records(5, start=100),
        compression=3,
        producer_id=42,
        producer_epoch=7,
        base_sequence=2_147_483_645,
        is_transactional=True,
        partition_leader_epoch=9,
    )
    ((pos, h),) = list(iter_batch_headers(batch))
    assert pos == 0 and BATCH_HEADER_SIZE == 61
    assert h.base_offset == 100 and h.partition_leader_epoch == 9 and h.magic == 2
    assert h.batch_length == len(batch) - 12 and h.size == len(batch)
    assert h.compression == 3 and h.timestamp_type == 0
    assert h.is_transactional and not h.is_control and not h.has_delete_horizon
    assert (h.last_offset_delta, h.last_offset, h.next_offset) == (4, 104, 105)
    assert (h.first_timestamp, h.max_timestamp) == (TS, TS + 4)
    assert (h.producer_id, h.producer_epoch, h.records_count) == (42, 7, 5)
    # Sequences wrap from 2**31-1 to 0: 2147483645, 46, 47, 0, 1.
    assert h.last_sequence == 1
    assert h.crc == crc32c(batch[21:])


def test_header_flags() -> None:
    h = BatchHeader(0, 49, 0, 2, 0, 0b1111100, 0, 0, 0, -1, -1, -1, 0)
    assert h.compression == 4 and h.timestamp_type == 1
    assert h.is_transactional and h.is_control and h.has_delete_horizon
    assert h.last_sequence == -1
    assert h._replace(base_sequence=5, last_offset_delta=3).last_sequence == 8


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4])
def test_build_validate_decode(codec: int) -> None:
    recs = [
        *records(50),
        Record(50, TS - 5, None, None),
        Record(51, TS + 100, b"", b"", [("", None), ("ünïcode", b"\x00\xff")]),
    ]
    batch = build_batch(recs, compression=codec, producer_id=1, producer_epoch=0, base_sequence=0)
    (h,) = validate_batches(batch)
    assert h.compression == codec and h.records_count == 52
    assert h.first_timestamp == TS and h.max_timestamp == TS + 100
    header, decoded = decode_records(memoryview(batch))
    assert header == h
    assert decoded == recs


def test_offset_gaps_and_kept_last_offset() -> None:
    # Compaction output: records keep their offsets; the batch keeps its last offset.
    recs = [
        Record(10, TS, b"a", b"1"),
        Record(13, TS + 3, b"b", None),
        Record(17, TS + 1, b"c", b""),
    ]
    batch = build_batch(recs, last_offset_delta=9, base_sequence=5, producer_id=3, producer_epoch=1)
    with pytest.raises(InvalidRecordError):
        validate_batches(batch)  # a client batch needs count == last_offset_delta + 1
    (h,) = validate_batches(batch, from_client=False)
    assert (h.base_offset, h.last_offset, h.records_count, h.last_sequence) == (10, 19, 3, 14)
    assert decode_records(batch)[1] == recs


def test_empty_batch_for_compaction() -> None:
    batch = build_batch([], base_offset=40, last_offset_delta=4, producer_id=8, producer_epoch=2)
    (h,) = validate_batches(batch, from_client=False)
    assert (h.records_count, h.last_offset, h.first_timestamp, h.max_timestamp) == (0, 44, -1, -1)
    assert decode_records(batch)[1] == []
    with pytest.raises(InvalidRecordError):
        validate_batches(batch)


def test_delete_horizon_keeps_record_timestamps() -> None:
    recs = records(3)
    batch = build_batch(recs, has_delete_horizon=True, first_timestamp=TS + 86_400_000)
    header, decoded = decode_records(batch)
    assert header.has_delete_horizon and header.first_timestamp == TS + 86_400_000
    assert decoded == recs


def test_build_batch_misuse() -> None:
    with pytest.raises(ValueError):
        build_batch([Record(5, 0, None, None), Record(5, 0, None, None)])
    with pytest.raises(ValueError):
        build_batch([Record(5, 0, None, None)], base_offset=6)
    with pytest.raises(ValueError):
        build_batch(records(3), last_offset_delta=1)
    with pytest.raises(ValueError):
        build_batch(records(1), compression=5)


# ---------------------------------------------------------------------------- iteration


def test_iter_batch_headers_and_partial_tail() -> None:
    a = build_batch(records(3))
    b = build_batch(records(2, start=3), compression=1)
    buf = a + b
    assert [(p, h.base_offset) for p, h in iter_batch_headers(buf)] == [(0, 0), (len(a), 3)]
    for cut in range(len(buf)):
        got = [p for p, _ in iter_batch_headers(memoryview(buf)[:cut])]
        assert got == ([0] if cut >= len(a) else [])


def test_iter_batch_headers_bad_input() -> None:
    batch = build_batch(records(1))
    with pytest.raises(UnsupportedMagicError):
        list(iter_batch_headers(patched(batch, ">b", 16, 1)))
    with pytest.raises(CorruptRecordError):
        list(iter_batch_headers(patched(batch, ">i", 8, 48)))
    with pytest.raises(CorruptRecordError):
        list(iter_batch_headers(patched(batch, ">i", 8, -1)))


# ---------------------------------------------------------------------------- validation


def test_validate_errors_and_codes() -> None:
    good = build_batch(records(3), producer_id=1, producer_epoch=0, base_sequence=0)
    cases: list[tuple[bytes, type[RecordError], int]] = [
        (b"", InvalidRecordError, 87),
        (good + good, InvalidRecordError, 87),  # one batch per partition
        (good[:-1], CorruptRecordError, 2),
        (good[:30], CorruptRecordError, 2),
        (good[:10], CorruptRecordError, 2),
        (good + b"\x00", InvalidRecordError, 87),
        (patched(good, ">b", 16, 1), UnsupportedMagicError, 87),
        (patched(good, ">b", 16, 0)[:40], UnsupportedMagicError, 87),
        (patched(good, ">b", 16, 3), UnsupportedMagicError, 87),
        (patched(good, ">I", 17, 0, fix_crc=False), CorruptRecordError, 2),
        (patched(good, ">B", 60, 1, fix_crc=False), CorruptRecordError, 2),
        (patched(good, ">i", 8, 10), CorruptRecordError, 2),
        (patched(good, ">i", 8, len(good)), CorruptRecordError, 2),
        (patched(good, ">H", 21, 5), UnsupportedCompressionError, 76),
        (patched(good, ">H", 21, 7), UnsupportedCompressionError, 76),
        (patched(good, ">i", 57, 2), InvalidRecordError, 87),  # count != delta + 1
        (patched(good, ">i", 57, 0), InvalidRecordError, 87),
        (patched(good, ">i", 23, -1), InvalidRecordError, 87),
        (patched(good, ">H", 21, 0x20), InvalidRecordError, 87),  # control from a client
        (patched(good, ">i", 53, -1), InvalidRecordError, 87),  # producer id, no sequence
    ]
    for data, exc, code in cases:
        with pytest.raises(exc) as info:
            validate_batches(memoryview(data))
        assert info.value.error_code == code, (data, exc)
    with pytest.raises(RecordTooLargeError) as too_large:
        validate_batches(good, max_batch_size=len(good) - 1)
    assert too_large.value.error_code == 10
    assert validate_batches(good, max_batch_size=len(good))


def test_validate_not_from_client() -> None:
    a = build_batch(records(2))
    control = build_control_batch(CONTROL_COMMIT, 5, 0, 1, base_offset=2, timestamp=TS)
    headers = validate_batches(a + control, from_client=False)
    assert [h.is_control for h in headers] == [False, True]
    assert validate_batches(b"", from_client=False) == []
    with pytest.raises(CorruptRecordError):
        validate_batches(a[:-1], from_client=False)
    with pytest.raises(CorruptRecordError):  # more records than offsets
        validate_batches(patched(a, ">i", 57, 3), from_client=False)


def test_validate_accepts_bytearray_and_memoryview_slices() -> None:
    batch = build_batch(records(4), compression=4)
    buf = bytearray(b"xx" + batch + b"yy")
    assert validate_batches(memoryview(buf)[2:-2])[0].records_count == 4


# ---------------------------------------------------------------------------- assign_offsets


def test_assign_offsets_create_time() -> None:
    batch = build_batch(records(3))
    buf = bytearray(b"\x00" * 7 + batch)
    assign_offsets(buf, 7, 1000, 12)
    view = memoryview(buf)[7:]
    (h,) = validate_batches(view)
    assert (h.base_offset, h.partition_leader_epoch, h.crc) == (1000, 12, crc32c(batch[21:]))
    assert [r.offset for r in decode_records(view)[1]] == [1000, 1001, 1002]
    assert buf[7 + 16 :] == batch[16:]  # nothing from the magic on changed


@pytest.mark.parametrize("codec", [0, 4])
def test_assign_offsets_log_append_time(codec: int) -> None:
    first = build_batch(records(2), compression=codec)
    second = build_batch(records(3), compression=codec)
    buf = bytearray(first + second)
    view = memoryview(buf)
    assign_offsets(view, len(first), 50, 3, log_append_time_ms=TS + 999)
    h1, h2 = validate_batches(view, from_client=False)
    assert h1 == validate_batches(first)[0]
    assert (h2.base_offset, h2.partition_leader_epoch, h2.timestamp_type) == (50, 3, 1)
    assert (h2.max_timestamp, h2.first_timestamp, h2.compression) == (TS + 999, TS, codec)
    _, decoded = decode_records(view[len(first) :])
    assert [(r.offset, r.timestamp) for r in decoded] == [
        (50, TS + 999),
        (51, TS + 999),
        (52, TS + 999),
    ]
    # Idempotent: stamping again with the same time leaves the bytes alone.
    before = bytes(buf)
    assign_offsets(buf, len(first), 50, 3, log_append_time_ms=TS + 999)
    assert bytes(buf) == before


# ---------------------------------------------------------------------------- timestamps


def test_check_timestamps() -> None:
    (h,) = validate_batches(build_batch(records(10)))  # TS .. TS + 9
    assert check_timestamps(h, TS, 100, 100)
    assert check_timestamps(h, TS + 4, before_max_ms=4, after_max_ms=5)
    assert not check_timestamps(h, TS + 4, before_max_ms=3, after_max_ms=5)
    assert not check_timestamps(h, TS + 4, before_max_ms=4, after_max_ms=4)
    assert check_timestamps(h, TS - 100, before_max_ms=10**12, after_max_ms=109)
    assert not check_timestamps(h, TS - 100, before_max_ms=10**12, after_max_ms=108)
    assert check_timestamps(h, TS + 100, before_max_ms=100, after_max_ms=0)
    assert not check_timestamps(h, TS + 101, before_max_ms=100, after_max_ms=0)
    none = h._replace(first_timestamp=-1, max_timestamp=-1)
    assert check_timestamps(none, 0, 0, 0)


# ---------------------------------------------------------------------------- control records


@pytest.mark.parametrize("kind", [CONTROL_ABORT, CONTROL_COMMIT])
def test_control_batch(kind: int) -> None:
    batch = build_control_batch(
        kind, 77, 4, 21, base_offset=300, timestamp=TS, partition_leader_epoch=2
    )
    (h,) = validate_batches(batch, from_client=False)
    assert h.is_control and h.is_transactional and h.records_count == 1
    assert (h.producer_id, h.producer_epoch, h.base_sequence, h.base_offset) == (77, 4, -1, 300)
    assert h.partition_leader_epoch == 2 and h.compression == 0
    _, (record,) = decode_records(batch)
    assert record.key == struct.pack(">hh", 0, kind)
    assert record.value == struct.pack(">hi", 0, 21)
    assert parse_control_record(record) == (kind, 21)


def test_parse_control_record_edge_cases() -> None:
    assert parse_control_record(Record(0, 0, struct.pack(">hh", 0, 2), b"anything")) == (2, -1)
    assert parse_control_record(
        Record(0, 0, struct.pack(">hh", 1, 1), struct.pack(">hi", 1, 9) + b"x")
    ) == (1, 9)
    for key, value in [
        (None, b""),
        (b"\x00\x00\x00", struct.pack(">hi", 0, 1)),
        (struct.pack(">hh", -1, 0), struct.pack(">hi", 0, 1)),
        (struct.pack(">hh", 0, 0), None),
        (struct.pack(">hh", 0, 1), b"\x00\x00\x00"),
    ]:
        with pytest.raises(InvalidRecordError):
            parse_control_record(Record(0, 0, key, value))
    with pytest.raises(ValueError):
        build_control_batch(2, 1, 1, 1, 0, 0)


# ---------------------------------------------------------------------------- decode errors


def _with_body(body: bytes, count: int, codec: int = 0) -> bytes:
    """A batch with a hand-written records section and a correct CRC."""
    head = bytearray(build_batch([], compression=codec, first_timestamp=0)[:BATCH_HEADER_SIZE])
    struct.pack_into(">i", head, 57, count)
    buf = head + body
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    refresh_crc(buf)
    return bytes(buf)


def test_decode_record_errors() -> None:
    one = build_batch([Record(0, 0, b"k", b"v")])[BATCH_HEADER_SIZE:]
    assert decode_records(_with_body(one, 1))[1] == [Record(0, 0, b"k", b"v")]
    cases = [
        _with_body(one, 2),  # fewer records than declared
        _with_body(one + one, 1),  # bytes after the declared records
        _with_body(one, 1_000_000),
        _with_body(b"\x02\x00\x00", 1),  # record ends inside its fields
        _with_body(b"\x0e\x00\x00\x00\x03\x00\x00\x00", 1),  # key length -2
        _with_body(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 1),  # overlong varint
        _with_body(b"\x10\x00\x00\x00\x01\x01\x02\x01\x01\x00", 1),  # header key length -1
        _with_body(b"\x0e\x00\x00\x00\x01\x01\x00\x00", 1),  # trailing byte in the record
    ]
    for case in cases:
        with pytest.raises(InvalidRecordError):
            decode_records(case)
    with pytest.raises(CorruptRecordError):
        decode_records(_with_body(one, -1))
    with pytest.raises(CorruptRecordError):
        decode_records(_with_body(b"\x1f\x8bnot gzip", 1, codec=1))
    with pytest.raises(UnsupportedCompressionError):
        decode_records(patched(build_batch(records(1)), ">H", 21, 6))
    with pytest.raises(UnsupportedMagicError):
        decode_records(patched(build_batch(records(1)), ">b", 16, 1))
    with pytest.raises(CorruptRecordError):
        decode_records(build_batch(records(1))[:-1])


def test_decode_limit() -> None:
    batch = build_batch([Record(0, 0, None, bytes(1_000_000))], compression=4)
    with pytest.raises(CorruptRecordError):
        decode_records(batch, max_decompressed=500_000)
    assert decode_records(batch, max_decompressed=2_000_000)[1][0].value == bytes(1_000_000)


def test_non_utf8_header_key_survives_a_round_trip() -> None:
    raw = build_batch([Record(0, 0, None, None, [("x", b"1")])])
    buf = bytearray(raw)
    idx = buf.index(b"x")
    buf[idx] = 0xFF
    refresh_crc(buf)
    _, (record,) = decode_records(buf)
    again = build_batch([record])
    assert again == bytes(buf)
