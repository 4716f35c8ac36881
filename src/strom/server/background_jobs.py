"""The broker's periodic jobs on its logs: retention, the flush scheduler, the recovery-point
and high-watermark checkpoints, producer-id expiry, closing idle segment files, writing the
files the produce path left for later, opening the logs start-up deferred, and the fault
injection file of the tests. Each job runs on the event loop; what blocks goes to the `io`
pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from strom.storage import faults
from strom.storage.file_cache import open_files

if TYPE_CHECKING:
    from strom.clock import Clock
    from strom.config import BrokerConfig
    from strom.server.disk_io import DiskWork
    from strom.storage.log_manager import LogManager

log = logging.getLogger("strom.broker")

# Segment files unused this long give their descriptors back (checked this often): a partition
# neither written nor read holds none.
IDLE_FILE_S = 60.0
IDLE_FILE_CHECK_MS = 10_000
# Files the produce path and the opening of logs left for later: looked for this often,
# written this many logs at a time.
DUE_FILES_INTERVAL_S = 1.0
DUE_FILES_BATCH = 500
# The background opening of deferred logs: this long at a time, then this long for the rest.
WARM_UP_SLICE_S = 0.02
WARM_UP_PAUSE_S = 0.005


class BackgroundJobs:
    def __init__(self, logs: LogManager, clock: Clock, disk: DiskWork) -> None:
        self.logs = logs
        self.clock = clock
        self.disk = disk
        self._faults = faults.FaultFile.from_environment()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, cfg: BrokerConfig) -> None:
        every = self._every
        self._tasks = [
            asyncio.create_task(
                every(cfg.log_retention_check_interval_ms, self._retention), name="retention"
            ),
            asyncio.create_task(
                every(cfg.log_flush_scheduler_interval_ms, self._flush), name="flush"
            ),
            asyncio.create_task(
                every(cfg.log_flush_offset_checkpoint_interval_ms, self._checkpoint),
                name="checkpoint",
            ),
            asyncio.create_task(
                every(
                    cfg.get_int("replica.high.watermark.checkpoint.interval.ms"),
                    self._checkpoint_high_watermarks,
                ),
                name="high-watermark-checkpoint",
            ),
        ]
        if self._faults is not None:
            self._tasks.append(
                asyncio.create_task(every(100, self._poll_faults), name="fault-injection")
            )
        self._tasks.append(
            asyncio.create_task(
                every(
                    cfg.get_int("producer.id.expiration.check.interval.ms"),
                    self._expire_producers,
                ),
                name="producer-expiration",
            )
        )
        self._tasks.append(
            asyncio.create_task(
                every(IDLE_FILE_CHECK_MS, self._close_idle_files), name="idle-files"
            )
        )
        self._tasks.append(asyncio.create_task(self._write_due_files(), name="due-files"))
        if self.logs.deferred:
            self._tasks.append(
                asyncio.create_task(self._open_deferred_logs(), name="open-deferred-logs")
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _every(self, interval_ms: int, job: Callable[[], Awaitable[None]]) -> None:
        interval = max(interval_ms, 10) / 1000.0
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background job %s failed", getattr(job, "__name__", job))

    async def _retention(self) -> None:
        deleted = self.logs.run_retention(self.clock.now_ms())
        if deleted:
            log.info("retention deleted %d segment(s)", deleted)

    async def _flush(self) -> None:
        now = self.clock.now_ms()
        for partition_log in self.logs.all_logs():
            if partition_log.needs_flush(now):
                self.disk.request_flush(partition_log)

    async def _write_due_files(self) -> None:
        """Write the files the produce path and the opening of logs left for later (leader
        epochs, producer snapshots: PartitionLog.files_due), in the worker pool, a batch at a
        time."""
        loop = asyncio.get_running_loop()
        while True:
            pending = self.logs.take_due_files(DUE_FILES_BATCH)
            if not pending:
                await asyncio.sleep(DUE_FILES_INTERVAL_S)
                continue
            failed = await loop.run_in_executor(self.disk.pool, self.logs.write_due_files, pending)
            for plog, exc in failed:
                self.disk.storage_failure(f"writing the files of {plog.name}", exc, plog)
                plog.files_due(plog)
            if failed:
                await asyncio.sleep(DUE_FILES_INTERVAL_S)

    async def _open_deferred_logs(self) -> None:
        """Open the partitions that start-up left unopened (storage/deferred_logs.py), a few
        milliseconds' worth at a time, so that retention and the cleaner see every log while
        requests are served in between."""
        started = time.monotonic()
        total = len(self.logs.deferred)
        while self.logs.open_deferred(WARM_UP_SLICE_S):
            await asyncio.sleep(WARM_UP_PAUSE_S)
        log.info(
            "opened the %d partition(s) left unopened at start-up in %.1f s",
            total,
            time.monotonic() - started,
        )

    async def _close_idle_files(self) -> None:
        open_files.close_idle(IDLE_FILE_S)

    async def _checkpoint(self) -> None:
        taken = self.logs.offsets_by_dir()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.disk.pool, self.logs.write_offsets_by_dir, taken)

    async def _checkpoint_high_watermarks(self) -> None:
        marks = self.logs.high_watermarks_by_dir()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.disk.pool, self.logs.write_high_watermarks, marks)

    async def _poll_faults(self) -> None:
        assert self._faults is not None
        self._faults.poll()

    async def _expire_producers(self) -> None:
        self.logs.remove_expired_producers(self.clock.now_ms())
