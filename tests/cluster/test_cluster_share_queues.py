"""Issue #16 on three brokers: delayed records and dead-letter copies survive kill -9 of the
share partition's leader.

A topic with one partition (three replicas, led by broker 1) and its dead-letter topic (three
replicas) are read by three confluent-kafka ShareConsumers in explicit mode that reject the
records named `bad-*` and accept the others, some of which carry `strom.delay.ms`. The group's
dead-letter topic is a group config (kept in ZooKeeper). Midway the leader is killed with
kill -9 and production goes on through the others.

What must hold: every rejected record is in the dead-letter topic (with its value and the
context headers naming its source offset), and every delayed record is delivered. In cluster
mode the extension state is not carried between brokers (README, "Beyond Kafka on queues"),
so a copy may be written twice and delayed records are delivered at once: this test holds the
cluster to "nothing lost", not to "once" or "never early".

Nothing is timed: every wait polls a condition up to a generous deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)
from integration.share_helpers import PRIME_PREFIX, produce_values

from .test_cluster_share_failover import LONG_S, TOPIC, ShareCluster
from .test_replicated_cluster import full_isr, wait_for

pytestmark = pytest.mark.cluster

DLQ = f"dlq.{TOPIC}"
GROUP = "careful"


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path) -> Iterator[ShareCluster]:
    c = ShareCluster(tmp_path, zk_hosts)
    with c.running():
        yield c


@dataclass
class Worker:
    """A ShareConsumer in explicit mode rejecting `bad-*` records and accepting the others."""

    bootstrap: str
    values: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Worker:
        self._thread.start()
        return self

    def _run(self) -> None:
        consumer = ck.ShareConsumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": GROUP,
                "share.acknowledgement.mode": "explicit",
                "max.poll.records": 5,
                "socket.timeout.ms": 45_000,
                "topic.metadata.refresh.interval.ms": 1000,
            }
        )
        consumer.subscribe([TOPIC])
        try:
            while not self._stop.is_set():
                messages = [m for m in consumer.poll(0.5) if not m.error()]
                for m in messages:
                    with self._lock:
                        self.values.append(m.value())
                    bad = m.value().startswith(b"bad-")
                    kind = ck.AcknowledgeType.REJECT if bad else ck.AcknowledgeType.ACCEPT
                    try:
                        consumer.acknowledge(m, kind)
                    except Exception:  # no longer in flight (its leader moved)
                        continue
                if messages:
                    try:
                        consumer.commit_sync(30)
                    except ck.KafkaException:
                        continue
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "share consumer did not close"

    def seen(self) -> set[bytes]:
        with self._lock:
            return set(self.values)


def dead_letters(bootstrap: str) -> list[ck.Message]:
    consumer = ck.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "dlq-reader", "enable.auto.commit": False}
    )
    try:
        _, high = consumer.get_watermark_offsets(ck.TopicPartition(DLQ, 0), timeout=30)
        consumer.assign([ck.TopicPartition(DLQ, 0, 0)])
        out: list[ck.Message] = []
        while len(out) < high:
            m = consumer.poll(5)
            if m is None:
                break
            if not m.error():
                out.append(m)
        return out
    finally:
        consumer.close()


def copied_values(bootstrap: str) -> set[bytes]:
    found = set()
    for m in dead_letters(bootstrap):
        headers = dict(m.headers() or [])
        assert headers["__dlq.errors.topic"] == TOPIC.encode()
        assert headers["__dlq.errors.group"] == GROUP.encode()
        found.add(m.value())
    return found


def test_dead_letters_and_delayed_records_survive_a_leader_kill(cluster: ShareCluster) -> None:
    admin = cluster.admin()
    futures = admin.create_topics(
        [
            NewTopic(TOPIC, num_partitions=1, replica_assignment=[[1, 2, 3]]),
            NewTopic(
                DLQ,
                num_partitions=1,
                replica_assignment=[[2, 3, 1]],
                config={"errors.deadletterqueue.group.enable": "true"},
            ),
        ]
    )
    for future in futures.values():
        future.result(timeout=30)
    wait_for("full ISRs", lambda: full_isr(cluster, TOPIC, 1) and full_isr(cluster, DLQ, 1))
    entry = ConfigEntry(
        "errors.deadletterqueue.topic.name", DLQ, incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.GROUP, GROUP, incremental_configs=[entry])
    admin.incremental_alter_configs([resource])[resource].result(30)

    bootstrap = cluster.bootstrap()
    workers = [Worker(bootstrap).start() for _ in range(3)]
    try:
        n = 0

        def primed() -> bool:
            nonlocal n
            if any(v.startswith(PRIME_PREFIX) for w in workers for v in w.seen()):
                return True
            produce_values(bootstrap, TOPIC, [PRIME_PREFIX + str(n).encode()])
            n += 1
            return False

        wait_for("a share consumer reading", primed, deadline_s=LONG_S)
        producer = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        bad_before = [f"bad-{i}".encode() for i in range(30)]
        later_before = [f"later-{i}".encode() for i in range(30)]
        for bad, later in zip(bad_before, later_before, strict=True):
            producer.produce(TOPIC, bad, partition=0)
            producer.produce(TOPIC, later, partition=0, headers=[("strom.delay.ms", b"2000")])
        assert producer.flush(60) == 0
        wait_for(
            "some dead-letter copies before the kill",
            lambda: len(copied_values(bootstrap) & set(bad_before)) >= 10,
            deadline_s=LONG_S,
        )
        cluster.brokers[1].kill9()
        survivors = cluster.bootstrap(exclude={1})
        producer = ck.Producer({"bootstrap.servers": survivors, "acks": "all"})
        bad_after = [f"bad-after-{i}".encode() for i in range(30)]
        later_after = [f"later-after-{i}".encode() for i in range(30)]
        for bad, later in zip(bad_after, later_after, strict=True):
            producer.produce(TOPIC, bad, partition=0)
            producer.produce(TOPIC, later, partition=0, headers=[("strom.delay.ms", b"2000")])
        assert producer.flush(60) == 0
        bad = set(bad_before) | set(bad_after)
        later = set(later_before) | set(later_after)
        wait_for(
            "every rejected record in the dead-letter topic",
            lambda: bad <= copied_values(survivors),
            deadline_s=LONG_S,
        )
        wait_for(
            "every delayed record delivered",
            lambda: later <= set().union(*(w.seen() for w in workers)),
            deadline_s=LONG_S,
        )
    finally:
        for w in workers:
            w.stop()
