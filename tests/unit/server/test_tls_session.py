"""The per-connection TLS state machine on memory buffers: a handshake with a real client
SSLObject, application data both ways, and the principal taken from the client certificate."""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from integration.certs import Pki

from strom.config import BrokerConfig
from strom.security.principal import NoMatchingRule
from strom.server.tls import TlsError, TlsListener, TlsSession


def listener(pki: Pki, **sets: str) -> TlsListener:
    cert, key = pki.broker.write_pem(pki.directory, "broker")
    combined = pki.broker.write_combined_pem(pki.directory / "broker-combined.pem")
    del cert, key
    config = BrokerConfig.load(
        None,
        {
            "listeners": "SSL://127.0.0.1:0",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(combined),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(pki.ca_file),
            **sets,
        },
    )
    return TlsListener(config, "SSL")


def connect(
    session: TlsSession, client: ssl.SSLObject, out: ssl.MemoryBIO, inc: ssl.MemoryBIO
) -> None:
    for _ in range(10):
        try:
            client.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        session.feed(memoryview(out.read()))
        session.handshake()
        inc.write(session.take_output())
        if done and session.established:
            return
    raise AssertionError("handshake did not complete")


def client_for(
    pki: Pki, cert: tuple[Path, Path] | None
) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    return context.wrap_bio(inc, out, server_hostname="127.0.0.1"), out, inc


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("pki"))


def test_principal_from_the_client_certificate(pki: Pki) -> None:
    tls = listener(
        pki,
        **{
            "ssl.client.auth": "required",
            "ssl.principal.mapping.rules": "RULE:^CN=([^,]+),OU=clients,.*$/$1@clients/U,DEFAULT",
        },
    )
    session = tls.session()
    client, out, inc = client_for(pki, pki.client.write_pem(pki.directory, "alice"))
    connect(session, client, out, inc)
    assert str(session.principal()) == "User:ALICE@CLIENTS"
    # Application data both ways.
    client.write(b"hello broker")
    session.feed(memoryview(out.read()))
    buf = bytearray(100)
    n = session.read_into(memoryview(buf))
    assert bytes(buf[:n]) == b"hello broker"
    session.encrypt([b"hello ", memoryview(b"client")])
    inc.write(session.take_output())
    got = b""
    while len(got) < 12:
        got += client.read(100)  # one TLS record per read
    assert got == b"hello client"


def test_default_rule_gives_the_distinguished_name(pki: Pki) -> None:
    session = listener(pki, **{"ssl.client.auth": "requested"}).session()
    client, out, inc = client_for(pki, pki.client.write_pem(pki.directory, "alice"))
    connect(session, client, out, inc)
    assert str(session.principal()) == "User:CN=alice,OU=clients,O=Strom Tests,C=DE"


def test_no_certificate_is_anonymous(pki: Pki) -> None:
    session = listener(pki, **{"ssl.client.auth": "requested"}).session()
    client, out, inc = client_for(pki, None)
    connect(session, client, out, inc)
    assert str(session.principal()) == "User:ANONYMOUS"


def test_unmatched_name_is_refused(pki: Pki) -> None:
    session = listener(
        pki,
        **{"ssl.client.auth": "required", "ssl.principal.mapping.rules": "RULE:^CN=bob,.*$/bob/"},
    ).session()
    client, out, inc = client_for(pki, pki.client.write_pem(pki.directory, "alice"))
    connect(session, client, out, inc)
    with pytest.raises(NoMatchingRule):
        session.principal()


def test_garbage_fails_the_handshake(pki: Pki) -> None:
    session = listener(pki).session()
    session.feed(memoryview(b"\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x01\x00\x00\x00\x00"))
    with pytest.raises(TlsError, match="TLS handshake failed"):
        session.handshake()
