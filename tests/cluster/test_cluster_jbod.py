"""A log dir failing on one broker of a three-broker cluster (two log dirs each).

Kafka's ZooKeeper-mode flow: the broker takes the directory offline and writes
/log_dir_event_notification/log_dir_event_<n>; the controller sends it LeaderAndIsr for every
replica it hosts, the replicas in the failed directory answer KAFKA_STORAGE_ERROR, and the
controller elects other leaders for those partitions and drops the broker from their ISRs.
The broker's partitions in its other directory keep their leader. After a restart (the disk
is back) the broker catches up and rejoins the ISRs.

The failure is made with the fault-injection seam (STROMTEST_FAULT_INJECTION): a test running
as root cannot make a real directory unwritable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import NewTopic
from integration.log_dirs_wire import ERR_KAFKA_STORAGE_ERROR, describe_log_dirs
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from .test_cluster_failover import active_controller
from .test_replicated_cluster import Cluster, wait_for

pytestmark = pytest.mark.cluster

PARTITIONS = 4


@pytest.fixture
def jbod_cluster(zk_hosts: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_hosts)
    for broker in c.brokers.values():
        dirs = [broker.workdir / "disk0", broker.workdir / "disk1"]
        broker.with_log_dirs = False
        broker.sets["log.dirs"] = ",".join(str(d.absolute()) for d in dirs)
        broker.sets["replica.lag.time.max.ms"] = "3000"
        rules = broker.workdir / "faults"
        rules.write_text("")
        broker.extra_env["STROMTEST_FAULT_INJECTION"] = str(rules)
    with c.running():
        yield c


def _dirs(cluster: Cluster, broker_id: int) -> list[Path]:
    workdir = cluster.brokers[broker_id].workdir
    return [(workdir / "disk0").absolute(), (workdir / "disk1").absolute()]


def _home(cluster: Cluster, broker_id: int, topic: str, partition: int) -> Path:
    [home] = [d for d in _dirs(cluster, broker_id) if (d / f"{topic}-{partition}").is_dir()]
    return home


def _produce(bootstrap: str, topic: str, tag: str) -> dict[int, list[bytes]]:
    """Records to every partition with acks=all; returns what was acknowledged."""
    producer = ck.Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": 60000,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    acked: dict[int, list[bytes]] = {}

    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            acked.setdefault(msg.partition(), []).append(msg.value())

    for p in range(PARTITIONS):
        for i in range(50):
            producer.produce(topic, f"{tag}-{p}-{i}".encode(), partition=p, on_delivery=delivered)
    assert producer.flush(90) == 0
    return acked


def _consume(bootstrap: str, topic: str, partition: int) -> list[bytes]:
    consumer = ck.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "verify", "enable.auto.commit": False}
    )
    try:
        lo, hi = consumer.get_watermark_offsets(ck.TopicPartition(topic, partition), timeout=30)
        consumer.assign([ck.TopicPartition(topic, partition, lo)])
        got: list[bytes] = []
        wait_for(
            f"{topic}-{partition} read to its end",
            lambda: (
                got.extend(m.value() for m in consumer.consume(500, 0.5) if m.error() is None)
                or len(got) >= hi - lo
            ),
        )
        return got
    finally:
        consumer.close()


@pytest.mark.parametrize("where", ["another broker", "the controller"])
def test_failed_log_dir_moves_its_leaderships_to_other_brokers(
    jbod_cluster: Cluster, zk: KazooClient, where: str
) -> None:
    """On another broker the controller learns of the offline replicas from its LeaderAndIsr
    answers; on the controller itself from its own log manager."""
    cluster = jbod_cluster
    topic = "jbod"
    controller = wait_for("a controller", lambda: active_controller(zk))
    failing = (
        controller
        if where == "the controller"
        else next(b for b in sorted(cluster.brokers) if b != controller)
    )
    others = [b for b in sorted(cluster.brokers) if b != failing]
    admin = cluster.admin()
    new = NewTopic(
        topic,
        num_partitions=PARTITIONS,
        replica_assignment=[[failing, *others]] * PARTITIONS,
        config={"min.insync.replicas": "2"},
    )
    admin.create_topics([new], request_timeout=30)[topic].result(timeout=30)
    wait_for(
        "the failing broker to lead every partition with a full ISR",
        lambda: (
            (parts := cluster.partitions(topic))
            and len(parts) == PARTITIONS
            and all(p.leader == failing and len(p.isrs) == 3 for p in parts.values())
        ),
    )
    before = _produce(cluster.bootstrap(), topic, "before")
    broken = _home(cluster, failing, topic, 0)
    lost = {p for p in range(PARTITIONS) if _home(cluster, failing, topic, p) == broken}
    kept = set(range(PARTITIONS)) - lost
    assert lost and kept, "the broker's partitions are spread over both log dirs"

    broker = cluster.brokers[failing]
    (broker.workdir / "faults").write_text(f"{broken} write\n")
    wait_for("the rules to be read", lambda: f"'{broken}': [" in broker.log_text())
    during = _produce(cluster.bootstrap(), topic, "during")  # the first write fails the dir

    def moved() -> bool:
        parts = cluster.partitions(topic)
        return len(parts) == PARTITIONS and all(
            (parts[p].leader in others and failing not in parts[p].isrs)
            if p in lost
            else (parts[p].leader == failing and len(parts[p].isrs) == 3)
            for p in range(PARTITIONS)
        )

    wait_for("the failed dir's leaderships to move to other brokers", moved)
    log = broker.log_text()
    assert len(re.findall(rf"Log directory {re.escape(str(broken))} failed", log)) == 1
    assert broker.is_alive()
    assert zk.get_children("/log_dir_event_notification") == [] or wait_for(
        "the notification to be processed",
        lambda: zk.get_children("/log_dir_event_notification") == [],
    )
    _, described = describe_log_dirs(broker.host, broker.port, 4)
    assert {d.path: d.error_code for d in described}[str(broken)] == ERR_KAFKA_STORAGE_ERROR
    after = _produce(cluster.bootstrap(), topic, "after")
    for p in range(PARTITIONS):
        expected = before.get(p, []) + during.get(p, []) + after.get(p, [])
        assert len(expected) == 150, f"every record acknowledged on partition {p}"
        assert _consume(cluster.bootstrap(), topic, p) == expected

    # The disk is back after a restart: the broker catches up and rejoins every ISR.
    (broker.workdir / "faults").write_text("")
    broker.restart()
    wait_for(
        "a full ISR everywhere",
        lambda: (
            (parts := cluster.partitions(topic)) and all(len(p.isrs) == 3 for p in parts.values())
        ),
    )
