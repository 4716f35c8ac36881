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
- The inter-broker APIs Kafka 3.9's ZooKeeper mode answers: AllocateProducerIds (blocks from
  /latest_producer_id_block, the broker epoch checked), AlterPartition (the controller writes a
  leader's ISR with Kafka's checks), UpdateMetadata (fenced; a state reaches the cache),
  FindCoordinator v6 for the share key, Envelope (the connection closed).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import kafka
import kafka.errors as kerr
import pytest
from confluent_kafka.admin import NewTopic
from integration import kafka_wire_v0 as w
from integration.broker_process import BrokerProcess
from integration.kafka_wire import api_versions_request, parse_api_versions_v0, recv_frame
from kafka.admin import KafkaAdminClient
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from strom.cluster.ids import parse_kafka_uuid
from strom.protocol.errors import ErrorCode
from strom.protocol.framing import decode_response, encode_request
from strom.protocol.messages.allocate_producer_ids_request import AllocateProducerIdsRequest
from strom.protocol.messages.alter_partition_request import (
    AlterPartitionRequest,
    BrokerState,
    PartitionData,
    TopicData,
)
from strom.protocol.messages.envelope_request import EnvelopeRequest
from strom.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from strom.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from strom.protocol.messages.update_metadata_request import (
    UpdateMetadataPartitionState,
    UpdateMetadataRequest,
    UpdateMetadataTopicState,
)

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


def request(broker: BrokerProcess, api_key: int, version: int, message: Any) -> Any:
    """One request on a fresh connection; the decoded response."""
    frame = b"".join(bytes(c) for c in encode_request(api_key, version, 5, "test", message))
    with socket.create_connection((broker.host, broker.port), timeout=40) as sock:
        sock.sendall(frame)
        correlation_id, response = decode_response(api_key, version, recv_frame(sock))
    assert correlation_id == 5
    return response


def registration_epoch(zk: KazooClient, broker_id: int) -> int:
    return int(zk.get(f"/brokers/ids/{broker_id}")[1].czxid)


def test_allocate_producer_ids(cluster: Cluster, zk: KazooClient) -> None:
    controller_id = wait_for("a controller", lambda: active_controller(zk))
    other = next(i for i in cluster.brokers if i != controller_id)
    controller = cluster.brokers[controller_id]
    epoch = registration_epoch(zk, other)

    def allocate(to: BrokerProcess, broker_id: int, broker_epoch: int) -> Any:
        return request(to, 67, 0, AllocateProducerIdsRequest(broker_id, broker_epoch))

    assert allocate(cluster.brokers[other], other, epoch).error_code == ErrorCode.NOT_CONTROLLER
    assert allocate(controller, 42, epoch).error_code == ErrorCode.BROKER_ID_NOT_REGISTERED
    assert allocate(controller, other, epoch - 1).error_code == ErrorCode.STALE_BROKER_EPOCH
    first = allocate(controller, other, epoch)
    second = allocate(controller, other, epoch)
    assert first.error_code == second.error_code == ErrorCode.NONE
    assert first.producer_id_len == second.producer_id_len == 1000
    # Consecutive blocks, recorded where Kafka keeps them.
    assert second.producer_id_start == first.producer_id_start + 1000
    block = json.loads(zk.get("/latest_producer_id_block")[0])
    assert block["broker"] == other
    assert int(block["block_start"]) == second.producer_id_start
    assert int(block["block_end"]) == second.producer_id_start + 999


def test_alter_partition(cluster: Cluster, zk: KazooClient) -> None:
    controller_id = wait_for("a controller", lambda: active_controller(zk))
    leader = next(i for i in cluster.brokers if i != controller_id)
    third = next(i for i in cluster.brokers if i not in (controller_id, leader))
    create_assigned(cluster, "isr", [leader, controller_id, third])
    wait_for("the preferred leader", lambda: partition0(cluster, "isr").leader == leader)
    controller = cluster.brokers[controller_id]
    state_path = "/brokers/topics/isr/partitions/0/state"
    data, stat = zk.get(state_path)
    state = json.loads(data)
    topic_id = parse_kafka_uuid(json.loads(zk.get("/brokers/topics/isr")[0])["topic_id"])
    epoch = registration_epoch(zk, leader)

    def alter(
        version: int,
        isr: list[int],
        leader_epoch: int,
        partition_epoch: int,
        to: BrokerProcess = controller,
        broker_epoch: int = epoch,
    ) -> Any:
        partition = PartitionData(
            partition_index=0,
            leader_epoch=leader_epoch,
            new_isr=isr,
            new_isr_with_epochs=[BrokerState(b, -1) for b in isr],
            partition_epoch=partition_epoch,
        )
        topic = TopicData(topic_name="isr", topic_id=topic_id, partitions=[partition])
        message = AlterPartitionRequest(leader, broker_epoch, [topic])
        return request(to, 56, version, message)

    current_epoch, version = state["leader_epoch"], stat.version
    wrong = alter(3, [leader, controller_id], current_epoch, version, to=cluster.brokers[third])
    assert wrong.error_code == ErrorCode.NOT_CONTROLLER
    stale = alter(3, [leader, controller_id], current_epoch, version, broker_epoch=epoch - 1)
    assert stale.error_code == ErrorCode.STALE_BROKER_EPOCH

    def only(response: Any) -> Any:
        assert response.error_code == ErrorCode.NONE
        (topic,) = response.topics
        (partition,) = topic.partitions
        return partition

    assert only(alter(3, [leader, 99], current_epoch, version)).error_code == (
        ErrorCode.INELIGIBLE_REPLICA
    )
    for old_version in (0, 1):  # AlterIsr's versions, which Kafka 4.0 removed
        assert only(alter(old_version, [leader, 99], current_epoch, version)).error_code == (
            ErrorCode.OPERATION_NOT_ATTEMPTED
        )
    assert only(alter(3, [leader], current_epoch - 1, version)).error_code == (
        ErrorCode.FENCED_LEADER_EPOCH
    )
    assert only(alter(3, [leader], current_epoch + 1, version)).error_code == (
        ErrorCode.NOT_CONTROLLER
    )
    # The leader shrinks its ISR: written by the controller with the next partition epoch.
    done = only(alter(2, [leader, controller_id], current_epoch, version))
    assert (done.error_code, done.leader_id, done.isr) == (0, leader, [leader, controller_id])
    assert done.partition_epoch == version + 1
    written = json.loads(zk.get(state_path)[0])
    assert (written["leader"], written["isr"]) == (leader, [leader, controller_id])
    # The same proposal again is answered with the state (idempotent); an old partition epoch
    # with another ISR is refused. Unknown topics and topic ids are named as such.
    again = only(alter(2, [leader, controller_id], current_epoch, version))
    assert (again.error_code, again.partition_epoch) == (0, version + 1)
    assert only(alter(2, [leader], current_epoch, version)).error_code == (
        ErrorCode.INVALID_UPDATE_VERSION
    )
    unknown = AlterPartitionRequest(
        leader, epoch, [TopicData(topic_name="nope", partitions=[PartitionData(0, 0, [leader])])]
    )
    (topic,) = request(controller, 56, 1, unknown).topics
    assert topic.partitions[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    unknown_id = AlterPartitionRequest(
        leader,
        epoch,
        [
            TopicData(
                topic_id=parse_kafka_uuid("AAAAAAAAAAAAAAAAAAAAAQ"),
                partitions=[PartitionData(0, 0)],
            )
        ],
    )
    (topic,) = request(controller, 56, 2, unknown_id).topics
    assert topic.partitions[0].error_code == ErrorCode.UNKNOWN_TOPIC_ID
    # The leader then finds its follower in sync again and expands the ISR itself.
    wait_for("a full ISR again", lambda: full_isr(cluster, "isr", 1))


def test_update_metadata(cluster: Cluster, zk: KazooClient) -> None:
    controller_id = wait_for("a controller", lambda: active_controller(zk))
    owner = next(i for i in cluster.brokers if i != controller_id)
    target = next(i for i in cluster.brokers if i not in (controller_id, owner))
    admin = cluster.admin()  # kept alive until the answer is in
    topic = NewTopic("meta", num_partitions=1, replica_assignment=[[owner]])
    admin.create_topics([topic], request_timeout=30)["meta"].result(timeout=30)
    broker = cluster.brokers[target]
    wait_for("the leader known", lambda: partition0(cluster, "meta").leader == owner)
    data, stat = zk.get("/brokers/topics/meta/partitions/0/state")
    state = json.loads(data)
    controller_epoch = int(zk.get("/controller_epoch")[0])
    epoch = registration_epoch(zk, target)

    def update(
        leader: int, zk_version: int, controller: int, epoch_of: int, broker_epoch: int
    ) -> int:
        partition = UpdateMetadataPartitionState(
            partition_index=0,
            controller_epoch=controller_epoch,
            leader=leader,
            leader_epoch=state["leader_epoch"],
            isr=[owner],
            zk_version=zk_version,
            replicas=[owner],
        )
        message = UpdateMetadataRequest(
            controller_id=controller,
            controller_epoch=epoch_of,
            broker_epoch=broker_epoch,
            topic_states=[
                UpdateMetadataTopicState(topic_name="meta", partition_states=[partition])
            ],
        )
        return int(request(broker, 6, 7, message).error_code)

    def leader_seen_by(broker_id: int) -> int:
        # Asked on the wire: a client bootstrapped from one broker may ask any other.
        topics = [MetadataRequestTopic(name="meta")]
        answer = request(cluster.brokers[broker_id], 3, 12, MetadataRequest(topics=topics))
        return int(answer.topics[0].partitions[0].leader_id)

    assert update(-1, stat.version + 1, controller_id, controller_epoch - 1, epoch) == (
        ErrorCode.STALE_CONTROLLER_EPOCH
    )
    assert update(-1, stat.version + 1, owner, controller_epoch, epoch) == (
        ErrorCode.STALE_CONTROLLER_EPOCH  # not the controller ZooKeeper names
    )
    assert update(-1, stat.version + 1, controller_id, controller_epoch, epoch - 1) == (
        ErrorCode.STALE_BROKER_EPOCH
    )
    assert leader_seen_by(target) == owner
    # From the controller: the state reaches this broker's metadata cache (only its).
    assert update(-1, stat.version + 1, controller_id, controller_epoch, epoch) == ErrorCode.NONE
    assert leader_seen_by(target) == -1
    assert leader_seen_by(owner) == owner
    # An older partition epoch changes nothing; a newer one does.
    assert update(owner, stat.version, controller_id, controller_epoch, epoch) == ErrorCode.NONE
    assert leader_seen_by(target) == -1
    assert update(owner, stat.version + 2, controller_id, controller_epoch, epoch) == ErrorCode.NONE
    assert leader_seen_by(target) == owner


def test_find_coordinator_v6_and_envelope(cluster: Cluster) -> None:
    broker = cluster.brokers[1]
    found = request(broker, 10, 6, FindCoordinatorRequest(key_type=2, coordinator_keys=["s"]))
    assert [c.error_code for c in found.coordinators] == [ErrorCode.INVALID_REQUEST]
    frame = b"".join(bytes(c) for c in encode_request(58, 0, 1, "test", EnvelopeRequest()))
    with socket.create_connection((broker.host, broker.port), timeout=40) as sock:
        sock.sendall(frame)
        assert sock.recv(1) == b""  # closed, as Kafka without a KRaft migration
