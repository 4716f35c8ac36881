"""KIP-848 consumer groups: ConsumerGroupHeartbeat with server-side assignment."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from group_harness import Harness, group_snapshot

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.consumer_group_heartbeat_request import (
    ConsumerGroupHeartbeatRequest,
    TopicPartitions,
)
from strom.protocol.messages.consumer_group_heartbeat_response import (
    ConsumerGroupHeartbeatResponse,
)

G = "cg"


@dataclass
class Client:
    """What a KIP-848 consumer does: heartbeat, adopt the assignment, report what it owns."""

    h: Harness
    topics: list[str]
    instance_id: str | None = None
    assignor: str | None = None
    member_id: str = ""
    epoch: int = 0
    owned: dict[uuid.UUID, set[int]] = field(default_factory=dict)
    last_error: int = 0

    def heartbeat(self, leave: int | None = None) -> ConsumerGroupHeartbeatResponse:
        joining = self.epoch == 0
        request = ConsumerGroupHeartbeatRequest(
            group_id=G,
            member_id=self.member_id,
            member_epoch=self.epoch if leave is None else leave,
            instance_id=self.instance_id,
            rebalance_timeout_ms=30_000 if joining else -1,
            subscribed_topic_names=self.topics if joining else None,
            server_assignor=self.assignor,
            topic_partitions=[
                TopicPartitions(t, sorted(ps)) for t, ps in sorted(self.owned.items()) if ps
            ],
        )
        response, records = self.h.shard.consumer_group_heartbeat(request, 0)
        self.h.apply(records)
        self.last_error = response.error_code
        if response.error_code:
            return response
        self.member_id = response.member_id or self.member_id
        self.epoch = response.member_epoch
        if response.assignment is not None:
            # Revoke what is gone, take what is new.
            self.owned = {
                tp.topic_id: set(tp.partitions) for tp in response.assignment.topic_partitions
            }
        return response

    def count(self) -> int:
        return sum(len(ps) for ps in self.owned.values())


def assert_exclusive(clients: list[Client]) -> None:
    """No partition is owned by two consumers at any instant (client view and server view)."""
    seen: dict[tuple[uuid.UUID, int], str] = {}
    server: dict[tuple[uuid.UUID, int], str] = {}
    for c in clients:
        for t, ps in c.owned.items():
            for p in ps:
                assert (t, p) not in seen, f"{(t, p)} owned by {seen[(t, p)]} and {c.member_id}"
                seen[(t, p)] = c.member_id
    if G in c.h.shard._ctx.groups:
        group = c.h.consumer_group(G)
        for m in group.members.values():
            for a in (m.assigned, m.pending_revocation):
                for t, fps in a.items():
                    for p in fps:
                        assert (t, p) not in server
                        server[(t, p)] = m.member_id


def converge(clients: list[Client], rounds: int = 20) -> int:
    for i in range(rounds):
        for c in clients:
            c.heartbeat()
            assert c.last_error == 0, c.last_error
            assert_exclusive(clients)
        group = clients[0].h.consumer_group(G)
        if group.state.value == "Stable" and all(c.epoch == group.group_epoch for c in clients):
            return i
    raise AssertionError("did not converge")


def test_three_members_converge_without_overlap() -> None:
    h = Harness()
    h.topics.add("t", 12)
    clients = [Client(h, ["t"]) for _ in range(3)]
    for c in clients:
        c.heartbeat()
        assert_exclusive(clients)
    converge(clients)
    assert sorted(c.count() for c in clients) == [4, 4, 4]
    assert group_snapshot(h.fresh_replay()) == group_snapshot(h.shard)


def test_leave_moves_partitions() -> None:
    h = Harness()
    h.topics.add("t", 12)
    clients = [Client(h, ["t"]) for _ in range(3)]
    converge(clients)
    gone = clients.pop()
    response = gone.heartbeat(leave=-1)
    assert response.error_code == 0 and response.member_epoch == -1
    converge(clients)
    assert sorted(c.count() for c in clients) == [6, 6]
    assert group_snapshot(h.fresh_replay()) == group_snapshot(h.shard)


def test_session_expiry_fences_member_and_moves_partitions() -> None:
    h = Harness()
    h.topics.add("t", 12)
    clients = [Client(h, ["t"]) for _ in range(3)]
    converge(clients)
    silent = clients.pop()
    for _ in range(10):  # 50 s: past the 45 s session timeout
        h.advance(5000)
        for c in clients:
            c.heartbeat()
    assert silent.member_id not in h.consumer_group(G).members
    converge(clients)
    assert sorted(c.count() for c in clients) == [6, 6]
    # The fenced member learns it on its next heartbeat.
    assert silent.heartbeat().error_code == ErrorCode.UNKNOWN_MEMBER_ID


def test_new_member_gets_partitions_only_after_revocation() -> None:
    h = Harness()
    t = h.topics.add("t", 4)
    a = Client(h, ["t"])
    converge([a])
    assert a.owned == {t: {0, 1, 2, 3}}
    b = Client(h, ["t"])
    b.heartbeat()
    assert b.count() == 0  # a has not released anything yet
    # a is told to revoke two partitions; until it confirms, b gets none of them.
    a.heartbeat()
    assert a.count() == 2 and a.epoch == 1
    b.heartbeat()
    assert b.count() == 0
    assert h.consumer_group(G).members[b.member_id].state.name == "UNRELEASED_PARTITIONS"
    a.heartbeat()  # reports that it owns only two partitions now
    assert a.epoch == 2
    b.heartbeat()
    assert b.count() == 2
    assert_exclusive([a, b])
    converge([a, b])


def test_heartbeat_validation_errors() -> None:
    h = Harness()
    h.topics.add("t", 3)
    a = Client(h, ["t"])
    a.heartbeat()
    bad = ConsumerGroupHeartbeatRequest(group_id="", member_epoch=0)
    assert h.shard.consumer_group_heartbeat(bad, 0)[0].error_code == ErrorCode.INVALID_REQUEST
    stranger = ConsumerGroupHeartbeatRequest(group_id=G, member_id="zzz", member_epoch=3)
    assert (
        h.shard.consumer_group_heartbeat(stranger, 0)[0].error_code == ErrorCode.UNKNOWN_MEMBER_ID
    )
    fenced = ConsumerGroupHeartbeatRequest(group_id=G, member_id=a.member_id, member_epoch=99)
    assert (
        h.shard.consumer_group_heartbeat(fenced, 0)[0].error_code == ErrorCode.FENCED_MEMBER_EPOCH
    )
    c = Client(h, ["t"], assignor="sticky-please")
    assert c.heartbeat().error_code == ErrorCode.UNSUPPORTED_ASSIGNOR
    missing = ConsumerGroupHeartbeatRequest(group_id="none", member_id="m", member_epoch=1)
    assert (
        h.shard.consumer_group_heartbeat(missing, 0)[0].error_code == ErrorCode.GROUP_ID_NOT_FOUND
    )


def test_offset_commit_member_epochs() -> None:
    h = Harness()
    h.topics.add("t", 2)
    a = Client(h, ["t"])
    converge([a])
    assert h.commit(G, {("t", 0): 5}, generation=a.epoch, member_id=a.member_id, version=9) == {
        ("t", 0): 0
    }
    assert h.commit(G, {("t", 0): 6}, generation=a.epoch - 1, member_id=a.member_id, version=9) == {
        ("t", 0): ErrorCode.STALE_MEMBER_EPOCH
    }
    assert h.commit(G, {("t", 0): 6}, generation=a.epoch + 1, member_id=a.member_id, version=9) == {
        ("t", 0): ErrorCode.FENCED_MEMBER_EPOCH
    }
    assert h.commit(G, {("t", 0): 6}, generation=a.epoch, member_id="x", version=9) == {
        ("t", 0): ErrorCode.UNKNOWN_MEMBER_ID
    }
    assert h.shard.offset_fetch(G, [("t", [0])], a.member_id, a.epoch) == (
        0,
        [("t", 0, 5, 5, "", 0)],
    )
    assert h.shard.offset_fetch(G, [("t", [0])], a.member_id, a.epoch + 1)[0] == (
        ErrorCode.FENCED_MEMBER_EPOCH
    )


def test_static_member_rejoins_with_its_assignment() -> None:
    h = Harness()
    h.topics.add("t", 6)
    a = Client(h, ["t"], instance_id="ia")
    b = Client(h, ["t"], instance_id="ib")
    converge([a, b])
    owned_b = b.owned
    # A second process with b's instance id is refused while b is active.
    intruder = Client(h, ["t"], instance_id="ib")
    assert intruder.heartbeat().error_code == ErrorCode.UNRELEASED_INSTANCE_ID
    # b leaves temporarily (epoch -2), then restarts with a new member id.
    assert b.heartbeat(leave=-2).member_epoch == -2
    restarted = Client(h, ["t"], instance_id="ib")
    restarted.heartbeat()
    assert restarted.member_id != b.member_id
    converge([a, restarted])
    assert restarted.owned == owned_b
    assert group_snapshot(h.fresh_replay()) == group_snapshot(h.shard)


def test_new_topic_partitions_are_assigned() -> None:
    h = Harness()
    h.topics.add("t", 2)
    clients = [Client(h, ["t", "u"]) for _ in range(2)]
    converge(clients)
    assert sum(c.count() for c in clients) == 2
    h.topics.add("u", 4)  # created later: picked up on the next heartbeats
    converge(clients)
    assert sorted(c.count() for c in clients) == [3, 3]


def test_range_assignor_and_describe() -> None:
    h = Harness()
    t = h.topics.add("t", 5)
    clients = [Client(h, ["t"], assignor="range") for _ in range(2)]
    converge(clients)
    (described,) = h.shard.consumer_group_describe([G], 0)
    assert described.assignor_name == "range" and described.group_state == "Stable"
    parts = sorted(sorted(m.assignment.topic_partitions[0].partitions) for m in described.members)
    assert parts == [[0, 1, 2], [3, 4]]
    assert described.members[0].assignment.topic_partitions[0].topic_id == t
    assert described.members[0].assignment.topic_partitions[0].topic_name == "t"
    (missing,) = h.shard.consumer_group_describe(["x"], 0)
    assert missing.error_code == ErrorCode.GROUP_ID_NOT_FOUND
    assert [g.group_type for g in h.shard.list_groups([], [])] == ["consumer"]


def test_delete_consumer_group_and_classic_join_after() -> None:
    h = Harness()
    h.topics.add("t", 2)
    a = Client(h, ["t"])
    converge([a])
    assert h.shard.delete_groups([G])[0] == [(G, ErrorCode.NON_EMPTY_GROUP)]
    a.heartbeat(leave=-1)
    results, records = h.shard.delete_groups([G])
    assert results == [(G, 0)]
    h.apply(records)
    assert G not in h.shard._ctx.groups
    assert group_snapshot(h.fresh_replay()) == group_snapshot(h.shard) == {}


def test_empty_subscription_regex_means_no_regex() -> None:
    # librdkafka 2.16 sends SubscribedTopicRegex="" alongside topic names; Kafka 4 reads that
    # as "no regex". A non-empty regex is still refused (not implemented).
    h = Harness()
    h.topics.add("t", 2)
    names = ConsumerGroupHeartbeatRequest(
        group_id=G,
        member_epoch=0,
        rebalance_timeout_ms=30_000,
        subscribed_topic_names=["t"],
        subscribed_topic_regex="",
        topic_partitions=[],
    )
    response, records = h.shard.consumer_group_heartbeat(names, 1)
    h.apply(records)
    assert response.error_code == ErrorCode.NONE
    assert response.member_epoch > 0
    regex = ConsumerGroupHeartbeatRequest(
        group_id=G,
        member_epoch=0,
        rebalance_timeout_ms=30_000,
        subscribed_topic_regex="t.*",
        topic_partitions=[],
    )
    assert h.shard.consumer_group_heartbeat(regex, 1)[0].error_code == ErrorCode.INVALID_REQUEST
