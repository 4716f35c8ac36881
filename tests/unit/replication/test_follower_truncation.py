"""Truncation decisions from leader epochs (KIP-101, KIP-279) and the leader's epoch answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.offset_for_leader_epoch_request import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)
from strom.replication.follower import (
    TruncationDecision,
    decide_truncation,
    epoch_end_offset_in,
)
from strom.replication.leader_epoch_handler import (
    DivergenceCheck,
    LocalEpochs,
    diverging_epoch,
    epoch_end_offset,
    handle_offsets_for_leader_epoch,
)
from strom.storage.leader_epoch import LeaderEpochCache


def lookup(entries: list[tuple[int, int]], leo: int):  # type: ignore[no-untyped-def]
    return lambda epoch: epoch_end_offset_in(entries, epoch, leo)


def round_trip(
    leader: list[tuple[int, int]],
    leader_leo: int,
    follower: list[tuple[int, int]],
    leo: int,
    hw: int,
) -> TruncationDecision:
    """One OffsetsForLeaderEpoch round: the follower asks for its latest epoch."""
    epoch, end = epoch_end_offset_in(leader, follower[-1][0] if follower else -1, leader_leo)
    return decide_truncation(epoch, end, lookup(follower, leo), leo, hw)


# Epoch tables are (epoch, start offset), as in leader-epoch-checkpoint.
@pytest.mark.parametrize(
    ("leader", "leader_leo", "follower", "leo", "hw", "expected"),
    [
        # KIP-101 scenario 1: the follower restarted with a lower HW; same epoch on both sides,
        # the follower keeps everything it has (no data loss by truncating to the HW).
        ([(0, 0)], 2, [(0, 0)], 2, 1, TruncationDecision(2, True)),
        # The follower is behind in the same epoch: nothing to cut.
        ([(0, 0)], 10, [(0, 0)], 4, 4, TruncationDecision(4, True)),
        # KIP-101 scenario 2: the follower led epoch 1 and wrote offsets 1.. that nobody else
        # got; the new leader (epoch 2) wrote from 1. Leader answers (0, 1): cut to 1.
        ([(0, 0), (2, 1)], 3, [(0, 0), (1, 1)], 3, 1, TruncationDecision(1, True)),
        # The follower has more of the leader's latest epoch than the leader (an unclean
        # leader): cut to the leader's end.
        ([(0, 0), (3, 5)], 7, [(0, 0), (3, 5)], 9, 6, TruncationDecision(7, True)),
        # KIP-279: the leader's answer is an epoch the follower never saw (2, ends at 5); the
        # follower's largest epoch below 2 is 1, ending at 4: cut there and ask again.
        ([(0, 0), (2, 2), (4, 5)], 8, [(0, 0), (1, 2), (3, 4)], 6, 2, TruncationDecision(4, False)),
        # The leader knows no epoch at or below ours (it is new or lost its cache): keep to
        # the high watermark.
        ([], 0, [(0, 0)], 5, 3, TruncationDecision(3, True)),
        # The follower's epoch is above every epoch the leader knows: the leader answers -1.
        ([(0, 0)], 4, [(0, 0), (5, 3)], 6, 2, TruncationDecision(2, True)),
    ],
)
def test_truncation_table(
    leader: list[tuple[int, int]],
    leader_leo: int,
    follower: list[tuple[int, int]],
    leo: int,
    hw: int,
    expected: TruncationDecision,
) -> None:
    assert round_trip(leader, leader_leo, follower, leo, hw) == expected


def test_kip279_second_round_completes() -> None:
    leader, leader_leo = [(0, 0), (2, 2), (4, 5)], 8
    follower, leo = [(0, 0), (1, 2), (3, 4)], 6
    first = round_trip(leader, leader_leo, follower, leo, 2)
    assert first == TruncationDecision(4, False)
    # After cutting to 4 the follower's table loses epoch 3 (it started at 4).
    follower, leo = [(0, 0), (1, 2)], 4
    assert round_trip(leader, leader_leo, follower, leo, 2) == TruncationDecision(2, True)


def test_unknown_epoch_on_leader_without_epoch_falls_back() -> None:
    # A leader on an old protocol (no epoch in the answer) gives only an offset.
    assert decide_truncation(-1, 3, lookup([(0, 0)], 5), 5, 1) == TruncationDecision(3, True)
    # A follower without epochs at or below the leader's: the leader's offset decides.
    assert decide_truncation(0, 3, lookup([(2, 4)], 6), 6, 1) == TruncationDecision(3, True)


@pytest.mark.property
@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20)), max_size=6),
    st.integers(-1, 30),
    st.integers(0, 40),
)
def test_epoch_table_lookup_matches_cache(
    tmp_path_factory: pytest.TempPathFactory,
    raw: list[tuple[int, int]],
    epoch: int,
    extra: int,
) -> None:
    cache = LeaderEpochCache(tmp_path_factory.mktemp("epochs"))
    epoch_now, offset_now = -1, 0
    for step_epoch, step_offset in raw:
        epoch_now += step_epoch + 1
        offset_now += step_offset
        cache.assign(epoch_now, offset_now)
    leo = offset_now + extra
    assert epoch_end_offset_in(cache.entries(), epoch, leo) == cache.end_offset_for(epoch, leo)


# -- the leader's answers ----------------------------------------------------------------------


def test_offsets_for_leader_epoch_answers(tmp_path: Path) -> None:
    cache = LeaderEpochCache(tmp_path)
    cache.assign(0, 0)
    cache.assign(2, 10)
    cache.assign(4, 25)
    local = LocalEpochs(4, True, lambda e: cache.end_offset_for(e, 30))
    assert epoch_end_offset(local, 4, 4) == (ErrorCode.NONE, 4, 30)
    assert epoch_end_offset(local, -1, 3) == (ErrorCode.NONE, 2, 25)
    assert epoch_end_offset(local, 4, 1) == (ErrorCode.NONE, 0, 10)
    assert epoch_end_offset(local, 4, 7) == (ErrorCode.NONE, -1, -1)
    assert epoch_end_offset(local, 3, 2)[0] == ErrorCode.FENCED_LEADER_EPOCH
    assert epoch_end_offset(local, 5, 2)[0] == ErrorCode.UNKNOWN_LEADER_EPOCH
    follower = LocalEpochs(4, False, local.end_offset_for)
    assert epoch_end_offset(follower, 4, 2)[0] == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert epoch_end_offset(None, 4, 2)[0] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION

    request = OffsetForLeaderEpochRequest(
        replica_id=1,
        topics=[
            OffsetForLeaderTopic(
                topic="t",
                partitions=[
                    OffsetForLeaderPartition(partition=0, current_leader_epoch=4, leader_epoch=3),
                    OffsetForLeaderPartition(partition=1, current_leader_epoch=4, leader_epoch=3),
                ],
            )
        ],
    )
    response = handle_offsets_for_leader_epoch(request, lambda t, p: local if p == 0 else None)
    first, second = response.topics[0].partitions
    assert (first.error_code, first.leader_epoch, first.end_offset) == (0, 2, 25)
    assert second.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    for version in (2, 3, 4):  # what the lead's handler will encode
        assert (
            type(response).decode(response.encode(version), version).topics[0].partitions[0]
            == first
        )


def test_diverging_epoch_in_fetch(tmp_path: Path) -> None:
    cache = LeaderEpochCache(tmp_path)
    cache.assign(0, 0)
    cache.assign(2, 10)
    local = LocalEpochs(2, True, lambda e: cache.end_offset_for(e, 15))
    # In step: the follower's last epoch is ours and its offset within it.
    assert diverging_epoch(local, 2, 2, 15, 0) == DivergenceCheck()
    assert diverging_epoch(local, 2, 0, 10, 0) == DivergenceCheck()
    # Its epoch 0 ran past where ours ended (10): diverged at (0, 10).
    assert diverging_epoch(local, 2, 0, 12, 0) == DivergenceCheck(diverging=(0, 10))
    # An epoch we never had (1): the largest below it is 0, ending at 10.
    assert diverging_epoch(local, 2, 1, 12, 0) == DivergenceCheck(diverging=(0, 10))
    # An epoch above all ours: cannot tell.
    assert diverging_epoch(local, 2, 3, 12, 0).error == ErrorCode.OFFSET_OUT_OF_RANGE
    assert diverging_epoch(local, 2, 2, 3, 5).error == ErrorCode.OFFSET_OUT_OF_RANGE
    assert diverging_epoch(local, 1, 2, 12, 0).error == ErrorCode.FENCED_LEADER_EPOCH
    assert diverging_epoch(local, 2, -1, 12, 0) == DivergenceCheck()  # Fetch before v12
