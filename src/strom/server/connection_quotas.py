"""Who may open a connection: Kafka's connection limits, checked as each connection arrives.

- `max.connections.per.ip` (with `max.connections.per.ip.overrides`, `host:count` pairs):
  connections from one address beyond its limit are closed at once, as Kafka does.
- `max.connections` (broker-wide) and `listener.name.<l>.max.connections`: Kafka's acceptor
  stops accepting until a slot frees up; Strom closes the new connection instead (an asyncio
  server has no way to leave connections in the kernel's backlog).
- `max.connection.creation.rate` (broker-wide and per listener): connections per second,
  measured over the last second; Kafka delays the acceptor, Strom closes the connection.

The inter-broker listener is protected as in Kafka (when the broker has more than one
listener): the broker-wide limits do not count it, so clients cannot lock out replication.

Refusals are logged, at most one line per limit every `LOG_INTERVAL_S` (with the count
since the last line), so that a flood of connections cannot flood the log.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from strom.server.log_limiter import LogLimiter

log = logging.getLogger("strom.network")

LOG_INTERVAL_S = 10.0
UNLIMITED = 2**31 - 1


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits in force; rebuilt from the configuration when it changes."""

    max_connections: int = UNLIMITED
    max_connections_per_ip: int = UNLIMITED
    # address (as the peer address string) -> limit
    per_ip_overrides: dict[str, int] = field(default_factory=dict)
    max_connection_creation_rate: int = UNLIMITED
    # listener name -> (max.connections, max.connection.creation.rate) set for that listener
    per_listener: dict[str, tuple[int, int]] = field(default_factory=dict)
    # The inter-broker listener, exempt from the broker-wide limits when it is not the only one.
    protected_listener: str | None = None


class _RateWindow:
    """Events in the last second, for a limit of at most `UNLIMITED` per second."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def admit(self, now: float, limit: int) -> bool:
        if limit >= UNLIMITED:
            return True
        times = self._times
        while times and times[0] <= now - 1.0:
            times.popleft()
        if len(times) >= limit:
            return False
        times.append(now)
        return True

    def forget_last(self) -> None:
        if self._times:
            self._times.pop()


class ConnectionQuotas:
    def __init__(
        self, limits: ConnectionLimits, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._per_ip: dict[str, int] = {}
        self._per_listener: dict[str, int] = {}
        self._total = 0  # connections on unprotected listeners
        self._broker_rate = _RateWindow()
        self._listener_rate: dict[str, _RateWindow] = {}
        self._log = LogLimiter(log, LOG_INTERVAL_S, clock)

    def admit(self, listener: str, ip: str) -> bool:
        """Counts a new connection and returns True, or logs why it is refused."""
        limits = self.limits
        now = self._clock()
        protected = self._protected(listener)
        listener_max, listener_rate = limits.per_listener.get(listener, (UNLIMITED, UNLIMITED))
        ip_max = limits.per_ip_overrides.get(ip, limits.max_connections_per_ip)
        if self._per_ip.get(ip, 0) >= ip_max:
            self._refused(
                f"address {ip} already has the configured maximum of {ip_max} connections "
                "(max.connections.per.ip)"
            )
            return False
        if self._per_listener.get(listener, 0) >= listener_max:
            self._refused(
                f"listener {listener} has the configured maximum of {listener_max} connections "
                f"(listener.name.{listener.lower()}.max.connections)"
            )
            return False
        if not protected and self._total >= limits.max_connections:
            self._refused(
                f"the broker has the configured maximum of {limits.max_connections} "
                "connections (max.connections)"
            )
            return False
        if not protected and not self._broker_rate.admit(now, limits.max_connection_creation_rate):
            self._refused(
                f"more than {limits.max_connection_creation_rate} new connections per second "
                "(max.connection.creation.rate)"
            )
            return False
        window = self._listener_rate.setdefault(listener, _RateWindow())
        if not window.admit(now, listener_rate):
            if not protected:
                self._broker_rate.forget_last()
            self._refused(
                f"more than {listener_rate} new connections per second on listener {listener} "
                f"(listener.name.{listener.lower()}.max.connection.creation.rate)"
            )
            return False
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        self._per_listener[listener] = self._per_listener.get(listener, 0) + 1
        if not protected:
            self._total += 1
        return True

    def release(self, listener: str, ip: str) -> None:
        count = self._per_ip.get(ip, 0)
        if count <= 1:
            self._per_ip.pop(ip, None)
        else:
            self._per_ip[ip] = count - 1
        self._per_listener[listener] = max(0, self._per_listener.get(listener, 0) - 1)
        if not self._protected(listener):
            self._total = max(0, self._total - 1)

    def count(self, ip: str | None = None) -> int:
        if ip is not None:
            return self._per_ip.get(ip, 0)
        return sum(self._per_ip.values())

    def _protected(self, listener: str) -> bool:
        protected = self.limits.protected_listener
        return protected is not None and listener == protected

    def _refused(self, reason: str) -> None:
        # One line per limit (the setting's name closes the reason) and interval.
        self._log.warning(reason.rsplit("(", 1)[-1], "refused a connection: %s", reason)
