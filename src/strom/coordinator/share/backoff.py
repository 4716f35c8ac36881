"""Retry backoff of share groups: how long a released record waits before it is delivered again.

A record released by its consumer (or whose acquisition lock expired) after its n-th delivery
becomes available again `base * 2^(n-1)` milliseconds later, at most `max` (the group configs
`strom.share.retry.backoff.ms` and `strom.share.retry.backoff.max.ms`). A base of 0 turns
backoff off: the record is available at once, as in Kafka. No jitter: the records of a share
partition are handed out one fetch at a time anyway, and a schedule without randomness is one
a user can reason about (and a test can check).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_BACKOFF_MAX_MS", "DEFAULT_BACKOFF_MS", "RetryBackoff"]

DEFAULT_BACKOFF_MS: Final = 0
DEFAULT_BACKOFF_MAX_MS: Final = 60_000


@dataclass(frozen=True, slots=True)
class RetryBackoff:
    base_ms: int = DEFAULT_BACKOFF_MS
    max_ms: int = DEFAULT_BACKOFF_MAX_MS

    def __post_init__(self) -> None:
        if self.base_ms < 0 or self.max_ms < 0:
            raise ValueError("backoffs must not be negative")

    @property
    def enabled(self) -> bool:
        return self.base_ms > 0 and self.max_ms > 0

    def delay_ms(self, delivery_count: int) -> int:
        """The wait after the `delivery_count`-th delivery failed (0 for none yet)."""
        if delivery_count < 1 or not self.enabled:
            return 0
        cap = self.max_ms
        # 2^62 ms is far beyond any cap: stop doubling long before Python's ints grow large.
        if delivery_count > 62:
            return cap
        return min(self.base_ms << (delivery_count - 1), cap)

    def available_at(self, now_ms: int, delivery_count: int) -> int:
        return now_ms + self.delay_ms(delivery_count)
