"""ListTransactions (key 66), versions 0-1: the transactional ids this broker coordinates
(kafka-transactions list, Admin.listTransactions), with Kafka's filters.

Filters: states by name (unknown names are returned in UnknownStateFilters and match nothing),
producer ids, and from v1 a duration: only transactions running longer than it. An empty
filter matches everything. A broker that never created `__transaction_state` lists nothing.
"""

from __future__ import annotations

from strom.coordinator.txn import TxnState
from strom.protocol.messages.list_transactions_request import ListTransactionsRequest
from strom.protocol.messages.list_transactions_response import ListTransactionsResponse
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorized_names
from strom.server.context import RequestContext
from strom.server.registry import handles


@handles(66, 0, 1)
def handle_list_transactions(
    ctx: RequestContext, request: ListTransactionsRequest
) -> ListTransactionsResponse:
    response = ListTransactionsResponse()
    states: set[TxnState] = set()
    for name in request.state_filters:
        state = TxnState.from_name(name)
        if state is None:
            response.unknown_state_filters.append(name)
        else:
            states.add(state)
    if request.state_filters and not states:
        return response  # only unknown states asked for: nothing can match
    duration = request.duration_filter if ctx.api_version >= 1 else -1
    producer_ids = set(request.producer_id_filters)
    for shard in ctx.broker.txns.shards.values():
        response.transaction_states.extend(shard.list_transactions(states, producer_ids, duration))
    # Only the transactional ids the principal may describe, as Kafka lists them.
    if ctx.broker.authorizer is not None:
        visible = authorized_names(
            ctx,
            AclOperation.DESCRIBE,
            ResourceType.TRANSACTIONAL_ID,
            (t.transactional_id for t in response.transaction_states),
            log_denied=False,
        )
        response.transaction_states = [
            t for t in response.transaction_states if t.transactional_id in visible
        ]
    return response
