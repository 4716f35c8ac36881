"""One Kafka-protocol connection from this broker to another: the fetchers' connection to a
leader, the transaction coordinator's to partition leaders (WriteTxnMarkers) and the
controller's to every broker (LeaderAndIsr, StopReplica).

A connection carries one request at a time (the callers keep their own order) and is opened
with an ApiVersions exchange, which tells the caller the versions the other broker handles.
On a SASL listener it then authenticates, and authenticates again on the same connection
(KIP-368) before the session the other broker granted ends: the first request after 85-95 %
of the session lifetime (picked at random, as Kafka's clients do, so that connections opened
together do not all re-authenticate at once) is preceded by a new SaslHandshake and
SaslAuthenticate exchange.
Timeouts use `asyncio.timeout`, never `asyncio.wait_for`: on Python 3.11 `wait_for` swallows a
cancellation that arrives as its inner await completes, and a caller's loop would run on after
being stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import struct
import time
from collections.abc import Callable
from typing import Any

from strom.protocol.errors import ErrorCode, ProtocolError
from strom.protocol.framing import decode_response, encode_request
from strom.protocol.messages.api_versions_request import ApiVersionsRequest
from strom.protocol.messages.sasl_authenticate_request import SaslAuthenticateRequest
from strom.protocol.messages.sasl_handshake_request import SaslHandshakeRequest
from strom.security.client import ClientSecurity
from strom.security.sasl_client import SaslClient, SaslClientError
from strom.security.scram import ScramError

API_VERSIONS = 18
API_VERSIONS_VERSION = 3
SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36

_SIZE = struct.Struct(">i")

# api key -> (min version, max version) the other broker handles
ApiVersionRanges = dict[int, tuple[int, int]]


class BrokerConnection:
    """Send a request, read its response (one at a time)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client_id: str):
        self.reader = reader
        self.writer = writer
        self.client_id = client_id
        self._correlation = itertools.count(1)
        # SASL: a new client per (re-)authentication, the other broker's versions, and when
        # (time.monotonic()) to authenticate again; None when the session does not end.
        self._sasl: Callable[[], SaslClient | None] | None = None
        self._versions: ApiVersionRanges = {}
        self.reauthenticate_at: float | None = None
        self.reauthentications = 0

    async def authenticate(
        self,
        sasl: Callable[[], SaslClient | None],
        versions: ApiVersionRanges,
        timeout_s: float,
    ) -> None:
        self._sasl = sasl
        self._versions = versions
        await self._authenticate(timeout_s)

    async def _authenticate(self, timeout_s: float) -> None:
        assert self._sasl is not None
        client = self._sasl()
        if client is None:
            return
        lifetime_ms = await _authenticate(self, client, self._versions, timeout_s)
        self.reauthenticate_at = (
            time.monotonic() + lifetime_ms / 1000 * random.uniform(0.85, 0.95)
            if lifetime_ms > 0
            else None
        )

    async def call(self, api_key: int, version: int, request: Any, timeout_s: float) -> Any:
        if self.reauthenticate_at is not None and time.monotonic() >= self.reauthenticate_at:
            self.reauthenticate_at = None
            await self._authenticate(timeout_s)
            self.reauthentications += 1
        return await self._call(api_key, version, request, timeout_s)

    async def _call(self, api_key: int, version: int, request: Any, timeout_s: float) -> Any:
        correlation_id = next(self._correlation)
        chunks = encode_request(api_key, version, correlation_id, self.client_id, request)
        self.writer.write(b"".join(chunks))

        async def exchange() -> Any:
            await self.writer.drain()
            try:
                (size,) = _SIZE.unpack(await self.reader.readexactly(4))
                if size < 4:
                    raise ProtocolError(f"response frame of {size} bytes")
                frame = await self.reader.readexactly(size)
            except asyncio.IncompleteReadError as exc:
                # An EOFError, not an OSError: callers catch connection trouble as OSError.
                raise ConnectionError(f"connection closed by the broker ({exc!r})") from exc
            got, response = decode_response(api_key, version, frame)
            if got != correlation_id:
                raise ProtocolError(f"correlation id {got}, expected {correlation_id}")
            return response

        async with asyncio.timeout(timeout_s):
            return await exchange()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def connect_to_broker(
    host: str,
    port: int,
    client_id: str,
    connect_timeout_s: float,
    request_timeout_s: float,
    security: ClientSecurity | None = None,
) -> tuple[BrokerConnection, ApiVersionRanges]:
    """Open a connection (TLS when the listener's protocol says so) and ask ApiVersions;
    raises OSError (ssl.SSLError for a failed TLS handshake), TimeoutError or ProtocolError
    (the connection is closed then)."""
    context = security.ssl_context if security is not None else None
    async with asyncio.timeout(connect_timeout_s):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context is not None else None
        )
    connection = BrokerConnection(reader, writer, client_id)
    try:
        response = await connection.call(
            API_VERSIONS, API_VERSIONS_VERSION, ApiVersionsRequest(), request_timeout_s
        )
        if response.error_code != ErrorCode.NONE:
            raise ProtocolError(f"ApiVersions answered error {response.error_code}")
        versions = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
        if security is not None and security.sasl_mechanism is not None:
            await connection.authenticate(security.sasl_client, versions, request_timeout_s)
    except BaseException:
        await connection.close()
        raise
    return connection, versions


async def _authenticate(
    connection: BrokerConnection, client: SaslClient, versions: ApiVersionRanges, timeout_s: float
) -> int:
    """SaslHandshake v1, then SaslAuthenticate until the mechanism is done; returns the session
    lifetime in ms the other broker granted (0: no end). Raises ConnectionError when the other
    broker refuses (callers retry as after a lost connection)."""
    handshake = await connection._call(
        SASL_HANDSHAKE, 1, SaslHandshakeRequest(client.mechanism), timeout_s
    )
    if handshake.error_code != ErrorCode.NONE:
        raise ConnectionError(
            f"SASL handshake for {client.mechanism} refused: "
            f"{ErrorCode(handshake.error_code).name} (it offers {handshake.mechanisms})"
        )
    version = min(versions.get(SASL_AUTHENTICATE, (0, 2))[1], 2)
    token: bytes | None = client.initial()
    lifetime_ms = 0
    while token is not None:
        response = await connection._call(
            SASL_AUTHENTICATE, version, SaslAuthenticateRequest(token), timeout_s
        )
        if response.error_code != ErrorCode.NONE:
            raise ConnectionError(
                f"SASL {client.mechanism} authentication failed: {response.error_message}"
            )
        lifetime_ms = response.session_lifetime_ms if version >= 1 else 0
        try:
            token = client.step(bytes(response.auth_bytes))
        except (SaslClientError, ScramError) as exc:
            raise ConnectionError(f"SASL {client.mechanism} authentication failed: {exc}") from None
    return lifetime_ms
