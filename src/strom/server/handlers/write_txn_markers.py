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
Not done: authorization (Kafka requires CLUSTER_ACTION).
"""

from __future__ import annotations

from collections.abc import Awaitable

from strom.protocol.messages.write_txn_markers_request import WriteTxnMarkersRequest
from strom.protocol.messages.write_txn_markers_response import (
    WritableTxnMarkerPartitionResult,
    WritableTxnMarkerResult,
    WritableTxnMarkerTopicResult,
    WriteTxnMarkersResponse,
)
from strom.runtime.txn_markers import TxnMarker, write_markers
from strom.server.context import RequestContext
from strom.server.registry import handles


@handles(27, 0, 1)
def handle_write_txn_markers(
    ctx: RequestContext, request: WriteTxnMarkersRequest
) -> Awaitable[WriteTxnMarkersResponse]:
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
