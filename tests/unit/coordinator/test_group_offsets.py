"""Offsets (commit, fetch, delete, expiry), DeleteGroups, ListGroups/DescribeGroups, replay."""

from __future__ import annotations

from group_harness import Harness, group_snapshot
from test_group_classic import G, stable_group

from strom.coordinator.group import GroupConfig
from strom.coordinator.group.records import decode, offset_commit
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.offset_delete_request import (
    OffsetDeleteRequest,
    OffsetDeleteRequestPartition,
    OffsetDeleteRequestTopic,
)


def test_simple_commit_creates_group_and_fetch() -> None:
    h = Harness()
    assert h.commit("simple", {("t", 0): 10, ("t", 1): 20}, metadata="m") == {
        ("t", 0): 0,
        ("t", 1): 0,
    }
    error, rows = h.shard.offset_fetch("simple", [("t", [0, 1, 2])])
    assert error == 0
    assert rows == [("t", 0, 10, 5, "m", 0), ("t", 1, 20, 5, "m", 0), ("t", 2, -1, -1, "", 0)]
    # A group that does not exist is not an error.
    assert h.shard.offset_fetch("nobody", [("t", [0])]) == (0, [("t", 0, -1, -1, "", 0)])
    assert h.shard.offset_fetch("nobody", None) == (0, [])
    listed = h.shard.list_groups([], [])
    assert [(g.group_id, g.protocol_type, g.group_state) for g in listed] == [
        ("simple", "", "Empty")
    ]


def test_commit_generation_checks() -> None:
    h = Harness()
    a, b = stable_group(h, 2)
    ok = h.commit(G, {("t", 0): 1}, generation=1, member_id=a)
    assert ok == {("t", 0): 0}
    assert h.commit(G, {("t", 0): 2}, generation=2, member_id=a) == {
        ("t", 0): ErrorCode.ILLEGAL_GENERATION
    }
    assert h.commit(G, {("t", 0): 2}, generation=1, member_id="x") == {
        ("t", 0): ErrorCode.UNKNOWN_MEMBER_ID
    }
    # A simple commit to a group with members is refused.
    assert h.commit(G, {("t", 0): 2}) == {("t", 0): ErrorCode.UNKNOWN_MEMBER_ID}
    # No group and a generation: ILLEGAL_GENERATION (v8), GROUP_ID_NOT_FOUND (v9).
    assert h.commit("none", {("t", 0): 1}, generation=3, member_id="m") == {
        ("t", 0): ErrorCode.ILLEGAL_GENERATION
    }
    assert h.commit("none", {("t", 0): 1}, generation=3, member_id="m", version=9) == {
        ("t", 0): ErrorCode.GROUP_ID_NOT_FOUND
    }
    # While the group waits for the leader's assignment: REBALANCE_IN_PROGRESS.
    c, box_c = h.join_new(G)
    ra, rb = h.join(G, a), h.join(G, b)
    assert box_c.value.generation_id == 2 and ra.done and rb.done
    assert h.commit(G, {("t", 0): 3}, generation=2, member_id=a) == {
        ("t", 0): ErrorCode.REBALANCE_IN_PROGRESS
    }
    big = "x" * (h.config.offset_metadata_max_bytes + 1)
    h.sync(G, a, 2, {a: b"", b: b"", c: b""})
    assert h.commit(G, {("t", 0): 4}, generation=2, member_id=a, metadata=big) == {
        ("t", 0): ErrorCode.OFFSET_METADATA_TOO_LARGE
    }
    assert h.committed(G) == {("t", 0): (1, 5, "")}


def test_offset_delete() -> None:
    h = Harness()
    (a,) = stable_group(h, 1)
    h.commit(G, {("t", 0): 1, ("other", 0): 7}, generation=1, member_id=a)

    def delete(topic: str) -> tuple[int, list[int]]:
        request = OffsetDeleteRequest(
            G, [OffsetDeleteRequestTopic(topic, [OffsetDeleteRequestPartition(0)])]
        )
        response, records = h.shard.offset_delete(request, 0)
        h.apply(records)
        return response.error_code, [p.error_code for t in response.topics for p in t.partitions]

    # The group subscribes to "t" (see the subscription in the member metadata).
    assert delete("t") == (0, [ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC])
    assert delete("other") == (0, [0])
    assert h.committed(G) == {("t", 0): (1, 5, "")}
    request = OffsetDeleteRequest("missing", [])
    assert h.shard.offset_delete(request, 0)[0].error_code == ErrorCode.GROUP_ID_NOT_FOUND


def test_delete_groups() -> None:
    h = Harness()
    (a,) = stable_group(h, 1)
    h.commit(G, {("t", 0): 1}, generation=1, member_id=a)
    h.commit("simple", {("t", 0): 5})
    results, records = h.shard.delete_groups([G, "simple", "missing", ""])
    assert results == [
        (G, ErrorCode.NON_EMPTY_GROUP),
        ("simple", 0),
        ("missing", ErrorCode.GROUP_ID_NOT_FOUND),
        ("", ErrorCode.INVALID_GROUP_ID),
    ]
    assert all(r.value is None for r in records)  # tombstones only
    h.apply(records)
    assert h.shard.offset_fetch("simple", [("t", [0])]) == (0, [("t", 0, -1, -1, "", 0)])
    h.leave(G, (a, None))
    results, records = h.shard.delete_groups([G])
    assert results == [(G, 0)]
    h.apply(records)
    assert h.shard.list_groups([], []) == []
    assert group_snapshot(h.fresh_replay()) == group_snapshot(h.shard) == {}


def test_offsets_of_empty_group_expire_after_retention() -> None:
    day = 24 * 3600 * 1000
    h = Harness(GroupConfig(offsets_retention_ms=day, offsets_retention_check_interval_ms=60_000))
    (a,) = stable_group(h, 1)
    h.commit(G, {("t", 0): 1}, generation=1, member_id=a)
    h.advance(2 * day)
    # The member stopped heartbeating after 10 s: the group became Empty then, and the
    # offsets expire one retention period later.
    assert h.committed(G) == {}
    assert G not in h.shard._ctx.groups
    assert group_snapshot(h.fresh_replay()) == group_snapshot(h.shard)


def test_offsets_kept_while_group_is_active_and_before_retention() -> None:
    day = 24 * 3600 * 1000
    h = Harness(GroupConfig(offsets_retention_ms=day, offsets_retention_check_interval_ms=60_000))
    (a,) = stable_group(h, 1, session_timeout_ms=60_000)
    h.commit(G, {("t", 0): 1}, generation=1, member_id=a)
    for _ in range(2 * 24 * 120):  # two days of heartbeats every 30 s
        h.advance(30_000)
        assert h.heartbeat(G, a, 1) == 0
    assert h.committed(G) == {("t", 0): (1, 5, "")}
    h.leave(G, (a, None))
    h.advance(day - 60_000)
    assert h.committed(G) == {("t", 0): (1, 5, "")}
    h.advance(120_000)
    assert h.committed(G) == {}


def test_simple_group_offsets_expire_by_commit_time() -> None:
    h = Harness(
        GroupConfig(offsets_retention_ms=100_000, offsets_retention_check_interval_ms=10_000)
    )
    h.commit("s", {("t", 0): 1})
    h.advance(50_000)
    h.commit("s", {("t", 1): 2})
    h.advance(60_000)
    assert h.committed("s") == {("t", 1): (2, 5, "")}
    h.advance(60_000)
    assert h.committed("s") == {}
    assert "s" not in h.shard._ctx.groups


def test_describe_and_list_groups() -> None:
    h = Harness()
    a, b = stable_group(h, 2)
    (d,) = h.shard.describe_groups([G], 5)
    assert (
        d.group_state == "Stable" and d.protocol_type == "consumer" and d.protocol_data == "range"
    )
    assert {m.member_id: m.member_assignment for m in d.members} == {a: a.encode(), b: b.encode()}
    (dead,) = h.shard.describe_groups(["nope"], 5)
    assert dead.group_state == "Dead" and dead.error_code == 0
    assert [g.group_id for g in h.shard.list_groups(["stable"], [])] == [G]
    assert h.shard.list_groups(["empty"], []) == []
    assert [g.group_type for g in h.shard.list_groups([], ["Classic"])] == ["classic"]
    assert h.shard.list_groups([], ["consumer"]) == []


def test_records_use_kafka_versions() -> None:
    h = Harness()
    (a,) = stable_group(h, 1)
    h.commit(G, {("t", 0): 1}, generation=1, member_id=a)
    versions = {(r.key[:2], r.value[:2] if r.value else None) for r in h.log}
    assert (b"\x00\x02", b"\x00\x03") in versions  # GroupMetadataValue v3
    assert (b"\x00\x01", b"\x00\x03") in versions  # OffsetCommitValue v3
    # A commit with an explicit retention time is written at v1 (with its expiry).
    record = offset_commit("g", "t", 0, 1, 3, "", 1000, 5000)
    decoded = decode(record)
    assert decoded is not None and decoded.value is not None and decoded.value_version == 1
    assert decoded.value.expire_timestamp == 5000


def test_replay_rebuilds_classic_groups_and_offsets() -> None:
    h = Harness()
    a, _b = stable_group(h, 2)
    h.commit(G, {("t", 0): 11, ("t", 1): 12}, generation=1, member_id=a)
    h.commit("simple", {("x", 3): 4})
    fresh = h.fresh_replay()
    assert group_snapshot(fresh) == group_snapshot(h.shard)
    # The loaded members must heartbeat within their session timeout, as after a restart.
    (d,) = fresh.describe_groups([G], 5)
    assert d.group_state == "Stable" and len(d.members) == 2
