"""The broker's open client connections and the limits that police them.

The connection quotas (`ConnectionQuotas`, applied by each listener's acceptor) with the limits
of the configuration and of the ip client-quota entities, the shared receive memory
(`MemoryPool`), and a watch that runs every second:
- connections that neither sent nor took a byte for `connections.max.idle.ms` are closed (also
  those with requests in flight whose responses wait for a client that does not read);
- while other connections wait for receive memory, a connection whose reserved frame has had no
  byte for `STALLED_S` is closed: its memory goes to the waiting ones (a client that announces
  large requests and then sends nothing cannot hold the memory of everyone else);
- while unsent responses over all connections exceed the receive memory limit, connections
  whose responses have not moved for `STALLED_S` are closed.
"""

from __future__ import annotations

import heapq
import logging
import socket
import time
from collections.abc import Iterator, Mapping

from strom.config import BrokerConfig
from strom.server.connection_quotas import ConnectionLimits, ConnectionQuotas
from strom.server.memory_pool import MemoryPool
from strom.server.network import WRITE_HIGH_WATER, KafkaConnection, NetworkShared

log = logging.getLogger("strom.network")

STALLED_S = 5.0
# queued.max.request.bytes <= 0 (Kafka's default -1): no limit.
_NO_LIMIT = 1 << 62


def connection_limits(config: BrokerConfig) -> ConnectionLimits:
    overrides: dict[str, int] = {}
    for host, count in config.max_connections_per_ip_overrides.items():
        for address in _addresses(host):
            overrides[address] = count
    listeners = [x.name for x in config.listeners]
    return ConnectionLimits(
        max_connections=config.max_connections,
        max_connections_per_ip=config.max_connections_per_ip,
        per_ip_overrides=overrides,
        max_connection_creation_rate=config.max_connection_creation_rate,
        per_listener={
            name: (
                config.listener_int(name, "max.connections"),
                config.listener_int(name, "max.connection.creation.rate"),
            )
            for name in listeners
        },
        protected_listener=config.inter_broker_listener_name if len(listeners) > 1 else None,
        quota_samples=config.get_int("quota.window.num"),
        quota_window_ms=config.get_int("quota.window.size.seconds") * 1000,
    )


def _addresses(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        log.warning("max.connections.per.ip.overrides: cannot resolve %s (%s)", host, exc)
        return [host]
    return sorted({str(info[4][0]) for info in infos})


def network_shared(config: BrokerConfig) -> NetworkShared:
    capacity = config.queued_max_request_bytes
    capacity = _NO_LIMIT if capacity <= 0 else capacity
    return NetworkShared(
        pool=MemoryPool(capacity),
        max_request_bytes=config.socket_request_max_bytes,
        # One whole fetch response may wait for a slow reader, and a little more.
        max_unsent_bytes=config.fetch_max_bytes + WRITE_HIGH_WATER,
    )


class Connections:
    def __init__(self, config: BrokerConfig, shared: NetworkShared | None = None) -> None:
        self.shared = shared if shared is not None else network_shared(config)
        self.quotas = ConnectionQuotas(connection_limits(config))
        self._config = config
        self._open: set[KafkaConnection] = set()

    def __iter__(self) -> Iterator[KafkaConnection]:
        return iter(list(self._open))

    def __len__(self) -> int:
        return len(self._open)

    def check(self, config: BrokerConfig) -> None:
        """Any valid configuration's limits can be applied."""

    def reconfigure(self, config: BrokerConfig) -> None:
        """Takes up dynamically changed limits (max.connections and friends): waiting
        listeners look again, and connections beyond a lowered max.connections are closed."""
        if config is self._config:
            return
        old = self._config
        self._config = config
        if any(
            getattr(old, a) != getattr(config, a)
            for a in (
                "max_connections",
                "max_connections_per_ip",
                "max_connections_per_ip_overrides",
                "max_connection_creation_rate",
            )
        ) or any(
            old.listener_value(x.name, key) != config.listener_value(x.name, key)
            for x in config.listeners
            for key in ("max.connections", "max.connection.creation.rate")
        ):
            self.quotas.limits = connection_limits(config)
            log.info("connection limits now %s", self.quotas.limits)
            self.close_excess()

    def set_ip_rates(self, rates: Mapping[str, int]) -> None:
        """connection_creation_rate of the ip quota entities, as they change."""
        self.quotas.set_ip_rates(rates)
        log.info("connection creation rates per address now %s", dict(rates) or "unlimited")

    def admit(self, conn: KafkaConnection) -> bool:
        """Registers a connection its acceptor admitted."""
        self._open.add(conn)
        self.close_excess()
        return True

    def release(self, conn: KafkaConnection) -> bool:
        """Forgets a closed connection; False when it was never admitted."""
        if conn not in self._open:
            return False
        self._open.discard(conn)
        return True

    def close_excess(self) -> int:
        """Beyond max.connections (the protected listener's connections count but are admitted
        anyway, or the limit was lowered): closes the least recently active connections of the
        other listeners, as Kafka's processors do."""
        quotas = self.quotas
        if not quotas.excess():
            return 0
        others = [c for c in self._open if not quotas.is_protected(c.listener_name)]
        # Closed ones still count until their transport is gone.
        excess = quotas.excess() - sum(1 for c in others if c.closed)
        victims = heapq.nsmallest(
            max(0, excess), (c for c in others if not c.closed), key=lambda c: c.last_active
        )
        for conn in victims:
            conn.close(
                f"the broker has more than max.connections={quotas.limits.max_connections} "
                "connections; the least recently active one is closed (max.connections)",
                flush=False,
                kind="max.connections exceeded",
            )
        return len(victims)

    def close_idle(self, max_idle_ms: int, now: float | None = None) -> int:
        """Closes connections silent in both directions for longer than max_idle_ms."""
        if max_idle_ms <= 0:
            return 0
        now = time.monotonic() if now is None else now
        deadline = now - max_idle_ms / 1000.0
        idle = [
            c for c in self._open if c.last_active < deadline and (not c.busy or c.unsent_bytes > 0)
        ]
        for conn in idle:
            conn.close(
                f"idle for more than {max_idle_ms} ms (connections.max.idle.ms)",
                flush=False,
                kind="idle",
            )
        return len(idle)

    def relieve_pressure(self, now: float | None = None) -> int:
        """Closes the connections that hold memory others need without making progress."""
        now = time.monotonic() if now is None else now
        shared = self.shared
        closed = 0
        if shared.pool.waiting:
            for conn in [c for c in self._open if c.stalled_receive_s > STALLED_S]:
                conn.close(
                    f"its {conn.receiving_bytes}-byte request has had no data for "
                    f"{STALLED_S:.0f} s while other connections wait for request memory "
                    "(queued.max.request.bytes)",
                    flush=False,
                    kind="stalled request",
                )
                closed += 1
        if shared.unsent_bytes > shared.pool.capacity:
            for conn in [
                c
                for c in self._open
                if c.unsent_bytes > WRITE_HIGH_WATER and now - c.last_sent > STALLED_S
            ]:
                conn.close(
                    f"the client has not read its responses for {STALLED_S:.0f} s "
                    f"({conn.unsent_bytes} bytes wait) while unsent responses exceed "
                    "queued.max.request.bytes",
                    flush=False,
                    kind="not reading",
                )
                closed += 1
        return closed

    def close_all(self, reason: str) -> None:
        for conn in self:
            conn.close(reason)
