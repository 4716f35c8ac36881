"""The broker's blocking disk work, off the event loop: the `io` thread pool (num.io.threads)
that fsyncs, unlinks and checkpoint writes run in, at most one fsync of a log at a time, and how
an I/O error met while serving a request is logged and answered."""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.runtime.errors import ApiError
from strom.server.log_limiter import LogLimiter
from strom.storage.segment import unlink_paths

if TYPE_CHECKING:
    from strom.storage.log_manager import LogManager
    from strom.storage.partition_log import PartitionLog

log = logging.getLogger("strom.broker")


class DiskWork:
    def __init__(self, logs: LogManager, threads: int) -> None:
        self.logs = logs
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="strom-io")
        # Unlinking a large segment frees its extents synchronously: not on the event loop.
        logs.set_unlinker(self._unlink_in_pool)
        logs.remove_tree = self._remove_tree_in_pool
        self._flushing: set[PartitionLog] = set()
        self._storage_log = LogLimiter(log)

    def _remove_tree_in_pool(self, path: Path) -> None:
        try:
            self.pool.submit(shutil.rmtree, path, True)
        except RuntimeError:  # the pool is shut down (closing): do it here
            shutil.rmtree(path, ignore_errors=True)

    def _unlink_in_pool(self, paths: list[Path]) -> None:
        try:
            self.pool.submit(unlink_paths, paths)
        except RuntimeError:  # the pool is shut down (closing): do it here
            unlink_paths(paths)

    def request_flush(self, partition_log: PartitionLog) -> None:
        """fsync the log in the worker pool, unless a flush of it is already running: the
        running one covers the appends made meanwhile up to its start, and the next produce or
        the flush scheduler asks again for the rest, so fsyncs never pile up on one log."""
        if partition_log in self._flushing:
            return
        self._flushing.add(partition_log)
        future = asyncio.get_running_loop().run_in_executor(self.pool, partition_log.flush)

        def done(finished: asyncio.Future[None]) -> None:
            self._flushing.discard(partition_log)
            exc = None if finished.cancelled() else finished.exception()
            if isinstance(exc, OSError):
                # The recovery point stays where it was; a full disk is tried again later.
                self.storage_failure(f"flushing {partition_log.name}", exc, partition_log)
            elif exc is not None:
                log.error("flushing %s failed: %r", partition_log.name, exc)

        future.add_done_callback(done)

    def storage_failure(
        self, doing: str, exc: OSError, where: PartitionLog | Path | None = None
    ) -> ApiError:
        """An I/O error while serving a request: one log line per interval and kind, the log
        directory of `where` taken offline if the disk failed (not when descriptors, memory
        or, with a single log dir, disk space ran out: LogManager.io_failed), and the error to
        answer with."""
        kind = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        self._storage_log.warning(kind, "%s failed: %s", doing, exc)
        if where is not None:
            self.logs.io_failed(where, exc)
        return ApiError(ErrorCode.KAFKA_STORAGE_ERROR, f"{doing} failed: {exc.strerror or exc}")
