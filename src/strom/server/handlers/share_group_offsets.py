"""DescribeShareGroupOffsets (90) v0-1, AlterShareGroupOffsets (91) v0 and
DeleteShareGroupOffsets (92) v0: the start offsets of a share group's partitions (KIP-932).

A share group's "offset" in a partition is its share-partition start offset: every record
before it is acknowledged or archived. These requests go to the group coordinator, which asks
the share coordinators (`SharePersister`: on this broker or another), as Kafka's does:
- describe reads each partition's summary (ReadShareGroupStateSummary): the start offset and,
  v1, the lag: records from there to the high watermark not yet acknowledged or archived
  (-1 where the group has not consumed, or where the answering broker holds no replica of the
  partition to read its high watermark from); with topics null, the partitions whose state is
  initialized (record type 15);
- alter (the group must be empty or new: NON_EMPTY_GROUP otherwise) bumps the group epoch and
  initializes the partitions' state at the new start offsets with that epoch as state epoch
  (InitializeShareGroupState), which fences what an earlier share partition leader would
  still write;
- delete (the group must be empty) deletes the topics' state (DeleteShareGroupState) and
  forgets them in the group, so it starts them again per share.auto.offset.reset.
Describe also answers, in Strom's tagged field `StromDelayedRecords` (tools/strom_fields.py),
each partition's records waiting for their delivery time as its share state last recorded
them (Kafka's clients skip the field).
With the finalized `share.version` below 1 they answer UNSUPPORTED_VERSION (per group for
describe), as Kafka 4.2.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

from strom.cluster.features import share_groups_enabled
from strom.coordinator.share.coordinator import Outcome
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.alter_share_group_offsets_request import (
    AlterShareGroupOffsetsRequest,
)
from strom.protocol.messages.alter_share_group_offsets_response import (
    AlterShareGroupOffsetsResponse,
    AlterShareGroupOffsetsResponsePartition,
    AlterShareGroupOffsetsResponseTopic,
)
from strom.protocol.messages.delete_share_group_offsets_request import (
    DeleteShareGroupOffsetsRequest,
)
from strom.protocol.messages.delete_share_group_offsets_response import (
    DeleteShareGroupOffsetsResponse,
    DeleteShareGroupOffsetsResponseTopic,
)
from strom.protocol.messages.describe_share_group_offsets_request import (
    DescribeShareGroupOffsetsRequest,
)
from strom.protocol.messages.describe_share_group_offsets_response import (
    DescribeShareGroupOffsetsResponse,
    DescribeShareGroupOffsetsResponseGroup,
    DescribeShareGroupOffsetsResponsePartition,
    DescribeShareGroupOffsetsResponseTopic,
)
from strom.runtime.coordinator_runtime import gather
from strom.runtime.errors import ApiError
from strom.server.context import RequestContext
from strom.server.registry import handles


def _group_error(ctx: RequestContext, group_id: str, need_empty: bool) -> ErrorCode | None:
    if not group_id:
        return ErrorCode.INVALID_GROUP_ID
    try:
        _, shard = ctx.broker.groups.shard_for(group_id)
    except ApiError as exc:
        return exc.code
    empty = shard.share_group_is_empty(group_id)
    if empty is None:
        return ErrorCode.GROUP_ID_NOT_FOUND
    if need_empty and not empty:
        return ErrorCode.NON_EMPTY_GROUP
    return None


def _topic_id(ctx: RequestContext, name: str) -> uuid.UUID | None:
    record = ctx.broker.metadata.get_topic(name)
    return record.topic_id if record is not None else None


def _lag(ctx: RequestContext, topic: str, partition: int, summary: Outcome) -> tuple[int, int]:
    """(start offset, lag) from a share coordinator's summary; (-1, -1) without state."""
    state = summary.state
    if summary.error != ErrorCode.NONE or state is None or state.start_offset < 0:
        return -1, -1
    log = ctx.broker.partition_log(topic, partition)
    if log is None or state.delivery_complete_count < 0:
        return state.start_offset, -1
    lag = log.high_watermark - state.start_offset - state.delivery_complete_count
    return state.start_offset, max(lag, 0)


@handles(90, 0, 1)
def handle_describe_share_group_offsets(
    ctx: RequestContext, request: DescribeShareGroupOffsetsRequest
) -> DescribeShareGroupOffsetsResponse | Awaitable[DescribeShareGroupOffsetsResponse]:
    if not share_groups_enabled(ctx.broker.metadata.finalized_features):
        return DescribeShareGroupOffsetsResponse(
            groups=[
                DescribeShareGroupOffsetsResponseGroup(
                    group_id=g.group_id, error_code=ErrorCode.UNSUPPORTED_VERSION
                )
                for g in request.groups
            ]
        )
    persister = ctx.broker.share_persister
    groups: list[DescribeShareGroupOffsetsResponseGroup] = []
    rows: list[tuple[DescribeShareGroupOffsetsResponsePartition, str]] = []
    summaries: list[Outcome | Awaitable[Outcome]] = []
    for asked in request.groups:
        out = DescribeShareGroupOffsetsResponseGroup(group_id=asked.group_id)
        groups.append(out)
        error = _group_error(ctx, asked.group_id, need_empty=False)
        if error is not None:
            out.error_code = error
            continue
        wanted: list[tuple[str, list[int]]]
        if asked.topics is None:
            _, shard = ctx.broker.groups.shard_for(asked.group_id)
            state = shard.share_group_state_partitions(asked.group_id)
            known: dict[str, list[int]] = {}
            for topic_id, init in (state.initialized if state is not None else {}).items():
                found = ctx.broker.metadata.topic_by_id(topic_id)
                if found is not None:
                    known[found.name] = sorted(init.partitions)
            wanted = sorted(known.items())
        else:
            wanted = [(t.topic_name, list(t.partitions)) for t in asked.topics]
        for name, partitions in wanted:
            record = ctx.broker.metadata.get_topic(name)
            topic = DescribeShareGroupOffsetsResponseTopic(
                topic_name=name,
                topic_id=record.topic_id if record is not None else uuid.UUID(int=0),
            )
            out.topics.append(topic)
            for partition in partitions:
                row = DescribeShareGroupOffsetsResponsePartition(
                    partition_index=partition, start_offset=-1, lag=-1
                )
                topic.partitions.append(row)
                if record is None or not 0 <= partition < record.num_partitions:
                    # No data rather than an error, as Kafka answers a topic it does not know.
                    continue
                rows.append((row, name))
                summaries.append(persister.summary((asked.group_id, record.topic_id, partition)))
    response = DescribeShareGroupOffsetsResponse(groups=groups)

    def fill(done: list[Outcome]) -> DescribeShareGroupOffsetsResponse:
        for (row, name), summary in zip(rows, done, strict=True):
            row.start_offset, row.lag = _lag(ctx, name, row.partition_index, summary)
            state = summary.state
            row.leader_epoch = (
                state.leader_epoch if state is not None and row.start_offset >= 0 else 0
            )
            if state is not None and row.start_offset >= 0:
                row.strom_delayed_records = state.delayed_records
        return response

    done = gather(summaries)
    if isinstance(done, Awaitable):
        waiting = done

        async def later() -> DescribeShareGroupOffsetsResponse:
            return fill(await waiting)

        return later()
    return fill(done)


@handles(91, 0, 0)
def handle_alter_share_group_offsets(
    ctx: RequestContext, request: AlterShareGroupOffsetsRequest
) -> AlterShareGroupOffsetsResponse | Awaitable[AlterShareGroupOffsetsResponse]:
    if not share_groups_enabled(ctx.broker.metadata.finalized_features):
        return AlterShareGroupOffsetsResponse(error_code=ErrorCode.UNSUPPORTED_VERSION)
    group_id = request.group_id
    if not group_id:
        return AlterShareGroupOffsetsResponse(error_code=ErrorCode.INVALID_GROUP_ID)
    response = AlterShareGroupOffsetsResponse()
    rows: dict[tuple[uuid.UUID, int], AlterShareGroupOffsetsResponsePartition] = {}
    offsets: dict[uuid.UUID, tuple[str, dict[int, int]]] = {}
    for t in request.topics:
        record = ctx.broker.metadata.get_topic(t.topic_name)
        out = AlterShareGroupOffsetsResponseTopic(
            topic_name=t.topic_name,
            topic_id=record.topic_id if record is not None else uuid.UUID(int=0),
        )
        response.responses.append(out)
        for p in t.partitions:
            row = AlterShareGroupOffsetsResponsePartition(partition_index=p.partition_index)
            out.partitions.append(row)
            if record is None or not 0 <= p.partition_index < record.num_partitions:
                row.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            log = ctx.broker.partition_log(t.topic_name, p.partition_index)
            low = log.log_start_offset if log is not None else 0
            if p.start_offset < low or (log is not None and p.start_offset > log.high_watermark):
                row.error_code = ErrorCode.INVALID_REQUEST
                row.error_message = f"Start offset {p.start_offset} is outside the log."
                continue
            rows[(record.topic_id, p.partition_index)] = row
            offsets.setdefault(record.topic_id, (t.topic_name, {}))[1][p.partition_index] = (
                p.start_offset
            )
    altered = ctx.broker.groups.run(
        group_id,
        lambda shard: shard.share_group_alter_offsets(group_id, offsets),
        lambda code: (code, None),
    )

    async def initialize() -> AlterShareGroupOffsetsResponse:
        code, init = await altered if isinstance(altered, Awaitable) else altered
        if code != ErrorCode.NONE:
            return AlterShareGroupOffsetsResponse(error_code=code)
        if init is None:
            return response
        for name, starts in offsets.values():
            for partition in starts:
                ctx.broker.shares.store.drop((group_id, name, partition))
        codes = await ctx.broker.share_initializer.initialize(init)
        for key, row in rows.items():
            row.error_code = codes.get(key, ErrorCode.NONE)
        return response

    return initialize()


@handles(92, 0, 0)
def handle_delete_share_group_offsets(
    ctx: RequestContext, request: DeleteShareGroupOffsetsRequest
) -> DeleteShareGroupOffsetsResponse | Awaitable[DeleteShareGroupOffsetsResponse]:
    if not share_groups_enabled(ctx.broker.metadata.finalized_features):
        return DeleteShareGroupOffsetsResponse(error_code=ErrorCode.UNSUPPORTED_VERSION)
    group_id = request.group_id
    error = _group_error(ctx, group_id, need_empty=True)
    if error is not None:
        return DeleteShareGroupOffsetsResponse(error_code=error)
    _, shard = ctx.broker.groups.shard_for(group_id)
    state = shard.share_group_state_partitions(group_id)
    known = state.known() if state is not None else {}
    response = DeleteShareGroupOffsetsResponse()
    pending: list[tuple[DeleteShareGroupOffsetsResponseTopic, uuid.UUID, Awaitable[Outcome]]] = []
    forget: set[uuid.UUID] = set()
    for t in request.topics:
        record = ctx.broker.metadata.get_topic(t.topic_name)
        out = DeleteShareGroupOffsetsResponseTopic(
            topic_name=t.topic_name,
            topic_id=record.topic_id if record is not None else uuid.UUID(int=0),
        )
        response.responses.append(out)
        if record is None:
            out.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            continue
        forget.add(record.topic_id)
        for partition in sorted(known.get(record.topic_id, frozenset())):
            ctx.broker.shares.store.drop((group_id, t.topic_name, partition))
            deleted = ctx.broker.share_persister.delete((group_id, record.topic_id, partition))
            if isinstance(deleted, Awaitable):
                pending.append((out, record.topic_id, deleted))
            elif deleted.error != ErrorCode.NONE:
                out.error_code = deleted.error
                forget.discard(record.topic_id)

    async def later() -> DeleteShareGroupOffsetsResponse:
        for out, topic_id, deleted in pending:
            outcome = await deleted
            if outcome.error != ErrorCode.NONE:
                out.error_code = outcome.error
                forget.discard(topic_id)
        if forget:
            written = ctx.broker.groups.run(
                group_id,
                lambda shard: (ErrorCode.NONE, shard.share_group_forget_topics(group_id, forget)),
                lambda code: code,
            )
            code = await written if isinstance(written, Awaitable) else written
            if code != ErrorCode.NONE:
                response.error_code = code
        return response

    return later()
