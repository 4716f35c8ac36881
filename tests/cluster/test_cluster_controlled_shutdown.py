"""ControlledShutdown (key 7) in a three-broker cluster.

- On the wire: a broker that is not the controller answers NOT_CONTROLLER; the controller
  answers STALE_BROKER_EPOCH for an epoch older than the broker's registration and
  BROKER_NOT_AVAILABLE for an unknown broker; with the right epoch (the czxid of
  /brokers/ids/<id>) it moves the broker's leaderships away, answering no remaining
  partition; restarted, the broker registers with a new epoch and is back in the ISR.
- SIGTERM on a broker that is not the controller asks the controller (its log says so) and
  the leaderships have moved before it stops.

Nothing is timed: every wait polls a condition up to a generous deadline.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.broker_process import BrokerProcess
from integration.kafka_wire import frame, request_header, roundtrip
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.controlled_shutdown_request import ControlledShutdownRequest
from strom.protocol.messages.controlled_shutdown_response import ControlledShutdownResponse

from .test_cluster_failover import active_controller, create_assigned, partition0
from .test_replicated_cluster import Cluster, full_isr, wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_hosts)
    with c.running():
        yield c


def controlled_shutdown(to: BrokerProcess, broker_id: int, broker_epoch: int) -> tuple[int, list]:
    """ControlledShutdown v2 (the newest non-flexible one) sent to `to`: (error code, remaining partitions)."""
    request = ControlledShutdownRequest(broker_id=broker_id, broker_epoch=broker_epoch)
    payload = request_header(7, 2, 11, "test") + request.encode(2)
    with socket.create_connection((to.host, to.port), timeout=40) as sock:
        answer = roundtrip(sock, frame(payload))
    response = ControlledShutdownResponse.decode(answer[4:], 2)
    remaining = [(p.topic_name, p.partition_index) for p in response.remaining_partitions]
    return response.error_code, remaining


def broker_epoch(zk: KazooClient, broker_id: int) -> int:
    _, stat = zk.get(f"/brokers/ids/{broker_id}")
    return int(stat.czxid)


def test_controlled_shutdown_on_the_wire(cluster: Cluster, zk: KazooClient) -> None:
    controller_id = wait_for("a controller", lambda: active_controller(zk))
    leaving = next(i for i in cluster.brokers if i != controller_id)
    other = next(i for i in cluster.brokers if i not in (controller_id, leaving))
    # `leaving` is the preferred leader of the topic's only partition.
    create_assigned(cluster, "going", [leaving, controller_id, other])
    wait_for("the preferred leader", lambda: partition0(cluster, "going").leader == leaving)
    epoch = broker_epoch(zk, leaving)
    controller = cluster.brokers[controller_id]

    assert controlled_shutdown(cluster.brokers[other], leaving, epoch)[0] == (
        ErrorCode.NOT_CONTROLLER
    )
    assert controlled_shutdown(controller, leaving, epoch - 1)[0] == ErrorCode.STALE_BROKER_EPOCH
    assert controlled_shutdown(controller, 42, -1)[0] == ErrorCode.BROKER_NOT_AVAILABLE
    # Nothing moved so far.
    assert partition0(cluster, "going").leader == leaving

    assert controlled_shutdown(controller, leaving, epoch) == (ErrorCode.NONE, [])
    # Decided and written by the controller; each broker's cache follows on its own. (The
    # leaving broker, still running here, keeps following and may rejoin the ISR: Kafka's
    # controller would also send it StopReplica, which Strom does not do yet.)
    wait_for(
        "the leadership away from the leaving broker",
        lambda: partition0(cluster, "going", exclude={leaving}).leader in (controller_id, other),
    )

    # Restarted, it registers again (a new epoch), catches up and is back in the ISR.
    cluster.brokers[leaving].stop()
    cluster.brokers[leaving].start().wait_ready()
    wait_for("the ISR back at three", lambda: full_isr(cluster, "going", 1))
    assert broker_epoch(zk, leaving) != epoch


def test_sigterm_asks_the_controller(cluster: Cluster, zk: KazooClient) -> None:
    controller_id = wait_for("a controller", lambda: active_controller(zk))
    leaving = next(i for i in cluster.brokers if i != controller_id)
    other = next(i for i in cluster.brokers if i not in (controller_id, leaving))
    create_assigned(cluster, "handover", [leaving, other, controller_id])
    wait_for("the preferred leader", lambda: partition0(cluster, "handover").leader == leaving)

    assert cluster.brokers[leaving].stop() == 0
    log = cluster.brokers[leaving].log_text()
    assert f"the controller (broker {controller_id}) moved the leaderships" in log
    assert "no partition is led here any more" in log
    wait_for(
        "the leadership elsewhere",
        lambda: partition0(cluster, "handover", exclude={leaving}).leader in (controller_id, other),
    )
