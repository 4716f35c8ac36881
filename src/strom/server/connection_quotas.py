"""Who may open a connection, and when: Kafka's connection quotas (its ConnectionQuotas).

A connection accepted on a listener goes through Kafka's steps, in Kafka's order:

1. Its creation is recorded in the broker-wide rate (`max.connection.creation.rate`) and the
   listener's (`listener.name.<l>.max.connection.creation.rate`, falling back to the
   broker's). Over either, the listener accepts nothing more for the throttle time, and until
   it has a free slot: fewer than `listener.name.<l>.max.connections` on the listener and, on
   any listener but the protected one, fewer than `max.connections` in the broker. The
   connection is delayed, never refused, as Kafka's acceptor blocks (acceptor.py).
2. Its address's creation rate (`connection_creation_rate` of the `ip` client-quota entity,
   or of the default ip entity): over it, the connection is not counted, its creation is taken
   back from the broker's and listener's rates, and it is closed once the throttle time has
   passed (unread meanwhile).
3. It is counted; an address already at `max.connections.per.ip` (or its
   `max.connections.per.ip.overrides` entry) has it closed at once.

Rates are Kafka's sampled rate with quota-window semantics (`quota.window.num` samples of
`quota.window.size.seconds`, strom.quota.rate); the throttle time is what brings the rate back
to the limit, at most one window.

The protected listener is the inter-broker one when the broker has more than one listener: its
connections count towards `max.connections` but are admitted beyond it, so that clients cannot
lock out replication; while the total exceeds `max.connections` (after such an admission, or
when the limit is lowered at run time) the least recently active connections of the other
listeners are closed (`excess`, Kafka's closeExcessConnections).

Every delay and refusal is logged, at most one line per reason every `LOG_INTERVAL_S` (with
the count since the last line), so that a flood of connections cannot flood the log.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from strom.quota.entities import DEFAULT
from strom.quota.rate import SampledRate
from strom.server.log_limiter import LogLimiter

log = logging.getLogger("strom.network")

LOG_INTERVAL_S = 10.0
UNLIMITED = 2**31 - 1
# The key of the default ip entity's rate in `set_ip_rates` (Kafka's `<default>`).
DEFAULT_IP = DEFAULT
# Address rate sensors unused for this long are dropped (Kafka's inactive sensor expiry).
IP_SENSOR_EXPIRY_MS = 3600 * 1000


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits in force; rebuilt from the configuration when it changes."""

    max_connections: int = UNLIMITED
    max_connections_per_ip: int = UNLIMITED
    # address (as the peer address string) -> limit
    per_ip_overrides: dict[str, int] = field(default_factory=dict)
    max_connection_creation_rate: int = UNLIMITED
    # listener name -> (max.connections, max.connection.creation.rate) for that listener
    per_listener: dict[str, tuple[int, int]] = field(default_factory=dict)
    # The inter-broker listener, admitted beyond max.connections when it is not the only one.
    protected_listener: str | None = None
    # quota.window.num and quota.window.size.seconds (in ms)
    quota_samples: int = 11
    quota_window_ms: int = 1000


class Verdict(Enum):
    ADMITTED = "admitted"
    TOO_MANY_FROM_IP = "too many from its address"
    IP_THROTTLED = "over its address's creation rate"


def normalized_ip(address: str) -> str:
    """The canonical text of an address (`::0001` and `::1` alike); unchanged if not one."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


class ConnectionSlot:
    """A counted connection; `release` gives its place back, once."""

    __slots__ = ("_quotas", "host", "listener")

    def __init__(self, quotas: ConnectionQuotas, listener: str, host: str) -> None:
        self._quotas: ConnectionQuotas | None = quotas
        self.listener = listener
        self.host = host

    def release(self) -> None:
        quotas, self._quotas = self._quotas, None
        if quotas is not None:
            quotas.release(self.listener, self.host)


class ConnectionQuotas:
    def __init__(
        self, limits: ConnectionLimits, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._per_ip: dict[str, int] = {}
        self._per_listener: dict[str, int] = {}
        self._total = 0  # every listener's connections, the protected one's too
        self._limits = limits
        self._broker_rate = self._new_rate()
        self._listener_rate: dict[str, SampledRate] = {}
        # connection_creation_rate per address (normalized), and the default ip entity's
        self._ip_rates: dict[str, int] = {}
        self._default_ip_rate = UNLIMITED
        self._ip_sensors: dict[str, SampledRate] = {}
        # Called (once each) when a slot may have freed up: a release or new limits.
        self._slot_waiters: list[Callable[[], None]] = []
        self._log = LogLimiter(log, LOG_INTERVAL_S, clock)

    # -- limits ----------------------------------------------------------------------------

    @property
    def limits(self) -> ConnectionLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: ConnectionLimits) -> None:
        old, self._limits = self._limits, limits
        if (old.quota_samples, old.quota_window_ms) != (
            limits.quota_samples,
            limits.quota_window_ms,
        ):
            self._broker_rate = self._new_rate()
            self._listener_rate.clear()
            self._ip_sensors.clear()
        self._slot_may_be_free()

    def set_ip_rates(self, rates: Mapping[str, int]) -> None:
        """`connection_creation_rate` of the ip entities: address -> rate, `DEFAULT_IP` for
        the default entity. An address's own entry wins over the default, as in Kafka."""
        self._default_ip_rate = rates.get(DEFAULT_IP, UNLIMITED)
        self._ip_rates = {normalized_ip(ip): r for ip, r in rates.items() if ip != DEFAULT_IP}

    def ip_rate(self, ip: str) -> int:
        return self._ip_rates.get(normalized_ip(ip), self._default_ip_rate)

    # -- admission ---------------------------------------------------------------------------

    def record_connection(self, listener: str) -> float:
        """Step 1: records a new connection in the broker's and the listener's creation
        rates; the seconds the listener must wait before taking it (0: none)."""
        limits = self._limits
        now_ms = self._now_ms()
        throttle_ms = 0
        if not self._protected(listener):
            throttle_ms = self._record(
                self._broker_rate, limits.max_connection_creation_rate, now_ms
            )
            if throttle_ms:
                self._delayed(
                    listener,
                    throttle_ms,
                    f"more than {limits.max_connection_creation_rate} new connections per "
                    "second (max.connection.creation.rate)",
                )
        listener_rate = self._listener_limits(listener)[1]
        sensor = self._listener_rate.get(listener)
        if sensor is None:
            sensor = self._listener_rate[listener] = self._new_rate()
        listener_ms = self._record(sensor, listener_rate, now_ms)
        if listener_ms:
            self._delayed(
                listener,
                listener_ms,
                f"more than {listener_rate} new connections per second on the listener "
                f"(listener.name.{listener.lower()}.max.connection.creation.rate)",
            )
        return max(throttle_ms, listener_ms) / 1000.0

    def slot_available(self, listener: str) -> bool:
        if self._per_listener.get(listener, 0) >= self._listener_limits(listener)[0]:
            return False
        return self._protected(listener) or self._total < self._limits.max_connections

    def log_waiting_for_slot(self, listener: str) -> None:
        listener_max = self._listener_limits(listener)[0]
        if self._per_listener.get(listener, 0) >= listener_max:
            reason = (
                f"the listener has the configured maximum of {listener_max} connections "
                f"(listener.name.{listener.lower()}.max.connections)"
            )
        else:
            reason = (
                f"the broker has the configured maximum of {self._limits.max_connections} "
                "connections (max.connections)"
            )
        self._log.warning(
            f"slot {reason.rsplit('(', 1)[-1]}",
            "listener %s accepts no more connections until one closes: %s",
            listener,
            reason,
        )

    def wait_for_slot(self, callback: Callable[[], None]) -> None:
        """`callback` is called once, the next time a slot may have freed up."""
        self._slot_waiters.append(callback)

    def admit(self, listener: str, ip: str) -> tuple[Verdict, float, ConnectionSlot | None]:
        """Steps 2 and 3 for a connection from `ip`: the verdict, the seconds before a
        throttled connection is closed, and the slot of an admitted one."""
        rate = self.ip_rate(ip)
        if rate < UNLIMITED:
            now_ms = self._now_ms()
            key = normalized_ip(ip)
            sensor = self._ip_sensors.get(key)
            if sensor is None:
                sensor = self._ip_sensors[key] = self._new_rate()
            throttle_ms = self._record(sensor, rate, now_ms)
            if throttle_ms:
                sensor.record(-1.0, now_ms)
                if not self._protected(listener):
                    self._broker_rate.record(-1.0, now_ms)
                listener_rate = self._listener_rate.get(listener)
                if listener_rate is not None:
                    listener_rate.record(-1.0, now_ms)
                self._log.warning(
                    "ip connection_creation_rate",
                    "closing connection from %s after %d ms: more than %d new connections "
                    "per second from the address (client quota connection_creation_rate)",
                    ip,
                    throttle_ms,
                    rate,
                )
                return Verdict.IP_THROTTLED, throttle_ms / 1000.0, None
        count = self._per_ip.get(ip, 0)
        self._count(listener, ip, +1)
        limits = self._limits
        ip_max = limits.per_ip_overrides.get(ip, limits.max_connections_per_ip)
        if count >= ip_max:
            self.release(listener, ip)
            self._log.warning(
                "max.connections.per.ip",
                "refused a connection: address %s already has the configured maximum of %d "
                "connections (max.connections.per.ip)",
                ip,
                ip_max,
            )
            return Verdict.TOO_MANY_FROM_IP, 0.0, None
        return Verdict.ADMITTED, 0.0, ConnectionSlot(self, listener, ip)

    def release(self, listener: str, ip: str) -> None:
        self._count(listener, ip, -1)
        self._slot_may_be_free()

    def excess(self) -> int:
        """Connections beyond max.connections (admitted on the protected listener, or the
        limit lowered): that many of the other listeners' are to be closed."""
        return max(0, self._total - self._limits.max_connections)

    def is_protected(self, listener: str) -> bool:
        return self._protected(listener)

    def count(self, ip: str | None = None) -> int:
        if ip is not None:
            return self._per_ip.get(ip, 0)
        return self._total

    def expire(self) -> None:
        """Forgets the rates of addresses that opened nothing for an hour."""
        now_ms = self._now_ms()
        for ip in [
            ip
            for ip, s in self._ip_sensors.items()
            if now_ms - s.last_event_ms > IP_SENSOR_EXPIRY_MS
        ]:
            del self._ip_sensors[ip]

    # -- internals ---------------------------------------------------------------------------

    def _count(self, listener: str, ip: str, delta: int) -> None:
        count = self._per_ip.get(ip, 0) + delta
        if count <= 0:
            self._per_ip.pop(ip, None)
        else:
            self._per_ip[ip] = count
        self._per_listener[listener] = max(0, self._per_listener.get(listener, 0) + delta)
        self._total = max(0, self._total + delta)

    def _slot_may_be_free(self) -> None:
        waiters, self._slot_waiters = self._slot_waiters, []
        for waiter in waiters:
            waiter()

    def _listener_limits(self, listener: str) -> tuple[int, int]:
        return self._limits.per_listener.get(listener, (UNLIMITED, UNLIMITED))

    def _protected(self, listener: str) -> bool:
        protected = self._limits.protected_listener
        return protected is not None and listener == protected

    def _new_rate(self) -> SampledRate:
        return SampledRate(self._limits.quota_samples, self._limits.quota_window_ms)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _record(self, sensor: SampledRate, limit: int, now_ms: int) -> int:
        """Records one connection; the throttle time in ms when that exceeds `limit`, at most
        one quota window (Kafka's bounded throttle time)."""
        sensor.record(1.0, now_ms)
        if limit >= UNLIMITED:
            return 0
        window_ms = self._limits.quota_window_ms
        if limit <= 0:
            return window_ms
        return min(sensor.throttle_ms(limit, now_ms), window_ms)

    def _delayed(self, listener: str, throttle_ms: int, reason: str) -> None:
        self._log.warning(
            f"rate {reason.rsplit('(', 1)[-1]}",
            "listener %s delays accepting connections for %d ms: %s",
            listener,
            throttle_ms,
            reason,
        )
