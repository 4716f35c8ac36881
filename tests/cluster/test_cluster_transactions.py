"""Transactions and coordinator writes on three `strom serve` brokers and one ZooKeeper.

- A confluent-kafka transactional producer commits and aborts transactions over partitions led
  by all three brokers, with send_offsets_to_transaction for a group whose `__consumer_offsets`
  partition is led by another broker than the transaction coordinator: the markers reach the
  other leaders (WriteTxnMarkers), a read_committed consumer reads exactly the committed
  records, and the group's committed offsets are the last committed transaction's.
- kill -9 the transaction coordinator's broker between transactions, and once with a
  transaction open: a new producer with the same transactional.id recovers on the new
  coordinator, the open transaction is aborted and its producer fenced.
- An OffsetCommit acknowledged right before its coordinator's broker is killed is on the new
  coordinator, and one the ISR cannot take (both followers killed, min.insync.replicas=2) is
  answered COORDINATOR_NOT_AVAILABLE instead of being acknowledged (coordinator writes wait
  for the ISR).
- WriteTxnMarkers on the wire: NONE, NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
  INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED.
Nothing is timed: every wait polls a condition up to a generous deadline.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import NewTopic
from integration.kafka_wire import frame, request_header, roundtrip

from strom.protocol.messages.init_producer_id_request import InitProducerIdRequest
from strom.protocol.messages.init_producer_id_response import InitProducerIdResponse
from strom.protocol.messages.offset_commit_request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from strom.protocol.messages.offset_commit_response import OffsetCommitResponse
from strom.protocol.messages.write_txn_markers_request import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
)
from strom.protocol.messages.write_txn_markers_response import WriteTxnMarkersResponse
from strom.runtime.coordinator_runtime import partition_for

from .test_replicated_cluster import DEADLINE_S, Cluster, full_isr, wait_for

pytestmark = pytest.mark.cluster

INTERNAL_PARTITIONS = 3
TOPIC = "span"
# Partition p is led by broker p + 1: the transaction spans all three brokers.
ASSIGNMENT = [[1, 2, 3], [2, 3, 1], [3, 1, 2]]


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_hosts)
    for broker in c.brokers.values():
        broker.sets.update(
            {
                "replica.lag.time.max.ms": "2000",
                "offsets.topic.num.partitions": str(INTERNAL_PARTITIONS),
                "offsets.topic.replication.factor": "3",
                "transaction.state.log.num.partitions": str(INTERNAL_PARTITIONS),
                "transaction.state.log.replication.factor": "3",
                "transaction.state.log.min.isr": "2",
                "group.initial.rebalance.delay.ms": "0",
                # Also `__consumer_offsets`' (Kafka gives it the broker default).
                "min.insync.replicas": "2",
            }
        )
    with c.running():
        yield c


def leaders(cluster: Cluster, topic: str) -> dict[int, int]:
    return {i: p.leader for i, p in cluster.partitions(topic).items()}


def internal_topics_ready(cluster: Cluster) -> None:
    """Create `__consumer_offsets` and `__transaction_state` (first use) and wait for them."""
    warm = ck.Producer({"bootstrap.servers": cluster.bootstrap(), "transactional.id": "warm-up"})
    warm.init_transactions(DEADLINE_S)
    consumer = ck.Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "warm-up"})
    try:
        wait_for(
            "__consumer_offsets",
            lambda: consumer.committed([ck.TopicPartition(TOPIC, 0)], timeout=5) is not None,
        )
    finally:
        consumer.close()
    for topic in ("__consumer_offsets", "__transaction_state"):
        wait_for(f"{topic} fully replicated", lambda t=topic: full_isr(cluster, t, 3))


def create_span_topic(cluster: Cluster) -> None:
    admin = cluster.admin()
    topic = NewTopic(
        TOPIC, num_partitions=3, replica_assignment=ASSIGNMENT, config={"min.insync.replicas": "2"}
    )
    admin.create_topics([topic], request_timeout=30)[TOPIC].result(timeout=30)
    wait_for("an ISR of three", lambda: full_isr(cluster, TOPIC, 3))
    wait_for("the preferred leaders", lambda: leaders(cluster, TOPIC) == {0: 1, 1: 2, 2: 3})


def coordinator_of(cluster: Cluster, internal_topic: str, key: str) -> int:
    return int(leaders(cluster, internal_topic)[partition_for(key, INTERNAL_PARTITIONS)])


def group_led_elsewhere(cluster: Cluster, avoid: int, prefix: str) -> tuple[str, int]:
    for i in range(100):
        group = f"{prefix}-{i}"
        leader = coordinator_of(cluster, "__consumer_offsets", group)
        if leader != avoid:
            return group, leader
    raise AssertionError("no group id placed away from the transaction coordinator")


def txn_producer(bootstrap: str, txn_id: str) -> ck.Producer:
    producer = ck.Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": txn_id,
            "linger.ms": 5,
            "transaction.timeout.ms": 60000,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    producer.init_transactions(DEADLINE_S)
    return producer


def group_metadata(bootstrap: str, group: str) -> Any:
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return consumer.consumer_group_metadata()
    finally:
        consumer.close()


def run_transaction(
    producer: ck.Producer, label: str, group_md: Any, offsets: int, commit: bool
) -> list[str]:
    """One transaction: a record on every partition and the group's offsets; its values."""
    values = [f"{label}-{p}" for p in range(3)]
    producer.begin_transaction()
    for p, value in enumerate(values):
        producer.produce(TOPIC, value.encode(), partition=p)
    producer.send_offsets_to_transaction(
        [ck.TopicPartition(TOPIC, p, offsets) for p in range(3)], group_md, DEADLINE_S
    )
    if commit:
        producer.commit_transaction(DEADLINE_S)
    else:
        producer.abort_transaction(DEADLINE_S)
    return values


def read_committed(bootstrap: str) -> list[str]:
    """Everything a read_committed consumer reads up to each partition's stable end."""
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "reader",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    got: list[str] = []
    try:
        consumer.assign([ck.TopicPartition(TOPIC, p, ck.OFFSET_BEGINNING) for p in range(3)])
        at_end: set[int] = set()
        end = time.monotonic() + DEADLINE_S
        while len(at_end) < 3 and time.monotonic() < end:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == ck.KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                continue
            at_end.discard(msg.partition())
            got.append(msg.value().decode())
        assert len(at_end) == 3, "read_committed consumer did not reach the end"
    finally:
        consumer.close()
    return got


def committed_offsets(bootstrap: str, group: str) -> list[int]:
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = wait_for(
            f"committed offsets of {group}",
            lambda: consumer.committed([ck.TopicPartition(TOPIC, p) for p in range(3)], timeout=10),
        )
        return [tp.offset for tp in found]
    finally:
        consumer.close()


def test_transactions_span_three_brokers(cluster: Cluster) -> None:
    create_span_topic(cluster)
    internal_topics_ready(cluster)
    txn_id = "tx-span"
    coordinator = coordinator_of(cluster, "__transaction_state", txn_id)
    group, group_coordinator = group_led_elsewhere(cluster, coordinator, "g-span")
    assert group_coordinator != coordinator
    bootstrap = cluster.bootstrap()
    producer = txn_producer(bootstrap, txn_id)
    group_md = group_metadata(bootstrap, group)
    committed: list[str] = []
    for k in range(4):
        values = run_transaction(producer, f"t{k}", group_md, 10 + k, commit=k % 2 == 0)
        if k % 2 == 0:
            committed.extend(values)
    producer.flush(DEADLINE_S)
    assert sorted(read_committed(bootstrap)) == sorted(committed)
    assert committed_offsets(bootstrap, group) == [12, 12, 12]
    # No marker was skipped: no broker logged one.
    for broker in cluster.brokers.values():
        assert "marker skipped" not in broker.log_text()


def test_coordinator_killed_between_and_during_transactions(cluster: Cluster) -> None:
    create_span_topic(cluster)
    internal_topics_ready(cluster)
    txn_id = "tx-kill"
    coordinator = coordinator_of(cluster, "__transaction_state", txn_id)
    group, _ = group_led_elsewhere(cluster, coordinator, "g-kill")
    producer = txn_producer(cluster.bootstrap(), txn_id)
    group_md = group_metadata(cluster.bootstrap(), group)
    committed = run_transaction(producer, "before", group_md, 5, commit=True)

    # Killed between transactions: a new producer with the same id recovers.
    cluster.brokers[coordinator].kill9()
    alive = {i for i in cluster.brokers if i != coordinator}
    wait_for(
        "a new transaction coordinator",
        lambda: coordinator_of(cluster, "__transaction_state", txn_id) in alive,
    )
    producer2 = txn_producer(cluster.bootstrap(), txn_id)
    committed += run_transaction(producer2, "after", group_md, 6, commit=True)
    cluster.brokers[coordinator].restart().wait_ready()
    for topic in (TOPIC, "__transaction_state", "__consumer_offsets"):
        wait_for(f"{topic} fully replicated again", lambda t=topic: full_isr(cluster, t, 3))

    # Killed with a transaction open: the next producer's InitProducerId aborts it.
    coordinator2 = coordinator_of(cluster, "__transaction_state", txn_id)
    producer2.begin_transaction()
    for p in range(3):
        producer2.produce(TOPIC, f"open-{p}".encode(), partition=p)
    assert producer2.flush(DEADLINE_S) == 0
    cluster.brokers[coordinator2].kill9()
    producer3 = txn_producer(cluster.bootstrap(), txn_id)
    with pytest.raises(ck.KafkaException):
        producer2.commit_transaction(DEADLINE_S)
    committed += run_transaction(producer3, "last", group_md, 7, commit=True)

    bootstrap = cluster.bootstrap()
    assert sorted(read_committed(bootstrap)) == sorted(committed)
    assert committed_offsets(bootstrap, group) == [7, 7, 7]


def test_acknowledged_offset_commit_survives_its_coordinator(cluster: Cluster) -> None:
    create_span_topic(cluster)
    internal_topics_ready(cluster)
    group = "g-commit"
    coordinator = coordinator_of(cluster, "__consumer_offsets", group)
    consumer = ck.Consumer(
        {"bootstrap.servers": cluster.bootstrap(), "group.id": group, "enable.auto.commit": False}
    )
    try:
        offsets = [ck.TopicPartition(TOPIC, p, 100 + p) for p in range(3)]
        consumer.commit(offsets=offsets, asynchronous=False)
        cluster.brokers[coordinator].kill9()
    finally:
        consumer.close()
    alive = {i for i in cluster.brokers if i != coordinator}
    wait_for(
        "a new group coordinator",
        lambda: coordinator_of(cluster, "__consumer_offsets", group) in alive,
    )
    assert committed_offsets(cluster.bootstrap(), group) == [100, 101, 102]


# ----------------------------------------------------------------------- on the wire

NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
NOT_LEADER_OR_FOLLOWER = 6
COORDINATOR_NOT_AVAILABLE = 15
INVALID_PRODUCER_EPOCH = 47
TRANSACTION_COORDINATOR_FENCED = 52


def call(
    sock: socket.socket, api_key: int, request: Any, correlation_id: int, version: int = 0
) -> bytes:
    payload = request_header(api_key, version, correlation_id, "test") + request.encode(version)
    return roundtrip(sock, frame(payload))[4:]


def offset_commit(broker: Any, group: str, offset: int) -> int:
    """A simple (generation -1) OffsetCommit v2 of partition 0; its error code."""
    request = OffsetCommitRequest(
        group_id=group,
        topics=[OffsetCommitRequestTopic(TOPIC, [OffsetCommitRequestPartition(0, offset)])],
    )
    with socket.create_connection((broker.host, broker.port), timeout=60) as sock:
        response = OffsetCommitResponse.decode(call(sock, 8, request, 3, version=2), 2)
    return int(response.topics[0].partitions[0].error_code)


def test_offset_commit_the_isr_cannot_take_is_not_acknowledged(cluster: Cluster) -> None:
    create_span_topic(cluster)
    internal_topics_ready(cluster)
    group = "g-isr"
    leader = coordinator_of(cluster, "__consumer_offsets", group)
    coordinator = cluster.brokers[leader]
    assert offset_commit(coordinator, group, 5) == NONE
    followers = [i for i in cluster.brokers if i != leader]
    for i in followers:
        cluster.brokers[i].kill9()
    # Alone, the leader cannot move the high watermark (min.insync.replicas=2): the commit
    # times out (offsets.commit.timeout.ms) and is answered as Kafka's coordinator does.
    assert offset_commit(coordinator, group, 6) == COORDINATOR_NOT_AVAILABLE
    for i in followers:
        cluster.brokers[i].restart()
    for i in followers:
        cluster.brokers[i].wait_ready()
    wait_for(
        "__consumer_offsets replicated again", lambda: full_isr(cluster, "__consumer_offsets", 3)
    )
    wait_for("a commit acknowledged again", lambda: offset_commit(coordinator, group, 7) == NONE)
    assert committed_offsets(cluster.bootstrap(), group)[0] == 7


def write_marker(
    sock: socket.socket, pid: int, epoch: int, coordinator_epoch: int, partitions: list[int]
) -> dict[tuple[str, int], int]:
    request = WriteTxnMarkersRequest(
        markers=[
            WritableTxnMarker(
                producer_id=pid,
                producer_epoch=epoch,
                transaction_result=True,
                topics=[
                    WritableTxnMarkerTopic(TOPIC, partitions),
                    WritableTxnMarkerTopic("no-such-topic", [0]),
                ],
                coordinator_epoch=coordinator_epoch,
            )
        ]
    )
    response = WriteTxnMarkersResponse.decode(call(sock, 27, request, 2), 0)
    (marker,) = response.markers
    assert marker.producer_id == pid
    return {(t.name, p.partition_index): p.error_code for t in marker.topics for p in t.partitions}


def test_write_txn_markers_error_codes(cluster: Cluster) -> None:
    create_span_topic(cluster)
    broker = cluster.brokers[1]  # leads partition 0 only
    with socket.create_connection((broker.host, broker.port), timeout=60) as sock:
        init = InitProducerIdResponse.decode(
            call(sock, 22, InitProducerIdRequest(transactional_id=None), 1), 0
        )
        assert init.error_code == NONE
        pid = init.producer_id
        codes = write_marker(sock, pid, 3, 5, [0, 1, 3])
        assert codes == {
            (TOPIC, 0): NONE,
            (TOPIC, 1): NOT_LEADER_OR_FOLLOWER,
            (TOPIC, 3): UNKNOWN_TOPIC_OR_PARTITION,
            ("no-such-topic", 0): UNKNOWN_TOPIC_OR_PARTITION,
        }
        assert write_marker(sock, pid, 2, 5, [0])[(TOPIC, 0)] == INVALID_PRODUCER_EPOCH
        assert write_marker(sock, pid, 3, 4, [0])[(TOPIC, 0)] == TRANSACTION_COORDINATOR_FENCED
        assert write_marker(sock, pid, 3, 5, [0])[(TOPIC, 0)] == NONE
