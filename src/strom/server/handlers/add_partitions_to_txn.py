"""AddPartitionsToTxn (key 24), versions 0-3: a transactional producer adds partitions to its
transaction before producing to them.

Every partition must exist, else UNKNOWN_TOPIC_OR_PARTITION for it and OPERATION_NOT_ATTEMPTED
for the others (nothing is added), as Kafka answers. Then the transactional id's coordinator
shard checks the producer id and epoch and persists the Ongoing state with the new partitions;
its one error code is every partition's answer. Before v2, PRODUCER_FENCED is answered as
INVALID_PRODUCER_EPOCH.

Not handled: v4-5, which only brokers send to the transaction coordinator to verify that a
partition is in a transaction (KIP-890, several transactions per request). Clients use v0-3;
on a single broker the produce path has no other broker to ask.
"""

from __future__ import annotations

from collections.abc import Awaitable

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.add_partitions_to_txn_request import AddPartitionsToTxnRequest
from strom.protocol.messages.add_partitions_to_txn_response import (
    AddPartitionsToTxnPartitionResult,
    AddPartitionsToTxnResponse,
    AddPartitionsToTxnTopicResult,
)
from strom.runtime.coordinator_runtime import then
from strom.server.context import RequestContext
from strom.server.registry import handles


@handles(24, 0, 3)
def handle_add_partitions_to_txn(
    ctx: RequestContext, request: AddPartitionsToTxnRequest
) -> AddPartitionsToTxnResponse | Awaitable[AddPartitionsToTxnResponse]:
    metadata = ctx.broker.metadata
    wanted = [(t.name, p) for t in request.v3_and_below_topics for p in t.partitions]
    errors: dict[tuple[str, int], int] = {}
    for topic, partition in wanted:
        record = metadata.get_topic(topic)
        if record is None or not 0 <= partition < record.num_partitions:
            errors[(topic, partition)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION

    def respond(code: int) -> AddPartitionsToTxnResponse:
        if code == ErrorCode.PRODUCER_FENCED and ctx.api_version < 2:
            code = ErrorCode.INVALID_PRODUCER_EPOCH
        by_topic: dict[str, list[AddPartitionsToTxnPartitionResult]] = {}
        for topic, partition in wanted:
            by_topic.setdefault(topic, []).append(
                AddPartitionsToTxnPartitionResult(partition, errors.get((topic, partition), code))
            )
        return AddPartitionsToTxnResponse(
            results_by_topic_v3_and_below=[
                AddPartitionsToTxnTopicResult(name, results) for name, results in by_topic.items()
            ]
        )

    if errors:
        return respond(ErrorCode.OPERATION_NOT_ATTEMPTED)
    txn_id = request.v3_and_below_transactional_id
    pid, epoch = request.v3_and_below_producer_id, request.v3_and_below_producer_epoch
    if not txn_id:
        return respond(ErrorCode.INVALID_REQUEST)
    answer = ctx.broker.txns.run(
        txn_id, lambda shard: shard.add_partitions(txn_id, pid, epoch, wanted), lambda code: code
    )
    return then(answer, respond)
