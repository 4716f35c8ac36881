"""Partitions found at start-up, opened when first used.

Start-up lists each log dir and reads its checkpoints, and reads nothing per partition: each
becomes a `DeferredLog` (where it is, and the checkpointed offsets that
`LogManager.checkpoint` keeps writing for it) until something asks for it (`LogManager.get`
opens it then, on the caller's thread) or the broker's background warm-up gets to it
(`LogManager.open_deferred`, a few at a time between other work, so that retention, the
cleaner and the flusher see every log soon after start-up). A future log (a move between log
dirs) opens its current log at once; a cluster broker opens every log before it joins.

After a clean shutdown (`.kafka_cleanshutdown`) opening reads only what the log's active
segment and producer state need. After a crash opening also recovers the segments from the one
holding the recovery point on (recovery.py): the work Kafka does before it serves, done when
the partition is first needed. The recovery points stay as checkpointed until then, and a log
dir with logs still unrecovered is not marked cleanly shut down, so neither a second crash nor
a clean stop in between loses any of what recovery has to do.
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
    # Its log dir was shut down cleanly; else opening recovers it from its recovery point.
    clean: bool = True


def deferred_size(directory: Path) -> int:
    """The bytes of a deferred partition's segments, from the directory listing alone."""
    total = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(LOG_SUFFIX):
                total += entry.stat().st_size
    return total
