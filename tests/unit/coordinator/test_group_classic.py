"""Classic group protocol: JoinGroup / SyncGroup / Heartbeat / LeaveGroup on a manual clock."""

from __future__ import annotations

from group_harness import Harness, group_snapshot, subscription

from strom.coordinator.group import GroupConfig
from strom.coordinator.group.classic_group import ClassicState
from strom.protocol.errors import ErrorCode

G = "g1"


def stable_group(h: Harness, n: int, **kwargs: object) -> list[str]:
    """n members join together (within the initial delay) and sync; returns member ids."""
    ids: list[str] = []
    boxes = []
    for _ in range(n):
        member_id, box = h.join_new(G, **kwargs)
        ids.append(member_id)
        boxes.append(box)
    assert not any(b.done for b in boxes)
    # Members that join during the initial delay extend it once (Kafka's behaviour).
    h.advance(h.config.initial_rebalance_delay_ms * (2 if n > 1 else 1))
    assert all(b.done for b in boxes)
    generation = boxes[0].value.generation_id
    leader = boxes[0].value.leader
    syncs = [
        h.sync(G, m, generation, {x: x.encode() for x in ids} if m == leader else None) for m in ids
    ]
    assert all(s.done and s.value.error_code == 0 for s in syncs)
    assert h.group(G).state is ClassicState.STABLE
    return ids


def test_single_member_join_sync() -> None:
    h = Harness()
    first = h.join(G)
    assert first.value.error_code == ErrorCode.MEMBER_ID_REQUIRED
    member_id = first.value.member_id
    assert member_id.startswith("client-")
    box = h.join(G, member_id)
    assert not box.done  # initial rebalance delay
    h.advance(2999)
    assert not box.done
    h.advance(1)
    r = box.value
    assert r.error_code == 0 and r.generation_id == 1 and r.leader == member_id
    assert r.protocol_name == "range" and [m.member_id for m in r.members] == [member_id]
    sync = h.sync(G, member_id, 1, {member_id: b"assignment"})
    assert sync.value.error_code == 0 and sync.value.assignment == b"assignment"
    assert h.group(G).state is ClassicState.STABLE
    assert group_snapshot(h.fresh_replay()) == group_snapshot(h.shard)


def test_three_members_one_generation_leader_gets_members() -> None:
    h = Harness()
    boxes = [h.join_new(G) for _ in range(3)]
    h.advance(3000)
    assert not boxes[0][1].done  # the later joins extended the initial delay
    h.advance(3000)
    responses = [b.value for _, b in boxes]
    assert {r.generation_id for r in responses} == {1}
    leader = responses[0].leader
    assert leader == boxes[0][0]
    for (member_id, _), r in zip(boxes, responses, strict=True):
        assert len(r.members) == (3 if member_id == leader else 0)
    # Followers that sync first wait for the leader's assignment.
    follower_syncs = [h.sync(G, m, 1) for m, _ in boxes[1:]]
    assert not any(s.done for s in follower_syncs)
    h.sync(G, leader, 1, {m: m.encode() for m, _ in boxes})
    assert [s.value.assignment for s in follower_syncs] == [m.encode() for m, _ in boxes[1:]]


def test_initial_delay_extended_by_new_members() -> None:
    h = Harness()
    _a, box_a = h.join_new(G)
    h.advance(2000)
    _, box_b = h.join_new(G)
    h.advance(1000)  # t=3000: b arrived during the delay, so wait another 3000
    assert not box_a.done
    h.advance(2999)
    assert not box_a.done
    h.advance(1)
    assert box_a.value.generation_id == 1 and box_b.value.generation_id == 1


def test_new_member_triggers_rebalance_existing_members_rejoin() -> None:
    h = Harness()
    a, b = stable_group(h, 2)
    _c, box_c = h.join_new(G)
    assert not box_c.done
    assert h.group(G).state is ClassicState.PREPARING_REBALANCE
    assert h.heartbeat(G, a, 1) == ErrorCode.REBALANCE_IN_PROGRESS
    ra = h.join(G, a)
    assert not ra.done
    rb = h.join(G, b)
    # Everyone rejoined: no waiting for the initial delay on a non-empty group.
    assert ra.value.generation_id == rb.value.generation_id == box_c.value.generation_id == 2
    assert len(ra.value.members) == 3  # a is still the leader


def test_leave_triggers_rebalance() -> None:
    h = Harness()
    a, b = stable_group(h, 2)
    response = h.leave(G, (b, None))
    assert response.error_code == 0 and response.members[0].error_code == 0
    assert h.group(G).state is ClassicState.PREPARING_REBALANCE
    ra = h.join(G, a)
    assert ra.value.generation_id == 2 and [m.member_id for m in ra.value.members] == [a]


def test_leave_v0_and_unknown_member() -> None:
    h = Harness()
    (a,) = stable_group(h, 1)
    assert h.leave(G, ("nobody", None), version=0).error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.leave(G, (a, None), version=0).error_code == 0
    assert h.group(G).state is ClassicState.EMPTY
    assert h.leave("missing", (a, None)).error_code == ErrorCode.UNKNOWN_MEMBER_ID


def test_last_member_leaving_empties_group_and_persists_it() -> None:
    h = Harness()
    (a,) = stable_group(h, 1)
    h.leave(G, (a, None))
    group = h.group(G)
    assert group.state is ClassicState.EMPTY and group.generation_id == 2
    assert group_snapshot(h.fresh_replay()) == group_snapshot(h.shard)


def test_session_expiry_removes_member() -> None:
    h = Harness()
    a, b = stable_group(h, 2, session_timeout_ms=10_000)
    for _ in range(3):
        h.advance(3000)
        assert h.heartbeat(G, a, 1) == 0
    # b never heartbeated: it is removed once its session timeout passes.
    h.advance(3000)
    assert h.heartbeat(G, a, 1) == ErrorCode.REBALANCE_IN_PROGRESS
    assert b not in h.group(G).members
    assert h.group(G).state is ClassicState.PREPARING_REBALANCE
    ra = h.join(G, a)
    assert ra.value.generation_id == 2


def test_rebalance_timeout_removes_member_that_does_not_rejoin() -> None:
    h = Harness()
    a, b = stable_group(h, 2, session_timeout_ms=60_000, rebalance_timeout_ms=20_000)
    c, _box_c = h.join_new(G, session_timeout_ms=60_000, rebalance_timeout_ms=20_000)
    ra = h.join(G, a, session_timeout_ms=60_000, rebalance_timeout_ms=20_000)
    # b keeps heartbeating but never rejoins.
    for _ in range(6):
        h.advance(3000)
        if ra.done:
            break
        assert h.heartbeat(G, b, 1) == ErrorCode.REBALANCE_IN_PROGRESS
    h.advance(3000)
    assert ra.value.generation_id == 2
    assert {m.member_id for m in ra.value.members} == {a, c}
    assert h.heartbeat(G, b, 1) == ErrorCode.UNKNOWN_MEMBER_ID


def test_pending_sync_timeout_removes_members_that_do_not_sync() -> None:
    h = Harness()
    a, box_a = h.join_new(G, rebalance_timeout_ms=10_000)
    b, _box_b = h.join_new(G, rebalance_timeout_ms=10_000)
    h.advance(6000)
    leader = box_a.value.leader
    h.sync(G, leader, 1, {a: b"x", b: b"y"})
    other = b if leader == a else a
    assert h.group(G).state is ClassicState.STABLE
    h.advance(10_000)
    assert other not in h.group(G).members


def test_member_id_required_pending_member_expires() -> None:
    h = Harness()
    first = h.join(G, session_timeout_ms=10_000)
    pending = first.value.member_id
    assert h.group(G).is_pending_member(pending)
    h.advance(10_000)
    assert not h.group(G).is_pending_member(pending)
    # v3 and older get a member id straight away.
    old = h.join("g-old", version=3)
    h.advance(3000)
    assert old.value.error_code == 0 and old.value.member_id


def test_join_validation_errors() -> None:
    h = Harness(GroupConfig(max_size=1))
    assert h.join("").value.error_code == ErrorCode.INVALID_GROUP_ID
    assert h.join(G, session_timeout_ms=10).value.error_code == ErrorCode.INVALID_SESSION_TIMEOUT
    assert h.join(G, "unknown").value.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    (a,) = stable_group(h, 1)
    assert h.join(G).value.error_code == ErrorCode.GROUP_MAX_SIZE_REACHED
    other = h.join(G, a, protocols=[("roundrobin", b"")])
    assert other.value.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert h.join(G, protocol_type="connect").value.error_code in (
        ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
        ErrorCode.GROUP_MAX_SIZE_REACHED,
    )


def test_protocol_selection_by_votes() -> None:
    h = Harness()
    subs = subscription("t")
    _, a = h.join_new(G, protocols=[("cooperative-sticky", subs), ("range", subs)])
    _, b = h.join_new(G, protocols=[("range", subs), ("cooperative-sticky", subs)])
    _, c = h.join_new(G, protocols=[("cooperative-sticky", subs), ("range", subs)])
    h.advance(6000)
    assert a.value.protocol_name == "cooperative-sticky"
    assert b.value.protocol_name == c.value.protocol_name == "cooperative-sticky"


def test_sync_errors() -> None:
    h = Harness()
    a, _b = stable_group(h, 2)
    assert h.sync(G, a, 7).value.error_code == ErrorCode.ILLEGAL_GENERATION
    assert h.sync(G, "x", 1).value.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.sync("nope", a, 1).value.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.sync(G, a, 1).value.assignment == a.encode()  # Stable: current assignment
    h.join_new(G)
    assert h.sync(G, a, 1).value.error_code == ErrorCode.REBALANCE_IN_PROGRESS


def test_heartbeat_errors() -> None:
    h = Harness()
    (a,) = stable_group(h, 1)
    assert h.heartbeat(G, a, 1) == 0
    assert h.heartbeat(G, a, 2) == ErrorCode.ILLEGAL_GENERATION
    assert h.heartbeat(G, "x", 1) == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.heartbeat("", a, 1) == ErrorCode.INVALID_GROUP_ID
    assert h.heartbeat("other", a, 1) == ErrorCode.UNKNOWN_MEMBER_ID


def test_static_member_restart_keeps_assignment_without_rebalance() -> None:
    h = Harness()
    boxes = {i: h.join(G, instance_id=i, client_id=i, version=9) for i in ("i1", "i2")}
    h.advance(6000)
    ids = {i: b.value.member_id for i, b in boxes.items()}
    leader = boxes["i1"].value.leader
    assert leader == ids["i1"]
    h.sync(G, ids["i1"], 1, {ids["i1"]: b"A1", ids["i2"]: b"A2"}, instance_id="i1")
    h.sync(G, ids["i2"], 1, instance_id="i2")
    log_size = len(h.log)
    # i2 restarts: unknown member id, same instance id, same protocols.
    again = h.join(G, instance_id="i2", client_id="i2", version=9)
    r = again.value
    assert r.error_code == 0 and r.generation_id == 1 and r.member_id != ids["i2"]
    assert not r.skip_assignment and r.members == []
    assert h.group(G).state is ClassicState.STABLE
    assert len(h.log) == log_size + 1  # the new member id is persisted
    assert h.sync(G, r.member_id, 1, instance_id="i2").value.assignment == b"A2"
    # The old process is fenced.
    assert h.heartbeat(G, ids["i2"], 1, "i2") == ErrorCode.FENCED_INSTANCE_ID
    assert h.heartbeat(G, r.member_id, 1, "i2") == 0
    # The leader restarts (v9): told to skip the assignment but given the members.
    lead = h.join(G, instance_id="i1", client_id="i1", version=9).value
    assert lead.skip_assignment and lead.leader == lead.member_id and len(lead.members) == 2
    assert group_snapshot(h.fresh_replay()) == group_snapshot(h.shard)


def test_static_member_fenced_and_admin_removal() -> None:
    h = Harness()
    box = h.join(G, instance_id="i1")
    h.advance(3000)
    member_id = box.value.member_id
    fenced = h.join(G, "other-id", instance_id="i1")
    assert fenced.value.error_code in (ErrorCode.FENCED_INSTANCE_ID, ErrorCode.UNKNOWN_MEMBER_ID)
    # kafka-consumer-groups --delete-members: by instance id, no member id.
    response = h.leave(G, ("", "i1"))
    assert response.members[0].error_code == 0
    assert member_id not in h.group(G).members
    assert h.leave(G, ("", "i9")).members[0].error_code == ErrorCode.UNKNOWN_MEMBER_ID


def test_static_member_survives_missed_rejoin() -> None:
    h = Harness()
    a, a_box = h.join_new(G, session_timeout_ms=60_000)
    s = h.join(G, instance_id="s", session_timeout_ms=60_000)
    h.advance(6000)
    sid = s.value.member_id
    h.sync(G, a_box.value.leader, 1, {a: b"", sid: b""})
    h.sync(G, sid, 1, instance_id="s")
    # a rejoins (leader rejoin forces a rebalance); s does not rejoin in time.
    ra = h.join(G, a, session_timeout_ms=60_000)
    h.advance(30_000)
    # Static members are not dropped at the rebalance timeout, only by their session.
    assert sid in h.group(G).members
    assert not ra.done or ra.value.error_code == 0


def test_unload_answers_waiters_with_not_coordinator() -> None:
    h = Harness()
    _, box = h.join_new(G)
    h.shard.unload()
    assert box.value.error_code == ErrorCode.NOT_COORDINATOR


def test_static_leader_restart_before_v9_is_not_told_it_leads() -> None:
    h = Harness()
    box = h.join(G, instance_id="i1", version=5)
    h.advance(3000)
    old_id = box.value.member_id
    h.sync(G, old_id, 1, {old_id: b"A"}, instance_id="i1")
    again = h.join(G, instance_id="i1", version=5).value
    assert again.error_code == 0 and again.leader == old_id != again.member_id
    assert h.group(G).leader_id == again.member_id
    assert h.sync(G, again.member_id, 1, instance_id="i1").value.assignment == b"A"
