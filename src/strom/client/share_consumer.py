"""A member of a share group (KIP-932): ShareGroupHeartbeat for membership, ShareFetch for
records, ShareAcknowledge to settle the last ones when leaving.

Membership: the member names itself (a random id, as Kafka's clients do since KIP-1082),
joins with epoch 0 and its subscription, and heartbeats at the interval the coordinator
gives. An answer carrying an assignment replaces the one held; a null assignment leaves it.
Fenced or unknown, it joins again with epoch 0 under the same id. Leaving is epoch -1.

Records: one share session per partition leader. Its first ShareFetch (session epoch 0)
lists every assigned partition the leader leads; later ones (epoch 1, 2, ...) list only the
partitions that join the session, those with acknowledgements to carry, and forget those no
longer assigned. Of the batches a response holds, only the offsets inside its acquired
ranges are this member's; acquired offsets with no record (control records, compacted away)
are acknowledged as gaps (type 0), as Kafka's consumer does. A session the leader no longer
knows starts over at epoch 0; acknowledgements it would have carried are dropped, and their
records come back when their acquisition locks expire.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from strom.client.client import Client
from strom.client.errors import ClientError, KafkaError, check
from strom.client.fetcher import iter_batches
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.share_acknowledge_request import (
    AcknowledgementBatch as AckRequestBatch,
)
from strom.protocol.messages.share_acknowledge_request import (
    AcknowledgePartition,
    AcknowledgeTopic,
    ShareAcknowledgeRequest,
)
from strom.protocol.messages.share_fetch_request import (
    AcknowledgementBatch,
    FetchPartition,
    FetchTopic,
    ForgottenTopic,
    ShareFetchRequest,
)
from strom.protocol.messages.share_fetch_response import PartitionData
from strom.protocol.messages.share_group_heartbeat_request import ShareGroupHeartbeatRequest
from strom.protocol.messages.share_group_heartbeat_response import TopicPartitions
from strom.protocol.records.codec import Record, decode_records
from strom.protocol.records.errors import RecordError

SHARE_GROUP_HEARTBEAT = 76
SHARE_FETCH = 78
SHARE_ACKNOWLEDGE = 79

JOIN_EPOCH = 0
LEAVE_EPOCH = -1
FINAL_SESSION_EPOCH = -1
_UNASSIGNED_INTERVAL_S = 0.5

TopicPartition = tuple[str, int]

_REJOIN = {ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_MEMBER_EPOCH}
_COORDINATOR_MOVED = {ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE}
_SESSION_LOST = {ErrorCode.SHARE_SESSION_NOT_FOUND, ErrorCode.INVALID_SHARE_SESSION_EPOCH}


class AcknowledgeType(enum.IntEnum):
    GAP = 0
    ACCEPT = 1
    RELEASE = 2
    REJECT = 3


@dataclass(slots=True)
class ShareRecord:
    topic: str
    partition: int
    record: Record
    delivery_count: int


def new_member_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class ShareMember:
    """Membership of one share group; `assignment` is what the coordinator gave last, and
    `assigned` is set once it names a partition."""

    def __init__(self, client: Client, group_id: str, topics: Iterable[str]) -> None:
        self.client = client
        self.group_id = group_id
        self.topics = sorted(set(topics))
        self.member_id = new_member_id()
        self.epoch = JOIN_EPOCH
        self.assignment: set[TopicPartition] = set()
        self.assigned = asyncio.Event()
        self.coordinator: int | None = None
        self.interval_s = 1.0
        self._task: asyncio.Task[None] | None = None
        self.failure: ClientError | None = None

    async def join(self) -> None:
        await self._heartbeat()
        self._task = asyncio.get_running_loop().create_task(self._heartbeats())

    async def _heartbeats(self) -> None:
        while True:
            # A new member's partitions come at a later heartbeat, once their share state is
            # initialized: ask sooner than the interval until there are some.
            await asyncio.sleep(self.interval_s if self.assignment else _UNASSIGNED_INTERVAL_S)
            try:
                await self._heartbeat()
            except ClientError as exc:
                self.failure = exc
                self.assigned.set()  # wake a waiter so that it sees the failure
                return

    async def _heartbeat(self) -> None:
        if self.coordinator is None:
            self.coordinator = await self.client.find_coordinator(self.group_id)
        joining = self.epoch == JOIN_EPOCH
        request = ShareGroupHeartbeatRequest(
            group_id=self.group_id,
            member_id=self.member_id,
            member_epoch=self.epoch,
            rack_id=None,
            subscribed_topic_names=self.topics if joining else None,
        )
        response = await self.client.call(SHARE_GROUP_HEARTBEAT, request, node_id=self.coordinator)
        if response.error_code in _COORDINATOR_MOVED:
            self.coordinator = None
            return
        if response.error_code in _REJOIN:
            self.epoch = JOIN_EPOCH
            return
        check(response.error_code, f"share group {self.group_id!r}", response.error_message)
        self.epoch = response.member_epoch
        if response.heartbeat_interval_ms > 0:
            self.interval_s = response.heartbeat_interval_ms / 1000.0
        if response.assignment is not None:
            self.assignment = await self._named(response.assignment.topic_partitions)
            if self.assignment:
                self.assigned.set()

    async def _named(self, topic_partitions: list[TopicPartitions]) -> set[TopicPartition]:
        metadata = self.client.metadata_cache or await self.client.metadata(self.topics)
        names = {info.topic_id: name for name, info in metadata.topics.items()}
        if any(tp.topic_id not in names for tp in topic_partitions):
            metadata = await self.client.metadata(self.topics)
            names = {info.topic_id: name for name, info in metadata.topics.items()}
        return {
            (names[tp.topic_id], p)
            for tp in topic_partitions
            if tp.topic_id in names
            for p in tp.partitions
        }

    async def leave(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.coordinator is None:
            return
        request = ShareGroupHeartbeatRequest(
            group_id=self.group_id, member_id=self.member_id, member_epoch=LEAVE_EPOCH
        )
        with contextlib.suppress(ClientError):
            await self.client.call(
                SHARE_GROUP_HEARTBEAT, request, node_id=self.coordinator, timeout_s=5.0
            )


@dataclass
class _Session:
    """A share session with one leader: the next epoch and the partitions it holds."""

    epoch: int = 0
    partitions: set[TopicPartition] = field(default_factory=set)


class ShareFetcher:
    """Share sessions with the leaders of a member's partitions, and the acknowledgements
    waiting to go with the next request to each."""

    def __init__(
        self,
        member: ShareMember,
        *,
        max_wait_ms: int = 500,
        max_records: int = 500,
        partition_max_bytes: int = 1024 * 1024,
    ) -> None:
        self.member = member
        self.client = member.client
        self.max_wait_ms = max_wait_ms
        self.max_records = max_records
        self.partition_max_bytes = partition_max_bytes
        self.sessions: dict[int, _Session] = {}
        # (topic, partition) -> [offset, type] in the order given
        self.pending: dict[TopicPartition, list[tuple[int, int]]] = defaultdict(list)
        self.errors: list[str] = []

    def acknowledge(self, record: ShareRecord, kind: AcknowledgeType) -> None:
        self.pending[(record.topic, record.partition)].append((record.record.offset, kind))

    async def fetch(self) -> list[ShareRecord]:
        by_leader: dict[int, set[TopicPartition]] = defaultdict(set)
        for tp in self.member.assignment | set(self.pending):
            with contextlib.suppress(KafkaError):
                by_leader[await self.client.leader_for(*tp)].add(tp)
        if not by_leader:
            await asyncio.sleep(self.max_wait_ms / 1000.0)
            return []
        results = await asyncio.gather(
            *(self._fetch_from(leader, tps) for leader, tps in by_leader.items())
        )
        return [r for result in results for r in result]

    def _topic_id(self, topic: str) -> uuid.UUID:
        metadata = self.client.metadata_cache
        assert metadata is not None
        return metadata.topic(topic).topic_id

    async def _fetch_from(self, leader: int, tps: set[TopicPartition]) -> list[ShareRecord]:
        session = self.sessions.setdefault(leader, _Session())
        assigned = tps & self.member.assignment
        listed = (assigned - session.partitions) | {tp for tp in tps if self.pending.get(tp)}
        if session.epoch == 0:
            listed |= assigned
        forgotten = session.partitions - tps
        acks = {tp: self._take_acks(tp) for tp in listed}
        topics: dict[str, list[FetchPartition]] = defaultdict(list)
        for topic, partition in sorted(listed):
            topics[topic].append(
                FetchPartition(
                    partition_index=partition,
                    partition_max_bytes=self.partition_max_bytes,
                    acknowledgement_batches=[
                        AcknowledgementBatch(first, last, [kind])
                        for first, last, kind in acks[(topic, partition)]
                    ],
                )
            )
        gone: dict[str, list[int]] = defaultdict(list)
        for topic, partition in sorted(forgotten):
            gone[topic].append(partition)
        request = ShareFetchRequest(
            group_id=self.member.group_id,
            member_id=self.member.member_id,
            share_session_epoch=session.epoch,
            max_wait_ms=self.max_wait_ms,
            min_bytes=1,
            max_bytes=50 * 1024 * 1024,
            max_records=self.max_records,
            batch_size=self.max_records,
            topics=[FetchTopic(self._topic_id(t), ps) for t, ps in topics.items()],
            forgotten_topics_data=[ForgottenTopic(self._topic_id(t), ps) for t, ps in gone.items()],
        )
        response = await self.client.call(
            SHARE_FETCH,
            request,
            node_id=leader,
            timeout_s=self.max_wait_ms / 1000.0 + self.client.request_timeout_s,
        )
        if response.error_code in _SESSION_LOST:
            self.sessions[leader] = _Session()
            return []
        check(response.error_code, "share fetch", response.error_message)
        session.epoch += 1
        session.partitions = (session.partitions | listed) - forgotten
        names = {self._topic_id(t): t for t, _ in tps}
        out: list[ShareRecord] = []
        stale_metadata = False
        for t in response.responses:
            name = names.get(t.topic_id)
            if name is None:
                continue
            for p in t.partitions:
                if p.acknowledge_error_code != ErrorCode.NONE:
                    self.errors.append(
                        f"acknowledging {name}-{p.partition_index}: "
                        f"{KafkaError(p.acknowledge_error_code, 'share acknowledge')}"
                    )
                if p.error_code != ErrorCode.NONE:
                    error = KafkaError(p.error_code, f"share fetch from {name}-{p.partition_index}")
                    if not error.retriable and p.error_code != ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                        raise error
                    stale_metadata = True
                    continue
                out.extend(self._acquired(name, p))
        if stale_metadata:
            await self.client.metadata(self.member.topics)
        return out

    def _take_acks(self, tp: TopicPartition) -> list[tuple[int, int, int]]:
        """Pending acknowledgements of a partition as (first, last, type) runs of consecutive
        offsets of one type."""
        runs: list[tuple[int, int, int]] = []
        for offset, kind in sorted(self.pending.pop(tp, [])):
            if runs and runs[-1][1] + 1 == offset and runs[-1][2] == kind:
                runs[-1] = (runs[-1][0], offset, kind)
            else:
                runs.append((offset, offset, kind))
        return runs

    def _acquired(self, topic: str, p: PartitionData) -> list[ShareRecord]:
        ranges = [(a.first_offset, a.last_offset, a.delivery_count) for a in p.acquired_records]
        if not ranges:
            return []
        partition = p.partition_index
        data = p.records
        records: dict[int, Record] = {}
        if data:
            view = data if isinstance(data, memoryview) else memoryview(data)
            for header, batch in iter_batches(view):
                if header.is_control:
                    continue
                try:
                    _, decoded = decode_records(batch)
                except RecordError as exc:
                    raise ClientError(
                        f"{topic}-{partition}: unreadable batch at offset {header.base_offset}: "
                        f"{exc}"
                    ) from None
                for record in decoded:
                    records[record.offset] = record
        out: list[ShareRecord] = []
        for first, last, delivery_count in ranges:
            for offset in range(first, last + 1):
                found = records.get(offset)
                if found is None:
                    self.pending[(topic, partition)].append((offset, AcknowledgeType.GAP))
                else:
                    out.append(ShareRecord(topic, partition, found, delivery_count))
        return out

    async def close(self) -> None:
        """Send what is still to be acknowledged and close every session (epoch -1): records
        this member holds unacknowledged go back to the group."""
        for leader, session in list(self.sessions.items()):
            if session.epoch == 0:
                continue
            tps = [tp for tp in self.pending if tp in session.partitions]
            topics: dict[str, list[AcknowledgePartition]] = defaultdict(list)
            for topic, partition in sorted(tps):
                batches = [
                    AckRequestBatch(first, last, [kind])
                    for first, last, kind in self._take_acks((topic, partition))
                ]
                topics[topic].append(AcknowledgePartition(partition, batches))
            request = ShareAcknowledgeRequest(
                group_id=self.member.group_id,
                member_id=self.member.member_id,
                share_session_epoch=FINAL_SESSION_EPOCH,
                topics=[AcknowledgeTopic(self._topic_id(t), ps) for t, ps in topics.items()],
            )
            with contextlib.suppress(ClientError):
                await self.client.call(SHARE_ACKNOWLEDGE, request, node_id=leader, timeout_s=10.0)
        self.sessions.clear()
