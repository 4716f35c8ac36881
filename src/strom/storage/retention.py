"""Time, size and log-start-offset retention: deleting whole segments from the front of a log.

Rules (Kafka's):
  * by time (cleanup.policy has "delete", retention.ms >= 0): a segment goes when its largest
    timestamp is more than retention.ms before now (file mtime when it has no timestamps);
  * by size (retention.bytes >= 0): oldest segments go while the log stays >= retention.bytes
    without them;
  * by log start offset (any policy): a segment goes when the next segment starts at or below
    log_start_offset, i.e. every offset in it is below the start (DeleteRecords, earlier deletes).
Deletion walks from the oldest segment and stops at the first one that must stay; nothing above
the high watermark is deleted. A log never ends up without a segment: when the active segment
must go, the log rolls first and the new, empty segment stays. The log start offset then moves
to the base offset of the first remaining segment if that is higher.

Segment files are renamed to `.deleted` and unlinked at once; file.delete.delay.ms is ignored
(Kafka delays the unlink so that readers holding the old files finish; our readers are on the
same thread as retention, so none can be holding them).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from strom.storage.partition_log import PartitionLog
from strom.storage.segment import Segment

log = logging.getLogger("strom.storage")

Predicate = Callable[[Segment, Segment | None], bool]


def delete_expired_segments(plog: PartitionLog, now_ms: int) -> int:
    """Apply every retention rule to `plog`; returns how many segments were deleted."""
    deleted = 0
    config = plog.config
    if config.delete:
        if config.retention_ms >= 0:
            deleted += _delete_while(plog, _older_than(now_ms, config.retention_ms), "retention.ms")
        if config.retention_bytes >= 0:
            deleted += _delete_while(
                plog, _over_size(plog, config.retention_bytes), "retention.bytes"
            )
    deleted += _delete_while(plog, _below_start(plog), "log start offset")
    return deleted


def next_expiry_ms(plog: PartitionLog, now_ms: int) -> int | None:
    """After `delete_expired_segments(plog, now_ms)`: when retention.ms next deletes from
    `plog` if nothing else changes it (None: not by time alone). Deletion by time starts at
    the oldest segment, so its expiry is the one moment to look again. An oldest segment
    already expired is looked at again at once: the time rule may have run before the log
    start offset rule made it the oldest, as a check over every log would find next round
    (one held back by the high watermark is looked at each round until the mark moves)."""
    config = plog.config
    if not config.delete or config.retention_ms < 0:
        return None
    oldest = plog.segments[0]
    if oldest.size == 0 and oldest is plog.active_segment:
        return None
    return max(_largest_timestamp(oldest) + config.retention_ms + 1, now_ms)


def _largest_timestamp(segment: Segment) -> int:
    if segment.max_timestamp >= 0:
        return segment.max_timestamp
    try:
        return os.stat(segment.log_path).st_mtime_ns // 1_000_000
    except FileNotFoundError:
        return -1


def _older_than(now_ms: int, retention_ms: int) -> Predicate:
    def predicate(segment: Segment, _next: Segment | None) -> bool:
        return now_ms - _largest_timestamp(segment) > retention_ms

    return predicate


def _over_size(plog: PartitionLog, retention_bytes: int) -> Predicate:
    excess = plog.size_bytes - retention_bytes

    def predicate(segment: Segment, _next: Segment | None) -> bool:
        nonlocal excess
        if excess - segment.size >= 0:
            excess -= segment.size
            return True
        return False

    return predicate


def _below_start(plog: PartitionLog) -> Predicate:
    def predicate(_segment: Segment, following: Segment | None) -> bool:
        return following is not None and following.base_offset <= plog.log_start_offset

    return predicate


def _delete_while(plog: PartitionLog, predicate: Predicate, reason: str) -> int:
    segments = plog.segments
    doomed: list[Segment] = []
    for i, segment in enumerate(segments):
        following = segments[i + 1] if i + 1 < len(segments) else None
        upper = following.base_offset if following is not None else plog.log_end_offset
        if following is None and segment.size == 0:
            break  # never delete an empty active segment
        if upper > plog.high_watermark or not predicate(segment, following):
            break
        doomed.append(segment)
    if not doomed:
        return 0
    if doomed[-1] is plog.active_segment:
        plog.roll()
    plog.remove_segments(doomed)
    plog.maybe_increment_log_start_offset(plog.segments[0].base_offset)
    log.info(
        "%s: deleted %d segment(s) by %s up to base %d; log start offset %d",
        plog.name,
        len(doomed),
        reason,
        doomed[-1].base_offset,
        plog.log_start_offset,
    )
    return len(doomed)
