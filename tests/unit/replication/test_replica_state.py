"""ReplicaState: roles and epochs, the high watermark, ISR shrink/expand, acks=all checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.clock import ManualClock
from strom.protocol.errors import ErrorCode
from strom.replication.replica_state import (
    HighWatermarkMoved,
    IsrChangeRequested,
    PartitionStateUpdate,
    ReplicaState,
    Role,
)

LAG = 10_000


def update(
    leader: int = 1,
    epoch: int = 5,
    isr: tuple[int, ...] = (1, 2, 3),
    replicas: tuple[int, ...] = (1, 2, 3),
    version: int = 10,
) -> PartitionStateUpdate:
    return PartitionStateUpdate(leader, epoch, isr, replicas, version, controller_epoch=7)


def leader(
    isr: tuple[int, ...] = (1, 2, 3),
    leo: int = 100,
    hw: int = 100,
    min_isr: int = 1,
    clock: ManualClock | None = None,
) -> ReplicaState:
    state = ReplicaState(1, clock or ManualClock(), LAG, min_isr)
    result = state.become_leader(update(isr=isr), leo, hw)
    assert result.applied and result.new_leader_epoch
    return state


def hw_moves(events: list[HighWatermarkMoved | IsrChangeRequested]) -> list[int]:
    return [e.new for e in events if isinstance(e, HighWatermarkMoved)]


def isr_changes(events: list[HighWatermarkMoved | IsrChangeRequested]) -> list[IsrChangeRequested]:
    return [e for e in events if isinstance(e, IsrChangeRequested)]


# -- high watermark ------------------------------------------------------------------------------


def test_hw_is_min_leo_over_isr_and_waits_for_every_member() -> None:
    state = leader()
    assert hw_moves(state.on_local_append(110)) == []  # followers unknown in this epoch
    assert hw_moves(state.update_follower_fetch_state(2, 105, 0, 110)) == []
    assert hw_moves(state.update_follower_fetch_state(3, 103, 0, 110)) == [103]
    assert hw_moves(state.update_follower_fetch_state(3, 110, 0, 110)) == [105]
    assert hw_moves(state.update_follower_fetch_state(2, 110, 0, 110)) == [110]
    assert state.high_watermark == 110


def test_hw_never_moves_backwards_nor_past_leader_leo() -> None:
    state = leader(isr=(1, 2), leo=50, hw=40)
    assert state.high_watermark == 40
    assert hw_moves(state.update_follower_fetch_state(2, 30, 0, 50)) == []  # below HW: no move
    assert state.high_watermark == 40
    assert hw_moves(state.update_follower_fetch_state(2, 50, 0, 50)) == [50]


def test_isr_of_one_follows_local_appends() -> None:
    state = leader(isr=(1,), leo=0, hw=0)
    assert hw_moves(state.on_local_append(3)) == [3]
    assert hw_moves(state.on_local_append(9)) == [9]


def test_hw_waits_for_caught_up_follower_about_to_join() -> None:
    clock = ManualClock()
    state = leader(isr=(1,), leo=10, hw=10, clock=clock)
    # Follower 2 is out of the ISR; a fetch at the leader's end makes it caught up ...
    events = state.update_follower_fetch_state(2, 10, 0, 10)
    [change] = isr_changes(events)  # ... so it is proposed for the ISR,
    assert change.change.kind == "expand" and change.change.isr == (1, 2)
    # and while the expansion is pending the HW waits for it (maximal ISR).
    assert hw_moves(state.on_local_append(20)) == []
    assert hw_moves(state.update_follower_fetch_state(2, 20, 0, 20)) == [20]


def test_hw_frozen_under_min_isr() -> None:
    state = leader(isr=(1,), leo=10, hw=10, min_isr=2)
    assert state.under_min_isr
    assert hw_moves(state.on_local_append(20)) == []
    assert hw_moves(state.set_min_insync_replicas(1)) == [20]


# -- ISR shrink and expand ----------------------------------------------------------------------


def test_shrink_drops_followers_not_caught_up_within_lag() -> None:
    clock = ManualClock()
    state = leader(isr=(1, 2, 3), leo=10, hw=10, clock=clock)
    state.update_follower_fetch_state(2, 10, 0, 10)
    state.update_follower_fetch_state(3, 10, 0, 10)
    state.on_local_append(20)
    clock.advance(LAG)
    assert state.maybe_shrink_isr() == []  # exactly the lag: still caught up
    state.update_follower_fetch_state(2, 20, 0, 20)  # 2 keeps up, 3 stops fetching
    clock.advance(1)
    [change] = isr_changes(state.maybe_shrink_isr())
    assert change.change.kind == "shrink" and change.change.isr == (1, 2)
    assert change.change.expected_partition_epoch == 10 and change.change.leader_epoch == 5
    # While pending: no further change, and the maximal ISR still holds 3 back.
    assert state.maybe_shrink_isr() == []
    assert state.maximal_isr == (1, 2, 3)
    assert state.high_watermark == 10
    events = state.isr_change_committed(change.change, 11)
    assert state.isr == (1, 2) and state.partition_epoch == 11 and state.pending is None
    assert hw_moves(events) == [20]  # 3 no longer holds the HW back


def test_follower_equal_to_leader_leo_is_never_out_of_sync() -> None:
    clock = ManualClock()
    state = leader(isr=(1, 2), leo=10, hw=10, clock=clock)
    state.update_follower_fetch_state(2, 10, 0, 10)
    clock.advance(10 * LAG)  # nothing produced, nothing fetched for a long time
    assert state.maybe_shrink_isr() == []


def test_slow_follower_that_reached_previous_fetch_leo_stays_in_sync() -> None:
    clock = ManualClock()
    state = leader(isr=(1, 2), leo=10, hw=10, clock=clock)
    for leo in range(20, 200, 10):
        state.on_local_append(leo)
        clock.advance(LAG // 2)
        # Always one append behind, but at the leader's end as of its previous fetch.
        state.update_follower_fetch_state(2, leo - 10, 0, leo)
    assert state.maybe_shrink_isr() == []


def test_expand_requires_hw_and_epoch_start_offset() -> None:
    state = leader(isr=(1,), leo=10, hw=4)
    assert state.leader_epoch_start_offset == 10
    # Reached the HW but not the start of this leader epoch: not yet.
    assert isr_changes(state.update_follower_fetch_state(2, 8, 0, 10)) == []
    [change] = isr_changes(state.update_follower_fetch_state(2, 10, 0, 10))
    assert change.change.isr == (1, 2)
    assert state.isr_change_committed(change.change, 11) == []
    assert state.isr == (1, 2)


def test_failed_isr_write_retry_or_revert() -> None:
    state = leader(isr=(1,), leo=10, hw=10)
    [change] = isr_changes(state.update_follower_fetch_state(2, 10, 0, 10))
    assert state.isr_change_failed(change.change, retry=True) == [change]
    assert state.pending == change.change
    assert state.isr_change_failed(change.change, retry=False) == []
    assert state.pending is None and state.isr == (1,)
    # A result for a change that is no longer pending is ignored.
    assert state.isr_change_committed(change.change, 12) == []
    assert state.isr == (1,) and state.partition_epoch == 10


def test_repeated_notification_keeps_pending_change() -> None:
    state = leader(isr=(1,), leo=10, hw=10)
    [change] = isr_changes(state.update_follower_fetch_state(2, 10, 0, 10))
    again = state.become_leader(update(isr=(1,)), 10, 10)  # same epoch, same version
    assert again.applied and not again.new_leader_epoch
    assert state.pending == change.change
    state.isr_change_committed(change.change, 11)
    assert state.isr == (1, 2)


def test_controller_decision_supersedes_pending_change() -> None:
    state = leader(isr=(1,), leo=10, hw=10)
    [change] = isr_changes(state.update_follower_fetch_state(2, 10, 0, 10))
    state.become_leader(update(isr=(1, 3), version=12), 10, 10)
    assert state.pending is None and state.isr == (1, 3)
    assert state.isr_change_committed(change.change, 11) == []
    assert state.isr == (1, 3) and state.partition_epoch == 12


# -- acks=all ------------------------------------------------------------------------------------


def test_min_isr_checks_before_and_after_append() -> None:
    clock = ManualClock()
    state = leader(isr=(1, 2), leo=10, hw=10, min_isr=2, clock=clock)
    assert state.check_min_isr_before_append() == ErrorCode.NONE
    state.on_local_append(11)
    assert state.check_enough_replicas(11) is None  # not replicated yet
    state.update_follower_fetch_state(2, 11, 0, 11)
    assert state.check_enough_replicas(11) == ErrorCode.NONE
    state.on_local_append(12)
    clock.advance(LAG + 1)
    [change] = isr_changes(state.maybe_shrink_isr())
    state.isr_change_committed(change.change, 11)  # ISR (1,): under min ISR
    assert state.check_min_isr_before_append() == ErrorCode.NOT_ENOUGH_REPLICAS
    assert state.check_min_isr_before_append(min_insync_replicas=1) == ErrorCode.NONE
    assert state.check_enough_replicas(11) == ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
    assert state.check_enough_replicas(12) is None  # HW frozen under min ISR
    assert state.check_enough_replicas(11, min_insync_replicas=1) == ErrorCode.NONE


def test_effective_min_isr_is_capped_by_replication_factor() -> None:
    state = ReplicaState(1, ManualClock(), LAG, min_insync_replicas=3)
    state.become_leader(update(isr=(1,), replicas=(1,)), 0, 0)
    assert state.check_min_isr_before_append() == ErrorCode.NONE
    assert hw_moves(state.on_local_append(1)) == [1]


def test_checks_answer_not_leader_after_losing_leadership() -> None:
    state = leader()
    state.become_follower(update(leader=2, epoch=6, version=11))
    assert state.role is Role.FOLLOWER and state.isr == ()
    assert state.check_min_isr_before_append() == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert state.check_enough_replicas(1) == ErrorCode.NOT_LEADER_OR_FOLLOWER


# -- epochs and fencing --------------------------------------------------------------------------


def test_stale_decisions_are_ignored() -> None:
    state = leader()
    assert not state.become_follower(update(leader=2, epoch=4, version=11)).applied
    assert not state.become_follower(update(leader=2, epoch=6, version=9)).applied
    assert state.role is Role.LEADER and state.leader_epoch == 5
    same = state.become_leader(update(isr=(1, 2), version=11), 100, 100)
    assert same.applied and not same.new_leader_epoch  # an ISR update, same epoch
    moved = state.become_follower(update(leader=2, epoch=6, version=12))
    assert moved.applied and moved.new_leader_epoch and state.leader_id == 2
    again = state.become_follower(update(leader=2, epoch=6, isr=(2,), version=13))
    assert again.applied and not again.new_leader_epoch  # no need to restart fetching


def test_role_mismatch_is_a_programming_error() -> None:
    state = ReplicaState(1, ManualClock())
    with pytest.raises(ValueError):
        state.become_leader(update(leader=2), 0, 0)
    with pytest.raises(ValueError):
        state.become_follower(update(leader=1))


def test_follower_fetch_epoch_checks() -> None:
    state = leader()
    assert state.check_follower_fetch(2, 5) == ErrorCode.NONE
    assert state.check_follower_fetch(2, -1) == ErrorCode.NONE
    assert state.check_follower_fetch(2, 4) == ErrorCode.FENCED_LEADER_EPOCH
    assert state.check_follower_fetch(2, 6) == ErrorCode.UNKNOWN_LEADER_EPOCH
    assert state.check_follower_fetch(9, 5) == ErrorCode.UNKNOWN_LEADER_EPOCH
    assert state.check_follower_fetch(9, -1) == ErrorCode.NOT_LEADER_OR_FOLLOWER
    state.become_follower(update(leader=2, epoch=6, version=11))
    assert state.check_follower_fetch(3, 6) == ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_new_leader_forgets_follower_progress_reelection_keeps_it() -> None:
    clock = ManualClock()
    state = leader(isr=(1, 2), leo=10, hw=10, clock=clock)
    state.update_follower_fetch_state(2, 10, 0, 10)
    state.become_leader(update(epoch=6, isr=(1, 2), version=11), 10, 10)
    assert state.followers[2].log_end_offset == 10  # re-elected: kept
    assert state.leader_epoch_start_offset == 10
    state.become_follower(update(leader=2, epoch=7, version=12))
    state.become_leader(update(epoch=8, isr=(1, 2), version=13), 12, 10)
    assert state.followers[2].log_end_offset == -1  # new leadership: unknown
    assert hw_moves(state.on_local_append(15)) == []
    assert state.high_watermark == 10


# -- property: the high watermark ----------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 5)),
        st.tuples(st.just("fetch"), st.sampled_from([2, 3]), st.integers(0, 6)),
        st.tuples(st.just("tick"), st.integers(0, 2 * LAG)),
        st.tuples(st.just("shrink")),
        st.tuples(st.just("commit"), st.booleans()),
        st.tuples(st.just("fail"), st.booleans()),
        st.tuples(st.just("min_isr"), st.integers(1, 3)),
    ),
    max_size=60,
)


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(ops, st.integers(1, 3))
def test_hw_monotonic_and_bounded_by_isr(script: list[tuple[object, ...]], min_isr: int) -> None:
    clock = ManualClock()
    state = leader(isr=(1, 2, 3), leo=0, hw=0, min_isr=min_isr, clock=clock)
    leo = {1: 0, 2: -1, 3: -1}  # -1: not yet reported in this epoch
    version = 10
    last_hw = state.high_watermark

    def check(events: list[HighWatermarkMoved | IsrChangeRequested]) -> None:
        nonlocal last_hw
        for event in events:
            if isinstance(event, HighWatermarkMoved):
                assert event.new > event.old == last_hw
                # Every member of the ISR (committed and maximal) has the records below it.
                for member in set(state.isr) | set(state.maximal_isr):
                    assert leo[member] >= event.new
                last_hw = event.new
        assert state.high_watermark == last_hw <= leo[1]

    for op in script:
        kind = op[0]
        if kind == "append":
            leo[1] += int(op[1])  # type: ignore[call-overload]
            check(state.on_local_append(leo[1]))
        elif kind == "fetch":
            replica, step = int(op[1]), int(op[2])  # type: ignore[call-overload]
            # Followers move forward only, never past the leader.
            leo[replica] = min(leo[1], max(leo[replica], 0) + step)
            check(state.update_follower_fetch_state(replica, leo[replica], 0, leo[1]))
        elif kind == "tick":
            clock.advance(int(op[1]))  # type: ignore[call-overload]
        elif kind == "shrink":
            check(state.maybe_shrink_isr())
        elif kind == "commit" and state.pending is not None:
            version += 1
            check(state.isr_change_committed(state.pending, version))
        elif kind == "fail" and state.pending is not None:
            check(state.isr_change_failed(state.pending, retry=bool(op[1])))
        elif kind == "min_isr":
            check(state.set_min_insync_replicas(int(op[1])))  # type: ignore[call-overload]


# -- reassignment: the replica set changes without a new partition state -------------------------


def test_replica_set_change_alone_reaches_the_leader_and_keeps_a_pending_isr_change() -> None:
    state = leader(isr=(1, 2), leo=100, hw=100)
    # A reassignment adds broker 4: same state znode version and epoch, new replicas.
    moved = update(isr=(1, 2), replicas=(4, 1, 2))
    result = state.become_leader(moved, 100, 100)
    assert result.applied and not result.new_leader_epoch
    assert state.replicas == (4, 1, 2) and set(state.followers) == {2, 4}
    # The new replica may fetch in this epoch and joins the ISR once caught up.
    assert state.check_follower_fetch(4, 5) == ErrorCode.NONE
    (expand,) = isr_changes(state.update_follower_fetch_state(4, 100, 0, 100))
    assert expand.change.isr == (1, 2, 4)
    # The move completes: broker 2 is no longer a replica; the pending change survives.
    state.become_leader(update(isr=(1, 2), replicas=(4, 1)), 100, 100)
    assert state.replicas == (4, 1) and set(state.followers) == {4}
    assert state.pending == expand.change


def test_replica_set_change_alone_reaches_a_follower() -> None:
    state = ReplicaState(2, ManualClock(), LAG)
    assert state.become_follower(update()).new_leader_epoch
    result = state.become_follower(update(replicas=(1, 2, 3, 4)))
    assert result.applied and not result.new_leader_epoch
    assert state.replicas == (1, 2, 3, 4)
