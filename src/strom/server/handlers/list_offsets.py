"""ListOffsets (key 2), versions 1-10: offsets by timestamp and the special timestamps.

-2 earliest (log start offset), -1 latest (high watermark; last stable offset for
read_committed, isolation_level 1), -3 the record with the largest timestamp (KIP-734), -4 earliest local
(KIP-1005; all data is local, so the log start offset), -5 earliest pending upload (tiered
storage; none here, so not found). Any other timestamp finds the first record whose timestamp
is at least that; as in Kafka, an offset at or past the latest one (as above) is not found. Not done: v0 (removed in Kafka 4.0).
"""

from __future__ import annotations

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.list_offsets_request import ListOffsetsPartition, ListOffsetsRequest
from strom.protocol.messages.list_offsets_response import (
    ListOffsetsPartitionResponse,
    ListOffsetsResponse,
    ListOffsetsTopicResponse,
)
from strom.server.context import RequestContext
from strom.server.handlers.leader_epoch import check_leader_epoch
from strom.server.registry import handles

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
EARLIEST_PENDING_UPLOAD = -5
READ_COMMITTED = 1


def _lookup(
    ctx: RequestContext, topic: str, wanted: ListOffsetsPartition, read_committed: bool
) -> ListOffsetsPartitionResponse:
    response = ListOffsetsPartitionResponse(partition_index=wanted.partition_index)
    log = ctx.broker.partition_log(topic, wanted.partition_index)
    if log is None:
        response.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        return response
    cluster = ctx.broker.cluster
    if cluster is not None and not cluster.replicas.is_leader(topic, wanted.partition_index):
        response.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER
        return response
    epoch = ctx.broker.leader_epoch(topic, wanted.partition_index)
    fenced = check_leader_epoch(wanted.current_leader_epoch, epoch)
    if fenced != ErrorCode.NONE:
        response.error_code = fenced
        return response
    ts = wanted.timestamp
    last_fetchable = log.last_stable_offset if read_committed else log.high_watermark
    found: tuple[int, int] | None
    if ts in (EARLIEST, EARLIEST_LOCAL):
        found = (log.log_start_offset, -1)
    elif ts == LATEST:
        found = (last_fetchable, -1)
    elif ts == MAX_TIMESTAMP:
        found = log.latest_timestamp()
    elif ts == EARLIEST_PENDING_UPLOAD:
        found = None
    else:
        found = log.offset_for_timestamp(ts)
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


@handles(2, 1, 10)
def handle_list_offsets(ctx: RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse:
    return ListOffsetsResponse(
        topics=[
            ListOffsetsTopicResponse(
                name=topic.name,
                partitions=[
                    _lookup(ctx, topic.name, p, request.isolation_level == READ_COMMITTED)
                    for p in topic.partitions
                ],
            )
            for topic in request.topics
        ]
    )
