"""The vocabulary of share-partition state: record states, acknowledgement types, the runs
that are persisted, acquired ranges, the marks that record contents give, and the delay index
that Delayed records wait in."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

__all__ = [
    "FINAL",
    "NO_CURSOR_OFFSET",
    "PASSED",
    "AcknowledgeType",
    "AcquiredRange",
    "DelayIndex",
    "Mark",
    "RecordState",
    "StateBatch",
]


class RecordState(IntEnum):
    """Delivery states, with the codes written in ShareSnapshot/ShareUpdate records (Kafka's,
    and Strom's Delayed)."""

    AVAILABLE = 0
    ACQUIRED = 1
    ACKNOWLEDGED = 2
    ARCHIVING = 3
    ARCHIVED = 4
    DELAYED = 16


class AcknowledgeType(IntEnum):
    """AcknowledgeTypes of ShareFetch/ShareAcknowledge (0 marks a gap: no record there)."""

    GAP = 0
    ACCEPT = 1
    RELEASE = 2
    REJECT = 3
    RENEW = 4


FINAL = (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED)
# The start offset moves over these: nothing more to deliver from the window.
PASSED = frozenset((RecordState.ACKNOWLEDGED, RecordState.ARCHIVED, RecordState.DELAYED))
# A delay index created while records flow starts past everything due until then.
NO_CURSOR_OFFSET = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class AcquiredRange:
    """Records [first_offset, last_offset] acquired together, all at one delivery count."""

    first_offset: int
    last_offset: int
    delivery_count: int


@dataclass(frozen=True, slots=True)
class StateBatch:
    """A run of records with one state and delivery count, as persisted."""

    first_offset: int
    last_offset: int
    state: RecordState
    delivery_count: int


@dataclass(frozen=True, slots=True)
class Mark:
    """What a passed record's contents decide: filtered out, or delayed until `due_ms`."""

    filtered: bool = False
    due_ms: int = -1


class DelayIndex(Protocol):
    """Where Delayed records wait (strom.storage.timer_index.TimerIndex, or a model)."""

    @property
    def pending(self) -> int: ...

    def is_after_cursor(self, due_ms: int, offset: int) -> bool: ...

    def add(self, due_ms: int, offset: int) -> None: ...

    def take(self, now_ms: int, limit: int) -> list[tuple[int, int]]: ...

    def next_due(self) -> int | None: ...
