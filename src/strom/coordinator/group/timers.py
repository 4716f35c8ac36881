"""Named deadlines for a coordinator shard, fired by `tick()`.

Each timer has a key (e.g. ("classic-heartbeat", group, member)); scheduling a key again
replaces its deadline, so "reset the session timer" is just `schedule` with the same key.
A heap orders the deadlines; replaced and cancelled entries stay in the heap and are skipped
when they surface (their sequence number no longer matches), which keeps every operation
O(log n) without searching the heap.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Hashable

from strom.coordinator.group.records import CoordinatorRecord

Action = Callable[[], list[CoordinatorRecord]]


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Hashable]] = []
        self._live: dict[Hashable, tuple[int, int, Action]] = {}
        self._seq = itertools.count()

    def schedule(self, key: Hashable, deadline_ms: int, action: Action) -> None:
        seq = next(self._seq)
        self._live[key] = (deadline_ms, seq, action)
        heapq.heappush(self._heap, (deadline_ms, seq, key))

    def cancel(self, key: Hashable) -> None:
        self._live.pop(key, None)

    def is_scheduled(self, key: Hashable) -> bool:
        return key in self._live

    def deadline_of(self, key: Hashable) -> int | None:
        entry = self._live.get(key)
        return None if entry is None else entry[0]

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap:
            _, seq, key = heap[0]
            live = self._live.get(key)
            if live is not None and live[1] == seq:
                return
            heapq.heappop(heap)

    def next_deadline_ms(self) -> int | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_ms: int) -> Action | None:
        """Remove and return the earliest action due by `now_ms`, or None.

        One at a time: an action may schedule or cancel other timers, so the caller asks
        again after running it.
        """
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now_ms:
            return None
        _, _, key = heapq.heappop(self._heap)
        _, _, action = self._live.pop(key)
        return action

    def clear(self) -> None:
        self._heap.clear()
        self._live.clear()

    def __len__(self) -> int:
        return len(self._live)
