"""Share groups on a three-broker cluster: ShareFetch goes to the partition leaders and the
group to its coordinator (#11); the share partitions' state to their share coordinators,
wherever those are (test_cluster_share_failover.py kills them); group configs in ZooKeeper."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from integration.clients import wait_until
from integration.share_helpers import ShareWorker, prime, produce_values
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from strom.protocol.messages.describe_configs_request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)

from .test_cluster_share_failover import call
from .test_replicated_cluster import Cluster, create_topic, full_isr, wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_hosts)
    with c.running():
        yield c


def test_share_group_reads_every_partition_once(cluster: Cluster) -> None:
    create_topic(cluster, "queue", 3, 3)
    wait_for("full ISRs", lambda: full_isr(cluster, "queue", 3))
    bootstrap = cluster.bootstrap()
    workers = [ShareWorker(bootstrap, "cluster-sg", ["queue"]).start() for _ in range(3)]
    try:
        for p in range(3):
            prime(bootstrap, "queue", workers, partition=p)
        expected = []
        for p in range(3):
            values = [f"p{p}-{i}".encode() for i in range(40)]
            produce_values(bootstrap, "queue", values, partition=p)
            expected += values
        wait_until(
            lambda: Counter(v for w in workers for v in w.values()) == Counter(expected),
            "every record once across the cluster",
            deadline_s=120,
        )
    finally:
        for w in workers:
            w.stop()


def group_configs_of(broker: Any, group: str) -> dict[str, tuple[str | None, int]]:
    """DescribeConfigs of a GROUP resource asked of one broker on the wire: name -> (value,
    source)."""
    request = DescribeConfigsRequest(resources=[DescribeConfigsResource(32, group, None)])
    (result,) = call(broker, 32, 4, request).results
    assert result.error_code == 0, result.error_message
    return {c.name: (c.value, c.config_source) for c in result.configs}


def test_group_configs_kept_in_zookeeper(cluster: Cluster, zk: KazooClient) -> None:
    """IncrementalAlterConfigs on a GROUP resource through one broker: the configs land in
    /config/groups/<group> with a change notification, every broker describes them, and the
    partition's leader acts on them (share.auto.offset.reset=earliest reads what was written
    before the group existed)."""
    create_topic(cluster, "configured", 1, 3)
    wait_for("full ISRs", lambda: full_isr(cluster, "configured", 1))
    group = "cfg group/1"  # a name ZooKeeper needs sanitized
    one = cluster.brokers[1]
    admin = ck.admin.AdminClient({"bootstrap.servers": one.bootstrap})

    def alter(op: AlterConfigOpType, **configs: str | None) -> None:
        entries = [
            ConfigEntry(k.replace("_", "."), v, incremental_operation=op)
            for k, v in configs.items()
        ]
        resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)
        admin.incremental_alter_configs([resource])[resource].result(30)

    alter(
        AlterConfigOpType.SET,
        share_auto_offset_reset="earliest",
        share_record_lock_duration_ms="20000",
    )
    with pytest.raises(ck.KafkaException, match=r"INVALID_CONFIG|Invalid value"):
        alter(AlterConfigOpType.SET, share_isolation_level="sometimes")
    data, _ = zk.get("/config/groups/cfg%20group%2F1")
    assert json.loads(data) == {
        "version": 1,
        "config": {"share.auto.offset.reset": "earliest", "share.record.lock.duration.ms": "20000"},
    }
    notes = [
        json.loads(zk.get(f"/config/changes/{c}")[0]) for c in zk.get_children("/config/changes")
    ]
    assert {"version": 2, "entity_path": "groups/cfg%20group%2F1"} in notes
    for broker in cluster.brokers.values():
        wait_for(
            f"{broker} describing the group's configs",
            lambda b=broker: (
                group_configs_of(b, group)["share.auto.offset.reset"] == ("earliest", 8)
            ),  # DYNAMIC_GROUP_CONFIG
        )

    early = [f"early-{i}".encode() for i in range(5)]
    produce_values(cluster.bootstrap(), "configured", early)
    worker = ShareWorker(cluster.bootstrap(), group, ["configured"]).start()
    try:
        wait_until(lambda: sorted(worker.values()) == early, "the records written before the group")
    finally:
        worker.stop()

    alter(AlterConfigOpType.DELETE, share_auto_offset_reset=None)
    for broker in cluster.brokers.values():
        wait_for(
            f"{broker} describing the deleted config's default",
            lambda b=broker: group_configs_of(b, group)["share.auto.offset.reset"][1] != 8,
        )
    assert group_configs_of(one, group)["share.record.lock.duration.ms"] == ("20000", 8)
