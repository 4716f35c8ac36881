"""ControlledShutdown (key 7), versions 0-3: a broker about to stop asks the controller to move
its leaderships away (Kafka's ZooKeeper mode).

Sent by a broker's SIGTERM path (`ClusterRuntime`) to the active controller. The controller
marks the broker as shutting down (it leads nothing new until it registers again), moves each
partition it leads to another live in-sync replica, takes it out of the ISRs it is in, and
answers with the partitions it still leads (no other in-sync replica; single-replica partitions
are not counted, as in Kafka). The broker retries while some remain.

Errors: NOT_CONTROLLER from a broker that is not the active controller (and from a single
broker, which has none); STALE_BROKER_EPOCH (v2+) when the epoch given is older than the
registration the controller knows; BROKER_NOT_AVAILABLE for a broker that is not registered. v0
comes with request header v0 (no client id; `protocol/framing.py`) and v0-1 carry no broker
epoch, so nothing is stale. With an authorizer it needs CLUSTER_ACTION on the cluster (CLUSTER_AUTHORIZATION_FAILED).
"""

from __future__ import annotations

from collections.abc import Awaitable

from strom.cluster.zk.context import NotControllerError
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.controlled_shutdown_request import ControlledShutdownRequest
from strom.protocol.messages.controlled_shutdown_response import (
    ControlledShutdownResponse,
    RemainingPartition,
)
from strom.security.acl import AclOperation
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles

NO_BROKER_EPOCH = -1


@handles(7, 0, 3)
def handle_controlled_shutdown(
    ctx: RequestContext, request: ControlledShutdownRequest
) -> ControlledShutdownResponse | Awaitable[ControlledShutdownResponse]:
    if not authorize_cluster(ctx, AclOperation.CLUSTER_ACTION):
        return ControlledShutdownResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    cluster = ctx.broker.cluster
    if cluster is None or not cluster.controller.is_active:
        return ControlledShutdownResponse(error_code=ErrorCode.NOT_CONTROLLER)
    known = cluster.controller.broker_epoch(request.broker_id)
    if known is None:
        return ControlledShutdownResponse(error_code=ErrorCode.BROKER_NOT_AVAILABLE)
    if request.broker_epoch != NO_BROKER_EPOCH and request.broker_epoch < known:
        # (A newer epoch than the controller's view: it registered again just now.)
        return ControlledShutdownResponse(error_code=ErrorCode.STALE_BROKER_EPOCH)
    return _shut_down(ctx, request.broker_id)


async def _shut_down(ctx: RequestContext, broker_id: int) -> ControlledShutdownResponse:
    cluster = ctx.broker.cluster
    assert cluster is not None
    try:
        remaining = await cluster.controller.controlled_shutdown(broker_id)
    except NotControllerError:
        return ControlledShutdownResponse(error_code=ErrorCode.NOT_CONTROLLER)
    except ValueError:  # it left meanwhile
        return ControlledShutdownResponse(error_code=ErrorCode.BROKER_NOT_AVAILABLE)
    return ControlledShutdownResponse(
        error_code=ErrorCode.NONE,
        remaining_partitions=[
            RemainingPartition(tp.topic, tp.partition) for tp in sorted(remaining)
        ],
    )
