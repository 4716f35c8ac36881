"""DescribeTransactions (key 65), version 0: the state of transactional ids (kafka-transactions
describe, Admin.describeTransactions).

Each id is answered by its coordinator shard: TRANSACTIONAL_ID_NOT_FOUND for an unknown (or
expired) id, INVALID_REQUEST for "". The partitions are those of the open transaction.
"""

from __future__ import annotations

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.describe_transactions_request import DescribeTransactionsRequest
from strom.protocol.messages.describe_transactions_response import (
    DescribeTransactionsResponse,
    TransactionState,
)
from strom.runtime.errors import ApiError
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize, authorized_names
from strom.server.context import RequestContext
from strom.server.registry import handles


@handles(65, 0, 0)
def handle_describe_transactions(
    ctx: RequestContext, request: DescribeTransactionsRequest
) -> DescribeTransactionsResponse:
    runtime = ctx.broker.txns
    states: list[TransactionState] = []
    for txn_id in request.transactional_ids:
        if not authorize(ctx, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, txn_id):
            states.append(
                TransactionState(
                    error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    transactional_id=txn_id,
                )
            )
            continue
        try:
            states.append(runtime.describe(txn_id))
        except ApiError as exc:
            states.append(TransactionState(error_code=exc.code, transactional_id=txn_id))
    # Only the topics the principal may describe are shown, as Kafka does.
    for state in states:
        if state.topics and ctx.broker.authorizer is not None:
            visible = authorized_names(
                ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, (t.topic for t in state.topics)
            )
            state.topics = [t for t in state.topics if t.topic in visible]
    return DescribeTransactionsResponse(transaction_states=states)
