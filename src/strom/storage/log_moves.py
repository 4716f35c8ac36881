"""Moving a replica between log directories of one broker: the future log and the swap.

AlterReplicaLogDirs creates a future log `<topic>-<partition>.<uuid>-future` in the target
directory; a copier (replication/alter_log_dirs.py) fills it from the current log. Once both
end at the same offset, `replace_current_with_future` swaps it in, on the partition's single
writer (the event loop), so no append can come between the check and the swap:

  1. the current directory is renamed to `<topic>-<partition>.<uuid>-delete` (fsync its log dir);
  2. the future directory is renamed to `<topic>-<partition>` (fsync its log dir);
  3. the current PartitionLog object takes over the future's files (`PartitionLog.take_over`),
     so everything holding the log keeps using it; the old files are closed and removed, the
     cleaner checkpoint entry and the offset checkpoints of both directories follow.

The order makes every crash recoverable without a partition in two directories (which stops
the broker, as Kafka): after 1 and before 2 the next start-up finds a future log without a
current one (the `-delete` directory is removed as usual). A future log is only ever without
its current log in that window, since it was caught up when step 1 began, so start-up promotes
it (`recover_abandoned_futures`, Kafka's name for its KRaft counterpart). Any other future log
found at start-up is resumed by the copier. While a log dir is offline nothing is promoted: the
current log may be in it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from strom.storage import cleaner
from strom.storage.checkpoint import fsync_dir, read_offsets, write_offsets
from strom.storage.partition_log import PartitionLog, partition_dir_name

if TYPE_CHECKING:
    from strom.storage.log_loading import TopicPartition
    from strom.storage.log_manager import LogManager

log = logging.getLogger("strom.storage")

# Kafka's limit: a future directory name longer than this cannot be created (KAFKA-4893).
MAX_DIR_NAME = 255


def future_dir_name(topic: str, partition: int) -> str:
    return f"{partition_dir_name(topic, partition)}.{uuid.uuid4().hex}-future"


def delete_dir_name(topic: str, partition: int) -> str:
    return f"{partition_dir_name(topic, partition)}.{uuid.uuid4().hex}-delete"


def future_name_too_long(topic: str, partition: int) -> bool:
    return len(future_dir_name(topic, partition)) > MAX_DIR_NAME


def recover_abandoned_futures(manager: LogManager) -> None:
    """At start-up: a future log whose current log is nowhere was cut off between the two
    renames of a swap; it becomes the current log."""
    if manager.offline_dirs:
        return
    for key in sorted(manager.future_logs):
        if key in manager.logs or key in manager.deferred or key in manager.offline_partitions:
            continue
        future = manager.future_logs.pop(key)
        log_dir = future.directory.parent
        target = log_dir / partition_dir_name(*key)
        log.info("completing the move of %s-%d to %s interrupted by a crash", *key, log_dir)
        os.rename(future.directory, target)
        fsync_dir(log_dir)
        future.rename_dir(target)
        manager.logs[key] = future
        manager.log_dir_of[key] = log_dir


def prepare_swap(current: PartitionLog, future: PartitionLog) -> None:
    """Give the caught-up future log what it cannot have copied: the current log's start
    offset and high watermark, and leader epochs begun without a record yet (a new leader
    stamps its epoch at the log end)."""
    future.maybe_increment_log_start_offset(current.log_start_offset)
    latest = future.leader_epoch_cache.latest_epoch
    for epoch, start in current.leader_epoch_cache.entries():
        if epoch > latest:
            future.leader_epoch_cache.assign(epoch, start)
    future.update_high_watermark(current.high_watermark)


def replace_current_with_future(manager: LogManager, key: TopicPartition) -> bool:
    """Swap the caught-up future log of `key` in (see the module docstring). False, changing
    nothing, while a flush of either log is running: try again later. Raises OSError when a
    rename fails (after undoing the first); the caller reports it against the directory."""
    current = manager.logs[key]
    future = manager.future_logs[key]
    source_dir = manager.log_dir_of[key]
    target_dir = future.directory.parent
    with current.flushes_paused() as quiet, future.flushes_paused() as also_quiet:
        if not (quiet and also_quiet):
            return False
        prepare_swap(current, future)
        final = target_dir / partition_dir_name(*key)
        doomed = source_dir / delete_dir_name(*key)
        home = current.directory
        _rename(current, doomed)
        try:
            fsync_dir(source_dir)
            os.rename(future.directory, final)
        except OSError:
            _rename(current, home)
            raise
        future.rename_dir(final)
        old = current.take_over(future)
    del manager.future_logs[key]
    manager.log_dir_of[key] = target_dir
    manager.cleaning_paused.discard(key)
    for segment in old:
        segment.close()
    fsync_dir(target_dir)
    _move_cleaner_checkpoint(source_dir, target_dir, key)
    manager.checkpoint()
    manager.remove_tree(doomed)
    log.info("%s-%d: moved from %s to %s", key[0], key[1], source_dir, target_dir)
    return True


def _rename(plog: PartitionLog, directory: Path) -> None:
    """Rename a log's directory while none of its segments is read: a read in a worker thread
    may reopen a descriptor the file cache closed, by name, which must be the new one."""
    with contextlib.ExitStack() as held:
        for segment in plog.segments:
            held.enter_context(segment.lock)
        os.rename(plog.directory, directory)
        plog.rename_dir(directory)


def _move_cleaner_checkpoint(source_dir: Path, target_dir: Path, key: TopicPartition) -> None:
    offset = read_offsets(source_dir / cleaner.CHECKPOINT_FILE).get(key)
    if offset is None:
        return
    target = target_dir / cleaner.CHECKPOINT_FILE
    offsets = read_offsets(target)
    offsets[key] = offset
    write_offsets(target, offsets)
    cleaner.forget(source_dir, *key)
