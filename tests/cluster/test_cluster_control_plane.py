"""The controller's requests on their own listener (control.plane.listener.name).

Three `strom serve` brokers, each with a PLAINTEXT listener for clients and replication and a
CONTROL_PLANE listener for the controller's LeaderAndIsr and StopReplica requests:

- every registration in /brokers/ids lists both endpoints (as Kafka's), but clients only ever
  see the PLAINTEXT ports (Metadata, DescribeCluster);
- the brokers that are not the controller log a LeaderAndIsr taken on CONTROL_PLANE when a
  topic is created, and again after the partition leader is killed (kill -9) and the
  controller elects a new one; deleting the topic sends StopReplica there too;
- wire-level LeaderAndIsr v7 that tries to make a follower the leader: with a stale controller
  epoch it answers STALE_CONTROLLER_EPOCH, with an epoch ZooKeeper never saw the same, with the
  wrong broker epoch STALE_BROKER_EPOCH, on the PLAINTEXT listener CLUSTER_AUTHORIZATION_FAILED,
  with an old partition epoch STALE_CONTROLLER_EPOCH for that partition; none of them changes
  the partition's leader;
- bad control.plane.listener.name values make `strom serve` exit with a clear message.

Nothing is timed: every wait polls a condition up to a generous deadline.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from integration.broker_process import HOST, BrokerProcess, free_port
from integration.kafka_wire import roundtrip
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from strom.cluster.ids import parse_kafka_uuid
from strom.protocol.errors import ErrorCode
from strom.protocol.framing import decode_response, encode_request
from strom.protocol.messages.leader_and_isr_request import (
    LeaderAndIsrPartitionState,
    LeaderAndIsrRequest,
    LeaderAndIsrTopicState,
)
from strom.protocol.messages.leader_and_isr_response import LeaderAndIsrResponse

from .test_replicated_cluster import Cluster, wait_for

pytestmark = pytest.mark.cluster

CONTROL_PLANE = "CONTROL_PLANE"
LEADER_AND_ISR = 4


class ControlPlaneCluster(Cluster):
    def __init__(self, root: Path, zk_hosts: str) -> None:
        super().__init__(root, zk_hosts)
        self.control_ports: dict[int, int] = {}
        for broker_id, broker in self.brokers.items():
            port = self.control_ports[broker_id] = free_port()
            broker.sets.update(
                {
                    "listeners": f"PLAINTEXT://{HOST}:{broker.port},"
                    f"{CONTROL_PLANE}://{HOST}:{port}",
                    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,"
                    f"{CONTROL_PLANE}:PLAINTEXT",
                    "control.plane.listener.name": CONTROL_PLANE,
                    "inter.broker.listener.name": "PLAINTEXT",
                }
            )


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path) -> Iterator[ControlPlaneCluster]:
    c = ControlPlaneCluster(tmp_path, zk_hosts)
    with c.running():
        yield c


def controller_of(zk: KazooClient) -> tuple[int, int] | None:
    """(controller id, controller epoch) as ZooKeeper has them."""
    try:
        data, _ = zk.get("/controller")
        epoch, _ = zk.get("/controller_epoch")
    except Exception:  # between two controllers
        return None
    return int(json.loads(data)["brokerid"]), int(epoch)


def partition_state(zk: KazooClient, topic: str) -> tuple[dict[str, Any], int]:
    data, stat = zk.get(f"/brokers/topics/{topic}/partitions/0/state")
    return json.loads(data), stat.version


def control_plane_requests(broker: BrokerProcess, api: str = "LeaderAndIsr") -> int:
    """How many requests of the controller this broker took on its control-plane listener."""
    marker = f"{api} from controller"
    return sum(
        1
        for line in broker.log_text_since_last_start().splitlines()
        if marker in line and f"on listener {CONTROL_PLANE}:" in line
    )


def send_leader_and_isr(port: int, request: LeaderAndIsrRequest) -> LeaderAndIsrResponse:
    version = 7
    chunks = encode_request(LEADER_AND_ISR, version, 11, "not-the-controller", request)
    with socket.create_connection((HOST, port), timeout=30) as sock:
        answer = roundtrip(sock, b"".join(chunks))
    _, response = decode_response(LEADER_AND_ISR, version, answer)
    assert isinstance(response, LeaderAndIsrResponse)
    return response


def takeover(
    zk: KazooClient, topic: str, target: int, controller_id: int, controller_epoch: int
) -> LeaderAndIsrRequest:
    """A LeaderAndIsr that would make `target` the leader of partition 0 with a new epoch."""
    state, version = partition_state(zk, topic)
    assignment = json.loads(zk.get(f"/brokers/topics/{topic}")[0])
    broker_epoch = zk.exists(f"/brokers/ids/{target}").czxid
    return LeaderAndIsrRequest(
        controller_id=controller_id,
        controller_epoch=controller_epoch,
        broker_epoch=broker_epoch,
        topic_states=[
            LeaderAndIsrTopicState(
                topic,
                parse_kafka_uuid(assignment["topic_id"]),
                [
                    LeaderAndIsrPartitionState(
                        partition_index=0,
                        controller_epoch=controller_epoch,
                        leader=target,
                        leader_epoch=state["leader_epoch"] + 10,
                        isr=[target],
                        partition_epoch=version + 10,
                        replicas=assignment["partitions"]["0"],
                    )
                ],
            )
        ],
    )


def test_control_plane_carries_leader_and_isr(
    cluster: ControlPlaneCluster, zk: KazooClient
) -> None:
    plain_ports = {b.port for b in cluster.brokers.values()}
    control_ports = set(cluster.control_ports.values())

    # Registered like Kafka's: both endpoints, CONTROL_PLANE mapped to PLAINTEXT.
    for broker_id, port in cluster.control_ports.items():
        registration = json.loads(zk.get(f"/brokers/ids/{broker_id}")[0])
        assert f"{CONTROL_PLANE}://{HOST}:{port}" in registration["endpoints"]
        assert registration["listener_security_protocol_map"][CONTROL_PLANE] == "PLAINTEXT"
        assert registration["port"] == cluster.brokers[broker_id].port

    # Clients never see the control-plane ports.
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})

    def three_brokers() -> dict[int, Any] | None:
        found = admin.list_topics(timeout=5).brokers
        return found if len(found) == 3 else None

    brokers = wait_for("three brokers in metadata", three_brokers)
    assert {b.port for b in brokers.values()} == plain_ports
    described = admin.describe_cluster(request_timeout=10).result(timeout=30)
    assert {n.port for n in described.nodes} == plain_ports
    assert not control_ports & {n.port for n in described.nodes}

    controller, epoch = wait_for("a controller", lambda: controller_of(zk))
    others = [i for i in (1, 2, 3) if i != controller]
    leader, follower = others
    topic = "cp"
    admin.create_topics(
        [NewTopic(topic, num_partitions=1, replica_assignment=[[leader, follower, controller]])],
        request_timeout=30,
    )[topic].result(timeout=30)
    wait_for(
        "an ISR of three",
        lambda: len(partition_state(zk, topic)[0]["isr"]) == 3,
    )
    # The non-controllers heard of the new partition on their control-plane listener.
    for broker_id in others:
        wait_for(
            f"broker {broker_id} took a LeaderAndIsr on {CONTROL_PLANE}",
            lambda b=broker_id: control_plane_requests(cluster.brokers[b]) > 0,
        )
    assert "(listener CONTROL_PLANE)" in cluster.brokers[controller].log_text()

    # Leader killed: the controller elects the follower or itself and tells the survivor.
    before = control_plane_requests(cluster.brokers[follower])
    old_epoch = partition_state(zk, topic)[0]["leader_epoch"]
    cluster.brokers[leader].kill9()
    wait_for(
        "a new leader",
        lambda: (
            partition_state(zk, topic)[0]["leader"] in (follower, controller)
            and partition_state(zk, topic)[0]["leader_epoch"] > old_epoch
        ),
    )
    wait_for(
        f"broker {follower} took another LeaderAndIsr on {CONTROL_PLANE}",
        lambda: control_plane_requests(cluster.brokers[follower]) > before,
    )

    # Forged requests that try to make the follower the leader change nothing.
    state_before = partition_state(zk, topic)
    new_leader = state_before[0]["leader"]
    target = follower if new_leader != follower else controller
    controller, epoch = wait_for("a controller", lambda: controller_of(zk))
    target_port = cluster.control_ports[target]

    stale = send_leader_and_isr(target_port, takeover(zk, topic, target, controller, epoch - 1))
    assert stale.error_code == ErrorCode.STALE_CONTROLLER_EPOCH
    assert [p.error_code for t in stale.topics for p in t.partition_errors] == [
        ErrorCode.STALE_CONTROLLER_EPOCH
    ]
    future = send_leader_and_isr(target_port, takeover(zk, topic, target, controller, epoch + 5))
    assert future.error_code == ErrorCode.STALE_CONTROLLER_EPOCH
    wrong_broker = takeover(zk, topic, target, controller, epoch)
    wrong_broker.broker_epoch -= 1
    assert send_leader_and_isr(target_port, wrong_broker).error_code == ErrorCode.STALE_BROKER_EPOCH
    data_plane = send_leader_and_isr(
        cluster.brokers[target].port, takeover(zk, topic, target, controller, epoch)
    )
    assert data_plane.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    # The right controller and broker epochs, but the partition epoch of the topic's creation
    # (the failover wrote a newer one): refused for that partition only.
    old_partition = takeover(zk, topic, target, controller, epoch)
    old_partition.topic_states[0].partition_states[0].partition_epoch = 0
    answer = send_leader_and_isr(target_port, old_partition)
    assert answer.error_code == ErrorCode.NONE
    assert [p.error_code for t in answer.topics for p in t.partition_errors] == [
        ErrorCode.STALE_CONTROLLER_EPOCH
    ]

    # Nothing moved: the clients still see the controller's leader, as ZooKeeper has it.
    assert partition_state(zk, topic) == state_before
    md = AdminClient({"bootstrap.servers": cluster.brokers[target].bootstrap})
    seen = md.list_topics(topic, timeout=10).topics[topic].partitions[0]
    assert seen.leader == new_leader
    assert f"refused request of controller {controller} (epoch {epoch - 1})" in (
        cluster.brokers[target].log_text()
    )

    # Deleting the topic: StopReplica on the control plane of the surviving non-controller.
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.delete_topics([topic], request_timeout=30)[topic].result(timeout=30)
    wait_for(
        f"broker {follower} took a StopReplica on {CONTROL_PLANE}",
        lambda: control_plane_requests(cluster.brokers[follower], "StopReplica") > 0,
    )
    data_dir = cluster.brokers[follower].data_dir
    wait_for("the log deleted", lambda: not list(data_dir.glob(f"{topic}-0")))


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"control.plane.listener.name": "NOPE"}, "must be one of the listeners"),
        (
            {
                "listeners": "PLAINTEXT://127.0.0.1:0,CONTROL_PLANE://127.0.0.1:0",
                "control.plane.listener.name": "CONTROL_PLANE",
            },
            "must be a listener name defined in listener.security.protocol.map",
        ),
        (
            {
                "listeners": "PLAINTEXT://127.0.0.1:0,CONTROL_PLANE://127.0.0.1:0",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROL_PLANE:PLAINTEXT",
                "control.plane.listener.name": "CONTROL_PLANE",
                "inter.broker.listener.name": "CONTROL_PLANE",
            },
            "must differ from inter.broker.listener.name",
        ),
    ],
)
def test_bad_control_plane_config_stops_serve(
    tmp_path: Path, sets: dict[str, str], message: str
) -> None:
    cmd = [sys.executable, "-m", "strom", "serve", "--set", f"log.dirs={tmp_path}"]
    cmd += ["--set", "zookeeper.connect=127.0.0.1:1"]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "control.plane.listener.name" in done.stderr
    assert message in done.stderr
