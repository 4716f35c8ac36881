"""AllocateProducerIds (key 67), version 0: a broker asks the controller for a block of producer
ids (KIP-730, Kafka 3.x in ZooKeeper mode).

Only the active controller answers (NOT_CONTROLLER elsewhere, and on a single broker, which has
no controller): a broker that is not registered gets BROKER_ID_NOT_REGISTERED, a broker epoch
other than its registration's (the czxid of /brokers/ids/<id>) STALE_BROKER_EPOCH. The block is
claimed in /latest_producer_id_block with a compare-and-set, the same znode the brokers' own
claims use, so no id is handed out twice; it holds 1000 ids. REQUEST_TIMED_OUT while ZooKeeper
is unreachable (zookeeper.connection.timeout.ms); UNKNOWN_SERVER_ERROR once the ids are
exhausted or the znode is unreadable. Strom's brokers claim their blocks in ZooKeeper directly
and never send this request. With an authorizer it needs CLUSTER_ACTION on the cluster (CLUSTER_AUTHORIZATION_FAILED).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from strom.cluster.zk.client import ZkError
from strom.cluster.zk.layout import LayoutError
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.allocate_producer_ids_request import AllocateProducerIdsRequest
from strom.protocol.messages.allocate_producer_ids_response import AllocateProducerIdsResponse
from strom.security.acl import AclOperation
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles

log = logging.getLogger("strom.controller")


@handles(67, 0, 0)
def handle_allocate_producer_ids(
    ctx: RequestContext, request: AllocateProducerIdsRequest
) -> AllocateProducerIdsResponse | Awaitable[AllocateProducerIdsResponse]:
    if not authorize_cluster(ctx, AclOperation.CLUSTER_ACTION):
        return AllocateProducerIdsResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    cluster = ctx.broker.cluster
    if cluster is None or not cluster.controller.is_active:
        return AllocateProducerIdsResponse(error_code=ErrorCode.NOT_CONTROLLER)
    known = cluster.controller.broker_epoch(request.broker_id)
    if known is None:
        return AllocateProducerIdsResponse(error_code=ErrorCode.BROKER_ID_NOT_REGISTERED)
    if known != request.broker_epoch:
        return AllocateProducerIdsResponse(error_code=ErrorCode.STALE_BROKER_EPOCH)

    async def allocate() -> AllocateProducerIdsResponse:
        try:
            async with asyncio.timeout(cluster.client.connection_timeout_ms / 1000):
                block = await cluster.metadata.store.allocate_producer_id_block(request.broker_id)
        except (ZkError, TimeoutError) as exc:
            log.warning("producer id block for broker %d not claimed: %r", request.broker_id, exc)
            return AllocateProducerIdsResponse(error_code=ErrorCode.REQUEST_TIMED_OUT)
        except LayoutError as exc:
            log.error("producer id block for broker %d: %s", request.broker_id, exc)
            return AllocateProducerIdsResponse(error_code=ErrorCode.UNKNOWN_SERVER_ERROR)
        log.info(
            "controller: producer ids %d-%d to broker %d",
            block.block_start,
            block.block_end,
            request.broker_id,
        )
        return AllocateProducerIdsResponse(
            error_code=ErrorCode.NONE,
            producer_id_start=block.block_start,
            producer_id_len=block.block_end - block.block_start + 1,
        )

    return allocate()
