"""`LogManager`: every partition log under the configured log directories (JBOD, as Kafka).

Per log directory (Kafka's layout):
  <topic>-<partition>/                    one PartitionLog each (the partition is after the
                                          last '-')
  <topic>-<partition>.<uuid hex>-future/  a replica being moved here from another log dir of
                                          this broker (AlterReplicaLogDirs, log_moves.py)
  <topic>-<partition>.<uuid hex>-delete/  a deleted partition whose files are being removed
  meta.properties                         cluster and broker id (log_dirs.py)
  recovery-point-offset-checkpoint        "<topic> <partition> <recovery point>" (checkpoint.py)
  log-start-offset-checkpoint             "<topic> <partition> <log start offset>"
  replication-offset-checkpoint           "<topic> <partition> <high watermark>"
  cleaner-offset-checkpoint               owned by cleaner.py
  .kafka_cleanshutdown                    written by close() after everything is durable;
                                          removed by open(), so its presence at open means the
                                          previous run shut down cleanly and segments need no
                                          recovery
The checkpoints of a directory list the logs (current, future and deferred) stored in it
(log_checkpoints.py, which also has the clean shutdown).

Loading (log_loading.py): after a clean shutdown no log is read at start-up; each is a
`DeferredLog` until `get` or the broker's warm-up (`open_deferred`) opens it. New partitions go
to the live directory holding the fewest logs (placement.py), unless AlterReplicaLogDirs named
one for the partition beforehand. A partition found in two directories at start-up stops the
broker (Kafka's error and advice).

A directory fails when it cannot be used at start-up (log_dirs.py) or when an I/O error hits a
file in it (`io_failed`, from any thread). `take_offline` then drops its logs: their partitions
are offline (`offline_partitions`; the server answers KAFKA_STORAGE_ERROR for them) until the
broker restarts. While any directory is offline, a log is only created for a partition that is
new to this broker (Kafka's rule: an existing one may be in the failed directory).

All methods block (file I/O, fsync); the server chooses which to run in worker threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from strom.storage import cleaner, log_checkpoints, log_moves
from strom.storage.check_schedule import CheckSchedule
from strom.storage.checkpoint import (
    fsync_dir,
)
from strom.storage.deferred_logs import DeferredLog, deferred_size
from strom.storage.errors import KafkaStorageError, StorageError, is_dir_failure
from strom.storage.log_config import LogConfig
from strom.storage.log_dirs import LogDirConfigError, prepare_log_dirs
from strom.storage.log_loading import (
    TopicPartition,
    load_dir,
    open_deferred_log,
)
from strom.storage.partition_log import (
    DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    PartitionLog,
    partition_dir_name,
)
from strom.storage.placement import CountedDirs, fewest_first
from strom.storage.retention import delete_expired_segments, next_expiry_ms
from strom.storage.segment import SegmentClosedError

log = logging.getLogger("strom.storage")


class LogDirNotFoundError(StorageError):
    """A path that is not one of log.dirs (LOG_DIR_NOT_FOUND)."""

    error_code = 57


class LogManager:
    def __init__(
        self,
        log_dirs: list[Path],
        config_for: Callable[[str], LogConfig],
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
        offline_dirs: dict[Path, str] | None = None,
    ) -> None:
        if not log_dirs:
            raise ValueError("at least one log directory is needed")
        self.log_dirs = [d.absolute() for d in log_dirs]
        self.config_for = config_for
        self._configs: dict[str, LogConfig] = {}
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self.logs: dict[TopicPartition, PartitionLog] = {}
        self.log_dir_of: CountedDirs[TopicPartition, Path] = CountedDirs(lambda d: d)
        self.future_logs: dict[TopicPartition, PartitionLog] = {}
        # Logs with files left to be written later (PartitionLog.files_due; the broker writes
        # them from its worker pool through take_due_files and write_due_files).
        self._files_due: set[PartitionLog] = set()
        # The offsets each checkpoint file was last written with (log_checkpoints.py), and
        # one writer of those files at a time (the periodic ones run in worker threads).
        self.checkpoints_written: dict[Path, dict[TopicPartition, int]] = {}
        self.checkpoint_lock = threading.Lock()
        # Shared by every log (a bound method per log would cost memory per partition).
        self._files_due_add = self._files_due.add
        # The logs retention and the cleaner look at in their next rounds (check_schedule.py).
        self.retention_checks = CheckSchedule()
        self.cleaner_checks = CheckSchedule()
        self._io_sink = self.io_failed
        # Partitions of cleanly shut down log dirs not opened yet (deferred_logs.py).
        self.deferred: CountedDirs[TopicPartition, DeferredLog] = CountedDirs(
            lambda entry: entry.log_dir
        )
        # Directory -> why it is offline. Changed only on the owning thread (take_offline).
        self.offline_dirs: dict[Path, str] = {}
        # Partitions whose log is in an offline directory (None: not known which, it was
        # offline at start-up).
        self.offline_partitions: dict[TopicPartition, Path | None] = {}
        # AlterReplicaLogDirs for a partition not hosted yet: where its log is to be created.
        self.preferred_dirs: dict[TopicPartition, Path] = {}
        # Partitions of new topics whose logs are being created (off the owning thread, by
        # make_logs) -> their topic id; until then they have no leader here.
        self.pending: dict[TopicPartition, uuid.UUID] = {}
        # Partitions the cleaner leaves alone (being moved between directories).
        self.cleaning_paused: set[TopicPartition] = set()
        self._unlink: Callable[[list[Path]], object] | None = None
        # Removes a renamed `-delete` directory; the broker runs it in its worker pool (freeing
        # a large log's extents takes long). A crash before it runs leaves the directory, which
        # loading removes.
        self.remove_tree: Callable[[Path], object] = _remove_tree
        self._failure_lock = threading.Lock()
        self._failing: set[Path] = set()
        # Called (from any thread) when I/O in a live directory fails; it must arrange for
        # take_offline(log_dir, reason) to run on the thread that owns this manager. The
        # default runs it at once (tests and tools with one thread).
        self.on_dir_failure: Callable[[Path, str], object] = self.take_offline
        # Set by whoever copies into future logs in another thread (the alter-log-dirs mover):
        # called before a future log is closed or deleted, it returns once no copy into it runs
        # and none will start.
        self.release_future: Callable[[TopicPartition], None] = lambda key: None
        for log_dir, reason in (offline_dirs or {}).items():
            self.offline_dirs[log_dir.absolute()] = reason

    def set_producer_id_expiration(self, expiration_ms: int) -> None:
        """producer.id.expiration.ms changed at run time: every log uses the new value."""
        self.producer_id_expiration_ms = expiration_ms
        for plog in self.logs.values():
            plog.producer_id_expiration_ms = expiration_ms

    def set_unlinker(self, unlink: Callable[[list[Path]], object]) -> None:
        """Remove the files of deleted segments with `unlink` (the broker: in its worker pool)."""
        self._unlink = unlink
        for plog in [*self.logs.values(), *self.future_logs.values()]:
            plog.unlink_files = unlink

    @classmethod
    def open(
        cls,
        log_dirs: list[Path],
        config_for: Callable[[str], LogConfig],
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
        *,
        cluster_id: str | None = None,
        broker_id: int | None = None,
    ) -> LogManager:
        """Check the directories (log_dirs.py), then load every log in the usable ones.

        Raises LogDirConfigError when no directory is usable or the directories contradict
        each other (another broker's, the same partition twice)."""
        absolute = [d.absolute() for d in log_dirs]
        offline = prepare_log_dirs(absolute, cluster_id, broker_id)
        for reason in offline.values():
            log.error("%s; the log directory is offline", reason)
        manager = cls(absolute, config_for, producer_id_expiration_ms, offline)
        for log_dir in manager.live_log_dirs:
            try:
                load_dir(manager, log_dir)
            except OSError as exc:
                reason = f"Error while loading log dir {log_dir}: {exc}"
                log.error("%s; the log directory is offline", reason)
                manager.take_offline(log_dir, reason, quiet=True)
        if not manager.live_log_dirs:
            raise LogDirConfigError(
                "Shutdown broker because none of the specified log dirs from "
                f"{', '.join(map(str, absolute))} can be created or validated"
            )
        log_moves.recover_abandoned_futures(manager)
        return manager

    def register(
        self, key: TopicPartition, plog: PartitionLog, log_dir: Path, future: bool
    ) -> None:
        if self._unlink is not None:
            plog.unlink_files = self._unlink
        plog.set_io_error_sink(self._io_sink)
        plog.files_due = self._files_due_add
        plog.on_change = self.log_changed
        self.log_changed(plog)
        if plog.has_due_files:
            self._files_due.add(plog)
        if future:
            self.future_logs[key] = plog
        else:
            self.logs[key] = plog
            self.log_dir_of[key] = log_dir

    def log_changed(self, plog: PartitionLog) -> None:
        """Retention and the cleaner look at `plog` in their next rounds (PartitionLog.on_change)."""
        self.retention_checks.changed.add(plog)
        self.cleaner_checks.changed.add(plog)

    def _forget(self, plog: PartitionLog) -> None:
        self.retention_checks.forget(plog)
        self.cleaner_checks.forget(plog)

    # -- directories ---------------------------------------------------------------------------

    @property
    def live_log_dirs(self) -> list[Path]:
        return [d for d in self.log_dirs if d not in self.offline_dirs]

    def is_online(self, log_dir: Path) -> bool:
        """Whether `log_dir` (one of log.dirs, compared as absolute paths) is online; raises
        LogDirNotFoundError for any other path."""
        absolute = log_dir.absolute()
        if absolute not in self.log_dirs:
            raise LogDirNotFoundError(f"Log dir {log_dir} is not found in the config.")
        return absolute not in self.offline_dirs

    def log_dir_containing(self, path: Path) -> Path | None:
        absolute = path.absolute()
        for log_dir in self.log_dirs:
            if absolute == log_dir or log_dir in absolute.parents:
                return log_dir
        return None

    def logs_in(self, log_dir: Path) -> dict[TopicPartition, PartitionLog]:
        """The current and future logs stored in `log_dir`."""
        found = {k: self.logs[k] for k, d in self.log_dir_of.items() if d == log_dir}
        for key, plog in self.future_logs.items():
            if plog.directory.parent == log_dir:
                found[key] = plog
        return found

    # -- failures ------------------------------------------------------------------------------

    def io_failed(self, where: PartitionLog | Path, exc: BaseException) -> None:
        """An I/O error hit a log or a file in a log dir (any thread): the directory goes
        offline (once; later reports of the same directory are ignored)."""
        if isinstance(exc, SegmentClosedError):
            return  # a read raced with a swap or close, not a disk failure
        if not is_dir_failure(exc, len(self.log_dirs)):
            return  # descriptors, memory or (one log dir) disk space ran short for a while
        path = where.directory if isinstance(where, PartitionLog) else where
        log_dir = self.log_dir_containing(path)
        if log_dir is None:
            return
        with self._failure_lock:
            if log_dir in self.offline_dirs or log_dir in self._failing:
                return
            self._failing.add(log_dir)
        self.on_dir_failure(log_dir, f"{type(exc).__name__}: {exc}")

    def take_offline(
        self, log_dir: Path, reason: str, *, quiet: bool = False
    ) -> list[TopicPartition]:
        """Stop using `log_dir`: its current logs go offline and its future logs are dropped
        (their files stay). Returns the partitions now offline. Logs one line unless `quiet`."""
        with self._failure_lock:
            if log_dir in self.offline_dirs:
                return []
            self.offline_dirs[log_dir] = reason
            self._failing.discard(log_dir)
        gone = sorted(k for k, d in self.log_dir_of.items() if d == log_dir)
        futures = sorted(k for k, f in self.future_logs.items() if f.directory.parent == log_dir)
        # A partition whose current log is lost cannot finish its move either.
        for key in sorted(set(futures) | {k for k in gone if k in self.future_logs}):
            self.release_future(key)
            _close_quietly(self.future_logs.pop(key))
        for key in gone:
            plog = self.logs.pop(key)
            self._forget(plog)
            _close_quietly(plog)
            del self.log_dir_of[key]
            self.offline_partitions[key] = log_dir
            self.cleaning_paused.discard(key)
        unopened = sorted(k for k, d in self.deferred.items() if d.log_dir == log_dir)
        for key in unopened:
            del self.deferred[key]
            self.offline_partitions[key] = log_dir
        gone = sorted([*gone, *unopened])
        if not quiet:
            names = ", ".join(f"{t}-{p}" for t, p in gone) or "none"
            log.error(
                "Log directory %s failed (%s) and is offline: partitions %s are offline%s",
                log_dir,
                reason,
                names,
                "; serving the other log directories" if self.live_log_dirs else "",
            )
        return gone

    def is_offline(self, topic: str, partition: int) -> bool:
        return (topic, partition) in self.offline_partitions

    def is_unavailable(self, topic: str, partition: int) -> bool:
        """After `get` found no log: its log dir is offline, or it could not be opened now
        (descriptors ran out; the next `get` tries again)."""
        key = (topic, partition)
        return key in self.offline_partitions or key in self.deferred

    # -- partitions ----------------------------------------------------------------------------

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        """The partition's log, opened now if it was deferred (None when that fails: its log
        dir failed, or descriptors ran out and it stays deferred; see is_unavailable)."""
        plog = self.logs.get((topic, partition))
        if plog is None and self.deferred:
            return open_deferred_log(self, (topic, partition))
        return plog

    def open_deferred(self, budget_s: float) -> int:
        """Open deferred logs for about `budget_s` seconds (the broker's warm-up); returns
        how many are left."""
        deadline = time.monotonic() + budget_s
        for key in list(self.deferred):
            if key in self.deferred:
                open_deferred_log(self, key)
            if time.monotonic() >= deadline:
                break
        return len(self.deferred)

    def deferred_sizes(self, log_dir: Path) -> dict[TopicPartition, int]:
        """The sizes of `log_dir`'s deferred logs, without opening them."""
        return {
            key: deferred_size(entry.log_dir / partition_dir_name(*key))
            for key, entry in self.deferred.items()
            if entry.log_dir == log_dir
        }

    def get_future(self, topic: str, partition: int) -> PartitionLog | None:
        return self.future_logs.get((topic, partition))

    def has(self, topic: str, partition: int) -> bool:
        """Whether the partition has a log here, opened or not."""
        key = (topic, partition)
        return key in self.logs or key in self.deferred

    def partitions(self) -> list[TopicPartition]:
        return [*self.logs, *self.deferred]

    def all_logs(self) -> list[PartitionLog]:
        """Current and future logs (what flushing and checkpoints cover)."""
        return [*self.logs.values(), *self.future_logs.values()]

    def next_log_dirs(self) -> list[Path]:
        """Live directories by how many logs they hold, fewest first (Kafka's placement)."""
        live = self.live_log_dirs
        if len(live) <= 1:
            return live
        futures = Counter(plog.directory.parent for plog in self.future_logs.values())
        return fewest_first(live, [self.log_dir_of.counts, self.deferred.counts, futures])

    def create(
        self,
        topic: str,
        partition: int,
        topic_id: uuid.UUID,
        config: LogConfig,
        *,
        is_new: bool = True,
    ) -> PartitionLog:
        """Create a partition log (or return it): in the directory AlterReplicaLogDirs named
        for it, else in the live directory holding the fewest logs. `is_new=False` (a replica
        this broker should already have) raises KafkaStorageError while a directory is
        offline: its log may be there."""
        key = (topic, partition)
        existing = self.get(topic, partition)
        if existing is not None:
            return existing
        if key in self.deferred:
            raise KafkaStorageError(f"{topic}-{partition} cannot be opened now")
        if key in self.offline_partitions:
            raise KafkaStorageError(f"{topic}-{partition} is in an offline log directory")
        if not is_new and self.offline_dirs:
            raise KafkaStorageError(
                f"Can not create log for {topic}-{partition} because log directories "
                f"{', '.join(map(str, self.offline_dirs))} are offline"
            )
        preferred = self.preferred_dirs.get(key)
        candidates = (
            [preferred] if preferred is not None and preferred not in self.offline_dirs else []
        )
        candidates += [d for d in self.next_log_dirs() if d not in candidates]
        for log_dir in candidates:
            try:
                plog = self._create_in(
                    log_dir, partition_dir_name(topic, partition), key, topic_id, config
                )
            except OSError as exc:
                if not is_dir_failure(exc, len(self.log_dirs)):
                    # Out of descriptors or space: no other directory is tried, and what was
                    # made of this partition goes again (the caller's request fails).
                    shutil.rmtree(log_dir / partition_dir_name(topic, partition), True)
                    raise
                self.io_failed(log_dir, exc)
                continue
            self.register(key, plog, log_dir, future=False)
            self.preferred_dirs.pop(key, None)
            log.debug("created log for partition %s-%d in %s", topic, partition, plog.directory)
            return plog
        raise KafkaStorageError(
            f"No log directories available. Tried {', '.join(map(str, candidates))}"
        )

    def place(self, keys: list[TopicPartition]) -> list[tuple[TopicPartition, Path]]:
        """Where `create` would put the new logs of `keys`, each counted as placed for the
        next (owning thread). Raises KafkaStorageError when no live directory is left."""
        with self._failure_lock:
            live = [d for d in self.live_log_dirs if d not in self._failing]
        if not live:
            raise KafkaStorageError("No log directories available")
        counts = Counter(self.log_dir_of.counts)
        counts.update(self.deferred.counts)
        counts.update(plog.directory.parent for plog in self.future_logs.values())
        placed = []
        for key in keys:
            preferred = self.preferred_dirs.get(key)
            if preferred is not None and preferred in live:
                log_dir = preferred
            else:
                log_dir = min(live, key=lambda d: counts[d])  # the first of equals: log.dirs order
            counts[log_dir] += 1
            placed.append((key, log_dir))
        return placed

    def make_logs(
        self, placed: list[tuple[TopicPartition, Path]], topic_id: uuid.UUID, config: LogConfig
    ) -> tuple[list[PartitionLog], tuple[Path, OSError] | None]:
        """Create the files of new logs where `place` put them (blocking; any thread), in
        order, up to the first that fails. Returns the logs made, for `adopt` on the owning
        thread, and the failure (its directory and error; the failed partition's files are
        removed unless its directory failed)."""
        made = []
        for key, log_dir in placed:
            name = partition_dir_name(*key)
            try:
                made.append(self._create_in(log_dir, name, key, topic_id, config))
            except OSError as exc:
                if not is_dir_failure(exc, len(self.log_dirs)):
                    shutil.rmtree(log_dir / name, True)
                return made, (log_dir, exc)
        return made, None

    def adopt(self, plog: PartitionLog) -> None:
        """Serve a log made by `make_logs` (owning thread)."""
        key = (plog.topic, plog.partition)
        self.register(key, plog, plog.directory.parent, future=False)
        self.preferred_dirs.pop(key, None)

    def discard(self, plog: PartitionLog) -> None:
        """Remove a log made by `make_logs` that is not to be served (its topic went)."""
        self._remove_dir(plog, (plog.topic, plog.partition))

    def _create_in(
        self,
        log_dir: Path,
        name: str,
        key: TopicPartition,
        topic_id: uuid.UUID,
        config: LogConfig,
    ) -> PartitionLog:
        plog = PartitionLog.open(
            log_dir / name,
            key[0],
            key[1],
            topic_id,
            config,
            recovery_point=0,
            clean_shutdown=True,
            log_start_offset=0,
            producer_id_expiration_ms=self.producer_id_expiration_ms,
        )
        # Durable with the log's first flush (PartitionLog.flush syncs a new log's directory
        # entries); a crash before loses nothing acknowledged, and the topic's metadata makes
        # the broker create the log again at start-up.
        return plog

    def create_future(self, topic: str, partition: int, log_dir: Path) -> PartitionLog:
        """Create the empty future log of a hosted partition in `log_dir` (another live
        directory), named `<topic>-<partition>.<uuid>-future`."""
        key = (topic, partition)
        current = self.get(topic, partition)
        if current is None:
            raise KafkaStorageError(f"{topic}-{partition} cannot be opened now")
        if self.log_dir_of[key] == log_dir:
            raise ValueError(f"{topic}-{partition} is already in {log_dir}")
        if self.offline_dirs:
            raise KafkaStorageError(
                f"Can not create the future log of {topic}-{partition} while log directories "
                f"{', '.join(map(str, self.offline_dirs))} are offline"
            )
        try:
            plog = self._create_in(
                log_dir,
                log_moves.future_dir_name(topic, partition),
                key,
                current.topic_id,
                current.config,
            )
        except OSError as exc:
            self.io_failed(log_dir, exc)
            raise KafkaStorageError(f"Error while creating the future log in {log_dir}") from exc
        self.register(key, plog, log_dir, future=True)
        log.info("created future log for partition %s-%d in %s", topic, partition, plog.directory)
        return plog

    def delete_future(self, topic: str, partition: int) -> None:
        """Remove the future log (a move cancelled or redirected, or the partition deleted)."""
        key = (topic, partition)
        if key not in self.future_logs:
            return
        self.release_future(key)
        plog = self.future_logs.pop(key)
        self._remove_dir(plog, key)

    def delete_partition(self, topic: str, partition: int) -> None:
        """Close the log (and its future log), rename its directory to `...-delete`
        (durable), then remove it."""
        key = (topic, partition)
        self.delete_future(topic, partition)
        if key in self.deferred and self.get(topic, partition) is None:
            entry = self.deferred[key]  # cannot be opened: its directory goes as it is
            del self.deferred[key]
            doomed = entry.log_dir / log_moves.delete_dir_name(*key)
            os.rename(entry.log_dir / partition_dir_name(*key), doomed)
            self.remove_tree(doomed)
        self.offline_partitions.pop(key, None)
        self.preferred_dirs.pop(key, None)
        self.cleaning_paused.discard(key)
        plog = self.logs.pop(key, None)
        log_dir = self.log_dir_of.pop(key, None)
        if plog is None or log_dir is None:
            return
        self._remove_dir(plog, key)
        try:
            cleaner.forget(log_dir, topic, partition)
        except OSError as exc:
            self.io_failed(log_dir, exc)

    def _remove_dir(self, plog: PartitionLog, key: TopicPartition) -> None:
        log_dir = plog.directory.parent
        self._forget(plog)
        _close_quietly(plog)
        doomed = log_dir / log_moves.delete_dir_name(*key)
        try:
            os.rename(plog.directory, doomed)
            fsync_dir(log_dir)
        except OSError as exc:
            self.io_failed(log_dir, exc)
            return
        self.remove_tree(doomed)

    def topic_config(self, topic: str) -> LogConfig:
        """`config_for(topic)`, one object shared by the topic's logs opened from disk."""
        config = self._configs.get(topic)
        if config is None:
            config = self._configs[topic] = self.config_for(topic)
        return config

    def update_config(self, topic: str, config: LogConfig) -> None:
        self._configs[topic] = config
        for plog in self.all_logs():
            if plog.topic == topic:
                plog.update_config(config)

    # -- background work -----------------------------------------------------------------------

    def take_due_files(self, most: int) -> list[PartitionLog]:
        """Up to `most` logs with files left to be written (on the owning thread); give them
        to `write_due_files`."""
        taken: list[PartitionLog] = []
        while self._files_due and len(taken) < most:
            taken.append(self._files_due.pop())
        return taken

    def write_due_files(self, logs: list[PartitionLog]) -> list[tuple[PartitionLog, OSError]]:
        """Write what `logs` left for later, without fsync (any thread); returns the
        failures, which the caller gives back with `files_due`."""
        failed = []
        for plog in logs:
            if plog.closed:
                continue
            try:
                plog.write_due_files()
            except OSError as exc:
                failed.append((plog, exc))
        return failed

    def checkpoint(self) -> None:
        """Write recovery points, log start offsets and high watermarks of every log (opened or
        deferred), per live log dir, atomically."""
        log_checkpoints.write_checkpoints(self)

    def offsets_by_dir(self) -> log_checkpoints.OffsetsByDir:
        """`checkpoint` in two halves: this one on the owning thread, the write anywhere."""
        return log_checkpoints.offsets_by_dir(self)

    def write_offsets_by_dir(self, taken: log_checkpoints.OffsetsByDir) -> None:
        log_checkpoints.write_offsets_by_dir(self, taken)

    def high_watermarks_by_dir(self) -> dict[Path, dict[TopicPartition, int]]:
        return log_checkpoints.high_watermarks_by_dir(self)

    def write_high_watermarks(self, marks: dict[Path, dict[TopicPartition, int]]) -> None:
        log_checkpoints.write_high_watermarks(self, marks)

    def _is_current(self, plog: PartitionLog) -> bool:
        return self.logs.get((plog.topic, plog.partition)) is plog

    def run_retention(self, now_ms: int) -> int:
        """Apply retention to the logs that changed since their last check or reached their
        next expiry (check_schedule.py); returns the number of segments deleted. A log being
        cleaned is left for the next round (as Kafka's retention leaves a log the cleaner holds)."""
        deleted = 0
        checks = self.retention_checks
        for plog in checks.take(now_ms):
            if not self._is_current(plog):
                continue  # a future log: retention comes with the move
            if plog.cleaning:
                checks.changed.add(plog)
                continue
            try:
                deleted += delete_expired_segments(plog, now_ms)
            except OSError as exc:
                log.exception("retention failed for %s", plog.name)
                self.io_failed(plog, exc)
                checks.changed.add(plog)
                continue
            # Its own deletions left nothing more for retention at `now_ms`.
            checks.changed.discard(plog)
            checks.due_at(plog, next_expiry_ms(plog, now_ms))
        return deleted

    def remove_expired_producers(self, now_ms: int) -> int:
        """Drop idle producer ids from every log (producer.id.expiration.ms); returns how many."""
        return sum(plog.remove_expired_producers(now_ms) for plog in list(self.logs.values()))

    def plan_cleaning(self, now_ms: int) -> list[cleaner.CleanJob]:
        """A cleaning pass for every compacted log that is due one now (cleaner.plan), looking
        only at the logs that changed since their last check or reached a due time
        (check_schedule.py). Each planned log is marked as being cleaned until cleaner.finish,
        which marks it changed again."""
        checkpoints: dict[Path, cleaner.Checkpoints] = {}
        checks = self.cleaner_checks
        jobs = []
        for plog in checks.take(now_ms):
            key = (plog.topic, plog.partition)
            if not plog.config.compact or plog.cleaning or not self._is_current(plog):
                continue
            if key in self.cleaning_paused:
                continue  # a partition being moved between log dirs is not cleaned (Kafka's rule)
            log_dir = self.log_dir_of[key]
            if log_dir not in checkpoints:
                checkpoints[log_dir] = cleaner.read_checkpoint(log_dir)
            job = cleaner.plan(plog, now_ms, checkpoints[log_dir])
            if job is not None:
                jobs.append(job)
            else:
                checks.due_at(plog, cleaner.next_due_ms(plog, now_ms, checkpoints[log_dir]))
        return jobs

    def run_cleaner(self, now_ms: int) -> list[cleaner.CleanResult]:
        """Compact, in this thread, every log whose policy includes compact and that is due."""
        results = []
        for job in self.plan_cleaning(now_ms):
            outcome = None
            try:
                outcome = cleaner.run_job(job)
            except Exception as exc:
                log.exception("cleaning failed for %s", job.plog.name)
                if isinstance(exc, OSError):
                    self.io_failed(job.plog, exc)
            result = cleaner.finish(job, outcome)
            if result is not None:
                results.append(result)
        return results

    def abort_cleaning(self) -> None:
        """Make every cleaning pass in progress stop at its next step (shutting down)."""
        for plog in list(self.logs.values()):
            if plog.cleaning:
                plog.abort_cleaning()

    def flush(self) -> None:
        for plog in self.all_logs():
            try:
                plog.flush()
            except OSError as exc:
                self.io_failed(plog, exc)

    def close(self) -> None:
        """The clean shutdown (log_checkpoints.close)."""
        log_checkpoints.close(self)

    def pause_cleaning(self, keys: Iterable[TopicPartition]) -> None:
        self.cleaning_paused.update(keys)

    def resume_cleaning(self, key: TopicPartition) -> None:
        self.cleaning_paused.discard(key)
        plog = self.logs.get(key)
        if plog is not None:
            self.cleaner_checks.changed.add(plog)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _close_quietly(plog: PartitionLog) -> None:
    """Close a log whose directory may have failed: errors are logged, never raised."""
    try:
        plog.close()
    except OSError as exc:
        log.warning("closing %s: %s", plog.directory, exc)
        plog.closed = True
        for segment in plog.segments:
            with contextlib.suppress(OSError):
                segment.close()
