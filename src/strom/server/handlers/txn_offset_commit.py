"""TxnOffsetCommit (key 28), versions 0-4: offsets committed as part of a transaction.

Checked here: every topic and partition exists (UNKNOWN_TOPIC_OR_PARTITION otherwise, for that
partition only), and the group's `__consumer_offsets` partition is in the producer's open
transaction (AddOffsetsToTxn came first), asked of the transaction coordinator directly since
it runs in this process (Kafka's verification; without it a commit could open a transaction
on `__consumer_offsets` that no marker would ever close). Then the group's shard validates the
member and generation (v3+) and returns the records, which the group runtime appends as a
transactional batch of the producer: pending until the transaction's marker.
PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH, the code the append path gives.
"""

from __future__ import annotations

from collections.abc import Awaitable

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.txn_offset_commit_request import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestTopic,
)
from strom.protocol.messages.txn_offset_commit_response import (
    TxnOffsetCommitResponse,
    TxnOffsetCommitResponsePartition,
    TxnOffsetCommitResponseTopic,
)
from strom.runtime.coordinator_runtime import then
from strom.runtime.errors import ApiError
from strom.runtime.group_runtime import OFFSETS_TOPIC
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize, authorized_names
from strom.server.context import RequestContext
from strom.server.registry import handles
from strom.storage.errors import StorageError


def _answer_all(
    request: TxnOffsetCommitRequest, code: int, response: TxnOffsetCommitResponse
) -> TxnOffsetCommitResponse:
    for topic in request.topics:
        response.topics.append(
            TxnOffsetCommitResponseTopic(
                topic.name,
                [
                    TxnOffsetCommitResponsePartition(p.partition_index, code)
                    for p in topic.partitions
                ],
            )
        )
    return response


@handles(28, 0, 4)
def handle_txn_offset_commit(
    ctx: RequestContext, request: TxnOffsetCommitRequest
) -> TxnOffsetCommitResponse | Awaitable[TxnOffsetCommitResponse]:
    broker = ctx.broker
    response = TxnOffsetCommitResponse()
    # WRITE on the transactional id, READ on the group, then READ on each topic, as Kafka's.
    if not authorize(
        ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, request.transactional_id
    ):
        return _answer_all(request, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, response)
    if not authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        return _answer_all(request, ErrorCode.GROUP_AUTHORIZATION_FAILED, response)
    readable = authorized_names(
        ctx, AclOperation.READ, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    refused = TxnOffsetCommitRequest(topics=[t for t in request.topics if t.name not in readable])
    _answer_all(refused, ErrorCode.TOPIC_AUTHORIZATION_FAILED, response)
    unknown = TxnOffsetCommitRequest()
    valid: list[TxnOffsetCommitRequestTopic] = []
    for topic in request.topics:
        if topic.name not in readable:
            continue
        record = broker.metadata.get_topic(topic.name)
        count = record.num_partitions if record is not None else 0
        good = [p for p in topic.partitions if 0 <= p.partition_index < count]
        bad = [p for p in topic.partitions if not 0 <= p.partition_index < count]
        if bad:
            unknown.topics.append(TxnOffsetCommitRequestTopic(topic.name, bad))
        if good:
            valid.append(TxnOffsetCommitRequestTopic(topic.name, good))
    _answer_all(unknown, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, response)
    if not valid:
        return response
    request.topics = valid
    txn_id, pid, epoch = request.transactional_id, request.producer_id, request.producer_epoch
    version = ctx.api_version

    def failed(code: ErrorCode) -> TxnOffsetCommitResponse:
        if code == ErrorCode.PRODUCER_FENCED:
            code = ErrorCode.INVALID_PRODUCER_EPOCH
        return _answer_all(request, code, response)

    def answered(result: TxnOffsetCommitResponse) -> TxnOffsetCommitResponse:
        if result is not response:
            response.topics.extend(result.topics)
        return response

    try:
        if not request.group_id:
            raise ApiError(ErrorCode.INVALID_GROUP_ID)
        offsets_partition = (OFFSETS_TOPIC, broker.groups.partition_for(request.group_id))
        code = broker.txns.check_partition(txn_id, pid, epoch, offsets_partition)
        if code != ErrorCode.NONE:
            raise ApiError(code)
        answer = broker.groups.run_transactional(
            request.group_id,
            pid,
            epoch,
            lambda shard: shard.txn_offset_commit(request, version),
            failed,
        )
    except ApiError as exc:
        return failed(exc.code)
    except StorageError as exc:  # the partition's producer state refused the batch
        return failed(
            ErrorCode(exc.error_code) if exc.error_code >= 0 else ErrorCode.UNKNOWN_SERVER_ERROR
        )
    return then(answer, answered)
