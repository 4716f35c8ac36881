"""Share groups survive kill -9 of the brokers holding their state (#11).

Three `strom serve` processes and one ZooKeeper; a topic with one partition (three replicas,
led by broker 1) is read by three confluent-kafka ShareConsumers in explicit mode, each
accepting what it gets and committing the acknowledgements synchronously. The share group's
id is chosen so that its share coordinator (the leader of the share partition's
`__share_group_state` partition) is another broker than the share partition's leader: the
leader reads and writes the state with the share-state RPCs. Midway one broker is killed with
kill -9, either the share coordinator or the share partition's leader; production goes on.

What must hold: every record produced is accepted in the end (nothing is lost), and no record
is delivered again after an acceptance the broker confirmed (nothing accepted is redelivered).
Records whose acceptance was not confirmed (in flight at the kill) may come again.

Nothing is timed: every wait polls a condition up to a generous deadline.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import NewTopic
from integration.broker_process import BrokerProcess
from integration.share_helpers import PRIME_PREFIX, produce_values

from strom.coordinator.share.coordinator import coordinator_key
from strom.protocol.framing import decode_response, encode_request
from strom.protocol.messages.describe_share_group_offsets_request import (
    DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsRequestGroup,
    DescribeShareGroupOffsetsRequestTopic,
)
from strom.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from strom.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from strom.runtime.coordinator_runtime import partition_for
from strom.runtime.share_coordinator_runtime import SHARE_STATE_TOPIC

from .test_replicated_cluster import Cluster, full_isr, wait_for

pytestmark = pytest.mark.cluster

STATE_PARTITIONS = 3
TOPIC = "jobs"
LONG_S = 240.0


class ShareCluster(Cluster):
    """Three brokers; `__consumer_offsets` and `__share_group_state` have three partitions of
    three replicas; locks and heartbeats short, so that the test does not wait for Kafka's
    defaults."""

    def __init__(self, root: Path, zk_hosts: str) -> None:
        super().__init__(root, zk_hosts)
        for broker_id, broker in list(self.brokers.items()):
            sets = dict(broker.sets)
            sets.update(
                {
                    "offsets.topic.num.partitions": str(STATE_PARTITIONS),
                    "offsets.topic.replication.factor": "3",
                    "group.initial.rebalance.delay.ms": "0",
                    "group.share.min.record.lock.duration.ms": "1000",
                    "group.share.record.lock.duration.ms": "8000",
                    "group.share.min.heartbeat.interval.ms": "1000",
                    "group.share.heartbeat.interval.ms": "1000",
                }
            )
            self.brokers[broker_id] = BrokerProcess(
                root / f"broker{broker_id}", sets, name=f"broker{broker_id}"
            )


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path) -> Iterator[ShareCluster]:
    c = ShareCluster(tmp_path, zk_hosts)
    with c.running():
        yield c


def call(broker: BrokerProcess, api_key: int, version: int, message: Any) -> Any:
    frame = b"".join(bytes(c) for c in encode_request(api_key, version, 7, "test", message))
    with socket.create_connection((broker.host, broker.port), timeout=40) as sock:
        sock.sendall(frame)
        reader = sock.makefile("rb")
        size = int.from_bytes(reader.read(4), "big")
        _, response = decode_response(api_key, version, reader.read(size))
    return response


def topic_id(broker: BrokerProcess, topic: str) -> uuid.UUID:
    """The topic's id as `broker` has it, once its metadata cache has heard of the topic (the
    ISR seen through another broker says nothing of this one's cache)."""

    def known() -> uuid.UUID | None:
        request = MetadataRequest(topics=[MetadataRequestTopic(name=topic)])
        (found,) = call(broker, 3, 12, request).topics
        return found.topic_id if found.error_code == 0 else None

    found: uuid.UUID = wait_for(f"{broker} knowing topic {topic}", known)
    return found


def leaders(cluster: Cluster, topic: str, count: int) -> dict[int, int] | None:
    parts = cluster.partitions(topic)
    if len(parts) != count or any(p.leader < 0 for p in parts.values()):
        return None
    return {i: p.leader for i, p in parts.items()}


@dataclass
class AcceptingWorker:
    """A ShareConsumer in explicit mode: accepts every record, commits synchronously, and
    notes when each delivery arrived and each acceptance was confirmed."""

    bootstrap: str
    group: str
    deliveries: list[tuple[float, int, int, bytes]] = field(default_factory=list)
    accepted: list[tuple[float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> AcceptingWorker:
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
                offsets = []
                for m in consumer.poll(0.5):
                    if m.error():
                        self.errors.append(str(m.error()))
                        continue
                    with self._lock:
                        self.deliveries.append(
                            (time.monotonic(), m.offset(), m.delivery_count(), m.value())
                        )
                    try:
                        consumer.acknowledge(m, ck.AcknowledgeType.ACCEPT)
                    except Exception as exc:  # no longer in flight (its leader moved)
                        self.errors.append(repr(exc))
                        continue
                    offsets.append(m.offset())
                if not offsets:
                    continue
                try:
                    results = consumer.commit_sync(30)
                except ck.KafkaException as exc:
                    self.errors.append(repr(exc))
                    continue
                if any(exc is None for exc in results.values()):
                    now = time.monotonic()
                    with self._lock:
                        self.accepted.extend((now, o) for o in offsets)
                else:
                    self.errors.extend(repr(exc) for exc in results.values())
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "share consumer did not close"

    def snapshot(self) -> tuple[list[tuple[float, int, int, bytes]], list[tuple[float, int]]]:
        with self._lock:
            return list(self.deliveries), list(self.accepted)


def accepted_values(workers: list[AcceptingWorker]) -> set[bytes]:
    values: dict[int, bytes] = {}
    confirmed: set[int] = set()
    for w in workers:
        deliveries, accepted = w.snapshot()
        values.update({offset: value for _, offset, _, value in deliveries})
        confirmed.update(offset for _, offset in accepted)
    return {values[o] for o in confirmed if o in values}


def group_with_remote_coordinator(tid: uuid.UUID, state_leaders: dict[int, int], avoid: int) -> str:
    """A group id whose share coordinator for partition 0 of the topic is not `avoid`."""
    for n in range(1000):
        group = f"failover-{n}"
        where = partition_for(coordinator_key(group, tid, 0), STATE_PARTITIONS)
        if state_leaders[where] != avoid:
            return group
    raise AssertionError(f"every __share_group_state partition is led by broker {avoid}")


@pytest.mark.parametrize("victim", ["share coordinator", "share partition leader"])
def test_kill_9_under_a_running_share_group(cluster: ShareCluster, victim: str) -> None:
    admin = cluster.admin()
    futures = admin.create_topics(
        [NewTopic(TOPIC, num_partitions=1, replica_assignment=[[1, 2, 3]])]
    )
    futures[TOPIC].result(timeout=30)
    wait_for("full ISR", lambda: full_isr(cluster, TOPIC, 1))
    tid = topic_id(cluster.brokers[1], TOPIC)
    # The share coordinator's topic exists once anyone looks for a share coordinator.
    probe = FindCoordinatorRequest(key_type=2, coordinator_keys=[coordinator_key("p", tid, 0)])
    call(cluster.brokers[2], 10, 6, probe)
    state_leaders = wait_for(
        "__share_group_state leaders", lambda: leaders(cluster, SHARE_STATE_TOPIC, STATE_PARTITIONS)
    )
    queue_leader = 1
    group = group_with_remote_coordinator(tid, state_leaders, avoid=queue_leader)
    coordinator = state_leaders[partition_for(coordinator_key(group, tid, 0), STATE_PARTITIONS)]
    target = coordinator if victim == "share coordinator" else queue_leader

    bootstrap = cluster.bootstrap()
    workers = [AcceptingWorker(bootstrap, group).start() for _ in range(3)]
    try:
        n = 0

        def primed() -> bool:
            nonlocal n
            if any(v.startswith(PRIME_PREFIX) for v in accepted_values(workers)):
                return True
            produce_values(bootstrap, TOPIC, [PRIME_PREFIX + str(n).encode()])
            n += 1
            return False

        wait_for("a share consumer accepting a priming record", primed, deadline_s=LONG_S)
        first = [f"before-{i}".encode() for i in range(60)]
        produce_values(bootstrap, TOPIC, first)
        wait_for(
            "some records accepted before the kill",
            lambda: len(accepted_values(workers) & set(first)) >= 20,
            deadline_s=LONG_S,
        )
        cluster.brokers[target].kill9()
        survivors = cluster.bootstrap(exclude={target})
        second = [f"after-{i}".encode() for i in range(60)]
        produce_values(survivors, TOPIC, second)
        expected = set(first) | set(second)
        wait_for(
            f"every record accepted after the {victim} was killed",
            lambda: expected <= accepted_values(workers),
            deadline_s=LONG_S,
        )
    finally:
        for w in workers:
            w.stop()

    # No record is delivered again once its acceptance was confirmed.
    first_confirmed: dict[int, float] = {}
    deliveries: list[tuple[float, int, int, bytes]] = []
    for w in workers:
        got, accepted = w.snapshot()
        deliveries += got
        for when, offset in accepted:
            first_confirmed[offset] = min(when, first_confirmed.get(offset, when))
    redelivered = [
        (offset, value, count)
        for when, offset, count, value in deliveries
        if offset in first_confirmed and when > first_confirmed[offset]
    ]
    assert redelivered == [], f"accepted records delivered again: {redelivered[:10]}"
    # The share coordinators agree: the group's start offset is past every record (the
    # group coordinator reads it with ReadShareGroupStateSummary, wherever that is).
    end = cluster_end_offset(cluster, target)
    assert described_offsets(cluster, target, group) == (end, 0)


def cluster_end_offset(cluster: Cluster, dead: int) -> int:
    live = next(b for i, b in cluster.brokers.items() if i != dead)
    consumer = ck.Consumer({"bootstrap.servers": live.bootstrap, "group.id": "ends"})
    try:
        _, high = consumer.get_watermark_offsets(ck.TopicPartition(TOPIC, 0), timeout=30)
    finally:
        consumer.close()
    return int(high)


def described_offsets(cluster: Cluster, dead: int, group: str) -> tuple[int, int] | None:
    """(start offset, lag) of partition 0 from the group's coordinator."""

    def ask() -> tuple[int, int] | None:
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
        if described.error_code:
            return None
        (row,) = described.topics[0].partitions
        return (row.start_offset, row.lag) if row.error_code == 0 else None

    result: tuple[int, int] | None = wait_for("the group's start offset", ask)
    return result
