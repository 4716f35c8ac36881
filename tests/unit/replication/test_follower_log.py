"""append_as_follower on real logs, and the follower session replicating from a leader log
in-process (requests answered by LeaderSim, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from replication_helpers import (
    TOPIC,
    LeaderSim,
    append,
    append_batches,
    epochs,
    log_bytes,
    open_log,
)

from strom.protocol.errors import ErrorCode
from strom.protocol.records.control import build_control_batch
from strom.protocol.records.errors import CorruptRecordError
from strom.replication.follower import FetchStatus, FollowerSession
from strom.replication.follower_log import (
    OffsetMismatchError,
    append_as_follower,
    truncate_fully_and_start_at,
)
from strom.storage.partition_log import PartitionLog


def copy_all(leader: PartitionLog, follower: PartitionLog, chunk: int = 1 << 20) -> None:
    """Replicate by reading the leader from the follower's end, as a fetch would."""
    while follower.log_end_offset < leader.log_end_offset:
        result = leader.read(follower.log_end_offset, chunk, leader.log_end_offset, True)
        append_as_follower(follower, result.records, 0)


def test_offsets_epochs_and_bytes_are_the_leaders(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "leader")
    follower = open_log(tmp_path / "follower")
    append_batches(leader, 0, 4)
    append_batches(leader, 3, 3)
    append_batches(leader, 7, 2)
    copy_all(leader, follower, chunk=250)
    assert follower.log_end_offset == leader.log_end_offset == 27
    assert log_bytes(follower) == log_bytes(leader)
    assert epochs(follower) == epochs(leader) == [(0, 0), (3, 12), (7, 21)]
    assert len(follower.segments) > 1  # segment.bytes=600 is honoured batch by batch
    assert all(s.size <= 600 for s in follower.segments[:-1])
    # The copied log reads back like the leader's.
    assert (
        follower.read(13, 1 << 20, 27, True).records == leader.read(13, 1 << 20, 27, True).records
    )


def test_one_big_fetch_rolls_segments(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "leader")
    follower = open_log(tmp_path / "follower")
    append_batches(leader, 1, 12)
    data = b"".join(
        leader.read(s.base_offset, 1 << 20, leader.log_end_offset, True).records
        for s in leader.segments
    )
    result = append_as_follower(follower, data, 0)
    assert result.batches == 12 and result.first_offset == 0 and result.last_offset == 35
    assert result.last_epoch == 1
    assert log_bytes(follower) == log_bytes(leader)
    assert [s.base_offset for s in follower.segments] == [s.base_offset for s in leader.segments]


def test_partial_trailing_batch_is_left_for_later(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "leader")
    follower = open_log(tmp_path / "follower")
    append_batches(leader, 0, 2)
    data = leader.read(0, 1 << 20, leader.log_end_offset, True).records
    result = append_as_follower(follower, data[:-5], 0)
    assert result.batches == 1 and follower.log_end_offset == 3
    assert append_as_follower(follower, data[:40], 0).batches == 0  # less than a header


def test_corrupt_batch_is_refused_whole(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "leader")
    follower = open_log(tmp_path / "follower")
    append_batches(leader, 0, 3)
    data = bytearray(leader.read(0, 1 << 20, leader.log_end_offset, True).records)
    data[-3] ^= 0xFF  # inside the last batch's records: its CRC no longer matches
    with pytest.raises(CorruptRecordError):
        append_as_follower(follower, data, 0)
    assert follower.log_end_offset == 0 and follower.size_bytes == 0


def test_offsets_must_continue_the_log(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "leader")
    follower = open_log(tmp_path / "follower")
    append_batches(leader, 0, 3)
    copy_all(leader, follower)
    again = leader.read(3, 1 << 20, leader.log_end_offset, True).records
    with pytest.raises(OffsetMismatchError):
        append_as_follower(follower, again, 0)
    assert log_bytes(follower) == log_bytes(leader)


def test_producer_state_and_transactions_replicate(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "leader")
    follower = open_log(tmp_path / "follower")
    append(leader, 0, [b"a", b"b"], producer_id=7)
    append(leader, 0, [b"c"], producer_id=7, base_sequence=2)
    # An aborted transaction: data, then the coordinator's marker.
    leader.append_as_leader(*_txn_batch(8), 0, 10_000)
    leader.append_marker(8, 0, 0, commit=False, leader_epoch=0, now_ms=10_000)
    copy_all(leader, follower)
    assert follower.producer_state.producers[7].last_seq == 2
    assert follower.producer_state.producers[7].last_data_offset == 2
    assert not follower.producer_state.ongoing
    assert follower.collect_aborted_txns(0, 10) == leader.collect_aborted_txns(0, 10)
    assert len(follower.collect_aborted_txns(0, 10)) == 1


def _txn_batch(producer_id: int) -> tuple[bytearray, list]:  # type: ignore[type-arg]
    from strom.protocol.records.codec import Record, build_batch
    from strom.protocol.records.validation import validate_batches

    data = bytearray(
        build_batch(
            [Record(0, 1_000, b"k", b"v")],
            producer_id=producer_id,
            producer_epoch=0,
            base_sequence=0,
            is_transactional=True,
        )
    )
    return data, validate_batches(data)


def test_control_batch_bytes_replicate_unchanged(tmp_path: Path) -> None:
    follower = open_log(tmp_path / "follower")
    marker = bytearray(build_control_batch(1, 9, 0, 3, 0, 5_000))
    append_as_follower(follower, marker, 0)
    assert log_bytes(follower) == bytes(marker)


def test_truncate_then_refetch_is_identical(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "leader")
    follower = open_log(tmp_path / "follower")
    append_batches(leader, 0, 5)
    copy_all(leader, follower)
    follower.truncate_to(7)  # cuts inside a batch: the whole batch goes (back to 6)
    assert follower.log_end_offset == 6
    copy_all(leader, follower)
    assert log_bytes(follower) == log_bytes(leader)


def test_truncate_fully_and_start_at(tmp_path: Path) -> None:
    follower = open_log(tmp_path / "follower")
    append_batches(follower, 0, 5)
    truncate_fully_and_start_at(follower, 40, 0)
    assert (follower.log_start_offset, follower.log_end_offset, follower.high_watermark) == (
        40,
        40,
        40,
    )
    assert [s.base_offset for s in follower.segments] == [40]
    assert epochs(follower) == []
    leader = open_log(tmp_path / "leader")
    truncate_fully_and_start_at(leader, 40, 0)
    append_batches(leader, 2, 2)
    copy_all(leader, follower)
    assert log_bytes(follower) == log_bytes(leader)
    follower.close()
    reopened = open_log(tmp_path / "follower")
    assert (reopened.log_start_offset, reopened.log_end_offset) == (40, 46)


# -- the follower session against a leader log --------------------------------------------------


def replicate(
    session: FollowerSession, leader: LeaderSim, version: int = 17, rounds: int = 50
) -> None:
    """Drive the session's requests through the leader until nothing is left to do."""
    for _ in range(rounds):
        now = leader.clock.monotonic_ms()
        session.truncate_without_epochs(now)
        request = session.offsets_request(now)
        if request is not None:
            session.handle_offsets_response(request, leader.answer_offsets(request), now)
        prepared = session.fetch_request(version, now)
        if prepared is None:
            return
        fetch, sent = prepared
        response = leader.answer_fetch(fetch, sent.version)
        # Through the wire format, as the fetcher would see it.
        decoded = type(response).decode(response.encode(sent.version), sent.version)
        session.handle_fetch_response(sent, decoded, now)
        entry = next(iter(session.partitions.values()))
        end = leader.log.log_end_offset
        if entry.log.log_end_offset == end == entry.log.high_watermark == leader.log.high_watermark:
            return


@pytest.mark.parametrize("version", [17, 13, 12, 11, 4])
def test_session_replicates_to_identical_log(tmp_path: Path, version: int) -> None:
    leader = LeaderSim(open_log(tmp_path / "leader"), epoch=1)
    for n in range(6):
        leader.append([f"v{n}-{i}".encode() for i in range(3)])
    follower = open_log(tmp_path / "follower")
    session = FollowerSession(local_broker_id=1)
    session.add(follower, leader_epoch=1)
    replicate(session, leader, version)
    assert log_bytes(follower) == log_bytes(leader.log)
    assert epochs(follower) == epochs(leader.log)
    assert leader.log.high_watermark == follower.high_watermark == 18
    assert set(leader.fetch_replica_ids) == {1}
    assert leader.state.isr == (0, 1)


def test_session_truncates_divergent_follower_kip101(tmp_path: Path) -> None:
    # The follower led epoch 1 and wrote offsets 6.. that nobody got; broker 0 then led epoch 2.
    shared = open_log(tmp_path / "shared")
    append_batches(shared, 0, 2)
    leader_log, follower = open_log(tmp_path / "leader"), open_log(tmp_path / "follower")
    for target in (leader_log, follower):
        copy_all(shared, target)
        target.update_high_watermark(6)
    append_batches(follower, 1, 2)
    leader = LeaderSim(leader_log, epoch=2)
    leader.append([b"x", b"y"])
    session = FollowerSession(local_broker_id=1)
    session.add(follower, leader_epoch=2)
    replicate(session, leader)
    assert epochs(follower) == [(0, 0), (2, 6)]
    assert log_bytes(follower) == log_bytes(leader.log)


def test_session_truncates_in_two_rounds_kip279(tmp_path: Path) -> None:
    leader_log, follower = open_log(tmp_path / "leader"), open_log(tmp_path / "follower")
    append_batches(leader_log, 0, 1)  # 0-2
    copy_all(leader_log, follower)
    append_batches(leader_log, 2, 1)  # leader: epoch 2 from 3
    append_batches(follower, 1, 1)  # follower: epoch 1 from 3
    append_batches(follower, 3, 1)  # follower: epoch 3 from 6
    leader = LeaderSim(leader_log, epoch=4)  # leader: epoch 4 from 6
    leader.append([b"z"])
    session = FollowerSession(local_broker_id=1)
    session.add(follower, leader_epoch=4)
    now = leader.clock.monotonic_ms()
    request = session.offsets_request(now)
    assert request is not None and request.topics[0].partitions[0].leader_epoch == 3
    session.handle_offsets_response(request, leader.answer_offsets(request), now)
    # The leader answered (2, 6); the follower has no epoch 2: cut to its epoch 1's end, ask again.
    assert follower.log_end_offset == 6 and epochs(follower) == [(0, 0), (1, 3)]
    assert session.partitions[(TOPIC, 0)].status is FetchStatus.TRUNCATING
    replicate(session, leader)
    assert epochs(follower) == epochs(leader.log) == [(0, 0), (2, 3), (4, 6)]
    assert log_bytes(follower) == log_bytes(leader.log)


def test_diverging_epoch_in_fetch_response_truncates(tmp_path: Path) -> None:
    leader_log, follower = open_log(tmp_path / "leader"), open_log(tmp_path / "follower")
    append_batches(leader_log, 0, 2)
    copy_all(leader_log, follower)
    append_batches(follower, 1, 2)  # never replicated
    leader = LeaderSim(leader_log, epoch=2)
    leader.append([b"a"])
    session = FollowerSession(local_broker_id=1)
    entry = session.add(follower, leader_epoch=2)
    entry.status = FetchStatus.FETCHING  # skip OffsetsForLeaderEpoch: truncation on fetch
    prepared = session.fetch_request(17, 0)
    assert prepared is not None
    fetch, sent = prepared
    response = leader.answer_fetch(fetch, sent.version)
    assert response.responses[0].partitions[0].diverging_epoch.end_offset == 6
    assert session.handle_fetch_response(sent, response, 0) == [(TOPIC, 0)]
    assert follower.log_end_offset == 6
    replicate(session, leader)
    assert log_bytes(follower) == log_bytes(leader.log)


def test_errors_back_off_and_fencing_stops(tmp_path: Path) -> None:
    leader = LeaderSim(open_log(tmp_path / "leader"), epoch=3)
    leader.append([b"a"])
    follower = open_log(tmp_path / "follower")
    session = FollowerSession(local_broker_id=1)
    entry = session.add(follower, leader_epoch=3)
    leader.errors = [ErrorCode.NOT_LEADER_OR_FOLLOWER]
    session.truncate_without_epochs(0)
    prepared = session.fetch_request(17, 0)
    assert prepared is not None
    session.handle_fetch_response(prepared[1], leader.answer_fetch(*_args(prepared)), 0)
    assert entry.delayed_until_ms == session.config.fetch_backoff_ms
    assert session.fetch_request(17, 10) is None  # backing off
    assert session.next_ready_ms() == session.config.fetch_backoff_ms
    assert session.fetch_request(17, session.config.fetch_backoff_ms) is not None
    # An epoch older than the leader's: fenced until added again with a newer one.
    session.add(follower, leader_epoch=2)
    entry = session.partitions[(TOPIC, 0)]
    entry.status = FetchStatus.FETCHING
    prepared = session.fetch_request(17, 5_000)
    assert prepared is not None
    session.handle_fetch_response(prepared[1], leader.answer_fetch(*_args(prepared)), 5_000)
    assert entry.status is FetchStatus.FAILED and entry.last_error == ErrorCode.FENCED_LEADER_EPOCH
    assert session.fetch_request(17, 100_000) is None
    session.add(follower, leader_epoch=3)
    replicate(session, leader)
    assert log_bytes(follower) == log_bytes(leader.log)


def _args(prepared: tuple) -> tuple:  # type: ignore[type-arg]
    return prepared[0], prepared[1].version


def test_follower_behind_leader_log_start_starts_over(tmp_path: Path) -> None:
    leader_log = open_log(tmp_path / "leader")
    truncate_fully_and_start_at(leader_log, 100, 0)  # retention took everything before 100
    leader = LeaderSim(leader_log, epoch=1)
    leader.append([b"a", b"b"])
    follower = open_log(tmp_path / "follower")
    session = FollowerSession(local_broker_id=1)
    session.add(follower, leader_epoch=1)
    replicate(session, leader)
    assert follower.log_start_offset == 100
    assert log_bytes(follower) == log_bytes(leader.log)
