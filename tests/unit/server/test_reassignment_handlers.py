"""AlterPartitionReassignments (45) and ListPartitionReassignments (46) on a single broker
(no zookeeper.connect): only this broker is live, so nothing can move; the answers follow
Kafka's checks. Cluster mode is proven in tests/cluster/test_cluster_reassignment.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strom.config import BrokerConfig
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.alter_partition_reassignments_request import (
    AlterPartitionReassignmentsRequest,
    ReassignablePartition,
    ReassignableTopic,
)
from strom.protocol.messages.list_partition_reassignments_request import (
    ListPartitionReassignmentsRequest,
)
from strom.server.broker import Broker
from strom.server.context import RequestContext
from strom.server.handlers.alter_partition_reassignments import (
    handle_alter_partition_reassignments,
)
from strom.server.handlers.list_partition_reassignments import (
    handle_list_partition_reassignments,
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker.open(BrokerConfig.load(None, {"log.dirs": str(tmp_path / "data")}))
    b.create_topic("t", 3, 1, {})
    yield b
    b.logs.close()
    b.io.shutdown(wait=True)


def ctx(broker: Broker, api_key: int) -> RequestContext:
    return RequestContext(broker, api_key, 0, 1, "test", "127.0.0.1:1", bytearray())


def test_single_broker_answers_kafkas_checks(broker: Broker) -> None:
    own = broker.node.node_id
    entries = {
        ("t", 0): [own],  # already the replicas: nothing to do
        ("t", 1): None,  # cancel: none in progress
        ("t", 7): [own],  # no such partition
        ("u", 0): [own],
        ("t", 2): [],
        # Unknown before the replicas are looked at (they are wrong too).
        ("u", 1): [],
        ("u", 2): [own, own],
        ("u", 3): None,
        ("t", 8): [own + 5],
    }
    request = AlterPartitionReassignmentsRequest(
        timeout_ms=1000,
        topics=[
            ReassignableTopic(
                name=topic,
                partitions=[
                    ReassignablePartition(partition_index=p, replicas=r)
                    for (t, p), r in entries.items()
                    if t == topic
                ],
            )
            for topic in ("t", "u")
        ],
    )
    response = handle_alter_partition_reassignments(ctx(broker, 45), request)
    got = {
        (t.name, p.partition_index): p.error_code for t in response.responses for p in t.partitions
    }
    assert got == {
        ("t", 0): ErrorCode.NONE,
        ("t", 1): ErrorCode.NO_REASSIGNMENT_IN_PROGRESS,
        ("t", 7): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("u", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("t", 2): ErrorCode.INVALID_REPLICA_ASSIGNMENT,
        ("u", 1): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("u", 2): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("u", 3): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("t", 8): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    # Another broker id is not a live broker.
    moved = AlterPartitionReassignmentsRequest(
        topics=[ReassignableTopic("t", [ReassignablePartition(0, [own + 1])])]
    )
    (topic,) = handle_alter_partition_reassignments(ctx(broker, 45), moved).responses
    assert topic.partitions[0].error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    listed = handle_list_partition_reassignments(
        ctx(broker, 46), ListPartitionReassignmentsRequest(topics=None)
    )
    assert listed.error_code == ErrorCode.NONE and listed.topics == []
