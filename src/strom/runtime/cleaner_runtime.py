"""The log cleaner's schedule: passes planned on the event loop, run in cleaner threads.

Every log.cleaner.backoff.ms (read again each round, as both settings are dynamic in Kafka) the
loop plans a pass for each compacted log that is due one (storage/cleaner.py), runs up to
log.cleaner.threads of them at once in a thread pool of that size, and finishes each on the
loop. A round waits for its passes before the next backoff starts, so a log is never in two
passes. log.cleaner.threads=0 (static only: Kafka refuses it as a dynamic value) means no
cleaning; a changed thread count takes a new pool, the old one finishing what it runs.

Shutting down: every pass in progress is told to stop (`LogManager.abort_cleaning`: it stops
at its next batch, removing its unfinished files), then the pools are waited for, so no thread
touches a log after it is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from strom.storage import cleaner

if TYPE_CHECKING:
    from strom.runtime.host import BrokerHost

log = logging.getLogger("strom.broker")

MIN_BACKOFF_MS = 10


class CleanerRuntime:
    def __init__(self, broker: BrokerHost) -> None:
        self.broker = broker
        self._pool: ThreadPoolExecutor | None = None
        self._pool_threads = 0
        self._retired: list[ThreadPoolExecutor] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.broker.config.log_cleaner_enable:
            self._task = asyncio.create_task(self._run(), name="log-cleaner")

    async def stop(self) -> None:
        self.broker.logs.abort_cleaning()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        pools = [*self._retired, *([self._pool] if self._pool is not None else [])]
        loop = asyncio.get_running_loop()
        for pool in pools:
            await loop.run_in_executor(None, pool.shutdown, True)

    def _threads(self) -> int:
        return self.broker.config.get_int("log.cleaner.threads")

    def _pool_for(self, threads: int) -> ThreadPoolExecutor:
        if self._pool is None or self._pool_threads != threads:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._retired.append(self._pool)
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="strom-log-cleaner")
            self._pool_threads = threads
        return self._pool

    async def _run(self) -> None:
        while True:
            backoff = max(self.broker.config.log_cleaner_backoff_ms, MIN_BACKOFF_MS)
            await asyncio.sleep(backoff / 1000.0)
            try:
                await self.run_round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("log cleaner round failed")

    async def run_round(self) -> None:
        threads = self._threads()
        if threads <= 0:
            return
        pool = self._pool_for(threads)
        jobs = self.broker.logs.plan_cleaning(self.broker.clock.now_ms())
        slots = asyncio.Semaphore(threads)
        await asyncio.gather(*(self._run_pass(pool, slots, job) for job in jobs))

    async def _run_pass(
        self, pool: ThreadPoolExecutor, slots: asyncio.Semaphore, job: cleaner.CleanJob
    ) -> None:
        outcome = None
        try:
            async with slots:
                if not job.plog.cleaning_aborted:
                    outcome = await asyncio.get_running_loop().run_in_executor(
                        pool, cleaner.run_job, job
                    )
        except Exception as exc:
            log.exception("cleaning %s failed", job.plog.name)
            if isinstance(exc, OSError):
                self.broker.logs.io_failed(job.plog, exc)  # its log dir goes offline
        finally:
            cleaner.finish(job, outcome)
