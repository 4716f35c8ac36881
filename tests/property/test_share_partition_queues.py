"""The share-partition state machine with issue #16's additions: filtered and delayed records,
due records beside the window, retry backoff, dead-letter Archiving, and all of it persisted
and restored. Checked against what a user is promised: nothing delayed is delivered before its
time, nothing filtered is delivered, a released record waits out its backoff, every record is
finally acknowledged or given up on exactly once, and a restore changes nothing."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from strom.coordinator.share.backoff import RetryBackoff
from strom.coordinator.share.partition import (
    AcknowledgeType,
    Mark,
    RecordState,
    SharePartition,
)
from strom.protocol.errors import ErrorCode

pytestmark = pytest.mark.property

MEMBERS = ("m1", "m2")
LOCK_MS = 50
T0 = 1_000_000


class ModelDelays:
    """A delay index as the timer index behaves (tests/property/test_timer_index_model.py)."""

    def __init__(self, due_ms: int, offset: int) -> None:
        self.cursor = (due_ms, offset)
        self.entries: list[tuple[int, int]] = []
        self.last_added = -1

    @property
    def pending(self) -> int:
        return len(self.entries)

    def is_after_cursor(self, due_ms: int, offset: int) -> bool:
        return (due_ms, offset) > self.cursor

    def add(self, due_ms: int, offset: int) -> None:
        assert offset > self.last_added and (due_ms, offset) > self.cursor
        self.last_added = offset
        bisect.insort(self.entries, (due_ms, offset))

    def take(self, now_ms: int, limit: int) -> list[tuple[int, int]]:
        out = [e for e in self.entries if e[0] <= now_ms][:limit]
        del self.entries[: len(out)]
        if out:
            self.cursor = out[-1]
        return out

    def next_due(self) -> int | None:
        return self.entries[0][0] if self.entries else None


@dataclass
class Seen:
    due: int = -1  # delivery time from the record's headers, -1 none
    filtered: bool = False
    deliveries: list[tuple[int, int]] = field(default_factory=list)  # (time, delivery count)
    released_at: int | None = None  # time and count of the last release
    released_count: int = 0
    outcome: str | None = None  # accepted, archived (given up), or None


class QueueMachine(RuleBasedStateMachine):
    @initialize(
        max_in_flight=st.integers(2, 8),
        max_delivery=st.integers(2, 4),
        backoff_ms=st.sampled_from([0, 5, 40]),
        dead_letter=st.booleans(),
    )
    def setup(
        self, max_in_flight: int, max_delivery: int, backoff_ms: int, dead_letter: bool
    ) -> None:
        self.now = T0
        self.max_in_flight = max_in_flight
        self.max_delivery = max_delivery
        self.backoff = RetryBackoff(backoff_ms, 4 * backoff_ms)
        self.dead_letter = dead_letter
        self.batches: list[tuple[int, int]] = []
        self.log_end = 0
        self.seen: dict[int, Seen] = {}
        self.sp = self.new_partition(0)
        self.delays: ModelDelays | None = None
        self.passed_delayed: list[tuple[int, int]] = []  # (due, offset) handed to the index

    def new_partition(self, start: int) -> SharePartition:
        sp = SharePartition(
            start,
            max_in_flight=self.max_in_flight,
            max_delivery_count=self.max_delivery,
            lock_duration_ms=LOCK_MS,
        )
        sp.backoff = self.backoff
        sp.dead_letter = self.dead_letter
        sp.open_delays = self.open_delays
        return sp

    def open_delays(self, due_ms: int, offset: int) -> ModelDelays:
        self.delays = ModelDelays(due_ms, offset)
        return self.delays

    # -- the log -------------------------------------------------------------------------

    @rule(
        size=st.integers(1, 4),
        kinds=st.lists(
            st.sampled_from(["plain", "plain", "filtered", "delayed"]), min_size=4, max_size=4
        ),
        delays=st.lists(st.integers(-20, 300), min_size=4, max_size=4),
    )
    def produce(self, size: int, kinds: list[str], delays: list[int]) -> None:
        base = self.log_end
        self.batches.append((base, base + size - 1))
        for i in range(size):
            seen = Seen()
            if kinds[i] == "filtered":
                seen.filtered = True
            elif kinds[i] == "delayed":
                seen.due = self.now + delays[i]
            self.seen[base + i] = seen
        self.log_end = base + size

    @rule(ms=st.sampled_from([0, 1, 3, 10, 49, 50, 51, 120, 400]))
    def tick(self, ms: int) -> None:
        self.now += ms

    # -- delivery ------------------------------------------------------------------------

    def marks(self) -> dict[int, Mark]:
        out = {}
        for offset in range(self.sp.end_offset, self.log_end):
            seen = self.seen[offset]
            if seen.filtered:
                out[offset] = Mark(filtered=True)
            elif seen.due >= 0:
                out[offset] = Mark(due_ms=seen.due)
        return out

    def record_delivery(self, offset: int, count: int) -> None:
        seen = self.seen[offset]
        assert not seen.filtered, f"filtered record {offset} delivered"
        assert seen.outcome is None, f"record {offset} delivered after {seen.outcome}"
        assert seen.due <= self.now, f"record {offset} due {seen.due} delivered at {self.now}"
        previous = seen.deliveries[-1][1] if seen.deliveries else 0
        assert count == previous + 1
        if seen.released_at is not None:
            wait = self.backoff.delay_ms(seen.released_count)
            assert self.now >= seen.released_at + wait, (offset, seen.released_at, wait)
        seen.deliveries.append((self.now, count))

    def expire(self) -> None:
        held = {o for o in self.seen if self.sp.state_of(o) == RecordState.ACQUIRED}
        self.sp.expire_locks(self.now)
        for offset in held:
            if self.sp.state_of(offset) != RecordState.ACQUIRED:
                seen = self.seen[offset]
                seen.released_at, seen.released_count = self.now, seen.deliveries[-1][1]
        self.sync_outcomes()

    def sync_outcomes(self) -> None:
        """A delivered record that is no longer in flight (nor accepted) was given up on."""
        for offset, seen in self.seen.items():
            if seen.deliveries and seen.outcome is None:
                state = self.sp.state_of(offset)
                if state is None or state in (RecordState.ARCHIVING, RecordState.ARCHIVED):
                    assert seen.deliveries[-1][1] >= self.max_delivery
                    seen.outcome = "archived"

    @rule(member=st.sampled_from(MEMBERS), max_records=st.integers(1, 6))
    def fetch(self, member: str, max_records: int) -> None:
        self.expire()
        self.sp.pull_due(self.now)
        due = self.sp.due_offsets(self.now, max_records)
        got = self.sp.acquire_due(member, due, self.now)
        left = max_records - sum(r.last_offset - r.first_offset + 1 for r in got)
        if left > 0:
            new = [(b, last) for b, last in self.batches if last >= self.sp.end_offset]
            got += self.sp.acquire(member, self.now, left, new, marks=self.marks())
        self.track_passed()
        for r in got:
            for offset in range(r.first_offset, r.last_offset + 1):
                self.record_delivery(offset, r.delivery_count)

    def track_passed(self) -> None:
        if self.delays is not None:
            for due, offset in self.delays.entries:
                if (due, offset) not in self.passed_delayed:
                    self.passed_delayed.append((due, offset))

    @rule(
        data=st.data(),
        kind=st.sampled_from(
            [
                AcknowledgeType.ACCEPT,
                AcknowledgeType.RELEASE,
                AcknowledgeType.REJECT,
                AcknowledgeType.RENEW,
            ]
        ),
    )
    def acknowledge(self, data: st.DataObject, kind: AcknowledgeType) -> None:
        held = [
            o
            for o in self.seen
            if self.sp.state_of(o) == RecordState.ACQUIRED and self.sp.owner(o) is not None
        ]
        if not held:
            return
        offset = data.draw(st.sampled_from(sorted(held)))
        member = self.sp.owner(offset)
        assert member is not None
        count = self.sp.delivery_count(offset)
        assert self.sp.acknowledge(member, offset, offset, kind, self.now) == ErrorCode.NONE
        seen = self.seen[offset]
        if kind == AcknowledgeType.ACCEPT:
            seen.outcome = "accepted"
        elif kind == AcknowledgeType.REJECT:
            seen.outcome = "archived"
        elif kind == AcknowledgeType.RELEASE:
            seen.released_at = self.now
            seen.released_count = count
            if count >= self.max_delivery:
                seen.outcome = "archived"

    @rule()
    def copy_dead_letters(self) -> None:
        """The dead-letter copier wrote the copies of every Archiving record."""
        archiving = self.sp.archiving_offsets()
        for offset in archiving:
            assert self.dead_letter
            assert self.seen[offset].outcome == "archived"
        self.sp.archive_copied(archiving)

    @rule()
    def restart(self) -> None:
        """Persist, lose memory, restore; the delay index is rebuilt from the passed records."""
        sp = self.sp
        start, window = sp.start_offset, sp.state_batches()
        due, backoff, rejected = sp.due_batches(), sp.backoff_runs(self.now), sp.rejected_offsets()
        cursor = self.delays.cursor if self.delays is not None else None
        restored = self.new_partition(start)
        restored.restore(start, window)
        restored.restore_extras(due, backoff, rejected)
        if cursor is not None:
            self.delays = ModelDelays(*cursor)
            for d, o in sorted(self.passed_delayed, key=lambda e: e[1]):
                if self.delays.is_after_cursor(d, o):
                    self.delays.add(d, o)
            restored.delays = self.delays
        # Locks do not survive: what was Acquired is Available again at once (count kept).
        for offset, seen in self.seen.items():
            if sp.state_of(offset) == RecordState.ACQUIRED:
                seen.released_at = None
        assert restored.state_batches() == window
        assert restored.due_batches() == due
        assert restored.rejected_offsets() == rejected
        self.sp = restored

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def bounded(self) -> None:
        if not hasattr(self, "sp"):
            return
        assert self.sp.in_flight <= self.max_in_flight
        assert len(self.sp.due_batches()) <= self.max_in_flight

    def teardown(self) -> None:
        if not hasattr(self, "sp"):
            return
        # Much later, one member takes and accepts everything: every record ends exactly once.
        for _ in range(200):
            self.now += 1_000
            self.expire()
            self.sp.archive_copied(self.sp.archiving_offsets())
            self.sp.pull_due(self.now)
            got = self.sp.acquire_due("m1", self.sp.due_offsets(self.now, 100), self.now)
            new = [(b, last) for b, last in self.batches if last >= self.sp.end_offset]
            got += self.sp.acquire("m1", self.now, 100, new, marks=self.marks())
            for r in got:
                for offset in range(r.first_offset, r.last_offset + 1):
                    self.record_delivery(offset, r.delivery_count)
                    self.sp.acknowledge("m1", offset, offset, AcknowledgeType.ACCEPT, self.now)
                    self.seen[offset].outcome = "accepted"
            if (
                self.sp.end_offset == self.log_end
                and not self.sp.in_flight
                and self.sp.delayed_pending == 0
                and not self.sp.due_batches()
            ):
                break
        assert self.sp.end_offset == self.log_end
        assert self.sp.start_offset == self.log_end
        assert self.sp.delayed_pending == 0
        for offset, seen in self.seen.items():
            if seen.filtered:
                assert not seen.deliveries
            else:
                assert seen.outcome is not None, offset


QueueMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
test_share_partition_queues = QueueMachine.TestCase
