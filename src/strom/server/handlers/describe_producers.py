"""DescribeProducers (key 61), version 0: the producer state of partitions (KIP-664).

For each partition asked: the producers the partition's log remembers (producer.id.expiration.ms
not passed, or inside a transaction), with their epoch, last sequence, last timestamp, the
epoch of the coordinator that wrote their last marker, and the first offset of their open
transaction (-1 when none). This broker leads every partition, so NOT_LEADER_OR_FOLLOWER is
never answered; an unknown topic or partition is UNKNOWN_TOPIC_OR_PARTITION.
A topic needs READ (TOPIC_AUTHORIZATION_FAILED for its partitions), as in Kafka.
"""

from __future__ import annotations

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.describe_producers_request import DescribeProducersRequest
from strom.protocol.messages.describe_producers_response import (
    DescribeProducersResponse,
    PartitionResponse,
    ProducerState,
    TopicResponse,
)
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorized_names
from strom.server.context import RequestContext
from strom.server.registry import handles


def _describe(ctx: RequestContext, topic: str, partition: int) -> PartitionResponse:
    log = ctx.broker.partition_log(topic, partition)
    if log is None:
        return PartitionResponse(
            partition_index=partition, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        )
    return PartitionResponse(
        partition_index=partition,
        active_producers=[
            ProducerState(
                producer_id=producer_id,
                producer_epoch=entry.producer_epoch,
                last_sequence=entry.last_seq,
                last_timestamp=entry.last_timestamp,
                coordinator_epoch=entry.coordinator_epoch,
                current_txn_start_offset=(
                    -1 if entry.current_txn_first_offset is None else entry.current_txn_first_offset
                ),
            )
            for producer_id, entry in log.producer_state.producers.items()
        ],
    )


@handles(61, 0, 0)
def handle_describe_producers(
    ctx: RequestContext, request: DescribeProducersRequest
) -> DescribeProducersResponse:
    # READ on each topic, as Kafka's (TOPIC_AUTHORIZATION_FAILED for its partitions).
    allowed = authorized_names(
        ctx, AclOperation.READ, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    return DescribeProducersResponse(
        topics=[
            TopicResponse(
                name=topic.name,
                partitions=[
                    _describe(ctx, topic.name, p)
                    if topic.name in allowed
                    else PartitionResponse(
                        partition_index=p, error_code=ErrorCode.TOPIC_AUTHORIZATION_FAILED
                    )
                    for p in topic.partition_indexes
                ],
            )
            for topic in request.topics
        ]
    )
