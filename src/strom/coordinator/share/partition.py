"""The delivery state of one share partition (KIP-932): which records are in flight, to whom.

A share partition is one topic partition as a share group consumes it. Its records fall in
three parts:

    [0, start_offset)            done: every record acknowledged or archived, or waiting
                                 for its delivery time in the delay index (see below)
    [start_offset, end_offset)   in flight: each record Available, Acquired, Acknowledged,
                                 Archiving, Archived or Delayed, with its delivery count
    [end_offset, log end)        not yet delivered to anyone

`start_offset` is Kafka's share-partition start offset (SPSO), `end_offset` its end offset
(SPEO). A record moves:

    Available --acquire--> Acquired (delivery count + 1, locked to one member until a deadline)
    Acquired --accept--> Acknowledged;  --reject / gap--> Archived
    Acquired --release / lock expiry / member gone--> Available (after the retry backoff of
             its delivery count), or Archived once its count has reached the limit
    Acquired --renew--> Acquired with a fresh deadline

Acknowledged and Archived are final. With a dead-letter topic (`dead_letter`), a record given
up on (rejected, or at the delivery-count limit) is Archiving (Kafka's KIP-1191 state 3) until
its copy is written (`archive_copied`), and only then Archived.

Beyond Kafka (issue #16), records the acquisition passes get a mark from their contents:

  * filtered: the group's filter does not match: Acknowledged without being delivered;
  * delayed: a delivery time in the future: Delayed (Strom's state 16) and added to the
    share partition's delay index (strom.storage.timer_index, behind the `DelayIndex`
    protocol). Delayed counts as done for the start offset, which moves past it, so the
    in-flight window is not held by records that wait.

When the delay index gives a record back (`pull_due`), it is Available again: in the window
if the start offset has not passed it yet, else in the small set of due records kept beside
the window (strom.coordinator.share.due_records), which follow the same transitions. The due set is bounded by `max_in_flight`: records
stay in the index while it is full.

The window is kept per offset in parallel arrays indexed by `offset - start_offset`: a
partition holds a few thousand in-flight records at most, and per-offset state makes every
split of an acquired range trivial. `_deadline` is the lock deadline of an Acquired record and
the time an Available one may be delivered again (0: now).

No I/O and no clock: every call that needs the time takes `now_ms`.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping

from strom.coordinator.share.backoff import RetryBackoff
from strom.coordinator.share.dead_letter import DeadLetterCopier, DeadLetterReason
from strom.coordinator.share.due_records import DueRecords
from strom.coordinator.share.states import (
    FINAL,
    NO_CURSOR_OFFSET,
    PASSED,
    AcknowledgeType,
    AcquiredRange,
    DelayIndex,
    Mark,
    RecordState,
    StateBatch,
)
from strom.protocol.errors import ErrorCode

__all__ = [
    "FINAL",
    "NO_CURSOR_OFFSET",
    "AcknowledgeType",
    "AcquiredRange",
    "DelayIndex",
    "Mark",
    "RecordState",
    "SharePartition",
    "StateBatch",
]


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
        self.backoff = RetryBackoff()
        self.dead_letter = False  # given-up records wait as Archiving for their copy
        self.copier = DeadLetterCopier()
        self.delays: DelayIndex | None = None
        # Creates the delay index at a cursor when the first record must wait.
        self.open_delays: Callable[[int, int], DelayIndex] | None = None
        self._state = bytearray()
        self._count = array("h")
        self._owner: list[str | None] = []
        self._deadline: list[int] = []
        self._due = DueRecords(self)
        self._rejected: set[int] = set()  # window records Archiving because rejected
        self.restore(start_offset, batches)

    # -- views ---------------------------------------------------------------------------

    @property
    def end_offset(self) -> int:
        return self.start_offset + len(self._state)

    @property
    def in_flight(self) -> int:
        return len(self._state)

    @property
    def delayed_pending(self) -> int:
        """Records waiting for their delivery time."""
        return self.delays.pending if self.delays is not None else 0

    def state_of(self, offset: int) -> RecordState | None:
        """The record's state; None when done (or waiting in the delay index) or not reached."""
        i = offset - self.start_offset
        if 0 <= i < len(self._state):
            return RecordState(self._state[i])
        due = self._due.get(offset)
        return due[0] if due is not None else None

    def delivery_count(self, offset: int) -> int:
        i = offset - self.start_offset
        if 0 <= i < len(self._count):
            return self._count[i]
        due = self._due.get(offset)
        return due[1] if due is not None else 0

    def owner(self, offset: int) -> str | None:
        i = offset - self.start_offset
        if 0 <= i < len(self._owner):
            return self._owner[i]
        due = self._due.get(offset)
        return due[2] if due is not None else None

    def available_at(self, offset: int) -> int:
        """When an Available record may be delivered (0: now)."""
        i = offset - self.start_offset
        if 0 <= i < len(self._deadline) and self._state[i] == RecordState.AVAILABLE:
            return self._deadline[i]
        due = self._due.get(offset)
        return due[3] if due is not None and due[0] == RecordState.AVAILABLE else 0

    def acquired_count(self) -> int:
        return self._state.count(RecordState.ACQUIRED) + self._due.acquired_count()

    def final_count(self) -> int:
        """In-flight records already acknowledged or archived (past the start offset)."""
        return self._state.count(RecordState.ACKNOWLEDGED) + self._state.count(RecordState.ARCHIVED)

    def has_available(self, now_ms: int | None = None) -> bool:
        return self.first_available(now_ms) is not None or bool(self.due_offsets(now_ms, 1))

    def first_available(self, now_ms: int | None = None) -> int | None:
        """The first Available record of the window (that may be delivered at `now_ms`)."""
        i = self._state.find(RecordState.AVAILABLE)
        while i >= 0 and now_ms is not None and self._deadline[i] > now_ms:
            i = self._state.find(RecordState.AVAILABLE, i + 1)
        return None if i < 0 else self.start_offset + i

    def due_offsets(self, now_ms: int | None, limit: int) -> list[int]:
        """Available due records (before the start offset), in offset order."""
        return self._due.available(now_ms, limit)

    def next_lock_deadline(self) -> int | None:
        """The earliest lock deadline of an acquired record, if any."""
        deadlines = [
            d for d, s in zip(self._deadline, self._state, strict=True) if s == RecordState.ACQUIRED
        ]
        deadlines += self._due.lock_deadlines()
        return min(deadlines) if deadlines else None

    def next_event(self, now_ms: int) -> int | None:
        """The earliest time something changes by itself: a lock expires, a backoff ends, a
        delayed record comes due (None: nothing will)."""
        times = [
            d
            for d, s in zip(self._deadline, self._state, strict=True)
            if s == RecordState.ACQUIRED or (s == RecordState.AVAILABLE and d > now_ms)
        ]
        times += self._due.event_times(now_ms)
        if self.delays is not None and len(self._due) < self.max_in_flight:
            due = self.delays.next_due()
            if due is not None:
                times.append(due)
        return min(times) if times else None

    def archiving_offsets(self) -> list[int]:
        """Records waiting for their dead-letter copy, in offset order."""
        out = self._due.archiving()
        i = self._state.find(RecordState.ARCHIVING)
        while i >= 0:
            out.append(self.start_offset + i)
            i = self._state.find(RecordState.ARCHIVING, i + 1)
        out.sort()
        return out

    def reason(self, offset: int) -> DeadLetterReason:
        if offset in self._rejected or offset in self._due.rejected:
            return DeadLetterReason.REJECTED
        return DeadLetterReason.DELIVERY_COUNT_EXCEEDED

    def state_batches(self) -> list[StateBatch]:
        """The in-flight records as runs, for a ShareSnapshot or ShareUpdate record.

        Acquired records are written as Available: a lock does not outlive the broker
        that granted it.
        """
        return _runs_of(self.start_offset, [self._persisted(i) for i in range(len(self._state))])

    def due_batches(self) -> list[StateBatch]:
        """The due records before the start offset, as persisted runs."""
        return self._due.batches()

    def backoff_runs(self, now_ms: int) -> list[tuple[int, int, int]]:
        """(first, last, available_at) of the Available records still backing off."""
        waiting = [
            (self.start_offset + i, d)
            for i, (d, s) in enumerate(zip(self._deadline, self._state, strict=True))
            if s == RecordState.AVAILABLE and d > now_ms
        ]
        waiting += self._due.backing_off(now_ms)
        waiting.sort()
        out: list[tuple[int, int, int]] = []
        for offset, at in waiting:
            if out and out[-1][1] + 1 == offset and out[-1][2] == at:
                out[-1] = (out[-1][0], offset, at)
            else:
                out.append((offset, offset, at))
        return out

    def rejected_offsets(self) -> list[int]:
        return sorted(self._rejected | self._due.rejected)

    def _persisted(self, i: int) -> tuple[RecordState, int]:
        state = RecordState(self._state[i])
        if state == RecordState.ACQUIRED:
            state = RecordState.AVAILABLE
        return state, self._count[i]

    # -- changes -------------------------------------------------------------------------

    def restore(self, start_offset: int, batches: Iterable[StateBatch]) -> None:
        """Replace the window: `start_offset` and the persisted in-flight runs after it."""
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

    def restore_extras(
        self,
        due: Iterable[StateBatch],
        backoff: Iterable[tuple[int, int, int]],
        rejected: Iterable[int],
    ) -> None:
        """What the window's runs do not say: due records before the start offset, backoff
        times of Available records, and which Archiving records were rejected."""
        self._due.restore(due, self.start_offset)
        for first, last, at in backoff:
            for offset in range(first, last + 1):
                i = offset - self.start_offset
                if 0 <= i < len(self._state) and self._state[i] == RecordState.AVAILABLE:
                    self._deadline[i] = at
                else:
                    self._due.set_available_at(offset, at)
        for offset in rejected:
            if self.state_of(offset) == RecordState.ARCHIVING:
                if offset < self.start_offset:
                    self._due.rejected.add(offset)
                else:
                    self._rejected.add(offset)

    def reset_start(self, offset: int) -> None:
        """Move the start offset (AlterShareGroupOffsets, or the log start moving past it).

        Records before it are done; records after it keep their state.
        """
        self._due.drop_below(offset)
        if offset <= self.start_offset:
            if offset < self.start_offset:
                self.restore(offset, [])
            return
        drop = min(offset - self.start_offset, len(self._state))
        for i in range(drop):
            self._rejected.discard(self.start_offset + i)
        self._drop_front(drop)
        self.start_offset = offset
        self._advance_start()

    def pull_due(self, now_ms: int) -> int:
        """Take the records whose delivery time has come from the delay index: Available
        again (in the window, or as due records). Returns how many."""
        if self.delays is None:
            return 0
        room = self.max_in_flight - len(self._due)
        if room <= 0:
            return 0
        pulled = 0
        for _, offset in self.delays.take(now_ms, room):
            i = offset - self.start_offset
            if i >= 0:
                if i < len(self._state) and self._state[i] == RecordState.DELAYED:
                    self._state[i] = RecordState.AVAILABLE
                    self._deadline[i] = 0
                    pulled += 1
            else:
                self._due.add(offset)
                pulled += 1
        return pulled

    def acquire(
        self,
        member_id: str,
        now_ms: int,
        max_records: int,
        new_batches: Iterable[tuple[int, int]] = (),
        through: int | None = None,
        marks: Mapping[int, Mark] | None = None,
    ) -> list[AcquiredRange]:
        """Lock records to `member_id`: Available in-flight ones first, then new ones.

        `new_batches` are the (base offset, last offset) of the log's batches from
        `end_offset` on, in order. New records are taken a whole batch at a time while fewer
        than `max_records` have been acquired (so the last batch may go past it, as in
        Kafka), and never beyond `max_in_flight` records in flight: a batch is cut there.
        `through` bounds the Available records taken again (the last offset the caller has
        read from the log). `marks` says which new records are filtered out or delayed; they
        are passed without being acquired.
        """
        out: list[AcquiredRange] = []
        taken = 0
        deadline = now_ms + self.lock_duration_ms
        i = 0
        n = len(self._state)
        if through is not None:
            n = max(0, min(n, through - self.start_offset + 1))
        while i < n and taken < max_records:
            if self._state[i] != RecordState.AVAILABLE or self._deadline[i] > now_ms:
                i += 1
                continue
            j = i
            count = self._count[i] + 1
            while (
                j < n
                and taken < max_records
                and self._state[j] == RecordState.AVAILABLE
                and self._deadline[j] <= now_ms
                and self._count[j] + 1 == count
            ):
                self._lock(j, member_id, deadline)
                j += 1
                taken += 1
            out.append(AcquiredRange(self.start_offset + i, self.start_offset + j - 1, count))
            i = j
        self._advance_start()
        marked = sorted(marks) if marks else []
        for base, last in new_batches:
            if taken >= max_records:
                break
            first = max(base, self.end_offset)
            if first > last:
                continue
            if first > self.start_offset + self.max_in_flight - 1:
                break
            # Offsets the log has no record for (compacted, or under a batch's gap) are done.
            self._extend(first - self.end_offset, RecordState.ARCHIVED, 0)
            # The whole batch, as far as the window admits; records passed without being
            # acquired (filtered, delayed) let the start offset, and so the window, move on.
            while True:
                at = self.end_offset
                stop = min(last, self.start_offset + self.max_in_flight - 1)
                if at > stop:
                    break
                lo = bisect.bisect_left(marked, at)
                hi = bisect.bisect_right(marked, stop)
                for offset in [*marked[lo:hi], stop + 1]:
                    if offset > at:
                        self._extend(offset - at, RecordState.ACQUIRED, 1, member_id, deadline)
                        taken += offset - at
                        _append_range(out, at, offset - 1)
                    if offset > stop:
                        break
                    assert marks is not None
                    if not self._pass_marked(offset, marks[offset], now_ms):
                        self._extend(1, RecordState.ACQUIRED, 1, member_id, deadline)
                        taken += 1
                        _append_range(out, offset, offset)
                    at = offset + 1
                self._advance_start()
                if stop >= last:
                    break
            if self.end_offset <= last:
                break  # the window is full inside this batch
        self._advance_start()
        return out

    def _pass_marked(self, offset: int, mark: Mark, now_ms: int) -> bool:
        """Pass a marked new record; False when it is to be acquired after all."""
        if mark.filtered:
            self._extend(1, RecordState.ACKNOWLEDGED, 0)
            return True
        if mark.due_ms < 0:
            return False
        if self.delays is None:
            if mark.due_ms <= now_ms or self.open_delays is None:
                return False
            # Everything due until now was delivered as it came: the index starts past it.
            self.delays = self.open_delays(now_ms, NO_CURSOR_OFFSET)
        if not self.delays.is_after_cursor(mark.due_ms, offset):
            return False
        self.delays.add(mark.due_ms, offset)
        self._extend(1, RecordState.DELAYED, 0)
        return True

    def acquire_due(
        self, member_id: str, offsets: Iterable[int], now_ms: int
    ) -> list[AcquiredRange]:
        """Lock due records (before the start offset) that the caller has read."""
        return self._due.acquire(member_id, offsets, now_ms)

    def undelay(self, offsets: Iterable[int]) -> None:
        """Delayed records of the window that no delay index holds: Available at once."""
        for offset in offsets:
            i = offset - self.start_offset
            if 0 <= i < len(self._state) and self._state[i] == RecordState.DELAYED:
                self._state[i] = RecordState.AVAILABLE
                self._deadline[i] = 0

    def drop_due(self, offsets: Iterable[int]) -> None:
        """Due records the log no longer has (retention): done."""
        for offset in offsets:
            self._due.drop(offset)

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
        if last >= self.end_offset:
            return ErrorCode.INVALID_RECORD_STATE
        lo = max(first, self.start_offset) - self.start_offset
        hi = last - self.start_offset
        if first < self.start_offset and not self._due.held_by(
            member_id, first, min(last, self.start_offset - 1)
        ):
            return ErrorCode.INVALID_RECORD_STATE
        for i in range(lo, hi + 1):
            if self._state[i] != RecordState.ACQUIRED or self._owner[i] != member_id:
                return ErrorCode.INVALID_RECORD_STATE
        for offset in range(first, min(last, self.start_offset - 1) + 1):
            self._due.acknowledge(offset, kind, now_ms)
        for i in range(lo, hi + 1):
            if kind == AcknowledgeType.ACCEPT:
                self._finish(i, RecordState.ACKNOWLEDGED)
            elif kind == AcknowledgeType.REJECT:
                self._give_up(i, DeadLetterReason.REJECTED)
            elif kind == AcknowledgeType.GAP:
                self._finish(i, RecordState.ARCHIVED)
            elif kind == AcknowledgeType.RELEASE:
                self._release(i, now_ms)
            else:
                self._deadline[i] = now_ms + self.lock_duration_ms
        self._advance_start()
        return ErrorCode.NONE

    def expire_locks(self, now_ms: int) -> int:
        """Release every record whose lock deadline has passed; returns how many."""
        released = 0
        for i, state in enumerate(self._state):
            if state == RecordState.ACQUIRED and self._deadline[i] <= now_ms:
                self._release(i, now_ms)
                released += 1
        released += self._due.expire(now_ms)
        if released:
            self._advance_start()
        return released

    def release_member(self, member_id: str, now_ms: int = 0) -> int:
        """Release every record `member_id` holds (its session closed or it left)."""
        released = 0
        for i, state in enumerate(self._state):
            if state == RecordState.ACQUIRED and self._owner[i] == member_id:
                self._release(i, now_ms)
                released += 1
        released += self._due.release_member(member_id, now_ms)
        if released:
            self._advance_start()
        return released

    def archive_copied(self, offsets: Iterable[int]) -> None:
        """Archiving records whose dead-letter copy is written (or will never be): Archived."""
        for offset in offsets:
            self._rejected.discard(offset)
            i = offset - self.start_offset
            if 0 <= i < len(self._state):
                if self._state[i] == RecordState.ARCHIVING:
                    self._state[i] = RecordState.ARCHIVED
            else:
                self._due.archived(offset)
        self._advance_start()

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

    def _give_up(self, i: int, reason: DeadLetterReason) -> None:
        if not self.dead_letter:
            self._finish(i, RecordState.ARCHIVED)
            return
        self._finish(i, RecordState.ARCHIVING)
        if reason is DeadLetterReason.REJECTED:
            self._rejected.add(self.start_offset + i)

    def _release(self, i: int, now_ms: int) -> None:
        if self._count[i] >= self.max_delivery_count:
            self._give_up(i, DeadLetterReason.DELIVERY_COUNT_EXCEEDED)
        else:
            self._finish(i, RecordState.AVAILABLE)
            self._deadline[i] = self.backoff.available_at(now_ms, self._count[i]) if now_ms else 0

    def _advance_start(self) -> None:
        k = 0
        n = len(self._state)
        while k < n and self._state[k] in PASSED:
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


def _append_range(out: list[AcquiredRange], first: int, last: int) -> None:
    """Add new records [first, last] (delivery count 1), merging with the previous range."""
    if out and out[-1].last_offset + 1 == first and out[-1].delivery_count == 1:
        out[-1] = AcquiredRange(out[-1].first_offset, last, 1)
    else:
        out.append(AcquiredRange(first, last, 1))


def _runs_of(start: int, states: list[tuple[RecordState, int]]) -> list[StateBatch]:
    out: list[StateBatch] = []
    run_start = 0
    n = len(states)
    for i in range(1, n + 1):
        if i == n or states[i] != states[run_start]:
            state, count = states[run_start]
            out.append(StateBatch(start + run_start, start + i - 1, state, count))
            run_start = i
    return out
