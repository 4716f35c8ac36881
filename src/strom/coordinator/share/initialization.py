"""The group coordinator's side of share-partition state: the records that follow an
initialization (done or failed), and AlterShareGroupOffsets and DeleteShareGroupOffsets, which
initialize or forget state (state_partitions.py has the model).

Each function reads the shard's groups and returns records; the group changes when they are
replayed.
"""

from __future__ import annotations

import uuid

from strom.coordinator.group.context import ShardContext
from strom.coordinator.group.records import CoordinatorRecord
from strom.coordinator.share.group import ShareGroup, group_epoch_record
from strom.coordinator.share.state_partitions import (
    Initialization,
    StatePartitions,
    TopicInit,
    state_partitions_record,
)
from strom.protocol.errors import ErrorCode

__all__ = [
    "alter_offsets",
    "forget_topics",
    "settled",
    "state_partitions",
]

Records = list[CoordinatorRecord]
TopicPartitions = dict[uuid.UUID, frozenset[int]]


def _share_group(ctx: ShardContext, group_id: str) -> ShareGroup | None:
    group = ctx.groups.get(group_id)
    return group if isinstance(group, ShareGroup) else None


def state_partitions(ctx: ShardContext, group_id: str) -> StatePartitions | None:
    group = _share_group(ctx, group_id)
    return group.state_partitions if group is not None else None


def settled(
    ctx: ShardContext, group_id: str, done: TopicPartitions, failed: TopicPartitions
) -> Records:
    """The share coordinator has the state of `done` (they become assignable); initializing
    `failed` did not work (a later heartbeat asks again)."""
    group = _share_group(ctx, group_id)
    if group is None or not (done or failed):
        return []
    state = group.state_partitions
    names = {t: init.name for t, init in state.initializing.items()}
    changed = state.with_initialized(done, names).without_initializing(failed)
    return [state_partitions_record(group_id, changed)] if changed != state else []


def forget_topics(ctx: ShardContext, group_id: str, topic_ids: set[uuid.UUID]) -> Records:
    """DeleteShareGroupOffsets once the state is deleted: the topics start again."""
    group = _share_group(ctx, group_id)
    if group is None:
        return []
    state = group.state_partitions
    changed = state.without_topics(topic_ids)
    return [state_partitions_record(group_id, changed)] if changed != state else []


def alter_offsets(
    ctx: ShardContext,
    group_id: str,
    offsets: dict[uuid.UUID, tuple[str, dict[int, int]]],
    metadata_hash: int | None = None,
) -> tuple[tuple[ErrorCode, Initialization | None], Records]:
    """AlterShareGroupOffsets on an empty (or new) share group: a new group epoch, the
    partitions initializing, and the Initialization of their new start offsets at that epoch
    (a state epoch newer than any share partition leader holds, whose writes are then
    fenced)."""
    found = ctx.groups.get(group_id)
    if found is not None and not isinstance(found, ShareGroup):
        return (ErrorCode.GROUP_ID_NOT_FOUND, None), []
    group = found if isinstance(found, ShareGroup) else ShareGroup(group_id)
    if not group.is_empty():
        return (ErrorCode.NON_EMPTY_GROUP, None), []
    epoch = group.group_epoch + 1
    now = ctx.now_ms()
    records = [
        group_epoch_record(
            group_id, epoch, group.metadata_hash if metadata_hash is None else metadata_hash
        )
    ]
    wanted = {
        topic_id: TopicInit(name, frozenset(starts), now)
        for topic_id, (name, starts) in offsets.items()
        if starts
    }
    if not wanted:
        return (ErrorCode.NONE, None), records
    records.append(
        state_partitions_record(group_id, group.state_partitions.with_initializing(wanted))
    )
    initialization = Initialization(
        group_id,
        epoch,
        tuple(
            (topic_id, p, start)
            for topic_id, (_, starts) in sorted(offsets.items())
            for p, start in sorted(starts.items())
        ),
    )
    return (ErrorCode.NONE, initialization), records
