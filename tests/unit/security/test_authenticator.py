"""The SASL state machine of a connection, driven with real request frames: handshakes,
tokens in SaslAuthenticate and bare (handshake v0), refusals with Kafka's errors and messages,
session lifetimes and re-authentication."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from strom.protocol.errors import ErrorCode
from strom.protocol.framing import decode_response, encode_request
from strom.protocol.messages.api_versions_request import ApiVersionsRequest
from strom.protocol.messages.metadata_request import MetadataRequest
from strom.protocol.messages.sasl_authenticate_request import SaslAuthenticateRequest
from strom.protocol.messages.sasl_handshake_request import SaslHandshakeRequest
from strom.security.authenticator import SaslAuthenticator, State, Step
from strom.security.oauthbearer import UnsecuredValidator, client_response
from strom.security.plain import client_message
from strom.security.sasl_config import SaslListenerSettings
from strom.security.scram import ScramClient, make_credential

NOW = 1_700_000_000_000


def frame(api_key: int, version: int, request: Any, correlation_id: int = 7) -> bytes:
    chunks = encode_request(api_key, version, correlation_id, "test", request)
    return b"".join(bytes(c) for c in chunks)[4:]


def answer(step: Step, api_key: int, version: int) -> Any:
    chunks = step.respond if step.respond is not None else step.failure_response
    assert chunks is not None
    data = b"".join(bytes(c) for c in chunks)
    return decode_response(api_key, version, data[4:])[1]


def settings(**kw: Any) -> SaslListenerSettings:
    base = SaslListenerSettings(
        "SASL",
        ["PLAIN", "SCRAM-SHA-256", "OAUTHBEARER"],
        plain_users={"alice": "alice-secret", "bob": "bob-secret"},
        oauth_validator=UnsecuredValidator(),
        reauth_ms={"PLAIN": 0, "SCRAM-SHA-256": 60_000, "OAUTHBEARER": 0},
        failed_delay_ms=100,
    )
    for k, v in kw.items():
        setattr(base, k, v)
    return base


CREDS = {("carol", "SCRAM-SHA-256"): make_credential("SCRAM-SHA-256", "carol-secret")}


def authenticator(**kw: Any) -> SaslAuthenticator:
    return SaslAuthenticator(settings(**kw), lambda u, m: CREDS.get((u, m)), lambda: NOW)


def handshake(auth: SaslAuthenticator, mechanism: str, version: int = 1) -> Step:
    return auth.receive(frame(17, version, SaslHandshakeRequest(mechanism)))


def authenticate(auth: SaslAuthenticator, token: bytes, version: int = 2) -> Step:
    return auth.receive(frame(36, version, SaslAuthenticateRequest(token)))


def test_api_versions_goes_to_the_dispatcher_first() -> None:
    auth = authenticator()
    assert auth.receive(frame(18, 3, ApiVersionsRequest("x", "1"))).dispatch
    assert auth.state is State.INITIAL


def test_plain_with_saslauthenticate() -> None:
    auth = authenticator()
    step = handshake(auth, "PLAIN")
    response = answer(step, 17, 1)
    assert response.error_code == ErrorCode.NONE
    assert response.mechanisms == ["PLAIN", "SCRAM-SHA-256", "OAUTHBEARER"]
    step = authenticate(auth, client_message("alice", "alice-secret"))
    assert step.authenticated and not auth.authenticating
    assert str(auth.principal) == "User:alice"
    assert answer(step, 36, 2).session_lifetime_ms == 0
    assert auth.session_expiry_ms is None


@pytest.mark.parametrize(
    "token", [client_message("alice", "wrong"), client_message("mallory", "alice-secret")]
)
def test_plain_refused_the_same_whichever_was_wrong(token: bytes) -> None:
    auth = authenticator()
    handshake(auth, "PLAIN")
    step = authenticate(auth, token)
    assert step.failure is not None and step.delay_ms == 100
    response = answer(step, 36, 2)
    assert response.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert response.error_message == "Authentication failed: Invalid username or password"
    assert auth.state is State.FAILED


def test_unsupported_mechanism() -> None:
    step = handshake(authenticator(), "GSSAPI")
    response = answer(step, 17, 1)
    assert response.error_code == ErrorCode.UNSUPPORTED_SASL_MECHANISM
    assert step.failure is not None


def test_other_requests_before_authentication_fail() -> None:
    step = authenticator().receive(frame(3, 1, MetadataRequest(topics=[])))
    assert step.failure is not None and "api key 3" in step.failure


def test_scram_with_session_lifetime() -> None:
    auth = authenticator()
    handshake(auth, "SCRAM-SHA-256")
    client = ScramClient("SCRAM-SHA-256", "carol", "carol-secret")
    first = answer(authenticate(auth, client.first()), 36, 2)
    step = authenticate(auth, client.final(first.auth_bytes))
    final = answer(step, 36, 2)
    client.verify(final.auth_bytes)
    assert step.authenticated and str(auth.principal) == "User:carol"
    assert final.session_lifetime_ms == 60_000
    assert auth.session_expiry_ms == NOW + 60_000
    assert not auth.session_expired(NOW + 59_999) and auth.session_expired(NOW + 60_000)


def test_bare_tokens_after_handshake_v0() -> None:
    auth = authenticator()
    handshake(auth, "SCRAM-SHA-256", version=0)
    assert auth.state is State.RAW
    client = ScramClient("SCRAM-SHA-256", "carol", "carol-secret")
    step = auth.receive(client.first())
    data = b"".join(bytes(c) for c in step.respond or [])
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    step = auth.receive(client.final(data[4:]))
    final = b"".join(bytes(c) for c in step.respond or [])
    client.verify(final[4:])
    assert step.authenticated


def test_bare_plain_failure_closes_without_an_answer() -> None:
    auth = authenticator()
    handshake(auth, "PLAIN", version=0)
    step = auth.receive(client_message("alice", "nope"))
    assert step.failure is not None and step.failure_response is None


def unsigned(claims: dict[str, object]) -> str:
    def b64(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none'})}.{b64(claims)}."


def test_oauthbearer_lifetime_follows_the_token_and_expired_tokens_fail() -> None:
    auth = authenticator()
    handshake(auth, "OAUTHBEARER")
    token = unsigned({"sub": "svc", "exp": NOW / 1000 + 30})
    step = authenticate(auth, client_response(token))
    assert step.authenticated
    assert answer(step, 36, 2).session_lifetime_ms == 30_000

    expired = authenticator()
    handshake(expired, "OAUTHBEARER")
    challenge = answer(
        authenticate(expired, client_response(unsigned({"sub": "svc", "exp": 1}))), 36, 2
    )
    assert json.loads(challenge.auth_bytes) == {"status": "invalid_token"}
    step = authenticate(expired, b"\x01")
    response = answer(step, 36, 2)
    assert response.error_code == ErrorCode.SASL_AUTHENTICATION_FAILED
    assert "invalid_token" in response.error_message
    assert "expired" in (step.failure or "")


def test_reauthentication_keeps_mechanism_and_principal() -> None:
    auth = authenticator()
    handshake(auth, "PLAIN")
    authenticate(auth, client_message("alice", "alice-secret"), version=1)
    assert auth.supports_reauth
    assert auth.begin_reauthentication()
    handshake(auth, "PLAIN")
    step = authenticate(auth, client_message("alice", "alice-secret"), version=1)
    assert step.authenticated and str(auth.principal) == "User:alice"
    # Another principal: refused.
    assert auth.begin_reauthentication()
    handshake(auth, "PLAIN")
    step = authenticate(auth, client_message("bob", "bob-secret"), version=1)
    assert step.failure is not None
    assert "Cannot change principals" in answer(step, 36, 1).error_message


def test_reauthentication_with_another_mechanism_fails() -> None:
    auth = authenticator()
    handshake(auth, "PLAIN")
    authenticate(auth, client_message("alice", "alice-secret"), version=1)
    assert auth.begin_reauthentication()
    assert answer(handshake(auth, "SCRAM-SHA-256"), 17, 1).error_code == ErrorCode.NONE
    step = authenticate(auth, b"n,,n=alice,r=x", version=1)
    assert "not supported for re-authentication" in answer(step, 36, 1).error_message


def test_no_reauthentication_for_clients_that_used_version_0() -> None:
    auth = authenticator()
    handshake(auth, "PLAIN")
    authenticate(auth, client_message("alice", "alice-secret"), version=0)
    assert not auth.begin_reauthentication()
