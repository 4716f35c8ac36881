"""The on-disk timer index against a sorted list of pending (due, offset) pairs, through time
jumps across every wheel level, clean reopens and crashes (followed by a rebuild)."""

from __future__ import annotations

import bisect
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from strom.storage import timer_log
from strom.storage.timer_index import BITS, MAX_DUE, TimerCursor, TimerIndex

pytestmark = pytest.mark.property

START = 1_700_000_000_123
DELAYS = st.one_of(
    st.sampled_from([0, 1, 2, 1023, 1024, 1025, (1 << 20) - 1, 1 << 20, 1 << 30, (1 << 30) + 3]),
    st.integers(0, 300),
    st.integers(0, 200_000),
    st.integers(0, 1 << 33),
    st.just(1 << 62),  # beyond the wheel: clamped
)
JUMPS = st.one_of(
    st.integers(0, 3),
    st.integers(0, 300),
    st.integers(0, 100_000),
    st.sampled_from([1 << 10, 1 << 20, 1 << 30, 1 << 33]),
)


class TimerIndexMachine(RuleBasedStateMachine):
    @initialize(start_offset=st.integers(0, 50))
    def setup(self, start_offset: int) -> None:
        self._segment_entries = timer_log.SEGMENT_ENTRIES
        timer_log.SEGMENT_ENTRIES = 4  # small segments: creation and deletion get exercised
        self.tmp = Path(tempfile.mkdtemp(prefix="timer-model-"))
        self.dir = self.tmp / "t"
        self.now = START
        self.next_offset = start_offset
        self.pending: list[tuple[int, int]] = []  # sorted
        self.passed: list[tuple[int, int]] = []  # every delayed record added, in offset order
        self.delivered_now: list[int] = []
        self.index = TimerIndex.create(self.dir, TimerCursor(self.now))
        self.generation = 0

    def teardown(self) -> None:
        if hasattr(self, "index"):
            self.index.abandon()
            shutil.rmtree(self.tmp, ignore_errors=True)
            timer_log.SEGMENT_ENTRIES = self._segment_entries

    @rule(delay=DELAYS, gap=st.integers(1, 3), before=st.integers(0, 2))
    def add(self, delay: int, gap: int, before: int) -> None:
        offset = self.next_offset + gap
        self.next_offset = offset
        # Sometimes a due time already behind "now": due at once unless after the cursor.
        due = self.now + delay if before == 0 else self.now - delay
        self.offer(due, offset)

    @rule(level=st.integers(0, 4), shift=st.sampled_from([-1, 0, 1, 1023, 1024]))
    def add_at_a_bucket_boundary(self, level: int, shift: int) -> None:
        """Due times right at, before and after the wheel's bucket edges."""
        w = self.index.cursor.due_ms
        edge = ((w >> (BITS * level)) + 1) << (BITS * level)
        self.next_offset += 1
        self.offer(edge + shift, self.next_offset)

    def offer(self, due: int, offset: int) -> None:
        self.passed.append((due, offset))
        if self.index.is_after_cursor(due, offset):
            self.index.add(due, offset)
            bisect.insort(self.pending, (min(due, MAX_DUE), offset))
        else:
            assert (min(due, MAX_DUE), offset) <= (
                self.index.cursor.due_ms,
                self.index.cursor.offset,
            )
            self.delivered_now.append(offset)

    @rule(jump=JUMPS, limit=st.integers(1, 6))
    def take(self, jump: int, limit: int) -> None:
        self.now += jump
        expected = [e for e in self.pending if e[0] <= self.now][:limit]
        got = self.index.take(self.now, limit)
        assert got == expected
        del self.pending[: len(got)]
        assert self.index.cursor.due_ms <= self.now

    @rule(limit=st.integers(1, 4))
    def take_at_next_due(self, limit: int) -> None:
        due = self.index.next_due()
        if due is None:
            assert not self.pending
            return
        assert due <= self.pending[0][0]
        self.now = max(self.now, due)
        expected = [e for e in self.pending if e[0] <= self.now][:limit]
        got = self.index.take(self.now, limit)
        assert got == expected
        del self.pending[: len(got)]

    @rule()
    def reopen_clean(self) -> None:
        self.generation += 1
        token = f"gen-{self.generation}".encode()
        cursor = self.index.cursor
        last = self.index.last_added
        self.index.close(token)
        reopened = TimerIndex.open(self.dir, token, cursor)
        assert reopened is not None
        assert reopened.last_added == last
        assert TimerIndex.open(self.dir, token, cursor) is None  # the checkpoint is consumed
        self.index = reopened

    @rule()
    def reopen_other_token(self) -> None:
        cursor = self.index.cursor
        self.index.close(b"written")
        assert TimerIndex.open(self.dir, b"expected", cursor) is None
        self.rebuild(cursor)

    @precondition(lambda self: self.generation < 20)
    @rule()
    def crash_and_rebuild(self) -> None:
        cursor = self.index.cursor
        self.index.abandon()  # no checkpoint: the files cannot be trusted
        assert TimerIndex.open(self.dir, b"", cursor) is None
        self.rebuild(cursor)

    def rebuild(self, cursor: TimerCursor) -> None:
        """What the index's owner does: every delayed record it has passed, in offset order,
        goes back in when it is after the cursor."""
        self.index = TimerIndex.create(self.dir, cursor)
        for due, offset in self.passed:
            if self.index.is_after_cursor(due, offset):
                self.index.add(due, offset)
        assert self.index.pending == len(self.pending)

    @invariant()
    def agrees(self) -> None:
        if not hasattr(self, "index"):
            return
        assert self.index.pending == len(self.pending)
        cursor = (self.index.cursor.due_ms, self.index.cursor.offset)
        assert all(e > cursor for e in self.pending)
        scan_from = self.index.scan_from()
        if self.pending:
            assert scan_from is not None
            assert scan_from <= min(o for _, o in self.pending)
            due = self.index.next_due()
            assert due is not None and due <= self.pending[0][0]
        else:
            assert scan_from is None
            assert self.index.next_due() is None
        # Disk holds the live entries and at most a segment's worth of dead ones per segment.
        files = list(self.dir.glob("timer-*.log"))
        assert len(files) <= len(self.pending) + 2


TimerIndexMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=60, deadline=None
)
test_timer_index_model = TimerIndexMachine.TestCase
