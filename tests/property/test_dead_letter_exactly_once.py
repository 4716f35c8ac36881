"""The dead-letter copy protocol against crashes anywhere: every record given up on is in the
dead-letter partition exactly once.

The owner's side is modelled as the share runtime does it: records become Archiving in a
persisted state, a plan is persisted before its batch is sent, answers may be lost, the broker
may be killed at any point (memory falls back to what was persisted). The dead-letter
partition applies Kafka's idempotence rules (its producer state remembers each producer's last
batch; an unknown producer is accepted at any sequence)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from strom.coordinator.share.dead_letter import CopyOutcome, CopyPlan, DeadLetterCopier
from strom.protocol.errors import ErrorCode

pytestmark = pytest.mark.property


@dataclass
class ShareState:
    archiving: set[int] = field(default_factory=set)
    archived: set[int] = field(default_factory=set)
    copier: DeadLetterCopier = field(default_factory=DeadLetterCopier)


@dataclass
class DeadLetterPartition:
    log: list[int] = field(default_factory=list)  # source offsets, in append order
    last_batch: dict[int, tuple[int, int]] = field(default_factory=dict)  # pid -> (first, last)

    def produce(self, plan: CopyPlan) -> ErrorCode:
        first = plan.base_sequence
        last = first + len(plan.offsets) - 1
        known = self.last_batch.get(plan.producer_id)
        if known == (first, last):
            return ErrorCode.NONE  # a duplicate: answered with the original offsets
        if known is not None and first != known[1] + 1:
            return ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
        self.log.extend(plan.offsets)
        self.last_batch[plan.producer_id] = (first, last)
        return ErrorCode.NONE

    def forget(self, pid: int) -> None:
        """The producer's state went (expired): any sequence is accepted again."""
        self.last_batch.pop(pid, None)


class CopyMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.persisted = ShareState()
        self.memory = ShareState()
        self.partition = DeadLetterPartition()
        self.next_source = 0
        self.next_pid = 1000
        self.sendable: CopyPlan | None = None  # planned and persisted, not answered yet
        self.given_up: set[int] = set()

    def persist(self) -> None:
        self.persisted = copy.deepcopy(self.memory)

    @rule(n=st.integers(1, 4))
    def give_up(self, n: int) -> None:
        """Records rejected or exhausted: Archiving, persisted before the ack is answered."""
        for _ in range(n):
            self.memory.archiving.add(self.next_source)
            self.given_up.add(self.next_source)
            self.next_source += 1
        self.persist()

    @rule()
    def plan(self) -> None:
        copier = self.memory.copier
        if copier.needs_producer:
            copier.assign_producer(self.next_pid)
            self.next_pid += 1
        plan = copier.plan(sorted(self.memory.archiving), 0)
        if plan is None:
            return
        self.persist()  # the rule the owner follows: persisted before sent
        self.sendable = plan

    @precondition(lambda self: self.sendable is not None)
    @rule(answer=st.sampled_from(["delivered", "lost after append", "refused before append"]))
    def send(self, answer: str) -> None:
        plan = self.sendable
        assert plan is not None
        if answer == "refused before append":
            error = ErrorCode.NOT_LEADER_OR_FOLLOWER
        else:
            error = self.partition.produce(plan)
            if answer == "lost after append":
                error = ErrorCode.REQUEST_TIMED_OUT
        outcome = self.memory.copier.answered(plan, error)
        if outcome is CopyOutcome.DONE:
            self.memory.archiving -= set(plan.offsets)
            self.memory.archived |= set(plan.offsets)
            self.sendable = None
        elif outcome is CopyOutcome.NEW_PRODUCER:
            self.sendable = None
        else:
            assert outcome is CopyOutcome.RETRY

    @rule()
    def persist_now(self) -> None:
        self.persist()

    @rule()
    def crash(self) -> None:
        self.memory = copy.deepcopy(self.persisted)
        self.sendable = None

    @precondition(
        lambda self: (
            self.persisted.copier.in_flight is None and self.memory.copier.in_flight is None
        )
    )
    @rule()
    def producer_state_expires(self) -> None:
        """An idle producer's state expires (producer.id.expiration.ms): only between plans,
        since a plan in flight is resent at once, not a day later."""
        self.partition.forget(self.memory.copier.producer_id)

    @invariant()
    def never_twice(self) -> None:
        if not hasattr(self, "partition"):
            return
        assert len(self.partition.log) == len(set(self.partition.log))
        assert set(self.partition.log) <= self.given_up
        assert self.memory.archived <= set(self.partition.log)

    def teardown(self) -> None:
        if not hasattr(self, "partition"):
            return
        # Run to completion without crashes: everything given up on arrives, once.
        for _ in range(10_000):
            if not self.memory.archiving:
                break
            self.plan()
            if self.sendable is not None:
                self.send("delivered")
        assert not self.memory.archiving
        assert sorted(self.partition.log) == sorted(self.given_up)


CopyMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_dead_letter_exactly_once = CopyMachine.TestCase
