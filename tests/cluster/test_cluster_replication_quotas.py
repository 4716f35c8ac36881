"""Replication quotas during reassignments in a three-broker cluster (Kafka's
leader/follower.replication.throttled.rate and the topics' throttled replica lists, as
kafka-reassign-partitions.sh --throttle sets them).

Two partitions on broker 1 each get a new replica: one throttled on the leader side (broker 1's
leader.replication.throttled.rate, `leader.replication.throttled.replicas=0:1`), one on the
follower side (broker 3's follower.replication.throttled.rate,
`follower.replication.throttled.replicas=0:3`). Both moves complete with every record on the
new replicas, and the brokers' /metrics show that the throttled replicas were held back
(fetches in which they got nothing). Rates are not asserted; nothing is timed.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka as ck
import kafka
import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
from integration.broker_process import BrokerProcess, free_port
from integration.kafka_wire import frame, request_header, roundtrip
from integration.test_http_metrics import scrape, wait_http

from strom.protocol.messages.describe_configs_request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)
from strom.protocol.messages.describe_configs_response import DescribeConfigsResponse

from .test_cluster_reassignment import create, kafka_admin
from .test_replicated_cluster import Cluster, wait_for

pytestmark = pytest.mark.cluster

RATE = 50_000  # bytes per second
RECORDS = 1000
VALUE = 1000  # bytes: about 1 MB per partition
DEADLINE_S = 180.0
TOPIC_RESOURCE, BROKER_RESOURCE = 2, 4


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_hosts)
    for b in c.brokers.values():
        b.http_port = free_port()
        b.sets["strom.http.listeners"] = f"http://127.0.0.1:{b.http_port}"
        # Fetches of at most 64 KB per partition, so a move takes many of them.
        b.sets["replica.fetch.max.bytes"] = "65536"
    with c.running():
        for b in c.brokers.values():
            wait_http(b.http_port)
        yield c


def metric(broker: BrokerProcess, name: str, **labels: str) -> float:
    return scrape(broker.http_port).get((name, tuple(sorted(labels.items()))), 0.0)


def config_at(broker: BrokerProcess, resource_type: int, name: str, key: str) -> str | None:
    """`key` of a topic or broker as this broker describes it (its own view)."""
    request = DescribeConfigsRequest(
        resources=[DescribeConfigsResource(resource_type, name, [key])]
    )
    with socket.create_connection((broker.host, broker.port), timeout=30) as sock:
        answer = roundtrip(sock, frame(request_header(32, 1, 7, "test") + request.encode(1)))
    (result,) = DescribeConfigsResponse.decode(answer[4:], 1).results
    assert result.error_code == 0, result.error_message
    values = [c.value for c in result.configs if c.name == key]
    return values[0] if values else None


def fill(cluster: Cluster, topic: str) -> None:
    producer = ck.Producer({"bootstrap.servers": cluster.bootstrap(), "linger.ms": 20})
    for i in range(RECORDS):
        producer.produce(topic, str(i).encode().ljust(VALUE, b"."), partition=0)
        producer.poll(0)
    assert producer.flush(60) == 0


def alter(cluster: Cluster, resource: ConfigResource) -> None:
    admin = cluster.admin()
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def test_reassignments_are_throttled(cluster: Cluster) -> None:
    create(cluster, "lead-slow", [[1]])
    create(cluster, "follow-slow", [[1]])
    fill(cluster, "lead-slow")
    fill(cluster, "follow-slow")
    throttles = [
        (TOPIC_RESOURCE, "lead-slow", "leader.replication.throttled.replicas", "0:1"),
        (TOPIC_RESOURCE, "follow-slow", "follower.replication.throttled.replicas", "0:3"),
        (BROKER_RESOURCE, "1", "leader.replication.throttled.rate", str(RATE)),
        (BROKER_RESOURCE, "3", "follower.replication.throttled.rate", str(RATE)),
    ]
    for rtype, name, key, value in throttles:
        restype = (
            ConfigResource.Type.TOPIC if rtype == TOPIC_RESOURCE else ConfigResource.Type.BROKER
        )
        entry = ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
        alter(cluster, ConfigResource(restype, name, incremental_configs=[entry]))
    # Brokers 1 (leader side) and 3 (follower side) apply them before the moves start.
    for broker_id, (rtype, name, key, value) in [(1, throttles[0]), (3, throttles[1])]:
        wait_for(
            f"broker {broker_id} applying {key}",
            lambda b=broker_id, t=rtype, n=name, k=key, v=value: (
                config_at(cluster.brokers[b], t, n, k) == v
            ),
        )
    wait_for(
        "broker 1's leader rate",
        lambda: config_at(cluster.brokers[1], BROKER_RESOURCE, "1", throttles[2][2]) == str(RATE),
    )
    wait_for(
        "broker 3's follower rate",
        lambda: config_at(cluster.brokers[3], BROKER_RESOURCE, "3", throttles[3][2]) == str(RATE),
    )

    admin = kafka_admin(cluster)
    try:
        lead = kafka.TopicPartition("lead-slow", 0)
        follow = kafka.TopicPartition("follow-slow", 0)
        assert admin.alter_partition_reassignments({lead: [1, 2], follow: [1, 3]}) == {
            lead: None,
            follow: None,
        }
        leader, follower = cluster.brokers[1], cluster.brokers[3]
        wait_for(
            "broker 1 holding back the throttled replica",
            lambda: metric(leader, "kafka_server_leaderreplication_throttledfetches_total") > 0,
            DEADLINE_S,
        )
        wait_for(
            "broker 3 holding back its throttled replica",
            lambda: metric(follower, "kafka_server_followerreplication_throttledfetches_total") > 0,
            DEADLINE_S,
        )

        def moved(topic: str, replicas: list[int]) -> bool:
            p = cluster.partitions(topic).get(0)
            return p is not None and sorted(p.replicas) == replicas == sorted(p.isrs)

        wait_for("lead-slow moved", lambda: moved("lead-slow", [1, 2]), DEADLINE_S)
        wait_for("follow-slow moved", lambda: moved("follow-slow", [1, 3]), DEADLINE_S)
        assert admin.list_partition_reassignments() == {}
    finally:
        admin.close()
    # Every record is on the new replicas; the throttled bytes were counted.
    for broker_id, topic in ((2, "lead-slow"), (3, "follow-slow")):
        end = metric(
            cluster.brokers[broker_id], "kafka_log_log_logendoffset", topic=topic, partition="0"
        )
        assert end == RECORDS
    assert metric(cluster.brokers[2], "kafka_server_leaderreplication_throttledfetches_total") == 0
    assert (
        metric(cluster.brokers[2], "kafka_server_followerreplication_throttledfetches_total") == 0
    )
