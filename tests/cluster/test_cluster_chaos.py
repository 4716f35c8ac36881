"""Chaos on a three-broker cluster: every acknowledged record survives, once and in order.

An RF=3 topic with several partitions and min.insync.replicas=2. An idempotent confluent-kafka
producer (acks=all) writes continuously in a thread and records every acknowledged
(partition, offset, payload) from its delivery reports; a consumer group (committing offsets)
reads concurrently in another thread. Meanwhile, one broker after another is killed with
kill -9: first the leaders of partitions (never the controller), then the active controller.
After each kill the test waits until every partition has a live leader and the producer is
acknowledged again on every partition, restarts the killed broker and waits until it is back
in every ISR.

A second scenario kills the controller and the leader of a partition at the same moment: the
survivor takes over as controller and leader of everything with an ISR of one, acks=all is
refused (NOT_ENOUGH_REPLICAS, retried by the producer) until the others return. A third
restarts the brokers one by one with SIGTERM (a rolling restart): every stop is clean and its
controlled shutdown moves every leadership away.

Then, with the producer stopped (every scenario):
- a fresh consumer reads the whole topic: every acknowledged record is at its acknowledged
  offset, each payload once, per partition in production order with increasing offsets, and
  the acknowledgements of a partition came in offset order;
- the consumer group, closed and resumed from its committed offsets, has read every
  acknowledged record (at-least-once: the union of both runs covers all acks);
- the three replicas of every partition hold the same records at the same offsets (their
  segment files compared after a clean stop).

Nothing is timed: every wait polls a condition up to a generous deadline.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from .replica_files import replica_records
from .test_cluster_failover import active_controller
from .test_replicated_cluster import (
    NOT_ENOUGH_REPLICAS,
    Cluster,
    create_topic,
    full_isr,
    raw_produce_acks_all,
    wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TOPIC = "chaos"
PARTITIONS = 3
DEADLINE_S = 90.0


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_hosts)
    for broker in c.brokers.values():
        broker.sets["replica.lag.time.max.ms"] = "3000"
        # Kafka's default (Strom's is 1): the group coordinator fails over as well.
        broker.sets["offsets.topic.replication.factor"] = "3"
    with c.running():
        yield c


@dataclass
class Acks:
    """What the producer's delivery reports said, in the order they arrived."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: list[tuple[int, int, int]] = field(default_factory=list)  # (partition, offset, value)
    failed: list[tuple[int, str]] = field(default_factory=list)  # (value, error)

    def per_partition(self) -> dict[int, int]:
        with self.lock:
            counts: dict[int, int] = defaultdict(int)
            for p, _, _ in self.acked:
                counts[p] += 1
            return dict(counts)


class ProducerThread(threading.Thread):
    """Produces value n to partition n % PARTITIONS, about 300 records a second, until stopped."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(name="chaos-producer", daemon=True)
        self.acks = Acks()
        self.produced = 0
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.unflushed = -1
        self.producer = ck.Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.timeout.ms": 300000,
                "topic.metadata.refresh.interval.ms": 1000,
                "retry.backoff.ms": 100,
            }
        )

    def _delivered(self, err: Any, msg: Any) -> None:
        value = int(msg.value())
        with self.acks.lock:
            if err is None:
                self.acks.acked.append((msg.partition(), msg.offset(), value))
            else:
                self.acks.failed.append((value, str(err)))

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                for _ in range(10):
                    n = self.produced
                    while True:
                        try:
                            self.producer.produce(
                                TOPIC,
                                str(n).encode(),
                                partition=n % PARTITIONS,
                                on_delivery=self._delivered,
                            )
                            break
                        except BufferError:
                            self.producer.poll(0.1)
                    self.produced += 1
                self.producer.poll(0.03)
            self.unflushed = self.producer.flush(DEADLINE_S * 2)
        except BaseException as exc:  # reported by the test
            self.error = exc


class GroupConsumerThread(threading.Thread):
    """A consumer group member that commits (auto-commit) while it reads."""

    def __init__(self, bootstrap: str, group: str) -> None:
        super().__init__(name="chaos-consumer", daemon=True)
        self.seen: set[int] = set()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.consumer = group_consumer(bootstrap, group)

    def run(self) -> None:
        try:
            self.consumer.subscribe([TOPIC])
            while not self.stopping.is_set():
                msg = self.consumer.poll(0.2)
                if msg is not None and not msg.error():
                    self.seen.add(int(msg.value()))
        except BaseException as exc:
            self.error = exc
        finally:
            self.consumer.close()  # commits what was read


def group_consumer(bootstrap: str, group: str) -> ck.Consumer:
    return ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 500,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )


def leaders(cluster: Cluster, exclude: set[int]) -> dict[int, int] | None:
    """Partition -> leader as a live broker sees it; None until every partition has a live
    leader outside `exclude`."""
    parts = cluster.partitions(TOPIC)
    if len(parts) != PARTITIONS:
        return None
    found = {i: p.leader for i, p in parts.items()}
    if any(leader < 0 or leader in exclude for leader in found.values()):
        return None
    return found


def acked_again(producer: ProducerThread, since: dict[int, int], more: int = 20) -> bool:
    now = producer.acks.per_partition()
    return all(now.get(p, 0) >= since.get(p, 0) + more for p in range(PARTITIONS))


def kill_and_recover(cluster: Cluster, producer: ProducerThread, victim: int) -> None:
    before = producer.acks.per_partition()
    cluster.brokers[victim].kill9()
    wait_for(
        f"new leaders for the partitions of broker {victim}",
        lambda: leaders(cluster, exclude={victim}),
        DEADLINE_S,
    )
    # New acknowledgements on every partition, some of them after the failover.
    wait_for(
        f"acks=all acknowledged again on every partition without broker {victim}",
        lambda: acked_again(producer, before),
        DEADLINE_S,
    )
    cluster.brokers[victim].start().wait_ready()
    wait_for(
        f"broker {victim} back in every ISR",
        lambda: full_isr(cluster, TOPIC, PARTITIONS),
        DEADLINE_S,
    )


def read_topic(bootstrap: str) -> dict[int, list[tuple[int, int]]]:
    """Every record of the topic up to each partition's high watermark: partition ->
    [(offset, value)] in log order."""
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "chaos-verify",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(ck.TopicPartition(TOPIC, p), timeout=30)[1]
            for p in range(PARTITIONS)
        }
        consumer.assign([ck.TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
        got: dict[int, list[tuple[int, int]]] = {p: [] for p in range(PARTITIONS)}

        def done() -> bool:
            return all((got[p][-1][0] + 1 if got[p] else 0) >= ends[p] for p in got)

        deadline = time.monotonic() + DEADLINE_S
        while not done():
            assert time.monotonic() < deadline, f"reading the topic did not finish: {ends}"
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got[msg.partition()].append((msg.offset(), int(msg.value())))
        return got
    finally:
        consumer.close()


def test_acknowledged_records_survive_broker_and_controller_kills(
    cluster: Cluster, zk: KazooClient
) -> None:
    create_topic(cluster, TOPIC, PARTITIONS, 3, **{"min.insync.replicas": "2"})
    wait_for("an ISR of three everywhere", lambda: full_isr(cluster, TOPIC, PARTITIONS))
    controller = wait_for("a controller", lambda: active_controller(zk))

    producer = ProducerThread(cluster.bootstrap())
    consumer = GroupConsumerThread(cluster.bootstrap(), "chaos-group")
    producer.start()
    consumer.start()
    try:
        wait_for("the producer under way", lambda: acked_again(producer, {}, more=50))
        killed: list[int] = []
        # Leaders of partitions first, never the controller; then the controller itself.
        for _ in range(2):
            led = leaders(cluster, exclude=set()) or {}
            candidates = [b for b in sorted(set(led.values())) if b not in (controller, *killed)]
            victim = (
                candidates[0]
                if candidates
                else next(b for b in (1, 2, 3) if b not in (controller, *killed))
            )
            kill_and_recover(cluster, producer, victim)
            killed.append(victim)
        assert active_controller(zk) == controller
        kill_and_recover(cluster, producer, controller)
        new_controller = wait_for("a controller", lambda: active_controller(zk))
        assert new_controller in (1, 2, 3)
        before = producer.acks.per_partition()
        wait_for("more acknowledgements after the chaos", lambda: acked_again(producer, before))
    finally:
        stop_threads(producer, consumer)
    check_everything(cluster, producer, consumer)


def test_the_controller_and_a_leader_killed_together(cluster: Cluster, zk: KazooClient) -> None:
    """Two of three brokers die at once, the controller among them: the survivor becomes the
    controller, leads every partition with an ISR of one, and refuses acks=all
    (NOT_ENOUGH_REPLICAS, which the producer retries) until the others are back."""
    create_topic(cluster, TOPIC, PARTITIONS, 3, **{"min.insync.replicas": "2"})
    wait_for("an ISR of three everywhere", lambda: full_isr(cluster, TOPIC, PARTITIONS))
    controller = wait_for("a controller", lambda: active_controller(zk))
    led = wait_for("leaders", lambda: leaders(cluster, exclude=set()))
    other_leaders = sorted({b for b in led.values() if b != controller})
    victim = other_leaders[0] if other_leaders else next(b for b in (1, 2, 3) if b != controller)
    survivor = next(b for b in (1, 2, 3) if b not in (controller, victim))

    producer = ProducerThread(cluster.bootstrap())
    consumer = GroupConsumerThread(cluster.bootstrap(), "chaos-group")
    producer.start()
    consumer.start()
    try:
        wait_for("the producer under way", lambda: acked_again(producer, {}, more=50))
        cluster.brokers[controller].kill9()
        cluster.brokers[victim].kill9()
        wait_for(
            "the survivor as controller",
            lambda: active_controller(zk) == survivor,
            DEADLINE_S,
        )
        wait_for(
            "the survivor leading every partition",
            lambda: (
                (led := leaders(cluster, exclude={controller, victim}))
                and set(led.values()) == {survivor}
                and full_isr(cluster, TOPIC, PARTITIONS, size=1)
            ),
            DEADLINE_S,
        )
        alone = cluster.brokers[survivor]
        assert raw_produce_acks_all(alone.host, alone.port, TOPIC) == NOT_ENOUGH_REPLICAS
        for broker in (controller, victim):
            cluster.brokers[broker].start()
        for broker in (controller, victim):
            cluster.brokers[broker].wait_ready()
        wait_for(
            "an ISR of three everywhere again",
            lambda: full_isr(cluster, TOPIC, PARTITIONS),
            DEADLINE_S,
        )
        before = producer.acks.per_partition()
        wait_for(
            "acks=all acknowledged again on every partition",
            lambda: acked_again(producer, before),
            DEADLINE_S,
        )
    finally:
        stop_threads(producer, consumer)
    check_everything(cluster, producer, consumer)


def test_rolling_restart_under_load(cluster: Cluster, zk: KazooClient) -> None:
    """SIGTERM, restart and wait for the ISR, broker by broker, controller included: every stop
    is clean (controlled shutdown, exit code 0) while the producer and the group go on."""
    create_topic(cluster, TOPIC, PARTITIONS, 3, **{"min.insync.replicas": "2"})
    wait_for("an ISR of three everywhere", lambda: full_isr(cluster, TOPIC, PARTITIONS))
    producer = ProducerThread(cluster.bootstrap())
    consumer = GroupConsumerThread(cluster.bootstrap(), "chaos-group")
    producer.start()
    consumer.start()
    try:
        wait_for("the producer under way", lambda: acked_again(producer, {}, more=50))
        for broker_id in (1, 2, 3):
            broker = cluster.brokers[broker_id]
            before = producer.acks.per_partition()
            code = broker.stop()
            assert code == 0, f"broker {broker_id} did not stop cleanly ({code})"
            # The controlled shutdown ran while the listeners still served (its followers kept
            # fetching, so every leadership found an in-sync replica to move to), and only then
            # were the connections closed.
            text = broker.log_text_since_last_start()
            moved = text.find("controlled shutdown: no partition is led here any more")
            closed = text.find("broker shutting down")
            assert 0 <= moved < closed, broker.log_tail()
            wait_for(
                f"acks=all acknowledged again on every partition without broker {broker_id}",
                lambda before=before: acked_again(producer, before),
                DEADLINE_S,
            )
            broker.start().wait_ready()
            wait_for(
                f"broker {broker_id} back in every ISR",
                lambda: full_isr(cluster, TOPIC, PARTITIONS),
                DEADLINE_S,
            )
        before = producer.acks.per_partition()
        wait_for("more acknowledgements after the restarts", lambda: acked_again(producer, before))
    finally:
        stop_threads(producer, consumer)
    check_everything(cluster, producer, consumer)


def stop_threads(producer: ProducerThread, consumer: GroupConsumerThread) -> None:
    producer.stopping.set()
    producer.join(DEADLINE_S * 3)
    consumer.stopping.set()
    consumer.join(DEADLINE_S)


def check_everything(
    cluster: Cluster, producer: ProducerThread, consumer: GroupConsumerThread
) -> None:
    assert producer.error is None, f"producer thread failed: {producer.error!r}"
    assert consumer.error is None, f"consumer thread failed: {consumer.error!r}"
    assert producer.unflushed == 0, "the producer did not deliver everything"
    acks = producer.acks
    assert acks.failed == [], f"deliveries failed: {acks.failed[:10]}"
    assert len(acks.acked) == producer.produced
    check_log(cluster, acks)
    check_group(cluster, acks, consumer.seen)
    # Every replica in the ISR has everything below the high watermark, which is past every
    # acknowledged record, and the producer wrote nothing else.
    wait_for("an ISR of three everywhere", lambda: full_isr(cluster, TOPIC, PARTITIONS))
    check_replicas_identical(cluster)


def check_log(cluster: Cluster, acks: Acks) -> None:
    log = read_topic(cluster.bootstrap())
    by_offset = {p: dict(records) for p, records in log.items()}
    values = [v for records in log.values() for _, v in records]
    assert len(values) == len(set(values)), "a record is in the log twice"
    for p, records in log.items():
        offsets = [o for o, _ in records]
        assert offsets == sorted(set(offsets)), f"partition {p}: offsets not increasing"
        in_order = [v for _, v in records]
        assert in_order == sorted(in_order), f"partition {p}: records out of production order"
        assert all(v % PARTITIONS == p for v in in_order), f"partition {p}: a stranger"
    lost = [(p, o, v) for p, o, v in acks.acked if by_offset[p].get(o) != v]
    assert lost == [], f"acknowledged records missing or moved: {lost[:10]}"
    for p in range(PARTITIONS):
        acked_offsets = [o for q, o, _ in acks.acked if q == p]
        assert acked_offsets == sorted(set(acked_offsets)), (
            f"partition {p}: acknowledgements out of offset order"
        )


def check_group(cluster: Cluster, acks: Acks, seen: set[int]) -> None:
    wanted = {v for _, _, v in acks.acked}
    resumed = group_consumer(cluster.bootstrap(), "chaos-group")
    try:
        resumed.subscribe([TOPIC])
        deadline = time.monotonic() + DEADLINE_S
        while not wanted <= seen:
            assert time.monotonic() < deadline, (
                f"the resumed group never read {len(wanted - seen)} acknowledged records, "
                f"e.g. {sorted(wanted - seen)[:10]}"
            )
            msg = resumed.poll(0.5)
            if msg is not None and not msg.error():
                seen.add(int(msg.value()))
    finally:
        resumed.close()


def check_replicas_identical(cluster: Cluster) -> None:
    for broker in cluster.brokers.values():
        code = broker.stop()
        assert code == 0, f"{broker} did not stop cleanly ({code})\n{broker.log_tail()}"
    for p in range(PARTITIONS):
        copies = {i: replica_records(b.partition_dir(TOPIC, p)) for i, b in cluster.brokers.items()}
        first = copies[1]
        for i, records in copies.items():
            assert records == first, f"partition {p}: broker {i}'s replica differs from broker 1's"
