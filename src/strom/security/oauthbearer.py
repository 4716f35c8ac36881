"""SASL/OAUTHBEARER (RFC 7628, KIP-255, KIP-768) as Kafka's broker validates it.

The client's message is `n,[a=<authzid>],^Aauth=Bearer <token>^A[<key>=<value>^A...]^A`.
Two validators, chosen as in Kafka by the listener's
`oauthbearer.sasl.server.callback.handler.class`:
- unset: unsecured JWTs (`{"alg":"none"}`, development only), checked with the JAAS options
  `unsecuredValidatorPrincipalClaimName` (sub), `unsecuredValidatorScopeClaimName` (scope),
  `unsecuredValidatorRequiredScope` (space-separated) and
  `unsecuredValidatorAllowableClockSkewMs` (0);
- `...OAuthBearerValidatorCallbackHandler`: signed JWTs checked by PyJWT against the JSON Web
  Key Set at `sasl.oauthbearer.jwks.endpoint.url` (a file: URL, read again when the file
  changes): a key of the token's `kid`, no `none` algorithm, `exp` and `iat` required,
  `sasl.oauthbearer.expected.audience` / `.expected.issuer` when set, the principal from
  `sasl.oauthbearer.sub.claim.name`, `sasl.oauthbearer.clock.skew.seconds` of tolerance.
A rejected token gets the JSON error `{"status":"invalid_token"}` (or `insufficient_scope`) as
a challenge; the client answers with `^A` and the exchange fails with that message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEP = "\x01"
_AUTH = re.compile(r"(?P<scheme>\w+) +(?P<token>[-_.a-zA-Z0-9]+)")
_KEY = re.compile(r"[A-Za-z]+")
VALIDATOR_CLASSES = (
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
    "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerValidatorCallbackHandler",
)


class OAuthError(Exception):
    """The exchange failed; `str()` is what the client is told."""


class TokenRejected(Exception):
    def __init__(self, reason: str, status: str = "invalid_token", scope: str | None = None):
        super().__init__(reason)
        self.status = status
        self.scope = scope

    def json(self) -> str:
        doc: dict[str, str] = {"status": self.status}
        if self.scope is not None:
            doc["scope"] = self.scope
        return json.dumps(doc, separators=(",", ":"))


@dataclass(frozen=True)
class OAuthToken:
    principal: str
    expires_ms: int
    scopes: frozenset[str] = frozenset()


def parse_client_response(message: bytes) -> tuple[str, str, dict[str, str]]:
    """(token, authorization id, extensions); raises OAuthError."""
    text = message.decode("utf-8", "replace")
    if not text.startswith("n,"):
        raise OAuthError("Invalid OAUTHBEARER client first message")
    header, sep, rest = text[2:].partition(",")
    if not sep or (header and not header.startswith("a=")):
        raise OAuthError("Invalid OAUTHBEARER client first message")
    authzid = header[2:]
    if not rest.startswith(SEP) or not rest.endswith(SEP + SEP):
        raise OAuthError("Invalid OAUTHBEARER client first message")
    pairs: dict[str, str] = {}
    for item in rest[1:-2].split(SEP):
        key, eq, value = item.partition("=")
        if not eq or _KEY.fullmatch(key) is None:
            raise OAuthError("Invalid OAUTHBEARER client first message")
        pairs[key] = value
    auth = pairs.pop("auth", None)
    m = _AUTH.fullmatch(auth or "")
    if m is None or m["scheme"].lower() != "bearer":
        raise OAuthError("Invalid OAUTHBEARER client first message: no bearer token")
    return m["token"], authzid, pairs


def client_response(token: str, extensions: dict[str, str] | None = None) -> bytes:
    pairs = "".join(f"{k}={v}{SEP}" for k, v in (extensions or {}).items())
    return f"n,,{SEP}auth=Bearer {token}{SEP}{pairs}{SEP}".encode()


def _b64url_json(part: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        doc = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise TokenRejected(f"the token's {what} is not base64url JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise TokenRejected(f"the token's {what} is not a JSON object")
    return doc


def _scopes(value: object) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    return frozenset()


@dataclass
class UnsecuredValidator:
    principal_claim: str = "sub"
    scope_claim: str = "scope"
    required_scope: tuple[str, ...] = ()
    clock_skew_ms: int = 0

    @classmethod
    def from_options(cls, options: dict[str, str]) -> UnsecuredValidator:
        skew = (options.get("unsecuredValidatorAllowableClockSkewMs") or "0").strip()
        if not skew.isdigit():
            raise ValueError(f"Allowable clock skew millis must not be negative: {skew}")
        return cls(
            (options.get("unsecuredValidatorPrincipalClaimName") or "").strip() or "sub",
            (options.get("unsecuredValidatorScopeClaimName") or "").strip() or "scope",
            tuple((options.get("unsecuredValidatorRequiredScope") or "").split()),
            int(skew),
        )

    def validate(self, token: str, now_ms: int) -> OAuthToken:
        parts = token.split(".")
        if len(parts) != 3 or parts[2]:
            raise TokenRejected("not an unsecured JWS (three parts, the last empty)")
        header = _b64url_json(parts[0], "header")
        claims = _b64url_json(parts[1], "claims")
        if header.get("alg") != "none":
            raise TokenRejected("an unsecured JWS must have alg none")
        principal = claims.get(self.principal_claim)
        if not isinstance(principal, str) or not principal.strip():
            raise TokenRejected(f"no {self.principal_claim} claim naming the principal")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise TokenRejected("the exp claim is required")
        expires_ms = int(exp * 1000)
        iat = claims.get("iat")
        if iat is not None:
            if not isinstance(iat, int | float) or isinstance(iat, bool):
                raise TokenRejected("the iat claim must be a number")
            if iat * 1000 > now_ms + self.clock_skew_ms:
                raise TokenRejected("the token is issued in the future")
            if iat * 1000 > expires_ms:
                raise TokenRejected("the token expires before it is issued")
        if now_ms >= expires_ms + self.clock_skew_ms:
            raise TokenRejected("the token has expired")
        scopes = _scopes(claims.get(self.scope_claim))
        missing = [s for s in self.required_scope if s not in scopes]
        if missing:
            raise TokenRejected(
                f"the token lacks the scope {' '.join(missing)}",
                "insufficient_scope",
                " ".join(self.required_scope),
            )
        return OAuthToken(principal, expires_ms, scopes)


@dataclass
class JwksValidator:
    """Signed JWTs against a JSON Web Key Set file (PyJWT)."""

    url: str
    audience: tuple[str, ...] = ()
    issuer: str | None = None
    sub_claim: str = "sub"
    scope_claim: str = "scope"
    clock_skew_s: int = 30
    _stamp: tuple[float, int] | None = field(default=None, init=False)
    _keys: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlparse(self.url)
        if parsed.scheme != "file":
            raise ValueError(
                f"sasl.oauthbearer.jwks.endpoint.url {self.url}: only file: URLs are read"
            )
        self._path = Path(urllib.parse.unquote(parsed.path))
        self._load()

    def _load(self) -> None:
        import jwt

        try:
            st = os.stat(self._path)
        except OSError as exc:
            raise ValueError(f"cannot read the JWKS {self._path}: {exc.strerror}") from None
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return
        try:
            self._keys = jwt.PyJWKSet.from_json(self._path.read_text())
        except (OSError, jwt.PyJWTError, ValueError) as exc:
            raise ValueError(f"cannot read the JWKS {self._path}: {exc}") from None
        self._stamp = stamp

    def validate(self, token: str, now_ms: int) -> OAuthToken:
        import jwt

        try:
            self._load()
        except ValueError as exc:
            raise TokenRejected(str(exc)) from None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"not a JWT: {exc}") from None
        algorithm = header.get("alg")
        if not algorithm or algorithm == "none":
            raise TokenRejected("the token is not signed")
        kid = header.get("kid")
        try:
            key = self._keys[kid] if kid is not None else self._keys.keys[0]
        except (KeyError, IndexError):
            raise TokenRejected(f"no key {kid!r} in the JWKS") from None
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=list(self.audience) or None,
                issuer=self.issuer,
                leeway=self.clock_skew_s,
                options={
                    "require": ["exp", "iat"],
                    "verify_aud": bool(self.audience),
                    "verify_iss": self.issuer is not None,
                    "verify_iat": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"Could not validate the access token: {exc}") from None
        principal = claims.get(self.sub_claim)
        if not isinstance(principal, str) or not principal.strip():
            raise TokenRejected(f"no {self.sub_claim} claim naming the principal")
        del now_ms  # PyJWT checks the times against the clock itself
        return OAuthToken(
            principal, int(claims["exp"] * 1000), _scopes(claims.get(self.scope_claim))
        )


Validator = UnsecuredValidator | JwksValidator


class OAuthBearerServer:
    def __init__(self, validator: Validator, clock_ms: Callable[[], int]) -> None:
        self._validator = validator
        self._clock_ms = clock_ms
        self._error: str | None = None
        self.token: OAuthToken | None = None
        self.complete = False
        self.rejection: str | None = None  # why the token was refused (for the log)

    def evaluate(self, message: bytes) -> bytes:
        if message == SEP.encode() and self._error is not None:
            raise OAuthError(self._error)
        self._error = None
        token, authzid, _extensions = parse_client_response(message)
        try:
            found = self._validator.validate(token, self._clock_ms())
        except TokenRejected as exc:
            self.rejection = str(exc)
            self._error = exc.json()
            return self._error.encode()
        if authzid and authzid != found.principal:
            raise OAuthError(
                f"Authentication failed: Client requested an authorization id ({authzid}) that "
                f"is different from the token's principal name ({found.principal})"
            )
        self.token = found
        self.complete = True
        return b""


def unsecured_token(options: dict[str, str], now_s: float | None = None) -> tuple[str, int]:
    """An unsecured JWT from OAuthBearerLoginModule's unsecuredLogin* options (a broker's
    own token for inter-broker OAUTHBEARER); (token, expiry in ms)."""
    now = time.time() if now_s is None else now_s
    lifetime = int(options.get("unsecuredLoginLifetimeSeconds", "3600"))
    claim = options.get("unsecuredLoginPrincipalClaimName", "sub")
    principal = options.get(f"unsecuredLoginStringClaim_{claim}")
    if not principal:
        raise ValueError(f"OAuthBearerLoginModule needs unsecuredLoginStringClaim_{claim}")
    claims: dict[str, Any] = {claim: principal, "iat": now, "exp": now + lifetime}
    for key, value in options.items():
        if (
            key.startswith("unsecuredLoginStringClaim_")
            and key != f"unsecuredLoginStringClaim_{claim}"
        ):
            claims[key.removeprefix("unsecuredLoginStringClaim_")] = value

    def b64(doc: dict[str, Any]) -> str:
        raw = json.dumps(doc, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{b64({'alg': 'none'})}.{b64(claims)}.", int((now + lifetime) * 1000)
