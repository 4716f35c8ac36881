"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses them: credentials, the
server's side of the exchange, and the client's side (a broker authenticating to another).

A credential is stored salted and hashed, never the password: `salt`, `stored_key` =
H(HMAC(SaltedPassword, "Client Key")), `server_key` = HMAC(SaltedPassword, "Server Key") and
the iteration count, written as Kafka writes it:
`salt=<base64>,stored_key=<base64>,server_key=<base64>,iterations=4096`.

Exchange (the gs2 header "n,," only, no channel binding, as Kafka):
    client-first  n,,n=<user>,r=<client nonce>[,<extensions>]
    server-first  r=<client nonce><server nonce>,s=<salt>,i=<iterations>
    client-final  c=biws,r=<nonce>,p=<proof>
    server-final  v=<server signature>
An unknown user gets a server-first message with a salt derived from its name, like a known
one, and fails at the proof like a wrong password: the answer never tells which was wrong.
Proofs are compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MIN_ITERATIONS = 4096
# AlterUserScramCredentials refuses more (Kafka's limit).
MAX_ITERATIONS = 16384

_SASLNAME = r"(?:[\x01-\x2b\x2d-\x3c\x3e-\x7f]|=2C|=3D)+"
_PRINTABLE = r"[\x21-\x2b\x2d-\x7e]+"
_VALUE = r"[\x01-\x2b\x2d-\x7f]+"
_B64 = r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)?"
_CLIENT_FIRST = re.compile(
    rf"n,(?:a=(?P<authzid>{_SASLNAME}))?,(?P<bare>(?:m={_VALUE},)?n=(?P<name>{_SASLNAME}),"
    rf"r=(?P<nonce>{_PRINTABLE})(?P<ext>(?:,[A-Za-z]+={_VALUE})*))"
)
_CLIENT_FINAL = re.compile(
    rf"(?P<without>c=(?P<cbind>{_B64}),r=(?P<nonce>{_PRINTABLE})(?:,[A-Za-z]+={_VALUE})*),"
    rf"p=(?P<proof>{_B64})"
)
_SERVER_FIRST = re.compile(
    rf"(?:m={_VALUE},)?r=(?P<nonce>{_PRINTABLE}),s=(?P<salt>{_B64}),i=(?P<iterations>[0-9]+)"
    rf"(?:,[A-Za-z]+={_VALUE})*"
)
_SERVER_FINAL = re.compile(rf"(?:e=(?P<error>{_VALUE})|v=(?P<signature>{_B64}))(?:,.*)?")


class ScramError(Exception):
    """The exchange failed; `str()` is safe to send to the client."""


@dataclass(frozen=True)
class ScramCredential:
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    def to_kafka(self) -> str:
        b64 = base64.b64encode
        return (
            f"salt={b64(self.salt).decode()},stored_key={b64(self.stored_key).decode()},"
            f"server_key={b64(self.server_key).decode()},iterations={self.iterations}"
        )

    @classmethod
    def from_kafka(cls, text: str) -> ScramCredential:
        """Parses Kafka's form; raises ValueError."""
        fields = dict(item.split("=", 1) for item in text.split(",") if "=" in item)
        try:
            return cls(
                base64.b64decode(fields["salt"], validate=True),
                base64.b64decode(fields["stored_key"], validate=True),
                base64.b64decode(fields["server_key"], validate=True),
                int(fields["iterations"]),
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"not a SCRAM credential: {exc}") from None


def _hash_name(mechanism: str) -> str:
    try:
        return MECHANISMS[mechanism]
    except KeyError:
        raise ValueError(f"unknown SCRAM mechanism {mechanism}") from None


def salted_password(mechanism: str, password: str, salt: bytes, iterations: int) -> bytes:
    """Hi(password, salt, i): PBKDF2 with the mechanism's HMAC."""
    return hashlib.pbkdf2_hmac(_hash_name(mechanism), password.encode(), salt, iterations)


def credential_from_salted(
    mechanism: str, salt: bytes, salted: bytes, iterations: int
) -> ScramCredential:
    name = _hash_name(mechanism)
    client_key = hmac.new(salted, b"Client Key", name).digest()
    stored_key = hashlib.new(name, client_key).digest()
    server_key = hmac.new(salted, b"Server Key", name).digest()
    return ScramCredential(salt, stored_key, server_key, iterations)


def make_credential(
    mechanism: str, password: str, iterations: int = MIN_ITERATIONS, salt: bytes | None = None
) -> ScramCredential:
    salt = salt if salt is not None else secrets.token_bytes(32)
    return credential_from_salted(
        mechanism, salt, salted_password(mechanism, password, salt, iterations), iterations
    )


def sasl_name_to_user(name: str) -> str:
    """RFC 5802 saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is invalid."""
    user = name.replace("=2C", ",")
    if "=" in user.replace("=3D", ""):
        raise ScramError(f"Invalid username: {name}")
    return user.replace("=3D", "=")


def user_to_sasl_name(user: str) -> str:
    return user.replace("=", "=3D").replace(",", "=2C")


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


class ScramServer:
    """The server's side of one exchange; `evaluate` takes each client message in turn."""

    def __init__(
        self,
        mechanism: str,
        lookup: Callable[[str], ScramCredential | None],
        unknown_user_secret: bytes,
        server_nonce: str | None = None,
    ) -> None:
        self.mechanism = mechanism
        self._server_nonce = server_nonce
        self._hash = _hash_name(mechanism)
        self._lookup = lookup
        self._secret = unknown_user_secret
        self._state = "first"
        self._credential: ScramCredential | None = None
        self._known = False
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self.user: str | None = None
        self.complete = False

    def _fail(self) -> ScramError:
        self._state = "failed"
        self._credential = None
        return ScramError(
            "Authentication failed during authentication due to invalid credentials with SASL "
            f"mechanism {self.mechanism}"
        )

    def evaluate(self, message: bytes) -> bytes:
        if self._state == "first":
            return self._client_first(message)
        if self._state == "final":
            return self._client_final(message)
        raise ScramError(f"Unexpected SCRAM message in state {self._state}")

    def _client_first(self, message: bytes) -> bytes:
        m = _CLIENT_FIRST.fullmatch(message.decode("utf-8", "replace"))
        if m is None:
            raise self._fail()
        try:
            user = sasl_name_to_user(m["name"])
        except ScramError:
            raise self._fail() from None
        authzid = m["authzid"]
        if authzid and sasl_name_to_user(authzid) != user:
            self._state = "failed"
            raise ScramError(
                "Authentication failed: Client requested an authorization id that is "
                "different from username"
            )
        credential = self._lookup(user)
        self._known = credential is not None and credential.iterations >= MIN_ITERATIONS
        if credential is None or not self._known:
            # A made-up credential with a salt that stays the same for this name.
            salt = hmac.new(self._secret, user.encode(), "sha256").digest()
            credential = ScramCredential(salt, b"", b"", MIN_ITERATIONS)
        self._credential = credential
        self.user = user
        self._client_first_bare = m["bare"]
        self._nonce = m["nonce"] + (self._server_nonce or secrets.token_urlsafe(18))
        salt_text = base64.b64encode(credential.salt).decode()
        self._server_first = f"r={self._nonce},s={salt_text},i={credential.iterations}"
        self._state = "final"
        return self._server_first.encode()

    def _client_final(self, message: bytes) -> bytes:
        m = _CLIENT_FINAL.fullmatch(message.decode("utf-8", "replace"))
        credential = self._credential
        # Kafka only checks that the client's nonce ends with the one it sent: librdkafka
        # before 2.2 sends its own nonce in front of the whole combined one.
        if m is None or credential is None or not m["nonce"].endswith(self._nonce):
            raise self._fail()
        auth_message = f"{self._client_first_bare},{self._server_first},{m['without']}".encode()
        proof = base64.b64decode(m["proof"])
        signature = hmac.new(credential.stored_key or b"\0", auth_message, self._hash).digest()
        if len(proof) != len(signature):
            raise self._fail()
        computed = hashlib.new(self._hash, _xor(signature, proof)).digest()
        # Compared even for an unknown user, so that its answer takes the same time.
        matches = hmac.compare_digest(computed, credential.stored_key or bytes(len(computed)))
        if not (matches and self._known):
            raise self._fail()
        server_signature = hmac.new(credential.server_key, auth_message, self._hash).digest()
        self._credential = None
        self._state = "complete"
        self.complete = True
        return b"v=" + base64.b64encode(server_signature)


class ScramClient:
    """The client's side, for a broker that authenticates to another with SCRAM."""

    def __init__(self, mechanism: str, user: str, password: str, nonce: str | None = None) -> None:
        self.mechanism = mechanism
        self._hash = _hash_name(mechanism)
        self._password = password
        self._nonce = nonce or secrets.token_urlsafe(24)
        self._bare = f"n={user_to_sasl_name(user)},r={self._nonce}"
        self._server_signature = b""

    def first(self) -> bytes:
        return f"n,,{self._bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode("utf-8", "replace")
        m = _SERVER_FIRST.fullmatch(text)
        if m is None or not m["nonce"].startswith(self._nonce):
            raise ScramError(f"Invalid SCRAM server first message: {text}")
        iterations = int(m["iterations"])
        if iterations < MIN_ITERATIONS:
            raise ScramError(f"Iterations {iterations} is less than the minimum {MIN_ITERATIONS}")
        salted = salted_password(
            self.mechanism, self._password, base64.b64decode(m["salt"]), iterations
        )
        without_proof = f"c=biws,r={m['nonce']}"
        auth_message = f"{self._bare},{text},{without_proof}".encode()
        client_key = hmac.new(salted, b"Client Key", self._hash).digest()
        stored_key = hashlib.new(self._hash, client_key).digest()
        proof = _xor(client_key, hmac.new(stored_key, auth_message, self._hash).digest())
        server_key = hmac.new(salted, b"Server Key", self._hash).digest()
        self._server_signature = hmac.new(server_key, auth_message, self._hash).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        m = _SERVER_FINAL.fullmatch(server_final.decode("utf-8", "replace"))
        if m is None or m["error"]:
            raise ScramError(f"SCRAM failed: {m['error'] if m else server_final!r}")
        if not hmac.compare_digest(base64.b64decode(m["signature"]), self._server_signature):
            raise ScramError("Invalid server signature in SCRAM server final message")
