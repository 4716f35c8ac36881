"""EndTxn (key 26), versions 0-4: commit or abort a transaction.

The coordinator shard persists PrepareCommit/PrepareAbort; on a single broker the runtime then
writes the marker to every partition of the transaction and persists CompleteCommit/
CompleteAbort, all before this answer goes out, so a consumer that reads right after the answer
sees the outcome. In cluster mode the answer goes out once the Prepare record is replicated to
the ISR; the markers then go to the partitions' leaders in the background (WriteTxnMarkers), and
until they are all written the transactional id's next requests get CONCURRENT_TRANSACTIONS,
which clients retry (Kafka's behaviour). A retried EndTxn of a completed transaction answers
NONE; the opposite outcome, or EndTxn without a transaction, INVALID_TXN_STATE. Before v2,
PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH.

Not handled: v5 (KIP-890 part 2, transaction version 2: the epoch is bumped by every EndTxn).
Kafka marks it unstable in the specs Strom is generated from, and clients fall back to v4.
"""

from __future__ import annotations

from collections.abc import Awaitable

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.end_txn_request import EndTxnRequest
from strom.protocol.messages.end_txn_response import EndTxnResponse
from strom.runtime.coordinator_runtime import then
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize
from strom.server.context import RequestContext
from strom.server.registry import handles


@handles(26, 0, 4)
def handle_end_txn(
    ctx: RequestContext, request: EndTxnRequest
) -> EndTxnResponse | Awaitable[EndTxnResponse]:
    txn_id = request.transactional_id
    if not txn_id:
        return EndTxnResponse(error_code=ErrorCode.INVALID_REQUEST)
    if not authorize(ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, txn_id):
        return EndTxnResponse(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    pid, epoch, commit = request.producer_id, request.producer_epoch, request.committed

    def respond(code: ErrorCode) -> EndTxnResponse:
        if code == ErrorCode.PRODUCER_FENCED and ctx.api_version < 2:
            code = ErrorCode.INVALID_PRODUCER_EPOCH
        return EndTxnResponse(error_code=code)

    answer = ctx.broker.txns.run(
        txn_id, lambda shard: shard.end_txn(txn_id, pid, epoch, commit), lambda code: code
    )
    return then(answer, respond)
