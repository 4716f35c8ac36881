"""TLS listeners (SSL) with Kafka's ssl.* settings, against every client library and kcat:
PKCS12 and PEM key stores, mutual TLS with principal mapping rules, refusals, protocol and
cipher restrictions, and certificates replaced without a restart."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from .certs import STORE_PASSWORD, Pki
from .clients import (
    Rec,
    aio_consume,
    aio_produce,
    ck_consume,
    ck_produce,
    kcat_consume,
    kcat_produce,
    kp_consume,
    kp_produce,
    make_recs,
)
from .conftest import BrokerFactory
from .kafka_wire import api_versions_request
from .secure import (
    ClientTls,
    SecureBroker,
    aio_security,
    ck_security,
    kcat_security,
    kp_security,
    start_secure,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def module_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerFactory]:
    factory = BrokerFactory(tmp_path_factory.mktemp("tls-brokers"))
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def tls_broker(pki: Pki, module_factory: BrokerFactory) -> SecureBroker:
    """SSL listener with a PKCS12 key store, no client certificates."""
    store = pki.broker.write_pkcs12(pki.directory / "broker.p12")
    return start_secure(
        module_factory,
        {"SSL": "SSL"},
        {
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": store,
            "ssl.keystore.password": STORE_PASSWORD,
        },
    )


def roundtrip_ck(bootstrap: str, topic: str, conf: dict[str, object], n: int = 20) -> None:
    recs = make_recs(n)
    ck_produce(bootstrap, topic, recs, **conf)
    got = ck_consume(bootstrap, topic, count=n, **conf)
    assert [g.value for g in got] == [r.value for r in recs]


def test_confluent_kafka_over_tls(tls_broker: SecureBroker, pki: Pki, topic: str) -> None:
    roundtrip_ck(tls_broker.bootstrap("SSL"), topic, ck_security("SSL", ClientTls(pki.ca_file)))


def test_kafka_python_over_tls(tls_broker: SecureBroker, pki: Pki, topic: str) -> None:
    conf = kp_security("SSL", ClientTls(pki.ca_file))
    recs = make_recs(20)
    kp_produce(tls_broker.bootstrap("SSL"), topic, recs, **conf)
    got = kp_consume(tls_broker.bootstrap("SSL"), topic, count=20, **conf)
    assert [g.value for g in got] == [r.value for r in recs]


def test_aiokafka_over_tls(tls_broker: SecureBroker, pki: Pki, topic: str) -> None:
    conf = aio_security("SSL", ClientTls(pki.ca_file))
    recs = make_recs(20)
    aio_produce(tls_broker.bootstrap("SSL"), topic, recs, **conf)
    got = aio_consume(tls_broker.bootstrap("SSL"), topic, count=20, **conf)
    assert [g.value for g in got] == [r.value for r in recs]


def test_kcat_over_tls(tls_broker: SecureBroker, pki: Pki, topic: str) -> None:
    extra = kcat_security("SSL", ClientTls(pki.ca_file))
    recs = [Rec(f"k{i}".encode(), f"v{i}".encode()) for i in range(10)]
    kcat_produce(tls_broker.bootstrap("SSL"), topic, recs, extra=extra)
    got = kcat_consume(tls_broker.bootstrap("SSL"), topic, count=10, extra=extra)
    assert [g.value for g in got] == [r.value for r in recs]


def test_large_records_over_tls(tls_broker: SecureBroker, pki: Pki, topic: str) -> None:
    """Frames far larger than a TLS record (16 KiB) and than the receive buffer."""
    conf = ck_security("SSL", ClientTls(pki.ca_file))
    recs = [Rec(None, bytes([i]) * 900_000) for i in range(8)]
    ck_produce(tls_broker.bootstrap("SSL"), topic, recs, **conf)
    got = ck_consume(tls_broker.bootstrap("SSL"), topic, count=8, **conf)
    assert [g.value for g in got] == [r.value for r in recs]


def test_metadata_names_the_tls_listener(tls_broker: SecureBroker, pki: Pki) -> None:
    """Clients are told the endpoints of the listener they came in on."""
    admin = AdminClient(
        {
            "bootstrap.servers": tls_broker.bootstrap("SSL"),
            **ck_security("SSL", ClientTls(pki.ca_file)),
        }
    )
    brokers = admin.list_topics(timeout=20).brokers
    assert [b.port for b in brokers.values()] == [tls_broker.ports["SSL"]]
    plain = AdminClient({"bootstrap.servers": tls_broker.plaintext}).list_topics(timeout=20)
    assert [b.port for b in plain.brokers.values()] == [tls_broker.process.port]


def test_plaintext_client_on_tls_port_is_refused(tls_broker: SecureBroker, pki: Pki) -> None:
    with socket.create_connection(("127.0.0.1", tls_broker.ports["SSL"]), timeout=10) as s:
        s.sendall(api_versions_request())
        s.settimeout(10)
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        # A TLS alert at most, never a Kafka answer; then the connection is closed.
        assert not data or data[0] == 0x15
    p = ck.Producer({"bootstrap.servers": tls_broker.bootstrap("SSL"), "message.timeout.ms": 3000})
    p.produce("never", value=b"x")
    assert p.flush(10) == 0  # delivery failed (timed out), nothing left queued
    # The broker is unharmed and says why it closed.
    roundtrip_ck(
        tls_broker.bootstrap("SSL"), "after-plaintext", ck_security("SSL", ClientTls(pki.ca_file))
    )
    assert "TLS handshake failed" in tls_broker.process.log_text()


def test_tls_client_on_plaintext_port_fails(tls_broker: SecureBroker, pki: Pki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    with socket.create_connection(("127.0.0.1", tls_broker.process.port), timeout=10) as raw:
        raw.settimeout(10)
        with pytest.raises((ssl.SSLError, OSError)):
            context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_pem_key_and_chain_in_the_configuration(
    pki: Pki, broker_factory: BrokerFactory, topic: str
) -> None:
    broker = start_secure(
        broker_factory,
        {"SECURE": "SSL"},
        {
            "listener.name.secure.ssl.keystore.type": "PEM",
            "listener.name.secure.ssl.keystore.key": pki.broker.key_pem().decode(),
            "listener.name.secure.ssl.keystore.certificate.chain": pki.broker.chain_pem().decode(),
        },
    )
    roundtrip_ck(broker.bootstrap("SECURE"), topic, ck_security("SSL", ClientTls(pki.ca_file)))


def test_pem_file_with_an_encrypted_key(
    pki: Pki, broker_factory: BrokerFactory, topic: str
) -> None:
    path = pki.broker.write_combined_pem(pki.directory / "broker-enc.pem", password="key-secret")
    broker = start_secure(
        broker_factory,
        {"SSL": "SSL"},
        {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": path,
            "ssl.key.password": "key-secret",
        },
    )
    roundtrip_ck(broker.bootstrap("SSL"), topic, ck_security("SSL", ClientTls(pki.ca_file)))


def test_wrong_keystore_password_stops_the_start(pki: Pki, broker_factory: BrokerFactory) -> None:
    store = pki.broker.write_pkcs12(pki.directory / "broker-wrong.p12")
    broker = start_secure(
        broker_factory,
        {"SSL": "SSL"},
        {
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": store,
            "ssl.keystore.password": "not-it",
        },
        wait=False,
    )
    assert broker.process.wait_exit() != 0
    assert "ssl.keystore.password" in broker.process.log_text()


# -- mutual TLS -----------------------------------------------------------------------------

MAPPING = "RULE:^CN=([^,]+),OU=clients,O=Strom Tests,C=DE$/$1/L"


@pytest.fixture(scope="module")
def mtls_broker(pki: Pki, module_factory: BrokerFactory) -> SecureBroker:
    store = pki.broker.write_pkcs12(pki.directory / "broker-mtls.p12")
    trust = pki.ca.write_truststore(pki.directory / "truststore.p12")
    return start_secure(
        module_factory,
        {"MTLS": "SSL"},
        {
            "listener.name.mtls.ssl.keystore.type": "PKCS12",
            "listener.name.mtls.ssl.keystore.location": store,
            "listener.name.mtls.ssl.keystore.password": STORE_PASSWORD,
            "listener.name.mtls.ssl.truststore.type": "PKCS12",
            "listener.name.mtls.ssl.truststore.location": trust,
            "listener.name.mtls.ssl.truststore.password": STORE_PASSWORD,
            "listener.name.mtls.ssl.client.auth": "required",
            "ssl.principal.mapping.rules": MAPPING,
        },
    )


def client_tls(pki: Pki, who: str) -> ClientTls:
    issued = {"alice": pki.client, "mallory": pki.stranger}.get(who)
    if issued is None:
        issued = pki.ca.issue(who, "outsiders")
    cert, key = issued.write_pem(pki.directory, who)
    return ClientTls(pki.ca_file, cert, key)


def test_mutual_tls_with_each_client(mtls_broker: SecureBroker, pki: Pki, topic: str) -> None:
    tls = client_tls(pki, "alice")
    bootstrap = mtls_broker.bootstrap("MTLS")
    roundtrip_ck(bootstrap, topic, ck_security("SSL", tls))
    recs = make_recs(5)
    kp_produce(bootstrap, topic, recs, **kp_security("SSL", tls))
    aio_produce(bootstrap, topic, recs, **aio_security("SSL", tls))
    got = kp_consume(bootstrap, topic, count=30, **kp_security("SSL", tls))
    assert len(got) == 30


def refused(bootstrap: str, conf: dict[str, object]) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap, **conf})
    try:
        admin.list_topics(timeout=5)
    except ck.KafkaException:
        return True
    return False


def test_mutual_tls_refusals(mtls_broker: SecureBroker, pki: Pki) -> None:
    bootstrap = mtls_broker.bootstrap("MTLS")
    log_before = len(mtls_broker.process.log_text())
    # No certificate at all.
    assert refused(bootstrap, ck_security("SSL", ClientTls(pki.ca_file)))
    # A certificate from another authority.
    assert refused(bootstrap, ck_security("SSL", client_tls(pki, "mallory")))
    # A certificate of the right authority that no mapping rule accepts (no DEFAULT rule).
    assert refused(bootstrap, ck_security("SSL", client_tls(pki, "outsider")))
    log = mtls_broker.process.log_text()[log_before:]
    assert "no ssl.principal.mapping.rules entry applies to CN=outsider,OU=outsiders" in log
    # Everyone else is still served.
    assert not refused(bootstrap, ck_security("SSL", client_tls(pki, "alice")))


def test_refused_handshakes_are_failed_authentications(
    pki: Pki, broker_factory: BrokerFactory
) -> None:
    """kafka_server_socket_server_metrics_failed_authentication_total counts the clients a
    mutual-TLS listener refused; a client it accepts is not counted."""
    from .broker_process import free_port
    from .test_http_metrics import scrape, value, wait_http

    port = free_port()
    store = pki.broker.write_pkcs12(pki.directory / "broker-metrics.p12")
    trust = pki.ca.write_truststore(pki.directory / "truststore-metrics.p12")
    broker = start_secure(
        broker_factory,
        {"MTLS": "SSL"},
        {
            "strom.http.listeners": f"http://127.0.0.1:{port}",
            "listener.name.mtls.ssl.keystore.type": "PKCS12",
            "listener.name.mtls.ssl.keystore.location": store,
            "listener.name.mtls.ssl.keystore.password": STORE_PASSWORD,
            "listener.name.mtls.ssl.truststore.type": "PKCS12",
            "listener.name.mtls.ssl.truststore.location": trust,
            "listener.name.mtls.ssl.truststore.password": STORE_PASSWORD,
            "listener.name.mtls.ssl.client.auth": "required",
        },
    )
    wait_http(port)
    name = "kafka_server_socket_server_metrics_failed_authentication_total"
    bootstrap = broker.bootstrap("MTLS")
    assert not refused(bootstrap, ck_security("SSL", client_tls(pki, "alice")))
    assert value(scrape(port), name, listener="MTLS") == 0
    assert refused(bootstrap, ck_security("SSL", ClientTls(pki.ca_file)))
    assert refused(bootstrap, ck_security("SSL", client_tls(pki, "mallory")))
    samples = scrape(port)
    assert value(samples, name, listener="MTLS") >= 2
    assert value(samples, name, listener="PLAINTEXT") == 0


def test_principal_is_mapped_from_the_certificate(mtls_broker: SecureBroker, pki: Pki) -> None:
    """Seen from the outside: the mapped name decides (alice passes RULE .../L, and the
    outsider does not); tests/unit/server/test_tls_session.py checks the name itself."""
    assert not refused(mtls_broker.bootstrap("MTLS"), ck_security("SSL", client_tls(pki, "alice")))


def test_mapped_principal_reaches_the_authorizer(pki: Pki, broker_factory: BrokerFactory) -> None:
    """With ACLs on, the name the mapping rules make of the certificate's DN is the principal:
    CN=Carol,OU=clients,... maps to User:carol (rule flag L). An ACL for User:carol lets
    carol's certificate manage SCRAM users; alice's certificate, of the same authority and
    without an ACL, gets CLUSTER_AUTHORIZATION_FAILED, and so does carol before her ACL."""
    store = pki.broker.write_pkcs12(pki.directory / "broker-mtls-acl.p12")
    trust = pki.ca.write_truststore(pki.directory / "truststore-acl.p12")
    broker = start_secure(
        broker_factory,
        {"MTLS": "SSL"},
        {
            "listener.name.mtls.ssl.keystore.type": "PKCS12",
            "listener.name.mtls.ssl.keystore.location": store,
            "listener.name.mtls.ssl.keystore.password": STORE_PASSWORD,
            "listener.name.mtls.ssl.truststore.type": "PKCS12",
            "listener.name.mtls.ssl.truststore.location": trust,
            "listener.name.mtls.ssl.truststore.password": STORE_PASSWORD,
            "listener.name.mtls.ssl.client.auth": "required",
            "ssl.principal.mapping.rules": MAPPING,
            "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
            "super.users": "User:ANONYMOUS",  # the PLAINTEXT listener manages the ACLs
        },
    )
    cert, key = pki.ca.issue("Carol", "clients").write_pem(pki.directory, "carol")
    carol = ck_security("SSL", ClientTls(pki.ca_file, cert, key))
    alice = ck_security("SSL", client_tls(pki, "alice"))
    bootstrap = broker.bootstrap("MTLS")
    upsert = UserScramCredentialUpsertion(
        "frank", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"frank-secret"
    )

    def alter_as(conf: dict[str, object]) -> int:
        admin = AdminClient({"bootstrap.servers": bootstrap, **conf})
        try:
            admin.alter_user_scram_credentials([upsert])["frank"].result(timeout=30)
        except ck.KafkaException as exc:
            code: int = exc.args[0].code()
            return code
        return 0

    assert alter_as(carol) == ck.KafkaError.CLUSTER_AUTHORIZATION_FAILED
    grant = AclBinding(
        ResourceType.BROKER,
        "kafka-cluster",
        ResourcePatternType.LITERAL,
        "User:carol",
        "*",
        AclOperation.ALTER,
        AclPermissionType.ALLOW,
    )
    plain = AdminClient({"bootstrap.servers": broker.plaintext})
    for fut in plain.create_acls([grant]).values():
        fut.result(timeout=30)
    assert alter_as(carol) == 0
    assert alter_as(alice) == ck.KafkaError.CLUSTER_AUTHORIZATION_FAILED
    log = broker.process.log_text()
    assert "User:alice" in log
    assert "Traceback" not in log


# -- protocol versions and ciphers ------------------------------------------------------------


def handshake(port: int, ca: Path, version: ssl.TLSVersion | None = None) -> tuple[str, str]:
    context = ssl.create_default_context(cafile=str(ca))
    if version is not None:
        context.minimum_version = context.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.settimeout(10)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(api_versions_request())
            assert s.recv(4)
            cipher = s.cipher()
            assert cipher is not None
            return str(s.version()), cipher[0]


def test_enabled_protocols_and_cipher_suites(pki: Pki, broker_factory: BrokerFactory) -> None:
    store = pki.broker.write_pkcs12(pki.directory / "broker-ver.p12")
    common = {
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": store,
        "ssl.keystore.password": STORE_PASSWORD,
    }
    broker = start_secure(
        broker_factory,
        {"ONLY13": "SSL", "ONLY12": "SSL"},
        {
            **common,
            "listener.name.only13.ssl.enabled.protocols": "TLSv1.3",
            "listener.name.only12.ssl.enabled.protocols": "TLSv1.2",
            "listener.name.only12.ssl.cipher.suites": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        },
    )
    assert handshake(broker.ports["ONLY13"], pki.ca_file)[0] == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        handshake(broker.ports["ONLY13"], pki.ca_file, ssl.TLSVersion.TLSv1_2)
    assert handshake(broker.ports["ONLY12"], pki.ca_file) == (
        "TLSv1.2",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    )


# -- certificates replaced at run time --------------------------------------------------------


def served_serial(port: int, ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.settimeout(10)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            der = s.getpeercert(binary_form=True)
    from cryptography import x509

    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def set_broker_config(bootstrap: str, key: str, value: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(
        ConfigResource.Type.BROKER,
        "0",
        incremental_configs=[ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)],
    )
    for fut in admin.incremental_alter_configs([resource]).values():
        fut.result(timeout=30)


def test_keystore_replaced_without_restart(
    pki: Pki, broker_factory: BrokerFactory, topic: str
) -> None:
    first = pki.broker
    path = first.write_combined_pem(pki.directory / "rotating.pem")
    broker = start_secure(
        broker_factory,
        {"SSL": "SSL"},
        {
            "listener.name.ssl.ssl.keystore.type": "PEM",
            "listener.name.ssl.ssl.keystore.location": path,
        },
    )
    port = broker.ports["SSL"]
    assert served_serial(port, pki.ca_file) == first.cert.serial_number
    conf = ck_security("SSL", ClientTls(pki.ca_file))
    producer = ck.Producer({"bootstrap.servers": broker.bootstrap("SSL"), **conf})
    producer.produce(topic, value=b"before")
    assert producer.flush(20) == 0

    # A renewed certificate (same name, new key and serial) at a new location.
    renewed = pki.ca.issue("broker", "brokers", hosts=("127.0.0.1", "localhost"))
    new_path = renewed.write_combined_pem(pki.directory / "rotating-2.pem")
    set_broker_config(broker.plaintext, "listener.name.ssl.ssl.keystore.location", str(new_path))
    assert served_serial(port, pki.ca_file) == renewed.cert.serial_number
    # Connections opened before keep working.
    producer.produce(topic, value=b"after")
    assert producer.flush(20) == 0

    # The same location again after the file was replaced: reloaded too.
    again = pki.ca.issue("broker", "brokers", hosts=("127.0.0.1", "localhost"))
    again.write_combined_pem(new_path)
    set_broker_config(broker.plaintext, "listener.name.ssl.ssl.keystore.location", str(new_path))
    assert served_serial(port, pki.ca_file) == again.cert.serial_number

    # Another distinguished name is refused (ssl.allow.dn.changes=false); the old one stays.
    other = pki.ca.issue("imposter", "brokers", hosts=("127.0.0.1", "localhost"))
    other_path = other.write_combined_pem(pki.directory / "rotating-3.pem")
    with pytest.raises(ck.KafkaException) as err:
        set_broker_config(
            broker.plaintext, "listener.name.ssl.ssl.keystore.location", str(other_path)
        )
    assert err.value.args[0].code() == ck.KafkaError.INVALID_CONFIG
    assert "distinguished name" in err.value.args[0].str()
    assert served_serial(port, pki.ca_file) == again.cert.serial_number
    got = ck_consume(broker.bootstrap("SSL"), topic, count=2, **conf)
    assert [g.value for g in got] == [b"before", b"after"]

    # The dynamic location is kept: after a restart the broker serves the same certificate.
    broker.process.stop()
    broker.process.start()
    broker.process.wait_ready()
    assert served_serial(port, pki.ca_file) == again.cert.serial_number


def test_truststore_replaced_without_restart(pki: Pki, broker_factory: BrokerFactory) -> None:
    """Whom a mutual-TLS listener admits changes with its trust store, through AlterConfigs of
    listener.name.<l>.ssl.truststore.location: another authority added, then the first one
    removed. Connections opened before keep their session."""
    store = pki.broker.write_pkcs12(pki.directory / "broker-trust.p12")
    ours = pki.ca.write_pem(pki.directory / "trust-ours.pem")
    broker = start_secure(
        broker_factory,
        {"MTLS": "SSL"},
        {
            "listener.name.mtls.ssl.keystore.type": "PKCS12",
            "listener.name.mtls.ssl.keystore.location": store,
            "listener.name.mtls.ssl.keystore.password": STORE_PASSWORD,
            "listener.name.mtls.ssl.truststore.type": "PEM",
            "listener.name.mtls.ssl.truststore.location": ours,
            "listener.name.mtls.ssl.client.auth": "required",
            "ssl.principal.mapping.rules": MAPPING,
        },
    )
    bootstrap = broker.bootstrap("MTLS")
    alice = ck_security("SSL", client_tls(pki, "alice"))
    mallory = ck_security("SSL", client_tls(pki, "mallory"))  # of the other authority
    assert not refused(bootstrap, alice)
    assert refused(bootstrap, mallory)
    open_before = AdminClient({"bootstrap.servers": bootstrap, **alice})
    open_before.list_topics(timeout=10)

    both = pki.directory / "trust-both.pem"
    both.write_bytes(pki.ca.pem() + pki.other_ca.pem())
    set_broker_config(broker.plaintext, "listener.name.mtls.ssl.truststore.location", str(both))
    assert not refused(bootstrap, mallory)
    assert not refused(bootstrap, alice)

    theirs = pki.other_ca.write_pem(pki.directory / "trust-theirs.pem")
    set_broker_config(broker.plaintext, "listener.name.mtls.ssl.truststore.location", str(theirs))
    assert refused(bootstrap, alice)
    assert not refused(bootstrap, mallory)
    open_before.list_topics(timeout=10)  # its connection was accepted before: it stays
    log = broker.process.log_text()
    assert "Traceback" not in log
