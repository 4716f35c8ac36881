"""Share groups on a three-broker cluster: ShareFetch goes to the partition leaders and the
group to its coordinator (#11); the share partitions' state to their share coordinators,
wherever those are (test_cluster_share_failover.py kills them)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.clients import wait_until
from integration.share_helpers import ShareWorker, prime, produce_values

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
