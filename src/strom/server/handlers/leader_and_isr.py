"""LeaderAndIsr (key 4), versions 0-7: the controller tells a broker the state of the
partitions it hosts (leader, leader epoch, ISR, partition epoch, replicas).

Cluster mode only; fencing (listener, controller epoch confirmed in ZooKeeper, broker epoch)
and the apply path are in `strom.runtime.controller_requests`. A refused request answers the
top-level error and the same code for every partition, as Kafka. A single broker has no
controller: every request answers CLUSTER_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Mapping

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.leader_and_isr_request import LeaderAndIsrRequest
from strom.protocol.messages.leader_and_isr_response import (
    LeaderAndIsrPartitionError,
    LeaderAndIsrResponse,
    LeaderAndIsrTopicError,
)
from strom.protocol.primitives import ZERO_UUID
from strom.security.acl import AclOperation
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles

FIRST_BROKER_EPOCH_VERSION = 2
FIRST_TOPIC_ID_VERSION = 5


def _partitions(request: LeaderAndIsrRequest, version: int) -> list[tuple[str, int]]:
    if version < FIRST_BROKER_EPOCH_VERSION:
        return [(p.topic_name, p.partition_index) for p in request.ungrouped_partition_states]
    return [
        (t.topic_name, p.partition_index) for t in request.topic_states for p in t.partition_states
    ]


def _response(
    request: LeaderAndIsrRequest,
    version: int,
    top: ErrorCode,
    codes: Mapping[tuple[str, int], ErrorCode],
) -> LeaderAndIsrResponse:
    def code(topic: str, partition: int) -> int:
        return int(codes.get((topic, partition), top))

    if version < FIRST_TOPIC_ID_VERSION:
        return LeaderAndIsrResponse(
            error_code=top,
            partition_errors=[
                LeaderAndIsrPartitionError(t, p, code(t, p))
                for t, p in _partitions(request, version)
            ],
        )
    topics: list[LeaderAndIsrTopicError] = []
    for t in request.topic_states:
        topic_id: uuid.UUID = t.topic_id or ZERO_UUID
        topics.append(
            LeaderAndIsrTopicError(
                topic_id,
                [
                    LeaderAndIsrPartitionError(
                        partition_index=p.partition_index,
                        error_code=code(t.topic_name, p.partition_index),
                    )
                    for p in t.partition_states
                ],
            )
        )
    return LeaderAndIsrResponse(error_code=top, topics=topics)


@handles(4, 0, 7)
def handle_leader_and_isr(
    ctx: RequestContext, request: LeaderAndIsrRequest
) -> LeaderAndIsrResponse | Awaitable[LeaderAndIsrResponse]:
    version = ctx.api_version
    runtime = ctx.broker.cluster
    if runtime is None or not authorize_cluster(ctx, AclOperation.CLUSTER_ACTION):
        return _response(request, version, ErrorCode.CLUSTER_AUTHORIZATION_FAILED, {})

    async def run() -> LeaderAndIsrResponse:
        broker_epoch = request.broker_epoch if version >= FIRST_BROKER_EPOCH_VERSION else -1
        refused = await runtime.control.check(
            ctx.listener, ctx.peer, request.controller_id, request.controller_epoch, broker_epoch
        )
        if refused != ErrorCode.NONE:
            return _response(request, version, refused, {})
        codes = runtime.control.apply_leader_and_isr(ctx.listener, request, version)
        return _response(request, version, ErrorCode.NONE, codes)

    return run()
