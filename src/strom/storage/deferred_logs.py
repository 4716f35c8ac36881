"""Partitions found at start-up after a clean shutdown, opened when first used.

A log dir that was shut down cleanly (`.kafka_cleanshutdown`) vouches for every partition in
it: nothing needs recovery, and what a partition's files say is exactly what they said when the
broker stopped. So start-up lists the log dir and reads its checkpoints, and reads nothing per
partition: each becomes a `DeferredLog` (where it is, and the checkpointed offsets that
`LogManager.checkpoint` keeps writing for it) until something asks for it
(`LogManager.get` opens it then, on the caller's thread) or the broker's background warm-up
gets to it (`LogManager.open_deferred`, a few at a time between other work, so that retention,
the cleaner and the flusher see every log soon after start-up). A future log (a move between
log dirs) opens its current log at once.

After a crash nothing is deferred: the recovery points decide what must be scanned, at
start-up, as Kafka does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from strom.storage.segment import LOG_SUFFIX


@dataclass(frozen=True, slots=True)
class DeferredLog:
    log_dir: Path
    recovery_point: int | None
    log_start_offset: int | None
    high_watermark: int | None


def deferred_size(directory: Path) -> int:
    """The bytes of a deferred partition's segments, from the directory listing alone."""
    total = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(LOG_SUFFIX):
                total += entry.stat().st_size
    return total
