"""Committed offsets: OffsetCommit (8) v0-9, OffsetFetch (9) v0-9, OffsetDelete (47) v0.

OffsetCommit answers UNKNOWN_TOPIC_OR_PARTITION for a topic or partition that does not exist,
before anything else (even when this broker does not coordinate the group), and commits the
rest. Version 0 of both APIs keeps offsets apart from the groups (`zk_offsets`). For v1+, the
group's coordinator shard validates the member and generation (or member epoch, for
KIP-848 members) and returns the records; they are appended to `__consumer_offsets` before the
answer goes out (in cluster mode: once they are replicated to the ISR, and OffsetFetch waits
until what the shard wrote before it is). OffsetFetch v8+ asks for several groups at once;
each is answered by its own shard. require_stable (v7+, read_committed consumers): a partition
with an offset pending in an open transaction answers UNSTABLE_OFFSET_COMMIT, and the consumer
retries. OffsetCommit v1 carries a commit timestamp per partition (-1: the broker's time);
v2-4 a retention time (-1: offsets.retention.minutes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.offset_commit_request import (
    OffsetCommitRequest,
    OffsetCommitRequestTopic,
)
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
from strom.protocol.messages.offset_fetch_request import OffsetFetchRequest
from strom.protocol.messages.offset_fetch_response import (
    OffsetFetchResponse,
    OffsetFetchResponseGroup,
    OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
)
from strom.runtime.coordinator_runtime import then
from strom.runtime.errors import ApiError
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize, authorized_names
from strom.server.context import RequestContext
from strom.server.registry import handles


def _refused_topic(topic: OffsetCommitRequestTopic, code: ErrorCode) -> OffsetCommitResponseTopic:
    return OffsetCommitResponseTopic(
        topic.name,
        [OffsetCommitResponsePartition(p.partition_index, code) for p in topic.partitions],
    )


def _split_unknown(
    ctx: RequestContext, topics: list[OffsetCommitRequestTopic], allowed: set[str]
) -> tuple[list[OffsetCommitRequestTopic], list[OffsetCommitResponseTopic]]:
    """(the topics with only the partitions that exist, the answers for the others); topics
    the principal may not READ are refused before their existence is looked at."""
    known: list[OffsetCommitRequestTopic] = []
    unknown: list[OffsetCommitResponseTopic] = []
    for topic in topics:
        if topic.name not in allowed:
            unknown.append(_refused_topic(topic, ErrorCode.TOPIC_AUTHORIZATION_FAILED))
            continue
        record = ctx.broker.metadata.get_topic(topic.name)
        count = 0 if record is None else record.num_partitions
        good = [p for p in topic.partitions if 0 <= p.partition_index < count]
        bad = [p for p in topic.partitions if not 0 <= p.partition_index < count]
        if good:
            known.append(OffsetCommitRequestTopic(topic.name, good))
        if bad:
            unknown.append(
                OffsetCommitResponseTopic(
                    topic.name,
                    [
                        OffsetCommitResponsePartition(
                            p.partition_index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                        )
                        for p in bad
                    ],
                )
            )
    return known, unknown


def _merged(
    order: list[OffsetCommitRequestTopic],
    first: list[OffsetCommitResponseTopic],
    second: list[OffsetCommitResponseTopic],
) -> OffsetCommitResponse:
    """One answer per topic of the request, in its order, with the partitions of both."""
    by_name: dict[str, OffsetCommitResponseTopic] = {}
    for topic in [*first, *second]:
        into = by_name.setdefault(topic.name, OffsetCommitResponseTopic(topic.name))
        into.partitions.extend(topic.partitions)
    names = dict.fromkeys(t.name for t in order)
    return OffsetCommitResponse(topics=[by_name[n] for n in names if n in by_name])


@handles(8, 0, 9)
def handle_offset_commit(
    ctx: RequestContext, request: OffsetCommitRequest
) -> OffsetCommitResponse | Awaitable[OffsetCommitResponse]:
    order = request.topics
    # READ on the group (GROUP_AUTHORIZATION_FAILED for every partition), then on each topic.
    if not authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        return OffsetCommitResponse(
            topics=[_refused_topic(t, ErrorCode.GROUP_AUTHORIZATION_FAILED) for t in order]
        )
    allowed = authorized_names(ctx, AclOperation.READ, ResourceType.TOPIC, (t.name for t in order))
    request.topics, unknown = _split_unknown(ctx, order, allowed)
    if not request.topics:
        return _merged(order, unknown, [])
    if ctx.api_version == 0:
        from strom.server.handlers import zk_offsets  # v0 only: ZooKeeper's layout

        stored = zk_offsets.commit_v0(ctx, request)
    else:
        stored = _commit_to_coordinator(ctx, request)
    return then(stored, lambda answer: _merged(order, unknown, answer.topics))


def _commit_to_coordinator(
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
    """(group error, {topic: [(partition, offset, leader epoch, metadata, error)]}).

    The group needs DESCRIBE; topics the principal may not DESCRIBE are answered
    TOPIC_AUTHORIZATION_FAILED when named and left out of an all-topics answer, as in Kafka."""
    if not authorize(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
        return ErrorCode.GROUP_AUTHORIZATION_FAILED, {}
    refused: dict[str, list[tuple[int, int, int, str, int]]] = {}
    if topics is not None and ctx.broker.authorizer is not None:
        allowed = authorized_names(
            ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, (t for t, _ in topics)
        )
        refused = {
            t: [(p, -1, -1, "", ErrorCode.TOPIC_AUTHORIZATION_FAILED) for p in parts]
            for t, parts in topics
            if t not in allowed
        }
        topics = [(t, parts) for t, parts in topics if t in allowed]
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
    if error != ErrorCode.NONE:
        return error, by_topic
    if topics is None and ctx.broker.authorizer is not None:
        visible = authorized_names(
            ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, by_topic, log_denied=False
        )
        by_topic = {t: rows for t, rows in by_topic.items() if t in visible}
    by_topic.update(refused)
    return error, by_topic


@handles(9, 0, 9)
def handle_offset_fetch(
    ctx: RequestContext, request: OffsetFetchRequest
) -> OffsetFetchResponse | Awaitable[OffsetFetchResponse]:
    if ctx.api_version == 0:
        from strom.server.handlers import zk_offsets

        return zk_offsets.fetch_v0(ctx, request)
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
    if error == ErrorCode.GROUP_AUTHORIZATION_FAILED and ctx.api_version < 2 and topics_v1:
        # v1 has no group error field: Kafka puts it on every partition asked for.
        by_topic = {t: [(p, -1, -1, "", error) for p in parts] for t, parts in topics_v1}
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
    # DELETE on the group, READ on each topic (refused ones answered before the coordinator).
    if not authorize(ctx, AclOperation.DELETE, ResourceType.GROUP, request.group_id):
        return OffsetDeleteResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    names = [t.name for t in request.topics]
    allowed = authorized_names(ctx, AclOperation.READ, ResourceType.TOPIC, names)
    if len(allowed) == len(set(names)):
        return ctx.broker.groups.run(
            request.group_id,
            lambda shard: shard.offset_delete(request, version),
            lambda code: OffsetDeleteResponse(error_code=code),
        )
    refused = [t for t in request.topics if t.name not in allowed]
    request.topics = [t for t in request.topics if t.name in allowed]

    def with_refused(answer: OffsetDeleteResponse) -> OffsetDeleteResponse:
        for topic in refused:
            answer.topics.append(
                OffsetDeleteResponseTopic(
                    name=topic.name,
                    partitions=[
                        OffsetDeleteResponsePartition(
                            partition_index=p.partition_index,
                            error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                        )
                        for p in topic.partitions
                    ],
                )
            )
        return answer

    if not request.topics:
        return with_refused(OffsetDeleteResponse(error_code=ErrorCode.NONE))
    return then(
        ctx.broker.groups.run(
            request.group_id,
            lambda shard: shard.offset_delete(request, version),
            lambda code: OffsetDeleteResponse(error_code=code),
        ),
        with_refused,
    )
