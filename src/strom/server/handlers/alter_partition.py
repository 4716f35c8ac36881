"""AlterPartition (key 56), versions 0-3: a partition leader asks the controller to change the
ISR (Kafka's ZooKeeper-mode controller answers it from 2.7; Kafka 4.0 kept only v2-3).

Only the active controller answers (NOT_CONTROLLER elsewhere and on a single broker); a broker
not registered with exactly the broker epoch given gets STALE_BROKER_EPOCH. Per partition, as
Kafka's controller (`cluster/zk/alter_partition.py`): UNKNOWN_TOPIC_OR_PARTITION,
NOT_CONTROLLER (the leader knows a newer state), FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION
(an older partition epoch, or a concurrent change), INVALID_REQUEST (leader recovery rules),
INELIGIBLE_REPLICA (v2+; OPERATION_NOT_ATTEMPTED before) for an ISR member that is not a live
broker; else the state written (or already there): leader, leader epoch, ISR, recovery state
and partition epoch. v0-1 name topics, v2+ give topic ids (UNKNOWN_TOPIC_ID when unknown);
v3 gives the ISR with broker epochs, which are not checked (as Kafka's ZooKeeper controller).
With an authorizer it needs CLUSTER_ACTION on the cluster (CLUSTER_AUTHORIZATION_FAILED).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

from strom.cluster.zk.alter_partition import Outcome, Proposal
from strom.cluster.zk.context import NotControllerError, StaleBrokerEpochError
from strom.cluster.zk.layout import TopicPartition
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.alter_partition_request import AlterPartitionRequest
from strom.protocol.messages.alter_partition_response import (
    AlterPartitionResponse,
    PartitionData,
    TopicData,
)
from strom.security.acl import AclOperation
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles

TOPIC_ID_VERSION = 2
ISR_WITH_EPOCHS_VERSION = 3


def _answer(outcome: Outcome, partition: int) -> PartitionData:
    if isinstance(outcome, ErrorCode):
        return PartitionData(partition_index=partition, error_code=outcome)
    state = outcome.state
    return PartitionData(
        partition_index=partition,
        error_code=ErrorCode.NONE,
        leader_id=state.leader,
        leader_epoch=state.leader_epoch,
        isr=list(state.isr),
        leader_recovery_state=state.leader_recovery_state,
        partition_epoch=outcome.version,
    )


@handles(56, 0, 3)
def handle_alter_partition(
    ctx: RequestContext, request: AlterPartitionRequest
) -> AlterPartitionResponse | Awaitable[AlterPartitionResponse]:
    version = ctx.api_version
    if not authorize_cluster(ctx, AclOperation.CLUSTER_ACTION):
        return AlterPartitionResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    cluster = ctx.broker.cluster
    if cluster is None or not cluster.controller.is_active:
        return AlterPartitionResponse(error_code=ErrorCode.NOT_CONTROLLER)
    by_id = {record.topic_id: name for name, record in ctx.broker.metadata.topics.items()}
    wanted: dict[TopicPartition, Proposal] = {}
    names: list[tuple[str | None, uuid.UUID]] = []
    for topic in request.topics:
        name = by_id.get(topic.topic_id) if version >= TOPIC_ID_VERSION else topic.topic_name
        names.append((name, topic.topic_id))
        if name is None:
            continue
        for p in topic.partitions:
            isr = (
                [b.broker_id for b in p.new_isr_with_epochs]
                if version >= ISR_WITH_EPOCHS_VERSION
                else p.new_isr
            )
            wanted[TopicPartition(name, p.partition_index)] = Proposal(
                p.leader_epoch, tuple(isr), p.leader_recovery_state, p.partition_epoch
            )

    async def run() -> AlterPartitionResponse:
        try:
            outcomes = await cluster.controller.alter_partitions(
                request.broker_id, request.broker_epoch, wanted, version
            )
        except NotControllerError:
            return AlterPartitionResponse(error_code=ErrorCode.NOT_CONTROLLER)
        except StaleBrokerEpochError:
            return AlterPartitionResponse(error_code=ErrorCode.STALE_BROKER_EPOCH)
        topics: list[TopicData] = []
        for topic, (name, topic_id) in zip(request.topics, names, strict=True):
            out = TopicData(topic_name=name or "", topic_id=topic_id)
            for p in topic.partitions:
                outcome: Outcome = (
                    ErrorCode.UNKNOWN_TOPIC_ID
                    if name is None
                    else outcomes[TopicPartition(name, p.partition_index)]
                )
                out.partitions.append(_answer(outcome, p.partition_index))
            topics.append(out)
        return AlterPartitionResponse(error_code=ErrorCode.NONE, topics=topics)

    return run()
