"""Per-quota-type managers: which allowance a request counts against, and the throttle time.

One `ClientQuotaManager` per quota key (produce bytes, fetch bytes, request percentage), as
Kafka has one per quota type. While no entity sets its key it does nothing at all (`enabled`
is False: the produce and fetch paths test one attribute). Otherwise each (user, client id)
is resolved once per quota change to the allowance it counts against and its limit
(entities.applicable), and usage goes into that allowance's sampled rate.

The controller mutation quota (partitions created or deleted per second) is a token bucket,
as in Kafka: a burst of `rate x samples x window` is allowed, then mutations wait for tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from strom.quota.entities import QuotaEntity, applicable
from strom.quota.rate import SampledRate

# Sensors not used for an hour are dropped (Kafka's InactiveSensorExpirationTimeSeconds).
INACTIVE_EXPIRATION_MS = 3600 * 1000
RESOLVED_LIMIT = 1 << 16

Resolved = tuple[tuple[str, str], float] | None


class ClientQuotaManager:
    def __init__(
        self, key: str, samples: int, window_ms: int, max_throttle_ms: int | None = None
    ) -> None:
        self.key = key
        self.samples = samples
        self.window_ms = window_ms
        self.max_throttle_ms = max_throttle_ms
        self.enabled = False
        self._quotas: Mapping[QuotaEntity, Mapping[str, float]] = {}
        self._resolved: dict[tuple[str, str], Resolved] = {}
        self._sensors: dict[tuple[str, str], SampledRate] = {}

    def update(self, quotas: Mapping[QuotaEntity, Mapping[str, float]]) -> None:
        self._quotas = quotas
        self.enabled = any(self.key in values for values in quotas.values())
        self._resolved.clear()

    def reconfigure(self, samples: int, window_ms: int) -> None:
        if (samples, window_ms) != (self.samples, self.window_ms):
            self.samples, self.window_ms = samples, window_ms
            self._sensors.clear()

    def resolve(self, user: str, client_id: str) -> Resolved:
        key = (user, client_id)
        if key in self._resolved:
            return self._resolved[key]
        found = applicable(self._quotas, self.key, user, client_id)
        if len(self._resolved) >= RESOLVED_LIMIT:
            self._resolved.clear()
        self._resolved[key] = found
        return found

    def _sensor(self, sensor_key: tuple[str, str]) -> SampledRate:
        sensor = self._sensors.get(sensor_key)
        if sensor is None:
            sensor = self._sensors[sensor_key] = SampledRate(self.samples, self.window_ms)
        return sensor

    def record(self, user: str, client_id: str, value: float, now_ms: int) -> int:
        """Count `value` and return the throttle time it calls for (0: within the quota)."""
        if not self.enabled:
            return 0
        resolved = self.resolve(user, client_id)
        if resolved is None:
            return 0
        sensor_key, limit = resolved
        sensor = self._sensor(sensor_key)
        sensor.record(value, now_ms)
        throttle = sensor.throttle_ms(limit, now_ms) if limit > 0 else self.window_ms
        if self.max_throttle_ms is not None:
            throttle = min(throttle, self.max_throttle_ms)
        return throttle

    def unrecord(self, user: str, client_id: str, value: float, now_ms: int) -> None:
        """Take back what `record` counted (a throttled fetch returns no data)."""
        resolved = self.resolve(user, client_id) if self.enabled else None
        if resolved is not None:
            self._sensor(resolved[0]).record(-value, now_ms)

    def max_value_in_window(self, user: str, client_id: str) -> float | None:
        """The most one request may take without being throttled for sure (Kafka caps a
        fetch's bytes with it); None without a quota."""
        resolved = self.resolve(user, client_id) if self.enabled else None
        if resolved is None:
            return None
        return resolved[1] * (self.samples - 1) * self.window_ms / 1000.0

    def expire(self, now_ms: int) -> None:
        for key in [
            k for k, s in self._sensors.items() if now_ms - s.last_event_ms > INACTIVE_EXPIRATION_MS
        ]:
            del self._sensors[key]


@dataclass(slots=True)
class TokenBucket:
    """Kafka's TokenBucket: tokens refill at `rate` per second up to a burst of
    rate x samples x window; recording takes tokens (possibly below zero)."""

    tokens: float
    last_ms: int

    def refill(self, rate: float, burst: float, now_ms: int) -> None:
        self.tokens = min(burst, self.tokens + rate * max(0, now_ms - self.last_ms) / 1000.0)
        self.last_ms = now_ms


class ControllerMutationQuotaManager:
    """`controller_mutation_rate`: partitions created (CreateTopics, CreatePartitions) or
    deleted (DeleteTopics) per second."""

    key = "controller_mutation_rate"

    def __init__(self, samples: int, window_ms: int) -> None:
        self.rates = ClientQuotaManager(self.key, samples, window_ms)
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rates.enabled

    def update(self, quotas: Mapping[QuotaEntity, Mapping[str, float]]) -> None:
        self.rates.update(quotas)

    def _bucket(self, user: str, client_id: str, now_ms: int) -> tuple[TokenBucket, float] | None:
        resolved = self.rates.resolve(user, client_id) if self.enabled else None
        if resolved is None:
            return None
        sensor_key, rate = resolved
        burst = rate * self.rates.samples * self.rates.window_ms / 1000.0
        bucket = self._buckets.get(sensor_key)
        if bucket is None:
            bucket = self._buckets[sensor_key] = TokenBucket(burst, now_ms)
        bucket.refill(rate, burst, now_ms)
        return bucket, rate

    def throttle_ms(self, user: str, client_id: str, now_ms: int) -> int:
        """While the bucket is empty: how long until it is not."""
        found = self._bucket(user, client_id, now_ms)
        if found is None:
            return 0
        bucket, rate = found
        if bucket.tokens >= 0 or rate <= 0:
            return 0
        return round(-bucket.tokens / rate * 1000)

    def record(self, user: str, client_id: str, partitions: int, now_ms: int) -> int:
        """Take `partitions` tokens; the throttle time that leaves."""
        found = self._bucket(user, client_id, now_ms)
        if found is None:
            return 0
        bucket, _ = found
        bucket.tokens -= partitions
        return self.throttle_ms(user, client_id, now_ms)
