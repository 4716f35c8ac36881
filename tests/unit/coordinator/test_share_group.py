"""KIP-932 share groups in the group coordinator: ShareGroupHeartbeat, the simple assignor,
session expiry, ShareGroupDescribe, and state rebuilt from the records alone."""

from __future__ import annotations

import uuid

from group_harness import Harness

from strom.coordinator.group.config import GroupConfig
from strom.coordinator.share.heartbeat import simple_assignment
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.consumer_group_heartbeat_request import ConsumerGroupHeartbeatRequest
from strom.protocol.messages.share_group_heartbeat_request import ShareGroupHeartbeatRequest
from strom.protocol.messages.share_group_heartbeat_response import ShareGroupHeartbeatResponse

G = "sg"


def beat(
    h: Harness,
    member: str,
    epoch: int,
    topics: list[str] | None = None,
    group: str = G,
    initialize: bool = True,
) -> ShareGroupHeartbeatResponse:
    """One heartbeat; the share state it asks for is then initialized (the share
    coordinator answered), unless `initialize` is False."""
    request = ShareGroupHeartbeatRequest(
        group_id=group, member_id=member, member_epoch=epoch, subscribed_topic_names=topics
    )
    (response, init), records = h.shard.share_group_heartbeat(request, "client", "/127.0.0.1")
    h.apply(records)
    if init is not None and initialize:
        h.apply(h.shard.share_group_initialized(group, init.topics(), {}))
    return response


def join(h: Harness, member: str, topics: list[str]) -> ShareGroupHeartbeatResponse:
    """Join, then heartbeat once more: partitions whose share state the join initialized are
    assigned at the next heartbeat."""
    first = beat(h, member, 0, topics)
    return beat(h, member, first.member_epoch)


def owned(response: ShareGroupHeartbeatResponse) -> dict[uuid.UUID, list[int]]:
    assert response.assignment is not None
    return {tp.topic_id: tp.partitions for tp in response.assignment.topic_partitions}


def test_more_members_than_partitions_all_get_work() -> None:
    h = Harness()
    tid = h.topics.add("t", 1)
    first = join(h, "m1", ["t"])
    assert first.error_code == 0 and first.member_epoch == 2
    assert owned(first) == {tid: [0]}
    second = beat(h, "m2", 0, ["t"])  # the state exists: assigned at once
    assert second.member_epoch == 3 and owned(second) == {tid: [0]}
    # m1 moves to the new epoch and keeps its (shared) partition.
    again = beat(h, "m1", 2)
    assert again.member_epoch == 3 and owned(again) == {tid: [0]}


def test_partitions_spread_over_members() -> None:
    h = Harness()
    tid = h.topics.add("t", 4)
    join(h, "a", ["t"])
    b = beat(h, "b", 0, ["t"])
    a = beat(h, "a", 2)
    assert beat(h, "b", 3).assignment is None  # unchanged: not sent again
    assert sorted(owned(a)[tid] + owned(b)[tid]) == [0, 1, 2, 3]
    assert set(owned(a)[tid]).isdisjoint(owned(b)[tid])


def test_only_partitions_with_share_state_are_assigned() -> None:
    h = Harness()
    tid = h.topics.add("t", 2)
    first = beat(h, "a", 0, ["t"], initialize=False)
    assert owned(first) == {}
    request = ShareGroupHeartbeatRequest(group_id=G, member_id="a", member_epoch=1)
    (response, init), records = h.shard.share_group_heartbeat(request, "c", "/h")
    h.apply(records)
    assert init is None  # asked for less than a retry interval ago: not asked again
    assert response.assignment is None and response.member_epoch == 1
    state = h.shard.share_group_state_partitions(G)
    assert state is not None and state.initializing[tid].partitions == {0, 1}
    # The share coordinator failed for partition 1, has partition 0.
    h.apply(h.shard.share_group_initialized(G, {tid: frozenset({0})}, {tid: frozenset({1})}))
    (response, init), records = h.shard.share_group_heartbeat(request, "c", "/h")
    h.apply(records)
    assert owned(response) == {tid: [0]} and response.member_epoch == 2
    assert init is not None and init.partitions == ((tid, 1, 0),)  # asked again, from 0
    assert init.state_epoch == 2
    h.apply(h.shard.share_group_initialized(G, init.topics(), {}))
    assert owned(beat(h, "a", 2)) == {tid: [0, 1]}
    # A partition added to the topic is initialized from its start (offset 0).
    h.topics.add("t", 3)
    request = ShareGroupHeartbeatRequest(group_id=G, member_id="a", member_epoch=3)
    (_, init), records = h.shard.share_group_heartbeat(request, "c", "/h")
    h.apply(records)
    assert init is not None and init.partitions == ((tid, 2, 0),)
    # The records rebuild the same state.
    fresh = h.fresh_replay()
    assert fresh.share_group_state_partitions(G) == h.shard.share_group_state_partitions(G)


def test_brand_new_topics_start_where_share_auto_offset_reset_says() -> None:
    h = Harness()
    tid = h.topics.add("t", 2)
    request = ShareGroupHeartbeatRequest(
        group_id=G, member_id="a", member_epoch=0, subscribed_topic_names=["t"]
    )
    (_, init), records = h.shard.share_group_heartbeat(request, "c", "/h")
    assert init is not None and init.partitions == ((tid, 0, -1), (tid, 1, -1))
    assert init.state_epoch == 1
    h.apply(records)
    # Left initializing (the coordinator moved meanwhile): asked again after 30 s.
    h.advance(30_000)
    again = ShareGroupHeartbeatRequest(group_id=G, member_id="a", member_epoch=1)
    (_, init), _ = h.shard.share_group_heartbeat(again, "c", "/h")
    assert init is not None and len(init.partitions) == 2


def test_simple_assignor_covers_every_partition_and_member() -> None:
    t1, t2 = uuid.uuid4(), uuid.uuid4()
    for members in (1, 2, 3, 5, 8):
        subs = {f"m{i}": ("a", "b") if i % 2 else ("a",) for i in range(members)}
        result = simple_assignment(subs, {"a": (t1, [0, 1, 2]), "b": (t2, [0, 1])})
        assert all(result[m].get(t1) for m in subs)  # every member gets work on "a"
        covered = {p for a in result.values() for p in a.get(t1, ())}
        assert covered == {0, 1, 2}
        if any("b" in s for s in subs.values()):
            assert {p for a in result.values() for p in a.get(t2, ())} == {0, 1}
        assert all(t2 not in result[m] for m, s in subs.items() if "b" not in s)


def test_errors() -> None:
    h = Harness(GroupConfig(share_max_size=1))
    h.topics.add("t", 1)
    assert beat(h, "", 0, ["t"]).error_code == ErrorCode.INVALID_REQUEST
    assert beat(h, "m1", 0, None).error_code == ErrorCode.INVALID_REQUEST
    assert beat(h, "m1", 0, ["t"]).error_code == 0
    assert beat(h, "m2", 0, ["t"]).error_code == ErrorCode.GROUP_MAX_SIZE_REACHED
    assert beat(h, "m1", 7).error_code == ErrorCode.FENCED_MEMBER_EPOCH
    assert beat(h, "ghost", 1).error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert beat(h, "m1", 1, group="other").error_code == ErrorCode.GROUP_ID_NOT_FOUND
    # A consumer-protocol member cannot join a share group's id, nor the reverse.
    consumer = ConsumerGroupHeartbeatRequest(
        group_id=G,
        member_id="c1",
        member_epoch=0,
        rebalance_timeout_ms=30_000,
        subscribed_topic_names=["t"],
        topic_partitions=[],
    )
    response, _ = h.shard.consumer_group_heartbeat(consumer, 0)
    assert response.error_code == ErrorCode.GROUP_ID_NOT_FOUND
    h.apply(
        h.shard.consumer_group_heartbeat(
            ConsumerGroupHeartbeatRequest(
                group_id="cg",
                member_id="c1",
                member_epoch=0,
                rebalance_timeout_ms=30_000,
                subscribed_topic_names=["t"],
                topic_partitions=[],
            ),
            0,
        )[1]
    )
    assert beat(h, "m9", 0, ["t"], group="cg").error_code == ErrorCode.GROUP_ID_NOT_FOUND


def test_leave_and_session_expiry_give_partitions_to_the_others() -> None:
    h = Harness(GroupConfig(share_session_timeout_ms=10_000))
    tid = h.topics.add("t", 2)
    join(h, "a", ["t"])
    beat(h, "b", 0, ["t"])
    beat(h, "a", 2)
    left = beat(h, "b", 3, None)
    assert left.error_code == 0
    leave = beat(h, "b", -1)
    assert leave.member_epoch == -1
    a = beat(h, "a", 3)
    assert owned(a) == {tid: [0, 1]}
    beat(h, "c", 0, ["t"])
    # a keeps heartbeating, c goes silent: after the session timeout c is removed.
    for _ in range(4):
        h.advance(3_000)
        a = beat(h, "a", a.member_epoch)
    group = h.shard._ctx.groups[G]
    assert set(group.members) == {"a"}  # type: ignore[union-attr]
    assert owned(a) == {tid: [0, 1]}


def test_describe_and_list_and_replay() -> None:
    h = Harness()
    tid = h.topics.add("t", 2)
    join(h, "a", ["t"])
    (described,) = h.shard.share_group_describe([G])
    assert described.group_state == "Stable" and described.assignor_name == "simple"
    (member,) = described.members
    assert member.member_id == "a" and member.client_id == "client"
    (tp,) = member.assignment.topic_partitions
    assert (tp.topic_id, tp.topic_name, tp.partitions) == (tid, "t", [0, 1])
    listed = h.shard.list_groups([], ["share"])
    assert [(g.group_id, g.group_type, g.group_state) for g in listed] == [(G, "share", "Stable")]
    assert h.shard.list_groups([], ["consumer"]) == []
    # A shard that loads the records alone knows the same group.
    fresh = h.fresh_replay()
    (again,) = fresh.share_group_describe([G])
    assert again == described
    (unknown,) = h.shard.share_group_describe(["nope"])
    assert unknown.error_code == ErrorCode.GROUP_ID_NOT_FOUND


def test_delete_empty_share_group() -> None:
    h = Harness()
    h.topics.add("t", 1)
    beat(h, "a", 0, ["t"])
    results, records = h.shard.delete_groups([G])
    assert results == [(G, ErrorCode.NON_EMPTY_GROUP)] and not records
    beat(h, "a", -1)
    results, records = h.shard.delete_groups([G])
    assert results == [(G, ErrorCode.NONE)]
    assert len([r for r in records if r.key[:2] == b"\x00\x0f"]) == 1  # type 15 deleted too
    h.apply(records)
    assert G not in h.shard._ctx.groups
    assert G not in h.fresh_replay()._ctx.groups
