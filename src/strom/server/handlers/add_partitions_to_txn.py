"""AddPartitionsToTxn (key 24), versions 0-5: a transactional producer adds partitions to its
transaction before producing to them (v0-3); brokers add or verify partitions for several
transactions at once (v4-5, KIP-890).

Every partition must exist, else UNKNOWN_TOPIC_OR_PARTITION for it and OPERATION_NOT_ATTEMPTED
for the others of its transaction (nothing is added), as Kafka answers. Then the transactional
id's coordinator shard checks the producer id and epoch and persists the Ongoing state with the
new partitions; its one error code is every partition's answer. Before v2, PRODUCER_FENCED is
answered as INVALID_PRODUCER_EPOCH.

v4-5 carry a list of transactions, each answered on its own. With verify_only the coordinator
only says whether each partition is in the open transaction (NONE, or TRANSACTION_ABORTABLE;
a wrong producer id or epoch, or a transaction being prepared, fails all its partitions), as
Kafka 3.9's coordinator answers leaders that verify a transactional produce. Strom's own
leaders do not send these (their produces and TxnOffsetCommits are not verified against a
coordinator on another broker).

Authorization as Kafka's: v0-3 (clients) need WRITE on the transactional id (every partition
TRANSACTIONAL_ID_AUTHORIZATION_FAILED) and on each topic (TOPIC_AUTHORIZATION_FAILED, the
others OPERATION_NOT_ATTEMPTED); internal topics are always refused there, with or without an
authorizer, as Kafka does (offsets join a transaction through AddOffsetsToTxn). v4+ (brokers)
need CLUSTER_ACTION (CLUSTER_AUTHORIZATION_FAILED for the whole request).
"""

from __future__ import annotations

from collections.abc import Awaitable

from strom.cluster.topic_names import INTERNAL_TOPICS
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.add_partitions_to_txn_request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTransaction,
)
from strom.protocol.messages.add_partitions_to_txn_response import (
    AddPartitionsToTxnPartitionResult,
    AddPartitionsToTxnResponse,
    AddPartitionsToTxnResult,
    AddPartitionsToTxnTopicResult,
)
from strom.runtime.coordinator_runtime import gather, then
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize, authorize_cluster, authorized_names
from strom.server.context import RequestContext
from strom.server.registry import handles

BATCHED_VERSION = 4

_Codes = dict[tuple[str, int], int]


def _topic_results(
    wanted: list[tuple[str, int]], codes: _Codes
) -> list[AddPartitionsToTxnTopicResult]:
    by_topic: dict[str, list[AddPartitionsToTxnPartitionResult]] = {}
    for topic, partition in wanted:
        by_topic.setdefault(topic, []).append(
            AddPartitionsToTxnPartitionResult(partition, codes[(topic, partition)])
        )
    return [AddPartitionsToTxnTopicResult(name, results) for name, results in by_topic.items()]


def _one_transaction(
    ctx: RequestContext,
    txn_id: str,
    pid: int,
    epoch: int,
    wanted: list[tuple[str, int]],
    verify_only: bool,
) -> _Codes | Awaitable[_Codes]:
    """The answer of one transaction's partitions."""
    metadata = ctx.broker.metadata
    unknown: _Codes = {}
    if ctx.api_version < BATCHED_VERSION:
        if not authorize(ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, txn_id):
            return dict.fromkeys(wanted, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        allowed = authorized_names(
            ctx,
            AclOperation.WRITE,
            ResourceType.TOPIC,
            {t for t, _ in wanted if t not in INTERNAL_TOPICS},
        )
        unknown = {
            tp: ErrorCode.TOPIC_AUTHORIZATION_FAILED for tp in wanted if tp[0] not in allowed
        }
    for topic, partition in wanted:
        if (topic, partition) in unknown:
            continue
        record = metadata.get_topic(topic)
        if record is None or not 0 <= partition < record.num_partitions:
            unknown[(topic, partition)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION

    def every(code: int) -> _Codes:
        if code == ErrorCode.PRODUCER_FENCED and ctx.api_version < 2:
            code = ErrorCode.INVALID_PRODUCER_EPOCH
        return {tp: unknown.get(tp, code) for tp in wanted}

    if unknown:
        return every(ErrorCode.OPERATION_NOT_ATTEMPTED)
    if not txn_id:
        return every(ErrorCode.INVALID_REQUEST)
    txns = ctx.broker.txns
    if verify_only:
        verified = txns.run(
            txn_id,
            lambda shard: (shard.verify_partitions(txn_id, pid, epoch, wanted), []),
            lambda code: dict.fromkeys(wanted, code),
        )
        return then(verified, lambda codes: {tp: int(c) for tp, c in codes.items()})
    added = txns.run(
        txn_id, lambda shard: shard.add_partitions(txn_id, pid, epoch, wanted), lambda code: code
    )
    return then(added, every)


def _partitions(transaction: AddPartitionsToTxnTransaction) -> list[tuple[str, int]]:
    return [(t.name, p) for t in transaction.topics for p in t.partitions]


@handles(24, 0, 5)
def handle_add_partitions_to_txn(
    ctx: RequestContext, request: AddPartitionsToTxnRequest
) -> AddPartitionsToTxnResponse | Awaitable[AddPartitionsToTxnResponse]:
    if ctx.api_version < BATCHED_VERSION:
        wanted = [(t.name, p) for t in request.v3_and_below_topics for p in t.partitions]
        answer = _one_transaction(
            ctx,
            request.v3_and_below_transactional_id,
            request.v3_and_below_producer_id,
            request.v3_and_below_producer_epoch,
            wanted,
            verify_only=False,
        )
        return then(
            answer,
            lambda codes: AddPartitionsToTxnResponse(
                results_by_topic_v3_and_below=_topic_results(wanted, codes)
            ),
        )
    if not authorize_cluster(ctx, AclOperation.CLUSTER_ACTION):
        return AddPartitionsToTxnResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    transactions = request.transactions
    answers = gather(
        [
            _one_transaction(
                ctx,
                t.transactional_id,
                t.producer_id,
                t.producer_epoch,
                _partitions(t),
                t.verify_only,
            )
            for t in transactions
        ]
    )

    def respond(all_codes: list[_Codes]) -> AddPartitionsToTxnResponse:
        return AddPartitionsToTxnResponse(
            error_code=ErrorCode.NONE,
            results_by_transaction=[
                AddPartitionsToTxnResult(t.transactional_id, _topic_results(_partitions(t), codes))
                for t, codes in zip(transactions, all_codes, strict=True)
            ],
        )

    return then(answers, respond)
