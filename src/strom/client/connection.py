"""One client connection to a Kafka-protocol broker, with requests pipelined.

Requests go out as soon as they are sent and responses come back in the same order (Kafka
answers a connection's requests in order), so the connection keeps a queue of the requests
waiting for an answer and a reader task that hands each response frame to the oldest one.
A request that expects no answer (Produce with acks=0) takes no place in the queue.

Every connection starts with ApiVersions; `version_for` then picks, per API, the newest
version that the broker, the generated codec and this client (`CLIENT_MAX_VERSIONS`) have in
common. The client sets message fields by name and the codec drops the ones a version lacks,
so one request object serves every version.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import struct
from collections import deque
from dataclasses import dataclass
from typing import Any

from strom.client.errors import BrokerUnreachableError, ClientError, UnsupportedByBrokerError
from strom.protocol.errors import ErrorCode, ProtocolError
from strom.protocol.framing import decode_response, encode_request
from strom.protocol.messages import API_SPECS
from strom.protocol.messages.api_versions_request import ApiVersionsRequest

API_VERSIONS = 18
_SIZE = struct.Struct(">i")
_MAX_RESPONSE_BYTES = 1 << 30

# The newest version of an API that this client's code is written for, where that is older
# than the generated codec: newer versions change what a field means (topic ids instead of
# names, new member protocols), and the client must not send them unawares.
CLIENT_MAX_VERSIONS: dict[int, int] = {
    0: 11,  # Produce
    1: 16,  # Fetch (v17 adds replica directory ids only)
    2: 9,  # ListOffsets
    3: 12,  # Metadata
    8: 9,  # OffsetCommit
    9: 9,  # OffsetFetch
    10: 4,  # FindCoordinator (v4+: batched keys)
    11: 9,  # JoinGroup
    15: 5,  # DescribeGroups
    16: 5,  # ListGroups
    19: 7,  # CreateTopics
    20: 6,  # DeleteTopics
    32: 4,  # DescribeConfigs
    37: 3,  # CreatePartitions
    42: 2,  # DeleteGroups
    44: 1,  # IncrementalAlterConfigs
    60: 1,  # DescribeCluster
}

# api key -> (min, max) version the broker handles
VersionRanges = dict[int, tuple[int, int]]


@dataclass(slots=True)
class _Waiting:
    correlation_id: int
    api_key: int
    version: int
    future: asyncio.Future[Any]


class Connection:
    """A connection to one broker; `request` may be called concurrently."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        address: str,
        client_id: str,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.address = address
        self.client_id = client_id
        self.versions: VersionRanges = {}
        self._correlation = itertools.count(1)
        self._waiting: deque[_Waiting] = deque()
        self._failure: BaseException | None = None
        self._read_task = asyncio.get_running_loop().create_task(self._read_responses())

    @property
    def closed(self) -> bool:
        return self._failure is not None

    def version_for(self, api_key: int) -> int:
        """The version to send `api_key` at, or `UnsupportedByBrokerError`."""
        spec = API_SPECS[api_key]
        theirs = self.versions.get(api_key)
        if theirs is None:
            raise UnsupportedByBrokerError(f"{self.address} does not answer {spec.name}")
        ours_max = min(spec.max_version, CLIENT_MAX_VERSIONS.get(api_key, spec.max_version))
        version = min(ours_max, theirs[1])
        if version < max(spec.min_version, theirs[0]):
            raise UnsupportedByBrokerError(
                f"{self.address} answers {spec.name} v{theirs[0]}-{theirs[1]}, this client "
                f"speaks v{spec.min_version}-{ours_max}"
            )
        return version

    async def request(
        self,
        api_key: int,
        message: Any,
        version: int | None = None,
        *,
        timeout_s: float = 30.0,
        expect_response: bool = True,
    ) -> Any:
        """Send `message` and return the decoded response (None without one)."""
        if self._failure is not None:
            raise BrokerUnreachableError(f"connection to {self.address} is closed")
        if version is None:
            version = self.version_for(api_key)
        correlation_id = next(self._correlation)
        chunks = encode_request(api_key, version, correlation_id, self.client_id, message)
        future: asyncio.Future[Any] | None = None
        if expect_response:
            future = asyncio.get_running_loop().create_future()
            self._waiting.append(_Waiting(correlation_id, api_key, version, future))
        self._writer.writelines(chunks)
        try:
            async with asyncio.timeout(timeout_s):
                await self._writer.drain()
                if future is None:
                    return None
                return await asyncio.shield(future)
        except TimeoutError:
            name = API_SPECS[api_key].name
            self._fail(BrokerUnreachableError(f"{self.address}: no answer to {name} in time"))
            raise BrokerUnreachableError(
                f"{self.address} did not answer {name} within {timeout_s:g} s"
            ) from None
        except (ConnectionError, OSError) as exc:
            self._fail(exc)
            raise BrokerUnreachableError(f"lost the connection to {self.address}: {exc}") from None
        except ProtocolError as exc:
            name = API_SPECS[api_key].name
            raise ClientError(f"{self.address} sent an unreadable {name} response: {exc}") from None

    async def _read_responses(self) -> None:
        try:
            while True:
                (size,) = _SIZE.unpack(await self._reader.readexactly(4))
                if not 4 <= size <= _MAX_RESPONSE_BYTES:
                    raise ProtocolError(f"response frame of {size} bytes")
                frame = await self._reader.readexactly(size)
                if not self._waiting:
                    raise ProtocolError("a response to no request")
                waiting = self._waiting.popleft()
                try:
                    got, response = decode_response(waiting.api_key, waiting.version, frame)
                    if got != waiting.correlation_id:
                        raise ProtocolError(
                            f"correlation id {got}, expected {waiting.correlation_id}"
                        )
                except ProtocolError as exc:
                    if not waiting.future.done():
                        waiting.future.set_exception(exc)
                    raise
                if not waiting.future.done():
                    waiting.future.set_result(response)
        except asyncio.IncompleteReadError:
            self._fail(BrokerUnreachableError(f"{self.address} closed the connection"))
        except (ConnectionError, OSError) as exc:
            self._fail(BrokerUnreachableError(f"lost the connection to {self.address}: {exc}"))
        except ProtocolError as exc:
            self._fail(ClientError(f"{self.address} sent an unreadable response: {exc}"))

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        while self._waiting:
            future = self._waiting.popleft().future
            if not future.done():
                future.set_exception(self._failure)
        self._writer.close()

    async def close(self) -> None:
        self._fail(BrokerUnreachableError(f"connection to {self.address} closed"))
        self._read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._read_task
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


def split_address(address: str, default_port: int = 9092) -> tuple[str, int]:
    """host:port (IPv6 in brackets) -> (host, port)."""
    text = address.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ClientError(f"no host in broker address {address!r}")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ClientError(f"bad port in broker address {address!r}") from None
    if not 0 < port < 65536:
        raise ClientError(f"bad port in broker address {address!r}")
    return host, port


async def open_connection(
    host: str, port: int, client_id: str, *, connect_timeout_s: float, request_timeout_s: float
) -> Connection:
    """Connect and learn the broker's API versions; `BrokerUnreachableError` on failure."""
    address = f"{host}:{port}"
    try:
        async with asyncio.timeout(connect_timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        raise BrokerUnreachableError(f"cannot connect to {address}: timed out") from None
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise BrokerUnreachableError(f"cannot connect to {address}: {reason}") from None
    conn = Connection(reader, writer, address, client_id)
    try:
        conn.versions = await _api_versions(conn, request_timeout_s)
    except BaseException:
        await conn.close()
        raise
    return conn


async def _api_versions(conn: Connection, timeout_s: float) -> VersionRanges:
    request = ApiVersionsRequest(client_software_name="strom-cli", client_software_version="1")
    try:
        response = await conn.request(API_VERSIONS, request, 3, timeout_s=timeout_s)
    except BrokerUnreachableError as exc:
        raise BrokerUnreachableError(f"{exc} (is it a Kafka broker?)") from None
    except ClientError:
        # A broker older than ApiVersions v3 answers in the v0 layout, which does not decode
        # as v3 (Kafka 2.4 brought v3).
        raise BrokerUnreachableError(
            f"{conn.address} does not answer ApiVersions v3 (a Kafka broker older than 2.4?)"
        ) from None
    if response.error_code != ErrorCode.NONE:
        raise BrokerUnreachableError(
            f"{conn.address} refused ApiVersions: error code {response.error_code}"
        )
    return {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
