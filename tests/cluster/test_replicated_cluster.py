"""Three `strom serve` processes and one ZooKeeper: a replicated cluster end to end.

- the brokers find each other (Metadata lists three) and an RF=3 topic gets three replicas
  and an ISR of three;
- acks=all with min.insync.replicas=2: kill -9 the leader while an idempotent confluent-kafka
  producer is sending; a new leader comes from the ISR, the producer carries on, and every
  acknowledged record is read back once and in order; the old leader, restarted, truncates
  and rejoins the ISR;
- with two of three brokers down, acks=all answers NOT_ENOUGH_REPLICAS.

Nothing is timed: every wait polls a condition up to a generous deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from integration.broker_process import BrokerProcess
from integration.kafka_wire import (
    RawRecord,
    metadata_request_v1,
    parse_metadata_v1,
    parse_produce_v3,
    produce_request_v3,
    record_batch,
    roundtrip,
)

pytestmark = pytest.mark.cluster

DEADLINE_S = 60.0
NOT_ENOUGH_REPLICAS = 19


def wait_for(what: str, check: Callable[[], Any], deadline_s: float = DEADLINE_S) -> Any:
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        try:
            last = check()
        except Exception as exc:  # a broker restarting: try again
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Cluster:
    def __init__(self, root: Path, zk_hosts: str) -> None:
        self.brokers: dict[int, BrokerProcess] = {}
        for broker_id in (1, 2, 3):
            self.brokers[broker_id] = BrokerProcess(
                root / f"broker{broker_id}",
                {
                    "broker.id": broker_id,
                    "zookeeper.connect": zk_hosts,
                    # The test ZooKeeper's tick (200 ms) caps sessions at 4 s.
                    "zookeeper.session.timeout.ms": 4000,
                    "replica.lag.time.max.ms": 5000,
                    "auto.create.topics.enable": "false",
                    # Leaderships move only when a test makes them (the rebalance timer is
                    # tested on its own in test_cluster_reassignment.py).
                    "auto.leader.rebalance.enable": "false",
                },
                name=f"broker{broker_id}",
            )

    def start(self) -> None:
        for broker in self.brokers.values():
            broker.start()
        for broker in self.brokers.values():
            broker.wait_ready()
        # Tests create topics at once: every broker's cache must list every broker first.
        for broker in self.brokers.values():
            wait_for(
                f"{broker} seeing every broker",
                lambda b=broker: brokers_seen_by(b) == set(self.brokers),
            )

    def stop(self) -> None:
        for broker in self.brokers.values():
            broker.stop()

    def bootstrap(self, exclude: set[int] | None = None) -> str:
        return ",".join(
            b.bootstrap
            for i, b in self.brokers.items()
            if b.is_alive() and i not in (exclude or set())
        )

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap()})

    def partitions(self, topic: str) -> dict[int, Any]:
        """Partition metadata of `topic` as a live broker sees it ({} when unknown)."""
        md = self.admin().list_topics(topic, timeout=5)
        found = md.topics.get(topic)
        if found is None or found.error is not None:
            return {}
        return dict(found.partitions)

    def log_tails(self) -> str:
        return "\n".join(b.log_tail(40) for b in self.brokers.values())

    @contextlib.contextmanager
    def running(self) -> Iterator[Cluster]:
        """Start the brokers; on the way out stop them all (a paused one is resumed first, so
        that it can stop). A start that fails prints the brokers' log tails."""
        try:
            self.start()
            yield self
        except BaseException:
            print(self.log_tails())
            raise
        finally:
            for broker in self.brokers.values():
                if broker.is_alive():
                    os.kill(broker.pid, signal.SIGCONT)
            self.stop()


def brokers_seen_by(broker: BrokerProcess) -> set[int]:
    """The live brokers in this broker's Metadata answer (its own cache)."""
    with socket.create_connection((broker.host, broker.port), timeout=10) as sock:
        answer = roundtrip(sock, metadata_request_v1([]))
    return {node for node, _, _ in parse_metadata_v1(answer).brokers}


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_hosts)
    with c.running():
        yield c


def create_topic(cluster: Cluster, name: str, partitions: int, rf: int, **configs: str) -> None:
    admin = cluster.admin()  # kept alive until the answer is in
    futures = admin.create_topics(
        [NewTopic(name, partitions, rf, config=dict(configs))], request_timeout=30
    )
    futures[name].result(timeout=30)


def full_isr(cluster: Cluster, topic: str, count: int, size: int = 3) -> bool:
    parts = cluster.partitions(topic)
    return len(parts) == count and all(
        len(p.isrs) == size and p.leader >= 0 for p in parts.values()
    )


def leaders_seen_by(broker: BrokerProcess, topic: str) -> dict[int, int]:
    """partition -> leader in this broker's own Metadata answer (-1 where it answers an error);
    asked on the wire, since a client bootstrapped from one broker may ask another."""
    with socket.create_connection((broker.host, broker.port), timeout=10) as sock:
        answer = parse_metadata_v1(roundtrip(sock, metadata_request_v1([topic])))
    _, partitions = answer.topics.get(topic, (0, []))
    return {index: leader if error == 0 else -1 for index, error, leader in partitions}


def known_everywhere(cluster: Cluster, topic: str, count: int) -> bool:
    """Every running broker's cache has a live leader for each of the topic's partitions
    (brokers learn partition states from their own ZooKeeper watches, one after another)."""
    for broker in cluster.brokers.values():
        if broker.is_alive():
            leaders = leaders_seen_by(broker, topic)
            if len(leaders) != count or min(leaders.values()) < 0:
                return False
    return True


def test_three_brokers_form_a_cluster(cluster: Cluster) -> None:
    md = wait_for(
        "three brokers and a controller in Metadata",
        lambda: (
            (m := cluster.admin().list_topics(timeout=5))
            and len(m.brokers) == 3
            and m.controller_id > 0
            and m
        ),
    )
    assert sorted(md.brokers) == [1, 2, 3]
    assert md.controller_id in (1, 2, 3)
    create_topic(cluster, "rf3", 3, 3)
    wait_for("an ISR of three everywhere", lambda: full_isr(cluster, "rf3", 3))
    parts = cluster.partitions("rf3")
    for p in parts.values():
        assert sorted(p.replicas) == [1, 2, 3]
        assert p.leader in p.replicas
    # Every broker answers the same about leaders.
    for broker in cluster.brokers.values():
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        seen = admin.list_topics("rf3", timeout=5).topics["rf3"].partitions
        assert {i: p.leader for i, p in seen.items()} == {i: p.leader for i, p in parts.items()}
    with pytest.raises(ck.KafkaException) as raised:
        create_topic(cluster, "rf4", 1, 4)
    assert raised.value.args[0].code() == ck.KafkaError.INVALID_REPLICATION_FACTOR


def produce_some(producer: ck.Producer, topic: str, values: range, acked: list[int]) -> None:
    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            acked.append(int(msg.value()))

    for v in values:
        while True:
            try:
                producer.produce(topic, str(v).encode(), partition=0, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)


def consume_all(bootstrap: str, topic: str, expected: int) -> list[int]:
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "verify",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    got: list[int] = []
    try:
        consumer.assign([ck.TopicPartition(topic, 0, 0)])
        end = time.monotonic() + DEADLINE_S
        while len(got) < expected and time.monotonic() < end:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got.append(int(msg.value()))
    finally:
        consumer.close()
    return got


def test_leader_killed_then_rejoins(cluster: Cluster) -> None:
    create_topic(cluster, "ha", 1, 3, **{"min.insync.replicas": "2"})
    wait_for("an ISR of three", lambda: full_isr(cluster, "ha", 1))
    producer = ck.Producer(
        {
            "bootstrap.servers": cluster.bootstrap(),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 60000,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    acked: list[int] = []
    produce_some(producer, "ha", range(0, 500), acked)
    assert producer.flush(30) == 0
    old_leader = cluster.partitions("ha")[0].leader
    old_epoch_isr = cluster.partitions("ha")[0].isrs
    assert len(old_epoch_isr) == 3
    # Records in flight while the leader dies.
    produce_some(producer, "ha", range(500, 1000), acked)
    cluster.brokers[old_leader].kill9()
    produce_some(producer, "ha", range(1000, 1500), acked)
    assert producer.flush(60) == 0, "the producer did not finish after the failover"
    new = wait_for(
        "a new leader",
        lambda: (p := cluster.partitions("ha").get(0)) and p.leader not in (-1, old_leader) and p,
    )
    assert new.leader in old_epoch_isr
    assert len(acked) == 1500, f"only {len(acked)} records acknowledged"
    got = consume_all(cluster.bootstrap(), "ha", len(acked))
    assert got == sorted(got), "records out of order"
    assert len(got) == len(set(got)), "a record was read twice"
    assert set(acked) <= set(got), f"lost {sorted(set(acked) - set(got))[:10]}"
    # The old leader comes back, truncates if it must, and catches up into the ISR.
    cluster.brokers[old_leader].start().wait_ready()
    wait_for(
        "the old leader back in the ISR",
        lambda: old_leader in cluster.partitions("ha")[0].isrs,
    )
    produce_some(producer, "ha", range(1500, 1600), acked)
    assert producer.flush(30) == 0
    assert consume_all(cluster.bootstrap(), "ha", 1600) == list(range(1600))


def raw_produce_acks_all(host: str, port: int, topic: str) -> int:
    with socket.create_connection((host, port), timeout=10) as sock:
        batch = record_batch([RawRecord(b"k", b"v")])
        payload = roundtrip(sock, produce_request_v3(topic, 0, batch, acks=-1))
    _, results = parse_produce_v3(payload)
    return results[0].error_code


def test_not_enough_replicas(cluster: Cluster) -> None:
    create_topic(cluster, "minisr", 1, 3, **{"min.insync.replicas": "2"})
    wait_for("an ISR of three", lambda: full_isr(cluster, "minisr", 1))
    leader = cluster.partitions("minisr")[0].leader
    others = [i for i in cluster.brokers if i != leader]
    for i in others:
        cluster.brokers[i].kill9()
    wait_for("the ISR down to the leader", lambda: full_isr(cluster, "minisr", 1, size=1))
    survivor = cluster.brokers[leader]
    assert raw_produce_acks_all(survivor.host, survivor.port, "minisr") == NOT_ENOUGH_REPLICAS
    # A broker coming back restores acks=all.
    cluster.brokers[others[0]].start().wait_ready()
    wait_for("the ISR at two", lambda: len(cluster.partitions("minisr")[0].isrs) >= 2)
    assert raw_produce_acks_all(survivor.host, survivor.port, "minisr") == 0


def test_sigterm_moves_leadership_first(cluster: Cluster) -> None:
    create_topic(cluster, "moving", 2, 3)
    wait_for("an ISR of three", lambda: full_isr(cluster, "moving", 2))
    leader = cluster.partitions("moving")[0].leader
    broker = cluster.brokers[leader]
    assert broker.stop() == 0
    assert "controlled shutdown: no partition is led here any more" in (
        broker.log_text_since_last_start()
    )
    parts = wait_for(
        "leaders elsewhere",
        lambda: (
            (p := cluster.partitions("moving"))
            and all(x.leader not in (-1, leader) for x in p.values())
            and p
        ),
    )
    assert all(leader not in p.isrs for p in parts.values())
