"""Log compaction (cleanup.policy includes "compact"): when to clean a log, and its checkpoint.

A log is cleaned in passes (Kafka's LogCleanerManager decides when, its Cleaner does the pass):
`plan` runs on the event loop and decides from the log's state whether a pass is due, taking
what the pass needs from state only the loop may read (segment list, last stable offset,
producer state, aborted transactions); `cleaning_pass.run` does the pass, off the loop, in a
cleaner thread; `finish` runs on the loop again with the outcome. `clean` does all three in a
row (tests, tools).

The cleanable range is [log start, upper bound): the upper bound is the base offset of the
segment holding the first uncleanable offset, the smallest of the last stable offset (never
above the high watermark; an open transaction may still abort), the active segment's base and,
with min.compaction.lag.ms, the base of the first dirty segment holding a record younger than
that; only whole segments are cleaned. The dirty section starts at the offset stored in
`cleaner-offset-checkpoint` (one per log dir, Kafka's checkpoint format: the end of the previous
pass; the log start when absent, below the log start or past the log end).

A pass is due when, as in Kafka:
  * dirty bytes / (clean bytes + dirty bytes) > min.cleanable.dirty.ratio (dirty: the segments
    from the one holding the first dirty offset up to the upper bound; clean: those below the
    first dirty offset), or
  * a dirty segment's first batch is older than max.compaction.lag.ms;
and also (Strom's addition, so that tombstones and markers go without new writes) when a delete
horizon stored in a batch of the range has passed. That horizon is read from the batches: each
pass reports the earliest horizon it left behind, and after the log is opened the first pass
that is not otherwise due reads the batch headers to find it (`cleaner_horizon_ms`, None until
then).

The key map is a Python dict, so memory grows with the number of distinct keys in the dirty
section, up to cleaning_pass.MAX_MAP_ENTRIES (Kafka bounds it with a fixed 24-byte-per-key
buffer).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from strom.storage.checkpoint import read_offsets, write_offsets
from strom.storage.cleaning_pass import CleanJob, CleanResult, PassOutcome, run
from strom.storage.compaction import NO_HORIZON, ProducerLast
from strom.storage.partition_log import PartitionLog
from strom.storage.segment import Segment, floor_index

__all__ = [
    "NO_HORIZON",
    "CleanJob",
    "CleanResult",
    "clean",
    "finish",
    "forget",
    "next_due_ms",
    "plan",
    "run_job",
]

log = logging.getLogger("strom.storage")

CHECKPOINT_FILE = "cleaner-offset-checkpoint"
# Cleaner threads store their passes' offsets while the event loop forgets deleted partitions.
_checkpoint_lock = threading.Lock()

Checkpoints = Mapping[tuple[str, int], int]


# -- checkpoint ---------------------------------------------------------------------------------


def checkpoint_path(log_dir: Path) -> Path:
    return log_dir / CHECKPOINT_FILE


def read_checkpoint(log_dir: Path) -> dict[tuple[str, int], int]:
    with _checkpoint_lock:
        return read_offsets(checkpoint_path(log_dir))


def first_dirty_offset(plog: PartitionLog, checkpoints: Checkpoints | None = None) -> int:
    if checkpoints is None:
        checkpoints = read_checkpoint(plog.directory.parent)
    stored = checkpoints.get((plog.topic, plog.partition))
    if stored is None or stored < plog.log_start_offset or stored > plog.log_end_offset:
        return plog.log_start_offset
    return stored


def _store_checkpoint(plog: PartitionLog, offset: int) -> None:
    path = checkpoint_path(plog.directory.parent)
    with _checkpoint_lock:
        offsets = read_offsets(path)
        offsets[(plog.topic, plog.partition)] = offset
        write_offsets(path, offsets)


def forget(log_dir: Path, topic: str, partition: int) -> None:
    """Remove a deleted partition from the log dir's cleaner checkpoint."""
    path = checkpoint_path(log_dir)
    with _checkpoint_lock:
        offsets = read_offsets(path)
        if offsets.pop((topic, partition), None) is not None:
            write_offsets(path, offsets)


# -- planning (event loop) ----------------------------------------------------------------------


def _largest_timestamp(segment: Segment) -> int:
    if segment.max_timestamp >= 0:
        return segment.max_timestamp
    try:
        return os.stat(segment.log_path).st_mtime_ns // 1_000_000
    except FileNotFoundError:
        return -1


def cleanable_range(plog: PartitionLog, first_dirty: int, now_ms: int) -> tuple[list[Segment], int]:
    """(the cleanable segments, the upper bound): see module doc."""
    segments = plog.segments
    active = len(segments) - 1
    uncleanable = min(plog.last_stable_offset, segments[active].base_offset)
    lag = plog.config.min_compaction_lag_ms
    if lag > 0:
        for segment in segments[floor_index(segments, first_dirty) : active]:
            if _largest_timestamp(segment) > now_ms - lag:
                uncleanable = min(uncleanable, segment.base_offset)
                break
    first_uncleanable = min(floor_index(segments, max(first_dirty, uncleanable)), active)
    return segments[:first_uncleanable], segments[first_uncleanable].base_offset


def _is_due(plog: PartitionLog, segments: list[Segment], first_dirty: int, now_ms: int) -> bool:
    """Kafka's two reasons to clean a log (module doc)."""
    dirty = [
        s for s in segments[floor_index(segments, first_dirty) :] if s.next_offset > first_dirty
    ]
    dirty_bytes = sum(segment.size for segment in dirty)
    clean_bytes = sum(s.size for s in plog.segments if s.base_offset < first_dirty)
    total = clean_bytes + dirty_bytes
    if total == 0 or dirty_bytes == 0:
        return False
    if dirty_bytes / total > plog.config.min_cleanable_dirty_ratio:
        return True
    max_lag = plog.config.max_compaction_lag_ms
    active = plog.segments[-1]
    first_timestamps = [
        s.first_batch_timestamp
        for s in plog.segments[floor_index(plog.segments, first_dirty) :]
        if s is not active and s.first_batch_timestamp is not None and s.first_batch_timestamp > 0
    ]
    return bool(first_timestamps) and min(first_timestamps) < now_ms - max_lag


def plan(
    plog: PartitionLog, now_ms: int, checkpoints: Checkpoints | None = None
) -> CleanJob | None:
    """A pass over `plog` if one is due now (module doc), else None. A planned log is marked as
    being cleaned (retention leaves it alone) until `finish`."""
    if not plog.config.compact or plog.closed or plog.cleaning:
        return None
    first_dirty = first_dirty_offset(plog, checkpoints)
    segments, upper = cleanable_range(plog, first_dirty, now_ms)
    if not segments or not any(segment.size for segment in segments):
        return None
    due = _is_due(plog, segments, first_dirty, now_ms)
    horizon = plog.cleaner_horizon_ms
    if not due and horizon is not None:
        if horizon > now_ms:
            return None
        due = True
    producers = {
        pid: ProducerLast(entry.last_data_offset if entry.batches else None, entry.producer_epoch)
        for pid, entry in plog.producer_state.producers.items()
    }
    aborted = tuple(plog.collect_aborted_txns(segments[0].base_offset, upper))
    plog.cleaning = True
    plog.cleaning_aborted = False
    return CleanJob(
        plog,
        tuple(segments),
        first_dirty,
        upper,
        now_ms,
        producers,
        aborted,
        plog.config,
        due,
    )


def next_due_ms(
    plog: PartitionLog, now_ms: int, checkpoints: Checkpoints | None = None
) -> int | None:
    """After `plan(plog, now_ms)` found nothing due: the earliest moment at which the clock
    alone could make a pass due (None: only a change to the log can). The candidates: the
    delete horizon stored in the batches passing, the first dirty segment blocked by
    min.compaction.lag.ms becoming cleanable, and the oldest dirty segment reaching
    max.compaction.lag.ms. An early answer costs one extra plan; a late one would delay a pass."""
    config = plog.config
    if not config.compact or plog.closed:
        return None
    candidates = []
    horizon = plog.cleaner_horizon_ms
    if horizon is not None:
        candidates.append(horizon)
    segments = plog.segments
    active = segments[-1]
    dirty = segments[floor_index(segments, first_dirty_offset(plog, checkpoints)) :]
    lag = config.min_compaction_lag_ms
    if lag > 0:
        for segment in dirty:
            if segment is not active and _largest_timestamp(segment) > now_ms - lag:
                candidates.append(_largest_timestamp(segment) + lag)
                break
    first_timestamps = [
        s.first_batch_timestamp
        for s in dirty
        if s is not active and s.first_batch_timestamp is not None and s.first_batch_timestamp > 0
    ]
    if first_timestamps:
        candidates.append(min(first_timestamps) + config.max_compaction_lag_ms + 1)
    later = [when for when in candidates if when > now_ms]
    return min(later) if later else None


# -- running (cleaner thread) and finishing (event loop) ----------------------------------------


def run_job(job: CleanJob) -> PassOutcome:
    """The pass itself; blocking, for a cleaner thread."""
    return run(job, _store_checkpoint)


def finish(job: CleanJob, outcome: PassOutcome | None) -> CleanResult | None:
    """After the pass (None: it failed): the log is no longer being cleaned; the snapshots of
    the segments merged away go, as Kafka deletes them with the segments."""
    plog = job.plog
    plog.cleaning = False
    plog.on_change(plog)  # the next round plans again from what the pass left
    if outcome is None:
        plog.cleaner_horizon_ms = None
        return None
    plog.cleaner_horizon_ms = outcome.earliest_horizon
    if outcome.replaced_bases and not plog.closed:
        current = {segment.base_offset for segment in plog.segments}
        plog.producer_state.delete_snapshots_where(
            base for base in outcome.replaced_bases if base not in current
        )
    return outcome.result


def clean(
    plog: PartitionLog, now_ms: int, checkpoints: Checkpoints | None = None
) -> CleanResult | None:
    """Plan, run and finish a pass in this thread; None when none was due or it stopped."""
    job = plan(plog, now_ms, checkpoints)
    if job is None:
        return None
    outcome: PassOutcome | None = None
    try:
        outcome = run_job(job)
    finally:
        result = finish(job, outcome)
    return result
