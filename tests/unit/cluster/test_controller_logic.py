"""The controller's pure decisions: placement and elections (tables, then properties)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.cluster.zk import controller_logic as logic
from strom.cluster.zk.controller_logic import (
    BrokerInfo,
    IncompleteRackInfoError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    PartitionView,
)
from strom.cluster.zk.layout import NO_LEADER, PartitionState, TopicPartition

TP = TopicPartition("t", 0)


def _brokers(*ids: int) -> list[BrokerInfo]:
    return [BrokerInfo(i) for i in ids]


# --- placement: Kafka's documented examples -------------------------------------------------


def test_rack_unaware_matches_kafkas_example() -> None:
    # Five brokers, ten partitions, three replicas, fixed start 0 (Kafka's AdminUtils doc).
    got = logic.assign_replicas(_brokers(0, 1, 2, 3, 4), 10, 3, start_index=0)
    assert got[0] == (0, 1, 2)
    assert got[4] == (4, 0, 1)
    assert got[5] == (0, 2, 3)  # second round: followers shifted by one more
    assert got[9] == (4, 1, 2)


def test_rack_alternated_list_and_rack_aware_example() -> None:
    racks = {0: "rack1", 1: "rack3", 2: "rack3", 3: "rack2", 4: "rack2", 5: "rack1"}
    assert logic.rack_alternated(racks) == [0, 3, 1, 5, 4, 2]
    brokers = [BrokerInfo(b, r) for b, r in racks.items()]
    got = logic.assign_replicas(brokers, 7, 3, start_index=0)
    assert [got[p] for p in range(7)] == [
        (0, 3, 1),
        (3, 1, 5),
        (1, 5, 4),
        (5, 4, 2),
        (4, 2, 0),
        (2, 0, 3),
        (0, 4, 2),
    ]


def test_placement_errors() -> None:
    with pytest.raises(InvalidReplicationFactorError):
        logic.assign_replicas(_brokers(1, 2), 1, 3)
    with pytest.raises(InvalidReplicationFactorError):
        logic.assign_replicas(_brokers(1, 2), 1, 0)
    with pytest.raises(InvalidPartitionsError):
        logic.assign_replicas(_brokers(1, 2), 0, 1)
    with pytest.raises(IncompleteRackInfoError):
        logic.assign_replicas([BrokerInfo(1, "a"), BrokerInfo(2)], 1, 1)


def test_added_partitions_continue_the_placement() -> None:
    brokers = _brokers(1, 2, 3)
    existing = logic.assign_replicas(brokers, 3, 2, start_index=1)
    added = logic.assign_added_partitions(brokers, existing, 5)
    assert set(added) == {3, 4}
    assert all(len(r) == 2 and len(set(r)) == 2 for r in added.values())
    everything = {**existing, **added}
    leaders = Counter(r[0] for r in everything.values())
    assert max(leaders.values()) - min(leaders.values()) <= 1
    with pytest.raises(InvalidPartitionsError):
        logic.assign_added_partitions(brokers, existing, 3)


# --- elections: tables ----------------------------------------------------------------------


def _state(leader: int, isr: tuple[int, ...], epoch: int = 5) -> PartitionState:
    return PartitionState(leader, epoch, isr, controller_epoch=1)


@pytest.mark.parametrize(
    ("replicas", "isr", "live", "unclean", "expected"),
    [
        ((1, 2, 3), (1, 2, 3), {2, 3}, False, (2, (2, 3))),  # first live ISR member by order
        ((3, 2, 1), (1, 2, 3), {1, 2}, False, (2, (1, 2))),  # assignment order, not ISR order
        ((1, 2, 3), (1,), {2, 3}, False, None),  # no live ISR member, clean: offline
        ((1, 2, 3), (1,), {3, 2}, True, (2, (2,))),  # unclean: first live replica alone
        ((1, 2, 3), (1,), set(), True, None),  # nothing live at all
    ],
)
def test_offline_election(
    replicas: tuple[int, ...],
    isr: tuple[int, ...],
    live: set[int],
    unclean: bool,
    expected: tuple[int, tuple[int, ...]] | None,
) -> None:
    got = logic.elect_offline(replicas, _state(1, isr), live, unclean, controller_epoch=9)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert (got.leader, got.isr) == expected
        assert got.leader_epoch == 6 and got.controller_epoch == 9


def test_preferred_controlled_shutdown_reassign_and_isr_removal() -> None:
    s = _state(2, (1, 2, 3))
    preferred = logic.elect_preferred((1, 2, 3), s, {1, 2, 3}, 4)
    assert preferred is not None and (preferred.leader, preferred.isr) == (1, (1, 2, 3))
    assert logic.elect_preferred((2, 1, 3), s, {1, 2, 3}, 4) is None  # already preferred
    assert logic.elect_preferred((1, 2, 3), _state(2, (2, 3)), {1, 2, 3}, 4) is None  # not ISR
    moved = logic.elect_controlled_shutdown((2, 1, 3), s, {1, 3}, {2}, 4)
    assert moved is not None and (moved.leader, moved.isr) == (1, (1, 3))
    assert logic.elect_controlled_shutdown((2, 1), _state(2, (2,)), {1}, {2}, 4) is None
    reassigned = logic.elect_reassigned((3, 1), s, {1, 2, 3}, 4)
    assert reassigned is not None and reassigned.leader == 3
    removed = logic.remove_from_isr(s, 2, 4)
    assert removed is not None and (removed.leader, removed.isr) == (NO_LEADER, (1, 3))
    last = logic.remove_from_isr(_state(2, (2,)), 2, 4)
    assert last is not None and (last.leader, last.isr) == (NO_LEADER, (2,))
    assert logic.remove_from_isr(s, 7, 4) is None


def test_reconcile_covers_new_dead_and_returning_brokers() -> None:
    views = {
        TopicPartition("t", 0): PartitionView((1, 2, 3), None),  # new
        TopicPartition("t", 1): PartitionView((1, 2, 3), _state(1, (1, 2, 3))),  # leader dies
        TopicPartition("t", 2): PartitionView((2, 1, 3), _state(2, (2, 1, 3))),  # follower dies
        TopicPartition("t", 3): PartitionView((1,), _state(1, (1,))),  # only replica dies
        TopicPartition("t", 4): PartitionView((2, 3), _state(2, (2, 3))),  # untouched
    }
    live = {2, 3}
    out = logic.reconcile(views, live, controller_epoch=2)
    assert out[TopicPartition("t", 0)] == PartitionState(2, 0, (2, 3), 2)
    assert (out[TopicPartition("t", 1)].leader, out[TopicPartition("t", 1)].isr) == (2, (2, 3))
    assert (out[TopicPartition("t", 2)].leader, out[TopicPartition("t", 2)].isr) == (2, (2, 3))
    assert (out[TopicPartition("t", 3)].leader, out[TopicPartition("t", 3)].isr) == (
        NO_LEADER,
        (1,),
    )
    assert TopicPartition("t", 4) not in out
    # Applying the result and reconciling again changes nothing.
    applied = {tp: PartitionView(v.replicas, out.get(tp, v.state)) for tp, v in views.items()}
    assert logic.reconcile(applied, live, 2) == {}
    # Broker 1 returns: only the leaderless partition changes (its last ISR member is back).
    back = logic.reconcile(applied, live | {1}, 2)
    assert list(back) == [TopicPartition("t", 3)]
    assert back[TopicPartition("t", 3)].leader == 1
    assert logic.topics_needing_unclean_check(applied, live) == {"t"}


def test_controlled_shutdown_plan() -> None:
    views = {
        TopicPartition("t", 0): PartitionView((1, 2), _state(1, (1, 2))),
        TopicPartition("t", 1): PartitionView((2, 1), _state(2, (2, 1))),
        TopicPartition("t", 2): PartitionView((1,), _state(1, (1,))),
        TopicPartition("t", 3): PartitionView((1, 2), _state(1, (1,))),
    }
    changes, remaining = logic.controlled_shutdown(views, {1, 2}, {1}, 3)
    assert (changes[TopicPartition("t", 0)].leader, changes[TopicPartition("t", 0)].isr) == (
        2,
        (2,),
    )
    assert changes[TopicPartition("t", 1)].isr == (2,)
    # t-3 has no other in-sync replica; t-2 (a single replica) is not waited for at all.
    assert TopicPartition("t", 2) not in changes
    assert remaining == {TopicPartition("t", 3)}


def test_imbalance_detection() -> None:
    views = {TopicPartition("t", p): PartitionView((1, 2), _state(2, (1, 2))) for p in range(3)}
    assert set(logic.imbalanced_partitions(views, {1, 2})) == set(views)
    assert logic.imbalanced_partitions(views, {2}) == {}
    assert logic.preferred_elections(views, {1, 2}, 2)[TopicPartition("t", 0)].leader == 1


# --- properties -------------------------------------------------------------------------------

racks_strategy = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=9)


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(
    n_brokers=st.integers(1, 9),
    partitions=st.integers(1, 40),
    rf_seed=st.integers(0, 100),
    seed=st.integers(0, 2**32),
)
def test_rack_unaware_placement_properties(
    n_brokers: int, partitions: int, rf_seed: int, seed: int
) -> None:
    rf = 1 + rf_seed % n_brokers
    ids = random.Random(seed).sample(range(100), n_brokers)
    got = logic.assign_replicas(_brokers(*ids), partitions, rf, rng=random.Random(seed))
    assert sorted(got) == list(range(partitions))
    for replicas in got.values():
        assert len(replicas) == rf and len(set(replicas)) == rf and set(replicas) <= set(ids)
    leaders = Counter(r[0] for r in got.values())
    assert max(leaders.values()) - min(leaders[i] for i in ids) <= 1
    load = Counter(b for r in got.values() for b in r)
    assert max(load.values()) - min(load[i] for i in ids) <= rf
    # Deterministic for a given seed.
    assert got == logic.assign_replicas(_brokers(*ids), partitions, rf, rng=random.Random(seed))


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(
    racks=racks_strategy,
    partitions=st.integers(1, 30),
    rf_seed=st.integers(0, 100),
    seed=st.integers(0, 2**32),
)
def test_rack_aware_placement_spreads_racks(
    racks: list[str], partitions: int, rf_seed: int, seed: int
) -> None:
    brokers = [BrokerInfo(i, r) for i, r in enumerate(racks)]
    rf = 1 + rf_seed % len(brokers)
    got = logic.assign_replicas(brokers, partitions, rf, rng=random.Random(seed))
    n_racks = len(set(racks))
    for replicas in got.values():
        assert len(set(replicas)) == rf
        used = {racks[b] for b in replicas}
        # Every rack gets a replica before any rack gets a second one.
        assert len(used) == min(rf, n_racks)
    leaders = Counter(r[0] for r in got.values())
    assert max(leaders.values()) - min(leaders[i] for i in range(len(brokers))) <= 1


@st.composite
def cluster_states(draw: st.DrawFn) -> tuple[dict[TopicPartition, PartitionView], set[int]]:
    brokers = list(range(1, draw(st.integers(1, 6)) + 1))
    views: dict[TopicPartition, PartitionView] = {}
    for p in range(draw(st.integers(1, 8))):
        replicas = tuple(draw(st.permutations(brokers))[: draw(st.integers(1, len(brokers)))])
        if draw(st.booleans()):
            isr = tuple(r for r in replicas if draw(st.booleans())) or replicas[:1]
            leader = draw(st.sampled_from([*isr, NO_LEADER]))
            state: PartitionState | None = PartitionState(leader, draw(st.integers(0, 50)), isr, 1)
        else:
            state = None
        views[TopicPartition("t", p)] = PartitionView(replicas, state)
    live = {b for b in brokers if draw(st.booleans())}
    return views, live


@pytest.mark.property
@settings(max_examples=500, deadline=None)
@given(cluster=cluster_states(), unclean=st.booleans())
def test_reconcile_properties(
    cluster: tuple[dict[TopicPartition, PartitionView], set[int]], unclean: bool
) -> None:
    views, live = cluster
    out = logic.reconcile(views, live, controller_epoch=3, unclean=lambda t: unclean)
    for tp, new in out.items():
        view = views[tp]
        old = view.state
        assert new.controller_epoch == 3
        assert new.isr, "an ISR never becomes empty"
        if new.leader != NO_LEADER:
            assert new.leader in live and new.leader in view.replicas
            assert new.leader in new.isr
        if old is None:
            assert new.leader_epoch == 0
            continue
        assert new.leader_epoch > old.leader_epoch
        if not unclean:
            assert new.leader == NO_LEADER or new.leader in old.isr
            assert set(new.isr) <= set(old.isr)
    # After applying, every partition with a live in-sync replica has a live leader, and a
    # second pass has nothing left to do.
    applied = {tp: PartitionView(v.replicas, out.get(tp, v.state)) for tp, v in views.items()}
    assert logic.reconcile(applied, live, 3, lambda t: unclean) == {}
    for view in applied.values():
        if view.state is not None and any(r in live for r in view.state.isr):
            assert view.state.leader in live


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(cluster=cluster_states(), leaving=st.integers(1, 6))
def test_controlled_shutdown_properties(
    cluster: tuple[dict[TopicPartition, PartitionView], set[int]], leaving: int
) -> None:
    views, live = cluster
    live = live | {leaving}
    changes, remaining = logic.controlled_shutdown(views, live, {leaving}, 4)
    for tp, new in changes.items():
        old = views[tp].state
        assert old is not None
        assert new.leader != leaving and leaving not in new.isr
        assert new.leader_epoch == old.leader_epoch + 1
        assert new.leader in old.isr and set(new.isr) <= set(old.isr)
    for tp in remaining:
        state = views[tp].state
        assert state is not None and state.leader == leaving
        assert len(views[tp].replicas) > 1
