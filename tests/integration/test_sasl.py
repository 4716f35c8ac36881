"""SASL listeners (SASL_PLAINTEXT, SASL_SSL) with PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and
OAUTHBEARER, against confluent-kafka, kafka-python, aiokafka and kcat: every combination
produces and consumes; wrong passwords, unknown users, expired tokens and refused mechanisms
fail with Kafka's errors while the broker serves everyone else; SCRAM users are created,
described and deleted through the admin API and act at once; sessions end and are renewed as
KIP-368 says."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import jwt
import kafka
import pytest
from aiokafka.abc import AbstractTokenProvider as AioTokenProvider
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from cryptography.hazmat.primitives.asymmetric import rsa
from kafka.net.sasl.oauth import AbstractTokenProvider as KpTokenProvider

from strom.protocol.messages.metadata_request import MetadataRequest
from strom.replication.broker_connection import connect_to_broker
from strom.security.client import ClientSecurity

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
from .secure import SecureBroker, start_secure

pytestmark = pytest.mark.integration

MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
USERS = {"alice": "alice-secret", "admin": "admin-secret"}
PLAIN_JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    + " ".join(f'user_{u}="{p}"' for u, p in USERS.items())
    + ";"
)
SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
OAUTH_JAAS = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"


def unsigned_token(principal: str, lifetime_s: float = 3600, age_s: float = 0) -> str:
    issued = time.time() - age_s

    def b64(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    claims = {"sub": principal, "iat": issued, "exp": issued + lifetime_s}
    return f"{b64({'alg': 'none'})}.{b64(claims)}."


class KpToken(KpTokenProvider):
    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token


class AioToken(AioTokenProvider):
    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def module_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerFactory]:
    factory = BrokerFactory(tmp_path_factory.mktemp("sasl-brokers"))
    yield factory
    factory.stop_all()


def sasl_sets(listener: str, mechanisms: list[str] = MECHANISMS) -> dict[str, object]:
    prefix = f"listener.name.{listener.lower()}"
    sets: dict[str, object] = {f"{prefix}.sasl.enabled.mechanisms": ",".join(mechanisms)}
    jaas = {"PLAIN": PLAIN_JAAS, "SCRAM-SHA-256": SCRAM_JAAS, "SCRAM-SHA-512": SCRAM_JAAS}
    jaas["OAUTHBEARER"] = OAUTH_JAAS
    for mechanism in mechanisms:
        sets[f"{prefix}.{mechanism.lower()}.sasl.jaas.config"] = jaas[mechanism]
    return sets


def scram_upsert(bootstrap: str, user: str, password: str, iterations: int = 8192) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    alterations = [
        UserScramCredentialUpsertion(
            user, ScramCredentialInfo(mechanism, iterations), password.encode()
        )
        for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)
    ]
    for fut in admin.alter_user_scram_credentials(alterations).values():
        fut.result(timeout=30)


@pytest.fixture(scope="module")
def sasl_broker(pki: Pki, module_factory: BrokerFactory) -> SecureBroker:
    store = pki.broker.write_pkcs12(pki.directory / "broker.p12")
    broker = start_secure(
        module_factory,
        {"SASL_PLAINTEXT": "SASL_PLAINTEXT", "SASL_SSL": "SASL_SSL"},
        {
            **sasl_sets("SASL_PLAINTEXT"),
            **sasl_sets("SASL_SSL"),
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": store,
            "ssl.keystore.password": STORE_PASSWORD,
            "group.initial.rebalance.delay.ms": 0,
        },
    )
    # SCRAM users are created through the admin API (on the PLAINTEXT listener).
    for user, password in USERS.items():
        scram_upsert(broker.plaintext, user, password)
    return broker


def ck_sasl(
    protocol: str, mechanism: str, pki: Pki, user: str = "alice", password: str | None = None
) -> dict[str, Any]:
    conf: dict[str, Any] = {"security.protocol": protocol, "sasl.mechanism": mechanism}
    if mechanism == "OAUTHBEARER":
        conf["enable.sasl.oauthbearer.unsecure.jwt"] = True
        conf["sasl.oauthbearer.config"] = f"principal={user}"
    else:
        conf["sasl.username"] = user
        conf["sasl.password"] = USERS.get(user, "") if password is None else password
    if protocol == "SASL_SSL":
        conf["ssl.ca.location"] = str(pki.ca_file)
    return conf


def kp_sasl(protocol: str, mechanism: str, pki: Pki, user: str = "alice") -> dict[str, Any]:
    conf: dict[str, Any] = {"security_protocol": protocol, "sasl_mechanism": mechanism}
    if mechanism == "OAUTHBEARER":
        conf["sasl_oauth_token_provider"] = KpToken(unsigned_token(user))
    else:
        conf["sasl_plain_username"] = user
        conf["sasl_plain_password"] = USERS[user]
    if protocol == "SASL_SSL":
        conf["ssl_cafile"] = str(pki.ca_file)
    return conf


def aio_sasl(protocol: str, mechanism: str, pki: Pki, user: str = "alice") -> dict[str, Any]:
    conf: dict[str, Any] = {"security_protocol": protocol, "sasl_mechanism": mechanism}
    if mechanism == "OAUTHBEARER":
        conf["sasl_oauth_token_provider"] = AioToken(unsigned_token(user))
    else:
        conf["sasl_plain_username"] = user
        conf["sasl_plain_password"] = USERS[user]
    if protocol == "SASL_SSL":
        conf["ssl_context"] = ssl.create_default_context(cafile=str(pki.ca_file))
    return conf


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka(
    sasl_broker: SecureBroker, pki: Pki, protocol: str, mechanism: str, topic: str
) -> None:
    conf = ck_sasl(protocol, mechanism, pki)
    recs = make_recs(10)
    ck_produce(sasl_broker.bootstrap(protocol), topic, recs, **conf)
    got = ck_consume(sasl_broker.bootstrap(protocol), topic, count=10, **conf)
    assert [g.value for g in got] == [r.value for r in recs]


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python(
    sasl_broker: SecureBroker, pki: Pki, protocol: str, mechanism: str, topic: str
) -> None:
    conf = kp_sasl(protocol, mechanism, pki)
    recs = make_recs(10)
    kp_produce(sasl_broker.bootstrap(protocol), topic, recs, **conf)
    got = kp_consume(sasl_broker.bootstrap(protocol), topic, count=10, **conf)
    assert [g.value for g in got] == [r.value for r in recs]


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_aiokafka(
    sasl_broker: SecureBroker, pki: Pki, protocol: str, mechanism: str, topic: str
) -> None:
    conf = aio_sasl(protocol, mechanism, pki)
    recs = make_recs(10)
    aio_produce(sasl_broker.bootstrap(protocol), topic, recs, **conf)
    got = aio_consume(sasl_broker.bootstrap(protocol), topic, count=10, **conf)
    assert [g.value for g in got] == [r.value for r in recs]


def test_kcat_over_sasl_ssl(sasl_broker: SecureBroker, pki: Pki, topic: str) -> None:
    extra = [
        "-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={pki.ca_file}",
        "-X", "sasl.mechanism=SCRAM-SHA-512", "-X", "sasl.username=alice",
        "-X", "sasl.password=alice-secret",
    ]  # fmt: skip
    recs = [Rec(f"k{i}".encode(), f"v{i}".encode()) for i in range(5)]
    kcat_produce(sasl_broker.bootstrap("SASL_SSL"), topic, recs, extra=extra)
    got = kcat_consume(sasl_broker.bootstrap("SASL_SSL"), topic, count=5, extra=extra)
    assert [g.value for g in got] == [r.value for r in recs]


# -- refusals -----------------------------------------------------------------------------------


def ck_failure(bootstrap: str, conf: dict[str, Any]) -> ck.KafkaError:
    """The error confluent-kafka reports when it cannot authenticate."""
    errors: list[ck.KafkaError] = []
    admin = AdminClient(
        {"bootstrap.servers": bootstrap, **conf, "error_cb": errors.append, "retry.backoff.ms": 500}
    )
    with pytest.raises(ck.KafkaException):
        admin.list_topics(timeout=5)
    admin.poll(1)
    assert errors, "no error reported"
    return errors[0]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_wrong_password_and_unknown_user_fail_alike(
    sasl_broker: SecureBroker, pki: Pki, mechanism: str
) -> None:
    bootstrap = sasl_broker.bootstrap("SASL_PLAINTEXT")
    wrong = ck_failure(bootstrap, ck_sasl("SASL_PLAINTEXT", mechanism, pki, password="wrong"))
    unknown = ck_failure(
        bootstrap, ck_sasl("SASL_PLAINTEXT", mechanism, pki, "mallory", "alice-secret")
    )
    assert wrong.code() == unknown.code() == ck.KafkaError._AUTHENTICATION
    expected = "Invalid username or password" if mechanism == "PLAIN" else "invalid credentials"
    assert expected in wrong.str() and expected in unknown.str()
    # The broker is unharmed.
    roundtrip_ok(sasl_broker, pki)


def roundtrip_ok(broker: SecureBroker, pki: Pki) -> None:
    conf = ck_sasl("SASL_PLAINTEXT", "SCRAM-SHA-256", pki)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap("SASL_PLAINTEXT"), **conf})
    assert admin.list_topics(timeout=20).brokers


def test_expired_token_is_refused(sasl_broker: SecureBroker, pki: Pki) -> None:
    conf = kp_sasl("SASL_PLAINTEXT", "OAUTHBEARER", pki)
    conf["sasl_oauth_token_provider"] = KpToken(unsigned_token("alice", 60, age_s=120))
    with pytest.raises(kafka.errors.KafkaError):
        kafka.KafkaAdminClient(
            bootstrap_servers=sasl_broker.bootstrap("SASL_PLAINTEXT"),
            request_timeout_ms=5000,
            **conf,
        ).list_topics()
    assert '{"status":"invalid_token"} (the token has expired)' in sasl_broker.process.log_text()
    roundtrip_ok(sasl_broker, pki)


def test_mechanism_not_enabled_is_refused(pki: Pki, broker_factory: BrokerFactory) -> None:
    broker = start_secure(
        broker_factory, {"SASL_PLAINTEXT": "SASL_PLAINTEXT"}, sasl_sets("SASL_PLAINTEXT", ["PLAIN"])
    )
    error = ck_failure(
        broker.bootstrap("SASL_PLAINTEXT"), ck_sasl("SASL_PLAINTEXT", "SCRAM-SHA-256", pki)
    )
    assert error.code() == ck.KafkaError._UNSUPPORTED_FEATURE or "SCRAM-SHA-256" in error.str()


def test_client_without_sasl_gets_nothing(sasl_broker: SecureBroker) -> None:
    error = ck_failure(sasl_broker.bootstrap("SASL_PLAINTEXT"), {})
    assert error.code() in (ck.KafkaError._TRANSPORT, ck.KafkaError._ALL_BROKERS_DOWN)
    assert "unexpected request (api key 3)" in sasl_broker.process.log_text()


# -- wire level: errors, size limit, sessions ---------------------------------------------------


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def request(api_key: int, version: int, body: bytes, correlation_id: int = 1) -> bytes:
    header = i16(api_key) + i16(version) + i32(correlation_id) + i16(4) + b"wire"
    if version >= 2 and api_key == 36:
        header += b"\x00"  # tagged fields of header v2
    payload = header + body
    return i32(len(payload)) + payload


def recv_frame(sock: socket.socket) -> bytes:
    size = struct.unpack(">i", recv_exactly(sock, 4))[0]
    return recv_exactly(sock, size)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by the broker")
        data += chunk
    return data


def handshake(sock: socket.socket, mechanism: str) -> int:
    sock.sendall(request(17, 1, i16(len(mechanism)) + mechanism.encode()))
    answer = recv_frame(sock)
    return struct.unpack(">h", answer[4:6])[0]


def authenticate_plain(
    sock: socket.socket, user: str, password: str, version: int = 1
) -> tuple[int, str | None, int]:
    token = f"\0{user}\0{password}".encode()
    sock.sendall(request(36, version, i32(len(token)) + token))
    answer = recv_frame(sock)[4:]
    code = struct.unpack(">h", answer[:2])[0]
    length = struct.unpack(">h", answer[2:4])[0]
    message = None if length < 0 else answer[4 : 4 + length].decode()
    rest = answer[4 + max(length, 0) :]
    auth_len = struct.unpack(">i", rest[:4])[0]
    lifetime = (
        struct.unpack(">q", rest[4 + max(auth_len, 0) : 12 + max(auth_len, 0)])[0]
        if version >= 1
        else 0
    )
    return code, message, lifetime


def test_wire_errors_and_size_limit(sasl_broker: SecureBroker) -> None:
    port = sasl_broker.ports["SASL_PLAINTEXT"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert handshake(s, "GSSAPI") == 33  # UNSUPPORTED_SASL_MECHANISM
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert handshake(s, "PLAIN") == 0
        code, message, _ = authenticate_plain(s, "alice", "wrong")
        assert (code, message) == (58, "Authentication failed: Invalid username or password")
        with pytest.raises((ConnectionError, OSError)):
            recv_frame(s)
    # Before authentication a request may not exceed sasl.server.max.receive.size.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(i32(600 * 1024) + b"\0" * 100)
        with pytest.raises((ConnectionError, OSError)):
            recv_frame(s)
    assert "sasl.server.max.receive.size" in sasl_broker.process.log_text()


def test_failed_authentication_is_answered_after_the_delay(
    pki: Pki, broker_factory: BrokerFactory
) -> None:
    """connection.failed.authentication.delay.ms holds a failure's answer back (a client
    guessing passwords gets one guess per delay and connection); meanwhile the broker serves
    others, and a right password is answered at once."""
    sets = sasl_sets("SASL_PLAINTEXT", ["PLAIN"])
    sets["connection.failed.authentication.delay.ms"] = 2000
    broker = start_secure(broker_factory, {"SASL_PLAINTEXT": "SASL_PLAINTEXT"}, sets)
    port = broker.ports["SASL_PLAINTEXT"]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as guesser:
        assert handshake(guesser, "PLAIN") == 0
        token = b"\0alice\0guess"
        sent = time.monotonic()
        guesser.sendall(request(36, 1, i32(len(token)) + token))
        # While the failure waits, another client authenticates and is served.
        with socket.create_connection(("127.0.0.1", port), timeout=30) as other:
            assert handshake(other, "PLAIN") == 0
            assert authenticate_plain(other, "alice", "alice-secret")[0] == 0
            assert metadata_ok(other)
        answer = recv_frame(guesser)[4:]
        waited = time.monotonic() - sent
        assert struct.unpack(">h", answer[:2])[0] == 58  # SASL_AUTHENTICATION_FAILED
        assert waited >= 2.0
        with pytest.raises((ConnectionError, OSError)):
            recv_frame(guesser)


def metadata_ok(sock: socket.socket) -> bool:
    sock.sendall(request(3, 1, i32(0), correlation_id=9))
    try:
        return struct.unpack(">i", recv_frame(sock)[:4])[0] == 9
    except (ConnectionError, OSError):
        return False


def test_session_lifetime_and_reauthentication(pki: Pki, broker_factory: BrokerFactory) -> None:
    sets = sasl_sets("SASL_PLAINTEXT", ["PLAIN"])
    sets["listener.name.sasl_plaintext.plain.connections.max.reauth.ms"] = 2000
    broker = start_secure(broker_factory, {"SASL_PLAINTEXT": "SASL_PLAINTEXT"}, sets)
    port = broker.ports["SASL_PLAINTEXT"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert handshake(s, "PLAIN") == 0
        code, _, lifetime = authenticate_plain(s, "alice", "alice-secret")
        assert (code, lifetime) == (0, 2000)
        assert metadata_ok(s)
        # Re-authenticated in time: the session goes on.
        assert handshake(s, "PLAIN") == 0
        assert authenticate_plain(s, "alice", "alice-secret")[0] == 0
        assert metadata_ok(s)
        # Another principal is refused and the connection closed.
        assert handshake(s, "PLAIN") == 0
        code, message, _ = authenticate_plain(s, "admin", "admin-secret")
        assert code == 58 and "Cannot change principals" in (message or "")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert handshake(s, "PLAIN") == 0
        assert authenticate_plain(s, "alice", "alice-secret")[0] == 0
        deadline = time.monotonic() + 30
        while metadata_ok(s):  # answered until the session ends, then closed
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert "SASL session expired" in broker.process.log_text()

    # Clients that re-authenticate keep their connections across many sessions.
    topic = "reauth"
    for make_conf in (ck_sasl, kp_sasl):
        conf = make_conf("SASL_PLAINTEXT", "PLAIN", pki)
        before = broker.process.log_text().count("SASL session expired")
        if make_conf is ck_sasl:
            producer: Any = ck.Producer(
                {"bootstrap.servers": broker.bootstrap("SASL_PLAINTEXT"), **conf}
            )
            end = time.monotonic() + 7
            while time.monotonic() < end:
                producer.produce(topic, b"x")
                producer.poll(0.2)
            assert producer.flush(30) == 0
        else:
            producer = kafka.KafkaProducer(
                bootstrap_servers=broker.bootstrap("SASL_PLAINTEXT"), **conf
            )
            end = time.monotonic() + 7
            while time.monotonic() < end:
                producer.send(topic, b"y").get(timeout=30)
                time.sleep(0.2)
            producer.close()
        assert broker.process.log_text().count("SASL session expired") == before


@pytest.fixture(scope="module")
def reauth_broker(pki: Pki, module_factory: BrokerFactory) -> SecureBroker:
    """SASL_SSL with every mechanism and sessions of 2 s."""
    store = pki.broker.write_pkcs12(pki.directory / "broker-reauth.p12")
    broker = start_secure(
        module_factory,
        {"SASL_SSL": "SASL_SSL"},
        {
            **sasl_sets("SASL_SSL"),
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": store,
            "ssl.keystore.password": STORE_PASSWORD,
            "connections.max.reauth.ms": 2000,
            "group.initial.rebalance.delay.ms": 0,
        },
    )
    for user, password in USERS.items():
        scram_upsert(broker.plaintext, user, password)
    return broker


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_reauthentication_over_tls_with_each_mechanism(
    reauth_broker: SecureBroker, pki: Pki, mechanism: str, topic: str
) -> None:
    """librdkafka's producer and a consumer in a group keep their TLS connections across
    sessions of 2 s by authenticating again on them (KIP-368). (Sessions that end with an
    OAUTHBEARER token's expiry: tests/unit/security/test_authenticator.py; with tokens of a
    few seconds librdkafka's renewal races the end of the session on a loaded machine.)"""
    broker = reauth_broker
    conf = ck_sasl("SASL_SSL", mechanism, pki)
    bootstrap = broker.bootstrap("SASL_SSL")
    expired_before = broker.process.log_text().count("SASL session expired")
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-g",
            "auto.offset.reset": "earliest",
            **conf,
        }
    )
    consumer.subscribe([topic])
    producer = ck.Producer({"bootstrap.servers": bootstrap, **conf})
    sent = 0
    got: list[bytes] = []
    end = time.monotonic() + 8
    while time.monotonic() < end:
        producer.produce(topic, b"%d" % sent)
        sent += 1
        producer.poll(0)
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    assert producer.flush(30) == 0
    deadline = time.monotonic() + 60
    while len(got) < sent:
        assert time.monotonic() < deadline, f"consumed {len(got)} of {sent}"
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.close()
    assert sorted(int(v) for v in got) == list(range(sent))
    # Nobody ran past the end of a session: every connection authenticated again in time.
    log = broker.process.log_text()
    assert log.count("SASL session expired") == expired_before
    assert "Traceback" not in log


def test_kafka_python_reauthenticates_with_scram_over_tls(
    reauth_broker: SecureBroker, pki: Pki, topic: str
) -> None:
    broker = reauth_broker
    expired_before = broker.process.log_text().count("SASL session expired")
    conf = kp_sasl("SASL_SSL", "SCRAM-SHA-512", pki)
    producer = kafka.KafkaProducer(bootstrap_servers=broker.bootstrap("SASL_SSL"), **conf)
    end = time.monotonic() + 7
    sent = 0
    while time.monotonic() < end:
        producer.send(topic, b"%d" % sent).get(timeout=30)
        sent += 1
        time.sleep(0.2)
    producer.close()
    got = kp_consume(broker.bootstrap("SASL_SSL"), topic, count=sent, **conf)
    assert len(got) == sent
    assert broker.process.log_text().count("SASL session expired") == expired_before


def test_inter_broker_client_reauthenticates(pki: Pki, broker_factory: BrokerFactory) -> None:
    """The connection one broker opens to another (fetchers, controller, transaction markers)
    authenticates again before its session ends: against a broker granting 1.5 s sessions it
    keeps answering for several sessions; the same connection without re-authenticating is
    closed once its session ended."""
    sets = sasl_sets("SASL_PLAINTEXT", ["PLAIN", "SCRAM-SHA-512"])
    sets["connections.max.reauth.ms"] = 1500
    broker = start_secure(broker_factory, {"SASL_PLAINTEXT": "SASL_PLAINTEXT"}, sets)
    for user, password in USERS.items():
        scram_upsert(broker.plaintext, user, password)
    port = broker.ports["SASL_PLAINTEXT"]

    async def session(mechanism: str, reauthenticate: bool) -> tuple[int, int]:
        """(metadata requests answered within 6 s, re-authentications)."""
        security = ClientSecurity(
            "SASL_PLAINTEXT", None, mechanism, {"username": "admin", "password": "admin-secret"}
        )
        connection, _ = await connect_to_broker("127.0.0.1", port, "broker-9", 10, 10, security)
        answered = 0
        try:
            end = time.monotonic() + 6
            while time.monotonic() < end:
                if not reauthenticate:
                    connection.reauthenticate_at = None
                try:
                    await connection.call(3, 1, MetadataRequest(topics=[]), 10)
                except (ConnectionError, OSError):
                    break
                answered += 1
                await asyncio.sleep(0.2)
        finally:
            await connection.close()
        return answered, connection.reauthentications

    for mechanism in ("PLAIN", "SCRAM-SHA-512"):
        expired_before = broker.process.log_text().count("SASL session expired")
        answered, reauthentications = asyncio.run(session(mechanism, reauthenticate=True))
        assert answered >= 10 and reauthentications >= 3
        assert broker.process.log_text().count("SASL session expired") == expired_before
    answered, reauthentications = asyncio.run(session("PLAIN", reauthenticate=False))
    assert reauthentications == 0
    assert answered < 30  # cut off after one session of 1.5 s
    assert "SASL session expired" in broker.process.log_text()


# -- SCRAM users through the admin API ----------------------------------------------------------


def scram_authenticates(broker: SecureBroker, pki: Pki, user: str, password: str) -> bool:
    conf = ck_sasl("SASL_PLAINTEXT", "SCRAM-SHA-256", pki, user, password)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap("SASL_PLAINTEXT"), **conf})
    try:
        admin.list_topics(timeout=5)
    except ck.KafkaException:
        return False
    return True


def test_scram_users_through_the_admin_api(sasl_broker: SecureBroker, pki: Pki) -> None:
    admin = AdminClient({"bootstrap.servers": sasl_broker.plaintext})
    assert not scram_authenticates(sasl_broker, pki, "carol", "carol-secret")
    scram_upsert(sasl_broker.plaintext, "carol", "carol-secret", iterations=4096)
    assert scram_authenticates(sasl_broker, pki, "carol", "carol-secret")
    described = admin.describe_user_scram_credentials(["carol"])["carol"].result(timeout=20)
    assert sorted((i.mechanism, i.iterations) for i in described.scram_credential_infos) == [
        (ScramMechanism.SCRAM_SHA_256, 4096),
        (ScramMechanism.SCRAM_SHA_512, 4096),
    ]
    # Stored salted and hashed, never in clear.
    metadata = (sasl_broker.process.data_dir / "strom-metadata.json").read_text()
    assert "carol-secret" not in metadata
    stored = json.loads(metadata)["users"]["carol"]["SCRAM-SHA-256"]
    assert (
        stored.startswith("salt=")
        and ",stored_key=" in stored
        and stored.endswith(",iterations=4096")
    )
    # Too few iterations is refused.
    bad = UserScramCredentialUpsertion(
        "dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1000), b"pw"
    )
    with pytest.raises(ck.KafkaException) as err:
        admin.alter_user_scram_credentials([bad])["dave"].result(timeout=20)
    assert err.value.args[0].code() == ck.KafkaError.UNACCEPTABLE_CREDENTIAL
    # Deleted: refused at once.
    deletions = [
        UserScramCredentialDeletion("carol", m)
        for m in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)
    ]
    admin.alter_user_scram_credentials(deletions)["carol"].result(timeout=20)
    assert not scram_authenticates(sasl_broker, pki, "carol", "carol-secret")
    with pytest.raises(ck.KafkaException) as err:
        admin.describe_user_scram_credentials(["carol"])["carol"].result(timeout=20)
    assert err.value.args[0].code() == ck.KafkaError.RESOURCE_NOT_FOUND


def test_scram_users_with_kafka_python_admin(sasl_broker: SecureBroker, pki: Pki) -> None:
    from kafka.admin import ScramMechanism as KpMechanism
    from kafka.admin import UserScramCredentialDeletion as KpDeletion
    from kafka.admin import UserScramCredentialUpsertion as KpUpsertion

    admin = kafka.KafkaAdminClient(bootstrap_servers=sasl_broker.plaintext)
    try:
        result = admin.alter_user_scram_credentials(
            [KpUpsertion("erin", KpMechanism.SCRAM_SHA_512, "erin-secret", iterations=4096)]
        )
        assert result == {"erin": None}
        described = admin.describe_user_scram_credentials(["erin"])
        assert "erin" in str(described)
        conf = ck_sasl("SASL_PLAINTEXT", "SCRAM-SHA-512", pki, "erin", "erin-secret")
        AdminClient(
            {"bootstrap.servers": sasl_broker.bootstrap("SASL_PLAINTEXT"), **conf}
        ).list_topics(timeout=20)
        admin.alter_user_scram_credentials([KpDeletion("erin", KpMechanism.SCRAM_SHA_512)])
    finally:
        admin.close()


# -- OAUTHBEARER with a JSON Web Key Set --------------------------------------------------------


def test_oauthbearer_with_jwks(
    pki: Pki, broker_factory: BrokerFactory, tmp_path: Path, topic: str
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": "k1", "alg": "RS256", "use": "sig"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [public]}))
    prefix = "listener.name.sasl_plaintext.oauthbearer"
    broker = start_secure(
        broker_factory,
        {"SASL_PLAINTEXT": "SASL_PLAINTEXT"},
        {
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "OAUTHBEARER",
            f"{prefix}.sasl.jaas.config": OAUTH_JAAS,
            f"{prefix}.sasl.server.callback.handler.class": "org.apache.kafka.common.security."
            "oauthbearer.OAuthBearerValidatorCallbackHandler",
            f"{prefix}.sasl.oauthbearer.jwks.endpoint.url": jwks.as_uri(),
            "sasl.oauthbearer.expected.audience": "kafka",
        },
    )

    def signed(claims: dict[str, Any], signer: Any = key) -> str:
        return jwt.encode(claims, signer, algorithm="RS256", headers={"kid": "k1"})

    now = int(time.time())
    good = {"sub": "svc", "iat": now, "exp": now + 600, "aud": "kafka"}
    bootstrap = broker.bootstrap("SASL_PLAINTEXT")

    def conf(token: str) -> dict[str, Any]:
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "OAUTHBEARER",
            "sasl_oauth_token_provider": KpToken(token),
        }

    recs = make_recs(5)
    kp_produce(bootstrap, topic, recs, **conf(signed(good)))
    assert len(kp_consume(bootstrap, topic, count=5, **conf(signed(good)))) == 5
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for bad in (
        signed({**good, "exp": now - 60}),
        signed({**good, "aud": "somebody-else"}),
        signed(good, other),
        unsigned_token("svc"),
    ):
        refused = broker.process.log_text().count("failed authentication")
        # kafka-python retries a refused authentication until its bootstrap timeout (30 s by
        # default), then raises; the broker's log shows that it refused the token.
        with pytest.raises(kafka.errors.KafkaError):
            kafka.KafkaAdminClient(
                bootstrap_servers=bootstrap,
                request_timeout_ms=5000,
                bootstrap_timeout_ms=3000,
                **conf(bad),
            ).list_topics()
        assert broker.process.log_text().count("failed authentication") > refused


# -- the README's example ------------------------------------------------------------------------


def test_readme_sasl_ssl_example(
    pki: Pki, broker_factory: BrokerFactory, tmp_path: Path, topic: str
) -> None:
    """The README's complete SASL_SSL set-up, as written there (ports, host names and paths
    replaced by the test's)."""
    from .broker_process import free_port

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### A complete SASL_SSL set-up") :]
    properties = section[
        section.index("```properties") + len("```properties") : section.index(
            "```\n", section.index("```properties") + 5
        )
    ]
    plain, secure = free_port(), free_port()
    pem = pki.broker.write_combined_pem(tmp_path / "broker1.pem")
    text = (
        properties.replace("9092", str(plain))
        .replace("9094", str(secure))
        .replace("0.0.0.0", "127.0.0.1")
        .replace("broker1.example.com", "127.0.0.1")
        .replace("/etc/strom/broker1.pem", str(pem))
    )
    config = tmp_path / "server.properties"
    config.write_text(text)
    listeners = f"PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{secure}"
    broker = broker_factory({"listeners": listeners}, config_file=config, port=plain)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    bob = UserScramCredentialUpsertion(
        "bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"bob-secret"
    )
    admin.alter_user_scram_credentials([bob])["bob"].result(timeout=30)
    conf = {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(pki.ca_file),
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "bob",
        "sasl.password": "bob-secret",
    }
    bootstrap = f"127.0.0.1:{secure}"
    ck_produce(bootstrap, topic, make_recs(5), **conf)
    assert len(ck_consume(bootstrap, topic, count=5, **conf)) == 5
    plain_conf = {
        **conf,
        "sasl.mechanism": "PLAIN",
        "sasl.username": "alice",
        "sasl.password": "alice-secret",
    }
    assert len(ck_consume(bootstrap, topic, count=5, **plain_conf)) == 5


def test_sasl_principal_reaches_the_authorizer(pki: Pki, broker_factory: BrokerFactory) -> None:
    """With ACLs on, the SASL principal decides: the super user may manage SCRAM users, alice
    (no ACL) may not, with Kafka's CLUSTER_AUTHORIZATION_FAILED."""
    sets = sasl_sets("SASL_PLAINTEXT", ["PLAIN"])
    sets["authorizer.class.name"] = "kafka.security.authorizer.AclAuthorizer"
    sets["super.users"] = "User:admin;User:ANONYMOUS"  # ANONYMOUS: the PLAINTEXT listener
    broker = start_secure(broker_factory, {"SASL_PLAINTEXT": "SASL_PLAINTEXT"}, sets)
    bootstrap = broker.bootstrap("SASL_PLAINTEXT")
    upsert = UserScramCredentialUpsertion(
        "frank", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"frank-secret"
    )

    def alter_as(user: str) -> None:
        conf = ck_sasl("SASL_PLAINTEXT", "PLAIN", pki, user)
        admin = AdminClient({"bootstrap.servers": bootstrap, **conf})
        admin.alter_user_scram_credentials([upsert])["frank"].result(timeout=30)

    alter_as("admin")
    with pytest.raises(ck.KafkaException) as err:
        alter_as("alice")
    assert err.value.args[0].code() == ck.KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert "User:alice" in broker.process.log_text()
