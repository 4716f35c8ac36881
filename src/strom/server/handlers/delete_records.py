"""DeleteRecords (key 21), versions 0-2: move a partition's log start offset forward.

The requested offset becomes the new log start offset; -1 means the high watermark. An offset
past the high watermark (or another negative value) answers OFFSET_OUT_OF_RANGE; an offset
below the current log start offset changes nothing. The answer's low watermark is the log start
offset afterwards (a single broker is the only replica, so there is nothing to wait for and the
timeout is not used). Segments wholly below the new start are removed by the storage layer;
waiting fetches are woken so that they see the new log start offset. Records of internal topics
cannot be deleted (INVALID_TOPIC_EXCEPTION), nor those of a topic whose cleanup.policy lacks
"delete" (POLICY_VIOLATION), as in Kafka.
"""

from __future__ import annotations

from strom.cluster.topic_names import INTERNAL_TOPICS
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.delete_records_request import (
    DeleteRecordsPartition,
    DeleteRecordsRequest,
)
from strom.protocol.messages.delete_records_response import (
    DeleteRecordsPartitionResult,
    DeleteRecordsResponse,
    DeleteRecordsTopicResult,
)
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorized_names
from strom.server.context import RequestContext
from strom.server.registry import handles

HIGH_WATERMARK = -1
NO_LOW_WATERMARK = -1


def _delete(
    ctx: RequestContext, topic: str, wanted: DeleteRecordsPartition
) -> DeleteRecordsPartitionResult:
    result = DeleteRecordsPartitionResult(
        partition_index=wanted.partition_index,
        low_watermark=NO_LOW_WATERMARK,
        error_code=ErrorCode.NONE,
    )
    broker = ctx.broker
    log = broker.partition_log(topic, wanted.partition_index)
    if log is None:
        result.error_code = broker.missing_log_error(topic, wanted.partition_index)
        return result
    if topic in INTERNAL_TOPICS:
        result.error_code = ErrorCode.INVALID_TOPIC_EXCEPTION
        return result
    if not broker.log_config(topic).delete:
        result.error_code = ErrorCode.POLICY_VIOLATION
        return result
    offset = log.high_watermark if wanted.offset == HIGH_WATERMARK else wanted.offset
    if offset < 0 or offset > log.high_watermark:
        result.error_code = ErrorCode.OFFSET_OUT_OF_RANGE
        return result
    if offset > log.log_start_offset:
        log.delete_records_before(offset)
        broker.fetch_purgatory.notify((topic, wanted.partition_index))
    result.low_watermark = log.log_start_offset
    return result


@handles(21, 0, 2)
def handle_delete_records(
    ctx: RequestContext, request: DeleteRecordsRequest
) -> DeleteRecordsResponse:
    # DELETE on each topic (TOPIC_AUTHORIZATION_FAILED before anything else), as Kafka's.
    allowed = authorized_names(
        ctx, AclOperation.DELETE, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    return DeleteRecordsResponse(
        topics=[
            DeleteRecordsTopicResult(
                name=topic.name,
                partitions=[
                    _delete(ctx, topic.name, p)
                    if topic.name in allowed
                    else DeleteRecordsPartitionResult(
                        partition_index=p.partition_index,
                        low_watermark=-1,
                        error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                    )
                    for p in topic.partitions
                ],
            )
            for topic in request.topics
        ]
    )
