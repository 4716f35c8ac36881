"""Which logs a periodic check (retention, the cleaner's planning) looks at in its next round.

A round looks at the logs that changed since their last check (`changed`, fed by the logs
through PartitionLog.on_change: high watermark, log start offset, segment list, config) and
at the logs whose answer changes with the clock alone at a moment known at their last check
(`due_at`: a segment reaching retention.ms, a compaction lag or delete horizon passing). So a
round costs nothing per idle partition. Invariant: a log in neither would get the same answer
from the check now as at its last one.

The due times are a heap with lazy deletion: `_due` holds each log's current due time, and a
heap entry that no longer matches it is dropped when it comes up (or when the heap is rebuilt,
once stale entries outnumber live ones).
"""

from __future__ import annotations

import heapq
import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strom.storage.partition_log import PartitionLog

# Below this many entries the heap is never rebuilt (rebuilding a small heap saves nothing).
_MIN_REBUILD = 64


class CheckSchedule:
    __slots__ = ("_due", "_heap", "_sequence", "changed")

    def __init__(self) -> None:
        self.changed: set[PartitionLog] = set()
        self._due: dict[PartitionLog, int] = {}
        # (due ms, tie-breaker, log): the tie-breaker keeps tuples from comparing logs.
        self._heap: list[tuple[int, int, PartitionLog]] = []
        self._sequence = itertools.count()

    def __len__(self) -> int:
        """How many logs are waiting for a change or a due time (both counted once)."""
        return len(self.changed | self._due.keys())

    def due_at(self, plog: PartitionLog, when_ms: int | None) -> None:
        """Check `plog` again at `when_ms` even if it does not change (None: only on a change)."""
        if when_ms is None:
            self._due.pop(plog, None)
            return
        if self._due.get(plog) == when_ms:
            return
        self._due[plog] = when_ms
        heapq.heappush(self._heap, (when_ms, next(self._sequence), plog))
        if len(self._heap) > max(_MIN_REBUILD, 2 * len(self._due)):
            self._heap = [(when, next(self._sequence), p) for p, when in self._due.items()]
            heapq.heapify(self._heap)

    def forget(self, plog: PartitionLog) -> None:
        """`plog` is gone (deleted, offline): drop it (its stale heap entry goes when due)."""
        self.changed.discard(plog)
        self._due.pop(plog, None)

    def take(self, now_ms: int) -> list[PartitionLog]:
        """The logs to check now: those changed and those due by `now_ms`. Each leaves the
        schedule; the caller sets the next due time of each it checked (`due_at`)."""
        taken = self.changed
        self.changed = set()
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            when, _, plog = heapq.heappop(heap)
            if self._due.get(plog) == when:
                del self._due[plog]
                taken.add(plog)
        for plog in taken:
            self._due.pop(plog, None)
        return [plog for plog in taken if not plog.closed]
