"""`Sink`: where `strom consume` puts the records it prints: stdout, counted against `--num`,
with a progress bar when stderr is a terminal and stdout is not."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strom.cli.output import Output
    from strom.protocol.records.codec import Record


class Sink:
    """Writes rendered records to stdout, counts them against --num, shows progress."""

    def __init__(
        self, out: Output, render: Callable[[str, int, Record], bytes], limit: int | None
    ) -> None:
        self.render = render
        self.limit = limit
        self.count = 0
        self.stream = sys.stdout.buffer
        self._printed: dict[tuple[str, int], int] = {}
        self._progress: Any = None
        self._task: Any = None
        self._out = out
        self._last = 0.0

    def expect(self, total: int) -> None:
        if self.limit is not None:
            total = min(total, self.limit)
        self._start_progress(total)

    def _start_progress(self, total: int | None) -> None:
        if not sys.stderr.isatty() or sys.stdout.isatty():
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("consuming"),
            BarColumn(),
            MofNCompleteColumn(),
            console=self._out.err,
            transient=True,
        )
        self._task = self._progress.add_task("consume", total=total)
        self._progress.start()

    @property
    def full(self) -> bool:
        return self.limit is not None and self.count >= self.limit

    def write(self, topic: str, partition: int, records: list[Record], end: int | None) -> bool:
        """Print `records` up to --num and below `end`; False when some were left out."""
        chunks = []
        complete = True
        for record in records:
            if self.full or (end is not None and record.offset >= end):
                complete = False
                break
            chunks.append(self.render(topic, partition, record))
            self.count += 1
            self._printed[(topic, partition)] = record.offset + 1
        if chunks:
            self.stream.write(b"".join(chunks))
            self.stream.flush()
        if self._progress is not None and time.monotonic() - self._last > 0.1:
            self._last = time.monotonic()
            self._progress.update(self._task, completed=self.count)
        return complete

    def positions_printed(self) -> dict[tuple[str, int], int]:
        return dict(self._printed)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
