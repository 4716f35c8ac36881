"""Committed offsets: OffsetCommit (8) v2-9, OffsetFetch (9) v1-9, OffsetDelete (47) v0.

The group's coordinator shard validates the member and generation (or member epoch, for
KIP-848 members) and returns the records; they are appended to `__consumer_offsets` before the
answer goes out (in cluster mode: once they are replicated to the ISR, and OffsetFetch waits
until what the shard wrote before it is). OffsetFetch v8+ asks for several groups at once;
each is answered by its own shard. require_stable (v7+, read_committed consumers): a partition
with an offset pending in an open transaction answers UNSTABLE_OFFSET_COMMIT, and the consumer
retries. Not done: OffsetCommit v0-1 (removed in Kafka 4.0).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.offset_commit_request import OffsetCommitRequest
from strom.protocol.messages.offset_commit_response import (
    OffsetCommitResponse,
    OffsetCommitResponsePartition,
    OffsetCommitResponseTopic,
)
from strom.protocol.messages.offset_delete_request import OffsetDeleteRequest
from strom.protocol.messages.offset_delete_response import OffsetDeleteResponse
from strom.protocol.messages.offset_fetch_request import OffsetFetchRequest
from strom.protocol.messages.offset_fetch_response import (
    OffsetFetchResponse,
    OffsetFetchResponseGroup,
    OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
)
from strom.runtime.errors import ApiError
from strom.server.context import RequestContext
from strom.server.registry import handles


@handles(8, 2, 9)
def handle_offset_commit(
    ctx: RequestContext, request: OffsetCommitRequest
) -> OffsetCommitResponse | Awaitable[OffsetCommitResponse]:
    version = ctx.api_version

    def failed(code: ErrorCode) -> OffsetCommitResponse:
        return OffsetCommitResponse(
            topics=[
                OffsetCommitResponseTopic(
                    name=topic.name,
                    partitions=[
                        OffsetCommitResponsePartition(
                            partition_index=p.partition_index, error_code=code
                        )
                        for p in topic.partitions
                    ],
                )
                for topic in request.topics
            ]
        )

    return ctx.broker.groups.run(
        request.group_id, lambda shard: shard.offset_commit(request, version), failed
    )


def _fetch_group(
    ctx: RequestContext,
    group_id: str,
    topics: list[tuple[str, list[int]]] | None,
    member_id: str | None,
    member_epoch: int,
    require_stable: bool,
    failed: dict[int, ErrorCode],
) -> tuple[int, dict[str, list[tuple[int, int, int, str, int]]]]:
    """(group error, {topic: [(partition, offset, leader epoch, metadata, error)]})."""
    try:
        partition, shard = ctx.broker.groups.shard_for(group_id)
    except ApiError as exc:
        return exc.code, {}
    if partition in failed:
        return failed[partition], {}
    error, rows = shard.offset_fetch(group_id, topics, member_id, member_epoch, require_stable)
    by_topic: dict[str, list[tuple[int, int, int, str, int]]] = {}
    for topic, partition, offset, leader_epoch, metadata, row_error in rows:
        by_topic.setdefault(topic, []).append(
            (partition, offset, leader_epoch, metadata, row_error)
        )
    return error, by_topic


@handles(9, 1, 9)
def handle_offset_fetch(
    ctx: RequestContext, request: OffsetFetchRequest
) -> OffsetFetchResponse | Awaitable[OffsetFetchResponse]:
    groups = ctx.broker.groups
    group_ids = [g.group_id for g in request.groups] if ctx.api_version >= 8 else [request.group_id]
    # Cluster mode: read only what the ISR has (a shard's last writes may not be replicated).
    waiting = sorted({p for p in map(groups.partition_for, group_ids) if groups.uncommitted(p)})
    if not waiting:
        return _offset_fetch(ctx, request, {})

    async def later() -> OffsetFetchResponse:
        codes = await asyncio.gather(*(groups.await_committed(p) for p in waiting))
        failed: dict[int, ErrorCode] = {
            p: c for p, c in zip(waiting, codes, strict=True) if c != ErrorCode.NONE
        }
        return _offset_fetch(ctx, request, failed)

    return later()


def _offset_fetch(
    ctx: RequestContext, request: OffsetFetchRequest, failed: dict[int, ErrorCode]
) -> OffsetFetchResponse:
    if ctx.api_version >= 8:
        groups: list[OffsetFetchResponseGroup] = []
        for wanted in request.groups:
            topics = (
                None
                if wanted.topics is None
                else [(t.name, list(t.partition_indexes)) for t in wanted.topics]
            )
            error, by_topic = _fetch_group(
                ctx,
                wanted.group_id,
                topics,
                wanted.member_id,
                wanted.member_epoch,
                request.require_stable,
                failed,
            )
            groups.append(
                OffsetFetchResponseGroup(
                    group_id=wanted.group_id,
                    error_code=error,
                    topics=[
                        OffsetFetchResponseTopics(
                            name=name,
                            partitions=[
                                OffsetFetchResponsePartitions(
                                    partition_index=p,
                                    committed_offset=offset,
                                    committed_leader_epoch=epoch,
                                    metadata=metadata,
                                    error_code=row_error,
                                )
                                for p, offset, epoch, metadata, row_error in rows
                            ],
                        )
                        for name, rows in by_topic.items()
                    ],
                )
            )
        return OffsetFetchResponse(groups=groups)
    topics_v1 = (
        None
        if request.topics is None
        else [(t.name, list(t.partition_indexes)) for t in request.topics]
    )
    error, by_topic = _fetch_group(
        ctx,
        request.group_id,
        topics_v1,
        None,
        -1,
        ctx.api_version >= 7 and request.require_stable,
        failed,
    )
    response = OffsetFetchResponse(
        error_code=error,
        topics=[
            OffsetFetchResponseTopic(
                name=name,
                partitions=[
                    OffsetFetchResponsePartition(
                        partition_index=p,
                        committed_offset=offset,
                        committed_leader_epoch=epoch,
                        metadata=metadata,
                        error_code=row_error
                        if row_error
                        else error
                        if ctx.api_version < 2
                        else ErrorCode.NONE,
                    )
                    for p, offset, epoch, metadata, row_error in rows
                ],
            )
            for name, rows in by_topic.items()
        ],
    )
    return response


@handles(47, 0, 0)
def handle_offset_delete(
    ctx: RequestContext, request: OffsetDeleteRequest
) -> OffsetDeleteResponse | Awaitable[OffsetDeleteResponse]:
    version = ctx.api_version
    return ctx.broker.groups.run(
        request.group_id,
        lambda shard: shard.offset_delete(request, version),
        lambda code: OffsetDeleteResponse(error_code=code),
    )
