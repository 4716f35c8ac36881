"""Due records: delayed records whose time has come after the start offset passed them.

They are part of their share partition's state machine (strom.coordinator.share.partition)
and follow its transitions, but live beside the per-offset window, keyed by offset, since they
lie anywhere before the start offset. There are at most `max_in_flight` of them: the delay
index keeps the rest until there is room. A record leaves when it is acknowledged or archived
(or, with a dead-letter topic, once its copy is written).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from strom.coordinator.share.backoff import RetryBackoff
from strom.coordinator.share.dead_letter import DeadLetterReason
from strom.coordinator.share.states import AcknowledgeType, AcquiredRange, RecordState, StateBatch

__all__ = ["DueRecords", "Rules"]


class Rules(Protocol):
    """What a share partition decides for its records, due ones included."""

    max_delivery_count: int
    lock_duration_ms: int
    backoff: RetryBackoff
    dead_letter: bool


class _Due:
    __slots__ = ("count", "deadline", "owner", "state")

    def __init__(self, state: RecordState, count: int) -> None:
        self.state = state
        self.count = count
        self.owner: str | None = None
        self.deadline = 0  # lock deadline when Acquired, available-at when Available


class DueRecords:
    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._records: dict[int, _Due] = {}
        self.rejected: set[int] = set()  # Archiving because a consumer rejected them

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, offset: int) -> bool:
        return offset in self._records

    def items(self) -> Iterator[tuple[int, RecordState, int, str | None, int]]:
        for offset in sorted(self._records):
            d = self._records[offset]
            yield offset, d.state, d.count, d.owner, d.deadline

    def get(self, offset: int) -> tuple[RecordState, int, str | None, int] | None:
        d = self._records.get(offset)
        return None if d is None else (d.state, d.count, d.owner, d.deadline)

    # -- views ---------------------------------------------------------------------------

    def available(self, now_ms: int | None, limit: int) -> list[int]:
        out = [
            o
            for o, d in self._records.items()
            if d.state == RecordState.AVAILABLE and (now_ms is None or d.deadline <= now_ms)
        ]
        out.sort()
        return out[:limit]

    def acquired_count(self) -> int:
        return sum(1 for d in self._records.values() if d.state == RecordState.ACQUIRED)

    def lock_deadlines(self) -> list[int]:
        return [d.deadline for d in self._records.values() if d.state == RecordState.ACQUIRED]

    def event_times(self, now_ms: int) -> list[int]:
        """Lock deadlines and backoff ends still ahead."""
        return [
            d.deadline
            for d in self._records.values()
            if d.state == RecordState.ACQUIRED
            or (d.state == RecordState.AVAILABLE and d.deadline > now_ms)
        ]

    def archiving(self) -> list[int]:
        return sorted(o for o, d in self._records.items() if d.state == RecordState.ARCHIVING)

    def batches(self) -> list[StateBatch]:
        """As persisted runs (Acquired written as Available: a lock dies with its broker)."""
        out: list[StateBatch] = []
        for offset in sorted(self._records):
            d = self._records[offset]
            state = RecordState.AVAILABLE if d.state == RecordState.ACQUIRED else d.state
            last = out[-1] if out else None
            if (
                last is not None
                and last.last_offset + 1 == offset
                and (last.state, last.delivery_count) == (state, d.count)
            ):
                out[-1] = StateBatch(last.first_offset, offset, state, d.count)
            else:
                out.append(StateBatch(offset, offset, state, d.count))
        return out

    def backing_off(self, now_ms: int) -> list[tuple[int, int]]:
        """(offset, available_at) of Available records still waiting."""
        return [
            (o, d.deadline)
            for o, d in self._records.items()
            if d.state == RecordState.AVAILABLE and d.deadline > now_ms
        ]

    # -- changes -------------------------------------------------------------------------

    def restore(self, batches: Iterable[StateBatch], below: int) -> None:
        self._records = {}
        self.rejected = set()
        for batch in batches:
            state = batch.state
            if state == RecordState.ACQUIRED:
                state = RecordState.AVAILABLE
            if state not in (RecordState.AVAILABLE, RecordState.ARCHIVING):
                continue
            for offset in range(batch.first_offset, min(batch.last_offset, below - 1) + 1):
                self._records[offset] = _Due(state, batch.delivery_count)

    def set_available_at(self, offset: int, at: int) -> bool:
        d = self._records.get(offset)
        if d is None or d.state != RecordState.AVAILABLE:
            return False
        d.deadline = at
        return True

    def add(self, offset: int) -> None:
        """A delayed record given back by the delay index: Available, never delivered."""
        self._records[offset] = _Due(RecordState.AVAILABLE, 0)

    def drop_below(self, offset: int) -> None:
        for o in [o for o in self._records if o < offset]:
            self.drop(o)

    def drop(self, offset: int) -> None:
        self._records.pop(offset, None)
        self.rejected.discard(offset)

    def acquire(self, member_id: str, offsets: Iterable[int], now_ms: int) -> list[AcquiredRange]:
        out: list[AcquiredRange] = []
        deadline = now_ms + self.rules.lock_duration_ms
        for offset in sorted(offsets):
            d = self._records.get(offset)
            if d is None or d.state != RecordState.AVAILABLE or d.deadline > now_ms:
                continue
            d.state = RecordState.ACQUIRED
            d.count = min(d.count + 1, 0x7FFF)
            d.owner = member_id
            d.deadline = deadline
            last = out[-1] if out else None
            if (
                last is not None
                and last.last_offset + 1 == offset
                and last.delivery_count == d.count
            ):
                out[-1] = AcquiredRange(last.first_offset, offset, d.count)
            else:
                out.append(AcquiredRange(offset, offset, d.count))
        return out

    def held_by(self, member_id: str, first: int, last: int) -> bool:
        """Whether every offset of [first, last] is a due record Acquired by `member_id`."""
        for offset in range(first, last + 1):
            d = self._records.get(offset)
            if d is None or d.state != RecordState.ACQUIRED or d.owner != member_id:
                return False
        return True

    def acknowledge(self, offset: int, kind: AcknowledgeType, now_ms: int) -> None:
        d = self._records[offset]
        if kind in (AcknowledgeType.ACCEPT, AcknowledgeType.GAP):
            self.drop(offset)
        elif kind == AcknowledgeType.REJECT:
            self._give_up(offset, d, DeadLetterReason.REJECTED)
        elif kind == AcknowledgeType.RELEASE:
            self._release(offset, d, now_ms)
        else:
            d.deadline = now_ms + self.rules.lock_duration_ms

    def expire(self, now_ms: int) -> int:
        released = 0
        for offset, d in list(self._records.items()):
            if d.state == RecordState.ACQUIRED and d.deadline <= now_ms:
                self._release(offset, d, now_ms)
                released += 1
        return released

    def release_member(self, member_id: str, now_ms: int) -> int:
        released = 0
        for offset, d in list(self._records.items()):
            if d.state == RecordState.ACQUIRED and d.owner == member_id:
                self._release(offset, d, now_ms)
                released += 1
        return released

    def archived(self, offset: int) -> None:
        """The record's dead-letter copy is written: it leaves."""
        d = self._records.get(offset)
        if d is not None and d.state == RecordState.ARCHIVING:
            self.drop(offset)

    def _give_up(self, offset: int, d: _Due, reason: DeadLetterReason) -> None:
        d.owner = None
        if not self.rules.dead_letter:
            self.drop(offset)
            return
        d.state = RecordState.ARCHIVING
        if reason is DeadLetterReason.REJECTED:
            self.rejected.add(offset)

    def _release(self, offset: int, d: _Due, now_ms: int) -> None:
        if d.count >= self.rules.max_delivery_count:
            self._give_up(offset, d, DeadLetterReason.DELIVERY_COUNT_EXCEEDED)
            return
        d.state = RecordState.AVAILABLE
        d.owner = None
        d.deadline = self.rules.backoff.available_at(now_ms, d.count) if now_ms else 0
