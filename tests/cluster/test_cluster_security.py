"""Three brokers whose traffic between each other is encrypted and authenticated, so that
replication, the controller's requests and transaction markers can only flow over the secured
inter-broker listener; clients use a secured listener of their own. Every acknowledged record
survives the leader's kill -9.

- TLS: the inter-broker listener accepts only mutual TLS with a broker certificate.
- SASL_SSL: brokers authenticate to each other with SCRAM-SHA-512, whose credential was written
  into ZooKeeper before they started, in Kafka's format (as `kafka-configs --zookeeper` does),
  in sessions of 3 s that their connections renew by authenticating again (KIP-368); a client
  user created through the admin API on one broker authenticates on all three."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from integration.broker_process import HOST, BrokerProcess, free_port
from integration.certs import STORE_PASSWORD, Authority, Pki
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from strom.security.scram import make_credential

pytestmark = pytest.mark.cluster

DEADLINE_S = 60.0


def wait_for(what: str, check: Any, deadline_s: float = DEADLINE_S) -> Any:
    end = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < end:
        try:
            last = check()
        except Exception as exc:  # a broker restarting: try again
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class SecureCluster:
    def __init__(
        self,
        root: Path,
        zk_hosts: str,
        pki: Pki,
        inter: dict[str, object],
        client_security: dict[str, Any] | None = None,
    ) -> None:
        self.pki = pki
        self.client_security = client_security or {"security.protocol": "SSL"}
        self.plain_ports: dict[int, int] = {}
        self.brokers: dict[int, BrokerProcess] = {}
        self.client_ports: dict[int, int] = {}
        self.internal_ports: dict[int, int] = {}
        trust = pki.ca.write_truststore(pki.directory / "truststore.p12")
        for broker_id in (1, 2, 3):
            own = pki.ca.issue(f"broker{broker_id}", "brokers", hosts=("127.0.0.1", "localhost"))
            store = own.write_pkcs12(pki.directory / f"broker{broker_id}.p12")
            plain, internal, clients = free_port(), free_port(), free_port()
            self.client_ports[broker_id] = clients
            self.internal_ports[broker_id] = internal
            self.plain_ports[broker_id] = plain
            self.brokers[broker_id] = BrokerProcess(
                root / f"broker{broker_id}",
                {
                    "broker.id": broker_id,
                    "zookeeper.connect": zk_hosts,
                    "zookeeper.session.timeout.ms": 4000,
                    "replica.lag.time.max.ms": 5000,
                    "auto.create.topics.enable": "false",
                    "auto.leader.rebalance.enable": "false",
                    "listeners": f"PLAINTEXT://{HOST}:{plain},INTERNAL://{HOST}:{internal},"
                    f"CLIENTS://{HOST}:{clients}",
                    "inter.broker.listener.name": "INTERNAL",
                    "ssl.keystore.type": "PKCS12",
                    "ssl.keystore.location": store,
                    "ssl.keystore.password": STORE_PASSWORD,
                    "ssl.truststore.type": "PKCS12",
                    "ssl.truststore.location": trust,
                    "ssl.truststore.password": STORE_PASSWORD,
                    "listener.name.internal.ssl.client.auth": "required",
                    **inter,
                },
                port=plain,
                name=f"broker{broker_id}",
            )

    def client_conf(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": ",".join(
                f"{HOST}:{p}" for i, p in self.client_ports.items() if self.brokers[i].is_alive()
            ),
            "ssl.ca.location": str(self.pki.ca_file),
            **self.client_security,
        }

    def admin(self) -> AdminClient:
        return AdminClient(self.client_conf())

    def partitions(self, topic: str) -> dict[int, Any]:
        found = self.admin().list_topics(topic, timeout=5).topics.get(topic)
        if found is None or found.error is not None:
            return {}
        return dict(found.partitions)

    @contextlib.contextmanager
    def running(self, wait_for_clients: bool = True) -> Iterator[SecureCluster]:
        try:
            for broker in self.brokers.values():
                broker.start()
            for broker in self.brokers.values():
                broker.wait_ready()
            if wait_for_clients:
                wait_for(
                    "three brokers in Metadata",
                    lambda: len(self.admin().list_topics(timeout=5).brokers) == 3,
                )
            yield self
        except BaseException:
            print("\n".join(b.log_tail(40) for b in self.brokers.values()))
            raise
        finally:
            for broker in self.brokers.values():
                if broker.is_alive():
                    os.kill(broker.pid, signal.SIGCONT)
                broker.stop()


def full_isr(cluster: SecureCluster, topic: str) -> bool:
    parts = cluster.partitions(topic)
    return bool(parts) and all(len(p.isrs) == 3 and p.leader >= 0 for p in parts.values())


def produce(cluster: SecureCluster, topic: str, values: range) -> list[int]:
    acked: list[int] = []
    producer = ck.Producer(
        {**cluster.client_conf(), "acks": "all", "enable.idempotence": True, "linger.ms": 5}
    )

    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            acked.append(int(msg.value()))

    for v in values:
        producer.produce(topic, str(v).encode(), partition=0, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(60) == 0
    return acked


def consume_all(cluster: SecureCluster, topic: str, count: int) -> list[int]:
    consumer = ck.Consumer(
        {**cluster.client_conf(), "group.id": f"{topic}-check", "auto.offset.reset": "earliest"}
    )
    consumer.assign([ck.TopicPartition(topic, 0, 0)])
    got: list[int] = []
    end = time.monotonic() + DEADLINE_S
    try:
        while len(got) < count and time.monotonic() < end:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append(int(msg.value()))
    finally:
        consumer.close()
    return got


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.make(tmp_path / "pki")


def replication_survives_a_leader_kill(cluster: SecureCluster, zk: KazooClient) -> None:
    registration = json.loads(zk.get("/brokers/ids/1")[0])
    assert registration["listener_security_protocol_map"]["INTERNAL"].endswith("SSL")
    admin = cluster.admin()
    admin.create_topics([NewTopic("orders", 1, 3, config={"min.insync.replicas": "2"})])[
        "orders"
    ].result(timeout=30)
    wait_for("an ISR of three", lambda: full_isr(cluster, "orders"))
    acked = produce(cluster, "orders", range(200))
    assert sorted(acked) == list(range(200))
    leader = cluster.partitions("orders")[0].leader
    cluster.brokers[leader].kill9()
    wait_for(
        "a new leader",
        lambda: (p := cluster.partitions("orders")) and p[0].leader not in (-1, leader),
    )
    acked += produce(cluster, "orders", range(200, 300))
    assert consume_all(cluster, "orders", 300) == list(range(300))
    cluster.brokers[leader].start()
    cluster.brokers[leader].wait_ready()
    wait_for("the old leader back in the ISR", lambda: full_isr(cluster, "orders"))


def test_tls_between_brokers(zk_hosts: str, zk: KazooClient, tmp_path: Path, pki: Pki) -> None:
    cluster = SecureCluster(
        tmp_path,
        zk_hosts,
        pki,
        {"listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:SSL,CLIENTS:SSL"},
    )
    with cluster.running():
        replication_survives_a_leader_kill(cluster, zk)


def set_on_broker(cluster: SecureCluster, broker_id: int, key: str, value: str) -> None:
    """A per-broker dynamic config, sent to that broker (which checks the new store)."""
    admin = AdminClient({"bootstrap.servers": f"{HOST}:{cluster.plain_ports[broker_id]}"})
    resource = ConfigResource(
        ConfigResource.Type.BROKER,
        str(broker_id),
        incremental_configs=[ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)],
    )
    for fut in admin.incremental_alter_configs([resource]).values():
        fut.result(timeout=30)


def served_issuer(cluster: SecureCluster, broker_id: int, pki: Pki) -> str:
    """The issuer's CN of the certificate a broker's inter-broker listener presents (to a
    client with a certificate of the first authority)."""
    context = ssl.create_default_context(cafile=None)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    cert, key = pki.client.write_pem(pki.directory, "probe")
    context.load_cert_chain(str(cert), str(key))
    port = cluster.internal_ports[broker_id]
    with (
        socket.create_connection((HOST, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as s,
    ):
        der = s.getpeercert(binary_form=True)
    assert der is not None
    issuer = x509.load_der_x509_certificate(der).issuer
    return str(issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_certificates_rotated_between_brokers(
    zk_hosts: str, zk: KazooClient, tmp_path: Path, pki: Pki
) -> None:
    """A new certificate authority brought in on the inter-broker listener while the cluster
    runs (AlterConfigs of listener.name.internal.ssl.truststore.location on every broker, then
    of broker 1's ssl.keystore.location to a certificate of the new authority): the brokers'
    own connections to each other take the new stores too, as Kafka's do. After broker 1
    restarts, every connection to it must trust the new authority, and its followers replicate
    a partition it leads with acks=all."""
    cluster = SecureCluster(
        tmp_path,
        zk_hosts,
        pki,
        {"listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:SSL,CLIENTS:SSL"},
    )
    new_ca = Authority("Strom Test CA 2")
    both = pki.directory / "truststore-both.p12"
    both.write_bytes(
        pkcs12.serialize_java_truststore(
            [
                pkcs12.PKCS12Certificate(pki.ca.cert, b"ca"),
                pkcs12.PKCS12Certificate(new_ca.cert, b"ca2"),
            ],
            serialization.BestAvailableEncryption(STORE_PASSWORD.encode()),
        )
    )
    renewed = new_ca.issue("broker1", "brokers", hosts=("127.0.0.1", "localhost"))
    store = renewed.write_pkcs12(pki.directory / "broker1-ca2.p12")
    with cluster.running():
        for broker_id in (1, 2, 3):
            set_on_broker(
                cluster, broker_id, "listener.name.internal.ssl.truststore.location", str(both)
            )
        set_on_broker(cluster, 1, "listener.name.internal.ssl.keystore.location", str(store))
        assert served_issuer(cluster, 1, pki) == "Strom Test CA 2"
        broker1 = cluster.brokers[1]
        broker1.stop()
        broker1.start()
        broker1.wait_ready()
        assert served_issuer(cluster, 1, pki) == "Strom Test CA 2"
        wait_for(
            "three brokers in Metadata",
            lambda: len(cluster.admin().list_topics(timeout=5).brokers) == 3,
        )
        admin = cluster.admin()
        topic = NewTopic(
            "rotated",
            num_partitions=1,
            replica_assignment=[[1, 2, 3]],
            config={"min.insync.replicas": "3"},
        )
        admin.create_topics([topic])["rotated"].result(timeout=30)
        wait_for("broker 1 leading", lambda: cluster.partitions("rotated")[0].leader == 1)
        acked = produce(cluster, "rotated", range(100))
        assert sorted(acked) == list(range(100))
        assert consume_all(cluster, "rotated", 100) == list(range(100))
        for broker in cluster.brokers.values():
            assert "Traceback" not in broker.log_text()


def test_sasl_ssl_between_brokers(zk_hosts: str, zk: KazooClient, tmp_path: Path, pki: Pki) -> None:
    broker_credential = make_credential("SCRAM-SHA-512", "broker-secret", 4096)
    zk.create(
        "/config/users/broker",
        json.dumps(
            {"version": 1, "config": {"SCRAM-SHA-512": broker_credential.to_kafka()}}
        ).encode(),
        makepath=True,
    )
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required"
    cluster = SecureCluster(
        tmp_path,
        zk_hosts,
        pki,
        {
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:SASL_SSL,"
            "CLIENTS:SASL_SSL",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.internal.sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.internal.scram-sha-512.sasl.jaas.config": f'{scram} username="broker" '
            'password="broker-secret";',
            "listener.name.internal.ssl.client.auth": "none",
            # Sessions of 3 s between brokers: their connections authenticate again (KIP-368).
            "listener.name.internal.scram-sha-512.connections.max.reauth.ms": 3000,
            "listener.name.clients.sasl.enabled.mechanisms": "SCRAM-SHA-256",
            "listener.name.clients.scram-sha-256.sasl.jaas.config": f"{scram};",
        },
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": "alice",
            "sasl.password": "alice-secret",
        },
    )
    with cluster.running(wait_for_clients=False):
        # A user created on broker 1 (through its PLAINTEXT listener) ...
        admin = AdminClient({"bootstrap.servers": f"{HOST}:{cluster.plain_ports[1]}"})
        upsert = UserScramCredentialUpsertion(
            "alice",
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
            b"alice-secret",
        )
        admin.alter_user_scram_credentials([upsert])["alice"].result(timeout=30)
        stored = json.loads(zk.get("/config/users/alice")[0])
        assert stored["config"]["SCRAM-SHA-256"].startswith("salt=")
        # ... authenticates on broker 3 at once, which also describes it.
        other = AdminClient({"bootstrap.servers": f"{HOST}:{cluster.plain_ports[3]}"})
        wait_for(
            "the user on broker 3",
            lambda: other.describe_user_scram_credentials(["alice"])["alice"].result(timeout=5),
        )
        on_three = {
            **cluster.client_conf(),
            "bootstrap.servers": f"{HOST}:{cluster.client_ports[3]}",
        }
        assert AdminClient(on_three).list_topics(timeout=20).brokers
        wait_for(
            "three brokers in Metadata",
            lambda: len(cluster.admin().list_topics(timeout=5).brokers) == 3,
        )
        replication_survives_a_leader_kill(cluster, zk)
        # Replication, the controller and the markers ran for many sessions, and no broker
        # ever closed another's connection for running past one.
        for broker in cluster.brokers.values():
            assert "SASL session expired" not in broker.log_text()
