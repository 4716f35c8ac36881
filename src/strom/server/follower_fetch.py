"""Cluster mode: Fetch requests from follower replicas (replica_id >= 0, or ReplicaState from v15).

The consumer path (handlers/fetch.py) reads up to the high watermark; a follower reads up to
the log end, because its fetch offset is how the leader learns what it has (and so moves the
high watermark). Per partition, as Kafka's leader does: the epoch and leadership checks of
`ReplicaState.check_follower_fetch`; from v12 the diverging-epoch check against the
follower's last fetched epoch (a diverging follower gets the epoch's end and no records, and
its fetch is not recorded); then the read, then `update_follower_fetch_state` (which may
expand the ISR and move the high watermark).

Replication quota (quota/replication.py): a replica the topic's
leader.replication.throttled.replicas names for this broker that is not in the ISR gets no
records while leader.replication.throttled.rate is exceeded (its fetch state is still
updated, and its partition growing does not end a waiting fetch); the records answered for
throttled replicas count towards the rate.

Sessionless only (followers here send session id 0); a fetch with nothing to return waits in
the fetch purgatory until one of its partitions grows or max_wait_ms passes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.fetch_request import FetchPartition, FetchRequest
from strom.protocol.messages.fetch_response import (
    EpochEndOffset,
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from strom.replication.leader_epoch_handler import LocalEpochs, diverging_epoch
from strom.server.context import RequestContext
from strom.storage.partition_log import OffsetOutOfRangeError

if TYPE_CHECKING:
    from strom.runtime.replica_manager import ReplicaManager

FIRST_TOPIC_ID_VERSION = 13
FIRST_REPLICA_STATE_VERSION = 15
FIRST_DIVERGING_EPOCH_VERSION = 12


def follower_id(request: FetchRequest, version: int) -> int:
    """The fetching replica's broker id, or -1 for a consumer."""
    if version >= FIRST_REPLICA_STATE_VERSION:
        return request.replica_state.replica_id
    return request.replica_id


@dataclass(slots=True)
class _Part:
    topic: str
    topic_id: uuid.UUID
    request: FetchPartition
    unknown_id: bool = False


def _parts(replicas: ReplicaManager, request: FetchRequest, version: int) -> list[_Part]:
    metadata = replicas.metadata
    parts: list[_Part] = []
    for topic in request.topics:
        name, topic_id, unknown = topic.topic, topic.topic_id, False
        if version >= FIRST_TOPIC_ID_VERSION:
            found = metadata.topic_by_id(topic.topic_id)
            name, unknown = (found.name, False) if found else ("", True)
        for p in topic.partitions:
            parts.append(_Part(name, topic_id, p, unknown))
    return parts


def _read(
    replicas: ReplicaManager, replica_id: int, part: _Part, version: int, limit: int, now_ms: int
) -> PartitionData:
    req = part.request
    data = PartitionData(
        partition_index=req.partition,
        error_code=ErrorCode.NONE,
        high_watermark=-1,
        last_stable_offset=-1,
        log_start_offset=-1,
        aborted_transactions=None,
        preferred_read_replica=-1,
        records=b"",
    )
    if part.unknown_id:
        data.error_code = ErrorCode.UNKNOWN_TOPIC_ID
        return data
    key = (part.topic, req.partition)
    plog = replicas.broker.logs.get(*key)
    state = replicas.states.get(key)
    if plog is None or state is None:
        data.error_code = (
            ErrorCode.NOT_LEADER_OR_FOLLOWER
            if replicas.metadata.get_topic(part.topic) is not None
            else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        )
        return data
    error = state.check_follower_fetch(replica_id, req.current_leader_epoch)
    if error != ErrorCode.NONE:
        data.error_code = error
        return data
    data.high_watermark = plog.high_watermark
    data.last_stable_offset = plog.last_stable_offset
    data.log_start_offset = plog.log_start_offset
    if version >= FIRST_DIVERGING_EPOCH_VERSION and req.last_fetched_epoch >= 0:
        local = LocalEpochs(state.leader_epoch, state.is_leader, plog.end_offset_for_epoch)
        check = diverging_epoch(
            local,
            req.current_leader_epoch,
            req.last_fetched_epoch,
            req.fetch_offset,
            plog.log_start_offset,
        )
        if check.error != ErrorCode.NONE:
            data.error_code = check.error
            return data
        if check.diverging is not None:
            epoch, end_offset = check.diverging
            data.diverging_epoch = EpochEndOffset(epoch=epoch, end_offset=end_offset)
            return data
    log_end = plog.log_end_offset
    if replicas.leader_quota.should_throttle(
        part.topic, req.partition, replica_id in state.isr, now_ms
    ):
        replicas.leader_quota.throttled_fetches += 1
        replicas.handle_events(
            key,
            state.update_follower_fetch_state(
                replica_id, req.fetch_offset, req.log_start_offset, log_end
            ),
        )
        data.high_watermark = plog.high_watermark
        return data
    try:
        result = plog.read(
            req.fetch_offset,
            max_bytes=max(min(req.partition_max_bytes, limit), 0),
            max_offset=log_end,
            min_one_batch=True,
        )
    except OffsetOutOfRangeError:
        data.error_code = ErrorCode.OFFSET_OUT_OF_RANGE
        return data
    data.records = result.records
    replicas.handle_events(
        key,
        state.update_follower_fetch_state(
            replica_id, req.fetch_offset, req.log_start_offset, log_end
        ),
    )
    data.high_watermark = plog.high_watermark
    return data


def _respond(
    replicas: ReplicaManager, results: list[tuple[_Part, PartitionData]], version: int
) -> FetchResponse:
    quota = replicas.leader_quota
    throttled_bytes = sum(
        len(data.records)
        for part, data in results
        if data.records and quota.is_throttled(part.topic, data.partition_index)
    )
    quota.record(throttled_bytes, replicas.broker.clock.monotonic_ms())
    topics: list[FetchableTopicResponse] = []
    by_topic: dict[tuple[str, uuid.UUID], FetchableTopicResponse] = {}
    for part, data in results:
        key = (part.topic, part.topic_id)
        topic = by_topic.get(key)
        if topic is None:
            topic = FetchableTopicResponse(
                topic=part.topic if version < FIRST_TOPIC_ID_VERSION else "",
                topic_id=part.topic_id,
                partitions=[],
            )
            by_topic[key] = topic
            topics.append(topic)
        topic.partitions.append(data)
    return FetchResponse(error_code=ErrorCode.NONE, session_id=0, responses=topics)


def _read_all(
    replicas: ReplicaManager,
    replica_id: int,
    parts: list[_Part],
    request: FetchRequest,
    version: int,
) -> tuple[list[tuple[_Part, PartitionData]], int, bool]:
    total = 0
    errors = False
    results: list[tuple[_Part, PartitionData]] = []
    now_ms = replicas.broker.clock.monotonic_ms()
    for part in parts:
        data = _read(replicas, replica_id, part, version, request.max_bytes - total, now_ms)
        if data.error_code != ErrorCode.NONE or data.diverging_epoch.epoch >= 0:
            errors = True
        if data.records:
            total += len(data.records)
        results.append((part, data))
    return results, total, errors


async def handle_follower_fetch(
    ctx: RequestContext, request: FetchRequest, replicas: ReplicaManager
) -> FetchResponse:
    version = ctx.api_version
    replica_id = follower_id(request, version)
    parts = _parts(replicas, request, version)
    results, total, errors = _read_all(replicas, replica_id, parts, request, version)
    if errors or total >= request.min_bytes or request.max_wait_ms <= 0 or not parts:
        return _respond(replicas, results, version)
    logs = replicas.broker.logs
    ends = {
        (p.topic, p.request.partition): (plog.log_end_offset if plog else -1)
        for p in parts
        for plog in [logs.get(p.topic, p.request.partition)]
    }

    quota = replicas.leader_quota
    clock = replicas.broker.clock

    def grown() -> bool:
        for key, end in ends.items():
            plog = logs.get(*key)
            state = replicas.states.get(key)
            if plog is None or state is None or not state.is_leader:
                return True
            # A replica held back by the replication quota would get nothing yet: its
            # partition's growth does not end the wait (Kafka's DelayedFetch).
            if plog.log_end_offset > end and not quota.should_throttle(
                key[0], key[1], replica_id in state.isr, clock.monotonic_ms()
            ):
                return True
        return False

    await replicas.broker.fetch_purgatory.wait(list(ends), grown, request.max_wait_ms)
    results, _, _ = _read_all(replicas, replica_id, parts, request, version)
    return _respond(replicas, results, version)
