"""ShareFetch (78) v1-2 and ShareAcknowledge (79) v1-2: records for share consumers (KIP-932).

A ShareFetch carries the share session's epoch, the acknowledgements of records it fetched
before, and the partitions it adds to or forgets from its session; the answer holds whole
record batches and the ranges of them acquired for this member, each with its delivery
count. With nothing to acquire it long-polls (max_wait_ms, woken by appends and by
acknowledgements that make records available) as Fetch does. ShareAcknowledge carries
acknowledgements only. Epoch -1 closes the session: the member's remaining records are
released for the others.

Acknowledgement errors are per partition; a bad range or type is INVALID_REQUEST, a record
not acquired by this member INVALID_RECORD_STATE. Version 0 (Kafka 3.9's early access) is
not served. Renew acknowledgements (type 4, v2) extend a lock.

Authorization as Kafka's: both need READ on the group (GROUP_AUTHORIZATION_FAILED for the whole
request) and READ on each topic (TOPIC_AUTHORIZATION_FAILED for its partitions, which are
neither acknowledged nor fetched).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from strom.cluster.features import share_groups_enabled
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.share_acknowledge_request import ShareAcknowledgeRequest
from strom.protocol.messages.share_acknowledge_response import (
    LeaderIdAndEpoch as AckLeaderIdAndEpoch,
)
from strom.protocol.messages.share_acknowledge_response import (
    PartitionData as AckPartitionData,
)
from strom.protocol.messages.share_acknowledge_response import (
    ShareAcknowledgeResponse,
    ShareAcknowledgeTopicResponse,
)
from strom.protocol.messages.share_fetch_request import ShareFetchRequest
from strom.protocol.messages.share_fetch_response import (
    AcquiredRecords,
    LeaderIdAndEpoch,
    PartitionData,
    ShareFetchableTopicResponse,
    ShareFetchResponse,
)
from strom.runtime.coordinator_runtime import then
from strom.runtime.share_runtime import (
    FINAL_EPOCH,
    INITIAL_EPOCH,
    ShareRead,
    ShareRuntime,
    ShareSession,
    TopicPartitionKey,
)
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize, authorized_names
from strom.server.context import RequestContext
from strom.server.registry import handles
from strom.storage.errors import NotCachedError

AckBatches = list[tuple[int, int, list[int]]]
T = TypeVar("T")


def _no_leader() -> LeaderIdAndEpoch:
    return LeaderIdAndEpoch(leader_id=-1, leader_epoch=-1)


def _topic_key(ctx: RequestContext, topic_id: uuid.UUID, partition: int) -> TopicPartitionKey:
    found = ctx.broker.metadata.topic_by_id(topic_id)
    return (topic_id, found.name if found is not None else "", partition)


def _session_for(
    ctx: RequestContext, shares: ShareRuntime, group_id: str, member_id: str, epoch: int
) -> tuple[ShareSession | None, ErrorCode]:
    if epoch == INITIAL_EPOCH:
        session = shares.open_session(group_id, member_id, ctx.connection_id)
        if session is None:
            return None, ErrorCode.SHARE_SESSION_LIMIT_REACHED
        return session, ErrorCode.NONE
    session = shares.session(group_id, member_id)
    if session is None:
        return None, ErrorCode.SHARE_SESSION_NOT_FOUND
    if epoch != FINAL_EPOCH and epoch != session.epoch:
        return None, ErrorCode.INVALID_SHARE_SESSION_EPOCH
    return session, ErrorCode.NONE


def _acknowledge_all(
    ctx: RequestContext,
    shares: ShareRuntime,
    group_id: str,
    member_id: str,
    acks: dict[TopicPartitionKey, AckBatches],
    renew_only: bool,
    denied: frozenset[str] = frozenset(),
) -> dict[TopicPartitionKey, ErrorCode]:
    results: dict[TopicPartitionKey, ErrorCode] = {}
    for key, batches in acks.items():
        if not key[1]:
            results[key] = ErrorCode.UNKNOWN_TOPIC_ID
            continue
        if key[1] in denied:
            results[key] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            continue
        if renew_only and any(t != 4 for _, _, types in batches for t in types):
            results[key] = ErrorCode.INVALID_REQUEST
            continue
        results[key] = code = shares.acknowledge(group_id, member_id, key, batches)
        if code == ErrorCode.NONE:
            ctx.broker.metrics.share_acknowledged(batches)
    return results


# -- ShareFetch ----------------------------------------------------------------------------


@handles(78, 1, 2)
def handle_share_fetch(
    ctx: RequestContext, request: ShareFetchRequest
) -> ShareFetchResponse | Awaitable[ShareFetchResponse]:
    shares: ShareRuntime = ctx.broker.shares
    lock_ms = shares.lock_duration_for(request.group_id or "")

    def refuse(code: ErrorCode, message: str | None = None) -> ShareFetchResponse:
        return ShareFetchResponse(
            error_code=code, error_message=message, acquisition_lock_timeout_ms=lock_ms
        )

    if not share_groups_enabled(ctx.broker.metadata.finalized_features):
        return refuse(ErrorCode.UNSUPPORTED_VERSION)
    group_id = request.group_id or ""
    member_id = request.member_id or ""
    if not group_id or not member_id:
        return refuse(ErrorCode.INVALID_REQUEST, "GroupId and MemberId must be set.")
    if not authorize(ctx, AclOperation.READ, ResourceType.GROUP, group_id):
        return refuse(ErrorCode.GROUP_AUTHORIZATION_FAILED)
    epoch = request.share_session_epoch
    acks: dict[TopicPartitionKey, AckBatches] = {}
    wanted: list[TopicPartitionKey] = []
    for topic in request.topics:
        for p in topic.partitions:
            key = _topic_key(ctx, topic.topic_id, p.partition_index)
            wanted.append(key)
            if p.acknowledgement_batches:
                acks.setdefault(key, []).extend(
                    (b.first_offset, b.last_offset, list(b.acknowledge_types))
                    for b in p.acknowledgement_batches
                )
    if epoch == INITIAL_EPOCH and acks:
        return refuse(ErrorCode.INVALID_REQUEST, "Acknowledgements need an open share session.")
    session, error = _session_for(ctx, shares, group_id, member_id, epoch)
    if session is None:
        return refuse(error)
    known = session
    _resolve(ctx, session)  # before the topics are authorized
    denied = _denied_topics(ctx, [*wanted, *acks, *session.partitions.values()])
    if denied:
        wanted = [k for k in wanted if k[1] not in denied]
        for key in list(session.partitions.values()):
            if key[1] in denied:
                session.partitions.pop((key[0], key[2]), None)

    def acknowledged() -> ShareFetchResponse | Awaitable[ShareFetchResponse]:
        ack_results = _acknowledge_all(
            ctx,
            shares,
            group_id,
            member_id,
            acks,
            ctx.api_version >= 2 and request.is_renew_ack,
            denied,
        )
        pending = _persist(shares, group_id, ack_results)

        def rest() -> ShareFetchResponse | Awaitable[ShareFetchResponse]:
            return _after_acks(ctx, shares, request, known, wanted, ack_results)

        if pending:
            return _after_persisted(pending, ack_results, rest)
        return rest()

    # The share partitions' state comes from their share coordinator first (those of topics
    # the member may not read are not loaded).
    loadable = [k for k in [*acks, *wanted, *session.partitions.values()] if k[1] not in denied]
    loading = shares.prepare(group_id, loadable)
    answer = _after_loaded(loading, acknowledged) if loading is not None else acknowledged()
    if not denied:
        return answer
    refused = [
        _topic_key(ctx, t.topic_id, p.partition_index)
        for t in request.topics
        for p in t.partitions
        if _topic_key(ctx, t.topic_id, p.partition_index)[1] in denied
    ]
    return then(answer, lambda response: _with_refused(response, refused))


async def _after_loaded(loading: Awaitable[None], rest: Callable[[], T | Awaitable[T]]) -> T:
    await loading
    answer = rest()
    if isinstance(answer, Awaitable):
        return await answer
    return answer


def _denied_topics(ctx: RequestContext, keys: list[TopicPartitionKey]) -> frozenset[str]:
    if ctx.broker.authorizer is None:
        return frozenset()
    names = {k[1] for k in keys if k[1]}
    return frozenset(names - authorized_names(ctx, AclOperation.READ, ResourceType.TOPIC, names))


def _with_refused(
    response: ShareFetchResponse, refused: list[TopicPartitionKey]
) -> ShareFetchResponse:
    """The partitions of topics the member may not READ, answered TOPIC_AUTHORIZATION_FAILED."""
    topics = {t.topic_id: t for t in response.responses}
    for topic_id, _, partition in refused:
        topic = topics.get(topic_id)
        if topic is None:
            topic = topics[topic_id] = ShareFetchableTopicResponse(topic_id, [])
            response.responses.append(topic)
        found = next((p for p in topic.partitions if p.partition_index == partition), None)
        if found is None:
            found = PartitionData(
                partition_index=partition, current_leader=_no_leader(), records=b""
            )
            topic.partitions.append(found)
        found.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
    return response


def _persist(
    shares: ShareRuntime, group_id: str, results: dict[TopicPartitionKey, ErrorCode]
) -> list[tuple[TopicPartitionKey, Awaitable[ErrorCode]]]:
    """Write the state of every partition whose acknowledgements applied; the ones whose
    write is not committed yet are returned to be waited for."""
    pending: list[tuple[TopicPartitionKey, Awaitable[ErrorCode]]] = []
    for key, code in results.items():
        if code != ErrorCode.NONE:
            continue
        written = shares.persist(group_id, key)
        if isinstance(written, Awaitable):
            pending.append((key, written))
        elif written != ErrorCode.NONE:
            results[key] = written
    return pending


async def _after_persisted(
    pending: list[tuple[TopicPartitionKey, Awaitable[ErrorCode]]],
    results: dict[TopicPartitionKey, ErrorCode],
    rest: Callable[[], T | Awaitable[T]],
) -> T:
    for key, written in pending:
        code = await written
        if code != ErrorCode.NONE:
            results[key] = code
    answer = rest()
    if isinstance(answer, Awaitable):
        return await answer
    return answer


def _after_acks(
    ctx: RequestContext,
    shares: ShareRuntime,
    request: ShareFetchRequest,
    session: ShareSession,
    wanted: list[TopicPartitionKey],
    ack_results: dict[TopicPartitionKey, ErrorCode],
) -> ShareFetchResponse | Awaitable[ShareFetchResponse]:
    group_id, member_id = session.group_id, session.member_id
    lock_ms = shares.lock_duration_for(group_id)
    epoch = request.share_session_epoch
    if epoch == FINAL_EPOCH:
        shares.close_session(session)
        return _fetch_response(ack_results, {}, lock_ms)
    for key in wanted:
        session.partitions[(key[0], key[2])] = key
    for forgotten in request.forgotten_topics_data:
        for partition in forgotten.partitions:
            session.partitions.pop((forgotten.topic_id, partition), None)
    if epoch != INITIAL_EPOCH:
        session.next_epoch()
    if request.max_records <= 0 or (ctx.api_version >= 2 and request.is_renew_ack):
        return _fetch_response(ack_results, {}, lock_ms)
    keys = list(session.partitions.values())
    try:
        reads = _read_all(shares, group_id, member_id, keys, request, nowait=True)
    except NotCachedError:
        return _read_in_pool(ctx, shares, group_id, member_id, keys, request, ack_results)
    if _anything(reads) or request.max_wait_ms <= 0 or not keys:
        return _fetch_response(ack_results, reads, lock_ms)
    return _long_poll(ctx, shares, group_id, member_id, keys, request, ack_results)


def _resolve(ctx: RequestContext, session: ShareSession) -> None:
    """Look up again the names of the session's topics this broker's metadata did not know
    when their partitions were added: a client keeps such a partition in its session without
    naming it again, so an unresolved name must not stay unresolved."""
    for where, key in list(session.partitions.items()):
        if not key[1]:
            session.partitions[where] = _topic_key(ctx, key[0], key[2])


def _read_all(
    shares: ShareRuntime,
    group_id: str,
    member_id: str,
    keys: list[TopicPartitionKey],
    request: ShareFetchRequest,
    nowait: bool,
) -> dict[TopicPartitionKey, ShareRead]:
    reads: dict[TopicPartitionKey, ShareRead] = {}
    budget = request.max_bytes if request.max_bytes > 0 else 0x7FFFFFFF
    records_left = request.max_records
    for key in keys:
        if not key[1]:
            reads[key] = ShareRead(ErrorCode.UNKNOWN_TOPIC_ID)
            continue
        if budget <= 0 or records_left <= 0:
            break
        read = shares.read(group_id, member_id, key, records_left, budget, nowait)
        reads[key] = read
        budget -= len(read.records)
        records_left -= sum(r.last_offset - r.first_offset + 1 for r in read.acquired)
    return reads


def _anything(reads: dict[TopicPartitionKey, ShareRead]) -> bool:
    return any(r.acquired or r.error != ErrorCode.NONE for r in reads.values())


async def _read_in_pool(
    ctx: RequestContext,
    shares: ShareRuntime,
    group_id: str,
    member_id: str,
    keys: list[TopicPartitionKey],
    request: ShareFetchRequest,
    ack_results: dict[TopicPartitionKey, ErrorCode],
) -> ShareFetchResponse:
    """The data is not all in the page cache: read it in the worker pool, acquire on the loop."""
    loop = asyncio.get_running_loop()
    # Warm the cache from a worker (the reads below then find the pages), then acquire on the
    # event loop, where every other change to the share partitions happens.
    await loop.run_in_executor(ctx.broker.io, _warm, ctx, keys, shares, group_id)
    reads = _read_all(shares, group_id, member_id, keys, request, nowait=False)
    if _anything(reads) or request.max_wait_ms <= 0:
        return _fetch_response(ack_results, reads, shares.lock_duration_for(group_id))
    return await _long_poll(ctx, shares, group_id, member_id, keys, request, ack_results)


def _warm(
    ctx: RequestContext, keys: list[TopicPartitionKey], shares: ShareRuntime, group_id: str
) -> None:
    for _, topic, partition in keys:
        log = ctx.broker.partition_log(topic, partition)
        sp = shares.partitions.get((group_id, topic, partition))
        if log is None or sp is None:
            continue
        start = sp.first_available()
        offset = sp.end_offset if start is None else start
        try:
            log.read(offset, 1 << 20, log.high_watermark, True)
        except Exception:
            continue


async def _long_poll(
    ctx: RequestContext,
    shares: ShareRuntime,
    group_id: str,
    member_id: str,
    keys: list[TopicPartitionKey],
    request: ShareFetchRequest,
    ack_results: dict[TopicPartitionKey, ErrorCode],
) -> ShareFetchResponse:
    def ready() -> bool:
        return any(shares.readable(group_id, key) for key in keys)

    await ctx.broker.fetch_purgatory.wait(
        [(topic, partition) for _, topic, partition in keys], ready, request.max_wait_ms
    )
    try:
        reads = _read_all(shares, group_id, member_id, keys, request, nowait=True)
    except NotCachedError:
        return await _read_in_pool(
            ctx,
            shares,
            group_id,
            member_id,
            keys,
            _no_wait(request),
            ack_results,
        )
    return _fetch_response(ack_results, reads, shares.lock_duration_for(group_id))


def _no_wait(request: ShareFetchRequest) -> ShareFetchRequest:
    request.max_wait_ms = 0
    return request


def _fetch_response(
    acks: dict[TopicPartitionKey, ErrorCode],
    reads: dict[TopicPartitionKey, ShareRead],
    lock_ms: int,
) -> ShareFetchResponse:
    topics: dict[uuid.UUID, ShareFetchableTopicResponse] = {}
    for key in [*acks, *(k for k in reads if k not in acks)]:
        read = reads.get(key)
        ack = acks.get(key)
        if ack is None and (read is None or (not read.acquired and read.error == ErrorCode.NONE)):
            continue
        topic_id, _, partition = key
        topic = topics.setdefault(topic_id, ShareFetchableTopicResponse(topic_id, []))
        topic.partitions.append(
            PartitionData(
                partition_index=partition,
                error_code=read.error if read is not None else ErrorCode.NONE,
                acknowledge_error_code=ack if ack is not None else ErrorCode.NONE,
                current_leader=_no_leader(),
                records=read.records if read is not None else b"",
                acquired_records=[
                    AcquiredRecords(r.first_offset, r.last_offset, r.delivery_count)
                    for r in (read.acquired if read is not None else [])
                ],
            )
        )
    return ShareFetchResponse(responses=list(topics.values()), acquisition_lock_timeout_ms=lock_ms)


# -- ShareAcknowledge ------------------------------------------------------------------------


@handles(79, 1, 2)
def handle_share_acknowledge(
    ctx: RequestContext, request: ShareAcknowledgeRequest
) -> ShareAcknowledgeResponse | Awaitable[ShareAcknowledgeResponse]:
    shares: ShareRuntime = ctx.broker.shares
    lock_ms = shares.lock_duration_for(request.group_id or "")
    if not share_groups_enabled(ctx.broker.metadata.finalized_features):
        return ShareAcknowledgeResponse(
            error_code=ErrorCode.UNSUPPORTED_VERSION, acquisition_lock_timeout_ms=lock_ms
        )
    group_id = request.group_id or ""
    member_id = request.member_id or ""
    if not group_id or not member_id:
        return ShareAcknowledgeResponse(
            error_code=ErrorCode.INVALID_REQUEST,
            error_message="GroupId and MemberId must be set.",
            acquisition_lock_timeout_ms=lock_ms,
        )
    if not authorize(ctx, AclOperation.READ, ResourceType.GROUP, group_id):
        return ShareAcknowledgeResponse(
            error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED, acquisition_lock_timeout_ms=lock_ms
        )
    epoch = request.share_session_epoch
    if epoch == INITIAL_EPOCH:
        return ShareAcknowledgeResponse(
            error_code=ErrorCode.INVALID_SHARE_SESSION_EPOCH, acquisition_lock_timeout_ms=lock_ms
        )
    session, error = _session_for(ctx, shares, group_id, member_id, epoch)
    if session is None:
        return ShareAcknowledgeResponse(error_code=error, acquisition_lock_timeout_ms=lock_ms)
    acks: dict[TopicPartitionKey, AckBatches] = {}
    for topic in request.topics:
        for p in topic.partitions:
            key = _topic_key(ctx, topic.topic_id, p.partition_index)
            acks.setdefault(key, []).extend(
                (b.first_offset, b.last_offset, list(b.acknowledge_types))
                for b in p.acknowledgement_batches
            )
    known = session
    denied = _denied_topics(ctx, list(acks))

    def acknowledged() -> ShareAcknowledgeResponse | Awaitable[ShareAcknowledgeResponse]:
        results = _acknowledge_all(
            ctx,
            shares,
            group_id,
            member_id,
            acks,
            ctx.api_version >= 2 and request.is_renew_ack,
            denied,
        )
        # Written before a final epoch closes the session (which releases the rest).
        pending = _persist(shares, group_id, results)
        if epoch == FINAL_EPOCH:
            shares.close_session(known)
        else:
            known.next_epoch()
        if pending:
            return _after_persisted(pending, results, lambda: _ack_response(results, lock_ms))
        return _ack_response(results, lock_ms)

    loading = shares.prepare(group_id, [k for k in acks if k[1] not in denied])
    if loading is not None:
        return _after_loaded(loading, acknowledged)
    return acknowledged()


def _ack_response(
    results: dict[TopicPartitionKey, ErrorCode], lock_ms: int
) -> ShareAcknowledgeResponse:
    topics: dict[uuid.UUID, ShareAcknowledgeTopicResponse] = {}
    for (topic_id, _, partition), code in results.items():
        topics.setdefault(topic_id, ShareAcknowledgeTopicResponse(topic_id, [])).partitions.append(
            AckPartitionData(
                partition_index=partition,
                error_code=code,
                current_leader=AckLeaderIdAndEpoch(leader_id=-1, leader_epoch=-1),
            )
        )
    return ShareAcknowledgeResponse(
        responses=list(topics.values()), acquisition_lock_timeout_ms=lock_ms
    )
