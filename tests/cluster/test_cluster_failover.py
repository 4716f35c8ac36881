"""Failures of a three-broker cluster (`strom serve` processes and one ZooKeeper).

- ISR shrink and expand: a follower paused with SIGSTOP leaves the ISR while acks=all with
  min.insync.replicas=2 carries on; after SIGCONT it catches up and rejoins.
- The active controller killed (kill -9): another broker takes the role, and a partition
  leader killed afterwards still fails over with no acknowledged record lost.
- ElectLeaders: after a failover and the old leader's return, a preferred election (confluent
  AdminClient) moves leadership back to the preferred replica; asked again, or of a broker
  that is not the controller, the answer is ELECTION_NOT_NEEDED; a single broker answers
  ELECTION_NOT_NEEDED for its partitions.

Nothing is timed: every wait polls a condition up to a generous deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import pytest
from confluent_kafka import ElectionType
from confluent_kafka.admin import AdminClient, NewTopic
from integration.broker_process import BrokerProcess, start_broker
from integration.kafka_wire import frame, request_header, roundtrip
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.elect_leaders_request import ElectLeadersRequest, TopicPartitions
from strom.protocol.messages.elect_leaders_response import ElectLeadersResponse

from .test_replicated_cluster import (
    Cluster,
    consume_all,
    full_isr,
    known_everywhere,
    produce_some,
    wait_for,
)

pytestmark = pytest.mark.cluster

LAG_MAX_MS = 2000


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_hosts)
    for broker in c.brokers.values():
        broker.sets["replica.lag.time.max.ms"] = str(LAG_MAX_MS)
    with c.running():
        yield c


def create_assigned(cluster: Cluster, name: str, replicas: list[int]) -> None:
    """One partition with this replica list (the first is the preferred leader)."""
    admin = cluster.admin()
    topic = NewTopic(
        name, num_partitions=1, replica_assignment=[replicas], config={"min.insync.replicas": "2"}
    )
    admin.create_topics([topic], request_timeout=30)[name].result(timeout=30)
    wait_for("an ISR of three", lambda: full_isr(cluster, name, 1))
    wait_for("the leader known to every broker", lambda: known_everywhere(cluster, name, 1))


def partition0(cluster: Cluster, topic: str, exclude: set[int] | None = None) -> Any:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap(exclude)})
    md = admin.list_topics(topic, timeout=5).topics[topic]
    return md.partitions[0]


def idempotent_producer(bootstrap: str) -> ck.Producer:
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


def active_controller(zk: KazooClient) -> int | None:
    if zk.exists("/controller") is None:
        return None
    try:
        data, _ = zk.get("/controller")
    except Exception:  # gone between the two calls
        return None
    return int(json.loads(data)["brokerid"])


def error_code(error: Any) -> int | None:
    """A per-partition elect_leaders result: None, a KafkaError or a KafkaException."""
    if error is None:
        return None
    if isinstance(error, ck.KafkaException):
        error = error.args[0]
    return int(error.code())


def check_read_back(cluster: Cluster, topic: str, acked: list[int]) -> None:
    got = consume_all(cluster.bootstrap(), topic, len(acked))
    assert got == sorted(got), "records out of order"
    assert len(got) == len(set(got)), "a record was read twice"
    assert set(acked) <= set(got), f"lost {sorted(set(acked) - set(got))[:10]}"


def test_paused_follower_leaves_and_rejoins_the_isr(cluster: Cluster, zk: KazooClient) -> None:
    controller = wait_for("a controller", lambda: active_controller(zk))
    # The paused follower is neither the leader nor the controller.
    leader = next(i for i in (1, 2, 3) if i != controller)
    paused = next(i for i in (1, 2, 3) if i not in (leader, controller))
    create_assigned(cluster, "isr", [leader, controller, paused])
    producer = idempotent_producer(cluster.bootstrap(exclude={paused}))
    acked: list[int] = []
    produce_some(producer, "isr", range(0, 200), acked)
    assert producer.flush(30) == 0
    os.kill(cluster.brokers[paused].pid, signal.SIGSTOP)
    try:
        produce_some(producer, "isr", range(200, 400), acked)
        wait_for(
            "the paused follower out of the ISR",
            lambda: (
                (p := partition0(cluster, "isr", exclude={paused}))
                and paused not in p.isrs
                and sorted(p.isrs) == sorted([leader, controller])
            ),
        )
        # acks=all goes on with two in-sync replicas of min.insync.replicas=2.
        produce_some(producer, "isr", range(400, 600), acked)
        assert producer.flush(60) == 0, "acks=all stopped with the ISR at two"
        assert len(acked) == 600
    finally:
        os.kill(cluster.brokers[paused].pid, signal.SIGCONT)
    wait_for(
        "the follower back in the ISR",
        lambda: paused in partition0(cluster, "isr").isrs,
    )
    produce_some(producer, "isr", range(600, 700), acked)
    assert producer.flush(30) == 0
    # Every broker's cache follows (each from its own watch): poll, whichever one answers.
    wait_for("a full ISR", lambda: sorted(partition0(cluster, "isr").isrs) == [1, 2, 3])
    check_read_back(cluster, "isr", acked)


def test_controller_killed_then_leader_fails_over(cluster: Cluster, zk: KazooClient) -> None:
    old_controller = wait_for("a controller", lambda: active_controller(zk))
    leader = next(i for i in (1, 2, 3) if i != old_controller)
    third = next(i for i in (1, 2, 3) if i not in (leader, old_controller))
    create_assigned(cluster, "ctl", [leader, third, old_controller])
    producer = idempotent_producer(cluster.bootstrap())
    acked: list[int] = []
    produce_some(producer, "ctl", range(0, 300), acked)
    assert producer.flush(30) == 0

    cluster.brokers[old_controller].kill9()
    new_controller = wait_for(
        "another controller",
        lambda: (c := active_controller(zk)) not in (None, old_controller) and c,
    )
    assert new_controller in (leader, third)
    wait_for(
        "Metadata naming the new controller",
        lambda: cluster.admin().list_topics(timeout=5).controller_id == new_controller,
    )
    produce_some(producer, "ctl", range(300, 600), acked)
    assert producer.flush(60) == 0

    # The old controller comes back as a follower, then the partition leader dies.
    cluster.brokers[old_controller].start().wait_ready()
    wait_for("an ISR of three again", lambda: full_isr(cluster, "ctl", 1))
    produce_some(producer, "ctl", range(600, 900), acked)
    cluster.brokers[leader].kill9()
    produce_some(producer, "ctl", range(900, 1200), acked)
    assert producer.flush(60) == 0, "the producer did not finish after the leader failover"
    new = wait_for(
        "a new leader",
        lambda: (p := partition0(cluster, "ctl")) and p.leader not in (-1, leader) and p,
    )
    assert new.leader in (third, old_controller)
    assert len(acked) == 1200, f"only {len(acked)} records acknowledged"
    check_read_back(cluster, "ctl", acked)


def elect_raw(broker: BrokerProcess, topic: str, partition: int) -> tuple[int, int]:
    """ElectLeaders v1 (preferred) sent to one broker: (top-level error, partition error)."""
    request = ElectLeadersRequest(
        election_type=0,
        topic_partitions=[TopicPartitions(topic, [partition])],
        timeout_ms=30000,
    )
    payload = request_header(43, 1, 7, "test") + request.encode(1)
    with socket.create_connection((broker.host, broker.port), timeout=40) as sock:
        answer = roundtrip(sock, frame(payload))
    response = ElectLeadersResponse.decode(answer[4:], 1)
    (result,) = response.replica_election_results
    (partition_result,) = result.partition_result
    return response.error_code, partition_result.error_code


def test_preferred_election_moves_leadership_back(cluster: Cluster, zk: KazooClient) -> None:
    controller = wait_for("a controller", lambda: active_controller(zk))
    # The preferred leader is not the controller: it can die and come back.
    preferred = next(i for i in (1, 2, 3) if i != controller)
    others = [i for i in (1, 2, 3) if i != preferred]
    create_assigned(cluster, "pref", [preferred, *others])
    tp = ck.TopicPartition("pref", 0)
    producer = idempotent_producer(cluster.bootstrap())
    acked: list[int] = []
    produce_some(producer, "pref", range(0, 100), acked)
    assert producer.flush(30) == 0

    cluster.brokers[preferred].kill9()
    wait_for(
        "a failover",
        lambda: (p := partition0(cluster, "pref")) and p.leader in others,
    )
    # The preferred replica is down: nothing to elect.
    admin = cluster.admin()
    result = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=30)
    assert error_code(result[tp]) == ck.KafkaError.PREFERRED_LEADER_NOT_AVAILABLE

    produce_some(producer, "pref", range(100, 200), acked)
    assert producer.flush(60) == 0
    cluster.brokers[preferred].start().wait_ready()
    wait_for("the old leader back in the ISR", lambda: full_isr(cluster, "pref", 1))
    assert partition0(cluster, "pref").leader != preferred  # no rebalancing timer

    admin = cluster.admin()
    result = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=30)
    assert result[tp] is None, f"election failed: {result[tp]}"
    wait_for(
        "the preferred replica leading",
        lambda: partition0(cluster, "pref").leader == preferred,
    )
    # Asked again: the preferred replica leads already.
    result = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=30)
    assert error_code(result[tp]) == ck.KafkaError.ELECTION_NOT_NEEDED
    # A broker that is not the controller answers as well.
    not_controller = next(
        b for i, b in cluster.brokers.items() if i != active_controller(zk) and b.is_alive()
    )
    assert elect_raw(not_controller, "pref", 0) == (0, ErrorCode.ELECTION_NOT_NEEDED)
    assert elect_raw(not_controller, "nope", 0) == (0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)

    produce_some(producer, "pref", range(200, 300), acked)
    assert producer.flush(60) == 0
    check_read_back(cluster, "pref", acked)


def test_preferred_election_through_a_broker_that_is_not_the_controller(
    cluster: Cluster, zk: KazooClient
) -> None:
    """The request znode path: a non-controller broker asks the controller through
    /admin/preferred_replica_election and answers once the cache shows the new leader."""
    controller = wait_for("a controller", lambda: active_controller(zk))
    preferred, other = (i for i in (1, 2, 3) if i != controller)
    create_assigned(cluster, "viazk", [preferred, other, controller])
    cluster.brokers[preferred].kill9()
    wait_for(
        "a failover",
        lambda: (p := partition0(cluster, "viazk")) and p.leader in (other, controller),
    )
    cluster.brokers[preferred].start().wait_ready()
    wait_for("the old leader back in the ISR", lambda: full_isr(cluster, "viazk", 1))
    # Sent to the preferred replica itself, which is not the controller.
    assert active_controller(zk) != preferred
    assert elect_raw(cluster.brokers[preferred], "viazk", 0) == (0, ErrorCode.NONE)
    # The answer waited for the preferred replica's cache; the others follow.
    wait_for("the preferred leader", lambda: partition0(cluster, "viazk").leader == preferred)


def test_single_broker_answers_election_not_needed(tmp_path: Path) -> None:
    broker = start_broker(tmp_path / "single", {"auto.create.topics.enable": "false"})
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic("solo", 2, 1)])["solo"].result(timeout=30)
        tps = [ck.TopicPartition("solo", 0), ck.TopicPartition("solo", 1)]
        result = admin.elect_leaders(ElectionType.PREFERRED, tps).result(timeout=30)
        for tp in tps:
            assert error_code(result[tp]) == ck.KafkaError.ELECTION_NOT_NEEDED
        assert elect_raw(broker, "solo", 5) == (0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    finally:
        broker.stop()
