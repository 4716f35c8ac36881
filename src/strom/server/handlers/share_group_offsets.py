"""DescribeShareGroupOffsets (90) v0-1, AlterShareGroupOffsets (91) v0 and
DeleteShareGroupOffsets (92) v0: the start offsets of a share group's partitions (KIP-932).

A share group's "offset" in a partition is its share-partition start offset: every record
before it is acknowledged or archived. Describe answers it with the lag (v1: records from
there to the high watermark not yet acknowledged or archived), or -1 where the group has not
consumed; alter sets it (the group must be empty: NON_EMPTY_GROUP otherwise) and delete forgets
it, so the group starts again per share.auto.offset.reset. The states are read from and
written to `__share_group_state`; on a cluster only the states this broker's share
coordinator holds are found (no inter-broker share-state requests yet). With the finalized
`share.version` below 1 they answer UNSUPPORTED_VERSION (per group for describe), as Kafka 4.2.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

from strom.cluster.features import share_groups_enabled
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


@handles(90, 0, 1)
def handle_describe_share_group_offsets(
    ctx: RequestContext, request: DescribeShareGroupOffsetsRequest
) -> DescribeShareGroupOffsetsResponse:
    if not share_groups_enabled(ctx.broker.metadata.finalized_features):
        return DescribeShareGroupOffsetsResponse(
            groups=[
                DescribeShareGroupOffsetsResponseGroup(
                    group_id=g.group_id, error_code=ErrorCode.UNSUPPORTED_VERSION
                )
                for g in request.groups
            ]
        )
    shares = ctx.broker.shares
    groups: list[DescribeShareGroupOffsetsResponseGroup] = []
    for asked in request.groups:
        out = DescribeShareGroupOffsetsResponseGroup(group_id=asked.group_id)
        groups.append(out)
        error = _group_error(ctx, asked.group_id, need_empty=False)
        if error is not None:
            out.error_code = error
            continue
        wanted: list[tuple[str, list[int]]]
        if asked.topics is None:
            known: dict[str, set[int]] = {}
            for state_topic_id, partition in ctx.broker.share_state.group_states(asked.group_id):
                found = ctx.broker.metadata.topic_by_id(state_topic_id)
                if found is not None:
                    known.setdefault(found.name, set()).add(partition)
            for group_id, topic_name, partition in shares.partitions:
                if group_id == asked.group_id:
                    known.setdefault(topic_name, set()).add(partition)
            wanted = [(name, sorted(parts)) for name, parts in sorted(known.items())]
        else:
            wanted = [(t.topic_name, list(t.partitions)) for t in asked.topics]
        for name, partitions in wanted:
            topic_id = _topic_id(ctx, name)
            topic = DescribeShareGroupOffsetsResponseTopic(
                topic_name=name, topic_id=topic_id or uuid.UUID(int=0)
            )
            out.topics.append(topic)
            for partition in partitions:
                row = DescribeShareGroupOffsetsResponsePartition(partition_index=partition)
                topic.partitions.append(row)
                if topic_id is None or ctx.broker.partition_log(name, partition) is None:
                    row.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                    row.start_offset = row.lag = -1
                    continue
                row.start_offset, row.lag = shares.describe_partition(
                    asked.group_id, topic_id, name, partition
                )
                row.leader_epoch = -1 if row.start_offset < 0 else 0
    return DescribeShareGroupOffsetsResponse(groups=groups)


@handles(91, 0, 0)
def handle_alter_share_group_offsets(
    ctx: RequestContext, request: AlterShareGroupOffsetsRequest
) -> AlterShareGroupOffsetsResponse | Awaitable[AlterShareGroupOffsetsResponse]:
    if not share_groups_enabled(ctx.broker.metadata.finalized_features):
        return AlterShareGroupOffsetsResponse(error_code=ErrorCode.UNSUPPORTED_VERSION)
    error = _group_error(ctx, request.group_id, need_empty=True)
    if error is not None:
        return AlterShareGroupOffsetsResponse(error_code=error)
    response = AlterShareGroupOffsetsResponse()
    pending: list[tuple[AlterShareGroupOffsetsResponsePartition, Awaitable[ErrorCode]]] = []
    for t in request.topics:
        topic_id = _topic_id(ctx, t.topic_name)
        out = AlterShareGroupOffsetsResponseTopic(
            topic_name=t.topic_name, topic_id=topic_id or uuid.UUID(int=0)
        )
        response.responses.append(out)
        for p in t.partitions:
            row = AlterShareGroupOffsetsResponsePartition(partition_index=p.partition_index)
            out.partitions.append(row)
            log = ctx.broker.partition_log(t.topic_name, p.partition_index)
            if topic_id is None or log is None:
                row.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            if not log.log_start_offset <= p.start_offset <= log.high_watermark:
                row.error_code = ErrorCode.INVALID_REQUEST
                row.error_message = (
                    f"Start offset {p.start_offset} is outside "
                    f"[{log.log_start_offset}, {log.high_watermark}]."
                )
                continue
            written = ctx.broker.shares.reset_partition(
                request.group_id, topic_id, t.topic_name, p.partition_index, p.start_offset
            )
            if isinstance(written, Awaitable):
                pending.append((row, written))
            else:
                row.error_code = written
    if not pending:
        return response

    async def later() -> AlterShareGroupOffsetsResponse:
        for row, written in pending:
            row.error_code = await written
        return response

    return later()


@handles(92, 0, 0)
def handle_delete_share_group_offsets(
    ctx: RequestContext, request: DeleteShareGroupOffsetsRequest
) -> DeleteShareGroupOffsetsResponse | Awaitable[DeleteShareGroupOffsetsResponse]:
    if not share_groups_enabled(ctx.broker.metadata.finalized_features):
        return DeleteShareGroupOffsetsResponse(error_code=ErrorCode.UNSUPPORTED_VERSION)
    error = _group_error(ctx, request.group_id, need_empty=True)
    if error is not None:
        return DeleteShareGroupOffsetsResponse(error_code=error)
    response = DeleteShareGroupOffsetsResponse()
    pending: list[tuple[DeleteShareGroupOffsetsResponseTopic, Awaitable[ErrorCode]]] = []
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
        for partition in range(record.num_partitions):
            written = ctx.broker.shares.reset_partition(
                request.group_id, record.topic_id, t.topic_name, partition, None
            )
            if isinstance(written, Awaitable):
                pending.append((out, written))
            elif written != ErrorCode.NONE:
                out.error_code = written
    if not pending:
        return response

    async def later() -> DeleteShareGroupOffsetsResponse:
        for out, written in pending:
            code = await written
            if code != ErrorCode.NONE:
                out.error_code = code
        return response

    return later()
