"""SharePartition against a plain per-offset model of KIP-932's delivery rules."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from strom.coordinator.share.partition import (
    AcknowledgeType,
    RecordState,
    SharePartition,
)
from strom.protocol.errors import ErrorCode

pytestmark = pytest.mark.property

MEMBERS = ("m1", "m2", "m3")
LOCK_MS = 100
FINAL = (RecordState.ACKNOWLEDGED, RecordState.ARCHIVED)


@dataclass
class Rec:
    state: RecordState = RecordState.AVAILABLE
    count: int = 0
    owner: str | None = None
    deadline: int = 0


class SharePartitionMachine(RuleBasedStateMachine):
    """The model keeps every offset of the log; the implementation keeps only the window."""

    @initialize(
        max_in_flight=st.integers(1, 12),
        max_delivery=st.integers(1, 4),
        start=st.integers(0, 3),
    )
    def setup(self, max_in_flight: int, max_delivery: int, start: int) -> None:
        self.max_in_flight = max_in_flight
        self.max_delivery = max_delivery
        self.now = 0
        self.batches: list[tuple[int, int]] = []
        self.log_end = start
        self.first_offset = start
        self.model: dict[int, Rec] = {}
        self.next_new = start  # the model's end offset
        self.sp = SharePartition(
            start,
            max_in_flight=max_in_flight,
            max_delivery_count=max_delivery,
            lock_duration_ms=LOCK_MS,
        )

    # -- the model ---------------------------------------------------------------------

    def model_start(self) -> int:
        o = self.first_offset
        while o < self.next_new and self.model[o].state in FINAL:
            o += 1
        return o

    def release(self, rec: Rec) -> None:
        rec.owner = None
        rec.state = (
            RecordState.ARCHIVED if rec.count >= self.max_delivery else RecordState.AVAILABLE
        )

    # -- rules -------------------------------------------------------------------------

    @rule(size=st.integers(1, 5), gap=st.integers(0, 2))
    def append(self, size: int, gap: int) -> None:
        base = self.log_end + gap
        self.batches.append((base, base + size - 1))
        self.log_end = base + size

    @rule(
        member=st.sampled_from(MEMBERS),
        max_records=st.integers(1, 8),
        through=st.none() | st.integers(0, 40),
    )
    def acquire(self, member: str, max_records: int, through: int | None) -> None:
        new = [(b, last) for b, last in self.batches if last >= self.next_new]
        got = self.sp.acquire(member, self.now, max_records, new, through=through)
        expected: list[tuple[int, int]] = []  # (offset, delivery count)
        taken = 0
        for o in range(self.model_start(), self.next_new):
            rec = self.model[o]
            if taken >= max_records or (through is not None and o > through):
                break
            if rec.state == RecordState.AVAILABLE:
                rec.state, rec.count = RecordState.ACQUIRED, rec.count + 1
                rec.owner, rec.deadline = member, self.now + LOCK_MS
                expected.append((o, rec.count))
                taken += 1
        for base, last in new:
            if taken >= max_records:
                break
            first = max(base, self.next_new)
            if first > last:
                continue
            if first > self.model_start() + self.max_in_flight - 1:
                break
            for o in range(self.next_new, first):
                self.model[o] = Rec(RecordState.ARCHIVED)
            self.next_new = max(self.next_new, first)
            # The whole batch as far as the window admits; the window slides as its front
            # becomes final.
            while True:
                stop = min(last, self.model_start() + self.max_in_flight - 1)
                if self.next_new > stop:
                    break
                for o in range(self.next_new, stop + 1):
                    self.model[o] = Rec(RecordState.ACQUIRED, 1, member, self.now + LOCK_MS)
                    expected.append((o, 1))
                    taken += 1
                self.next_new = stop + 1
                if stop >= last:
                    break
            if self.next_new <= last:
                break
        flat = [
            (o, r.delivery_count) for r in got for o in range(r.first_offset, r.last_offset + 1)
        ]
        assert flat == expected
        for a, b in itertools.pairwise(got):
            assert a.last_offset < b.first_offset

    @rule(
        member=st.sampled_from(MEMBERS),
        first=st.integers(0, 40),
        length=st.integers(0, 4),
        ack=st.sampled_from([t.value for t in AcknowledgeType] + [7]),
    )
    def acknowledge(self, member: str, first: int, length: int, ack: int) -> None:
        last = first + length
        err = self.sp.acknowledge(member, first, last, ack, self.now)
        if ack not in [t.value for t in AcknowledgeType]:
            assert err == ErrorCode.INVALID_REQUEST
            return
        recs = [self.model.get(o) for o in range(first, last + 1)]
        valid = all(
            r is not None
            and o >= self.model_start()
            and r.state == RecordState.ACQUIRED
            and r.owner == member
            for o, r in zip(range(first, last + 1), recs, strict=True)
        )
        if not valid:
            assert err == ErrorCode.INVALID_RECORD_STATE
            return
        assert err == ErrorCode.NONE
        for rec in recs:
            assert rec is not None
            if ack == AcknowledgeType.ACCEPT:
                rec.state, rec.owner = RecordState.ACKNOWLEDGED, None
            elif ack in (AcknowledgeType.REJECT, AcknowledgeType.GAP):
                rec.state, rec.owner = RecordState.ARCHIVED, None
            elif ack == AcknowledgeType.RELEASE:
                self.release(rec)
            else:
                rec.deadline = self.now + LOCK_MS

    @rule(ms=st.integers(1, 150))
    def tick(self, ms: int) -> None:
        self.now += ms
        released = self.sp.expire_locks(self.now)
        expired = 0
        for o in range(self.model_start(), self.next_new):
            rec = self.model[o]
            if rec.state == RecordState.ACQUIRED and rec.deadline <= self.now:
                self.release(rec)
                expired += 1
        assert released == expired

    @rule(member=st.sampled_from(MEMBERS))
    def member_leaves(self, member: str) -> None:
        self.sp.release_member(member)
        for o in range(self.model_start(), self.next_new):
            rec = self.model[o]
            if rec.state == RecordState.ACQUIRED and rec.owner == member:
                self.release(rec)

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def same_window(self) -> None:
        start = self.model_start()
        assert self.sp.start_offset == start or (
            # An empty window may sit anywhere up to the end.
            self.sp.in_flight == 0 and start == self.next_new
        )
        assert self.sp.end_offset == self.next_new or self.sp.in_flight == 0
        for o in range(start, self.next_new):
            rec = self.model[o]
            assert self.sp.state_of(o) == rec.state, o
            assert self.sp.delivery_count(o) == rec.count, o
            assert self.sp.owner(o) == rec.owner, o

    @invariant()
    def first_available(self) -> None:
        available = [
            o
            for o in range(self.model_start(), self.next_new)
            if self.model[o].state == RecordState.AVAILABLE
        ]
        assert self.sp.first_available() == (available[0] if available else None)

    @invariant()
    def bounded(self) -> None:
        assert self.sp.in_flight <= self.max_in_flight
        assert all(r.count <= self.max_delivery for r in self.model.values())

    @invariant()
    def persisted_state_restores(self) -> None:
        restored = SharePartition(
            self.sp.start_offset,
            max_in_flight=self.max_in_flight,
            max_delivery_count=self.max_delivery,
            lock_duration_ms=LOCK_MS,
            batches=self.sp.state_batches(),
        )
        for offset, state, count in self.sp:
            want = RecordState.AVAILABLE if state == RecordState.ACQUIRED else state
            if restored.state_of(offset) is None:
                # Leading final records fold into the start offset.
                assert state in FINAL and offset < restored.start_offset
                continue
            assert restored.state_of(offset) == want
            assert restored.delivery_count(offset) == count


SharePartitionMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestSharePartition = SharePartitionMachine.TestCase
