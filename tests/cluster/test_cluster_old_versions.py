"""Old protocol versions and Kafka's answers on three `strom serve` brokers over ZooKeeper
(issue #10):

- OffsetCommit v0 stores offsets in ZooKeeper where Kafka did
  (/consumers/<group>/offsets/<topic>/<partition>), through any broker; OffsetFetch v0 reads
  them through any other broker, and also what a tool wrote there; the group coordinator's
  offsets (v1+) are apart from them.
- OffsetCommit (confluent-kafka) for topics and partitions that do not exist answers
  UNKNOWN_TOPIC_OR_PARTITION for those and commits the rest.
- AlterPartitionReassignments for a topic or partition that does not exist answers
  UNKNOWN_TOPIC_OR_PARTITION whatever replicas it names; for one that exists, the replica
  checks as before.
- ControlledShutdown v0 (request header v0, no client id, no broker epoch): NOT_CONTROLLER,
  BROKER_NOT_AVAILABLE, then the broker's leadership moves; the connection keeps working.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka as ck
import kafka
import kafka.errors as kerr
import pytest
from integration import kafka_wire_v0 as w
from integration.broker_process import BrokerProcess
from integration.kafka_wire import api_versions_request, parse_api_versions_v0, recv_frame
from kafka.admin import KafkaAdminClient
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from .test_cluster_failover import active_controller, create_assigned, partition0
from .test_replicated_cluster import Cluster, create_topic, full_isr, wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_hosts)
    with c.running():
        yield c


def on_wire(broker: BrokerProcess, request: bytes) -> w.Cursor:
    with socket.create_connection((broker.host, broker.port), timeout=30) as sock:
        return w.call(sock, request)


def test_offset_commit_v0_lives_in_zookeeper(cluster: Cluster, zk: KazooClient) -> None:
    create_topic(cluster, "old", 2, 2)
    wait_for("the topic's replicas in sync", lambda: full_isr(cluster, "old", 2, 2))
    b1, b2, b3 = (cluster.brokers[i] for i in (1, 2, 3))
    tp0, tp1, nope = ("old", 0), ("old", 1), ("nope", 0)

    codes = w.parse_offset_commit(
        on_wire(b1, w.offset_commit(0, "legacy", {tp0: 42, tp1: 7, nope: 1}, metadata="m"))
    )
    assert codes == {tp0: 0, tp1: 0, nope: w.ERR_UNKNOWN_TOPIC_OR_PARTITION}
    assert zk.get("/consumers/legacy/offsets/old/0")[0] == b"42"
    assert zk.get("/consumers/legacy/offsets/old/1")[0] == b"7"
    assert zk.exists("/consumers/legacy/offsets/nope") is None

    # Any broker reads them; an offset a tool wrote into ZooKeeper too.
    zk.set("/consumers/legacy/offsets/old/1", b"9")
    for broker in (b2, b3):
        got = w.parse_offset_fetch(on_wire(broker, w.offset_fetch(0, "legacy", [tp0, tp1, nope])))
        assert got == {tp0: (42, "", 0), tp1: (9, "", 0), nope: (-1, "", 0)}
    # A second commit through another broker updates the znode.
    assert w.parse_offset_commit(on_wire(b3, w.offset_commit(0, "legacy", {tp0: 43}))) == {tp0: 0}
    assert zk.get("/consumers/legacy/offsets/old/0")[0] == b"43"

    # The group coordinator's offsets are apart (OffsetFetch v1 to the coordinator).
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=cluster.bootstrap(), group_id="legacy", enable_auto_commit=False
    )
    try:
        assert consumer.committed(kafka.TopicPartition("old", 0)) is None
    finally:
        consumer.close()


def test_commit_and_reassignment_for_unknown_topics(cluster: Cluster) -> None:
    create_topic(cluster, "known", 1, 2)
    wait_for("the topic's replicas in sync", lambda: full_isr(cluster, "known", 1, 2))
    known = kafka.TopicPartition("known", 0)
    missing = kafka.TopicPartition("known", 3)
    nope = kafka.TopicPartition("nope", 0)

    consumer = ck.Consumer(
        {"bootstrap.servers": cluster.bootstrap(), "group.id": "g", "enable.auto.commit": False}
    )
    try:
        for bad in (("known", 3), ("nope", 0)):
            with pytest.raises(ck.KafkaException) as failed:
                consumer.commit(
                    offsets=[ck.TopicPartition("known", 0, 5), ck.TopicPartition(*bad, 1)],
                    asynchronous=False,
                )
            assert failed.value.args[0].code() == ck.KafkaError.UNKNOWN_TOPIC_OR_PART
        (committed,) = consumer.committed([ck.TopicPartition("known", 0)], timeout=30)
        assert committed.offset == 5
    finally:
        consumer.close()

    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap(), request_timeout_ms=30000)
    try:
        # Whatever the replicas, a partition that does not exist is unknown.
        for replicas in ([99], [1, 1], [-1], None):
            for tp in (nope, missing):
                assert admin.alter_partition_reassignments({tp: replicas}) == {
                    tp: kerr.UnknownTopicOrPartitionError
                }, (tp, replicas)
        # One that exists still has its replicas checked.
        assert admin.alter_partition_reassignments({known: [99]}) == {
            known: kerr.InvalidReplicationAssignmentError
        }
        assert admin.alter_partition_reassignments({known: None}) == {
            known: kerr.NoReassignmentInProgressError
        }
    finally:
        admin.close()


def test_controlled_shutdown_v0(cluster: Cluster, zk: KazooClient) -> None:
    controller_id = wait_for("a controller", lambda: active_controller(zk))
    leaving = next(i for i in cluster.brokers if i != controller_id)
    other = next(i for i in cluster.brokers if i not in (controller_id, leaving))
    create_assigned(cluster, "going", [leaving, controller_id, other])
    wait_for("the preferred leader", lambda: partition0(cluster, "going").leader == leaving)
    controller = cluster.brokers[controller_id]

    assert w.parse_controlled_shutdown(
        on_wire(cluster.brokers[other], w.controlled_shutdown_v0(leaving))
    ) == (41, [])  # NOT_CONTROLLER
    with socket.create_connection((controller.host, controller.port), timeout=40) as sock:
        unknown = w.parse_controlled_shutdown(w.call(sock, w.controlled_shutdown_v0(42, 7)))
        assert unknown == (8, [])  # BROKER_NOT_AVAILABLE
        assert w.parse_controlled_shutdown(w.call(sock, w.controlled_shutdown_v0(leaving, 8))) == (
            0,
            [],
        )
        # The header without a client id was read exactly: the next request on the connection
        # is understood and answered with its own correlation id.
        sock.sendall(api_versions_request(correlation_id=9))
        answer = parse_api_versions_v0(recv_frame(sock))
        assert answer.correlation_id == 9 and answer.api_keys[7] == (0, 3)
    wait_for(
        "the leadership away from the leaving broker",
        lambda: partition0(cluster, "going", exclude={leaving}).leader in (controller_id, other),
    )
