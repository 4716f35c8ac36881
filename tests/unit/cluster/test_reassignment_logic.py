"""Partition reassignment decisions (KIP-455 in ZooKeeper mode) and on-demand unclean
elections: tables from Kafka's documented examples, then properties of the controller's
level-triggered rule driven to completion."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.cluster.zk import controller_logic as logic
from strom.cluster.zk import reassignment as R
from strom.cluster.zk.controller_logic import PartitionView
from strom.cluster.zk.layout import NO_LEADER, PartitionState, TopicAssignment, TopicPartition
from strom.protocol.errors import ErrorCode

TP = TopicPartition("t", 0)
RA = R.ReplicaAssignment


def state(leader: int, isr: tuple[int, ...], epoch: int = 5) -> PartitionState:
    return PartitionState(leader, epoch, isr, 1)


# --- the assignment while moving ----------------------------------------------------------------


def test_reassign_to_lists_target_then_origin() -> None:
    # Kafka's controller comment: ORS {1,2,3} -> TRS {4,5,6}.
    moving = RA((1, 2, 3)).reassign_to([4, 5, 6])
    assert moving == RA((4, 5, 6, 1, 2, 3), (4, 5, 6), (1, 2, 3))
    assert moving.origin == (1, 2, 3) and moving.target == (4, 5, 6)
    # Overlapping target: [1,2,3] -> [3,4,2] is encoded [3,4,2,1].
    overlap = RA((1, 2, 3)).reassign_to([3, 4, 2])
    assert overlap == RA((3, 4, 2, 1), (4,), (1,))
    # Replacing a move keeps the original replicas; moving back to them ends it.
    assert moving.reassign_to([7]) == RA((7, 1, 2, 3), (7,), (1, 2, 3))
    assert moving.reassign_to(moving.origin) == RA((1, 2, 3))
    assert not RA((1, 2)).reassign_to([1, 2]).is_being_reassigned


def test_plan_reassignment_errors_in_order() -> None:
    live = {1, 2, 3}
    current = RA((1, 2))
    assert R.plan_reassignment(current, [2, 3], live) == RA((2, 3, 1), (3,), (1,))
    codes = {
        "empty": R.plan_reassignment(current, [], live),
        "dup": R.plan_reassignment(current, [2, 2], live),
        "negative": R.plan_reassignment(current, [-1, 2], live),
        "dead": R.plan_reassignment(current, [2, 4], live),
        "unknown": R.plan_reassignment(None, [1, 2], live),
        "cancel none": R.plan_reassignment(current, None, live),
        "cancel unknown": R.plan_reassignment(None, None, live),
        # A partition that does not exist is unknown before its replicas are looked at.
        "unknown empty": R.plan_reassignment(None, [], live),
        "unknown dup": R.plan_reassignment(None, [2, 2], live),
        "unknown negative": R.plan_reassignment(None, [-1], live),
        "unknown dead": R.plan_reassignment(None, [4], live),
    }
    got = {k: v[0] for k, v in codes.items() if isinstance(v, tuple)}
    assert got == {
        "empty": ErrorCode.INVALID_REPLICA_ASSIGNMENT,
        "dup": ErrorCode.INVALID_REPLICA_ASSIGNMENT,
        "negative": ErrorCode.INVALID_REPLICA_ASSIGNMENT,
        "dead": ErrorCode.INVALID_REPLICA_ASSIGNMENT,
        "unknown": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        "cancel none": ErrorCode.NO_REASSIGNMENT_IN_PROGRESS,
        "cancel unknown": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        "unknown empty": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        "unknown dup": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        "unknown negative": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        "unknown dead": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    # A dead broker that is already a replica may stay one (only new replicas must be live).
    assert R.plan_reassignment(RA((1, 4)), [4], {1}) == RA((4, 1), (), (1,))
    moving = RA((2, 3, 1), (3,), (1,))
    # Cancelling restores the original replicas, not their order (as Kafka notes).
    assert R.plan_reassignment(moving, None, live) == RA((2, 1))


def test_topic_assignment_round_trip() -> None:
    assignment = TopicAssignment({0: (1, 2), 1: (2, 3)})
    moved = R.with_partitions(assignment, {0: RA((2, 3, 1), (3,), (1,))})
    assert moved.adding_replicas == {0: (3,)} and moved.removing_replicas == {0: (1,)}
    assert R.partition_assignment(moved, 0) == RA((2, 3, 1), (3,), (1,))
    assert R.partition_assignment(moved, 1) == RA((2, 3))
    assert R.partition_assignment(moved, 7) is None
    done = R.with_partitions(moved, {0: RA((2, 3))})
    assert done == TopicAssignment({0: (2, 3), 1: (2, 3)})


# --- the controller's rule ------------------------------------------------------------------------


def act(
    assignment: R.ReplicaAssignment, st_: PartitionState, live: set[int]
) -> tuple[PartitionState | None, R.ReplicaAssignment | None]:
    states, completed = R.reassignment_actions({TP: R.ReassignView(assignment, st_)}, live, 7)
    return states.get(TP), completed.get(TP)


def test_waits_until_every_target_replica_is_in_sync() -> None:
    moving = RA((2, 3, 1), (3,), (1,))
    assert act(moving, state(1, (1, 2)), {1, 2, 3}) == (None, None)


def test_completion_moves_leader_off_a_removed_replica_and_shrinks_the_isr() -> None:
    moving = RA((2, 3, 1), (3,), (1,))
    new, done = act(moving, state(1, (1, 2, 3)), {1, 2, 3})
    assert new == PartitionState(2, 6, (2, 3), 7)
    assert done == RA((2, 3))
    # With the state written, only the assignment is left to write.
    assert act(moving, new, {1, 2, 3}) == (None, RA((2, 3)))
    # Then nothing more.
    assert act(RA((2, 3)), new, {1, 2, 3}) == (None, None)


def test_completion_keeps_a_live_leader_that_stays() -> None:
    moving = RA((2, 3, 1), (3,), (1,))
    new, done = act(moving, state(2, (1, 2, 3)), {1, 2, 3})
    assert new is not None and new.leader == 2 and new.isr == (2, 3)
    assert done == RA((2, 3))


def test_completion_waits_for_a_live_target_replica() -> None:
    moving = RA((3, 1), (3,), (1,))
    assert act(moving, state(NO_LEADER, (1, 3)), {1}) == (None, None)


def test_cancelled_move_drops_the_added_replicas() -> None:
    # Cancelled while 3 was being added and had joined the ISR; 3 had become leader.
    new, done = act(RA((1, 2)), state(3, (1, 2, 3)), {1, 2, 3})
    assert done is None
    assert new == PartitionState(1, 6, (1, 2), 7)
    # A leader that stays keeps leading.
    new, _ = act(RA((1, 2)), state(2, (2, 3)), {1, 2, 3})
    assert new == PartitionState(2, 6, (2,), 7)
    # No in-sync replica left among the replicas: leaderless, ISR kept.
    new, _ = act(RA((1,)), state(3, (3,)), {1, 3})
    assert new == PartitionState(NO_LEADER, 6, (3,), 7)
    assert act(RA((1,)), new, {1, 3}) == (None, None)


# --- properties: any move, driven like the controller drives it, completes -------------------


@st.composite
def moves(draw: st.DrawFn) -> tuple[R.ReplicaAssignment, PartitionState, tuple[int, ...]]:
    brokers = list(range(1, 7))
    origin = tuple(draw(st.permutations(brokers))[: draw(st.integers(1, 4))])
    target = tuple(draw(st.permutations(brokers))[: draw(st.integers(1, 4))])
    isr = tuple(r for r in origin if draw(st.booleans())) or origin[:1]
    leader = draw(st.sampled_from(isr))
    return RA(origin).reassign_to(target), state(leader, isr), target


@pytest.mark.property
@settings(max_examples=400, deadline=None)
@given(move=moves(), cancel=st.booleans())
def test_a_move_completes_once_its_targets_catch_up(
    move: tuple[R.ReplicaAssignment, PartitionState, tuple[int, ...]], cancel: bool
) -> None:
    assignment, st_, target = move
    live = set(range(1, 7))
    if cancel:
        planned = R.plan_reassignment(assignment, None, live)
        if assignment.is_being_reassigned:
            assert isinstance(planned, RA) and not planned.is_being_reassigned
            assignment, target = planned, planned.replicas
        else:
            assert isinstance(planned, tuple)
    # The leader adds caught-up replicas to the ISR; the controller acts after every change.
    for _ in range(len(assignment.replicas) + 3):
        new, done = act(assignment, st_, live)
        if new is not None:
            assert new.leader_epoch == st_.leader_epoch + 1 and new.controller_epoch == 7
            assert new.isr, "an ISR never becomes empty"
            assert set(new.isr) <= set(st_.isr)
            if new.leader != NO_LEADER:
                assert new.leader in new.isr and new.leader in assignment.replicas
            st_ = new
        elif done is not None:
            assignment = done
        else:
            joining = [r for r in assignment.replicas if r not in st_.isr]
            if not joining:
                break
            st_ = PartitionState(st_.leader, st_.leader_epoch, (*st_.isr, joining[0]), 1)
    assert not assignment.is_being_reassigned
    assert assignment.replicas == target
    assert st_.leader in target and set(st_.isr) <= set(target)
    assert act(assignment, st_, live) == (None, None)


# --- unclean elections on demand ----------------------------------------------------------------


def test_unclean_elections() -> None:
    views = {
        TopicPartition("t", 0): PartitionView((1, 2), state(NO_LEADER, (1,))),
        TopicPartition("t", 1): PartitionView((1, 2), state(2, (1, 2))),
        TopicPartition("t", 2): PartitionView((1, 2), state(NO_LEADER, (1, 2))),
        TopicPartition("t", 3): PartitionView((1, 3), state(NO_LEADER, (1,))),
    }
    got = logic.unclean_elections(views, {2}, 9)
    # Out of sync, but the only live replica: it leads with an ISR of itself.
    assert got[TopicPartition("t", 0)] == PartitionState(2, 6, (2,), 9)
    # A live in-sync replica is preferred (a clean election).
    assert got[TopicPartition("t", 2)] == PartitionState(2, 6, (2,), 9)
    # Leader live: nothing to do; no live replica: nothing possible.
    assert TopicPartition("t", 1) not in got and TopicPartition("t", 3) not in got
    views[TopicPartition("t", 1)] = PartitionView((1, 2), state(1, (1, 2)))
    assert logic.unclean_elections(views, {1, 2}, 9) == {
        TopicPartition("t", 0): PartitionState(1, 6, (1,), 9),
        TopicPartition("t", 2): PartitionState(1, 6, (1, 2), 9),
        TopicPartition("t", 3): PartitionState(1, 6, (1,), 9),
    }
