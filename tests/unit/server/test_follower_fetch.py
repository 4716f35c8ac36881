"""The leader's side of follower fetches (server/follower_fetch.py) through a real cluster-mode
broker: its ReplicaManager leads a partition with replicas 1, 2, 3 (this broker is 1) and
answers Fetch requests from replicas 2 and 3 as `strom serve` would.

No ZooKeeper: the metadata cache is filled as its watches would fill it, and every scenario
keeps the ISR as the controller wrote it, so nothing is written back (ISR changes are covered
by tests/unit/replication/test_replica_state.py and the cluster tests).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_broker_helpers import EPOCH, Leader, close, offsets, open_leader

from strom.protocol.errors import ErrorCode


@pytest.fixture
def leader(tmp_path: Path) -> Iterator[Leader]:
    lead = open_leader(tmp_path)
    yield lead
    close(lead)


@pytest.mark.parametrize("version", [17, 12, 11])
def test_followers_read_past_the_high_watermark_and_move_it(leader: Leader, version: int) -> None:
    leader.append(3)
    leader.append(2)
    assert leader.log.log_end_offset == 5
    assert leader.log.high_watermark == 0  # no follower has fetched yet

    first = leader.fetch(2, 0, version=version)
    assert first.error_code == ErrorCode.NONE
    assert offsets(first) == [0, 3]  # up to the log end, not the high watermark
    assert first.high_watermark == 0
    # Replica 2 has everything; replica 3 has nothing yet: the ISR's minimum is 0.
    assert leader.fetch(2, 5, version=version).high_watermark == 0
    assert leader.fetch(3, 3, version=version).high_watermark == 3
    last = leader.fetch(3, 5, version=version)
    assert last.records == b"" or not offsets(last)
    assert last.high_watermark == leader.log.high_watermark == 5


def test_epoch_and_membership_checks(leader: Leader, tmp_path: Path) -> None:
    leader.append(1)
    assert leader.fetch(2, 0, epoch=EPOCH - 1).error_code == ErrorCode.FENCED_LEADER_EPOCH
    assert leader.fetch(2, 0, epoch=EPOCH + 1).error_code == ErrorCode.UNKNOWN_LEADER_EPOCH
    # Not a replica of the partition: retried later by a real follower, never served.
    stranger = leader.fetch(9, 0)
    assert stranger.error_code == ErrorCode.UNKNOWN_LEADER_EPOCH
    assert stranger.records == b""
    unknown = asyncio.run(leader.fetch_async(2, 0, topic_id=uuid.uuid4()))
    assert unknown.responses[0].partitions[0].error_code == ErrorCode.UNKNOWN_TOPIC_ID
    # None of this moved the high watermark.
    assert leader.log.high_watermark == 0


def test_a_follower_is_no_leader(tmp_path: Path) -> None:
    follower = open_leader(tmp_path, leader=2)
    try:
        answer = follower.fetch(3, 0)
        assert answer.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    finally:
        close(follower)


def test_diverging_follower_gets_the_epoch_end_and_no_records(leader: Leader) -> None:
    # Epoch 3 wrote offsets 0-3; epoch 5 (this leader) starts at 4.
    leader.log.leader_epoch_cache.clear()
    leader.append(4, epoch=3)
    leader.log.leader_epoch_cache.assign(EPOCH, leader.log.log_end_offset)
    leader.append(2)
    # A follower that wrote offsets 4-6 in epoch 4, which never reached this leader.
    answer = leader.fetch(2, 7, last_fetched_epoch=4)
    assert answer.error_code == ErrorCode.NONE
    assert (answer.diverging_epoch.epoch, answer.diverging_epoch.end_offset) == (3, 4)
    assert answer.records == b""
    # Its fetch offset was not taken as its log end: after replica 3 caught up, the high
    # watermark still waits for replica 2.
    leader.fetch(3, 6)
    assert leader.log.high_watermark == 0
    # Truncated to 4, it fetches the rest and the high watermark moves.
    assert offsets(leader.fetch(2, 4, last_fetched_epoch=3)) == [4]
    leader.fetch(2, 6, last_fetched_epoch=EPOCH)
    assert leader.log.high_watermark == 6


def test_a_waiting_fetch_wakes_on_append(leader: Leader) -> None:
    async def scenario() -> None:
        waiting = asyncio.create_task(leader.fetch_async(2, 0, max_wait_ms=30_000))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # nothing to read: parked in the fetch purgatory
        leader.append(2)
        done, _ = await asyncio.wait({waiting}, timeout=10)
        assert done, "the append did not wake the parked follower fetch"
        (partition,) = waiting.result().responses[0].partitions
        assert offsets(partition) == [0]

    asyncio.run(scenario())
