"""One Kafka-protocol connection from this broker to another: the fetchers' connection to a
leader, the transaction coordinator's to partition leaders (WriteTxnMarkers) and the
controller's to every broker (LeaderAndIsr, StopReplica).

A connection carries one request at a time (the callers keep their own order) and is opened
with an ApiVersions exchange, which tells the caller the versions the other broker handles.
Timeouts use `asyncio.timeout`, never `asyncio.wait_for`: on Python 3.11 `wait_for` swallows a
cancellation that arrives as its inner await completes, and a caller's loop would run on after
being stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
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

    async def call(self, api_key: int, version: int, request: Any, timeout_s: float) -> Any:
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
        client = security.sasl_client() if security is not None else None
        if client is not None:
            await _authenticate(connection, client, versions, request_timeout_s)
    except BaseException:
        await connection.close()
        raise
    return connection, versions


async def _authenticate(
    connection: BrokerConnection, client: SaslClient, versions: ApiVersionRanges, timeout_s: float
) -> None:
    """SaslHandshake v1, then SaslAuthenticate until the mechanism is done; raises
    ConnectionError when the other broker refuses (callers retry as after a lost connection)."""
    handshake = await connection.call(
        SASL_HANDSHAKE, 1, SaslHandshakeRequest(client.mechanism), timeout_s
    )
    if handshake.error_code != ErrorCode.NONE:
        raise ConnectionError(
            f"SASL handshake for {client.mechanism} refused: "
            f"{ErrorCode(handshake.error_code).name} (it offers {handshake.mechanisms})"
        )
    version = min(versions.get(SASL_AUTHENTICATE, (0, 2))[1], 2)
    token: bytes | None = client.initial()
    while token is not None:
        response = await connection.call(
            SASL_AUTHENTICATE, version, SaslAuthenticateRequest(token), timeout_s
        )
        if response.error_code != ErrorCode.NONE:
            raise ConnectionError(
                f"SASL {client.mechanism} authentication failed: {response.error_message}"
            )
        try:
            token = client.step(bytes(response.auth_bytes))
        except (SaslClientError, ScramError) as exc:
            raise ConnectionError(f"SASL {client.mechanism} authentication failed: {exc}") from None
