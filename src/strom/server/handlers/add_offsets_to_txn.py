"""AddOffsetsToTxn (key 25), versions 0-4: adds the `__consumer_offsets` partition of a group
to a transaction, so that the transaction's marker reaches the offsets that TxnOffsetCommit
writes there.

The partition is the group's (Kafka's placement); `__consumer_offsets` is created if this is
its first use, because the marker must be written to it. Errors as AddPartitionsToTxn; before
v2, PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH.
"""

from __future__ import annotations

from collections.abc import Awaitable

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.add_offsets_to_txn_request import AddOffsetsToTxnRequest
from strom.protocol.messages.add_offsets_to_txn_response import AddOffsetsToTxnResponse
from strom.runtime.coordinator_runtime import then
from strom.runtime.errors import ApiError
from strom.runtime.group_runtime import OFFSETS_TOPIC
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize
from strom.server.context import RequestContext
from strom.server.registry import handles


@handles(25, 0, 4)
def handle_add_offsets_to_txn(
    ctx: RequestContext, request: AddOffsetsToTxnRequest
) -> AddOffsetsToTxnResponse | Awaitable[AddOffsetsToTxnResponse]:
    txn_id = request.transactional_id
    if not txn_id:
        return AddOffsetsToTxnResponse(error_code=ErrorCode.INVALID_REQUEST)
    if not request.group_id:
        return AddOffsetsToTxnResponse(error_code=ErrorCode.INVALID_GROUP_ID)
    if not authorize(ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, txn_id):
        return AddOffsetsToTxnResponse(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    if not authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        return AddOffsetsToTxnResponse(error_code=ErrorCode.GROUP_AUTHORIZATION_FAILED)
    groups = ctx.broker.groups
    pid, epoch = request.producer_id, request.producer_epoch

    def respond(code: ErrorCode) -> AddOffsetsToTxnResponse:
        if code == ErrorCode.PRODUCER_FENCED and ctx.api_version < 2:
            code = ErrorCode.INVALID_PRODUCER_EPOCH
        return AddOffsetsToTxnResponse(error_code=code)

    try:
        groups.ensure_topic()
    except ApiError as exc:
        return respond(exc.code)
    offsets_partition = (OFFSETS_TOPIC, groups.partition_for(request.group_id))
    answer = ctx.broker.txns.run(
        txn_id,
        lambda shard: shard.add_partitions(txn_id, pid, epoch, [offsets_partition]),
        lambda code: code,
    )
    return then(answer, respond)
