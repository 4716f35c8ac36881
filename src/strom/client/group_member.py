"""Membership of a classic consumer group (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), with
the range assignor, so that `strom consume --group` shares partitions with any other member of
the group (Kafka's consumers, librdkafka's, kcat's).

Life of a member: JoinGroup (again with the member id the coordinator gives on
MEMBER_ID_REQUIRED); the leader computes the assignment (range: each topic's partitions split in
contiguous runs over the members subscribed to it, sorted by member id) and hands it over in
SyncGroup; every member then heartbeats. A heartbeat answered REBALANCE_IN_PROGRESS (or an
unknown member / illegal generation) asks the owner to commit and join again
(`rejoin_needed`); `commit` carries the generation, so the coordinator refuses commits from a
member that lost its place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Mapping

from strom.client.client import Client
from strom.client.errors import ClientError, KafkaError, check
from strom.client.groups import OFFSET_COMMIT, committed_offsets, decode_assignment
from strom.protocol.errors import ErrorCode, ProtocolError
from strom.protocol.messages.consumer_protocol_assignment import (
    ConsumerProtocolAssignment,
)
from strom.protocol.messages.consumer_protocol_assignment import (
    TopicPartition as AssignedPartitions,
)
from strom.protocol.messages.consumer_protocol_subscription import ConsumerProtocolSubscription
from strom.protocol.messages.heartbeat_request import HeartbeatRequest
from strom.protocol.messages.join_group_request import JoinGroupRequest, JoinGroupRequestProtocol
from strom.protocol.messages.leave_group_request import LeaveGroupRequest, MemberIdentity
from strom.protocol.messages.offset_commit_request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from strom.protocol.messages.sync_group_request import SyncGroupRequest, SyncGroupRequestAssignment
from strom.protocol.primitives import Reader, Writer

JOIN_GROUP = 11
HEARTBEAT = 12
LEAVE_GROUP = 13
SYNC_GROUP = 14

PROTOCOL_TYPE = "consumer"
ASSIGNOR = "range"

TopicPartition = tuple[str, int]

_REJOIN_ERRORS = {
    ErrorCode.REBALANCE_IN_PROGRESS,
    ErrorCode.UNKNOWN_MEMBER_ID,
    ErrorCode.ILLEGAL_GENERATION,
    ErrorCode.FENCED_INSTANCE_ID,
}


def _encode(message: ConsumerProtocolSubscription | ConsumerProtocolAssignment) -> bytes:
    writer = Writer()
    writer.write_int16(0)
    message.write(writer, 0)
    return writer.getvalue()


def _subscribed_topics(metadata: bytes | memoryview) -> list[str]:
    reader = Reader(memoryview(metadata))
    try:
        reader.read_int16()
        return list(ConsumerProtocolSubscription.read(reader, 0).topics)
    except ProtocolError:
        return []


def range_assign(
    subscriptions: Mapping[str, list[str]], partition_counts: Mapping[str, int]
) -> dict[str, list[TopicPartition]]:
    """Kafka's RangeAssignor: per topic, partitions in order split over the subscribed members
    in member-id order, the first `count % members` members taking one more."""
    assignment: dict[str, list[TopicPartition]] = {m: [] for m in subscriptions}
    members_of: dict[str, list[str]] = defaultdict(list)
    for member, topics in subscriptions.items():
        for topic in topics:
            members_of[topic].append(member)
    for topic, members in members_of.items():
        count = partition_counts.get(topic, 0)
        members = sorted(members)
        per, extra = divmod(count, len(members))
        start = 0
        for i, member in enumerate(members):
            n = per + (1 if i < extra else 0)
            assignment[member].extend((topic, p) for p in range(start, start + n))
            start += n
    return assignment


class GroupMember:
    def __init__(
        self,
        client: Client,
        group_id: str,
        topics: list[str],
        *,
        session_timeout_ms: int = 10000,
        rebalance_timeout_ms: int = 30000,
        heartbeat_interval_ms: int = 3000,
    ) -> None:
        self.client = client
        self.group_id = group_id
        self.topics = sorted(set(topics))
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.heartbeat_interval_s = heartbeat_interval_ms / 1000.0
        self.member_id = ""
        self.generation = -1
        self.coordinator: int | None = None
        self.assignment: list[TopicPartition] = []
        self.rejoin_needed = True
        self._heartbeat: asyncio.Task[None] | None = None

    async def join(self) -> list[TopicPartition]:
        """Join (or rejoin) the group; returns this member's partitions."""
        self._stop_heartbeat()
        while True:
            self.coordinator = await self.client.find_coordinator(self.group_id)
            try:
                await self._join_and_sync()
            except KafkaError as exc:
                if exc.code == ErrorCode.UNKNOWN_MEMBER_ID:
                    self.member_id = ""
                elif exc.code not in _REJOIN_ERRORS and not exc.retriable:
                    raise
                await asyncio.sleep(0.1)
                continue
            break
        self.rejoin_needed = False
        self._heartbeat = asyncio.get_running_loop().create_task(self._heartbeats())
        return self.assignment

    async def _join_and_sync(self) -> None:
        subscription = _encode(ConsumerProtocolSubscription(topics=self.topics))
        request = JoinGroupRequest(
            group_id=self.group_id,
            session_timeout_ms=self.session_timeout_ms,
            rebalance_timeout_ms=self.rebalance_timeout_ms,
            member_id=self.member_id,
            group_instance_id=None,
            protocol_type=PROTOCOL_TYPE,
            protocols=[JoinGroupRequestProtocol(ASSIGNOR, subscription)],
            reason=None,
        )
        timeout_s = self.rebalance_timeout_ms / 1000.0 + self.client.request_timeout_s
        response = await self.client.call(
            JOIN_GROUP, request, node_id=self.coordinator, timeout_s=timeout_s
        )
        if response.error_code == ErrorCode.MEMBER_ID_REQUIRED:
            self.member_id = request.member_id = response.member_id
            response = await self.client.call(
                JOIN_GROUP, request, node_id=self.coordinator, timeout_s=timeout_s
            )
        check(response.error_code, f"join group {self.group_id!r}")
        self.member_id = response.member_id
        self.generation = response.generation_id
        assignments: list[SyncGroupRequestAssignment] = []
        if response.leader == self.member_id:
            subscriptions = {m.member_id: _subscribed_topics(m.metadata) for m in response.members}
            wanted = sorted({t for ts in subscriptions.values() for t in ts})
            metadata = await self.client.metadata(wanted)
            counts = {t: len(i.partitions) for t, i in metadata.topics.items() if not i.error_code}
            for member, parts in range_assign(subscriptions, counts).items():
                by_topic: dict[str, list[int]] = defaultdict(list)
                for topic, partition in parts:
                    by_topic[topic].append(partition)
                assignment = ConsumerProtocolAssignment(
                    [AssignedPartitions(t, ps) for t, ps in sorted(by_topic.items())]
                )
                assignments.append(SyncGroupRequestAssignment(member, _encode(assignment)))
        sync = SyncGroupRequest(
            group_id=self.group_id,
            generation_id=self.generation,
            member_id=self.member_id,
            group_instance_id=None,
            protocol_type=PROTOCOL_TYPE,
            protocol_name=ASSIGNOR,
            assignments=assignments,
        )
        synced = await self.client.call(
            SYNC_GROUP, sync, node_id=self.coordinator, timeout_s=timeout_s
        )
        check(synced.error_code, f"sync group {self.group_id!r}")
        self.assignment = decode_assignment(synced.assignment)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            request = HeartbeatRequest(
                group_id=self.group_id,
                generation_id=self.generation,
                member_id=self.member_id,
                group_instance_id=None,
            )
            try:
                response = await self.client.call(HEARTBEAT, request, node_id=self.coordinator)
            except KafkaError:
                self.rejoin_needed = True
                return
            if response.error_code in _REJOIN_ERRORS or response.error_code in (
                ErrorCode.NOT_COORDINATOR,
                ErrorCode.COORDINATOR_NOT_AVAILABLE,
            ):
                self.rejoin_needed = True
                return

    async def committed(self) -> dict[TopicPartition, int]:
        offsets = await committed_offsets(self.client, self.group_id, self.coordinator)
        return {tp: o for tp, o in offsets.items() if tp in set(self.assignment)}

    async def commit(self, positions: Mapping[TopicPartition, int]) -> None:
        """Commit `positions` (the next offsets to read) under this member's generation."""
        if not positions:
            return
        topics: dict[str, list[OffsetCommitRequestPartition]] = defaultdict(list)
        for (topic, partition), offset in sorted(positions.items()):
            topics[topic].append(
                OffsetCommitRequestPartition(
                    partition_index=partition,
                    committed_offset=offset,
                    committed_leader_epoch=-1,
                    committed_metadata="",
                )
            )
        request = OffsetCommitRequest(
            group_id=self.group_id,
            generation_id_or_member_epoch=self.generation,
            member_id=self.member_id,
            group_instance_id=None,
            retention_time_ms=-1,
            topics=[OffsetCommitRequestTopic(t, ps) for t, ps in topics.items()],
        )
        response = await self.client.call(OFFSET_COMMIT, request, node_id=self.coordinator)
        for t in response.topics:
            for p in t.partitions:
                if p.error_code in _REJOIN_ERRORS:
                    self.rejoin_needed = True
                check(p.error_code, f"commit to group {self.group_id!r}")

    async def leave(self) -> None:
        self._stop_heartbeat()
        if not self.member_id or self.coordinator is None:
            return
        request = LeaveGroupRequest(
            group_id=self.group_id,
            member_id=self.member_id,
            members=[MemberIdentity(member_id=self.member_id, group_instance_id=None)],
        )
        with contextlib.suppress(ClientError):
            await self.client.call(LEAVE_GROUP, request, node_id=self.coordinator, timeout_s=5.0)
        self.member_id = ""

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
