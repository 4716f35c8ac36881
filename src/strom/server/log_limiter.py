"""Log lines that a flood of misbehaving connections would otherwise repeat without end.

One line per kind of event every `interval_s`, saying how many more of that kind there were
since the last line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class LogLimiter:
    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._interval_s = interval_s
        self._clock = clock
        # kind -> (events not logged since the last line, time of the last line)
        self._kinds: dict[str, tuple[int, float]] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        unlogged, last = self._kinds.get(kind, (0, float("-inf")))
        now = self._clock()
        if now - last < self._interval_s:
            self._kinds[kind] = (unlogged + 1, last)
            return
        self._kinds[kind] = (0, now)
        if unlogged:
            message += f" ({unlogged} more like this since the last report)"
        self._log.warning(message, *args)
