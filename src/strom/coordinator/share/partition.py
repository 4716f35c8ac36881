"""The delivery state of one share partition (KIP-932): which records are in flight, to whom.

A share partition is one topic partition as a share group consumes it. Its records fall in
three parts:

    [0, start_offset)            done: every record acknowledged or archived
    [start_offset, end_offset)   in flight: each record Available, Acquired, Acknowledged
                                 or Archived, with its delivery count
    [end_offset, log end)        not yet delivered to anyone

`start_offset` is Kafka's share-partition start offset (SPSO), `end_offset` its end offset
(SPEO). A record moves:

    Available --acquire--> Acquired (delivery count + 1, locked to one member until a deadline)
    Acquired --accept--> Acknowledged;  --reject / gap--> Archived
    Acquired --release / lock expiry / member gone--> Available, or Archived once its
             delivery count has reached the delivery-count limit
    Acquired --renew--> Acquired with a fresh deadline

Acknowledged and Archived are final. The start offset advances over every leading final
record, so memory holds at most `end_offset - start_offset` records, which acquisition never
lets exceed `max_in_flight` (group.share.partition.max.record.locks).

The state is kept per offset in parallel arrays indexed by `offset - start_offset`: a
partition holds a few thousand in-flight records at most, and per-offset state makes every
split of an acquired range (a record released from the middle of a batch) trivial.

No I/O and no clock: every call that needs the time takes `now_ms`.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum

from strom.protocol.errors import ErrorCode

__all__ = [
    "AcknowledgeType",
    "AcquiredRange",
    "RecordState",
    "SharePartition",
    "StateBatch",
]


class RecordState(IntEnum):
    """Delivery states, with the codes Kafka writes in ShareSnapshot/ShareUpdate records."""

    AVAILABLE = 0
    ACQUIRED = 1
    ACKNOWLEDGED = 2
    ARCHIVED = 4


class AcknowledgeType(IntEnum):
    """AcknowledgeTypes of ShareFetch/ShareAcknowledge (0 marks a gap: no record there)."""

    GAP = 0
    ACCEPT = 1
    RELEASE = 2
    REJECT = 3
    RENEW = 4


FINAL = (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED)


@dataclass(frozen=True, slots=True)
class AcquiredRange:
    """Records [first_offset, last_offset] acquired together, all at one delivery count."""

    first_offset: int
    last_offset: int
    delivery_count: int


@dataclass(frozen=True, slots=True)
class StateBatch:
    """A run of in-flight records with one state and delivery count, as persisted."""

    first_offset: int
    last_offset: int
    state: RecordState
    delivery_count: int


class SharePartition:
    def __init__(
        self,
        start_offset: int,
        *,
        max_in_flight: int,
        max_delivery_count: int,
        lock_duration_ms: int,
        batches: Iterable[StateBatch] = (),
    ) -> None:
        if max_in_flight < 1 or max_delivery_count < 1 or lock_duration_ms < 1:
            raise ValueError("limits must be positive")
        self.start_offset = start_offset
        self.max_in_flight = max_in_flight
        self.max_delivery_count = max_delivery_count
        self.lock_duration_ms = lock_duration_ms
        self._state = bytearray()
        self._count = array("h")
        self._owner: list[str | None] = []
        self._deadline: list[int] = []
        self.restore(start_offset, batches)

    # -- views ---------------------------------------------------------------------------

    @property
    def end_offset(self) -> int:
        return self.start_offset + len(self._state)

    @property
    def in_flight(self) -> int:
        return len(self._state)

    def state_of(self, offset: int) -> RecordState | None:
        """The record's state; None before the start offset (done) or at/after the end."""
        i = offset - self.start_offset
        if 0 <= i < len(self._state):
            return RecordState(self._state[i])
        return None

    def delivery_count(self, offset: int) -> int:
        i = offset - self.start_offset
        return self._count[i] if 0 <= i < len(self._count) else 0

    def owner(self, offset: int) -> str | None:
        i = offset - self.start_offset
        return self._owner[i] if 0 <= i < len(self._owner) else None

    def acquired_count(self) -> int:
        return self._state.count(RecordState.ACQUIRED)

    def final_count(self) -> int:
        """In-flight records already acknowledged or archived (past the start offset)."""
        return self._state.count(RecordState.ACKNOWLEDGED) + self._state.count(RecordState.ARCHIVED)

    def has_available(self) -> bool:
        return RecordState.AVAILABLE in self._state

    def first_available(self) -> int | None:
        i = self._state.find(RecordState.AVAILABLE)
        return None if i < 0 else self.start_offset + i

    def next_lock_deadline(self) -> int | None:
        """The earliest lock deadline of an acquired record, if any."""
        deadlines = [
            d for d, s in zip(self._deadline, self._state, strict=True) if s == RecordState.ACQUIRED
        ]
        return min(deadlines) if deadlines else None

    def state_batches(self) -> list[StateBatch]:
        """The in-flight records as runs, for a ShareSnapshot or ShareUpdate record.

        Acquired records are written as Available: a lock does not outlive the broker
        that granted it.
        """
        out: list[StateBatch] = []
        run_start = 0
        n = len(self._state)
        for i in range(1, n + 1):
            if i == n or self._persisted(i) != self._persisted(run_start):
                state, count = self._persisted(run_start)
                out.append(
                    StateBatch(
                        self.start_offset + run_start,
                        self.start_offset + i - 1,
                        state,
                        count,
                    )
                )
                run_start = i
        return out

    def _persisted(self, i: int) -> tuple[RecordState, int]:
        state = RecordState(self._state[i])
        if state == RecordState.ACQUIRED:
            state = RecordState.AVAILABLE
        return state, self._count[i]

    # -- changes -------------------------------------------------------------------------

    def restore(self, start_offset: int, batches: Iterable[StateBatch]) -> None:
        """Replace the state: `start_offset` and the persisted in-flight runs after it."""
        self.start_offset = start_offset
        self._state = bytearray()
        self._count = array("h")
        self._owner = []
        self._deadline = []
        for batch in sorted(batches, key=lambda b: b.first_offset):
            first = max(batch.first_offset, self.end_offset)
            if batch.last_offset < first:
                continue
            gap = first - self.end_offset
            # Offsets between persisted runs were never delivered: Available, count 0.
            self._extend(gap, RecordState.AVAILABLE, 0)
            state = batch.state
            if state == RecordState.ACQUIRED:
                state = RecordState.AVAILABLE
            self._extend(batch.last_offset - first + 1, state, batch.delivery_count)
        self._advance_start()

    def reset_start(self, offset: int) -> None:
        """Move the start offset (AlterShareGroupOffsets, or the log start moving past it).

        Records before it are done; records after it keep their state.
        """
        if offset <= self.start_offset:
            if offset < self.start_offset:
                self.restore(offset, [])
            return
        drop = min(offset - self.start_offset, len(self._state))
        self._drop_front(drop)
        self.start_offset = offset
        self._advance_start()

    def acquire(
        self,
        member_id: str,
        now_ms: int,
        max_records: int,
        new_batches: Iterable[tuple[int, int]] = (),
        through: int | None = None,
    ) -> list[AcquiredRange]:
        """Lock records to `member_id`: Available in-flight ones first, then new ones.

        `new_batches` are the (base offset, last offset) of the log's batches from
        `end_offset` on, in order. New records are taken a whole batch at a time while fewer
        than `max_records` have been acquired (so the last batch may go past it, as in
        Kafka), and never beyond `max_in_flight` records in flight: a batch is cut there.
        `through` bounds the Available records taken again (the last offset the caller has
        read from the log).
        """
        out: list[AcquiredRange] = []
        taken = 0
        deadline = now_ms + self.lock_duration_ms
        i = 0
        n = len(self._state)
        if through is not None:
            n = max(0, min(n, through - self.start_offset + 1))
        while i < n and taken < max_records:
            if self._state[i] != RecordState.AVAILABLE:
                i += 1
                continue
            j = i
            count = self._count[i] + 1
            while (
                j < n
                and taken < max_records
                and self._state[j] == RecordState.AVAILABLE
                and self._count[j] + 1 == count
            ):
                self._lock(j, member_id, deadline)
                j += 1
                taken += 1
            out.append(AcquiredRange(self.start_offset + i, self.start_offset + j - 1, count))
            i = j
        self._advance_start()
        limit = self.start_offset + self.max_in_flight - 1  # the last offset the window admits
        for base, last in new_batches:
            if taken >= max_records or self.end_offset > limit:
                break
            first = max(base, self.end_offset)
            if first > last:
                continue
            if first > limit:
                break
            # Offsets the log has no record for (compacted, or under a batch's gap) are done.
            self._extend(first - self.end_offset, RecordState.ARCHIVED, 0)
            stop = min(last, limit)
            size = stop - first + 1
            self._extend(size, RecordState.ACQUIRED, 1, member_id, deadline)
            taken += size
            if out and out[-1].last_offset + 1 == first and out[-1].delivery_count == 1:
                out[-1] = AcquiredRange(out[-1].first_offset, stop, 1)
            else:
                out.append(AcquiredRange(first, stop, 1))
        self._advance_start()
        return out

    def skip_to(self, offset: int) -> None:
        """Mark offsets up to `offset` (exclusive) past the end as done: the log has none.

        Used when the log start moved past `end_offset` (retention) or a read found no
        batch before `offset`.
        """
        if offset <= self.end_offset:
            return
        if not self._state:
            self.start_offset = offset
            return
        self._extend(offset - self.end_offset, RecordState.ARCHIVED, 0)
        self._advance_start()

    def acknowledge(
        self, member_id: str, first: int, last: int, ack_type: int, now_ms: int
    ) -> ErrorCode:
        """Apply one acknowledgement to [first, last], all or nothing.

        Every record in the range must be Acquired by `member_id`; otherwise nothing
        changes and the answer is INVALID_RECORD_STATE (INVALID_REQUEST for a malformed
        range or type).
        """
        if first > last or first < 0:
            return ErrorCode.INVALID_REQUEST
        try:
            kind = AcknowledgeType(ack_type)
        except ValueError:
            return ErrorCode.INVALID_REQUEST
        lo = first - self.start_offset
        hi = last - self.start_offset
        if lo < 0 or hi >= len(self._state):
            return ErrorCode.INVALID_RECORD_STATE
        for i in range(lo, hi + 1):
            if self._state[i] != RecordState.ACQUIRED or self._owner[i] != member_id:
                return ErrorCode.INVALID_RECORD_STATE
        for i in range(lo, hi + 1):
            if kind == AcknowledgeType.ACCEPT:
                self._finish(i, RecordState.ACKNOWLEDGED)
            elif kind in (AcknowledgeType.REJECT, AcknowledgeType.GAP):
                self._finish(i, RecordState.ARCHIVED)
            elif kind == AcknowledgeType.RELEASE:
                self._release(i)
            else:
                self._deadline[i] = now_ms + self.lock_duration_ms
        self._advance_start()
        return ErrorCode.NONE

    def expire_locks(self, now_ms: int) -> int:
        """Release every record whose lock deadline has passed; returns how many."""
        released = 0
        for i, state in enumerate(self._state):
            if state == RecordState.ACQUIRED and self._deadline[i] <= now_ms:
                self._release(i)
                released += 1
        if released:
            self._advance_start()
        return released

    def release_member(self, member_id: str) -> int:
        """Release every record `member_id` holds (its session closed or it left)."""
        released = 0
        for i, state in enumerate(self._state):
            if state == RecordState.ACQUIRED and self._owner[i] == member_id:
                self._release(i)
                released += 1
        if released:
            self._advance_start()
        return released

    # -- internals -----------------------------------------------------------------------

    def _extend(
        self,
        n: int,
        state: RecordState,
        count: int,
        owner: str | None = None,
        deadline: int = 0,
    ) -> None:
        if n <= 0:
            return
        self._state.extend(bytes([state]) * n)
        self._count.extend([count] * n)
        self._owner.extend([owner] * n)
        self._deadline.extend([deadline] * n)

    def _lock(self, i: int, member_id: str, deadline: int) -> None:
        self._state[i] = RecordState.ACQUIRED
        self._count[i] = min(self._count[i] + 1, 0x7FFF)
        self._owner[i] = member_id
        self._deadline[i] = deadline

    def _finish(self, i: int, state: RecordState) -> None:
        self._state[i] = state
        self._owner[i] = None

    def _release(self, i: int) -> None:
        if self._count[i] >= self.max_delivery_count:
            self._finish(i, RecordState.ARCHIVED)
        else:
            self._finish(i, RecordState.AVAILABLE)

    def _advance_start(self) -> None:
        k = 0
        n = len(self._state)
        while k < n and self._state[k] in FINAL:
            k += 1
        if k:
            self._drop_front(k)
            self.start_offset += k

    def _drop_front(self, k: int) -> None:
        del self._state[:k]
        del self._count[:k]
        del self._owner[:k]
        del self._deadline[:k]

    def __iter__(self) -> Iterator[tuple[int, RecordState, int]]:
        for i, state in enumerate(self._state):
            yield self.start_offset + i, RecordState(state), self._count[i]
