"""InitProducerId (key 22), versions 0-5: producer ids for idempotent and transactional producers.

No transactional id: a fresh producer id (from a persisted block, never repeated) at epoch 0,
whatever producer id and epoch the request names (Kafka does the same: an idempotent producer
that must bump its epoch simply gets a new id). A transactional id: its coordinator shard bumps
the epoch (fencing older producers; an open transaction is aborted first and the answer is
CONCURRENT_TRANSACTIONS, which the client retries), or allocates the id's first producer id.
v3+ names the producer's current id and epoch (KIP-360) so that a retry after a lost answer
gets the same epoch instead of being fenced. Before v4, PRODUCER_FENCED is answered as
INVALID_PRODUCER_EPOCH, which older clients understand. v5 only adds an error code
(TRANSACTION_ABORTABLE) that this broker never needs to send here.
"""

from __future__ import annotations

from collections.abc import Awaitable

from strom.coordinator.txn import InitResult
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.init_producer_id_request import InitProducerIdRequest
from strom.protocol.messages.init_producer_id_response import InitProducerIdResponse
from strom.runtime.coordinator_runtime import then
from strom.runtime.errors import ApiError
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize, authorize_by_resource_type, authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles


@handles(22, 0, 5)
def handle_init_producer_id(
    ctx: RequestContext, request: InitProducerIdRequest
) -> InitProducerIdResponse | Awaitable[InitProducerIdResponse]:
    runtime = ctx.broker.txns
    if (request.producer_id == -1) != (request.producer_epoch == -1):
        return InitProducerIdResponse(error_code=ErrorCode.INVALID_REQUEST)
    txn_id = request.transactional_id
    # A transactional id needs WRITE on it; an idempotent producer IDEMPOTENT_WRITE on the
    # cluster or WRITE on some topic, as Kafka decides.
    if txn_id is not None:
        if not authorize(ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, txn_id):
            return InitProducerIdResponse(
                error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            )
    elif not authorize_cluster(
        ctx, AclOperation.IDEMPOTENT_WRITE, log_denied=False
    ) and not authorize_by_resource_type(ctx, AclOperation.WRITE, ResourceType.TOPIC):
        return InitProducerIdResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    if txn_id is None:
        try:
            producer_id = runtime.producer_ids.next_id()
        except ApiError as exc:
            return InitProducerIdResponse(error_code=exc.code)
        return InitProducerIdResponse(producer_id=producer_id, producer_epoch=0)
    if not txn_id:
        return InitProducerIdResponse(error_code=ErrorCode.INVALID_REQUEST)
    expected = None if request.producer_id == -1 else (request.producer_id, request.producer_epoch)
    timeout = request.transaction_timeout_ms

    def respond(result: InitResult) -> InitProducerIdResponse:
        error = result.error
        if error == ErrorCode.PRODUCER_FENCED and ctx.api_version < 4:
            error = ErrorCode.INVALID_PRODUCER_EPOCH
        return InitProducerIdResponse(
            error_code=error, producer_id=result.producer_id, producer_epoch=result.producer_epoch
        )

    answer = runtime.run(
        txn_id, lambda shard: shard.init_producer_id(txn_id, timeout, expected), InitResult
    )
    return then(answer, respond)
