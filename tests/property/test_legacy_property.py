"""Properties of message formats v0/v1: up-conversion and down-conversion round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record.memory_records import MemoryRecordsBuilder

from strom.protocol.records.codec import Record, build_batch, decode_records
from strom.protocol.records.down_conversion import down_convert
from strom.protocol.records.legacy import (
    LegacyMessage,
    encode_message,
    encode_wrapper,
    inner_messages,
    iter_message_set,
)
from strom.protocol.records.up_conversion import AppendRules, up_convert

pytestmark = pytest.mark.property

NOW = 1_700_000_000_000
optional_bytes = st.none() | st.binary(max_size=64)
messages = st.lists(
    st.tuples(st.integers(-1, 2**50), optional_bytes, optional_bytes), min_size=1, max_size=30
)


def legacy_set(magic: int, codec: int, msgs: list[tuple[int, bytes | None, bytes | None]]) -> bytes:
    if codec == 0:
        return b"".join(
            encode_message(magic, i, ts, key, value) for i, (ts, key, value) in enumerate(msgs)
        )
    return encode_wrapper(magic, codec, [(i, ts, k, v) for i, (ts, k, v) in enumerate(msgs)])


def read_legacy(buf: bytes) -> list[LegacyMessage]:
    out: list[LegacyMessage] = []
    for msg in iter_message_set(buf):
        out.extend(inner_messages(msg) if msg.codec else [msg])
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([0, 1]),
    st.integers(0, 3),
    messages,
    st.sampled_from(["producer", "uncompressed", "gzip", "lz4", "zstd"]),
)
def test_up_conversion_keeps_every_record(
    magic: int, codec: int, msgs: list[tuple[int, bytes | None, bytes | None]], compression: str
) -> None:
    result = up_convert(
        legacy_set(magic, codec, msgs), AppendRules(now_ms=NOW, compression_type=compression)
    )
    header, records = decode_records(result.batch)
    assert header.records_count == len(msgs) and header.producer_id == -1
    assert [(r.offset, r.timestamp, r.key, r.value) for r in records] == [
        (i, ts if magic else -1, k, v) for i, (ts, k, v) in enumerate(msgs)
    ]
    assert header.max_timestamp == max(r.timestamp for r in records)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([0, 1]), st.integers(0, 3), messages)
def test_up_conversion_of_kafka_python_sets(
    magic: int, codec: int, msgs: list[tuple[int, bytes | None, bytes | None]]
) -> None:
    builder = MemoryRecordsBuilder(magic=magic, compression_type=codec, batch_size=1 << 22)
    for ts, key, value in msgs:
        builder.append(timestamp=max(ts, 0) if magic else None, key=key, value=value, headers=[])
    builder.close()
    _, records = decode_records(up_convert(bytes(builder.buffer()), AppendRules(now_ms=NOW)).batch)
    assert [(r.key, r.value) for r in records] == [(k, v) for _, k, v in msgs]


@st.composite
def v2_batches(draw: st.DrawFn) -> tuple[bytes, list[Record]]:
    n = draw(st.integers(1, 25))
    base = draw(st.integers(0, 2**40))
    offsets, at = [], base
    for gap in draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)):
        offsets.append(at)
        at += gap
    recs = [
        Record(o, draw(st.integers(0, 2**50)), draw(optional_bytes), draw(optional_bytes), [])
        for o in offsets
    ]
    lat = draw(st.booleans())
    batch = build_batch(
        recs,
        compression=draw(st.integers(0, 3)),
        timestamp_type=1 if lat else 0,
        max_timestamp=NOW if lat else None,
    )
    return batch, decode_records(batch)[1]


@settings(max_examples=200, deadline=None)
@given(v2_batches(), st.sampled_from([0, 1]), st.data())
def test_down_conversion_keeps_what_the_old_format_can_hold(
    batch_and_records: tuple[bytes, list[Record]], to_magic: int, data: st.DataObject
) -> None:
    batch, recs = batch_and_records
    fetch_offset = data.draw(st.sampled_from([r.offset for r in recs]))
    got = read_legacy(down_convert(batch, to_magic, fetch_offset))
    compressed = batch[22] & 0x07 != 0
    wanted = [r for r in recs if compressed or r.offset >= fetch_offset]
    assert [(m.offset, m.key, m.value) for m in got] == [(r.offset, r.key, r.value) for r in wanted]
    assert all(m.magic == to_magic for m in got)
    if to_magic == 1:
        assert [m.timestamp for m in got] == [r.timestamp for r in wanted]


@settings(max_examples=100, deadline=None)
@given(v2_batches())
def test_down_then_up_conversion_is_the_identity_on_records(
    batch_and_records: tuple[bytes, list[Record]],
) -> None:
    batch, recs = batch_and_records
    legacy = down_convert(batch, 1, recs[0].offset)
    # An uncompressed batch comes down as one message per record: produced again, they are
    # one set and become one batch again.
    _, back = decode_records(up_convert(legacy, AppendRules(now_ms=NOW)).batch)
    assert [(r.timestamp, r.key, r.value) for r in back] == [
        (r.timestamp, r.key, r.value) for r in recs
    ]
