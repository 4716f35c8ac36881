"""WriteTxnMarkers (key 27), versions 0-1: a transaction coordinator has this broker write the
COMMIT/ABORT markers of transactions on the partitions it leads.

Kafka's brokers send it to each other (clients never do). For every marker and partition: the
topic and partition must exist here (UNKNOWN_TOPIC_OR_PARTITION) and, in cluster mode, be led
by this broker with enough in-sync replicas (NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS); the
partition's producer state refuses an old producer epoch (INVALID_PRODUCER_EPOCH) or an old
coordinator epoch (TRANSACTION_COORDINATOR_FENCED). A marker on a `__consumer_offsets`
partition also settles the producer's pending transactional offsets in the group coordinator.
The answer goes out once the ISR has every marker written (acks=all, up to request.timeout.ms:
REQUEST_TIMED_OUT, or NOT_ENOUGH_REPLICAS_AFTER_APPEND), and the coordinator retries what failed.
With an authorizer it needs ALTER or CLUSTER_ACTION on the cluster, as in Kafka
(CLUSTER_AUTHORIZATION_FAILED for every partition otherwise).
"""

from __future__ import annotations

from collections.abc import Awaitable

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.write_txn_markers_request import WriteTxnMarkersRequest
from strom.protocol.messages.write_txn_markers_response import (
    WritableTxnMarkerPartitionResult,
    WritableTxnMarkerResult,
    WritableTxnMarkerTopicResult,
    WriteTxnMarkersResponse,
)
from strom.runtime.txn_markers import TxnMarker, write_markers
from strom.security.acl import AclOperation
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles


@handles(27, 0, 1)
def handle_write_txn_markers(
    ctx: RequestContext, request: WriteTxnMarkersRequest
) -> WriteTxnMarkersResponse | Awaitable[WriteTxnMarkersResponse]:
    if not authorize_cluster(ctx, AclOperation.ALTER, log_denied=False) and not authorize_cluster(
        ctx, AclOperation.CLUSTER_ACTION
    ):
        return WriteTxnMarkersResponse(
            markers=[
                WritableTxnMarkerResult(
                    producer_id=m.producer_id,
                    topics=[
                        WritableTxnMarkerTopicResult(
                            t.name,
                            [
                                WritableTxnMarkerPartitionResult(
                                    p, ErrorCode.CLUSTER_AUTHORIZATION_FAILED
                                )
                                for p in t.partition_indexes
                            ],
                        )
                        for t in m.topics
                    ],
                )
                for m in request.markers
            ]
        )
    markers = [
        TxnMarker(
            m.producer_id,
            m.producer_epoch,
            m.transaction_result,
            m.coordinator_epoch,
            tuple((t.name, p) for t in m.topics for p in t.partition_indexes),
        )
        for m in request.markers
    ]
    timeout_ms = ctx.broker.config.get_int("request.timeout.ms")

    async def answer() -> WriteTxnMarkersResponse:
        results = await write_markers(ctx.broker, markers, timeout_ms)
        response = WriteTxnMarkersResponse()
        for wanted, codes in zip(request.markers, results, strict=True):
            response.markers.append(
                WritableTxnMarkerResult(
                    producer_id=wanted.producer_id,
                    topics=[
                        WritableTxnMarkerTopicResult(
                            t.name,
                            [
                                WritableTxnMarkerPartitionResult(p, codes[(t.name, p)])
                                for p in t.partition_indexes
                            ],
                        )
                        for t in wanted.topics
                    ],
                )
            )
        return response

    return answer()
