"""Where a new partition's log goes: the live log dir holding the fewest logs (current, future
and not yet opened ones), ties in log.dirs order, as Kafka places them.

Counting the logs of every directory for each new partition would make creating a topic of
n partitions cost n * (logs held); `CountedDirs` keeps the counts as entries come and go.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class CountedDirs(dict[K, V], Generic[K, V]):
    """A dict that counts its values per directory (`dir_of(value)`). Only item assignment,
    `del` and `pop` change it (the other mutating dict methods are not used on it)."""

    def __init__(self, dir_of: Callable[[V], Path]) -> None:
        super().__init__()
        self._dir_of = dir_of
        self.counts: Counter[Path] = Counter()

    def __setitem__(self, key: K, value: V) -> None:
        if key in self:
            self.counts[self._dir_of(self[key])] -= 1
        super().__setitem__(key, value)
        self.counts[self._dir_of(value)] += 1

    def __delitem__(self, key: K) -> None:
        self.counts[self._dir_of(self[key])] -= 1
        super().__delitem__(key)

    def pop(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        if key not in self:
            return default
        self.counts[self._dir_of(self[key])] -= 1
        return super().pop(key)


def fewest_first(live: list[Path], counts: Iterable[Counter[Path]]) -> list[Path]:
    """`live` ordered by the logs the counters hold in each, fewest first (stable)."""
    totals: Counter[Path] = Counter()
    for counter in counts:
        totals.update(counter)
    return sorted(live, key=lambda d: totals[d])
