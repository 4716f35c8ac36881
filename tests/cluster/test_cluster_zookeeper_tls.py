"""TLS to ZooKeeper (Kafka's `zookeeper.ssl.*`): a three-broker cluster whose only way to
ZooKeeper is its secureClientPort, with mutual TLS (ZooKeeper requires client certificates).
The brokers hold their keys in a PKCS12 store and in a PEM file; the cluster registers,
elects a controller and replicates through it. A broker that does not trust ZooKeeper's
authority does not start, and says why."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka as ck
import pytest
from integration.certs import STORE_PASSWORD, Authority

from .helpers import kazoo_session
from .test_replicated_cluster import Cluster, create_topic, full_isr, wait_for
from .zk_server import ServerTls, ZooKeeperServer, zookeeper_available

pytestmark = pytest.mark.cluster


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca, other = Authority(), Authority("Somebody Else's CA")
    server = ca.issue("zookeeper", hosts=("127.0.0.1", "localhost"), rsa_key=True)
    broker = ca.issue("broker", "brokers")
    files = {
        "zookeeper": tmp_path / "zookeeper.pem",
        "ca": ca.write_pem(tmp_path / "ca.pem"),
        "other_ca": other.write_pem(tmp_path / "other-ca.pem"),
        "broker_pem": tmp_path / "broker.pem",
        "broker_p12": tmp_path / "broker.p12",
    }
    files["zookeeper"].write_bytes(server.key_pem() + server.chain_pem())
    files["broker_pem"].write_bytes(broker.key_pem(STORE_PASSWORD) + broker.chain_pem())
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    files["broker_p12"].write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"broker",
            broker.key,  # type: ignore[arg-type]
            broker.cert,
            None,
            serialization.BestAvailableEncryption(STORE_PASSWORD.encode()),
        )
    )
    return files


@pytest.fixture
def secure_zookeeper(tmp_path: Path, pki: dict[str, Path]) -> Iterator[ZooKeeperServer]:
    reason = zookeeper_available()
    if reason:
        pytest.skip(reason)
    server = ZooKeeperServer(tmp_path / "zk", tls=ServerTls(pki["zookeeper"], pki["ca"]))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def tls_settings(pki: dict[str, Path], store: str) -> dict[str, str]:
    return {
        "zookeeper.ssl.client.enable": "true",
        "zookeeper.clientCnxnSocket": "org.apache.zookeeper.ClientCnxnSocketNetty",
        "zookeeper.ssl.keystore.location": str(pki[f"broker_{store}"]),
        "zookeeper.ssl.keystore.type": "PKCS12" if store == "p12" else "PEM",
        "zookeeper.ssl.keystore.password": STORE_PASSWORD,
        "zookeeper.ssl.truststore.location": str(pki["ca"]),
        "zookeeper.ssl.truststore.type": "PEM",
    }


def test_a_cluster_over_tls_to_zookeeper(
    tmp_path: Path, pki: dict[str, Path], secure_zookeeper: ZooKeeperServer
) -> None:
    cluster = Cluster(tmp_path / "brokers", secure_zookeeper.secure_hosts)
    for broker_id, broker in cluster.brokers.items():
        broker.sets.update(tls_settings(pki, "p12" if broker_id == 1 else "pem"))
    with cluster.running():
        create_topic(cluster, "over-tls", 2, 3)
        wait_for("full ISRs", lambda: full_isr(cluster, "over-tls", 2))
        producer = ck.Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all"})
        for i in range(20):
            producer.produce("over-tls", value=f"m{i}".encode())
        assert producer.flush(30) == 0
        # What they registered, read through the server's plaintext port.
        with kazoo_session(secure_zookeeper.hosts) as zk:
            assert sorted(zk.get_children("/brokers/ids")) == ["1", "2", "3"]
            assert sorted(zk.get_children("/brokers/topics/over-tls/partitions")) == ["0", "1"]
    for broker in cluster.brokers.values():
        assert "Traceback" not in broker.log_text()


def test_a_broker_that_does_not_trust_zookeeper_does_not_start(
    tmp_path: Path, pki: dict[str, Path], secure_zookeeper: ZooKeeperServer
) -> None:
    settings = tls_settings(pki, "pem") | {
        "zookeeper.ssl.truststore.location": str(pki["other_ca"])
    }
    sets = {
        "broker.id": 1,
        "zookeeper.connect": secure_zookeeper.secure_hosts,
        "zookeeper.connection.timeout.ms": 3000,
        "listeners": "PLAINTEXT://127.0.0.1:0",
        "log.dirs": str(tmp_path / "data"),
        **settings,
    }
    args = [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]
    done = subprocess.run(
        [sys.executable, "-m", "strom", "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "cannot start" in done.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr or "certificate verify failed" in done.stderr


def test_zookeeper_tls_settings_are_checked_before_connecting(pki: dict[str, Path]) -> None:
    from strom.cluster.zk.zk_tls import zookeeper_tls_context
    from strom.config import BrokerConfig, ConfigError

    config = BrokerConfig.load(
        None, tls_settings(pki, "p12") | {"zookeeper.ssl.keystore.password": "wrong"}
    )
    with pytest.raises(ConfigError, match=r"zookeeper\.ssl\.keystore"):
        zookeeper_tls_context(config)
    plain = BrokerConfig.load(None, {})
    assert zookeeper_tls_context(plain) is None
