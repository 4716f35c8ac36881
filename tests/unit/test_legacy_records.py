"""Message formats v0/v1: parsing, up-conversion on produce and down-conversion on fetch.

Message sets are built with kafka-python's own legacy builder where one exists for the case, so
the broker's codec is checked against an independent encoder; hand-made bytes cover what no
client writes (bad CRCs, wrong magics, impossible offsets).
"""

from __future__ import annotations

import struct
import zlib

import lz4.frame
import pytest
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder

from strom.protocol.compression import compress
from strom.protocol.records.batch_header import BATCH_HEADER_SIZE, parse_batch_header
from strom.protocol.records.codec import Record, build_batch, build_empty_batch, decode_records
from strom.protocol.records.control import CONTROL_COMMIT, build_control_batch
from strom.protocol.records.down_conversion import (
    OVERFLOW_ENTRY,
    down_convert,
    down_convert_magic,
)
from strom.protocol.records.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidTimestampError,
    RecordTooLargeError,
    UnsupportedCompressionError,
)
from strom.protocol.records.legacy import (
    encode_message,
    encode_wrapper,
    inner_messages,
    is_legacy,
    iter_message_set,
)
from strom.protocol.records.legacy_lz4 import (
    break_header_checksum,
    repair_header_checksum,
    xxh32,
)
from strom.protocol.records.up_conversion import AppendRules, target_codec, up_convert

NOW = 1_700_000_000_000


def kp_message_set(
    magic: int, codec: int, records: list[tuple[int | None, bytes | None, bytes | None]]
) -> bytes:
    """A message set as kafka-python's producer writes it: (timestamp, key, value) each."""
    builder = MemoryRecordsBuilder(magic=magic, compression_type=codec, batch_size=1 << 22)
    for timestamp, key, value in records:
        builder.append(timestamp=timestamp, key=key, value=value, headers=[])
    builder.close()
    return bytes(builder.buffer())


def kp_read(buf: bytes) -> list[tuple[int, int | None, int | None, bytes | None, bytes | None]]:
    """(offset, timestamp, timestamp type, key, value) as kafka-python's consumer reads them."""
    out = []
    records = MemoryRecords(buf)
    while records.has_next():
        batch = records.next_batch()
        if batch is None:
            break
        for r in batch:
            out.append((r.offset, r.timestamp, r.timestamp_type, r.key, r.value))
    return out


def converted(buf: bytes, **rules: object) -> tuple[int, list[Record]]:
    result = up_convert(buf, AppendRules(now_ms=NOW, **rules))  # type: ignore[arg-type]
    header, records = decode_records(result.batch)
    assert header == result.header
    return header.compression, records


# ------------------------------------------------------------------------------ up-conversion


@pytest.mark.parametrize("codec", [0, 1, 2, 3])
@pytest.mark.parametrize("magic", [0, 1])
def test_client_message_sets_convert_to_one_v2_batch(magic: int, codec: int) -> None:
    recs = [(NOW + i, b"k%d" % i, b"v" * i) for i in range(6)] + [(NOW + 9, None, None)]
    buf = kp_message_set(magic, codec, recs)
    assert is_legacy(buf)
    stored_codec, records = converted(buf)
    assert stored_codec == codec  # compression.type=producer keeps the producer's codec
    assert [r.offset for r in records] == list(range(7))
    assert [(r.key, r.value) for r in records] == [(k, v) for _, k, v in recs]
    expected_ts = [ts if magic == 1 else -1 for ts, _, _ in recs]
    assert [r.timestamp for r in records] == expected_ts
    assert all(r.headers == [] for r in records)


def test_topic_compression_type_decides_the_stored_codec() -> None:
    buf = kp_message_set(1, 1, [(NOW, b"k", b"v")])
    assert converted(buf, compression_type="lz4")[0] == 3
    assert converted(buf, compression_type="uncompressed")[0] == 0
    assert converted(buf, compression_type="zstd")[0] == 4
    plain = kp_message_set(0, 0, [(None, b"k", b"v"), (None, b"k2", b"w")])
    codec, records = converted(plain, compression_type="gzip")
    assert codec == 1 and [r.key for r in records] == [b"k", b"k2"]
    assert target_codec("producer", 2) == 2 and target_codec("snappy", 0) == 2


@pytest.mark.parametrize(("compression_type", "xfl"), [("gzip", 4), ("producer", 0)])
def test_topic_level_applies_only_when_the_topic_names_the_codec(
    compression_type: str, xfl: int
) -> None:
    """compression.gzip.level=1 compresses a gzip topic's batches "fastest" (XFL 4); with
    `producer` Kafka compresses at the codec's default level whatever the topic's level."""
    buf = kp_message_set(1, 1, [(NOW, b"k", b"v" * 500)])
    result = up_convert(
        buf, AppendRules(now_ms=NOW, compression_type=compression_type, compression_level=1)
    )
    assert result.header.compression == 1
    assert result.batch[BATCH_HEADER_SIZE + 8] == xfl


def test_v1_wrapper_with_relative_offsets_and_a_zero_wrapper_offset() -> None:
    inner = b"".join(encode_message(1, i, NOW + i, b"k", b"%d" % i) for i in range(3))
    for wrapper_offset in (2, 0, 1000):  # 0: as some librdkafka versions send it
        wrapper = encode_message(1, wrapper_offset, NOW, None, compress(1, inner), 1)
        _, records = converted(wrapper)
        assert [r.value for r in records] == [b"0", b"1", b"2"]
    (msg,) = iter_message_set(encode_message(1, 1, NOW, None, compress(1, inner), 1))
    with pytest.raises(InvalidRecordError, match="below the last inner offset"):
        inner_messages(msg)


def test_log_append_time_wrapper_gives_its_time_to_the_inner_messages() -> None:
    inner = b"".join(encode_message(1, i, 5 + i, b"k", b"v", 0) for i in range(3))
    wrapper = encode_message(1, 2, NOW, None, compress(2, inner), 2 | 0x08)
    (msg,) = iter_message_set(wrapper)
    assert [m.timestamp for m in inner_messages(msg)] == [NOW] * 3
    # A CreateTime topic takes it (the records have a timestamp); a LogAppendTime topic
    # refuses a producer-chosen LogAppendTime, as Kafka does.
    assert [r.timestamp for r in converted(wrapper)[1]] == [NOW] * 3
    with pytest.raises(InvalidTimestampError):
        up_convert(wrapper, AppendRules(now_ms=NOW, create_time=False))


def test_timestamp_bounds_are_checked_per_record() -> None:
    buf = kp_message_set(1, 1, [(NOW, b"k", b"v"), (NOW - 10_000, b"k", b"v")])
    with pytest.raises(InvalidTimestampError):
        up_convert(buf, AppendRules(now_ms=NOW, timestamp_before_max_ms=5_000))
    assert len(converted(buf, timestamp_before_max_ms=20_000)[1]) == 2
    with pytest.raises(InvalidTimestampError):
        up_convert(buf, AppendRules(now_ms=NOW - 20_000, timestamp_after_max_ms=1_000))
    # v0 records have no timestamp: never out of bounds.
    v0 = kp_message_set(0, 0, [(None, b"k", b"v")])
    assert converted(v0, timestamp_before_max_ms=0, timestamp_after_max_ms=0)[1][0].timestamp == -1
    negative = encode_message(1, 0, -5, b"k", b"v")
    with pytest.raises(InvalidTimestampError):
        up_convert(negative, AppendRules(now_ms=NOW))


def test_compacted_topics_need_keys() -> None:
    buf = kp_message_set(1, 0, [(NOW, b"k", b"v"), (NOW, None, b"v")])
    with pytest.raises(InvalidRecordError, match="without key"):
        up_convert(buf, AppendRules(now_ms=NOW, compacted=True))


def test_crc_errors_are_corrupt_message() -> None:
    buf = bytearray(kp_message_set(0, 0, [(None, b"k", b"value")]))
    buf[-1] ^= 1
    with pytest.raises(CorruptRecordError):
        up_convert(bytes(buf), AppendRules(now_ms=NOW))
    # An inner message's CRC, under an intact wrapper CRC.
    inner = bytearray(encode_message(1, 0, NOW, b"k", b"v"))
    inner[-1] ^= 1
    wrapper = encode_message(1, 0, NOW, None, compress(1, bytes(inner)), 1)
    with pytest.raises(CorruptRecordError):
        up_convert(wrapper, AppendRules(now_ms=NOW))


@pytest.mark.parametrize(
    ("build", "error"),
    [
        # two wrappers in one set
        (
            lambda: (
                2
                * encode_message(
                    1, 0, NOW, None, compress(1, encode_message(1, 0, 0, b"k", b"v")), 1
                )
            ),
            InvalidRecordError,
        ),
        # magic 0 then magic 1
        (
            lambda: encode_message(0, 0, -1, b"k", b"v") + encode_message(1, 1, NOW, b"k", b"v"),
            InvalidRecordError,
        ),
        # a wrapper with a null value
        (lambda: encode_message(1, 0, NOW, None, None, 1), InvalidRecordError),
        # a zstd wrapper
        (
            lambda: encode_message(
                1, 0, NOW, None, compress(4, encode_message(1, 0, 0, b"k", b"v")), 4
            ),
            InvalidRecordError,
        ),
        # an inner message that is itself compressed
        (
            lambda: encode_message(
                1, 0, NOW, None, compress(1, encode_message(1, 0, 0, None, b"x", 1)), 1
            ),
            InvalidRecordError,
        ),
        # an inner message of another magic
        (
            lambda: encode_message(
                1, 0, NOW, None, compress(1, encode_message(0, 0, 0, b"k", b"v")), 1
            ),
            InvalidRecordError,
        ),
        # a wrapper holding nothing
        (lambda: encode_message(1, 0, NOW, None, compress(1, b""), 1), InvalidRecordError),
        # codec 6 on a message
        (lambda: encode_message(1, 0, NOW, None, b"abc", 6), UnsupportedCompressionError),
        # undecodable gzip
        (lambda: encode_message(1, 0, NOW, None, b"not gzip", 1), CorruptRecordError),
        # a message size below the smallest message, and a magic byte of 5
        (lambda: struct.pack(">qi", 0, 10) + b"\x00" * 10, CorruptRecordError),
        (
            lambda: (
                encode_message(1, 0, NOW, b"k", b"v")[:16]
                + b"\x05"
                + encode_message(1, 0, NOW, b"k", b"v")[17:]
            ),
            CorruptRecordError,
        ),
        # a trailing partial message
        (
            lambda: (
                encode_message(0, 0, -1, b"k", b"v") + encode_message(0, 1, -1, b"k", b"v")[:20]
            ),
            CorruptRecordError,
        ),
        # a key length running past the message (CRC made to match)
        (
            lambda: _with_crc(encode_message(0, 0, -1, b"k", b"v"), key_length=1000),
            CorruptRecordError,
        ),
    ],
)
def test_refused_message_sets(build: object, error: type[Exception]) -> None:
    buf = build()  # type: ignore[operator]
    with pytest.raises(error):
        up_convert(buf, AppendRules(now_ms=NOW))


def _with_crc(entry: bytes, key_length: int) -> bytes:
    body = bytearray(entry[16:])
    body[2:6] = struct.pack(">i", key_length)
    return entry[:12] + struct.pack(">I", zlib.crc32(bytes(body))) + bytes(body)


def test_sizes_are_checked_before_and_after_conversion() -> None:
    one = encode_message(0, 0, -1, b"k", b"v" * 100)
    with pytest.raises(RecordTooLargeError):
        up_convert(one, AppendRules(now_ms=NOW, max_message_bytes=len(one) - 1))
    # Each message fits, but together they make a batch above the limit, as in Kafka.
    many = b"".join(encode_message(0, i, -1, b"k", b"v" * 100) for i in range(20))
    with pytest.raises(RecordTooLargeError):
        up_convert(many, AppendRules(now_ms=NOW, max_message_bytes=len(one) * 5))


# ------------------------------------------------------------------------- the lz4 quirk


def test_xxh32_matches_lz4_content_checksums() -> None:
    for n in (0, 1, 3, 4, 15, 16, 17, 33, 100):
        data = bytes(range(n))
        frame = lz4.frame.compress(data, content_checksum=True, store_size=False)
        assert int.from_bytes(frame[-4:], "little") == xxh32(data)


def test_magic_0_lz4_header_checksum() -> None:
    frame = compress(3, b"hello" * 100)
    broken = break_header_checksum(frame)
    assert broken != frame and repair_header_checksum(broken) == frame
    # kafka-python writes magic 0 lz4 with the broken checksum; it converts, and Strom's own
    # magic 0 lz4 wrapper is read back by kafka-python.
    buf = kp_message_set(0, 3, [(None, b"k", b"v" * 50)])
    assert converted(buf)[1][0].value == b"v" * 50
    ours = encode_wrapper(0, 3, [(7, -1, b"k", b"v" * 50)])
    assert kp_read(ours) == [(7, None, None, b"k", b"v" * 50)]
    # Magic 1 checks the header checksum: the broken one is refused.
    (msg,) = iter_message_set(encode_wrapper(1, 3, [(0, NOW, b"k", b"v")]))
    bad = encode_message(1, 0, NOW, None, break_header_checksum(msg.value or b""), 3)
    with pytest.raises(CorruptRecordError):
        up_convert(bad, AppendRules(now_ms=NOW))


# ------------------------------------------------------------------------- down-conversion


def test_fetch_versions_pick_the_magic() -> None:
    assert [down_convert_magic(v) for v in range(6)] == [0, 0, 1, 1, None, None]


@pytest.mark.parametrize("codec", [0, 1, 2, 3])
@pytest.mark.parametrize("to_magic", [0, 1])
def test_v2_batches_read_by_an_old_consumer(codec: int, to_magic: int) -> None:
    recs = [Record(100 + i, NOW + i, b"k%d" % i, b"v%d" % i, [("h", b"x")]) for i in range(5)]
    batch = build_batch(recs, compression=codec)
    got = kp_read(down_convert(batch, to_magic, 100))
    expected_ts = [r.timestamp if to_magic else None for r in recs]
    assert got == [
        (r.offset, ts, 0 if to_magic else None, r.key, r.value)
        for r, ts in zip(recs, expected_ts, strict=True)
    ]


def test_uncompressed_batches_start_at_the_fetch_offset_compressed_ones_do_not() -> None:
    recs = [Record(10 + i, NOW, b"k", b"%d" % i) for i in range(5)]
    plain = build_batch(recs)
    assert [o for o, *_ in kp_read(down_convert(plain, 1, 12))] == [12, 13, 14]
    gz = build_batch(recs, compression=1)
    assert [o for o, *_ in kp_read(down_convert(gz, 1, 12))] == [10, 11, 12, 13, 14]


def test_log_append_time_batches_keep_their_time_and_type() -> None:
    recs = [Record(i, NOW + i, b"k", b"v") for i in range(3)]
    for codec in (0, 1):
        batch = build_batch(recs, compression=codec, timestamp_type=1, max_timestamp=NOW + 99)
        got = kp_read(down_convert(batch, 1, 0))
        assert [(ts, tt) for _, ts, tt, _, _ in got] == [(NOW + 99, 1)] * 3


def test_control_batches_are_dropped_transactional_records_kept() -> None:
    data = build_batch(
        [Record(0, NOW, b"k", b"a"), Record(1, NOW, b"k", b"b")],
        producer_id=5,
        producer_epoch=0,
        base_sequence=0,
        is_transactional=True,
    ) + build_control_batch(CONTROL_COMMIT, 5, 0, 0, 2, NOW)
    assert [v for *_, v in kp_read(down_convert(data, 1, 0))] == [b"a", b"b"]


def test_a_read_that_converts_to_nothing_answers_kafkas_overflow_entry() -> None:
    """Markers and batches emptied by compaction alone: offset -1, size 61, no message (a
    client sees a message too large for its fetch size); no batch at all: nothing."""
    marker = build_control_batch(CONTROL_COMMIT, 5, 0, 0, 2, NOW)
    emptied = build_empty_batch(parse_batch_header(build_batch([Record(3, NOW, b"k", b"v")])))
    before_offset = build_batch([Record(4, NOW, b"k", b"v"), Record(5, NOW, b"k", b"w")])
    for magic in (0, 1):
        for read in (marker, emptied, marker + emptied, marker + marker):
            out = down_convert(read, magic, 2)
            assert out == OVERFLOW_ENTRY == struct.pack(">qi", -1, 61)
            assert kp_read(out) == []
        # An uncompressed batch whose records all lie before the fetch offset converts to none.
        assert down_convert(before_offset, magic, 6) == OVERFLOW_ENTRY
        assert down_convert(b"", magic, 2) == b""
        assert down_convert(marker[:-1], magic, 2) == b""  # no whole batch
        data = build_batch([Record(7, NOW, b"k", b"d")])
        got = kp_read(down_convert(marker + emptied + data, magic, 2))
        assert [(o, v) for o, *_, v in got] == [(7, b"d")]


def test_zstd_batches_cannot_be_converted() -> None:
    zstd = build_batch([Record(3, NOW, b"k", b"v")], compression=4)
    with pytest.raises(UnsupportedCompressionError):
        down_convert(zstd, 1, 3)
    plain = build_batch([Record(0, NOW, b"k", b"v"), Record(1, NOW, b"k", b"w")])
    # After a batch that converts, the conversion stops before the zstd batch.
    assert [o for o, *_ in kp_read(down_convert(plain + zstd, 1, 0))] == [0, 1]


def test_the_size_of_the_read_bounds_the_converted_messages() -> None:
    first = build_batch([Record(i, NOW, None, b"x" * 200) for i in range(50)])
    second = build_batch([Record(50 + i, NOW, None, b"x" * 200) for i in range(50)])
    out = down_convert(first + second, 0, 0)
    # v0 messages are larger than their v2 records: the first batch comes whole, the second
    # only as far as the size of the two v2 batches allows.
    offsets = [o for o, *_ in kp_read(out)]
    assert offsets[:50] == list(range(50))
    assert 50 < len(offsets) < 100 and offsets == list(range(len(offsets)))
    assert len(out) <= max(len(first) + len(second), len(down_convert(first, 0, 0)))
