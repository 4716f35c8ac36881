"""Topic compression.type on the v2 produce path: batches in another codec than the topic's are
stored rebuilt in the topic's codec at its compression.<codec>.level, as Kafka does; with
`producer` (the default) or the batch's own codec they are stored as sent. Checked on the
segment files and read back by librdkafka and aiokafka."""

from __future__ import annotations

from pathlib import Path

import confluent_kafka as ck
import pytest

from strom.protocol.compression import CODEC_GZIP, CODEC_LZ4, CODEC_NONE, CODEC_SNAPPY
from strom.protocol.records.batch_header import BatchHeader, iter_batch_headers

from .broker_process import BrokerProcess
from .clients import (
    CONSUMERS,
    DEADLINE_S,
    Rec,
    ck_conf,
    ck_consume,
    ck_produce,
    ck_produce_one_error,
    create_topic,
)

pytestmark = pytest.mark.integration

CREATE_TS = 1_700_000_000_000


def stored_headers(partition_dir: Path) -> list[tuple[BatchHeader, bytes]]:
    """(header, whole batch bytes) of every batch in the partition's segment files."""
    out: list[tuple[BatchHeader, bytes]] = []
    for path in sorted(partition_dir.glob("*.log")):
        data = path.read_bytes()
        for position, header in iter_batch_headers(data):
            out.append((header, data[position : position + header.size]))
    return out


def records(n: int) -> list[Rec]:
    return [
        Rec(
            f"key-{i}".encode(),
            (f"value {i} " + "compressible " * 30).encode(),
            headers=(("n", str(i).encode()),),
            timestamp=CREATE_TS + i,
            partition=0,
        )
        for i in range(n)
    ]


def assert_read_back(bootstrap: str, topic: str, sent: list[Rec]) -> None:
    for consume in (ck_consume, CONSUMERS["aiokafka"]):
        got = consume(bootstrap, topic, count=len(sent))
        assert [g.offset for g in got] == list(range(len(sent)))
        assert [(g.key, g.value, g.headers, g.timestamp) for g in got] == [
            (r.key, r.value, r.headers, r.timestamp) for r in sent
        ]


def test_lz4_batches_are_stored_gzip_on_a_gzip_topic(
    shared_broker: BrokerProcess, topic: str
) -> None:
    """An idempotent librdkafka producer's lz4 batch on a gzip topic: stored gzip, with the
    producer id, epoch, base sequence and the first record's timestamp kept."""
    create_topic(shared_broker.bootstrap, topic, config={"compression.type": "gzip"})
    sent = records(200)
    ck_produce(
        shared_broker.bootstrap,
        topic,
        sent,
        **{"compression.codec": "lz4", "linger.ms": 100, "enable.idempotence": True},
    )
    stored = stored_headers(shared_broker.partition_dir(topic, 0))
    assert stored and {h.compression for h, _ in stored} == {CODEC_GZIP}
    assert sum(h.records_count for h, _ in stored) == len(sent)
    producer_ids = {h.producer_id for h, _ in stored}
    assert len(producer_ids) == 1 and producer_ids.pop() >= 0
    next_offset = 0
    for header, _ in stored:
        assert header.base_offset == next_offset
        assert header.base_sequence == next_offset  # sequences count records from 0
        assert header.producer_epoch == 0
        assert header.first_timestamp == CREATE_TS + next_offset
        assert header.max_timestamp == CREATE_TS + header.last_offset
        assert not header.is_transactional
        next_offset = header.next_offset
    assert_read_back(shared_broker.bootstrap, topic, sent)


def test_transactional_batches_are_stored_uncompressed_on_an_uncompressed_topic(
    shared_broker: BrokerProcess, topic: str
) -> None:
    create_topic(shared_broker.bootstrap, topic, config={"compression.type": "uncompressed"})
    sent = records(50)
    p = ck.Producer(
        ck_conf(
            shared_broker.bootstrap,
            **{
                "transactional.id": f"txn-{topic}",
                "compression.codec": "zstd",
                "linger.ms": 50,
            },
        )
    )
    p.init_transactions(DEADLINE_S)
    p.begin_transaction()
    for r in sent:
        p.produce(
            topic,
            key=r.key,
            value=r.value,
            headers=list(r.headers),
            timestamp=r.timestamp or 0,
            partition=0,
        )
    p.commit_transaction(DEADLINE_S)
    stored = stored_headers(shared_broker.partition_dir(topic, 0))
    data = [h for h, _ in stored if not h.is_control]
    markers = [h for h, _ in stored if h.is_control]
    assert data and {h.compression for h in data} == {CODEC_NONE}
    assert all(h.is_transactional and h.producer_id >= 0 for h in data)
    assert sum(h.records_count for h in data) == len(sent)
    assert len(markers) == 1 and markers[0].producer_id == data[0].producer_id
    assert_read_back(shared_broker.bootstrap, topic, sent)


@pytest.mark.parametrize("compression_type", ["producer", "lz4"])
def test_batches_in_the_topic_codec_or_producer_are_stored_as_sent(
    shared_broker: BrokerProcess, topic: str, compression_type: str
) -> None:
    """The common path: the stored batch is the producer's (its compressed body byte for
    byte, whatever compression.lz4.level says)."""
    create_topic(
        shared_broker.bootstrap,
        topic,
        config={"compression.type": compression_type, "compression.lz4.level": "17"},
    )
    sent = records(100)
    ck_produce(
        shared_broker.bootstrap, topic, sent, **{"compression.codec": "lz4", "linger.ms": 100}
    )
    stored = stored_headers(shared_broker.partition_dir(topic, 0))
    assert {h.compression for h, _ in stored} == {CODEC_LZ4}
    # librdkafka writes lz4 frames without block and content checksums (FLG bits 4 and 2);
    # Strom's own lz4 frames have both.
    for header, batch in stored:
        flg = batch[61 + 4]
        assert flg & 0x14 == 0, f"batch at {header.base_offset} is not the producer's lz4 frame"
    assert_read_back(shared_broker.bootstrap, topic, sent)


@pytest.mark.parametrize(("level", "xfl"), [("1", 4), ("9", 2)])
def test_gzip_level_applies_when_the_broker_compresses(
    shared_broker: BrokerProcess, topic: str, level: str, xfl: int
) -> None:
    """compression.gzip.level: the gzip header's XFL byte says "fastest" (4) for level 1 and
    "maximum compression" (2) for level 9."""
    create_topic(
        shared_broker.bootstrap,
        topic,
        config={"compression.type": "gzip", "compression.gzip.level": level},
    )
    sent = records(20)
    ck_produce(shared_broker.bootstrap, topic, sent, **{"compression.codec": "snappy"})
    stored = stored_headers(shared_broker.partition_dir(topic, 0))
    assert stored and {h.compression for h, _ in stored} == {CODEC_GZIP}
    for _, batch in stored:
        body = batch[61:]
        assert body[:2] == b"\x1f\x8b" and body[8] == xfl
    assert_read_back(shared_broker.bootstrap, topic, sent)


def test_a_batch_too_large_once_decompressed_is_refused(
    shared_broker: BrokerProcess, topic: str
) -> None:
    """The rebuilt batch is checked against max.message.bytes again: a small gzip batch that
    is 20 KB uncompressed does not fit an uncompressed topic of 5000 bytes."""
    create_topic(
        shared_broker.bootstrap,
        topic,
        config={"compression.type": "uncompressed", "max.message.bytes": "5000"},
    )
    err = ck_produce_one_error(
        shared_broker.bootstrap,
        topic,
        Rec(b"k", b"a" * 20_000),
        **{"compression.codec": "gzip", "message.send.max.retries": 0},
    )
    assert err is not None and err.code() == ck.KafkaError.MSG_SIZE_TOO_LARGE
    assert stored_headers(shared_broker.partition_dir(topic, 0)) == []
    # A small record still goes in, stored uncompressed.
    ck_produce(shared_broker.bootstrap, topic, records(1), **{"compression.codec": "gzip"})
    stored = stored_headers(shared_broker.partition_dir(topic, 0))
    assert [h.compression for h, _ in stored] == [CODEC_NONE]


def test_a_plain_batch_is_compressed_for_a_snappy_topic(
    shared_broker: BrokerProcess, topic: str
) -> None:
    create_topic(shared_broker.bootstrap, topic, config={"compression.type": "snappy"})
    sent = records(30)
    ck_produce(shared_broker.bootstrap, topic, sent, **{"compression.codec": "none"})
    stored = stored_headers(shared_broker.partition_dir(topic, 0))
    assert stored and {h.compression for h, _ in stored} == {CODEC_SNAPPY}
    assert_read_back(shared_broker.bootstrap, topic, sent)
