"""Requests from this broker to the others: one connection per broker, one request at a time
on it, opened on first use and reopened after any failure. The transaction coordinator's
markers (WriteTxnMarkers) and the share partitions' state (the share-state RPCs) use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from strom.protocol.errors import ProtocolError
from strom.replication.broker_connection import BrokerConnection, connect_to_broker
from strom.replication.fetcher import LeaderEndpoint

__all__ = ["CONNECT_TIMEOUT_S", "InterBrokerClient"]

CONNECT_TIMEOUT_S = 10.0  # Kafka's socket.connection.setup.timeout.ms default


class InterBrokerClient:
    """One connection per other broker, one request at a time on it."""

    def __init__(
        self,
        client_id: str,
        endpoint_of: Callable[[int], LeaderEndpoint | None],
        timeout_s: float,
    ) -> None:
        self._client_id = client_id
        self._endpoint_of = endpoint_of
        self._timeout_s = timeout_s
        self._connections: dict[int, tuple[LeaderEndpoint, BrokerConnection, dict[int, int]]] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def call(self, broker_id: int, api_key: int, max_version: int, request: Any) -> Any:
        """Send one request to the broker (at the highest version both handle); raises
        OSError, TimeoutError or ProtocolError, after which the connection is reopened."""
        lock = self._locks.setdefault(broker_id, asyncio.Lock())
        async with lock:
            _, connection, versions = await self._connect(broker_id)
            if api_key not in versions:
                raise ProtocolError(f"broker {broker_id} does not handle api key {api_key}")
            version = min(max_version, versions[api_key])
            try:
                return await connection.call(api_key, version, request, self._timeout_s)
            except BaseException:
                await self._drop(broker_id)
                raise

    async def _connect(
        self, broker_id: int
    ) -> tuple[LeaderEndpoint, BrokerConnection, dict[int, int]]:
        endpoint = self._endpoint_of(broker_id)
        if endpoint is None:
            raise ConnectionError(f"broker {broker_id} is not registered")
        current = self._connections.get(broker_id)
        if current is not None:
            if current[0] == endpoint:
                return current
            await self._drop(broker_id)
        connection, ranges = await connect_to_broker(
            endpoint.host,
            endpoint.port,
            self._client_id,
            min(CONNECT_TIMEOUT_S, self._timeout_s),
            self._timeout_s,
            endpoint.security,
        )
        versions = {api_key: high for api_key, (_, high) in ranges.items()}
        self._connections[broker_id] = (endpoint, connection, versions)
        return endpoint, connection, versions

    async def _drop(self, broker_id: int) -> None:
        current = self._connections.pop(broker_id, None)
        if current is not None:
            await current[1].close()

    async def close(self) -> None:
        for broker_id in list(self._connections):
            await self._drop(broker_id)
