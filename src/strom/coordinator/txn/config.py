"""The transaction coordinator's settings, with Kafka's names and defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TxnConfig:
    # transaction.max.timeout.ms: the largest transaction.timeout.ms a producer may ask for.
    max_timeout_ms: int = 900_000
    # transactional.id.expiration.ms: an id idle (Empty or Complete*) this long is removed.
    transactional_id_expiration_ms: int = 604_800_000
    # transaction.abort.timed.out.transaction.cleanup.interval.ms
    abort_timed_out_interval_ms: int = 10_000
    # transaction.remove.expired.transaction.cleanup.interval.ms
    remove_expired_interval_ms: int = 3_600_000
