"""Issue #16 on three brokers: delayed records and dead-letter copies survive kill -9 of the
share partition's leader.

A topic with one partition (three replicas, led by broker 1) and its dead-letter topic (three
replicas, led by broker 2) are read by three confluent-kafka ShareConsumers in explicit mode
that reject the records named `bad-*` and accept the others, some of which carry
`strom.deliver.at`. The group is chosen so that its share coordinator is not broker 1: the
leader writes its state, extension included (Strom's tagged fields of WriteShareGroupState),
to another broker. The group's dead-letter topic is a group config (kept in ZooKeeper). Once
the leader has persisted the delayed records as pending (DescribeShareGroupOffsets says so)
and while dead-letter copies are being written, broker 1 is killed with kill -9 and
production goes on through the others.

What must hold: every rejected record is in the dead-letter topic exactly once (with its value
and the context headers naming its source offset), and every delayed record is delivered, none
before its `strom.deliver.at` (the consumer's clock against the producer's: same machine).

Nothing is timed: every wait polls a condition up to a generous deadline.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
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

from strom.coordinator.share.coordinator import coordinator_key
from strom.protocol.messages.describe_share_group_offsets_request import (
    DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsRequestGroup,
    DescribeShareGroupOffsetsRequestTopic,
)
from strom.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from strom.runtime.coordinator_runtime import partition_for
from strom.runtime.share_coordinator_runtime import SHARE_STATE_TOPIC

from .test_cluster_share_failover import (
    LONG_S,
    STATE_PARTITIONS,
    TOPIC,
    ShareCluster,
    call,
    leaders,
    topic_id,
)
from .test_replicated_cluster import full_isr, wait_for

pytestmark = pytest.mark.cluster

DLQ = f"dlq.{TOPIC}"
# The share partition's leader, the broker that leads it once that one is killed (the next
# replica), and the share coordinator of the group, a third broker: the state goes over the
# wire both ways.
LEADER, NEXT_LEADER, COORDINATOR = 1, 2, 3
# Delays of the records produced before the kill: long enough to be pending through the
# kill and the election after it (sessions of 4 s).
DELAY_BEFORE_MS = 25_000
DELAY_AFTER_MS = 3_000


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path) -> Iterator[ShareCluster]:
    c = ShareCluster(tmp_path, zk_hosts)
    with c.running():
        yield c


@dataclass(frozen=True)
class Arrival:
    value: bytes
    received_ms: int
    deliver_at: int | None  # the record's strom.deliver.at


@dataclass
class Worker:
    """A ShareConsumer in explicit mode rejecting `bad-*` records and accepting the others;
    notes when each record arrived."""

    bootstrap: str
    group: str
    arrivals: list[Arrival] = field(default_factory=list)

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
                "group.id": self.group,
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
                now = int(time.time() * 1000)
                for m in messages:
                    at = dict(m.headers() or []).get("strom.deliver.at")
                    with self._lock:
                        self.arrivals.append(
                            Arrival(m.value(), now, int(at) if at is not None else None)
                        )
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

    def seen(self) -> list[Arrival]:
        with self._lock:
            return list(self.arrivals)


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


def copied(bootstrap: str, group: str) -> Counter[bytes]:
    """How many copies of each record the dead-letter topic has."""
    found: Counter[bytes] = Counter()
    for m in dead_letters(bootstrap):
        headers = dict(m.headers() or [])
        assert headers["__dlq.errors.topic"] == TOPIC.encode()
        assert headers["__dlq.errors.group"] == group.encode()
        found[m.value()] += 1
    return found


def delayed_described(cluster: ShareCluster, group: str, dead: int | None = None) -> int | None:
    """Partition 0's records waiting for their time, as the group coordinator describes them
    (Strom's tagged field of DescribeShareGroupOffsets)."""
    live = next(b for i, b in cluster.brokers.items() if i != dead)
    found = call(live, 10, 4, FindCoordinatorRequest(key_type=0, coordinator_keys=[group]))
    (coordinator,) = found.coordinators
    if coordinator.error_code:
        return None
    broker = next(b for b in cluster.brokers.values() if b.port == coordinator.port)
    request = DescribeShareGroupOffsetsRequest(
        [
            DescribeShareGroupOffsetsRequestGroup(
                group, [DescribeShareGroupOffsetsRequestTopic(TOPIC, [0])]
            )
        ]
    )
    (described,) = call(broker, 90, 1, request).groups
    if described.error_code or described.topics[0].partitions[0].error_code:
        return None
    delayed: int = described.topics[0].partitions[0].strom_delayed_records
    return delayed


def group_coordinated_by(tid: uuid.UUID, state_leaders: dict[int, int], broker: int) -> str:
    """A group id whose share coordinator for partition 0 of the topic is `broker`."""
    for n in range(1000):
        group = f"careful-{n}"
        if state_leaders[partition_for(coordinator_key(group, tid, 0), STATE_PARTITIONS)] == broker:
            return group
    raise AssertionError(f"broker {broker} leads no __share_group_state partition")


def test_dead_letters_and_delayed_records_survive_a_leader_kill(cluster: ShareCluster) -> None:
    admin = cluster.admin()
    futures = admin.create_topics(
        [
            NewTopic(
                TOPIC, num_partitions=1, replica_assignment=[[LEADER, NEXT_LEADER, COORDINATOR]]
            ),
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
    tid = topic_id(cluster.brokers[LEADER], TOPIC)
    # The share coordinator's topic exists once anyone looks for a share coordinator.
    probe = FindCoordinatorRequest(key_type=2, coordinator_keys=[coordinator_key("p", tid, 0)])
    call(cluster.brokers[2], 10, 6, probe)
    state_leaders = wait_for(
        "__share_group_state leaders", lambda: leaders(cluster, SHARE_STATE_TOPIC, STATE_PARTITIONS)
    )
    group = group_coordinated_by(tid, state_leaders, COORDINATOR)
    entry = ConfigEntry(
        "errors.deadletterqueue.topic.name", DLQ, incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[entry])
    admin.incremental_alter_configs([resource])[resource].result(30)

    bootstrap = cluster.bootstrap()
    workers = [Worker(bootstrap, group).start() for _ in range(3)]

    def arrivals() -> list[Arrival]:
        return [a for w in workers for a in w.seen()]

    try:
        n = 0

        def primed() -> bool:
            nonlocal n
            if any(a.value.startswith(PRIME_PREFIX) for a in arrivals()):
                return True
            produce_values(bootstrap, TOPIC, [PRIME_PREFIX + str(n).encode()])
            n += 1
            return False

        wait_for("a share consumer reading", primed, deadline_s=LONG_S)
        producer = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        bad_before = [f"bad-{i}".encode() for i in range(30)]
        later_before = [f"later-{i}".encode() for i in range(30)]
        at = str(int(time.time() * 1000) + DELAY_BEFORE_MS).encode()
        for bad, later in zip(bad_before, later_before, strict=True):
            producer.produce(TOPIC, bad, partition=0)
            producer.produce(TOPIC, later, partition=0, headers=[("strom.deliver.at", at)])
        assert producer.flush(60) == 0
        wait_for(
            "some dead-letter copies before the kill",
            lambda: len(set(copied(bootstrap, group)) & set(bad_before)) >= 10,
            deadline_s=LONG_S,
        )
        # The leader has written the delayed records as pending to the share coordinator.
        wait_for(
            "the delayed records persisted as pending",
            lambda: delayed_described(cluster, group) == len(later_before),
            deadline_s=LONG_S,
        )
        assert not set(later_before) & {a.value for a in arrivals()}
        # Kill while copies are being written: the share state then most likely has a plan
        # in flight (the new leader's log says "sending the dead-letter copies ... again").
        bad_during = [f"bad-during-{i}".encode() for i in range(60)]
        for value in bad_during:
            producer.produce(TOPIC, value, partition=0)
        assert producer.flush(60) == 0
        wait_for(
            "dead-letter copies under way",
            lambda: len(set(copied(bootstrap, group)) & set(bad_during)) >= 5,
            deadline_s=LONG_S,
        )
        cluster.brokers[LEADER].kill9()
        wait_for(
            "the next leader",
            lambda: (leaders(cluster, TOPIC, 1) or {}).get(0) == NEXT_LEADER,
            deadline_s=LONG_S,
        )
        survivors = cluster.bootstrap(exclude={LEADER})
        producer = ck.Producer({"bootstrap.servers": survivors, "acks": "all"})
        bad_after = [f"bad-after-{i}".encode() for i in range(30)]
        later_after = [f"later-after-{i}".encode() for i in range(30)]
        at = str(int(time.time() * 1000) + DELAY_AFTER_MS).encode()
        for bad, later in zip(bad_after, later_after, strict=True):
            producer.produce(TOPIC, bad, partition=0)
            producer.produce(TOPIC, later, partition=0, headers=[("strom.deliver.at", at)])
        assert producer.flush(60) == 0
        bad = set(bad_before) | set(bad_during) | set(bad_after)
        later = set(later_before) | set(later_after)
        wait_for(
            "every rejected record in the dead-letter topic",
            lambda: bad <= set(copied(survivors, group)),
            deadline_s=LONG_S,
        )
        wait_for(
            "every delayed record delivered",
            lambda: later <= {a.value for a in arrivals()},
            deadline_s=LONG_S,
        )
        wait_for(
            "no delayed record left pending",
            lambda: delayed_described(cluster, group, dead=LEADER) == 0,
            deadline_s=LONG_S,
        )
        copies = copied(survivors, group)
    finally:
        for w in workers:
            w.stop()
    twice = sorted(v for v, count in copies.items() if count > 1)
    assert twice == [], f"dead-letter copies written more than once: {twice}"
    assert set(copies) == bad
    early = [
        (a.value, a.deliver_at - a.received_ms)
        for a in arrivals()
        if a.deliver_at is not None and a.received_ms < a.deliver_at
    ]
    assert early == [], f"delayed records delivered early (ms early): {early}"
