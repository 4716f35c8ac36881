"""The group coordinator moves with the leadership of `__consumer_offsets` partitions.

Three `strom serve` processes and one ZooKeeper: a confluent-kafka consumer group commits its
offsets; once the commit is replicated (it is below the partition's high watermark), the
broker leading the group's `__consumer_offsets` partition is killed with kill -9. A new leader
of that partition loads the group from its copy of the partition, FindCoordinator points there,
and a new consumer of the same group resumes from the committed offset.

Nothing is timed: every wait polls a condition up to a generous deadline.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka as ck
import pytest
from integration.broker_process import BrokerProcess

from strom.runtime.coordinator_runtime import partition_for
from strom.runtime.group_runtime import OFFSETS_TOPIC

from .test_replicated_cluster import DEADLINE_S, Cluster, create_topic, full_isr, wait_for

pytestmark = pytest.mark.cluster

OFFSETS_PARTITIONS = 5
GROUP = "resuming-group"
TOPIC = "work"


class CoordinatorCluster(Cluster):
    """Three brokers whose `__consumer_offsets` (5 partitions) has three replicas."""

    def __init__(self, root: Path, zk_hosts: str) -> None:
        super().__init__(root, zk_hosts)
        for broker_id, broker in list(self.brokers.items()):
            sets = dict(broker.sets)
            sets["offsets.topic.num.partitions"] = str(OFFSETS_PARTITIONS)
            sets["offsets.topic.replication.factor"] = "3"
            sets["group.initial.rebalance.delay.ms"] = "0"
            self.brokers[broker_id] = BrokerProcess(
                root / f"broker{broker_id}", sets, name=f"broker{broker_id}"
            )


@pytest.fixture
def coordinator_cluster(zk_hosts: str, tmp_path: Path) -> Iterator[CoordinatorCluster]:
    c = CoordinatorCluster(tmp_path, zk_hosts)
    with c.running():
        yield c


def consumer(cluster: Cluster) -> ck.Consumer:
    return ck.Consumer(
        {
            "bootstrap.servers": cluster.bootstrap(),
            "group.id": GROUP,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )


def consume(c: ck.Consumer, count: int) -> list[ck.Message]:
    got: list[ck.Message] = []
    end = time.monotonic() + DEADLINE_S
    while len(got) < count and time.monotonic() < end:
        msg = c.poll(0.5)
        if msg is None or msg.error():
            continue
        got.append(msg)
    return got


def committed_offset_replicated(cluster: Cluster, partition: int, offset: int) -> bool:
    """The group's commit of `offset` for TOPIC-0 is readable in its `__consumer_offsets`
    partition: below the high watermark, so every replica of the ISR has it."""
    reader = ck.Consumer(
        {
            "bootstrap.servers": cluster.bootstrap(),
            "group.id": "offsets-reader",
            "enable.auto.commit": False,
        }
    )
    try:
        reader.assign([ck.TopicPartition(OFFSETS_TOPIC, partition, 0)])
        _, high = reader.get_watermark_offsets(
            ck.TopicPartition(OFFSETS_TOPIC, partition), timeout=5
        )
        found = False
        end = time.monotonic() + 10
        position = 0
        while position < high and time.monotonic() < end:
            msg = reader.poll(0.5)
            if msg is None or msg.error():
                continue
            position = (msg.offset() or 0) + 1
            key, value = msg.key(), msg.value()
            if key is None or value is None or struct.unpack(">h", key[:2])[0] > 1:
                continue  # not an offset commit (group metadata) or a tombstone
            group, rest = _string(key[2:])
            topic, rest = _string(rest)
            (index,) = struct.unpack(">i", rest[:4])
            if (group, topic, index) == (GROUP, TOPIC, 0):
                found = struct.unpack(">q", value[2:10])[0] == offset
        return found
    finally:
        reader.close()


def coordinator_of(cluster: Cluster) -> int:
    admin = cluster.admin()  # kept alive until the answer is in
    described = admin.describe_consumer_groups([GROUP], request_timeout=30)
    return int(described[GROUP].result(timeout=30).coordinator.id)


def _string(data: bytes) -> tuple[str, bytes]:
    (length,) = struct.unpack(">h", data[:2])
    return data[2 : 2 + length].decode(), data[2 + length :]


def test_group_resumes_after_coordinator_killed(coordinator_cluster: CoordinatorCluster) -> None:
    cluster = coordinator_cluster
    create_topic(cluster, TOPIC, 1, 3)
    wait_for("an ISR of three", lambda: full_isr(cluster, TOPIC, 1))
    producer = ck.Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all"})
    for i in range(100):
        producer.produce(TOPIC, str(i).encode(), partition=0)
    assert producer.flush(30) == 0

    first = consumer(cluster)
    try:
        first.subscribe([TOPIC])
        got = consume(first, 40)
        assert [int(m.value() or b"") for m in got] == list(range(40))
        first.commit(offsets=[ck.TopicPartition(TOPIC, 0, 40)], asynchronous=False)
    finally:
        first.close()

    index = partition_for(GROUP, OFFSETS_PARTITIONS)
    wait_for(
        "__consumer_offsets with an ISR of three",
        lambda: full_isr(cluster, OFFSETS_TOPIC, OFFSETS_PARTITIONS),
    )
    old = cluster.partitions(OFFSETS_TOPIC)[index].leader
    # The group's coordinator is the leader of its partition.
    assert coordinator_of(cluster) == old
    wait_for("the commit replicated", lambda: committed_offset_replicated(cluster, index, 40))

    cluster.brokers[old].kill9()
    wait_for(
        "a new leader of the group's partition",
        lambda: (p := cluster.partitions(OFFSETS_TOPIC).get(index)) and p.leader not in (-1, old),
    )

    second = consumer(cluster)
    try:
        second.subscribe([TOPIC])
        resumed = consume(second, 10)
        assert [m.offset() for m in resumed] == list(range(40, 50))
        committed = second.committed([ck.TopicPartition(TOPIC, 0)], timeout=30)
        assert committed[0].offset == 40
    finally:
        second.close()
    new = cluster.partitions(OFFSETS_TOPIC)[index].leader
    assert coordinator_of(cluster) == new != old
    # The new coordinator loaded the group from its copy of the partition.
    assert f"coordinating the groups of {OFFSETS_TOPIC}-{index} (" in (
        cluster.brokers[new].log_text_since_last_start()
    )
