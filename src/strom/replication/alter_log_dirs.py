"""Moving replicas between log directories of this broker (Kafka's ReplicaAlterLogDirsThread).

`ReplicaAlterLogDirsManager` fills each future log (storage/log_moves.py) from its partition's
current log, as a follower fills its log from a leader, while the current log keeps being
written and read:

  * Copying runs in its own worker threads, a round at a time: read whole batches from the
    current log at the future's log end, append them unchanged (`append_as_follower`: the
    offsets, epochs and producer state are the current log's) until the future has caught up
    with what the current log held when the round looked. The event loop is never held for it.
    replica.alter.log.dirs.io.max.bytes.per.second limits the bytes copied per second over all
    moves (Kafka's alter-log-dirs quota).
  * Between rounds, on the event loop (the partition's single writer), the future is brought in
    line with the current log: truncated where the current log was truncated (decided from the
    leader epochs, as a follower decides against its leader) and started over at the current
    log start when retention removed what it still had to copy.
  * Once a round has caught up, the loop copies what was appended meanwhile (bounded; else
    another round runs) and, with nothing able to append in between, swaps the future in
    (`log_moves.replace_current_with_future`).

The future log is written only by its move's round, under the move's lock; `release` (called
by LogManager before it closes or deletes a future log) takes that lock and ends the move, so
no copy ever writes to a closed file. Cleaning of a moving partition is paused (Kafka does the
same), retention of the current log goes on (the future follows its log start). An I/O error
in either log takes its directory offline through `LogManager.io_failed`, which ends the move.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from strom.protocol.records.errors import RecordError
from strom.replication.follower import decide_truncation
from strom.replication.follower_log import append_as_follower, truncate_fully_and_start_at
from strom.storage.errors import StorageError
from strom.storage.log_manager import LogManager
from strom.storage.log_moves import replace_current_with_future
from strom.storage.partition_log import PartitionLog
from strom.storage.segment import SegmentClosedError

__all__ = ["ReplicaAlterLogDirsManager"]

log = logging.getLogger("strom.replication")

Key = tuple[str, int]
T = TypeVar("T")

READ_BYTES = 1024 * 1024  # one read from the current log (replica.fetch.max.bytes' default)
ROUND_BYTES = 16 * 1024 * 1024  # a round returns to the loop after copying this much
FINISH_BYTES = 1024 * 1024  # what the loop copies itself right before the swap
RETRY_DELAY_S = 0.05  # a swap that met a running flush, or a round that found nothing to do
MAX_TRUNCATION_STEPS = 16
UNTHROTTLED = (1 << 63) - 1  # the throttle's default, Kafka's Long.MAX_VALUE
THROTTLE_SLEEP_S = 0.1


@dataclass(eq=False)
class _Move:
    key: Key
    # Re-entrant: an I/O error met under it may end the move on the same thread.
    lock: threading.RLock = field(default_factory=threading.RLock)
    dead: bool = False
    task: asyncio.Task[None] | None = None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Throttle:
    """replica.alter.log.dirs.io.max.bytes.per.second over every move of the broker: after
    copying n bytes a round waits until the rate allows them (read anew each time: the
    setting is dynamic)."""

    def __init__(self, rate: Callable[[], int]) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._free_at = time.monotonic()

    def chunk(self) -> int:
        """How much one read may take: a quarter second's worth when throttled."""
        return max(1, min(READ_BYTES, self.rate() // 4))

    def delay_s(self, copied: int) -> float:
        rate = self.rate()
        if rate >= UNTHROTTLED:
            return 0.0
        with self._lock:
            now = time.monotonic()
            self._free_at = max(self._free_at, now) + (copied / rate if rate > 0 else 1.0)
            return self._free_at - now


class ReplicaAlterLogDirsManager:
    def __init__(
        self,
        logs: LogManager,
        threads: int,
        on_moved: Callable[[Key], None] = lambda key: None,
        rate: Callable[[], int] = lambda: UNTHROTTLED,
    ) -> None:
        self.logs = logs
        self.on_moved = on_moved
        self._throttle = _Throttle(rate)
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, threads), thread_name_prefix="strom-alter-log-dirs"
        )
        self.moves: dict[Key, _Move] = {}
        self._stopped = False
        logs.release_future = self.release

    # -- control (event loop) ------------------------------------------------------------------

    def start(self, key: Key) -> None:
        """Fill the future log of `key` and swap it in; a running move of it carries on."""
        if self._stopped or key in self.moves or key not in self.logs.future_logs:
            return
        move = _Move(key)
        self.moves[key] = move
        self.logs.pause_cleaning([key])
        current = self.logs.logs.get(key)
        if current is not None:
            current.abort_cleaning()  # a pass already running swaps nothing in from now on
        move.task = asyncio.create_task(self._run(move), name=f"alter-log-dir-{key[0]}-{key[1]}")

    def resume_all(self) -> None:
        """Start the moves whose future logs were found at start-up."""
        for key in sorted(self.logs.future_logs):
            if key in self.logs.logs:
                self.start(key)

    def release(self, key: Key) -> None:
        """End the move of `key`: returns once no round copies into its future log and none
        will start (waits for the batch being appended, never for a whole round)."""
        move = self.moves.pop(key, None)
        if move is None:
            return
        with move.lock:
            move.dead = True
        if move.task is not None:
            move.task.cancel()
        self.logs.resume_cleaning(key)

    def lag(self, key: Key) -> int | None:
        """Offsets the future log of `key` is behind its current log (DescribeLogDirs)."""
        current, future = self.logs.logs.get(key), self.logs.future_logs.get(key)
        if current is None or future is None:
            return None
        return current.log_end_offset - future.log_end_offset

    async def stop(self) -> None:
        self._stopped = True
        tasks = [m.task for m in self.moves.values() if m.task is not None]
        for key in list(self.moves):
            self.release(key)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)

    # -- one move ------------------------------------------------------------------------------

    async def _run(self, move: _Move) -> None:
        loop = asyncio.get_running_loop()
        key = move.key
        log.info("%s-%d: copying to its future log", *key)
        while not move.dead:
            current, future = self.logs.logs.get(key), self.logs.future_logs.get(key)
            if current is None or future is None:
                break
            try:
                self._reconcile(current, future)
                caught_up = await loop.run_in_executor(
                    self._pool, self._copy_round, move, current, future
                )
                if move.dead:
                    break
                if caught_up and self._finish(move, current, future):
                    self.moves.pop(key, None)
                    self.on_moved(key)
                    return
                if not caught_up:
                    continue
            except asyncio.CancelledError:
                raise
            except _LogFailed:
                break  # the directory is going offline; LogManager releases the move
            except Exception:
                log.exception("%s-%d: moving to the future log failed; retrying", *key)
            await asyncio.sleep(RETRY_DELAY_S)
        if self.moves.get(key) is move:
            self.moves.pop(key)
            self.logs.resume_cleaning(key)

    def _reconcile(self, current: PartitionLog, future: PartitionLog) -> None:
        """On the loop, between rounds: make the future a prefix of the current log again."""
        now = _now_ms()
        if future.log_end_offset < current.log_start_offset:
            self._guard(
                future, lambda: truncate_fully_and_start_at(future, current.log_start_offset, now)
            )
            return
        for _ in range(MAX_TRUNCATION_STEPS):
            epoch = future.leader_epoch_cache.latest_epoch
            if epoch < 0:
                if future.log_end_offset > current.log_end_offset:
                    self._guard(future, lambda: future.truncate_to(current.log_end_offset, now))
                return
            leader_epoch, leader_end = current.end_offset_for_epoch(epoch)
            decision = decide_truncation(
                leader_epoch,
                leader_end,
                future.end_offset_for_epoch,
                future.log_end_offset,
                future.high_watermark,
            )
            if decision.offset < future.log_end_offset:
                log.info(
                    "%s: future log truncated from %d to %d (the current log diverged)",
                    future.name,
                    future.log_end_offset,
                    decision.offset,
                )
                self._guard(future, functools.partial(future.truncate_to, decision.offset, now))
            if decision.completed:
                return

    def _copy_round(self, move: _Move, current: PartitionLog, future: PartitionLog) -> bool:
        """In a worker thread: copy until the future has what the current log had when this
        round last looked (then True), or ROUND_BYTES were copied (False)."""
        copied = 0
        while copied < ROUND_BYTES:
            with move.lock:
                if move.dead:
                    return False
                got = self._copy_once(current, future, self._throttle.chunk())
            if got < 0:
                return True
            copied += got
            delay = self._throttle.delay_s(got)
            while delay > 0 and not move.dead:  # never sleeps long past a release
                time.sleep(min(delay, THROTTLE_SLEEP_S))
                delay -= THROTTLE_SLEEP_S
        return False

    def _copy_once(self, current: PartitionLog, future: PartitionLog, max_bytes: int) -> int:
        """Copy one read's worth; -1 when the future already ends where the current log does."""
        start = future.log_end_offset
        end = current.log_end_offset
        if start >= end:
            return -1
        try:
            result = current.read(start, max_bytes, end, True)
        except (StorageError, SegmentClosedError):
            return 0  # truncated, deleted or swapped under us: the loop sorts it out
        except OSError as exc:
            self.logs.io_failed(current, exc)
            raise _LogFailed from exc
        if not result.records:
            return -1
        future.update_high_watermark(min(current.high_watermark, result.next_offset))
        try:
            appended = self._guard(
                future, lambda: append_as_follower(future, result.records, _now_ms())
            )
        except RecordError:
            return 0  # a read torn by a concurrent truncation: the next round reads again
        future.update_high_watermark(current.high_watermark)
        return max(appended.valid_bytes, 1)

    def _finish(self, move: _Move, current: PartitionLog, future: PartitionLog) -> bool:
        """On the loop: copy the last appends, check the future is a prefix, swap it in."""
        with move.lock:
            if move.dead:
                return False
            budget = FINISH_BYTES
            while future.log_end_offset < current.log_end_offset and budget > 0:
                got = self._copy_once(current, future, budget)
                if got <= 0:
                    break
                budget -= got
            if future.log_end_offset != current.log_end_offset:
                return False
            epoch = future.leader_epoch_cache.latest_epoch
            if epoch >= 0 and current.end_offset_for_epoch(epoch)[0] != epoch:
                return False  # the current log moved on to other epochs: reconcile first
            try:
                done = replace_current_with_future(self.logs, move.key)
            except OSError as exc:
                log.error("%s: swapping in the future log failed: %s", current.name, exc)
                where = Path(exc.filename) if exc.filename else future.directory
                self.logs.io_failed(where, exc)
                raise _LogFailed from exc
        return done

    def _guard(self, future: PartitionLog, write: Callable[[], T]) -> T:
        try:
            return write()
        except OSError as exc:
            self.logs.io_failed(future, exc)
            raise _LogFailed from exc


class _LogFailed(Exception):
    """An I/O error took a directory of the move offline."""
