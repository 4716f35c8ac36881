"""/metrics of a three-broker cluster (ZooKeeper): the active controller, under-replicated and
under-min-ISR partitions, ISR expansions and leader elections move as a follower and then a
leader are killed and come back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from integration.broker_process import free_port
from integration.test_http_metrics import scrape, wait_http

from .test_replicated_cluster import Cluster, create_topic, full_isr, wait_for

pytestmark = pytest.mark.cluster


def metric(broker: Any, name: str) -> float:
    samples = scrape(broker.http_port)
    return samples.get((name, ()), 0.0)


def test_replication_metrics_follow_failures(zk_hosts: str, tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, zk_hosts)
    for b in cluster.brokers.values():
        b.http_port = free_port()
        b.sets["strom.http.listeners"] = f"http://127.0.0.1:{b.http_port}"
    with cluster.running():
        for b in cluster.brokers.values():
            wait_http(b.http_port)
        topic = "metered"
        create_topic(cluster, topic, 1, 3, **{"min.insync.replicas": "3"})
        wait_for("a full ISR", lambda: full_isr(cluster, topic, 1))

        def active_controllers() -> list[int]:
            return [
                i
                for i, b in cluster.brokers.items()
                if metric(b, "kafka_controller_kafkacontroller_activecontrollercount") == 1
            ]

        (controller,) = wait_for("one active controller", lambda: active_controllers() or None)
        leader = cluster.partitions(topic)[0].leader
        follower = next(i for i in cluster.brokers if i not in (leader, controller))
        lead = cluster.brokers[leader]
        assert metric(lead, "kafka_server_replicamanager_leadercount") >= 1
        assert metric(lead, "kafka_server_replicamanager_underreplicatedpartitions") == 0

        cluster.brokers[follower].kill9()
        wait_for(
            "the leader to count the partition under-replicated",
            lambda: metric(lead, "kafka_server_replicamanager_underreplicatedpartitions") >= 1,
        )
        # (The controller took the dead broker out of the ISR: not a shrink of the leader's,
        # which counts only the lagging followers it drops itself, as Kafka's does.)
        assert metric(lead, "kafka_server_replicamanager_underminisrpartitioncount") >= 1

        cluster.brokers[follower].start().wait_ready()
        wait_http(cluster.brokers[follower].http_port)
        wait_for("a full ISR again", lambda: full_isr(cluster, topic, 1))
        wait_for(
            "the leader to count the expansion",
            lambda: metric(lead, "kafka_server_replicamanager_isrexpands_total") >= 1,
        )
        assert metric(lead, "kafka_server_replicamanager_underreplicatedpartitions") == 0

        # No leadership has moved yet; killing the leader makes the (possibly new) controller
        # move it.
        assert all(
            metric(b, "kafka_controller_controllerstats_leaderelections_total") == 0
            for b in cluster.brokers.values()
        )
        lead.kill9()
        wait_for(
            "a controller to count the election",
            lambda: any(
                metric(b, "kafka_controller_controllerstats_leaderelections_total") >= 1
                for i, b in cluster.brokers.items()
                if i != leader
            ),
        )
