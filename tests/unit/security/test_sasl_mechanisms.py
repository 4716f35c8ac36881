"""The SASL mechanisms on their own: SCRAM against RFC 7677's example and Kafka's credential
format, PLAIN, OAUTHBEARER's unsecured and JWKS validation, and JAAS parsing."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.security.jaas import JaasError, parse_jaas
from strom.security.oauthbearer import (
    SEP,
    JwksValidator,
    OAuthBearerServer,
    OAuthError,
    TokenRejected,
    UnsecuredValidator,
    client_response,
    parse_client_response,
    unsecured_token,
)
from strom.security.plain import PlainError, PlainServer
from strom.security.scram import (
    ScramClient,
    ScramCredential,
    ScramError,
    ScramServer,
    make_credential,
    sasl_name_to_user,
    user_to_sasl_name,
)

# -- SCRAM ---------------------------------------------------------------------------------------

RFC7677_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC7677_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC7677_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_scram_client_reproduces_rfc_7677() -> None:
    client = ScramClient("SCRAM-SHA-256", "user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert client.first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert client.final(RFC7677_SERVER_FIRST) == RFC7677_CLIENT_FINAL
    client.verify(RFC7677_SERVER_FINAL)
    with pytest.raises(ScramError):
        client.verify(b"v=" + base64.b64encode(b"x" * 32))


def test_scram_server_reproduces_rfc_7677() -> None:
    credential = make_credential(
        "SCRAM-SHA-256", "pencil", 4096, base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    )
    server = ScramServer(
        "SCRAM-SHA-256",
        lambda user: credential if user == "user" else None,
        b"secret",
        server_nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    )
    assert server.evaluate(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO") == RFC7677_SERVER_FIRST
    assert server.evaluate(RFC7677_CLIENT_FINAL) == RFC7677_SERVER_FINAL
    assert server.complete and server.user == "user"


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_round_trip_and_refusals(mechanism: str) -> None:
    stored = {"alice": make_credential(mechanism, "alice-secret", 8192)}

    def exchange(user: str, password: str) -> ScramServer:
        server = ScramServer(mechanism, stored.get, b"secret")
        client = ScramClient(mechanism, user, password)
        first = server.evaluate(client.first())
        final = server.evaluate(client.final(first))
        client.verify(final)
        return server

    assert exchange("alice", "alice-secret").user == "alice"
    with pytest.raises(ScramError) as wrong_password:
        exchange("alice", "wrong")
    with pytest.raises(ScramError) as unknown_user:
        exchange("bob", "alice-secret")
    # The same answer whichever was wrong.
    assert str(wrong_password.value) == str(unknown_user.value)
    assert "invalid credentials" in str(unknown_user.value)


def test_unknown_user_gets_a_stable_made_up_salt() -> None:
    def server_first(user: str) -> bytes:
        return ScramServer("SCRAM-SHA-256", lambda _: None, b"secret").evaluate(
            f"n,,n={user},r=abc".encode()
        )

    a, b = server_first("nobody"), server_first("nobody")
    assert a.split(b",")[1:] == b.split(b",")[1:]  # salt and iterations
    assert b"i=4096" in a


def test_scram_credential_in_kafkas_form() -> None:
    credential = make_credential("SCRAM-SHA-512", "pw", 4096, b"salty")
    text = credential.to_kafka()
    assert text.startswith("salt=c2FsdHk=,stored_key=") and text.endswith(",iterations=4096")
    assert ScramCredential.from_kafka(text) == credential
    with pytest.raises(ValueError):
        ScramCredential.from_kafka("salt=c2FsdHk=,iterations=4096")


@settings(max_examples=200)
@given(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), min_size=1))
def test_sasl_names_round_trip(user: str) -> None:
    assert sasl_name_to_user(user_to_sasl_name(user)) == user


def test_bad_scram_messages_fail() -> None:
    server = ScramServer("SCRAM-SHA-256", lambda _: None, b"s")
    with pytest.raises(ScramError):
        server.evaluate(b"garbage")
    server = ScramServer("SCRAM-SHA-256", lambda _: None, b"s")
    with pytest.raises(ScramError, match="authorization id"):
        server.evaluate(b"n,a=bob,n=alice,r=abc")


# -- PLAIN ---------------------------------------------------------------------------------------


def test_plain() -> None:
    users = {"alice": "alice-secret"}
    server = PlainServer(users)
    assert server.evaluate(b"\0alice\0alice-secret") == b""
    assert server.complete and server.user == "alice"
    for message in (b"\0alice\0wrong", b"\0bob\0alice-secret"):
        with pytest.raises(PlainError, match="Invalid username or password"):
            PlainServer(users).evaluate(message)
    with pytest.raises(PlainError, match="username not specified"):
        PlainServer(users).evaluate(b"\0\0x")
    with pytest.raises(PlainError, match="expected 3 tokens"):
        PlainServer(users).evaluate(b"alice")
    with pytest.raises(PlainError, match="authorization id"):
        PlainServer(users).evaluate(b"bob\0alice\0alice-secret")


# -- OAUTHBEARER ---------------------------------------------------------------------------------


def unsigned(claims: dict[str, object]) -> str:
    def b64(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none'})}.{b64(claims)}."


def test_client_response_parsing() -> None:
    message = client_response("a.b.", {"traceId": "123"})
    assert message == b"n,,\x01auth=Bearer a.b.\x01traceId=123\x01\x01"
    assert parse_client_response(message) == ("a.b.", "", {"traceId": "123"})
    assert parse_client_response(b"n,a=alice,\x01auth=bearer xyz\x01\x01")[:2] == ("xyz", "alice")
    for bad in (b"", b"n,,auth=Bearer x", b"n,,\x01auth=Basic x\x01\x01", b"y,,\x01\x01"):
        with pytest.raises(OAuthError):
            parse_client_response(bad)


def test_unsecured_validator() -> None:
    now = int(time.time())
    v = UnsecuredValidator(required_scope=("produce",))
    token = v.validate(unsigned({"sub": "alice", "exp": now + 60, "scope": "produce"}), now * 1000)
    assert token.principal == "alice" and token.expires_ms == (now + 60) * 1000
    with pytest.raises(TokenRejected, match="expired"):
        v.validate(unsigned({"sub": "alice", "exp": now - 1, "scope": "produce"}), now * 1000)
    with pytest.raises(TokenRejected) as insufficient:
        v.validate(unsigned({"sub": "alice", "exp": now + 60}), now * 1000)
    assert insufficient.value.json() == '{"status":"insufficient_scope","scope":"produce"}'
    with pytest.raises(TokenRejected, match="sub"):
        v.validate(unsigned({"exp": now + 60, "scope": "produce"}), now * 1000)
    with pytest.raises(TokenRejected, match="exp"):
        v.validate(unsigned({"sub": "alice", "scope": "produce"}), now * 1000)


def test_unsecured_token_for_a_broker() -> None:
    token, expires = unsecured_token({"unsecuredLoginStringClaim_sub": "broker"}, now_s=1000.0)
    found = UnsecuredValidator().validate(token, 1_000_000)
    assert found.principal == "broker" and expires == 4_600_000


@pytest.fixture(scope="module")
def jwks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": "k1", "alg": "RS256", "use": "sig"})
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps({"keys": [public]}))
    return path, key


def signed(key: rsa.RSAPrivateKey, claims: dict[str, object], kid: str = "k1") -> str:
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def test_jwks_validator(jwks: tuple[Path, rsa.RSAPrivateKey]) -> None:
    path, key = jwks
    v = JwksValidator(path.as_uri(), audience=("kafka",), issuer="https://issuer", clock_skew_s=0)
    now = int(time.time())
    good = {"sub": "svc", "iat": now, "exp": now + 60, "aud": "kafka", "iss": "https://issuer"}
    assert v.validate(signed(key, good), now * 1000).principal == "svc"
    for bad in (
        {**good, "exp": now - 10},
        {**good, "aud": "other"},
        {**good, "iss": "https://elsewhere"},
        {k: x for k, x in good.items() if k != "iat"},
    ):
        with pytest.raises(TokenRejected):
            v.validate(signed(key, bad), now * 1000)
    with pytest.raises(TokenRejected, match="no key"):
        v.validate(signed(key, good, kid="other"), now * 1000)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(TokenRejected):
        v.validate(signed(other, good), now * 1000)
    with pytest.raises(TokenRejected, match="not signed"):
        v.validate(unsigned(good), now * 1000)


def test_oauthbearer_server_error_then_control_a() -> None:
    now = int(time.time())
    server = OAuthBearerServer(UnsecuredValidator(), lambda: now * 1000)
    challenge = server.evaluate(client_response(unsigned({"sub": "a", "exp": now - 5})))
    assert json.loads(challenge) == {"status": "invalid_token"}
    assert not server.complete
    with pytest.raises(OAuthError, match="invalid_token"):
        server.evaluate(SEP.encode())
    ok = OAuthBearerServer(UnsecuredValidator(), lambda: now * 1000)
    assert ok.evaluate(client_response(unsigned({"sub": "a", "exp": now + 5}))) == b""
    assert ok.complete and ok.token is not None and ok.token.principal == "a"


# -- JAAS ----------------------------------------------------------------------------------------


def test_jaas_parsing() -> None:
    entries = parse_jaas(
        """org.apache.kafka.common.security.plain.PlainLoginModule required
           username="admin" password='admin-secret' // a comment
           user_admin="admin-secret" /* another */ user_al$ice="a\\"b";"""
    )
    assert len(entries) == 1
    entry = entries[0]
    assert entry.login_module == "org.apache.kafka.common.security.plain.PlainLoginModule"
    assert entry.flag == "REQUIRED"
    assert entry.options == {
        "username": "admin",
        "password": "admin-secret",
        "user_admin": "admin-secret",
        "user_al$ice": 'a"b',
    }
    two = parse_jaas("a.B required; c.D optional x=y;")
    assert [e.login_module for e in two] == ["a.B", "c.D"] and two[1].options == {"x": "y"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "Login module not specified"),
        ("a.B", "control flag not specified"),
        ("a.B mandatory;", "Invalid login module control flag"),
        ("a.B required x=1;", "Value not specified for key 'x'"),
        ('a.B required x="y"', "not terminated by semi-colon"),
        ('a.B required x="y;', "unterminated"),
    ],
)
def test_jaas_refusals(text: str, reason: str) -> None:
    with pytest.raises(JaasError, match=reason):
        parse_jaas(text)


def test_scram_accepts_a_nonce_that_ends_with_the_servers() -> None:
    """librdkafka before 2.2 puts its own nonce in front of the combined one in its final
    message; Kafka accepts that (its check is endsWith), so clients of that age work."""
    import hashlib
    import hmac

    credential = make_credential("SCRAM-SHA-256", "pw", salt=b"salt")
    server = ScramServer("SCRAM-SHA-256", lambda _: credential, b"s")
    first = server.evaluate(b"n,,n=u,r=abc").decode()
    combined = first.split(",")[0][2:]
    without = f"c=biws,r=abc{combined}"
    auth = f"n=u,r=abc,{first},{without}".encode()
    salted = hashlib.pbkdf2_hmac("sha256", b"pw", b"salt", 4096)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    final = f"{without},p={base64.b64encode(proof).decode()}".encode()
    assert server.evaluate(final).startswith(b"v=")
