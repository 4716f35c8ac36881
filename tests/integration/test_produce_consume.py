"""Produce and consume with every real client: record contents, codecs, acks, sizes, many
partitions, topic auto-creation and LogAppendTime."""

from __future__ import annotations

import time
from collections.abc import Iterator

import confluent_kafka as ck
import kafka.codec
import kafka.errors
import pytest
from aiokafka.errors import KafkaError as AioKafkaError

from .broker_process import BrokerProcess
from .clients import (
    CONSUMERS,
    PRODUCERS,
    Got,
    ProduceError,
    Rec,
    aio_produce,
    by_partition,
    ck_consume,
    ck_produce,
    ck_produce_one_error,
    create_topic,
    kcat_consume,
    kcat_produce,
    kp_produce,
    make_recs,
    topic_partition_count,
    wait_until,
)
from .conftest import BrokerFactory
from .kafka_wire import connect, metadata_request_v1, parse_metadata_v1, roundtrip

pytestmark = pytest.mark.integration

CREATE_TS = 1_700_000_000_123  # an explicit CreateTime in the past (2023-11-14)


@pytest.fixture(scope="module")
def module_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerFactory]:
    f = BrokerFactory(tmp_path_factory.mktemp("produce-consume"))
    yield f
    f.stop_all()


def sample_records(null_header_value: bool = True) -> list[Rec]:
    """Keys, values, a null value, a null key, headers (one with a null value unless the
    producer cannot send one), explicit timestamps. ASCII only, so kcat's JSON output carries
    them unchanged."""
    odd_headers: tuple[tuple[str, bytes | None], ...] = (("empty", b""),)
    if null_header_value:
        odd_headers += (("null", None),)
    return [
        Rec(b"key-0", b"value-0"),
        Rec(b"key-1", b"value-1", headers=(("h1", b"a"), ("h2", b"b"), ("h1", b"dup"))),
        Rec(b"key-2", None),  # tombstone-like null value
        Rec(None, b"value-3"),  # null key
        Rec(b"key-4", b"value-4", timestamp=CREATE_TS),
        Rec(b"key-5", b"", headers=odd_headers, timestamp=CREATE_TS + 1),
        Rec(b"", b"value-6"),  # empty (not null) key
        Rec(b"key-7", b"x" * 3000),
    ]


def assert_same_records(sent: list[Rec], got: list[Got], *, check_timestamps: bool = True) -> None:
    assert [g.offset for g in got] == list(range(len(sent))), "offsets are not 0..n-1 in order"
    for r, g in zip(sent, got, strict=True):
        assert (g.key, g.value) == (r.key, r.value), f"record at offset {g.offset}"
        assert list(g.headers) == list(r.headers), f"headers at offset {g.offset}"
        if check_timestamps and r.timestamp is not None:
            assert g.timestamp == r.timestamp, f"timestamp at offset {g.offset}"
        if g.timestamp_type is not None:
            assert g.timestamp_type == "create"


# ------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("consumer", [*CONSUMERS, "kcat"])
@pytest.mark.parametrize("producer", list(PRODUCERS))
def test_roundtrip_between_clients(
    shared_broker: BrokerProcess, topic: str, producer: str, consumer: str
) -> None:
    # kafka-python refuses a null header value ("headers items must be (str, bytes)").
    sent = sample_records(null_header_value=producer != "kafka-python")
    delivered = PRODUCERS[producer](shared_broker.bootstrap, topic, sent)
    assert [d.offset for d in delivered] == list(range(len(sent)))
    assert {d.partition for d in delivered} == {0}
    if consumer == "kcat":
        got = kcat_consume(shared_broker.bootstrap, topic, partition=0)
        # kcat -J shows an empty key/value as "" and a null one as null, like the others.
    else:
        got = CONSUMERS[consumer](shared_broker.bootstrap, topic, count=len(sent))
    assert_same_records(sent, got)


@pytest.mark.parametrize("consumer", [*CONSUMERS, "kcat"])
def test_kcat_produce(shared_broker: BrokerProcess, topic: str, consumer: str) -> None:
    """kcat -P: per-message keys (-K), null keys, empty messages sent as NULL (-Z), headers (-H)."""
    sent = [Rec(b"a", b"1"), Rec(None, b"2"), Rec(b"c", None), Rec(b"d", b"4")]
    kcat_produce(
        shared_broker.bootstrap, topic, sent, headers=[("src", "kcat"), ("n", "2")], partition=0
    )
    if consumer == "kcat":
        got = kcat_consume(shared_broker.bootstrap, topic, partition=0)
    else:
        got = CONSUMERS[consumer](shared_broker.bootstrap, topic, count=len(sent))
    assert [g.offset for g in got] == [0, 1, 2, 3]
    assert [g.kv() for g in got] == [(r.key, r.value) for r in sent]
    for g in got:
        assert list(g.headers) == [("src", b"kcat"), ("n", b"2")]


# ------------------------------------------------------------------------------- compression

CODECS = ["gzip", "snappy", "lz4", "zstd"]


def _compressible(n: int, partition: int | None) -> list[Rec]:
    return [
        Rec(
            f"key-{i % 17}".encode(),
            (f"record {i} " + "abcdefgh" * 40).encode(),
            partition=partition,
        )
        for i in range(n)
    ]


def _produce_compressed(
    client: str, bootstrap: str, topic: str, codec: str, recs: list[Rec]
) -> None:
    if client == "confluent":
        ck_produce(bootstrap, topic, recs, **{"compression.codec": codec, "linger.ms": 50})
    elif client == "kafka-python":
        kp_produce(bootstrap, topic, recs, compression_type=codec, linger_ms=50)
    elif client == "aiokafka":
        aio_produce(bootstrap, topic, recs, compression_type=codec, linger_ms=50)
    elif client == "kcat":
        kcat_produce(
            bootstrap, topic, recs, extra=["-X", f"compression.codec={codec}", "-X", "linger.ms=50"]
        )
    else:
        raise AssertionError(client)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("client", ["confluent", "kafka-python", "aiokafka", "kcat"])
def test_compression_codecs(
    shared_broker: BrokerProcess, topic: str, client: str, codec: str
) -> None:
    recs = _compressible(300, partition=None if client == "kcat" else 0)
    _produce_compressed(client, shared_broker.bootstrap, topic, codec, recs)
    # Read back with two different clients: librdkafka and the pure-Python aiokafka.
    for consume in (ck_consume, CONSUMERS["aiokafka"]):
        got = consume(shared_broker.bootstrap, topic, count=len(recs))
        assert [g.offset for g in got] == list(range(len(recs)))
        assert [g.kv() for g in got] == [(r.key, r.value) for r in recs]


# ------------------------------------------------------------------------------- acks


@pytest.mark.parametrize("acks", [0, 1, -1])
@pytest.mark.parametrize("client", ["confluent", "kafka-python", "aiokafka", "kcat"])
def test_acks(shared_broker: BrokerProcess, topic: str, client: str, acks: int) -> None:
    recs = make_recs(50, partition=0 if client != "kcat" else None)
    b = shared_broker.bootstrap
    if client == "confluent":
        delivered = ck_produce(b, topic, recs, acks=acks)
    elif client == "kafka-python":
        delivered = kp_produce(b, topic, recs, acks=acks)
    elif client == "aiokafka":
        delivered = aio_produce(b, topic, recs, acks=acks if acks != -1 else "all")
    else:
        kcat_produce(b, topic, recs, partition=0, extra=["-X", f"acks={acks}"])
        delivered = []
    if acks != 0 and delivered:
        assert [d.offset for d in delivered] == list(range(len(recs)))
    # acks=0 gives no offsets back: the records must still all arrive, in order.
    got = ck_consume(b, topic, count=len(recs))
    assert [g.offset for g in got] == list(range(len(recs)))
    assert [g.kv() for g in got] == [(r.key, r.value) for r in recs]


# ------------------------------------------------------------------------------- record size

MESSAGE_MAX_BYTES = 100_000


@pytest.fixture(scope="module")
def small_message_broker(module_factory: BrokerFactory) -> BrokerProcess:
    return module_factory({"message.max.bytes": MESSAGE_MAX_BYTES})


@pytest.mark.parametrize("client", ["confluent", "kafka-python", "aiokafka"])
def test_record_below_message_max_bytes_is_accepted(
    small_message_broker: BrokerProcess, topic: str, client: str
) -> None:
    rec = Rec(b"big", b"v" * 90_000, partition=0)
    PRODUCERS[client](small_message_broker.bootstrap, topic, [rec])
    got = ck_consume(small_message_broker.bootstrap, topic, count=1)
    assert got[0].value == rec.value


@pytest.mark.parametrize("client", ["confluent", "kafka-python", "aiokafka"])
def test_record_above_message_max_bytes_is_rejected(
    small_message_broker: BrokerProcess, topic: str, client: str
) -> None:
    b = small_message_broker.bootstrap
    create_topic(b, topic, 1)
    rec = Rec(b"huge", b"v" * 200_000, partition=0)
    if client == "confluent":
        err = ck_produce_one_error(b, topic, rec, retries=0)
        assert err is not None, "a 200 KB record was accepted with message.max.bytes=100000"
        assert err.code() == ck.KafkaError.MSG_SIZE_TOO_LARGE, err
    else:
        with pytest.raises(ProduceError) as ei:
            PRODUCERS[client](b, topic, [rec])
        cause = ei.value.__cause__
        if client == "kafka-python":
            assert isinstance(cause, kafka.errors.MessageSizeTooLargeError), repr(cause)
        else:
            assert isinstance(cause, AioKafkaError), repr(cause)
            assert "MessageSizeTooLarge" in type(cause).__name__, repr(cause)
    # Nothing was appended, and the partition still takes normal records.
    ck_produce(b, topic, [Rec(b"small", b"ok", partition=0)])
    got = ck_consume(b, topic, count=1)
    assert [(g.offset, g.value) for g in got] == [(0, b"ok")]


# ------------------------------------------------------------------------------- partitions


def test_many_partitions_keyed(shared_broker: BrokerProcess, topic: str) -> None:
    partitions = 64
    b = shared_broker.bootstrap
    create_topic(b, topic, partitions)
    keys = [f"key-{i}".encode() for i in range(200)]
    versions = 4
    recs = [Rec(k, f"{k.decode()}:{v}".encode()) for v in range(versions) for k in keys]
    delivered = ck_produce(b, topic, recs)
    used = {d.partition for d in delivered}
    assert len(used) >= partitions // 2, f"records landed in only {len(used)} partitions"
    expected_end: dict[int, int] = dict.fromkeys(range(partitions), 0)
    for d in delivered:
        expected_end[d.partition] = max(expected_end[d.partition], d.offset + 1)
    got = ck_consume(b, topic, range(partitions), end_offsets=expected_end, deadline_s=60)
    assert sorted(g.value or b"" for g in got) == sorted(r.value or b"" for r in recs), (
        "not every record read back exactly once"
    )
    key_partition: dict[bytes | None, int] = {}
    for p, recs_p in by_partition(got).items():
        offsets = [g.offset for g in recs_p]
        assert offsets == list(range(len(offsets))), f"partition {p}: offsets {offsets[:10]}..."
        last_version: dict[bytes | None, int] = {}
        for g in recs_p:
            assert key_partition.setdefault(g.key, p) == p, f"key {g.key!r} in two partitions"
            v = int((g.value or b"").split(b":")[1])
            assert v == last_version.get(g.key, -1) + 1, (
                f"partition {p}: key {g.key!r} out of order"
            )
            last_version[g.key] = v


# ------------------------------------------------------------------------------- auto-creation


@pytest.fixture(scope="module")
def three_partition_broker(module_factory: BrokerFactory) -> BrokerProcess:
    return module_factory({"num.partitions": 3, "auto.create.topics.enable": "true"})


def test_auto_create_on_produce_honours_num_partitions(
    three_partition_broker: BrokerProcess, topic: str
) -> None:
    b = three_partition_broker.bootstrap
    assert topic_partition_count(b, topic) is None
    ck_produce(b, topic, [Rec(b"k", b"v")])
    assert topic_partition_count(b, topic) == 3
    got = ck_consume(b, topic, range(3), count=1)
    assert got[0].kv() == (b"k", b"v")


def test_auto_create_on_metadata_request(three_partition_broker: BrokerProcess, topic: str) -> None:
    """Metadata v1 naming an unknown topic creates it (v1 predates allow_auto_topic_creation)."""
    b = three_partition_broker

    def leaders_ready() -> bool:
        with connect(b.host, b.port) as s:
            md = parse_metadata_v1(roundtrip(s, metadata_request_v1([topic])))
        err, parts = md.topics[topic]
        return err == 0 and len(parts) == 3 and all(leader >= 0 for _, _, leader in parts)

    wait_until(leaders_ready, f"auto-created topic {topic!r} with 3 partitions and leaders")
    assert topic_partition_count(b.bootstrap, topic) == 3


def test_no_auto_create_when_disabled(module_factory: BrokerFactory, topic: str) -> None:
    b = module_factory({"auto.create.topics.enable": "false"})
    with connect(b.host, b.port) as s:
        md = parse_metadata_v1(roundtrip(s, metadata_request_v1([topic])))
    assert md.topics[topic][0] == 3, "expected UNKNOWN_TOPIC_OR_PARTITION for an unknown topic"
    err = ck_produce_one_error(b.bootstrap, topic, Rec(b"k", b"v"), **{"message.timeout.ms": 3000})
    assert err is not None, "produce to an unknown topic succeeded with auto-creation disabled"
    assert topic_partition_count(b.bootstrap, topic) is None
    b.stop()


# ------------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize("consumer", [*CONSUMERS, "kcat"])
def test_log_append_time(shared_broker: BrokerProcess, topic: str, consumer: str) -> None:
    b = shared_broker.bootstrap
    create_topic(b, topic, 1, {"message.timestamp.type": "LogAppendTime"})
    before_ms = int(time.time() * 1000) - 5_000  # slack for clock granularity only
    sent = [
        Rec(f"k{i}".encode(), f"v{i}".encode(), timestamp=CREATE_TS, partition=0) for i in range(5)
    ]
    ck_produce(b, topic, sent)
    if consumer == "kcat":
        got = kcat_consume(b, topic, partition=0)
    else:
        got = CONSUMERS[consumer](b, topic, count=len(sent))
    assert [g.kv() for g in got] == [(s.key, s.value) for s in sent]
    for g in got:
        assert g.timestamp_type == "logappend", f"offset {g.offset}: {g.timestamp_type}"
        assert g.timestamp != CREATE_TS, "the producer's CreateTime came back, not the append time"
        assert g.timestamp is not None and g.timestamp >= before_ms


def test_create_time_kept_by_default(shared_broker: BrokerProcess, topic: str) -> None:
    sent = [Rec(b"k", b"v", timestamp=CREATE_TS, partition=0)]
    ck_produce(shared_broker.bootstrap, topic, sent)
    got = ck_consume(shared_broker.bootstrap, topic, count=1)
    assert (got[0].timestamp, got[0].timestamp_type) == (CREATE_TS, "create")
