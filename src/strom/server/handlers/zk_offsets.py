"""OffsetCommit v0 and OffsetFetch v0: offsets kept apart from the group coordinator.

Kafka 0.8.1 clients committed offsets through a broker into ZooKeeper, and Kafka kept doing so
for v0 of both APIs until it dropped them (4.0): any broker answers them, nothing about groups
is checked, the metadata string is checked against offset.metadata.max.bytes and dropped, and
these offsets are invisible to v1+ (and v1+ commits to v0), as they live elsewhere.

Strom does the same. In cluster mode the offsets are in ZooKeeper where Kafka put them
(/consumers/<group>/offsets/<topic>/<partition>, the offset as decimal text), so tools that
read a Kafka cluster's ZooKeeper find them. A single broker has no ZooKeeper: it keeps them in
its metadata file (`LocalMetadata.set_consumer_offsets`), which is written and fsynced before
the answer, as ZooKeeper would have.

A group id that would make an invalid znode path fails its partitions with
UNKNOWN_SERVER_ERROR on both kinds of broker (Kafka's answer to ZooKeeper's refusal).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from strom.cluster.local_metadata import LocalMetadata
from strom.cluster.zk import layout as L
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.offset_commit_request import OffsetCommitRequest
from strom.protocol.messages.offset_commit_response import (
    OffsetCommitResponse,
    OffsetCommitResponsePartition,
    OffsetCommitResponseTopic,
)
from strom.protocol.messages.offset_fetch_request import OffsetFetchRequest
from strom.protocol.messages.offset_fetch_response import (
    OffsetFetchResponse,
    OffsetFetchResponsePartition,
    OffsetFetchResponseTopic,
)
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize, authorized_names
from strom.server.context import RequestContext

log = logging.getLogger("strom.offsets")

_Key = tuple[str, int]


def _metadata_max_bytes(ctx: RequestContext) -> int:
    return ctx.broker.config.get_int("offset.metadata.max.bytes")


def _partition_exists(ctx: RequestContext, topic: str, partition: int) -> bool:
    record = ctx.broker.metadata.get_topic(topic)
    return record is not None and 0 <= partition < record.num_partitions


def commit_v0(
    ctx: RequestContext, request: OffsetCommitRequest
) -> OffsetCommitResponse | Awaitable[OffsetCommitResponse]:
    """Stores the offsets of `request`, whose topics and partitions all exist."""
    group = request.group_id
    codes: dict[_Key, ErrorCode] = {}
    wanted: dict[_Key, int] = {}
    max_bytes = _metadata_max_bytes(ctx)
    for topic in request.topics:
        for p in topic.partitions:
            key = (topic.name, p.partition_index)
            if p.committed_metadata is not None and len(p.committed_metadata) > max_bytes:
                codes[key] = ErrorCode.OFFSET_METADATA_TOO_LARGE
                continue
            try:
                L.consumer_offset_path(group, topic.name, p.partition_index)
            except L.LayoutError as exc:
                log.warning("OffsetCommit v0 of group %r refused: %s", group, exc)
                codes[key] = ErrorCode.UNKNOWN_SERVER_ERROR
                continue
            wanted[key] = p.committed_offset

    def answer() -> OffsetCommitResponse:
        return OffsetCommitResponse(
            topics=[
                OffsetCommitResponseTopic(
                    topic.name,
                    [
                        OffsetCommitResponsePartition(
                            p.partition_index,
                            codes.get((topic.name, p.partition_index), ErrorCode.NONE),
                        )
                        for p in topic.partitions
                    ],
                )
                for topic in request.topics
            ]
        )

    cluster = ctx.broker.cluster
    if cluster is None:
        metadata = ctx.broker.metadata
        assert isinstance(metadata, LocalMetadata)
        try:
            metadata.set_consumer_offsets(group, wanted)
        except OSError as exc:
            log.error("OffsetCommit v0 of group %r not stored: %s", group, exc)
            codes.update(dict.fromkeys(wanted, ErrorCode.UNKNOWN_SERVER_ERROR))
        return answer()

    async def in_zookeeper() -> OffsetCommitResponse:
        from strom.cluster.zk.client import ZkError

        store = cluster.metadata.store
        for (topic, partition), offset in wanted.items():
            try:
                # Bounded: while ZooKeeper is unreachable its calls only wait for it.
                async with asyncio.timeout(cluster.client.connection_timeout_ms / 1000):
                    await store.set_consumer_offset(group, topic, partition, offset)
            except (ZkError, TimeoutError) as exc:
                log.warning("OffsetCommit v0 of group %r to ZooKeeper failed: %r", group, exc)
                codes[(topic, partition)] = ErrorCode.REQUEST_TIMED_OUT
        return answer()

    return in_zookeeper()


def fetch_v0(
    ctx: RequestContext, request: OffsetFetchRequest
) -> OffsetFetchResponse | Awaitable[OffsetFetchResponse]:
    """The stored offsets of the requested partitions; -1 (and no error) for a partition that
    does not exist or has none."""
    group = request.group_id
    keys = [(t.name, p) for t in request.topics or [] for p in t.partition_indexes]
    found: dict[_Key, int | ErrorCode] = {}

    def answer() -> OffsetFetchResponse:
        by_topic: dict[str, list[OffsetFetchResponsePartition]] = {}
        for topic, partition in keys:
            value = found.get((topic, partition), -1)
            error = value if isinstance(value, ErrorCode) else ErrorCode.NONE
            by_topic.setdefault(topic, []).append(
                OffsetFetchResponsePartition(
                    partition_index=partition,
                    committed_offset=-1 if isinstance(value, ErrorCode) else value,
                    metadata="",
                    error_code=error,
                )
            )
        return OffsetFetchResponse(
            topics=[OffsetFetchResponseTopic(name, parts) for name, parts in by_topic.items()]
        )

    # The group needs DESCRIBE (else every partition answers GROUP_AUTHORIZATION_FAILED),
    # each topic DESCRIBE (TOPIC_AUTHORIZATION_FAILED), as Kafka answers v0.
    group_allowed = authorize(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, group)
    topics_allowed = authorized_names(
        ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, (t for t, _ in keys)
    )
    readable: list[_Key] = []
    for topic, partition in keys:
        if not group_allowed:
            found[(topic, partition)] = ErrorCode.GROUP_AUTHORIZATION_FAILED
            continue
        if topic not in topics_allowed:
            found[(topic, partition)] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            continue
        if not _partition_exists(ctx, topic, partition):
            continue
        try:
            L.consumer_offset_path(group, topic, partition)
        except L.LayoutError:
            found[(topic, partition)] = ErrorCode.UNKNOWN_SERVER_ERROR
            continue
        readable.append((topic, partition))
    cluster = ctx.broker.cluster
    if cluster is None:
        metadata = ctx.broker.metadata
        assert isinstance(metadata, LocalMetadata)
        for topic, partition in readable:
            offset = metadata.consumer_offset(group, topic, partition)
            if offset is not None:
                found[(topic, partition)] = offset
        return answer()

    async def from_zookeeper() -> OffsetFetchResponse:
        from strom.cluster.zk.client import ZkError

        store = cluster.metadata.store
        for topic, partition in readable:
            try:
                async with asyncio.timeout(cluster.client.connection_timeout_ms / 1000):
                    offset = await store.consumer_offset(group, topic, partition)
            except (ZkError, TimeoutError) as exc:
                log.warning("OffsetFetch v0 of group %r from ZooKeeper failed: %r", group, exc)
                found[(topic, partition)] = ErrorCode.REQUEST_TIMED_OUT
                continue
            except L.LayoutError as exc:
                log.error("OffsetFetch v0 of group %r: %s", group, exc)
                found[(topic, partition)] = ErrorCode.UNKNOWN_SERVER_ERROR
                continue
            if offset is not None:
                found[(topic, partition)] = offset
        return answer()

    return from_zookeeper()
