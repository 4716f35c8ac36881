"""Restarts: clean shutdown, kill -9 under load, and a corrupt segment tail."""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import ConfigResource, ResourceType

from .broker_process import BrokerProcess
from .clients import (
    DEADLINE_S,
    Rec,
    ck_admin,
    ck_consume,
    ck_produce,
    ck_producer,
    ck_watermarks,
    create_topic,
    make_recs,
    topic_partition_count,
    wait_until,
)
from .conftest import BrokerFactory

pytestmark = pytest.mark.integration


def _segment_files(partition_dir: Path) -> list[Path]:
    return sorted(p for p in partition_dir.glob("*.log") if re.fullmatch(r"\d{20}\.log", p.name))


def test_clean_restart_keeps_topics_configs_and_records(
    broker: BrokerProcess, new_topic: Callable[[str], str]
) -> None:
    b = broker.bootstrap
    t_created = new_topic("created")
    t_auto = new_topic("auto")
    create_topic(b, t_created, 3, {"retention.ms": "987654", "cleanup.policy": "compact"})
    sent = {p: make_recs(20, prefix=f"p{p}", partition=p) for p in range(3)}
    for p in range(3):
        ck_produce(b, t_created, sent[p])
    ck_produce(b, t_auto, [Rec(b"auto", b"created", timestamp=1_700_000_000_000)])

    code = broker.stop()
    assert code == 0, f"SIGTERM should be a clean shutdown, exit code {code}"
    broker.restart()

    assert topic_partition_count(b, t_created) == 3
    assert topic_partition_count(b, t_auto) == 1
    res = ConfigResource(ResourceType.TOPIC, t_created)
    admin = ck_admin(b)  # kept referenced: a destroyed handle fails its pending futures
    entries = admin.describe_configs([res])[res].result(DEADLINE_S)
    assert entries["retention.ms"].value == "987654"
    assert entries["cleanup.policy"].value == "compact"
    for p in range(3):
        got = ck_consume(b, t_created, [p], count=20)
        assert [g.offset for g in got] == list(range(20))
        assert [g.kv() for g in got] == [(r.key, r.value) for r in sent[p]]
    got = ck_consume(b, t_auto, count=1)
    assert (got[0].key, got[0].value, got[0].timestamp) == (b"auto", b"created", 1_700_000_000_000)
    # Appends continue after the recovered end.
    d = ck_produce(b, t_created, [Rec(b"after", b"restart", partition=1)])
    assert d[0].offset == 20


class AckRecorder:
    """A background confluent-kafka producer (acks=1) that records every acknowledged offset."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.acked: dict[tuple[int, int], tuple[bytes, bytes]] = {}
        self.errors = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ack-recorder", daemon=True)
        self.exc: BaseException | None = None

    def _run(self) -> None:
        try:
            p = ck_producer(
                self.bootstrap,
                acks=1,
                **{
                    "linger.ms": 2,
                    "message.timeout.ms": 5000,
                    "retries": 2,
                    "reconnect.backoff.max.ms": 200,
                },
            )
            lock = threading.Lock()

            def cb(err: ck.KafkaError | None, msg: ck.Message) -> None:
                if err is not None:
                    self.errors += 1
                    return
                with lock:
                    self.acked[(msg.partition(), msg.offset())] = (msg.key(), msg.value())

            i = 0
            while not self.stop_event.is_set():
                key = f"key-{i % 97}".encode()
                try:
                    p.produce(self.topic, key=key, value=f"value-{i}".encode(), on_delivery=cb)
                    i += 1
                except BufferError:
                    p.poll(0.05)
                p.poll(0)
            p.purge()
            p.flush(2)
        except BaseException as e:  # surfaced by the test
            self.exc = e

    def start(self) -> AckRecorder:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=DEADLINE_S)
        assert not self.thread.is_alive(), "background producer did not stop"
        if self.exc is not None:
            raise self.exc


def test_kill9_under_load_loses_no_acknowledged_record(broker: BrokerProcess, topic: str) -> None:
    partitions = 4
    create_topic(broker.bootstrap, topic, partitions)
    rec = AckRecorder(broker.bootstrap, topic).start()
    try:
        wait_until(lambda: len(rec.acked) >= 3000, "3000 acknowledged records", deadline_s=90)
        broker.kill9()  # mid-stream: the producer is still sending
        acked = dict(rec.acked)
    finally:
        rec.stop()
    acked.update(rec.acked)  # callbacks that ran before the kill was noticed
    assert acked, "nothing was acknowledged"

    broker.restart()
    end_offsets = {p: 0 for p in range(partitions)}
    for p, off in acked:
        end_offsets[p] = max(end_offsets[p], off + 1)
    for p in range(partitions):
        lo, hi = ck_watermarks(broker.bootstrap, topic, p)
        assert lo == 0
        assert hi >= end_offsets[p], (
            f"partition {p}: high watermark {hi} < acknowledged end {end_offsets[p]}"
        )
    got = ck_consume(
        broker.bootstrap, topic, range(partitions), end_offsets=end_offsets, deadline_s=90
    )
    by_pos = {(g.partition, g.offset): (g.key, g.value) for g in got}
    missing = [pos for pos in acked if pos not in by_pos]
    assert not missing, f"{len(missing)} acknowledged records missing, e.g. {sorted(missing)[:10]}"
    wrong = [pos for pos, kv in acked.items() if by_pos[pos] != kv]
    assert not wrong, (
        f"{len(wrong)} acknowledged offsets hold other records, e.g. {sorted(wrong)[:10]}"
    )
    since_restart = broker.log_text_since_last_start()
    assert re.search(r"recover", since_restart, re.IGNORECASE), (
        "the broker log does not mention recovery after kill -9"
    )
    # And the partitions still take writes after recovery.
    d = ck_produce(broker.bootstrap, topic, [Rec(b"after", b"crash", partition=0)])
    assert d[0].offset >= end_offsets[0]


# A torn write: the start of a batch header claiming 4 KiB, then noise.
def _garbage(next_offset: int) -> bytes:
    return next_offset.to_bytes(8, "big") + (4096).to_bytes(4, "big") + os.urandom(60)


@pytest.mark.parametrize("how", ["kill9", "sigterm"])
def test_corrupt_segment_tail_is_truncated(
    broker_factory: BrokerFactory, topic: str, how: str
) -> None:
    broker = broker_factory()
    b = broker.bootstrap
    create_topic(b, topic, 1)
    sent: list[Rec] = []
    for batch in range(10):  # ten separate batches
        recs = make_recs(10, prefix=f"b{batch}", partition=0)
        ck_produce(b, topic, recs)
        sent += recs
    if how == "kill9":
        broker.kill9()
    else:
        assert broker.stop() == 0
    [*_, last] = _segment_files(broker.partition_dir(topic, 0))
    good_size = last.stat().st_size
    with open(last, "ab") as f:
        f.write(_garbage(len(sent)))

    broker.restart()
    assert last.stat().st_size == good_size, "the garbage tail was not truncated away"
    got = ck_consume(b, topic, count=len(sent))
    assert [g.offset for g in got] == list(range(len(sent)))
    assert [g.kv() for g in got] == [(r.key, r.value) for r in sent]
    assert ck_watermarks(b, topic, 0) == (0, len(sent))
    d = ck_produce(b, topic, [Rec(b"next", b"one", partition=0)])
    assert d[0].offset == len(sent)
    got = ck_consume(b, topic, {0: len(sent)}, count=1)
    assert got[0].kv() == (b"next", b"one")


def test_corrupt_batch_in_middle_of_last_segment(broker_factory: BrokerFactory, topic: str) -> None:
    """A flipped byte inside the last batch (bad CRC) after kill -9: recovery keeps the batches
    before it and drops it and everything after."""
    broker = broker_factory()
    b = broker.bootstrap
    create_topic(b, topic, 1)
    first = make_recs(10, prefix="first", partition=0)
    ck_produce(b, topic, first)
    [seg] = _segment_files(broker.partition_dir(topic, 0))
    good_size = seg.stat().st_size
    ck_produce(b, topic, make_recs(10, prefix="second", partition=0))
    broker.kill9()
    data = bytearray(seg.read_bytes())
    assert len(data) > good_size
    data[good_size + 61 + 3] ^= 0xFF  # inside the second batch's records: CRC no longer matches
    seg.write_bytes(bytes(data))
    broker.restart()
    got = ck_consume(b, topic, count=10)
    assert [g.kv() for g in got] == [(r.key, r.value) for r in first]
    assert ck_watermarks(b, topic, 0) == (0, 10)


def test_sigint_is_a_clean_shutdown(broker: BrokerProcess, topic: str) -> None:
    ck_produce(broker.bootstrap, topic, make_recs(5, partition=0))
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGINT)
    code = broker.wait_exit()
    assert code == 0, f"SIGINT exit code {code}"
    assert "Traceback" not in broker.log_text_since_last_start()
    broker.restart()
    # A clean shutdown leaves nothing to recover: records are simply there.
    assert len(ck_consume(broker.bootstrap, topic, count=5)) == 5
