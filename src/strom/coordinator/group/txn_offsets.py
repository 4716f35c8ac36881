"""TxnOffsetCommit: offsets committed inside a transaction (exactly-once consume-transform-produce).

The commit's OffsetCommit records are appended to `__consumer_offsets` as a transactional
batch of the producer (its producer id and epoch), exactly as Kafka writes them, and replayed
as *pending* offsets of that producer id. They are invisible to OffsetFetch (or answered
UNSTABLE_OFFSET_COMMIT when the consumer asks for stable offsets) until the transaction
coordinator writes the transaction's marker to this partition: COMMIT makes them the group's
committed offsets, ABORT drops them (`replay_end_marker`, Kafka's replayEndTransactionMarker).
Loading replays batches and markers in log order, so a restart rebuilds the same state.

Validation is Kafka's for transactional commits: a group that does not exist is accepted
(a simple group) only with generation -1; a classic member must be known and of the current
generation, but a rebalance in progress does not refuse the commit; KIP-848 members are checked
by member epoch (ILLEGAL_GENERATION when stale). Whether the `__consumer_offsets` partition is
part of the producer's transaction is checked by the handler with the transaction coordinator
before this runs.
"""

from __future__ import annotations

from strom.coordinator.group.classic_group import ClassicGroup, ClassicState
from strom.coordinator.group.consumer_group import ConsumerGroup
from strom.coordinator.group.context import ShardContext
from strom.coordinator.group.offsets import _member_epoch_error
from strom.coordinator.group.offsets_store import OffsetAndMetadata
from strom.coordinator.group.records import CoordinatorRecord, offset_commit
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.txn_offset_commit_request import TxnOffsetCommitRequest
from strom.protocol.messages.txn_offset_commit_response import (
    TxnOffsetCommitResponse,
    TxnOffsetCommitResponsePartition,
    TxnOffsetCommitResponseTopic,
)

Records = list[CoordinatorRecord]


class TxnOffsets:
    def __init__(self, ctx: ShardContext) -> None:
        self.ctx = ctx

    def _validate(self, request: TxnOffsetCommitRequest) -> ErrorCode | None:
        generation = request.generation_id
        group = self.ctx.groups.get(request.group_id)
        if group is None:
            return None if generation < 0 else ErrorCode.ILLEGAL_GENERATION
        if isinstance(group, ConsumerGroup):
            if generation < 0 and group.is_empty():
                return None
            member = group.members.get(request.member_id)
            if member is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            error = _member_epoch_error(generation, member.member_epoch, classic_member=False)
            # A stale epoch is ILLEGAL_GENERATION for transactional commits (Kafka).
            return ErrorCode.ILLEGAL_GENERATION if error == ErrorCode.STALE_MEMBER_EPOCH else error
        if not isinstance(group, ClassicGroup):
            return ErrorCode.GROUP_ID_NOT_FOUND  # a share group commits no offsets
        if group.is_in(ClassicState.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if generation < 0 and group.is_in(ClassicState.EMPTY):
            return None
        if generation >= 0 or request.member_id or request.group_instance_id is not None:
            error = group.validate_member(request.member_id, request.group_instance_id)
            if error is not None:
                return error
            if generation != group.generation_id:
                return ErrorCode.ILLEGAL_GENERATION
        # Older TxnOffsetCommit versions carry no member: accepted in any group state.
        return None

    def commit(
        self, request: TxnOffsetCommitRequest, version: int
    ) -> tuple[TxnOffsetCommitResponse, Records]:
        error = ErrorCode.INVALID_GROUP_ID if not request.group_id else self._validate(request)
        response = TxnOffsetCommitResponse()
        records: Records = []
        now = self.ctx.now_ms()
        max_bytes = self.ctx.config.offset_metadata_max_bytes
        for topic in request.topics:
            out = TxnOffsetCommitResponseTopic(topic.name)
            response.topics.append(out)
            for p in topic.partitions:
                metadata = p.committed_metadata or ""
                code = error
                if code is None and len(metadata) > max_bytes:
                    code = ErrorCode.OFFSET_METADATA_TOO_LARGE
                out.partitions.append(
                    TxnOffsetCommitResponsePartition(p.partition_index, code or ErrorCode.NONE)
                )
                if code is None:
                    records.append(
                        offset_commit(
                            request.group_id,
                            topic.name,
                            p.partition_index,
                            p.committed_offset,
                            p.committed_leader_epoch,
                            metadata,
                            now,
                        )
                    )
        return response, records

    def replay_pending(
        self, producer_id: int, group_id: str, topic: str, partition: int, value: OffsetAndMetadata
    ) -> None:
        if group_id not in self.ctx.groups:
            self.ctx.groups[group_id] = ClassicGroup(group_id)  # a simple group, as Kafka
        self.ctx.pending_txn_offsets.put(producer_id, (group_id, topic, partition), value)

    def replay_end_marker(self, producer_id: int, commit: bool) -> None:
        pending = self.ctx.pending_txn_offsets.pop_producer(producer_id)
        if not commit:
            return
        for (group_id, topic, partition), value in pending.items():
            if group_id not in self.ctx.groups:
                self.ctx.groups[group_id] = ClassicGroup(group_id)
            self.ctx.offsets.put(group_id, topic, partition, value)
