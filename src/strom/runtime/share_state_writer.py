"""One share partition's writes to its share coordinator, in order.

At most one write is under way at a time. Writes asked for meanwhile wait and are folded
into one, which is built when it starts and so carries the state as it is then: every change
made before a caller asked is in the write that answers it, and a write never overtakes an
older one (a retried older write landing after a newer one would undo acknowledgements).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from strom.coordinator.share.coordinator import Outcome
from strom.protocol.errors import ErrorCode

__all__ = ["StateWriter"]

log = logging.getLogger("strom.share")

Send = Callable[[], Outcome | Awaitable[Outcome]]


class StateWriter:
    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._next: Send | None = None
        self._next_waiters: list[asyncio.Future[ErrorCode]] = []
        self._idle: asyncio.Event | None = None

    @property
    def busy(self) -> bool:
        return self._task is not None

    def write(self, send: Send) -> ErrorCode | Awaitable[ErrorCode]:
        """Write with `send` (called when the write starts); the error code, now when nothing
        had to wait, else once the write is done."""
        if self._task is None:
            first = send()
            if not isinstance(first, Awaitable):
                return first.error
            future = asyncio.get_running_loop().create_future()
            self._start(first, [future])
            return future
        self._next = send  # the newest sender builds the folded write
        future = asyncio.get_running_loop().create_future()
        self._next_waiters.append(future)
        return future

    async def idle(self) -> None:
        """Wait until no write is under way or waiting."""
        while self._task is not None:
            if self._idle is None:
                self._idle = asyncio.Event()
            await self._idle.wait()

    def _start(self, first: Awaitable[Outcome], waiters: list[asyncio.Future[ErrorCode]]) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drive(first, waiters))

    async def _drive(
        self, current: Awaitable[Outcome], waiters: list[asyncio.Future[ErrorCode]]
    ) -> None:
        try:
            while True:
                try:
                    code = (await current).error
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("writing share-partition state failed")
                    code = ErrorCode.UNKNOWN_SERVER_ERROR
                for w in waiters:
                    if not w.done():
                        w.set_result(code)
                send, waiters = self._next, self._next_waiters
                self._next, self._next_waiters = None, []
                if send is None:
                    return
                answer = send()
                current = answer if isinstance(answer, Awaitable) else _ready(answer)
        finally:
            self._task = None
            for w in [*waiters, *self._next_waiters]:
                if not w.done():
                    w.set_result(ErrorCode.UNKNOWN_SERVER_ERROR)
            self._next, self._next_waiters = None, []
            if self._idle is not None:
                self._idle.set()
                self._idle = None

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def _ready(outcome: Outcome) -> Outcome:
    return outcome
