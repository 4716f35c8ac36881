"""TxnOffsetCommit in the group coordinator shard: offsets pending per producer id until the
transaction's marker commits them (or drops them on abort); replay rebuilds the same."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from group_harness import Harness

from strom.coordinator.group import GroupCoordinatorShard
from strom.coordinator.group.records import offset_commit
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.txn_offset_commit_request import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestPartition,
    TxnOffsetCommitRequestTopic,
)

PID = 4000


class TxnLog:
    """The `__consumer_offsets` log with batch producer ids and markers, as the runtime keeps it."""

    def __init__(self) -> None:
        self.h = Harness()
        self.entries: list[tuple[str, object, int]] = []

    def commit(
        self, group: str, offsets: dict[tuple[str, int], int], pid: int = PID, **kw: object
    ) -> list[int]:
        by_topic: dict[str, list[TxnOffsetCommitRequestPartition]] = {}
        for (topic, partition), offset in offsets.items():
            by_topic.setdefault(topic, []).append(
                TxnOffsetCommitRequestPartition(partition, offset, -1, "m")
            )
        request = TxnOffsetCommitRequest(
            "txn",
            group,
            pid,
            0,
            topics=[TxnOffsetCommitRequestTopic(t, p) for t, p in by_topic.items()],
            **kw,  # type: ignore[arg-type]
        )
        response, records = self.h.shard.txn_offset_commit(request, 3)
        for record in records:
            self.entries.append(("record", record, pid))
            self.h.shard.replay(record, pid)
        return [p.error_code for t in response.topics for p in t.partitions]

    def marker(self, pid: int, commit: bool) -> None:
        self.entries.append(("marker", commit, pid))
        self.h.shard.replay_end_transaction_marker(pid, commit)

    def fetch(
        self, shard: GroupCoordinatorShard | None = None, stable: bool = False
    ) -> list[tuple[str, int, int, int]]:
        shard = shard or self.h.shard
        _, rows = shard.offset_fetch("g", [("t", [0, 1])], require_stable=stable)
        return [(topic, partition, offset, error) for topic, partition, offset, _, _, error in rows]

    def fresh(self) -> GroupCoordinatorShard:
        shard = Harness().shard
        for kind, item, pid in self.entries:
            if kind == "record":
                shard.replay(item, pid)  # type: ignore[arg-type]
            else:
                shard.replay_end_transaction_marker(pid, bool(item))
        return shard


def test_pending_until_commit_marker() -> None:
    log = TxnLog()
    assert log.commit("g", {("t", 0): 10, ("t", 1): 20}) == [0, 0]
    assert log.fetch() == [("t", 0, -1, 0), ("t", 1, -1, 0)]
    unstable = ErrorCode.UNSTABLE_OFFSET_COMMIT
    assert log.fetch(stable=True) == [("t", 0, -1, unstable), ("t", 1, -1, unstable)]
    assert log.h.shard.has_pending_transaction(PID)
    log.marker(PID, commit=True)
    assert log.fetch(stable=True) == [("t", 0, 10, 0), ("t", 1, 20, 0)]
    assert not log.h.shard.has_pending_transaction(PID)
    assert log.fetch(log.fresh()) == log.fetch()


def test_abort_marker_drops_pending_offsets() -> None:
    log = TxnLog()
    log.commit("g", {("t", 0): 10})
    log.marker(PID, commit=True)
    log.commit("g", {("t", 0): 15})
    log.marker(PID, commit=False)
    assert log.fetch(stable=True)[0] == ("t", 0, 10, 0)
    assert log.fetch(log.fresh()) == log.fetch()


def test_markers_of_other_producers_do_not_touch_pending_offsets() -> None:
    log = TxnLog()
    log.commit("g", {("t", 0): 10}, pid=1)
    log.commit("g", {("t", 1): 20}, pid=2)
    log.marker(2, commit=True)
    log.marker(3, commit=True)  # a marker for a producer without pending offsets: ignored
    assert log.fetch() == [("t", 0, -1, 0), ("t", 1, 20, 0)]
    log.marker(1, commit=True)
    assert log.fetch() == [("t", 0, 10, 0), ("t", 1, 20, 0)]


def test_regular_commit_after_pending_one_wins() -> None:
    log = TxnLog()
    log.commit("g", {("t", 0): 10})
    # a regular OffsetCommit (simple group) replayed between the txn commit and its marker
    record = offset_commit("g", "t", 0, 30, -1, "", log.h.clock.now_ms())
    log.entries.append(("record", record, -1))
    log.h.shard.replay(record)
    log.marker(PID, commit=True)
    assert log.fetch()[0] == ("t", 0, 30, 0)
    assert log.fetch(log.fresh()) == log.fetch()


def test_validation_of_generation_for_unknown_group() -> None:
    log = TxnLog()
    errors = log.commit("nogroup", {("t", 0): 1}, generation_id=3, member_id="m")
    assert errors == [ErrorCode.ILLEGAL_GENERATION]
    assert log.commit("simple", {("t", 0): 1}) == [0]  # generation -1: a simple group
