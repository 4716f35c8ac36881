"""SASL/PLAIN (RFC 4616) against the users of the listener's PlainLoginModule JAAS entry
(`user_<name>="<password>"`), as Kafka's default PLAIN server checks them. A wrong password and
an unknown user get the same answer, after the same constant-time comparison."""

from __future__ import annotations

import hmac
from collections.abc import Mapping


class PlainError(Exception):
    """The exchange failed; `str()` is what the client is told (Kafka's wording)."""


class PlainServer:
    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = users
        self.user: str | None = None
        self.complete = False

    def evaluate(self, message: bytes) -> bytes:
        tokens = message.decode("utf-8", "replace").split("\0")
        if len(tokens) != 3:
            raise PlainError(f"Invalid SASL/PLAIN response: expected 3 tokens, got {len(tokens)}")
        authzid, user, password = tokens
        if not user:
            raise PlainError("Authentication failed: username not specified")
        if not password:
            raise PlainError("Authentication failed: password not specified")
        expected = self._users.get(user)
        known = expected is not None
        # Compared even for an unknown user, so that its answer takes the same time.
        matches = hmac.compare_digest(
            password.encode(), (expected if expected is not None else "\0" * len(password)).encode()
        )
        if not (known and matches):
            raise PlainError("Authentication failed: Invalid username or password")
        if authzid and authzid != user:
            raise PlainError(
                "Authentication failed: Client requested an authorization id that is different "
                "from username"
            )
        self.user = user
        self.complete = True
        return b""


def client_message(user: str, password: str) -> bytes:
    return f"\0{user}\0{password}".encode()
