"""UpdateMetadata (key 6), versions 0-8: the controller tells a broker the state of partitions
(Kafka's ZooKeeper mode).

Cluster mode only, fenced like LeaderAndIsr (listener, controller id and epoch confirmed in
ZooKeeper, broker epoch from v5): a refused request answers its error (STALE_CONTROLLER_EPOCH,
STALE_BROKER_EPOCH, CLUSTER_AUTHORIZATION_FAILED). Then the partition states go into the
metadata cache as their state znodes' watches would put them (`runtime.controller_requests`);
the live brokers listed are not read, the /brokers/ids watches keep them. Strom's controller
does not send this request: every broker's cache follows ZooKeeper. A single broker has no
controller: CLUSTER_AUTHORIZATION_FAILED.
"""

from __future__ import annotations

from collections.abc import Awaitable

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.update_metadata_request import UpdateMetadataRequest
from strom.protocol.messages.update_metadata_response import UpdateMetadataResponse
from strom.security.acl import AclOperation
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles

FIRST_BROKER_EPOCH_VERSION = 5


@handles(6, 0, 8)
def handle_update_metadata(
    ctx: RequestContext, request: UpdateMetadataRequest
) -> UpdateMetadataResponse | Awaitable[UpdateMetadataResponse]:
    version = ctx.api_version
    runtime = ctx.broker.cluster
    if runtime is None or not authorize_cluster(ctx, AclOperation.CLUSTER_ACTION):
        return UpdateMetadataResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)

    async def run() -> UpdateMetadataResponse:
        broker_epoch = request.broker_epoch if version >= FIRST_BROKER_EPOCH_VERSION else -1
        refused = await runtime.control.check(
            ctx.listener, ctx.peer, request.controller_id, request.controller_epoch, broker_epoch
        )
        if refused != ErrorCode.NONE:
            return UpdateMetadataResponse(error_code=refused)
        runtime.control.apply_update_metadata(request, version)
        return UpdateMetadataResponse(error_code=ErrorCode.NONE)

    return run()
