"""`LogManager`: every partition log under the configured log directories.

Per log directory (Kafka's layout):
  <topic>-<partition>/                  one PartitionLog each (the partition is after the last '-')
  <topic>-<partition>.<uuid hex>-delete/  a deleted partition whose files are being removed
  recovery-point-offset-checkpoint      "<topic> <partition> <recovery point>" (checkpoint.py)
  log-start-offset-checkpoint           "<topic> <partition> <log start offset>"
  cleaner-offset-checkpoint             owned by cleaner.py
  .kafka_cleanshutdown                  written by close() after everything is flushed; removed
                                        by open(), so its presence at open means the previous
                                        run shut down cleanly and segments need no recovery

All methods block (file I/O, fsync); the server chooses which to run in worker threads.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from strom.protocol.primitives import ZERO_UUID
from strom.storage import cleaner
from strom.storage.checkpoint import fsync_dir, read_offsets, write_atomically, write_offsets
from strom.storage.log_config import LogConfig
from strom.storage.partition_log import (
    DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    PartitionLog,
    partition_dir_name,
)
from strom.storage.partition_metadata import read_partition_metadata
from strom.storage.retention import delete_expired_segments

log = logging.getLogger("strom.storage")

CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_FILE = "log-start-offset-checkpoint"
DELETE_SUFFIX = "-delete"
PARTITION_DIR = re.compile(r"^(?P<topic>.+)-(?P<partition>\d+)$")
# Kafka's marker content since 3.x; older Kafka wrote an empty file. Readers only test existence.
CLEAN_SHUTDOWN_CONTENT = b'{"version":0,"brokerEpoch":-1}'

TopicPartition = tuple[str, int]


class LogManager:
    def __init__(
        self,
        log_dirs: list[Path],
        config_for: Callable[[str], LogConfig],
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ) -> None:
        if not log_dirs:
            raise ValueError("at least one log directory is needed")
        self.log_dirs = list(log_dirs)
        self.config_for = config_for
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self.logs: dict[TopicPartition, PartitionLog] = {}
        self.log_dir_of: dict[TopicPartition, Path] = {}
        self._unlink: Callable[[list[Path]], object] | None = None

    def set_producer_id_expiration(self, expiration_ms: int) -> None:
        """producer.id.expiration.ms changed at run time: every log uses the new value."""
        self.producer_id_expiration_ms = expiration_ms
        for plog in self.logs.values():
            plog.producer_id_expiration_ms = expiration_ms

    def set_unlinker(self, unlink: Callable[[list[Path]], object]) -> None:
        """Remove the files of deleted segments with `unlink` (the broker: in its worker pool)."""
        self._unlink = unlink
        for plog in self.logs.values():
            plog.unlink_files = unlink

    @classmethod
    def open(
        cls,
        log_dirs: list[Path],
        config_for: Callable[[str], LogConfig],
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ) -> LogManager:
        manager = cls(log_dirs, config_for, producer_id_expiration_ms)
        for log_dir in manager.log_dirs:
            manager._load_dir(log_dir)
        return manager

    def _load_dir(self, log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        marker = log_dir / CLEAN_SHUTDOWN_FILE
        clean = marker.exists()
        recovery_points = read_offsets(log_dir / RECOVERY_POINT_FILE)
        if not clean and any(entry.is_dir() for entry in os.scandir(log_dir)):
            log.warning(
                "no clean shutdown marker in %s: recovering its partitions' segments past "
                "their recovery points",
                log_dir,
            )
        start_offsets = read_offsets(log_dir / LOG_START_OFFSET_FILE)
        for entry in sorted(os.scandir(log_dir), key=lambda e: e.name):
            if not entry.is_dir():
                continue
            path = Path(entry.path)
            if entry.name.endswith(DELETE_SUFFIX):
                log.info("finishing the deletion of %s", path)
                shutil.rmtree(path, ignore_errors=True)
                continue
            match = PARTITION_DIR.match(entry.name)
            if match is None or "." in entry.name.rsplit("-", 1)[1]:
                log.warning("ignoring %s: not a <topic>-<partition> directory", path)
                continue
            key = (match["topic"], int(match["partition"]))
            if key in self.logs:
                log.error(
                    "ignoring %s: %s-%d is already loaded from %s", path, *key, self.log_dir_of[key]
                )
                continue
            topic_id = read_partition_metadata(path) or ZERO_UUID
            try:
                plog = PartitionLog.open(
                    path,
                    key[0],
                    key[1],
                    topic_id,
                    self.config_for(key[0]),
                    recovery_points.get(key),
                    clean,
                    start_offsets.get(key),
                    producer_id_expiration_ms=self.producer_id_expiration_ms,
                )
            except Exception:
                log.exception("could not load %s; leaving it offline", path)
                continue
            if self._unlink is not None:
                plog.unlink_files = self._unlink
            self.logs[key] = plog
            self.log_dir_of[key] = log_dir
        if clean:
            # From now on a crash must be recognised as unclean.
            marker.unlink()
            fsync_dir(log_dir)

    # -- partitions ----------------------------------------------------------------------------

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self.logs.get((topic, partition))

    def partitions(self) -> list[TopicPartition]:
        return list(self.logs)

    def all_logs(self) -> list[PartitionLog]:
        return list(self.logs.values())

    def create(
        self, topic: str, partition: int, topic_id: uuid.UUID, config: LogConfig
    ) -> PartitionLog:
        """Create a partition log in the log dir holding the fewest partitions (or return it)."""
        key = (topic, partition)
        existing = self.logs.get(key)
        if existing is not None:
            return existing
        counts = {log_dir: 0 for log_dir in self.log_dirs}
        for log_dir in self.log_dir_of.values():
            counts[log_dir] = counts.get(log_dir, 0) + 1
        log_dir = min(self.log_dirs, key=lambda d: counts[d])
        log_dir.mkdir(parents=True, exist_ok=True)
        plog = PartitionLog.open(
            log_dir / partition_dir_name(topic, partition),
            topic,
            partition,
            topic_id,
            config,
            recovery_point=0,
            clean_shutdown=True,
            log_start_offset=0,
            producer_id_expiration_ms=self.producer_id_expiration_ms,
        )
        fsync_dir(log_dir)
        if self._unlink is not None:
            plog.unlink_files = self._unlink
        self.logs[key] = plog
        self.log_dir_of[key] = log_dir
        return plog

    def delete_partition(self, topic: str, partition: int) -> None:
        """Close the log, rename its directory to `...-delete` (durable), then remove it."""
        key = (topic, partition)
        plog = self.logs.pop(key, None)
        log_dir = self.log_dir_of.pop(key, None)
        if plog is None or log_dir is None:
            return
        plog.close()
        doomed = log_dir / f"{plog.name}.{uuid.uuid4().hex}{DELETE_SUFFIX}"
        os.rename(plog.directory, doomed)
        fsync_dir(log_dir)
        cleaner.forget(log_dir, topic, partition)
        shutil.rmtree(doomed, ignore_errors=True)

    def update_config(self, topic: str, config: LogConfig) -> None:
        for (name, _), plog in self.logs.items():
            if name == topic:
                plog.update_config(config)

    # -- background work -----------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Write recovery points and log start offsets of every log, per log dir, atomically."""
        for log_dir in self.log_dirs:
            keys = [key for key, d in self.log_dir_of.items() if d == log_dir]
            write_offsets(
                log_dir / RECOVERY_POINT_FILE, {key: self.logs[key].recovery_point for key in keys}
            )
            write_offsets(
                log_dir / LOG_START_OFFSET_FILE,
                {key: self.logs[key].log_start_offset for key in keys},
            )

    def run_retention(self, now_ms: int) -> int:
        """Apply retention to every log; returns the number of segments deleted. A log being
        cleaned is left for the next round (as Kafka's retention leaves a log the cleaner holds)."""
        deleted = 0
        for plog in list(self.logs.values()):
            if plog.cleaning:
                continue
            try:
                deleted += delete_expired_segments(plog, now_ms)
            except OSError:
                log.exception("retention failed for %s", plog.name)
        return deleted

    def remove_expired_producers(self, now_ms: int) -> int:
        """Drop idle producer ids from every log (producer.id.expiration.ms); returns how many."""
        return sum(plog.remove_expired_producers(now_ms) for plog in list(self.logs.values()))

    def plan_cleaning(self, now_ms: int) -> list[cleaner.CleanJob]:
        """A cleaning pass for every compacted log that is due one now (cleaner.plan). Each
        planned log is marked as being cleaned until cleaner.finish."""
        checkpoints = {log_dir: cleaner.read_checkpoint(log_dir) for log_dir in self.log_dirs}
        jobs = []
        for key, plog in list(self.logs.items()):
            if not plog.config.compact:
                continue
            job = cleaner.plan(plog, now_ms, checkpoints.get(self.log_dir_of[key]))
            if job is not None:
                jobs.append(job)
        return jobs

    def run_cleaner(self, now_ms: int) -> list[cleaner.CleanResult]:
        """Compact, in this thread, every log whose policy includes compact and that is due."""
        results = []
        for job in self.plan_cleaning(now_ms):
            outcome = None
            try:
                outcome = cleaner.run_job(job)
            except Exception:
                log.exception("cleaning failed for %s", job.plog.name)
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
        for plog in list(self.logs.values()):
            plog.flush()

    def close(self) -> None:
        """Flush and close every log, checkpoint, then mark each log dir cleanly shut down."""
        for plog in self.logs.values():
            plog.flush()
        self.checkpoint()
        for plog in self.logs.values():
            plog.close()
        for log_dir in self.log_dirs:
            write_atomically(log_dir / CLEAN_SHUTDOWN_FILE, CLEAN_SHUTDOWN_CONTENT)
