"""A stand-in for the runtime around a GroupCoordinatorShard: a log, a manual clock, timers.

Every handler's records are appended to `log` and replayed before the next call, as the real
runtime does; `advance()` moves the clock and runs `tick()` while deadlines are due.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from strom.clock import ManualClock
from strom.coordinator.group import CoordinatorRecord, GroupConfig, GroupCoordinatorShard
from strom.coordinator.group.classic_group import ClassicGroup
from strom.coordinator.group.consumer_group import ConsumerGroup
from strom.protocol.messages.consumer_protocol_subscription import ConsumerProtocolSubscription
from strom.protocol.messages.heartbeat_request import HeartbeatRequest
from strom.protocol.messages.join_group_request import JoinGroupRequest, JoinGroupRequestProtocol
from strom.protocol.messages.join_group_response import JoinGroupResponse
from strom.protocol.messages.leave_group_request import LeaveGroupRequest, MemberIdentity
from strom.protocol.messages.offset_commit_request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from strom.protocol.messages.sync_group_request import SyncGroupRequest, SyncGroupRequestAssignment
from strom.protocol.messages.sync_group_response import SyncGroupResponse

T = TypeVar("T")


class Box(Generic[T]):
    """Receives a response through a `respond` callback; fails if answered twice."""

    def __init__(self) -> None:
        self.calls: list[T] = []

    def __call__(self, value: T) -> None:
        assert not self.calls, f"responded twice: {self.calls[0]} then {value}"
        self.calls.append(value)

    @property
    def done(self) -> bool:
        return bool(self.calls)

    @property
    def value(self) -> T:
        assert self.calls, "no response yet"
        return self.calls[0]


@dataclass
class FakeTopics:
    counts: dict[str, int] = field(default_factory=dict)
    ids: dict[str, uuid.UUID] = field(default_factory=dict)

    def add(self, name: str, partitions: int) -> uuid.UUID:
        self.counts[name] = partitions
        return self.ids.setdefault(name, uuid.uuid5(uuid.NAMESPACE_DNS, name))

    def partitions_of(self, topic: str) -> int | None:
        return self.counts.get(topic)

    def topic_id_of(self, topic: str) -> uuid.UUID | None:
        return self.ids.get(topic) if topic in self.counts else None


def subscription(*topics: str) -> bytes:
    """ConsumerProtocolSubscription v1 bytes (version prefix + struct), as clients send."""
    return b"\x00\x01" + ConsumerProtocolSubscription(topics=list(topics)).encode(1)


class Harness:
    def __init__(self, config: GroupConfig | None = None) -> None:
        self.clock = ManualClock()
        self.topics = FakeTopics()
        self.config = config or GroupConfig()
        self.shard = GroupCoordinatorShard(0, self.config, self.clock, self.topics)
        self.log: list[CoordinatorRecord] = []

    # -- runtime ---------------------------------------------------------------------------

    def apply(self, records: list[CoordinatorRecord]) -> None:
        for record in records:
            self.log.append(record)
            self.shard.replay(record)

    def run_timers(self) -> None:
        for _ in range(10_000):
            deadline = self.shard.next_deadline_ms()
            if deadline is None or deadline > self.clock.now_ms():
                return
            self.apply(self.shard.tick())
        raise AssertionError("timers keep firing")

    def advance(self, ms: int) -> None:
        """Move time forward, firing each timer at its deadline on the way."""
        end = self.clock.now_ms() + ms
        self.run_timers()
        while self.clock.now_ms() < end:
            deadline = self.shard.next_deadline_ms()
            step_to = end if deadline is None else max(min(deadline, end), self.clock.now_ms())
            self.clock.advance(step_to - self.clock.now_ms())
            self.run_timers()

    def fresh_replay(self) -> GroupCoordinatorShard:
        """A new shard loaded from this harness's log."""
        shard = GroupCoordinatorShard(0, self.config, self.clock, self.topics)
        for record in self.log:
            shard.replay(record)
        return shard

    # -- classic requests ------------------------------------------------------------------

    def join(
        self,
        group: str,
        member_id: str = "",
        *,
        version: int = 5,
        protocols: list[tuple[str, bytes]] | None = None,
        session_timeout_ms: int = 10_000,
        rebalance_timeout_ms: int = 30_000,
        instance_id: str | None = None,
        client_id: str = "client",
        protocol_type: str = "consumer",
    ) -> Box[JoinGroupResponse]:
        box: Box[JoinGroupResponse] = Box()
        request = JoinGroupRequest(
            group_id=group,
            session_timeout_ms=session_timeout_ms,
            rebalance_timeout_ms=rebalance_timeout_ms,
            member_id=member_id,
            group_instance_id=instance_id,
            protocol_type=protocol_type,
            protocols=[
                JoinGroupRequestProtocol(n, m)
                for n, m in (protocols or [("range", subscription("t"))])
            ],
        )
        self.apply(self.shard.join_group(request, version, client_id, "/127.0.0.1", box))
        return box

    def join_new(self, group: str, **kwargs: Any) -> tuple[str, Box[JoinGroupResponse]]:
        """JoinGroup v4+: get a member id (MEMBER_ID_REQUIRED), then join with it."""
        first = self.join(group, **kwargs)
        member_id = first.value.member_id
        return member_id, self.join(group, member_id, **kwargs)

    def sync(
        self,
        group: str,
        member_id: str,
        generation: int,
        assignments: dict[str, bytes] | None = None,
        *,
        instance_id: str | None = None,
        version: int = 3,
    ) -> Box[SyncGroupResponse]:
        box: Box[SyncGroupResponse] = Box()
        request = SyncGroupRequest(
            group_id=group,
            generation_id=generation,
            member_id=member_id,
            group_instance_id=instance_id,
            assignments=[SyncGroupRequestAssignment(m, a) for m, a in (assignments or {}).items()],
        )
        self.apply(self.shard.sync_group(request, version, box))
        return box

    def heartbeat(
        self, group: str, member_id: str, generation: int, instance_id: str | None = None
    ) -> int:
        response, records = self.shard.heartbeat(
            HeartbeatRequest(group, generation, member_id, instance_id), 3
        )
        self.apply(records)
        return response.error_code

    def leave(self, group: str, *members: tuple[str, str | None], version: int = 3) -> Any:
        request = LeaveGroupRequest(
            group_id=group,
            member_id=members[0][0] if version < 3 else "",
            members=[MemberIdentity(m, i) for m, i in members],
        )
        response, records = self.shard.leave_group(request, version)
        self.apply(records)
        return response

    def commit(
        self,
        group: str,
        offsets: dict[tuple[str, int], int],
        *,
        generation: int = -1,
        member_id: str = "",
        instance_id: str | None = None,
        metadata: str = "",
        version: int = 8,
    ) -> dict[tuple[str, int], int]:
        topics: dict[str, list[OffsetCommitRequestPartition]] = {}
        for (topic, partition), offset in offsets.items():
            topics.setdefault(topic, []).append(
                OffsetCommitRequestPartition(partition, offset, 5, -1, metadata)
            )
        request = OffsetCommitRequest(
            group_id=group,
            generation_id_or_member_epoch=generation,
            member_id=member_id,
            group_instance_id=instance_id,
            topics=[OffsetCommitRequestTopic(t, ps) for t, ps in topics.items()],
        )
        response, records = self.shard.offset_commit(request, version)
        self.apply(records)
        return {
            (t.name, p.partition_index): p.error_code for t in response.topics for p in t.partitions
        }

    def committed(self, group: str, shard: GroupCoordinatorShard | None = None) -> dict[Any, Any]:
        error, rows = (shard or self.shard).offset_fetch(group, None, None, -1)
        assert error == 0
        return {(t, p): (o, e, m) for t, p, o, e, m, _ in rows}

    def group(self, group_id: str) -> ClassicGroup:
        group = self.shard._ctx.groups[group_id]
        assert isinstance(group, ClassicGroup)
        return group

    def consumer_group(self, group_id: str) -> ConsumerGroup:
        group = self.shard._ctx.groups[group_id]
        assert isinstance(group, ConsumerGroup)
        return group


def group_snapshot(shard: GroupCoordinatorShard) -> dict[str, Any]:
    """What must survive a reload: per group, its persisted metadata and offsets."""
    out: dict[str, Any] = {}
    for gid, group in sorted(shard._ctx.groups.items()):
        _error, rows = shard.offset_fetch(gid, None, None, -1)
        offsets = sorted(rows)
        if isinstance(group, ClassicGroup):
            members = sorted(
                (m.member_id, m.group_instance_id, m.client_id, m.session_timeout_ms, m.assignment)
                for m in group.members.values()
            )
            out[gid] = (
                "classic",
                group.state.value,
                group.generation_id,
                group.protocol_type,
                group.protocol_name,
                group.leader_id,
                members,
                offsets,
            )
        else:
            cmembers = sorted(
                (
                    m.member_id,
                    m.instance_id,
                    m.member_epoch,
                    m.previous_member_epoch,
                    int(m.state),
                    sorted((str(t), sorted(ps)) for t, ps in m.assigned.items()),
                    sorted((str(t), sorted(ps)) for t, ps in m.pending_revocation.items()),
                    m.subscribed_topic_names,
                )
                for m in group.members.values()
            )
            target = sorted(
                (mid, sorted((str(t), sorted(ps)) for t, ps in a.items()))
                for mid, a in group.target.items()
            )
            out[gid] = (
                "consumer",
                group.group_epoch,
                group.assignment_epoch,
                cmembers,
                target,
                sorted(group.subscription_metadata),
                sorted(group.partition_epochs.items()),
                offsets,
            )
    return out
