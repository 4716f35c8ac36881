"""The purgatory: requests that wait for an event instead of answering at once.

A delayed operation watches one or more keys (for example a topic-partition). Whoever changes the
state behind a key (an append, a high-watermark move) calls `notify(key)`; every operation
watching that key re-runs its completion check, and the first check that passes resolves the
operation. An operation that never passes its check is resolved when its timeout fires. Nothing
polls: a waiting request costs one future, one timer handle and one set entry per key.

All of this runs on the event loop thread, so no locks are needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterable


class DelayedOperation:
    """One parked request: resolved with True when its check passes, False on timeout."""

    __slots__ = ("_check", "_future", "_keys", "_purgatory", "_timer")

    def __init__(
        self,
        purgatory: Purgatory,
        keys: tuple[Hashable, ...],
        check: Callable[[], bool],
        future: asyncio.Future[bool],
    ) -> None:
        self._purgatory = purgatory
        self._keys = keys
        self._check = check
        self._future = future
        self._timer: asyncio.TimerHandle | None = None

    @property
    def done(self) -> bool:
        return self._future.done()

    def try_complete(self) -> bool:
        if self._future.done():
            return True
        if self._check():
            self._finish(True)
            return True
        return False

    def expire(self) -> None:
        if not self._future.done():
            self._finish(False)

    def _finish(self, satisfied: bool) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._purgatory._unwatch(self)
        self._future.set_result(satisfied)


class Purgatory:
    """Delayed operations keyed by what they wait for."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._watchers: dict[Hashable, set[DelayedOperation]] = {}

    def __len__(self) -> int:
        return len({op for ops in self._watchers.values() for op in ops})

    async def wait(
        self, keys: Iterable[Hashable], check: Callable[[], bool], timeout_ms: int
    ) -> bool:
        """Wait until `check()` is true after a notify on one of `keys`, or `timeout_ms` passes.

        The check runs once before parking, so a condition already true never waits.
        Returns whether the check passed (False means the timeout fired).
        """
        if check():
            return True
        if timeout_ms <= 0:
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        op = DelayedOperation(self, tuple(keys), check, future)
        for key in op._keys:
            self._watchers.setdefault(key, set()).add(op)
        op._timer = loop.call_later(timeout_ms / 1000.0, op.expire)
        try:
            return await future
        finally:
            # A cancelled waiter (connection closed, broker stopping) must not stay watched;
            # both calls are no-ops for an operation that completed normally.
            op._timer.cancel()
            self._unwatch(op)

    def notify(self, key: Hashable) -> int:
        """Re-check every operation watching `key`; returns how many completed."""
        ops = self._watchers.get(key)
        if not ops:
            return 0
        completed = 0
        for op in list(ops):
            if op.try_complete():
                completed += 1
        return completed

    def expire_all(self) -> None:
        """Resolve every waiter as timed out (used at shutdown)."""
        for op in {op for ops in self._watchers.values() for op in ops}:
            op.expire()

    def _unwatch(self, op: DelayedOperation) -> None:
        for key in op._keys:
            ops = self._watchers.get(key)
            if ops is not None:
                ops.discard(op)
                if not ops:
                    del self._watchers[key]
