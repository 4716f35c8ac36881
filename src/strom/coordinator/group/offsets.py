"""OffsetCommit, OffsetFetch, OffsetDelete and the expiry of offsets.

Committed offsets change only when their records are replayed. A commit is checked against
the group first:
- classic group: a member of the current generation (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
  FENCED_INSTANCE_ID otherwise), refused with REBALANCE_IN_PROGRESS while the group waits for
  its assignment; generation -1 without a member id is a "simple" (admin or manual-assignment)
  commit, allowed only while the group is Empty;
- consumer group (KIP-848): the member's current epoch (STALE_MEMBER_EPOCH when older,
  FENCED_MEMBER_EPOCH when newer); epoch -1 only while the group has no members;
- no group: generation -1 creates a simple group (when the record is replayed); otherwise
  ILLEGAL_GENERATION (GROUP_ID_NOT_FOUND from v9).

Expiry (Kafka 2.1+ semantics, offsets.retention.minutes): offsets of an Empty classic group
expire `offsets_retention_ms` after the group became Empty; offsets of a simple group, of a
consumer-protocol group for topics it no longer subscribes to, and v1 commits with an explicit
expiry time expire by their own timestamps. An Empty group whose offsets are all gone is
deleted (a GroupMetadata tombstone).
"""

from __future__ import annotations

from collections.abc import Callable

from strom.coordinator.group.classic_group import CONSUMER_PROTOCOL_TYPE, ClassicGroup, ClassicState
from strom.coordinator.group.consumer_group import ConsumerGroup
from strom.coordinator.group.context import ShardContext
from strom.coordinator.group.offsets_store import OffsetAndMetadata
from strom.coordinator.group.records import (
    CoordinatorRecord,
    group_metadata_tombstone,
    offset_commit,
    offset_commit_tombstone,
)
from strom.coordinator.share.group import ShareGroup
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.offset_commit_request import OffsetCommitRequest
from strom.protocol.messages.offset_commit_response import (
    OffsetCommitResponse,
    OffsetCommitResponsePartition,
    OffsetCommitResponseTopic,
)
from strom.protocol.messages.offset_delete_request import OffsetDeleteRequest
from strom.protocol.messages.offset_delete_response import (
    OffsetDeleteResponse,
    OffsetDeleteResponsePartition,
    OffsetDeleteResponseTopic,
)

Records = list[CoordinatorRecord]
# (topic, partition, committed offset, leader epoch, metadata, error code)
FetchedOffset = tuple[str, int, int, int, str, int]

# OffsetCommit v9 is the first version KIP-848 members must use.
OFFSET_COMMIT_CONSUMER_PROTOCOL_VERSION = 9


def _member_epoch_error(received: int, expected: int, classic_member: bool) -> ErrorCode | None:
    if received > expected:
        return ErrorCode.ILLEGAL_GENERATION if classic_member else ErrorCode.FENCED_MEMBER_EPOCH
    if received < expected:
        return ErrorCode.ILLEGAL_GENERATION if classic_member else ErrorCode.STALE_MEMBER_EPOCH
    return None


class Offsets:
    def __init__(
        self, ctx: ShardContext, touch_classic_member: Callable[[ClassicGroup, str], None]
    ) -> None:
        self.ctx = ctx
        # ClassicGroups.touch_member: a commit keeps a classic member's session alive.
        self._touch = touch_classic_member

    # -- OffsetCommit --------------------------------------------------------------------

    def _validate_commit(self, request: OffsetCommitRequest, version: int) -> ErrorCode | None:
        generation = request.generation_id_or_member_epoch
        group = self.ctx.groups.get(request.group_id)
        if group is None:
            if generation < 0:
                return None
            return (
                ErrorCode.GROUP_ID_NOT_FOUND
                if version >= OFFSET_COMMIT_CONSUMER_PROTOCOL_VERSION
                else ErrorCode.ILLEGAL_GENERATION
            )
        if isinstance(group, ShareGroup):
            return ErrorCode.GROUP_ID_NOT_FOUND
        if isinstance(group, ConsumerGroup):
            if generation < 0 and group.is_empty():
                return None
            member = group.members.get(request.member_id)
            if member is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if version < OFFSET_COMMIT_CONSUMER_PROTOCOL_VERSION:
                return ErrorCode.UNSUPPORTED_VERSION
            return _member_epoch_error(generation, member.member_epoch, classic_member=False)
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
        elif not group.is_in(ClassicState.EMPTY):
            return ErrorCode.UNKNOWN_MEMBER_ID
        if group.is_in(ClassicState.COMPLETING_REBALANCE):
            # The member knows the new generation but has no assignment yet.
            return ErrorCode.REBALANCE_IN_PROGRESS
        return None

    def commit(
        self, request: OffsetCommitRequest, version: int
    ) -> tuple[OffsetCommitResponse, Records]:
        error = (
            ErrorCode.INVALID_GROUP_ID
            if not request.group_id
            else self._validate_commit(request, version)
        )
        response = OffsetCommitResponse()
        if error is not None:
            for topic in request.topics:
                response.topics.append(
                    OffsetCommitResponseTopic(
                        topic.name,
                        [
                            OffsetCommitResponsePartition(p.partition_index, error)
                            for p in topic.partitions
                        ],
                    )
                )
            return response, []
        group = self.ctx.groups.get(request.group_id)
        if isinstance(group, ClassicGroup) and group.is_in(
            ClassicState.STABLE, ClassicState.PREPARING_REBALANCE
        ):
            self._touch(group, request.member_id)
        now = self.ctx.now_ms()
        expire = None if request.retention_time_ms == -1 else now + request.retention_time_ms
        max_bytes = self.ctx.config.offset_metadata_max_bytes
        records: Records = []
        for topic in request.topics:
            out = OffsetCommitResponseTopic(topic.name)
            response.topics.append(out)
            for p in topic.partitions:
                metadata = p.committed_metadata or ""
                if len(metadata) > max_bytes:
                    out.partitions.append(
                        OffsetCommitResponsePartition(
                            p.partition_index, ErrorCode.OFFSET_METADATA_TOO_LARGE
                        )
                    )
                    continue
                out.partitions.append(
                    OffsetCommitResponsePartition(p.partition_index, ErrorCode.NONE)
                )
                records.append(
                    offset_commit(
                        request.group_id,
                        topic.name,
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        metadata,
                        now if p.commit_timestamp == -1 else p.commit_timestamp,
                        expire,
                    )
                )
        return response, records

    # -- OffsetFetch ---------------------------------------------------------------------

    def fetch(
        self,
        group_id: str,
        topics: list[tuple[str, list[int]]] | None,
        member_id: str | None,
        member_epoch: int,
        require_stable: bool = False,
    ) -> tuple[int, list[FetchedOffset]]:
        """Committed offsets of `topics` (all the group's offsets when None).

        Partitions without a commit answer offset -1, leader epoch -1, metadata "".
        A group that does not exist is not an error: every partition answers -1.
        With `require_stable` (OffsetFetch v7+, read_committed consumers), a partition with
        an offset pending in an open transaction answers UNSTABLE_OFFSET_COMMIT: the
        consumer retries until the transaction ends instead of starting from an offset the
        transaction is about to replace.
        """
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID, []
        group = self.ctx.groups.get(group_id)
        visible = True
        if isinstance(group, ConsumerGroup):
            # KIP-848 members fetch with their id and epoch; admin clients send neither.
            if member_id is not None or member_epoch >= 0:
                member = group.members.get(member_id or "")
                if member is None:
                    return ErrorCode.UNKNOWN_MEMBER_ID, []
                error = _member_epoch_error(member_epoch, member.member_epoch, classic_member=False)
                if error is not None:
                    return error, []
        elif group is None or isinstance(group, ShareGroup) or group.is_in(ClassicState.DEAD):
            visible = False
        store = self.ctx.offsets
        pending = self.ctx.pending_txn_offsets
        unstable = require_stable and pending.has_group(group_id)
        rows: list[FetchedOffset] = []
        if topics is None:
            if visible:
                for topic, partition, value in store.iter_group(group_id):
                    if unstable and pending.has((group_id, topic, partition)):
                        rows.append(
                            (topic, partition, -1, -1, "", ErrorCode.UNSTABLE_OFFSET_COMMIT)
                        )
                        continue
                    rows.append(
                        (topic, partition, value.offset, value.leader_epoch, value.metadata, 0)
                    )
            return ErrorCode.NONE, rows
        for topic, partitions in topics:
            for partition in partitions:
                om = store.get(group_id, topic, partition) if visible else None
                if unstable and pending.has((group_id, topic, partition)):
                    rows.append((topic, partition, -1, -1, "", ErrorCode.UNSTABLE_OFFSET_COMMIT))
                elif om is None:
                    rows.append((topic, partition, -1, -1, "", 0))
                else:
                    rows.append((topic, partition, om.offset, om.leader_epoch, om.metadata, 0))
        return ErrorCode.NONE, rows

    # -- OffsetDelete --------------------------------------------------------------------

    def delete(
        self, request: OffsetDeleteRequest, version: int
    ) -> tuple[OffsetDeleteResponse, Records]:
        if not request.group_id:
            return OffsetDeleteResponse(error_code=ErrorCode.INVALID_GROUP_ID), []
        group = self.ctx.groups.get(request.group_id)
        if group is None or isinstance(group, ShareGroup):
            return OffsetDeleteResponse(error_code=ErrorCode.GROUP_ID_NOT_FOUND), []
        if isinstance(group, ClassicGroup):
            if group.is_in(ClassicState.DEAD):
                return OffsetDeleteResponse(error_code=ErrorCode.GROUP_ID_NOT_FOUND), []
            if (
                not group.is_in(ClassicState.EMPTY)
                and group.protocol_type != CONSUMER_PROTOCOL_TYPE
            ):
                return OffsetDeleteResponse(error_code=ErrorCode.NON_EMPTY_GROUP), []
        response = OffsetDeleteResponse()
        records: Records = []
        for topic in request.topics:
            out = OffsetDeleteResponseTopic(topic.name)
            response.topics.append(out)
            subscribed = group.is_subscribed_to_topic(topic.name)
            for p in topic.partitions:
                if subscribed:
                    out.partitions.append(
                        OffsetDeleteResponsePartition(
                            p.partition_index, ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
                        )
                    )
                    continue
                out.partitions.append(
                    OffsetDeleteResponsePartition(p.partition_index, ErrorCode.NONE)
                )
                if (
                    self.ctx.offsets.get(request.group_id, topic.name, p.partition_index)
                    is not None
                ):
                    records.append(
                        offset_commit_tombstone(request.group_id, topic.name, p.partition_index)
                    )
        return response, records

    def delete_all(self, group_id: str) -> Records:
        records = [
            offset_commit_tombstone(group_id, topic, partition)
            for topic, partition, _ in self.ctx.offsets.iter_group(group_id)
        ]
        # Offsets pending in open transactions go too (one tombstone per key is enough).
        for _, topic, partition in sorted(self.ctx.pending_txn_offsets.keys_of_group(group_id)):
            if self.ctx.offsets.get(group_id, topic, partition) is None:
                records.append(offset_commit_tombstone(group_id, topic, partition))
        return records

    # -- replay --------------------------------------------------------------------------

    def replay(
        self, group_id: str, topic: str, partition: int, value: OffsetAndMetadata | None
    ) -> None:
        # A later regular commit or tombstone wins over an offset pending in a transaction.
        self.ctx.pending_txn_offsets.discard_key((group_id, topic, partition))
        if value is None:
            self.ctx.offsets.remove(group_id, topic, partition)
            return
        if group_id not in self.ctx.groups:
            # A commit outside group management: a "simple" group, Empty and typeless.
            self.ctx.groups[group_id] = ClassicGroup(group_id)
        self.ctx.offsets.put(group_id, topic, partition, value)

    # -- expiry --------------------------------------------------------------------------

    def schedule_expiry(self) -> None:
        interval = self.ctx.config.offsets_retention_check_interval_ms
        self.ctx.timers.schedule(("expire-offsets",), self.ctx.now_ms() + interval, self.expire)

    def expire(self) -> Records:
        """Tombstones for expired offsets and for Empty groups left without offsets."""
        records: Records = []
        for group_id in list(self.ctx.groups):
            # A group with offsets pending in an open transaction is kept (as Kafka does).
            if self._expire_group_offsets(
                group_id, records
            ) and not self.ctx.pending_txn_offsets.has_group(group_id):
                group = self.ctx.groups[group_id]
                if isinstance(group, ClassicGroup) and group.is_in(ClassicState.EMPTY):
                    records.append(group_metadata_tombstone(group_id))
                elif isinstance(group, ConsumerGroup) and group.is_empty():
                    records.extend(group.tombstones())
        self.schedule_expiry()
        return records

    def _expire_group_offsets(self, group_id: str, records: Records) -> bool:
        """Append tombstones for the group's expired offsets; True if none remain."""
        store = self.ctx.offsets
        if not store.has_offsets(group_id):
            return True
        group = self.ctx.groups[group_id]
        now = self.ctx.now_ms()
        retention = self.ctx.config.offsets_retention_ms
        # The time each offset's retention counts from; None: this group keeps its offsets.
        base_of: object
        if isinstance(group, ConsumerGroup | ShareGroup):
            base_of = "commit"
        elif group.protocol_type is None:
            base_of = "commit"  # simple group
        elif group.is_in(ClassicState.EMPTY):
            base_of = group.current_state_timestamp_ms
            if base_of is None:
                base_of = "commit"
        elif (
            group.protocol_type == CONSUMER_PROTOCOL_TYPE
            and group.subscribed_topics is not None
            and group.is_in(ClassicState.STABLE)
        ):
            base_of = "commit"
        else:
            return False
        all_expired = True
        for topic, partition, om in store.iter_group(group_id):
            if group.is_subscribed_to_topic(topic):
                all_expired = False
                continue
            if om.expire_timestamp_ms is not None:
                expired = now >= om.expire_timestamp_ms
            else:
                base = om.commit_timestamp_ms if base_of == "commit" else base_of
                assert isinstance(base, int)
                expired = now - base >= retention
            if expired:
                records.append(offset_commit_tombstone(group_id, topic, partition))
            else:
                all_expired = False
        return all_expired
