"""ListOffsets (key 2), versions 0-10: offsets by timestamp and the special timestamps.

v1+: -2 earliest (log start offset), -1 latest (high watermark; last stable offset for
read_committed, isolation_level 1; the log end offset for a replica's or a debugging request),
-3 the record with the largest timestamp (KIP-734, v7+), -4 earliest local (KIP-1005, v8+; all
data is local, so the log start offset), -5 earliest pending upload (v10+; tiered storage, none
here, so not found). A special timestamp older than its version, or any other negative one,
answers UNSUPPORTED_VERSION; a partition named twice, INVALID_REQUEST. Any other timestamp
finds the first record whose timestamp is at least that; as in Kafka, an offset at or past the
latest one (as above) is not found.

v0 (message format v0 had no timestamps) answers a list of offsets, newest first: segment
start offsets chosen by the segment files' modification times, up to max_num_offsets
(`storage.log_reads.offsets_before`); only -1 and -2 of the special timestamps. For a consumer
(replica id -1) offsets past the high watermark are replaced by the high watermark.
"""

from __future__ import annotations

from collections import Counter

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest
from strom.protocol.messages.list_offsets_response import (
    ListOffsetsPartitionResponse,
    ListOffsetsResponse,
    ListOffsetsTopicResponse,
)
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorized_names
from strom.server.context import RequestContext
from strom.server.handlers.leader_epoch import check_leader_epoch
from strom.server.registry import handles
from strom.storage import log_reads
from strom.storage.partition_log import PartitionLog

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
EARLIEST_PENDING_UPLOAD = -5
READ_COMMITTED = 1
CONSUMER_REPLICA_ID = -1
DEBUGGING_REPLICA_ID = -2
# The first version that may ask for each special timestamp.
MIN_VERSION_OF = {
    EARLIEST: 1,
    LATEST: 1,
    MAX_TIMESTAMP: 7,
    EARLIEST_LOCAL: 8,
    EARLIEST_PENDING_UPLOAD: 10,
}


def _leader_log(
    ctx: RequestContext, request: ListOffsetsRequest, topic: str, partition: int
) -> PartitionLog | ErrorCode:
    log = ctx.broker.partition_log(topic, partition)
    if log is None:
        return ctx.broker.missing_log_error(topic, partition)
    cluster = ctx.broker.cluster
    if (
        cluster is not None
        and request.replica_id != DEBUGGING_REPLICA_ID
        and not cluster.replicas.is_leader(topic, partition)
    ):
        return ErrorCode.NOT_LEADER_OR_FOLLOWER
    return log


def _lookup(
    ctx: RequestContext, request: ListOffsetsRequest, topic: str, wanted: ListOffsetsPartition
) -> ListOffsetsPartitionResponse:
    response = ListOffsetsPartitionResponse(partition_index=wanted.partition_index)
    ts = wanted.timestamp
    if ts < 0 and MIN_VERSION_OF.get(ts, 1 << 15) > ctx.api_version:
        response.error_code = ErrorCode.UNSUPPORTED_VERSION
        return response
    log = _leader_log(ctx, request, topic, wanted.partition_index)
    if isinstance(log, ErrorCode):
        response.error_code = log
        return response
    epoch = ctx.broker.leader_epoch(topic, wanted.partition_index)
    fenced = check_leader_epoch(wanted.current_leader_epoch, epoch)
    if fenced != ErrorCode.NONE:
        response.error_code = fenced
        return response
    if request.replica_id != CONSUMER_REPLICA_ID:
        last_fetchable = log.log_end_offset
    elif request.isolation_level == READ_COMMITTED:
        last_fetchable = log.last_stable_offset
    else:
        last_fetchable = log.high_watermark
    found: tuple[int, int] | None
    if ts in (EARLIEST, EARLIEST_LOCAL):
        found = (log.log_start_offset, -1)
    elif ts == LATEST:
        found = (last_fetchable, -1)
    elif ts == EARLIEST_PENDING_UPLOAD:
        found = None
    else:
        try:
            found = log.latest_timestamp() if ts == MAX_TIMESTAMP else log.offset_for_timestamp(ts)
        except OSError as exc:  # this partition fails, the others are answered
            response.error_code = ctx.broker.storage_failure(f"searching {log.name}", exc, log).code
            return response
    if found is None:
        return response
    offset, timestamp = found
    if (ts >= 0 or ts == MAX_TIMESTAMP) and offset >= last_fetchable:
        # Records past the high watermark (or the LSO) are not visible to such consumers yet.
        return response
    response.offset = offset
    response.timestamp = timestamp
    response.leader_epoch = epoch
    return response


def _lookup_v0(
    ctx: RequestContext, request: ListOffsetsRequest, topic: str, wanted: ListOffsetsPartition
) -> ListOffsetsPartitionResponse:
    response = ListOffsetsPartitionResponse(partition_index=wanted.partition_index)
    if wanted.timestamp < EARLIEST:
        response.error_code = ErrorCode.UNSUPPORTED_VERSION
        return response
    log = _leader_log(ctx, request, topic, wanted.partition_index)
    if isinstance(log, ErrorCode):
        response.error_code = log
        return response
    if wanted.max_num_offsets < 0:
        # Kafka fails such a request on a negative array size, answering this code.
        response.error_code = ErrorCode.UNKNOWN_SERVER_ERROR
        return response
    offsets = log_reads.offsets_before(
        log.segments,
        log.log_start_offset,
        wanted.timestamp,
        wanted.max_num_offsets,
        ctx.broker.clock.now_ms(),
    )
    high_watermark = log.high_watermark
    if request.replica_id == CONSUMER_REPLICA_ID and any(o > high_watermark for o in offsets):
        offsets = [high_watermark, *(o for o in offsets if o <= high_watermark)]
    response.old_style_offsets = offsets
    return response


def _refused(partition_index: int) -> ListOffsetsPartitionResponse:
    return ListOffsetsPartitionResponse(
        partition_index=partition_index,
        error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED,
        timestamp=-1,
        offset=-1,
    )


@handles(2, 0, 10)
def handle_list_offsets(ctx: RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse:
    # DESCRIBE on each topic, checked before anything else about it.
    allowed = authorized_names(
        ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    if ctx.api_version == 0:
        return ListOffsetsResponse(
            topics=[
                ListOffsetsTopicResponse(
                    name=topic.name,
                    partitions=[
                        _lookup_v0(ctx, request, topic.name, p)
                        if topic.name in allowed
                        else _refused(p.partition_index)
                        for p in topic.partitions
                    ],
                )
                for topic in request.topics
            ]
        )
    named = Counter((t.name, p.partition_index) for t in request.topics for p in t.partitions)
    return ListOffsetsResponse(
        topics=[
            ListOffsetsTopicResponse(
                name=topic.name,
                partitions=[
                    _refused(p.partition_index)
                    if topic.name not in allowed
                    else ListOffsetsPartitionResponse(
                        partition_index=p.partition_index, error_code=ErrorCode.INVALID_REQUEST
                    )
                    if named[(topic.name, p.partition_index)] > 1
                    else _lookup(ctx, request, topic.name, p)
                    for p in topic.partitions
                ],
            )
            for topic in request.topics
        ]
    )
