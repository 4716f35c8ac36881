"""Feature versioning (KIP-584) on three `strom serve` brokers over ZooKeeper, as Kafka 3.9's
ZooKeeper mode has it:

- /feature is created in Kafka's FeatureZNode format with every supported feature at its
  highest level; every registration lists the broker's supported features; every broker
  reports the levels and the znode version (the epoch) in ApiVersions (kafka-python's
  describe_features through each broker).
- UpdateFeatures is the controller's: NOT_CONTROLLER elsewhere; through kafka-python (which
  asks the controller) a downgrade rewrites /feature, every broker serves the new epoch, and
  validate_only writes nothing; a live broker registered without the feature (an older broker)
  makes an upgrade INVALID_REQUEST until it is gone.
- A controller taking over a disabled /feature enables it with nothing finalized (Kafka's
  upgrade from a cluster below inter.broker.protocol.version 2.7).
- /feature finalizing a level no broker supports: the running brokers stop, and a broker
  does not start over it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.broker_process import BrokerProcess, BrokerStartError
from integration.kafka_wire import recv_frame
from kafka.admin import KafkaAdminClient
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from strom.protocol.errors import ErrorCode
from strom.protocol.framing import decode_response, encode_request
from strom.protocol.messages.api_versions_request import ApiVersionsRequest
from strom.protocol.messages.update_features_request import (
    FeatureUpdateKey,
    UpdateFeaturesRequest,
)

from .test_cluster_failover import active_controller
from .test_replicated_cluster import Cluster, wait_for

pytestmark = pytest.mark.cluster

GROUP, SHARE = "group.version", "share.version"
SUPPORTED = {
    GROUP: {"min_version": 0, "max_version": 1},
    SHARE: {"min_version": 0, "max_version": 1},
}


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_hosts)
    with c.running():
        yield c


def request(broker: BrokerProcess, api_key: int, version: int, message: Any) -> Any:
    frame = b"".join(bytes(c) for c in encode_request(api_key, version, 3, "test", message))
    with socket.create_connection((broker.host, broker.port), timeout=40) as sock:
        sock.sendall(frame)
        correlation_id, response = decode_response(api_key, version, recv_frame(sock))
    assert correlation_id == 3
    return response


def finalized(broker: BrokerProcess) -> tuple[dict[str, int], int]:
    r = request(broker, 18, 4, ApiVersionsRequest())
    return {f.name: f.max_version_level for f in r.finalized_features}, r.finalized_features_epoch


def feature_znode(zk: KazooClient) -> tuple[dict[str, Any], int]:
    data, stat = zk.get("/feature")
    return json.loads(data), stat.version


def admin(cluster: Cluster) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=cluster.bootstrap(), request_timeout_ms=30_000)


def everywhere(cluster: Cluster, levels: dict[str, int], epoch: int) -> None:
    for broker in cluster.brokers.values():
        wait_for(
            f"{broker} to serve {levels} at epoch {epoch}",
            lambda b=broker: finalized(b) == (levels, epoch),
        )


def test_finalized_features_in_zookeeper(cluster: Cluster, zk: KazooClient) -> None:
    doc, version = feature_znode(zk)
    assert doc == {
        "features": {GROUP: {"max_version_level": 1}, SHARE: {"max_version_level": 1}},
        "version": 2,
        "status": 1,
    }
    for broker_id in cluster.brokers:
        registration = json.loads(zk.get(f"/brokers/ids/{broker_id}")[0])
        assert registration["version"] == 5 and registration["features"] == SUPPORTED
    everywhere(cluster, {GROUP: 1, SHARE: 1}, version)
    for broker in cluster.brokers.values():
        a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)
        try:
            assert a.describe_features()[SHARE] == {
                "supported": (0, 1),
                "finalized": (1, 1),
                "finalized_epoch": version,
            }
        finally:
            a.close()

    # Only the controller decides.
    controller_id = wait_for("a controller", lambda: active_controller(zk))
    other = next(b for i, b in cluster.brokers.items() if i != controller_id)
    down = FeatureUpdateKey(feature=SHARE, max_version_level=0, upgrade_type=2)
    refused = request(other, 57, 1, UpdateFeaturesRequest(feature_updates=[down]))
    assert (refused.error_code, refused.error_message, refused.results) == (
        ErrorCode.NOT_CONTROLLER,
        "This is not the correct controller for this cluster.",
        [],
    )
    assert feature_znode(zk)[1] == version

    a = admin(cluster)
    try:
        assert a.update_features({SHARE: ("SAFE_DOWNGRADE", 0)}, validate_only=True) == {
            SHARE: "OK"
        }
        assert feature_znode(zk)[1] == version
        assert a.update_features({SHARE: ("SAFE_DOWNGRADE", 0)}) == {SHARE: "OK"}
        doc, after = feature_znode(zk)
        assert doc["features"] == {GROUP: {"max_version_level": 1}} and after == version + 1
        everywhere(cluster, {GROUP: 1}, after)

        # A live broker that registered no share.version (older than feature versioning):
        # no level it lacks may be finalized.
        old = {
            "version": 4,
            "host": "127.0.0.1",
            "port": 1,
            "jmx_port": -1,
            "timestamp": "0",
            "endpoints": ["PLAINTEXT://127.0.0.1:1"],
            "listener_security_protocol_map": {"PLAINTEXT": "PLAINTEXT"},
        }
        zk.create("/brokers/ids/9", json.dumps(old).encode(), ephemeral=True)
        try:
            refused_by_old = a.update_features({SHARE: 1})[SHARE]
            assert "brokers were found to have incompatible versions" in refused_by_old
        finally:
            zk.delete("/brokers/ids/9")
        assert finalized(other)[0] == {GROUP: 1}
        assert a.update_features({SHARE: 1}) == {SHARE: "OK"}
        everywhere(cluster, {GROUP: 1, SHARE: 1}, after + 1)
    finally:
        a.close()


def test_a_new_controller_enables_a_disabled_feature_znode(
    cluster: Cluster, zk: KazooClient
) -> None:
    # What Kafka's controller leaves below inter.broker.protocol.version 2.7: while disabled
    # the levels are not in force anywhere.
    disabled = {"features": {GROUP: {"max_version_level": 1}}, "version": 2, "status": 0}
    zk.set("/feature", json.dumps(disabled).encode())
    everywhere(cluster, {}, -1)
    controller_id = wait_for("a controller", lambda: active_controller(zk))
    cluster.brokers[controller_id].stop()
    wait_for(
        "a new controller to enable /feature",
        lambda: feature_znode(zk)[0] == {"features": {}, "version": 2, "status": 1},
    )
    _, version = feature_znode(zk)
    alive = {i: b for i, b in cluster.brokers.items() if i != controller_id}
    for broker in alive.values():
        wait_for(f"{broker} to run with none", lambda b=broker: finalized(b) == ({}, version))
    cluster.brokers[controller_id].start().wait_ready()
    a = admin(cluster)
    try:
        assert a.update_features({GROUP: 1, SHARE: 1}) == {GROUP: "OK", SHARE: "OK"}
    finally:
        a.close()
    everywhere(cluster, {GROUP: 1, SHARE: 1}, version + 1)


def test_unsupported_levels_stop_the_brokers(cluster: Cluster, zk: KazooClient) -> None:
    unsupported = {"features": {GROUP: {"max_version_level": 7}}, "version": 2, "status": 1}
    zk.set("/feature", json.dumps(unsupported).encode())
    for broker in cluster.brokers.values():
        broker.wait_exit(60)
        assert "incompatible with this broker (group.version" in broker.log_text()
    broker = cluster.brokers[1]
    with pytest.raises(BrokerStartError):
        broker.start().wait_ready()
    assert broker.wait_exit() == 1
    assert "cannot start: the cluster's finalized features are incompatible" in (
        broker.log_text_since_last_start()
    )
