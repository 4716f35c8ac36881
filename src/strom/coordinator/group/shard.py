"""GroupCoordinatorShard: the group coordinator for one `__consumer_offsets` partition.

The runtime (sockets, the log, timers) drives a shard with four kinds of calls:
- request handlers, which return the records to append and answer either by return value or
  through a `respond` callback (JoinGroup and SyncGroup may wait for other members);
- `replay(record)`, called for each returned record once it is appended, in order, before the
  next call, and for every record of the partition when it is loaded;
- `tick()`, whenever `next_deadline_ms()` has passed (call it again while the deadline stays in
  the past: it returns after the first timer that produced records, so that those records are
  replayed before the next timer looks at the state);
- `unload()`, when the partition moves away.

Responses given during a call (returned, or passed to `respond` while the call runs) describe
the state after that call's records: the runtime should send them once the records are
appended, as Kafka does.

How state changes: committed offsets and consumer groups (KIP-848) change only in `replay`.
Classic groups keep their membership (parked requests, rebalance state) in memory and change
it in the handlers, as Kafka's coordinator does; their GroupMetadata records are the durable
summary that loading rebuilds the group from, and replay ignores the ones this shard itself
produced (see `ShardContext.own_records`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from strom.clock import Clock
from strom.coordinator.group import admin
from strom.coordinator.group.classic import ClassicGroups
from strom.coordinator.group.config import GroupConfig, TopicsView
from strom.coordinator.group.consumer import ConsumerGroups
from strom.coordinator.group.context import ShardContext
from strom.coordinator.group.generated.offset_commit_key import OffsetCommitKey
from strom.coordinator.group.offsets import FetchedOffset, Offsets
from strom.coordinator.group.offsets_store import OffsetAndMetadata
from strom.coordinator.group.records import (
    GROUP_METADATA_KEY_VERSION,
    SHARE_GROUP_RECORD_TYPES,
    CoordinatorRecord,
    decode,
)
from strom.coordinator.group.txn_offsets import TxnOffsets
from strom.coordinator.share import initialization
from strom.coordinator.share.group import ShareGroup
from strom.coordinator.share.heartbeat import HeartbeatResult, ShareGroups, describe_share_groups
from strom.coordinator.share.state_partitions import Initialization, StatePartitions
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.consumer_group_describe_response import (
    DescribedGroup as ConsumerDescribedGroup,
)
from strom.protocol.messages.consumer_group_heartbeat_request import ConsumerGroupHeartbeatRequest
from strom.protocol.messages.consumer_group_heartbeat_response import (
    ConsumerGroupHeartbeatResponse,
)
from strom.protocol.messages.describe_groups_response import DescribedGroup
from strom.protocol.messages.heartbeat_request import HeartbeatRequest
from strom.protocol.messages.heartbeat_response import HeartbeatResponse
from strom.protocol.messages.join_group_request import JoinGroupRequest
from strom.protocol.messages.join_group_response import JoinGroupResponse
from strom.protocol.messages.leave_group_request import LeaveGroupRequest
from strom.protocol.messages.leave_group_response import LeaveGroupResponse
from strom.protocol.messages.list_groups_response import ListedGroup
from strom.protocol.messages.offset_commit_request import OffsetCommitRequest
from strom.protocol.messages.offset_commit_response import OffsetCommitResponse
from strom.protocol.messages.offset_delete_request import OffsetDeleteRequest
from strom.protocol.messages.offset_delete_response import OffsetDeleteResponse
from strom.protocol.messages.share_group_describe_response import (
    DescribedGroup as ShareDescribedGroup,
)
from strom.protocol.messages.share_group_heartbeat_request import ShareGroupHeartbeatRequest
from strom.protocol.messages.sync_group_request import SyncGroupRequest
from strom.protocol.messages.sync_group_response import SyncGroupResponse
from strom.protocol.messages.txn_offset_commit_request import TxnOffsetCommitRequest
from strom.protocol.messages.txn_offset_commit_response import TxnOffsetCommitResponse

__all__ = ["GroupCoordinatorShard"]

Records = list[CoordinatorRecord]


class GroupCoordinatorShard:
    """The state of one `__consumer_offsets` partition."""

    def __init__(
        self, partition: int, config: GroupConfig, clock: Clock, topics: TopicsView
    ) -> None:
        self._ctx = ShardContext(partition, config, clock, topics)
        self._classic = ClassicGroups(self._ctx)
        self._consumer = ConsumerGroups(self._ctx)
        self._offsets = Offsets(self._ctx, self._classic.touch_member)
        self._txn_offsets = TxnOffsets(self._ctx)
        self._share = ShareGroups(self._ctx)
        self._offsets.schedule_expiry()

    @property
    def partition(self) -> int:
        return self._ctx.partition

    # -- replay --------------------------------------------------------------------------

    def replay(self, record: CoordinatorRecord, producer_id: int = -1) -> None:
        """Apply one record; `producer_id` is that of its batch when the batch is
        transactional (a TxnOffsetCommit, pending until its transaction's marker)."""
        decoded = decode(record)
        if decoded is None:
            return  # a record type Strom does not use (share groups, newer Kafka)
        key = decoded.key
        if isinstance(key, OffsetCommitKey):
            value = decoded.value
            om = None
            if value is not None:
                om = OffsetAndMetadata(
                    offset=value.offset,
                    leader_epoch=value.leader_epoch if decoded.value_version >= 3 else -1,
                    metadata=value.metadata,
                    commit_timestamp_ms=value.commit_timestamp,
                    expire_timestamp_ms=(
                        value.expire_timestamp
                        if decoded.value_version == 1 and value.expire_timestamp != -1
                        else None
                    ),
                )
            if producer_id >= 0 and om is not None:
                self._txn_offsets.replay_pending(
                    producer_id, key.group, key.topic, key.partition, om
                )
                return
            self._offsets.replay(key.group, key.topic, key.partition, om)
        elif decoded.key_version == GROUP_METADATA_KEY_VERSION:
            own = self._ctx.own_records
            if own[record] > 0:
                own[record] -= 1
                if own[record] == 0:
                    del own[record]
                return
            self._classic.replay(key.group, decoded.value)
        elif decoded.key_version in SHARE_GROUP_RECORD_TYPES:
            self._share.replay(decoded)
        else:
            self._consumer.replay(decoded)

    # -- classic protocol ----------------------------------------------------------------

    def join_group(
        self,
        request: JoinGroupRequest,
        version: int,
        client_id: str,
        client_host: str,
        respond: Callable[[JoinGroupResponse], None],
    ) -> Records:
        return self._classic.join(request, version, client_id, client_host, respond)

    def sync_group(
        self,
        request: SyncGroupRequest,
        version: int,
        respond: Callable[[SyncGroupResponse], None],
    ) -> Records:
        return self._classic.sync(request, version, respond)

    def heartbeat(
        self, request: HeartbeatRequest, version: int
    ) -> tuple[HeartbeatResponse, Records]:
        return self._classic.heartbeat(request, version)

    def leave_group(
        self, request: LeaveGroupRequest, version: int
    ) -> tuple[LeaveGroupResponse, Records]:
        return self._classic.leave(request, version)

    # -- offsets -------------------------------------------------------------------------

    def offset_commit(
        self, request: OffsetCommitRequest, version: int
    ) -> tuple[OffsetCommitResponse, Records]:
        return self._offsets.commit(request, version)

    def offset_fetch(
        self,
        group_id: str,
        topics: list[tuple[str, list[int]]] | None,
        member_id: str | None = None,
        member_epoch: int = -1,
        require_stable: bool = False,
    ) -> tuple[int, list[FetchedOffset]]:
        """(group error code, [(topic, partition, offset, leader epoch, metadata, error)]).

        `topics` None asks for every committed offset of the group. For OffsetFetch v0-v7
        the runtime puts the group error code in the top-level error_code (v2+); for v8+ in
        the group's entry. `member_id`/`member_epoch` are those of OffsetFetch v9.
        """
        return self._offsets.fetch(group_id, topics, member_id, member_epoch, require_stable)

    def offset_delete(
        self, request: OffsetDeleteRequest, version: int
    ) -> tuple[OffsetDeleteResponse, Records]:
        return self._offsets.delete(request, version)

    # -- transactions --------------------------------------------------------------------

    def txn_offset_commit(
        self, request: TxnOffsetCommitRequest, version: int
    ) -> tuple[TxnOffsetCommitResponse, Records]:
        """The runtime appends the records as a transactional batch of the request's
        producer id and epoch, and replays them with that producer id."""
        return self._txn_offsets.commit(request, version)

    def replay_end_transaction_marker(self, producer_id: int, commit: bool) -> None:
        """A COMMIT/ABORT marker of `producer_id` was appended to (or loaded from) this
        partition: its pending offsets become committed, or are dropped."""
        self._txn_offsets.replay_end_marker(producer_id, commit)

    def has_pending_transaction(self, producer_id: int) -> bool:
        return producer_id in self._ctx.pending_txn_offsets.producers()

    # -- KIP-848 -------------------------------------------------------------------------

    def consumer_group_heartbeat(
        self,
        request: ConsumerGroupHeartbeatRequest,
        version: int,
        client_id: str = "",
        client_host: str = "",
    ) -> tuple[ConsumerGroupHeartbeatResponse, Records]:
        return self._consumer.heartbeat(request, version, client_id, client_host)

    def consumer_group_describe(
        self, group_ids: list[str], version: int
    ) -> list[ConsumerDescribedGroup]:
        return admin.consumer_group_describe(self._ctx, group_ids, self._consumer.default_assignor)

    # -- KIP-932 -------------------------------------------------------------------------

    def share_group_heartbeat(
        self, request: ShareGroupHeartbeatRequest, client_id: str = "", client_host: str = ""
    ) -> tuple[HeartbeatResult, Records]:
        """The response, and the share state to initialize (if any) once it is written."""
        return self._share.heartbeat(request, client_id, client_host)

    def share_group_state_partitions(self, group_id: str) -> StatePartitions | None:
        """Which partitions of the share group have share state (None: no such group)."""
        return initialization.state_partitions(self._ctx, group_id)

    def share_group_initialized(
        self,
        group_id: str,
        done: dict[uuid.UUID, frozenset[int]],
        failed: dict[uuid.UUID, frozenset[int]],
    ) -> Records:
        """Record how an initialization of share state ended."""
        return initialization.settled(self._ctx, group_id, done, failed)

    def share_group_forget_topics(self, group_id: str, topic_ids: set[uuid.UUID]) -> Records:
        return initialization.forget_topics(self._ctx, group_id, topic_ids)

    def share_group_alter_offsets(
        self, group_id: str, offsets: dict[uuid.UUID, tuple[str, dict[int, int]]]
    ) -> tuple[tuple[ErrorCode, Initialization | None], Records]:
        return initialization.alter_offsets(self._ctx, group_id, offsets)

    def share_group_describe(self, group_ids: list[str]) -> list[ShareDescribedGroup]:
        return describe_share_groups(self._ctx, group_ids)

    def share_group_is_empty(self, group_id: str) -> bool | None:
        """Whether the share group has no members; None when no share group has that id."""
        group = self._ctx.groups.get(group_id)
        return group.is_empty() if isinstance(group, ShareGroup) else None

    def share_group_members(self, group_id: str) -> set[str]:
        """The member ids of a share group (empty for any other or unknown group)."""
        return self._share.member_ids(group_id)

    # -- admin ---------------------------------------------------------------------------

    def committed_offsets(self) -> list[tuple[str, str, int, int]]:
        """(group, topic, partition, committed offset) of every committed offset here."""
        store = self._ctx.offsets
        return [
            (group, topic, partition, value.offset)
            for group in store.groups()
            for topic, partition, value in store.iter_group(group)
        ]

    def describe_groups(self, group_ids: list[str], version: int) -> list[DescribedGroup]:
        return admin.describe_groups(self._ctx, group_ids)

    def list_groups(self, states_filter: list[str], types_filter: list[str]) -> list[ListedGroup]:
        return admin.list_groups(self._ctx, states_filter, types_filter)

    def delete_groups(self, group_ids: list[str]) -> tuple[list[tuple[str, int]], Records]:
        return admin.delete_groups(self._ctx, self._offsets, group_ids)

    # -- time and lifecycle --------------------------------------------------------------

    def tick(self) -> Records:
        now = self._ctx.now_ms()
        while (action := self._ctx.timers.pop_due(now)) is not None:
            records = action()
            if records:
                # Stop here: the next timer must see the state after these records.
                return records
        return []

    def next_deadline_ms(self) -> int | None:
        return self._ctx.timers.next_deadline_ms()

    def unload(self) -> None:
        self._classic.unload()
        self._ctx.timers.clear()
        self._ctx.groups.clear()
        self._ctx.offsets = type(self._ctx.offsets)()
        self._ctx.pending_txn_offsets = type(self._ctx.pending_txn_offsets)()
