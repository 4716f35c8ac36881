"""The files that say, per log dir, where every log stands: the offset checkpoints (written
every log.flush.offset.checkpoint.interval.ms and at shutdown) and the clean shutdown marker.

`close` is the clean shutdown: every log closed, one sync of each log dir's file system
instead of an fsync per log, recovery points moved to the log ends, checkpoints, and the
`.kafka_cleanshutdown` marker in each log dir whose logs all closed cleanly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from strom.storage.checkpoint import sync_filesystem, write_atomically, write_offsets
from strom.storage.log_loading import (
    CLEAN_SHUTDOWN_CONTENT,
    CLEAN_SHUTDOWN_FILE,
    HIGH_WATERMARK_FILE,
    LOG_START_OFFSET_FILE,
    RECOVERY_POINT_FILE,
    TopicPartition,
)

if TYPE_CHECKING:
    from strom.storage.log_manager import LogManager

log = logging.getLogger("strom.storage")


# Per log dir: (recovery points, log start offsets).
OffsetsByDir = dict[Path, tuple[dict[TopicPartition, int], dict[TopicPartition, int]]]


def write_checkpoints(manager: LogManager) -> None:
    """Write recovery points and log start offsets of every log (deferred ones with the
    values read at start-up), per live log dir, atomically; high watermarks too."""
    write_offsets_by_dir(manager, offsets_by_dir(manager))
    write_high_watermarks(manager, high_watermarks_by_dir(manager))


def offsets_by_dir(manager: LogManager) -> OffsetsByDir:
    """Recovery points and log start offsets per live log dir, taken on the owning thread in
    one pass over the logs (written by `write_offsets_by_dir`, maybe in a worker)."""
    taken: OffsetsByDir = {d: ({}, {}) for d in manager.live_log_dirs}
    for key, log_dir in manager.log_dir_of.items():
        found = taken.get(log_dir)
        if found is not None:
            plog = manager.logs[key]
            found[0][key] = plog.recovery_point
            found[1][key] = plog.log_start_offset
    for key, plog in manager.future_logs.items():
        found = taken.get(plog.directory.parent)
        if found is not None:
            found[0][key] = plog.recovery_point
            found[1][key] = plog.log_start_offset
    for key, entry in manager.deferred.items():
        found = taken.get(entry.log_dir)
        if found is not None:
            if entry.recovery_point is not None:
                found[0][key] = entry.recovery_point
            if entry.log_start_offset is not None:
                found[1][key] = entry.log_start_offset
    return taken


def write_offsets_by_dir(manager: LogManager, taken: OffsetsByDir) -> None:
    """Write what `offsets_by_dir` took (any thread)."""
    for log_dir, (points, starts) in taken.items():
        try:
            _write_if_changed(manager, log_dir / RECOVERY_POINT_FILE, points)
            _write_if_changed(manager, log_dir / LOG_START_OFFSET_FILE, starts)
        except OSError as exc:
            manager.io_failed(log_dir, exc)


def _write_if_changed(manager: LogManager, path: Path, offsets: dict[TopicPartition, int]) -> None:
    """Write a checkpoint unless this process last wrote exactly these offsets there: with
    many idle partitions most periodic checkpoints repeat the previous one, and comparing
    two dicts costs far less than formatting and writing a line per partition."""
    with manager.checkpoint_lock:
        if manager.checkpoints_written.get(path) == offsets:
            return
        manager.checkpoints_written.pop(path, None)
        write_offsets(path, offsets)
        manager.checkpoints_written[path] = offsets


def high_watermarks_by_dir(manager: LogManager) -> dict[Path, dict[TopicPartition, int]]:
    """The current logs' high watermarks per live directory (for replication-offset-
    checkpoint, which Kafka's ReplicaManager writes every
    replica.high.watermark.checkpoint.interval.ms). Taken on the owning thread."""
    marks: dict[Path, dict[TopicPartition, int]] = {d: {} for d in manager.live_log_dirs}
    for key, log_dir in manager.log_dir_of.items():
        found = marks.get(log_dir)
        if found is not None:
            found[key] = manager.logs[key].high_watermark
    for key, entry in manager.deferred.items():
        found = marks.get(entry.log_dir)
        if found is not None and entry.high_watermark is not None:
            found[key] = entry.high_watermark
    return marks


def write_high_watermarks(
    manager: LogManager, marks: dict[Path, dict[TopicPartition, int]]
) -> None:
    """Write what `high_watermarks_by_dir` took (may run in a worker thread)."""
    for log_dir, offsets in marks.items():
        try:
            _write_if_changed(manager, log_dir / HIGH_WATERMARK_FILE, offsets)
        except OSError as exc:
            manager.io_failed(log_dir, exc)


def close(manager: LogManager) -> None:
    """Close every log, make what was written durable with one sync of each log dir's
    file system (not an fsync per log: a hundred thousand of those take minutes), write
    the checkpoints, then mark each live log dir whose logs all closed cleanly. The future
    logs' copier must have stopped. Deferred logs were never touched: they stay as the
    last clean shutdown left them."""
    unclean: set[Path] = set()
    for plog in manager.all_logs():
        try:
            plog.close(sync=False)
        except OSError as exc:
            log.error("closing %s: %s", plog.directory, exc)
            unclean.add(plog.directory.parent)
    for log_dir in manager.live_log_dirs:
        try:
            sync_filesystem(log_dir)
        except OSError as exc:
            log.error("syncing %s failed: %s", log_dir, exc)
            unclean.add(log_dir)
    for plog in manager.all_logs():
        if plog.directory.parent not in unclean:
            plog.recovery_point = plog.log_end_offset
    unrecovered = {entry.log_dir for entry in manager.deferred.values() if not entry.clean}
    for log_dir in unrecovered:
        log.info("%s holds logs not recovered since a crash: no clean shutdown marker", log_dir)
    unclean |= unrecovered
    manager.checkpoint()
    for log_dir in manager.live_log_dirs:
        if log_dir in unclean:
            if log_dir not in unrecovered:
                log.error(
                    "%s is left without its clean shutdown marker: its logs are "
                    "recovered at the next start",
                    log_dir,
                )
            continue
        try:
            write_atomically(log_dir / CLEAN_SHUTDOWN_FILE, CLEAN_SHUTDOWN_CONTENT)
        except OSError as exc:
            log.error("could not mark %s cleanly shut down: %s", log_dir, exc)
