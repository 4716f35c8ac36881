"""DescribeTransactions (key 65), version 0: the state of transactional ids (kafka-transactions
describe, Admin.describeTransactions).

Each id is answered by its coordinator shard: TRANSACTIONAL_ID_NOT_FOUND for an unknown (or
expired) id, INVALID_REQUEST for "". The partitions are those of the open transaction.
"""

from __future__ import annotations

from strom.protocol.messages.describe_transactions_request import DescribeTransactionsRequest
from strom.protocol.messages.describe_transactions_response import (
    DescribeTransactionsResponse,
    TransactionState,
)
from strom.runtime.errors import ApiError
from strom.server.context import RequestContext
from strom.server.registry import handles


@handles(65, 0, 0)
def handle_describe_transactions(
    ctx: RequestContext, request: DescribeTransactionsRequest
) -> DescribeTransactionsResponse:
    runtime = ctx.broker.txns
    states: list[TransactionState] = []
    for txn_id in request.transactional_ids:
        try:
            states.append(runtime.describe(txn_id))
        except ApiError as exc:
            states.append(TransactionState(error_code=exc.code, transactional_id=txn_id))
    return DescribeTransactionsResponse(transaction_states=states)
