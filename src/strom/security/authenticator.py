"""SASL authentication of one connection, before any request reaches the dispatcher: a state
machine without I/O (Kafka's SaslServerAuthenticator). The network layer hands it each frame
while it is authenticating and carries out what it answers (`Step`).

    INITIAL --ApiVersions--> INITIAL (answered by the dispatcher)
    INITIAL --SaslHandshake v1--> AUTHENTICATE --SaslAuthenticate...--> COMPLETE
    INITIAL --SaslHandshake v0--> RAW --size-prefixed SASL tokens...--> COMPLETE
    any state --anything else, a refused mechanism or credential--> FAILED (close)
    COMPLETE --SaslHandshake (client used SaslAuthenticate v1+)--> REAUTHENTICATE
             --SaslAuthenticate...--> COMPLETE, same mechanism and principal (KIP-368)

A failed authentication is answered (SaslHandshake: UNSUPPORTED_SASL_MECHANISM;
SaslAuthenticate: SASL_AUTHENTICATION_FAILED with a message that never says whether the user or
the password was wrong) after `connection.failed.authentication.delay.ms`, and the connection
closes. The session lifetime sent in SaslAuthenticate v1+ is the shorter of
`connections.max.reauth.ms` and the OAUTHBEARER token's remaining life; a client that has not
re-authenticated by then is disconnected at its next request.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from strom.protocol.errors import ErrorCode, ProtocolError
from strom.protocol.framing import encode_response, parse_request
from strom.protocol.messages.sasl_authenticate_request import SaslAuthenticateRequest
from strom.protocol.messages.sasl_authenticate_response import SaslAuthenticateResponse
from strom.protocol.messages.sasl_handshake_request import SaslHandshakeRequest
from strom.protocol.messages.sasl_handshake_response import SaslHandshakeResponse
from strom.protocol.primitives import Reader
from strom.security.oauthbearer import OAuthBearerServer, OAuthError
from strom.security.plain import PlainError, PlainServer
from strom.security.principal import USER_TYPE, KafkaPrincipal
from strom.security.sasl_config import SaslListenerSettings
from strom.security.scram import ScramCredential, ScramError, ScramServer

SASL_HANDSHAKE = 17
API_VERSIONS = 18
SASL_AUTHENTICATE = 36
HANDSHAKE_VERSIONS = (0, 1)
AUTHENTICATE_VERSIONS = (0, 2)

# (user, mechanism) -> the stored credential, None when there is none
ScramLookup = Callable[[str, str], ScramCredential | None]
Chunks = list[bytes | memoryview]


class State(enum.Enum):
    INITIAL = "initial"
    AUTHENTICATE = "authenticate"  # SaslAuthenticate requests (handshake v1)
    RAW = "raw"  # bare SASL tokens (handshake v0)
    COMPLETE = "complete"
    REAUTHENTICATE = "reauthenticate"  # expecting the SaslHandshake of a re-authentication
    FAILED = "failed"


@dataclass
class Step:
    """What the network layer does with a frame."""

    respond: Chunks | None = None  # write this now
    dispatch: bool = False  # hand the frame to the dispatcher (ApiVersions)
    authenticated: bool = False  # the (re-)authentication just completed
    # Failed: log `failure`, then after the delay write `failure_response` (if any) and close.
    failure: str | None = None
    failure_response: Chunks | None = None
    delay_ms: int = 0


_GENERIC = (
    "Authentication failed during {what} due to invalid credentials with SASL mechanism {mechanism}"
)


@dataclass
class SaslAuthenticator:
    settings: SaslListenerSettings
    scram_lookup: ScramLookup
    clock_ms: Callable[[], int]
    protocol: str = "SASL_PLAINTEXT"
    # Salts of made-up SCRAM credentials for unknown users derive from it.
    unknown_user_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    state: State = State.INITIAL
    mechanism: str | None = None
    principal: KafkaPrincipal | None = None
    # When the session ends (ms since the epoch), None for never.
    session_expiry_ms: int | None = None
    # Whether the client used SaslAuthenticate v1+ (and so can re-authenticate).
    supports_reauth: bool = False
    _server: PlainServer | ScramServer | OAuthBearerServer | None = None
    _reauthenticating: bool = False
    # A re-authentication asked for another mechanism: why its next request fails.
    _bad_reauth: str | None = None

    @property
    def authenticating(self) -> bool:
        return self.state not in (State.COMPLETE, State.FAILED)

    @property
    def max_receive_bytes(self) -> int:
        return self.settings.max_receive_bytes

    def session_expired(self, now_ms: int) -> bool:
        return self.session_expiry_ms is not None and now_ms >= self.session_expiry_ms

    def begin_reauthentication(self) -> bool:
        """A SaslHandshake arrived on an authenticated connection: True when it starts a
        re-authentication (otherwise the dispatcher answers ILLEGAL_SASL_STATE)."""
        if self.state is not State.COMPLETE or not self.supports_reauth:
            return False
        self.state = State.REAUTHENTICATE
        self._reauthenticating = True
        return True

    # -- frames -----------------------------------------------------------------------------

    def receive(self, frame: bytes | bytearray | memoryview) -> Step:
        if self.state is State.RAW:
            return self._token(bytes(frame), None)
        try:
            parsed = parse_request(memoryview(frame))
        except ProtocolError as exc:
            return self._fail(f"malformed request during SASL authentication: {exc}")
        key, version = parsed.api_key, parsed.api_version
        if key == API_VERSIONS and self.state is State.INITIAL:
            return Step(dispatch=True)
        if key == SASL_HANDSHAKE and self.state in (State.INITIAL, State.REAUTHENTICATE):
            return self._handshake(parsed.body, version, parsed.correlation_id)
        if key == SASL_AUTHENTICATE and self.state is State.AUTHENTICATE:
            if not AUTHENTICATE_VERSIONS[0] <= version <= AUTHENTICATE_VERSIONS[1]:
                return self._fail(f"SaslAuthenticate version {version} is not supported")
            try:
                request = SaslAuthenticateRequest.read(Reader(parsed.body), version)
            except ProtocolError as exc:
                return self._fail(f"malformed SaslAuthenticate request: {exc}")
            self.supports_reauth = self.supports_reauth or version > 0
            return self._token(bytes(request.auth_bytes), (version, parsed.correlation_id))
        return self._fail(
            f"unexpected request (api key {key}) during SASL {self._what()} in state "
            f"{self.state.value}"
        )

    def _what(self) -> str:
        return "re-authentication" if self._reauthenticating else "authentication"

    def _handshake(self, body: memoryview, version: int, correlation_id: int) -> Step:
        if not HANDSHAKE_VERSIONS[0] <= version <= HANDSHAKE_VERSIONS[1]:
            return self._fail(f"SaslHandshake version {version} is not supported")
        try:
            request = SaslHandshakeRequest.read(Reader(body), version)
        except ProtocolError as exc:
            return self._fail(f"malformed SaslHandshake request: {exc}")
        mechanism = request.mechanism
        enabled = list(self.settings.mechanisms)

        def answer(code: ErrorCode) -> Chunks:
            response = SaslHandshakeResponse(error_code=code, mechanisms=enabled)
            return encode_response(SASL_HANDSHAKE, version, correlation_id, response)

        if mechanism not in enabled:
            return self._fail(
                f"Unsupported SASL mechanism {mechanism}",
                answer(ErrorCode.UNSUPPORTED_SASL_MECHANISM),
            )
        if self._reauthenticating and mechanism != self.mechanism:
            # Kafka answers the handshake and fails the next request; it is told the reason.
            self.state = State.AUTHENTICATE
            self._server = None
            self._bad_reauth = (
                f"SASL mechanism '{mechanism}' requested by client is not supported for "
                f"re-authentication of mechanism '{self.mechanism}'"
            )
            return Step(respond=answer(ErrorCode.NONE))
        self._bad_reauth = None
        self.mechanism = mechanism
        self._server = self._new_server(mechanism)
        self.state = State.AUTHENTICATE if version >= 1 else State.RAW
        return Step(respond=answer(ErrorCode.NONE))

    def _new_server(self, mechanism: str) -> PlainServer | ScramServer | OAuthBearerServer:
        if mechanism == "PLAIN":
            return PlainServer(self.settings.plain_users)
        if mechanism == "OAUTHBEARER":
            assert self.settings.oauth_validator is not None
            return OAuthBearerServer(self.settings.oauth_validator, self.clock_ms)
        return ScramServer(
            mechanism, lambda user: self.scram_lookup(user, mechanism), self.unknown_user_secret
        )

    def _token(self, token: bytes, framing: tuple[int, int] | None) -> Step:
        """A SASL token: in a SaslAuthenticate request (framing = version, correlation id) or
        bare (handshake v0)."""

        def reply(response: SaslAuthenticateResponse) -> Chunks:
            assert framing is not None
            return encode_response(SASL_AUTHENTICATE, framing[0], framing[1], response)

        server = self._server
        if server is None:
            message = self._bad_reauth or "SASL token without a handshake"
            return self._fail(
                message,
                reply(SaslAuthenticateResponse(ErrorCode.SASL_AUTHENTICATION_FAILED, message))
                if framing
                else None,
            )
        try:
            challenge = server.evaluate(token)
        except (PlainError, ScramError, OAuthError) as exc:
            message = str(exc)
            if isinstance(exc, ScramError):
                message = _GENERIC.format(what=self._what(), mechanism=self.mechanism)
            reason = message
            if isinstance(server, OAuthBearerServer) and server.rejection:
                reason = f"{message} ({server.rejection})"
            return self._fail(
                reason,
                reply(SaslAuthenticateResponse(ErrorCode.SASL_AUTHENTICATION_FAILED, message))
                if framing
                else None,
            )
        if not server.complete:
            if framing is None:
                return Step(respond=[len(challenge).to_bytes(4, "big"), challenge])
            return Step(respond=reply(SaslAuthenticateResponse(auth_bytes=challenge)))
        principal = self._principal_of(server)
        if self._reauthenticating and principal != self.principal:
            assert self.principal is not None
            message = (
                f"Cannot change principals during re-authentication from "
                f"{self.principal.principal_type}.{self.principal.name}: "
                f"{principal.principal_type}.{principal.name}"
            )
            return self._fail(
                message,
                reply(SaslAuthenticateResponse(ErrorCode.SASL_AUTHENTICATION_FAILED, message))
                if framing
                else None,
            )
        lifetime_ms = self._session_lifetime_ms(server)
        self.principal = principal
        self.state = State.COMPLETE
        self._server = None
        if framing is None:
            return Step(respond=[len(challenge).to_bytes(4, "big"), challenge], authenticated=True)
        return Step(
            respond=reply(
                SaslAuthenticateResponse(auth_bytes=challenge, session_lifetime_ms=lifetime_ms)
            ),
            authenticated=True,
        )

    def _principal_of(
        self, server: PlainServer | ScramServer | OAuthBearerServer
    ) -> KafkaPrincipal:
        if isinstance(server, OAuthBearerServer):
            assert server.token is not None
            name = server.token.principal
        else:
            assert server.user is not None
            name = server.user
        return KafkaPrincipal(USER_TYPE, name, f"{self.protocol}/{self.mechanism}")

    def _session_lifetime_ms(self, server: PlainServer | ScramServer | OAuthBearerServer) -> int:
        """Kafka's rule: the shorter of connections.max.reauth.ms (when > 0) and the
        credential's remaining life; 0 (and no expiry) when neither applies."""
        now = self.clock_ms()
        assert self.mechanism is not None
        max_reauth = self.settings.reauth_ms.get(self.mechanism, 0)
        credential_expiry = (
            server.token.expires_ms
            if isinstance(server, OAuthBearerServer) and server.token is not None
            else None
        )
        if credential_expiry is None and max_reauth <= 0:
            self.session_expiry_ms = None
            return 0
        if credential_expiry is None:
            lifetime = max_reauth
        elif max_reauth <= 0:
            lifetime = max(0, credential_expiry - now)
        else:
            lifetime = max(0, min(credential_expiry - now, max_reauth))
        self.session_expiry_ms = now + lifetime
        return lifetime

    def _fail(self, reason: str, response: Chunks | None = None) -> Step:
        self.state = State.FAILED
        self._server = None
        return Step(
            failure=reason, failure_response=response, delay_ms=self.settings.failed_delay_ms
        )
