"""Message formats v0/v1 on the wire: Produce v0-2 and Fetch v0-3 against a real broker.

Old clients produce magic 0/1 message sets, which the broker stores as record batch v2, and read
v2 batches converted down, as Kafka 3.x does; records cross between old and new clients with
the offsets and timestamps Kafka gives them. The clients: librdkafka (confluent-kafka) with
`api.version.request=false` and `broker.version.fallback` 0.9.0 / 0.10.0 / 0.11.0 (librdkafka
2.x still asks ApiVersions for a fallback of 0.10 and later, so only 0.9.0 puts Produce v1 and
Fetch v1 with message format v0 on the wire), kafka-python with `api_version` (0, 9)
(Produce v1 / Fetch v1, magic 0), (0, 10, 0) (v2 / v2, magic 1) and (0, 10, 1) (Produce v2 /
Fetch v3), and hand-built requests for the exact bytes and error codes.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from typing import Any

import confluent_kafka as ck
import kafka
import pytest

from .broker_process import BrokerProcess
from .clients import (
    DEADLINE_S,
    Rec,
    ck_conf,
    ck_consume,
    ck_produce,
    create_topic,
    kcat_consume,
    kcat_produce,
    kp_consume,
    kp_produce,
    wait_until,
)
from .conftest import BrokerFactory
from .kafka_wire import (
    RawRecord,
    connect,
    fetch_request_v0_3,
    legacy_message,
    parse_fetch_v0_3,
    parse_message_set,
    parse_produce_v0_2,
    produce_request_v0_2,
    record_batch,
    roundtrip,
)

pytestmark = pytest.mark.integration

TS = 1_700_000_000_000
CODECS = ["none", "gzip", "snappy", "lz4"]
FALLBACKS = ["0.9.0", "0.10.0", "0.11.0"]
KP_VERSIONS = [(0, 9), (0, 10, 0), (0, 10, 1)]
ERR_CORRUPT_MESSAGE = 2
ERR_UNSUPPORTED_VERSION = 35
ERR_UNSUPPORTED_COMPRESSION_TYPE = 76


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the module, without the 3 s wait before a new group's first rebalance."""
    factory = BrokerFactory(tmp_path_factory.mktemp("old-formats"))
    try:
        yield factory({"group.initial.rebalance.delay.ms": 0})
    finally:
        factory.stop_all()


def old_ck(fallback: str) -> dict[str, Any]:
    return {"api.version.request": False, "broker.version.fallback": fallback}


def recs(n: int, prefix: str = "k") -> list[Rec]:
    return [
        Rec(f"{prefix}{i}".encode(), f"value-{i}".encode(), timestamp=TS + i, partition=0)
        for i in range(n)
    ]


def kp_codec(codec: str) -> str | None:
    return None if codec == "none" else codec


def has_timestamps_from_ck(fallback: str) -> bool:
    """librdkafka writes message format v0 (no timestamp) only with the 0.9.0 fallback."""
    return fallback != "0.9.0"


# ----------------------------------------------------------------------------- hand-built


def raw_produce_old(b: BrokerProcess, version: int, topic: str, records: bytes) -> Any:
    with connect(b.host, b.port) as s:
        return parse_produce_v0_2(
            version, roundtrip(s, produce_request_v0_2(version, topic, 0, records))
        )


def raw_fetch_old(b: BrokerProcess, version: int, topic: str, offset: int) -> Any:
    with connect(b.host, b.port) as s:
        return parse_fetch_v0_3(
            version, roundtrip(s, fetch_request_v0_3(version, topic, 0, offset))
        )


def test_raw_produce_v0_2_and_fetch_v0_3(shared_broker: BrokerProcess, topic: str) -> None:
    create_topic(shared_broker.bootstrap, topic, 1)
    v0_set = legacy_message(0, 0, b"a", b"one") + legacy_message(0, 1, None, b"two")
    r = raw_produce_old(shared_broker, 0, topic, v0_set)
    assert (r.error_code, r.base_offset) == (0, 0)
    v1_set = legacy_message(1, 0, b"b", b"three", TS) + legacy_message(1, 0, b"c", None, TS + 5)
    r = raw_produce_old(shared_broker, 2, topic, v1_set)
    assert (r.error_code, r.base_offset, r.log_append_time) == (0, 2, -1)
    r = raw_produce_old(shared_broker, 1, topic, legacy_message(1, 7, b"d", b"four", TS + 9))
    assert (r.error_code, r.base_offset) == (0, 4)

    for version, magic in ((0, 0), (1, 0), (2, 1), (3, 1)):
        f = raw_fetch_old(shared_broker, version, topic, 1)
        assert (f.error_code, f.high_watermark) == (0, 5)
        msgs = parse_message_set(f.records)
        assert [(m.offset, m.magic, m.key, m.value) for m in msgs] == [
            (1, magic, None, b"two"),
            (2, magic, b"b", b"three"),
            (3, magic, b"c", None),
            (4, magic, b"d", b"four"),
        ]
        if magic == 1:
            assert [m.timestamp for m in msgs] == [-1, TS, TS + 5, TS + 9]

    # A new consumer reads what the old producers wrote: v0 records have no timestamp.
    got = ck_consume(shared_broker.bootstrap, topic, count=5)
    assert [(g.offset, g.key, g.value) for g in got] == [
        (0, b"a", b"one"),
        (1, None, b"two"),
        (2, b"b", b"three"),
        (3, b"c", None),
        (4, b"d", b"four"),
    ]
    assert [g.timestamp for g in got[2:]] == [TS, TS + 5, TS + 9]
    assert all(g.timestamp_type == "create" for g in got[2:])
    assert all(g.timestamp in (-1, 0, None) for g in got[:2])
    # ListOffsets by time skips the records without a timestamp, as Kafka's time index does.
    c = ck.Consumer(ck_conf(shared_broker.bootstrap, **{"group.id": "strom-it-times"}))
    try:
        for wanted, found in ((0, 2), (TS + 1, 3), (TS + 10, -1)):
            (tp,) = c.offsets_for_times([ck.TopicPartition(topic, 0, wanted)], DEADLINE_S)
            assert tp.offset == found, wanted
    finally:
        c.close()


def test_raw_produce_v2_with_a_record_batch_v2(shared_broker: BrokerProcess, topic: str) -> None:
    """Produce v0-2 do not restrict the format: a v2 batch takes the usual path, as in Kafka."""
    create_topic(shared_broker.bootstrap, topic, 1)
    batch = record_batch([RawRecord(b"k", b"v2", [("h", b"x")])], base_timestamp=TS)
    r = raw_produce_old(shared_broker, 2, topic, batch)
    assert (r.error_code, r.base_offset) == (0, 0)
    (got,) = ck_consume(shared_broker.bootstrap, topic, count=1)
    assert (got.value, got.headers, got.timestamp) == (b"v2", (("h", b"x"),), TS)


def test_raw_corrupt_messages_are_refused(shared_broker: BrokerProcess, topic: str) -> None:
    create_topic(shared_broker.bootstrap, topic, 1)
    good = legacy_message(1, 0, b"k", b"v", TS)
    for version in (0, 1, 2):
        bad = bytearray(good)
        bad[-1] ^= 0x20
        r = raw_produce_old(shared_broker, version, topic, bytes(bad) + good)
        assert r.error_code == ERR_CORRUPT_MESSAGE
    # Nothing of the refused sets was written: the good one lands at offset 0.
    assert raw_produce_old(shared_broker, 2, topic, good).base_offset == 0


def test_log_append_time_topic(shared_broker: BrokerProcess, topic: str) -> None:
    create_topic(shared_broker.bootstrap, topic, 1, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    r = raw_produce_old(shared_broker, 2, topic, legacy_message(1, 0, b"k", b"v", TS))
    assert r.error_code == 0 and r.log_append_time is not None and r.log_append_time >= before
    r0 = raw_produce_old(shared_broker, 1, topic, legacy_message(0, 0, b"k0", b"v0"))
    assert r0.error_code == 0
    (m,) = parse_message_set(raw_fetch_old(shared_broker, 2, topic, 0).records)[:1]
    assert (m.timestamp, m.attributes & 0x08) == (r.log_append_time, 0x08)
    got = ck_consume(shared_broker.bootstrap, topic, count=2)
    assert got[0].timestamp == r.log_append_time and got[0].timestamp_type == "logappend"
    assert got[1].timestamp >= r.log_append_time and got[1].timestamp_type == "logappend"
    old = kp_consume(shared_broker.bootstrap, topic, {0: 0}, count=2, api_version=(0, 10, 1))
    assert [(g.timestamp, g.timestamp_type) for g in old] == [
        (got[0].timestamp, "logappend"),
        (got[1].timestamp, "logappend"),
    ]


def test_down_conversion_disabled_per_topic(shared_broker: BrokerProcess, topic: str) -> None:
    create_topic(shared_broker.bootstrap, topic, 1, {"message.downconversion.enable": "false"})
    ck_produce(shared_broker.bootstrap, topic, recs(3))
    for version in (0, 1, 2, 3):
        f = raw_fetch_old(shared_broker, version, topic, 0)
        assert (f.error_code, f.records) == (ERR_UNSUPPORTED_VERSION, b"")
    # Produce v0-2 still works, and new consumers are not affected.
    assert (
        raw_produce_old(shared_broker, 2, topic, legacy_message(1, 0, b"k", b"v", TS)).error_code
        == 0
    )
    assert len(ck_consume(shared_broker.bootstrap, topic, count=4)) == 4


def test_down_conversion_disabled_for_the_broker(broker_factory: BrokerFactory, topic: str) -> None:
    """log.message.downconversion.enable is the broker-wide default; a topic may turn it on."""
    b = broker_factory({"log.message.downconversion.enable": "false"})
    create_topic(b.bootstrap, topic, 1)
    ck_produce(b.bootstrap, topic, recs(2))
    assert raw_fetch_old(b, 3, topic, 0).error_code == ERR_UNSUPPORTED_VERSION
    enabled = f"{topic}-on"
    create_topic(b.bootstrap, enabled, 1, {"message.downconversion.enable": "true"})
    ck_produce(b.bootstrap, enabled, recs(2))
    f = raw_fetch_old(b, 3, enabled, 0)
    assert f.error_code == 0 and len(parse_message_set(f.records)) == 2


def test_zstd_cannot_reach_old_consumers(shared_broker: BrokerProcess, new_topic: Any) -> None:
    zstd_topic = new_topic("zstd")
    create_topic(shared_broker.bootstrap, zstd_topic, 1, {"compression.type": "zstd"})
    ck_produce(shared_broker.bootstrap, zstd_topic, recs(2))
    f = raw_fetch_old(shared_broker, 3, zstd_topic, 0)
    assert f.error_code == ERR_UNSUPPORTED_COMPRESSION_TYPE
    # A producer-chosen zstd batch on a 'producer' topic: refused when it is the first to send.
    mixed = new_topic("mixed")
    create_topic(shared_broker.bootstrap, mixed, 1)
    ck_produce(shared_broker.bootstrap, mixed, recs(2))
    big = [Rec(b"z", b"z" * 5000, partition=0)] * 2  # compressible: librdkafka compresses it
    ck_produce(shared_broker.bootstrap, mixed, big, **{"compression.codec": "zstd"})
    msgs = parse_message_set(raw_fetch_old(shared_broker, 2, mixed, 0).records)
    assert [m.offset for m in msgs] == [0, 1]
    assert raw_fetch_old(shared_broker, 2, mixed, 2).error_code == ERR_UNSUPPORTED_COMPRESSION_TYPE


# ----------------------------------------------------------------------------- librdkafka


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("fallback", FALLBACKS)
def test_librdkafka_old_fallback(
    shared_broker: BrokerProcess, topic: str, fallback: str, codec: str
) -> None:
    create_topic(shared_broker.bootstrap, topic, 1)
    sent = recs(40)
    delivered = ck_produce(
        shared_broker.bootstrap, topic, sent, **old_ck(fallback), **{"compression.codec": codec}
    )
    assert [d.offset for d in delivered] == list(range(40))
    stamped = has_timestamps_from_ck(fallback)
    for conf in (old_ck(fallback), {}):  # the same old client, then a new one
        got = ck_consume(shared_broker.bootstrap, topic, {0: 0}, count=40, **conf)
        assert [(g.offset, g.key, g.value) for g in got] == [
            (i, r.key, r.value) for i, r in enumerate(sent)
        ]
        if stamped:
            assert [g.timestamp for g in got] == [r.timestamp for r in sent]
        else:  # magic 0: no timestamp anywhere
            assert all(g.timestamp in (-1, 0) for g in got)


@pytest.mark.parametrize("codec", ["none", "gzip", "lz4"])
def test_kcat_old_fallback(shared_broker: BrokerProcess, topic: str, codec: str) -> None:
    create_topic(shared_broker.bootstrap, topic, 1)
    old = ["-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0"]
    sent = [Rec(f"k{i}".encode(), f"v{i}".encode() * 20, partition=0) for i in range(25)]
    kcat_produce(shared_broker.bootstrap, topic, sent, partition=0, extra=[*old, "-z", codec])
    got = kcat_consume(shared_broker.bootstrap, topic, partition=0, offset="0", count=25, extra=old)
    assert [(g.offset, g.key, g.value) for g in got] == [
        (i, r.key, r.value) for i, r in enumerate(sent)
    ]


# ----------------------------------------------------------------------------- kafka-python


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("api_version", KP_VERSIONS, ids=lambda v: ".".join(map(str, v)))
def test_kafka_python_old_api_versions(
    shared_broker: BrokerProcess, topic: str, api_version: tuple[int, ...], codec: str
) -> None:
    create_topic(shared_broker.bootstrap, topic, 1)
    sent = recs(30)
    delivered = kp_produce(
        shared_broker.bootstrap,
        topic,
        sent,
        api_version=api_version,
        compression_type=kp_codec(codec),
    )
    assert [d.offset for d in delivered] == list(range(30))
    magic1 = api_version >= (0, 10)
    old = kp_consume(shared_broker.bootstrap, topic, {0: 0}, count=30, api_version=api_version)
    new = ck_consume(shared_broker.bootstrap, topic, {0: 0}, count=30)
    for got in (old, new):
        assert [(g.offset, g.key, g.value) for g in got] == [
            (i, r.key, r.value) for i, r in enumerate(sent)
        ]
    if magic1:
        assert [g.timestamp for g in old] == [r.timestamp for r in sent]
        assert [g.timestamp for g in new] == [r.timestamp for r in sent]
        assert {g.timestamp_type for g in new} == {"create"}
    else:
        assert {g.timestamp for g in old} == {None}
        assert all(g.timestamp in (-1, 0) for g in new)


@pytest.mark.parametrize("codec", CODECS)
def test_new_producer_old_consumers(shared_broker: BrokerProcess, topic: str, codec: str) -> None:
    """v2 batches (headers, compression, several batches) read by every old consumer."""
    create_topic(shared_broker.bootstrap, topic, 1)
    # Values long and repetitive enough that librdkafka does compress them.
    sent = [
        Rec(f"k{i}".encode(), b"value-%d" % i + b"." * 300, (("h", b"x"),), TS + i, 0)
        for i in range(60)
    ]
    ck_produce(
        shared_broker.bootstrap,
        topic,
        sent,
        **{"compression.codec": codec, "batch.num.messages": 7},
    )
    readers: list[tuple[str, list[Any]]] = [
        (
            "librdkafka 0.9.0",
            ck_consume(shared_broker.bootstrap, topic, {0: 0}, count=60, **old_ck("0.9.0")),
        )
    ]
    for api_version in KP_VERSIONS:
        readers.append(
            (
                f"kafka-python {api_version}",
                kp_consume(
                    shared_broker.bootstrap, topic, {0: 0}, count=60, api_version=api_version
                ),
            )
        )
    for name, got in readers:
        assert [(g.offset, g.key, g.value) for g in got] == [
            (i, r.key, r.value) for i, r in enumerate(sent)
        ], name
        assert all(g.headers == () for g in got), name
    # Magic 1 readers see the producer's timestamps; magic 0 readers none.
    for name, got in readers[2:]:
        assert [g.timestamp for g in got] == [r.timestamp for r in sent], name
    # Starting in the middle of a batch: an old consumer gets nothing before its offset.
    mid = kp_consume(shared_broker.bootstrap, topic, {0: 33}, count=27, api_version=(0, 10, 1))
    assert [g.offset for g in mid] == list(range(33, 60))


def test_transactions_seen_by_old_consumers(shared_broker: BrokerProcess, topic: str) -> None:
    """Fetch v0-3 have no isolation level: aborted records are read, markers are not."""
    create_topic(shared_broker.bootstrap, topic, 1)
    p = ck.Producer(ck_conf(shared_broker.bootstrap, **{"transactional.id": f"tx-{topic}"}))
    p.init_transactions(DEADLINE_S)
    for values, commit in (([b"c1", b"c2"], True), ([b"a1", b"a2"], False), ([b"c3"], True)):
        p.begin_transaction()
        for v in values:
            p.produce(topic, key=b"k", value=v, partition=0)
        p.flush(DEADLINE_S)
        if commit:
            p.commit_transaction(DEADLINE_S)
        else:
            p.abort_transaction(DEADLINE_S)
    new = ck_consume(
        shared_broker.bootstrap, topic, {0: 0}, count=3, **{"isolation.level": "read_committed"}
    )
    assert [g.value for g in new] == [b"c1", b"c2", b"c3"]
    old = kp_consume(shared_broker.bootstrap, topic, {0: 0}, count=5, api_version=(0, 10, 1))
    # Offsets as in the log: each transaction's marker takes one.
    assert [(g.offset, g.value) for g in old] == [
        (0, b"c1"),
        (1, b"c2"),
        (3, b"a1"),
        (4, b"a2"),
        (6, b"c3"),
    ]


def marker_then_plain_records(b: BrokerProcess, topic: str, plain: int) -> int:
    """One committed transaction of one record, its marker, then `plain` records one batch
    each; returns the marker's offset."""
    create_topic(b.bootstrap, topic, 1)
    p = ck.Producer(ck_conf(b.bootstrap, **{"transactional.id": f"tx-{topic}"}))
    p.init_transactions(DEADLINE_S)
    p.begin_transaction()
    p.produce(topic, key=b"t", value=b"in-txn", partition=0)
    p.commit_transaction(DEADLINE_S)
    for i in range(plain):  # one request per record: one batch each
        ck_produce(b.bootstrap, topic, [Rec(b"k", f"after-{i}".encode(), partition=0)])
    return 1


OVERFLOW = struct.pack(">qi", -1, 61)


def test_raw_fetch_at_a_trailing_marker_answers_the_overflow_entry(
    shared_broker: BrokerProcess, topic: str
) -> None:
    """A read holding only a transaction marker converts to no message: Kafka answers a
    12-byte entry (offset -1, size 61) that old clients take for a too-large message, not an
    empty set they would ask for again without end. Once data follows the marker, the same
    fetch returns it."""
    marker = marker_then_plain_records(shared_broker, topic, 0)
    for version in (0, 1, 2, 3):
        f = raw_fetch_old(shared_broker, version, topic, marker)
        assert (f.error_code, f.high_watermark, f.records) == (0, marker + 1, OVERFLOW)
        assert parse_message_set(f.records) == []
    ck_produce(shared_broker.bootstrap, topic, [Rec(b"k", b"later", partition=0)])
    for version in (0, 1, 2, 3):
        f = raw_fetch_old(shared_broker, version, topic, marker)
        assert [(m.offset, m.value) for m in parse_message_set(f.records)] == [(2, b"later")]


def test_raw_fetch_v2_past_a_marker_with_a_small_fetch_size(
    shared_broker: BrokerProcess, topic: str
) -> None:
    """Fetch v0-2 have a hard byte limit: a partition max_bytes that holds the marker but not
    the batch after it gets the overflow entry; a larger one gets the record after it."""
    marker = marker_then_plain_records(shared_broker, topic, 2)
    with connect(shared_broker.host, shared_broker.port) as s:
        small = parse_fetch_v0_3(
            2, roundtrip(s, fetch_request_v0_3(2, topic, 0, marker, max_bytes=100))
        )
        large = parse_fetch_v0_3(
            2, roundtrip(s, fetch_request_v0_3(2, topic, 0, marker, max_bytes=300))
        )
    assert (small.error_code, small.records) == (0, OVERFLOW)
    assert [(m.offset, m.value) for m in parse_message_set(large.records)] == [
        (2, b"after-0"),
        (3, b"after-1"),
    ]


def test_librdkafka_old_consumer_reads_past_a_marker_its_fetch_size_holds_alone(
    shared_broker: BrokerProcess, topic: str
) -> None:
    """librdkafka (0.9.0 fallback: Fetch v1, message format v0) with a fetch size that holds
    one batch: at the marker it gets the overflow entry, doubles its fetch size and reads on
    (with an empty answer it would ask for the marker again for ever)."""
    marker_then_plain_records(shared_broker, topic, 3)
    got = ck_consume(
        shared_broker.bootstrap,
        topic,
        {0: 0},
        count=4,
        **old_ck("0.9.0"),
        **{"fetch.message.max.bytes": 100},
    )
    assert [(g.offset, g.value) for g in got] == [
        (0, b"in-txn"),
        (2, b"after-0"),
        (3, b"after-1"),
        (4, b"after-2"),
    ]


# ----------------------------------------------------------------------------- groups


def committed_offset(b: BrokerProcess, group: str, topic: str) -> int:
    c = ck.Consumer(ck_conf(b.bootstrap, **{"group.id": group}))
    try:
        (tp,) = c.committed([ck.TopicPartition(topic, 0)], timeout=DEADLINE_S)
        return int(tp.offset)
    finally:
        c.close()


def ck_group_read(b: BrokerProcess, topic: str, group: str, count: int, **conf: Any) -> list[int]:
    """Subscribe in `group`, read `count` records, commit synchronously, leave; the offsets."""
    c = ck.Consumer(
        ck_conf(
            b.bootstrap,
            **{
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                **conf,
            },
        )
    )
    got: list[int] = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < count and time.monotonic() < deadline:
            got.extend(m.offset() for m in c.consume(50, 0.5) if m.error() is None)
        c.commit(asynchronous=False)
    finally:
        c.close()
    return got


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("fallback", FALLBACKS)
def test_librdkafka_old_group_commit(
    shared_broker: BrokerProcess, topic: str, fallback: str, codec: str
) -> None:
    """Produce, consume in a group and commit with the old protocol (with 0.9.0: Produce v1,
    Fetch v1, JoinGroup v0, ListOffsets v0, OffsetCommit v2, OffsetFetch v1); the old member
    and then a new one resume from the commit."""
    create_topic(shared_broker.bootstrap, topic, 1)
    old = old_ck(fallback)
    ck_produce(shared_broker.bootstrap, topic, recs(20), **old, **{"compression.codec": codec})
    group = f"g-{topic}"
    assert ck_group_read(shared_broker, topic, group, 20, **old) == list(range(20))
    assert committed_offset(shared_broker, group, topic) == 20
    ck_produce(
        shared_broker.bootstrap, topic, recs(5, "more"), **old, **{"compression.codec": codec}
    )
    assert ck_group_read(shared_broker, topic, group, 5, **old) == list(range(20, 25))
    ck_produce(shared_broker.bootstrap, topic, recs(5, "new"))
    assert ck_group_read(shared_broker, topic, group, 5) == list(range(25, 30))


@pytest.mark.parametrize("api_version", KP_VERSIONS, ids=lambda v: ".".join(map(str, v)))
def test_kafka_python_old_group_commit(
    shared_broker: BrokerProcess, topic: str, api_version: tuple[int, ...]
) -> None:
    """A kafka-python group member of an old api_version consumes and commits; a new client
    of the same group resumes from its commit."""
    create_topic(shared_broker.bootstrap, topic, 1)
    kp_produce(shared_broker.bootstrap, topic, recs(15), api_version=api_version)
    group = f"g-{topic}"
    c = kafka.KafkaConsumer(
        topic,
        bootstrap_servers=shared_broker.bootstrap,
        group_id=group,
        api_version=api_version,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    seen: list[int] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        while len(seen) < 15 and time.monotonic() < deadline:
            for msgs in c.poll(timeout_ms=500).values():
                seen.extend(m.offset for m in msgs)
        assert seen == list(range(15))
        c.commit()
    finally:
        c.close()
    wait_until(lambda: committed_offset(shared_broker, group, topic) == 15, "the group's commit")
    ck_produce(shared_broker.bootstrap, topic, recs(3, "new"))
    assert ck_group_read(shared_broker, topic, group, 3) == [15, 16, 17]
