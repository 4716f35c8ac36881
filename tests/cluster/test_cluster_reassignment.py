"""Partition reassignment and on-demand unclean elections on three `strom serve` brokers.

- A partition with data moves from brokers [1, 2] to [2, 3] (kafka-python's
  alter_partition_reassignments) while an idempotent acks=all producer writes: the leader
  moves off broker 1, the replicas and ISR become [2, 3], broker 1 deletes its log directory,
  and with broker 1 stopped every acknowledged record is read back from the new replicas.
- A reassignment kept in progress (the new replica's broker frozen, then killed) is listed by
  list_partition_reassignments and by a broker that is not the controller (exact wire
  request), Metadata shows the full replica set meanwhile; the error codes; cancelling restores
  the original replicas.
- A reassignment survives a controller failover: recorded, then the controller restarted; the
  new controller completes it once the new replica's broker is back.
- Unclean election: an RF=2 partition whose follower stopped (ISR of the leader alone) and
  whose leader is killed has no leader once the follower returns; ElectLeaders UNCLEAN
  (confluent-kafka, to the controller; an exact wire request to the other broker) makes the
  follower lead and it takes writes. Turning
  unclean.leader.election.enable on for a topic (IncrementalAlterConfigs) makes the controller
  elect its offline partitions.

Nothing is timed: every wait polls a condition up to a generous deadline.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import kafka
import kafka.errors as kerr
import pytest
from confluent_kafka import ElectionType
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)
from integration.broker_process import BrokerProcess
from integration.kafka_wire import (
    frame,
    request_header,
    roundtrip,
)
from kafka.admin import KafkaAdminClient
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from strom.protocol.messages.elect_leaders_request import ElectLeadersRequest, TopicPartitions
from strom.protocol.messages.elect_leaders_response import ElectLeadersResponse
from strom.protocol.messages.list_partition_reassignments_request import (
    ListPartitionReassignmentsRequest,
)
from strom.protocol.messages.list_partition_reassignments_response import (
    ListPartitionReassignmentsResponse,
)

from .test_cluster_failover import active_controller
from .test_replicated_cluster import (
    Cluster,
    brokers_seen_by,
    consume_all,
    known_everywhere,
    produce_some,
    wait_for,
)

pytestmark = pytest.mark.cluster

LAG_MAX_MS = 2000


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_hosts)
    for broker in c.brokers.values():
        broker.sets["replica.lag.time.max.ms"] = str(LAG_MAX_MS)
        broker.sets.update(getattr(request, "param", {}))  # per-test settings
    with c.running():
        yield c


def kafka_admin(cluster: Cluster) -> KafkaAdminClient:
    """kafka-python's admin client, connected to the controller already (it sends these
    requests there; looking the controller up later could pick a frozen broker)."""
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap(), request_timeout_ms=30000)
    admin.list_partition_reassignments()
    return admin


def create(cluster: Cluster, name: str, replicas: list[list[int]], **configs: str) -> None:
    admin = cluster.admin()
    topic = NewTopic(
        name, num_partitions=len(replicas), replica_assignment=replicas, config=dict(configs)
    )
    admin.create_topics([topic], request_timeout=30)[name].result(timeout=30)
    wait_for(
        "every replica in sync",
        lambda: (
            (parts := cluster.partitions(name))
            and len(parts) == len(replicas)
            and all(sorted(p.isrs) == sorted(replicas[i]) for i, p in parts.items())
        ),
    )
    wait_for(
        "the leaders known to every broker", lambda: known_everywhere(cluster, name, len(replicas))
    )


def partition0(cluster: Cluster, topic: str) -> Any:
    return cluster.partitions(topic)[0]


def producer(bootstrap: str) -> ck.Producer:
    return ck.Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 60000,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )


def check_read_back(bootstrap: str, topic: str, acked: list[int]) -> None:
    got = consume_all(bootstrap, topic, len(acked))
    assert got == sorted(got), "records out of order"
    assert len(got) == len(set(got)), "a record was read twice"
    assert set(acked) <= set(got), f"lost {sorted(set(acked) - set(got))[:10]}"


def list_raw(broker: BrokerProcess) -> dict[tuple[str, int], tuple[list[int], ...]]:
    """ListPartitionReassignments v0 sent to one broker (flexible header v2)."""
    request = ListPartitionReassignmentsRequest(timeout_ms=30000, topics=None)
    payload = request_header(46, 0, 11, "test") + b"\x00" + request.encode(0)
    with socket.create_connection((broker.host, broker.port), timeout=40) as sock:
        answer = roundtrip(sock, frame(payload))
    # Response header v1: correlation id, then an empty tagged-field section.
    response = ListPartitionReassignmentsResponse.decode(answer[5:], 0)
    assert response.error_code == 0
    return {
        (t.name, p.partition_index): (p.replicas, p.adding_replicas, p.removing_replicas)
        for t in response.topics
        for p in t.partitions
    }


def freeze(broker: BrokerProcess) -> None:
    """SIGSTOP: still registered (until its session times out) but fetches nothing."""
    os.kill(broker.pid, signal.SIGSTOP)


def test_move_a_partition_while_producing(cluster: Cluster) -> None:
    create(cluster, "moved", [[1, 2]], **{"min.insync.replicas": "2"})
    # The broker asked may not have heard of the leader's registration yet.
    wait_for("broker 1 leading", lambda: partition0(cluster, "moved").leader == 1)
    wait_for("broker 1's log", lambda: cluster.brokers[1].partition_dir("moved", 0).is_dir())
    prod = producer(cluster.bootstrap())
    acked: list[int] = []
    produce_some(prod, "moved", range(0, 2000), acked)
    assert prod.flush(30) == 0

    admin = kafka_admin(cluster)
    try:
        tp = kafka.TopicPartition("moved", 0)
        assert admin.alter_partition_reassignments({tp: [2, 3]}) == {tp: None}
        # The producer carries on while broker 3 catches up and the leadership moves.
        next_value = 2000

        def completed() -> bool:
            nonlocal next_value
            produce_some(prod, "moved", range(next_value, next_value + 50), acked)
            next_value += 50
            prod.poll(0.05)
            p = partition0(cluster, "moved")
            return sorted(p.replicas) == [2, 3] and sorted(p.isrs) == [2, 3]

        wait_for("the reassignment completed while producing", completed)
        produce_some(prod, "moved", range(next_value, next_value + 500), acked)
        assert prod.flush(60) == 0, "acks=all stopped during the move"
        assert len(acked) == next_value + 500
        assert admin.list_partition_reassignments() == {}
    finally:
        admin.close()
    assert partition0(cluster, "moved").leader in (2, 3)
    wait_for(
        "broker 1 to delete its log directory",
        lambda: not cluster.brokers[1].partition_dir("moved", 0).exists(),
    )
    assert cluster.brokers[3].partition_dir("moved", 0).is_dir()
    # Everything acknowledged is on the new replicas.
    cluster.brokers[1].stop()
    check_read_back(cluster.bootstrap(), "moved", acked)


def roles(zk: KazooClient) -> tuple[int, int, int]:
    """(controller, other, new): the broker that gets frozen and a new replica is never the
    controller (kafka-python sends these requests to the controller)."""
    controller = wait_for("a controller", lambda: active_controller(zk))
    new = max(i for i in (1, 2, 3) if i != controller)
    other = next(i for i in (1, 2, 3) if i not in (controller, new))
    return controller, other, new


def test_reassignment_in_progress_is_listed_then_cancelled(
    cluster: Cluster, zk: KazooClient
) -> None:
    controller, other, new = roles(zk)
    create(cluster, "stuck", [[controller, other]])
    create(cluster, "still", [[controller, other]])
    tp = kafka.TopicPartition("stuck", 0)
    admin = kafka_admin(cluster)
    freeze(cluster.brokers[new])
    try:
        assert admin.alter_partition_reassignments({tp: [other, new]}) == {tp: None}
        # The new replica's broker dies before it fetched anything: the move stays in progress.
        cluster.brokers[new].kill9()
        full = [other, new, controller]
        expected = {"replicas": full, "adding_replicas": [new], "removing_replicas": [controller]}
        assert admin.list_partition_reassignments() == {tp: expected}
        assert admin.list_partition_reassignments({"stuck": [0], "still": [0]}) == {tp: expected}
        # Both live brokers answer, the controller and the other one.
        for i in (controller, other):
            wait_for(
                f"broker {i} listing the reassignment",
                lambda i=i: (
                    list_raw(cluster.brokers[i]) == {("stuck", 0): (full, [new], [controller])}
                ),
            )
        p = partition0(cluster, "stuck")
        assert p.replicas == full and sorted(p.isrs) == sorted([controller, other])
        assert p.leader == controller

        # Error codes, as Kafka's controller answers them. Once the new replica's session is
        # over, its broker cannot be a new replica.
        for i in (controller, other):
            wait_for(
                f"broker {i} seeing broker {new} gone",
                lambda i=i: brokers_seen_by(cluster.brokers[i]) == {controller, other},
            )
        still = kafka.TopicPartition("still", 0)
        unknown = kafka.TopicPartition("nope", 0)
        assert admin.alter_partition_reassignments({still: None}) == {
            still: kerr.NoReassignmentInProgressError
        }
        assert admin.alter_partition_reassignments({still: [other, new]}) == {
            still: kerr.InvalidReplicationAssignmentError  # not a live broker
        }
        assert admin.alter_partition_reassignments({still: [other, other]}) == {
            still: kerr.InvalidReplicationAssignmentError
        }
        assert admin.alter_partition_reassignments({unknown: [other]}) == {
            unknown: kerr.UnknownTopicOrPartitionError
        }
        # CreatePartitions waits for the move to end (REASSIGNMENT_IN_PROGRESS).
        with pytest.raises(kerr.ReassignmentInProgressError):
            admin.create_partitions({"stuck": kafka.admin.NewPartitions(2)})

        # Cancelled: the original replicas again (in the order Kafka leaves them: the ones
        # also in the target first).
        assert admin.alter_partition_reassignments({tp: None}) == {tp: None}
        assert admin.list_partition_reassignments() == {}
        wait_for(
            "the original replicas in Metadata",
            lambda: partition0(cluster, "stuck").replicas == [other, controller],
        )
        p = partition0(cluster, "stuck")
        assert sorted(p.isrs) == sorted([controller, other]) and p.leader == controller
        assert admin.alter_partition_reassignments({tp: None}) == {
            tp: kerr.NoReassignmentInProgressError
        }
        assert partition0(cluster, "still").replicas == [controller, other]
    finally:
        admin.close()


def test_reassignment_survives_a_controller_failover(cluster: Cluster, zk: KazooClient) -> None:
    controller, other, new = roles(zk)
    create(cluster, "resumed", [[controller, other]])
    prod = producer(cluster.bootstrap())
    acked: list[int] = []
    produce_some(prod, "resumed", range(0, 1000), acked)
    assert prod.flush(30) == 0
    tp = kafka.TopicPartition("resumed", 0)
    admin = kafka_admin(cluster)
    freeze(cluster.brokers[new])
    try:
        assert admin.alter_partition_reassignments({tp: [new, controller]}) == {tp: None}
    finally:
        admin.close()
    cluster.brokers[new].kill9()
    # A clean restart of the controller: its session closes at once, another broker takes
    # over, loads the cluster from ZooKeeper and finds the move there.
    cluster.brokers[controller].restart()
    wait_for(
        "another controller",
        lambda: (c := active_controller(zk)) is not None and c != controller,
    )
    assert partition0(cluster, "resumed").replicas == [new, controller, other]
    cluster.brokers[new].start().wait_ready()
    wait_for(
        "the reassignment completed by the new controller",
        lambda: partition0(cluster, "resumed").replicas == [new, controller],
    )
    p = wait_for(
        "a leader and an ISR among the new replicas",
        lambda: (
            (p := partition0(cluster, "resumed"))
            and sorted(p.isrs) == sorted([new, controller])
            and p
        ),
    )
    assert p.leader in (new, controller)
    wait_for(
        f"broker {other} to delete its log directory",
        lambda: not cluster.brokers[other].partition_dir("resumed", 0).exists(),
    )
    produce_some(prod, "resumed", range(1000, 1500), acked)
    assert prod.flush(60) == 0
    cluster.brokers[other].stop()
    check_read_back(cluster.bootstrap(), "resumed", acked)


def elect_raw(broker: BrokerProcess, topic: str, election_type: int) -> tuple[int, int]:
    """ElectLeaders v1 for partition 0 sent to one broker: (top-level, partition) errors."""
    request = ElectLeadersRequest(
        election_type=election_type,
        topic_partitions=[TopicPartitions(topic, [0])],
        timeout_ms=30000,
    )
    payload = request_header(43, 1, 7, "test") + request.encode(1)
    with socket.create_connection((broker.host, broker.port), timeout=40) as sock:
        answer = roundtrip(sock, frame(payload))
    response = ElectLeadersResponse.decode(answer[4:], 1)
    (result,) = response.replica_election_results
    (partition_result,) = result.partition_result
    return response.error_code, partition_result.error_code


def leader_and_isr(cluster: Cluster, broker_id: int, topic: str) -> tuple[int, list[int]]:
    """Partition 0 as one broker's Metadata answer has it."""
    admin = AdminClient({"bootstrap.servers": cluster.brokers[broker_id].bootstrap})
    p = admin.list_topics(topic, timeout=5).topics[topic].partitions[0]
    return p.leader, list(p.isrs)


def isr_of(cluster: Cluster, topic: str) -> list[int]:
    return list(partition0(cluster, topic).isrs)


def error_code(error: Any) -> int | None:
    if error is None:
        return None
    if isinstance(error, ck.KafkaException):
        error = error.args[0]
    return int(error.code())


def test_unclean_election_on_demand_and_by_config(cluster: Cluster, zk: KazooClient) -> None:
    for name in ("dirty", "dirtyraw", "dirtycfg"):
        create(cluster, name, [[1, 2]])
    prod = producer(cluster.bootstrap())
    acked: dict[str, list[int]] = {"dirty": [], "dirtyraw": [], "dirtycfg": []}
    for name, values in acked.items():
        produce_some(prod, name, range(0, 100), values)
    assert prod.flush(30) == 0
    # The follower stops (a controlled shutdown takes it out of the ISR), the leader takes
    # more writes alone, then dies: the only in-sync replica is gone.
    cluster.brokers[2].stop()
    for name in acked:
        wait_for(f"{name}: an ISR of the leader alone", lambda n=name: isr_of(cluster, n) == [1])
    for name, values in acked.items():
        produce_some(prod, name, range(100, 200), values)
    assert prod.flush(30) == 0
    cluster.brokers[1].kill9()
    wait_for(
        "no leader once broker 1's session is over",
        lambda: all(partition0(cluster, name).leader == -1 for name in acked),
    )
    cluster.brokers[2].start().wait_ready()
    wait_for(
        "broker 2 registered, and a controller",
        lambda: (
            (md := cluster.admin().list_topics(timeout=5))
            and set(md.brokers) == {2, 3}
            and md.controller_id in (2, 3)
        ),
    )
    tp = ck.TopicPartition("dirty", 0)
    admin = cluster.admin()
    # A preferred election cannot help: broker 1 is gone.
    result = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=30)
    assert error_code(result[tp]) == ck.KafkaError.PREFERRED_LEADER_NOT_AVAILABLE
    for name in acked:
        assert partition0(cluster, name).leader == -1, "unclean election is off by default"

    result = admin.elect_leaders(ElectionType.UNCLEAN, [tp]).result(timeout=30)
    assert result[tp] is None, f"unclean election failed: {result[tp]}"
    wait_for(
        "dirty led by broker 2 in every cache",
        lambda: all(leader_and_isr(cluster, b, "dirty") == (2, [2]) for b in (2, 3)),
    )
    # Asked again: it has a live leader.
    result = admin.elect_leaders(ElectionType.UNCLEAN, [tp]).result(timeout=30)
    assert error_code(result[tp]) == ck.KafkaError.ELECTION_NOT_NEEDED
    assert partition0(cluster, "dirtycfg").leader == -1
    # Sent to the broker that is not the controller: it writes the decision itself.
    controller = active_controller(zk)
    not_controller = next(i for i in (2, 3) if i != controller)
    assert elect_raw(cluster.brokers[not_controller], "dirtyraw", 1) == (0, 0)
    wait_for(
        "dirtyraw led by broker 2 in every cache",
        lambda: all(leader_and_isr(cluster, b, "dirtyraw") == (2, [2]) for b in (2, 3)),
    )
    assert elect_raw(cluster.brokers[not_controller], "dirtyraw", 1) == (0, 84)
    assert partition0(cluster, "dirtycfg").leader == -1

    # The topic config turned on: the controller elects the offline partition itself.
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        "dirtycfg",
        incremental_configs=[
            ConfigEntry(
                "unclean.leader.election.enable",
                "true",
                incremental_operation=AlterConfigOpType.SET,
            )
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)
    wait_for("dirtycfg led by broker 2", lambda: partition0(cluster, "dirtycfg").leader == 2)

    # Both take writes; the records broker 2 had are there, the ones only broker 1 had lost.
    fresh = producer(cluster.bootstrap())
    for name, values in acked.items():
        del values[100:]
        produce_some(fresh, name, range(1000, 1100), values)
    assert fresh.flush(60) == 0
    for name, values in acked.items():
        got = consume_all(cluster.bootstrap(), name, len(values))
        assert got == values, f"{name}: {got[:5]}..., {len(got)} records"


REBALANCING = {
    "auto.leader.rebalance.enable": "true",
    "leader.imbalance.check.interval.seconds": "1",
}


@pytest.mark.parametrize("cluster", [REBALANCING], indirect=True)
def test_leadership_goes_back_to_preferred_replicas_by_itself(
    cluster: Cluster, zk: KazooClient
) -> None:
    """auto.leader.rebalance.enable: after a failover and the preferred replica's return, the
    controller's imbalance check (every second here) runs the preferred election itself."""
    controller, other, third = roles(zk)
    # Two partitions preferring `other`: once it is back, its imbalance is 100% > 10%.
    create(cluster, "balanced", [[other, third, controller], [other, controller, third]])
    cluster.brokers[other].kill9()
    wait_for(
        "leaders moved off the killed broker",
        lambda: all(p.leader not in (-1, other) for p in cluster.partitions("balanced").values()),
    )
    cluster.brokers[other].start().wait_ready()
    wait_for(
        "both partitions led by their preferred replica again, with no election asked",
        lambda: all(
            p.leader == other and len(p.isrs) == 3 for p in cluster.partitions("balanced").values()
        ),
    )
