"""Achieved replication rates of a throttled reassignment: a partition copied to a new broker
under leader.replication.throttled.rate (and follower.replication.throttled.rate) of 1 and
10 MB/s, and without a throttle.

    .venv/bin/python benchmarks/replication_quotas.py          # ZooKeeper + 2 Strom brokers
    .venv/bin/python benchmarks/replication_quotas.py --seconds 60

Needs java and Debian's zookeeper package, as `benchmarks/run.py --cluster`. For each case a
topic with one partition on broker 1 gets rate x `--seconds` of 10 kB records (100 MB
without a throttle), both brokers get the rate
as their dynamic configs and the topic `*` throttled replicas on both sides (what
kafka-reassign-partitions.sh --throttle sets), then the partition is reassigned to [1, 2] and
timed until broker 2 is in its ISR. The rate is the bytes over that time, so it includes the
first window's burst (the rate is measured over 11 one-second samples: a move starting fresh
may copy about ten seconds' worth at once); a longer --seconds brings it nearer the bound. This
is not part of the test run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import kafka
from confluent_kafka import Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import Cluster

MB = 1_000_000
RECORD = b"x" * 10_000


def fill(bootstrap: str, topic: str, total: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": 1})
    for _ in range(total // len(RECORD)):
        while True:
            try:
                producer.produce(topic, RECORD, partition=0)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("records left unsent")


def alter(admin: AdminClient, resource: ConfigResource) -> None:
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def throttle(admin: AdminClient, topic: str, rate: int | None) -> None:
    if rate is None:
        return
    entries = [
        ConfigEntry(key, str(rate), incremental_operation=AlterConfigOpType.SET)
        for key in ("leader.replication.throttled.rate", "follower.replication.throttled.rate")
    ]
    for broker_id in ("1", "2"):  # librdkafka names no cluster-wide default resource
        alter(
            admin,
            ConfigResource(ConfigResource.Type.BROKER, broker_id, incremental_configs=entries),
        )
    replicas = [
        ConfigEntry(key, "*", incremental_operation=AlterConfigOpType.SET)
        for key in (
            "leader.replication.throttled.replicas",
            "follower.replication.throttled.replicas",
        )
    ]
    alter(admin, ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=replicas))
    time.sleep(1.0)  # every broker applies the configs from its ZooKeeper watch


def in_isr(admin: AdminClient, topic: str, broker_id: int) -> bool:
    md = admin.list_topics(topic, timeout=10).topics.get(topic)
    return md is not None and md.error is None and broker_id in md.partitions[0].isrs


def move(bootstrap: str, topic: str, total: int, rate: int | None) -> float:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[1]])])[
        topic
    ].result(timeout=30)
    fill(bootstrap, topic, total)
    throttle(admin, topic, rate)
    kadmin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    try:
        started = time.monotonic()
        kadmin.alter_partition_reassignments({kafka.TopicPartition(topic, 0): [1, 2]})
        while not in_isr(admin, topic, 2):
            time.sleep(0.2)
        elapsed = time.monotonic() - started
    finally:
        kadmin.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=30, help="seconds of data at the bound")
    args = parser.parse_args()
    cluster = Cluster(["auto.leader.rebalance.enable=false"], size=2)
    try:
        print(f"{'throttle':>12} {'moved':>8} {'seconds':>8} {'MB/s':>8}")
        for name, rate in (("none", None), ("10 MB/s", 10 * MB), ("1 MB/s", 1 * MB)):
            topic = f"moved-{name.replace(' ', '').replace('/', '')}"
            total = 100 * MB if rate is None else rate * args.seconds
            seconds = move(cluster.bootstrap, topic, total, rate)
            print(f"{name:>12} {total // MB:>6}MB {seconds:>8.1f} {total / MB / seconds:>8.2f}")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
