"""ElectLeaders (key 43), versions 0-2: preferred (0) or unclean (1) leader election on demand.

Single broker: it leads every partition it has, so each existing partition answers
ELECTION_NOT_NEEDED (unknown ones UNKNOWN_TOPIC_OR_PARTITION).

Cluster mode, preferred election: the decision is the controller's (`elect_preferred`: the
first replica leads if it is live and in the ISR). On the active controller the election runs
in its event queue; on any other broker the request is written to
/admin/preferred_replica_election, the znode the controller watches (Kafka in ZooKeeper mode
answers NOT_CONTROLLER there instead; clients send this request to the controller anyway), and
the answer waits (up to timeout_ms) until the metadata cache shows the preferred leaders.
Per partition: ELECTION_NOT_NEEDED when the preferred replica already leads,
PREFERRED_LEADER_NOT_AVAILABLE when it is not live or not in the ISR, REQUEST_TIMED_OUT when
the election was not seen within the timeout.

Unclean election: ELECTION_NOT_NEEDED while the partition has a live leader. A partition
without one gets the first live in-sync replica, or else the first live replica even though it
is not in sync (records it never had are lost), whatever the topic's
unclean.leader.election.enable says, as Kafka's admin-triggered election;
ELIGIBLE_LEADERS_NOT_AVAILABLE when no replica is live. The active controller runs it in its
event queue; another broker writes the same decisions with compare-and-set, stamped with the
controller epoch, and announces them as ISR changes so that the controller re-reads them (the
way a controlled shutdown does without the controller). A null partition list means every
partition; then, as in Kafka, the partitions that needed no election are left out of the
answer. Needs ALTER on the cluster (CLUSTER_AUTHORIZATION_FAILED, as Kafka answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from strom.cluster.zk import controller_logic as logic
from strom.cluster.zk.client import NodeExistsError, ZkError
from strom.cluster.zk.context import NotControllerError
from strom.cluster.zk.layout import TopicPartition
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.elect_leaders_request import ElectLeadersRequest
from strom.protocol.messages.elect_leaders_response import (
    ElectLeadersResponse,
    PartitionResult,
    ReplicaElectionResult,
)
from strom.security.acl import AclOperation
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles

if TYPE_CHECKING:
    from strom.runtime.cluster_runtime import ClusterRuntime

log = logging.getLogger("strom.elect_leaders")

PREFERRED = 0
UNCLEAN = 1

# (error code, message) per partition; None: an election is to be run.
_Outcome = tuple[ErrorCode, str | None] | None


def _requested(ctx: RequestContext, request: ElectLeadersRequest) -> list[TopicPartition]:
    if request.topic_partitions is None:
        topics = ctx.broker.metadata.topics
        return [
            TopicPartition(name, p)
            for name, record in sorted(topics.items())
            for p in range(record.num_partitions)
        ]
    seen: dict[TopicPartition, None] = {}
    for entry in request.topic_partitions:
        for p in entry.partitions:
            seen[TopicPartition(entry.topic, p)] = None
    return list(seen)


def _exists(ctx: RequestContext, tp: TopicPartition) -> bool:
    record = ctx.broker.metadata.get_topic(tp.topic)
    return record is not None and 0 <= tp.partition < record.num_partitions


def _response(
    request: ElectLeadersRequest,
    outcomes: dict[TopicPartition, tuple[ErrorCode, str | None]],
) -> ElectLeadersResponse:
    by_topic: dict[str, list[PartitionResult]] = {}
    for tp, (code, message) in outcomes.items():
        if request.topic_partitions is None and code == ErrorCode.ELECTION_NOT_NEEDED:
            continue
        by_topic.setdefault(tp.topic, []).append(
            PartitionResult(partition_id=tp.partition, error_code=code, error_message=message)
        )
    return ElectLeadersResponse(
        error_code=ErrorCode.NONE,
        replica_election_results=[
            ReplicaElectionResult(topic=topic, partition_result=results)
            for topic, results in by_topic.items()
        ],
    )


def _unknown(tp: TopicPartition) -> tuple[ErrorCode, str | None]:
    return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Partition {tp.topic}-{tp.partition} is unknown."


@handles(43, 0, 2)
def handle_elect_leaders(
    ctx: RequestContext, request: ElectLeadersRequest
) -> ElectLeadersResponse | Awaitable[ElectLeadersResponse]:
    election_type = request.election_type if ctx.api_version >= 1 else PREFERRED
    if election_type not in (PREFERRED, UNCLEAN):
        response = _response(request, {})
        response.error_code = ErrorCode.INVALID_REQUEST
        return response
    if not authorize_cluster(ctx, AclOperation.ALTER):
        named = _requested(ctx, request) if request.topic_partitions is not None else []
        response = _response(
            request, dict.fromkeys(named, (ErrorCode.CLUSTER_AUTHORIZATION_FAILED, None))
        )
        response.error_code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        return response
    wanted = _requested(ctx, request)
    if ctx.broker.cluster is None:
        outcomes = {
            tp: ((ErrorCode.ELECTION_NOT_NEEDED, None) if _exists(ctx, tp) else _unknown(tp))
            for tp in wanted
        }
        return _response(request, outcomes)
    return _elect_in_cluster(ctx, request, election_type, wanted)


def _decide(ctx: RequestContext, tp: TopicPartition, election_type: int) -> _Outcome:
    """What the cache says before electing: an answer, or None when an election must run."""
    cluster = ctx.broker.cluster
    assert cluster is not None
    metadata = cluster.metadata
    if not _exists(ctx, tp):
        return _unknown(tp)
    vs = metadata.state(tp.topic, tp.partition)
    replicas = metadata.replicas(tp.topic, tp.partition)
    live = set(metadata.brokers)
    if election_type == UNCLEAN:
        if vs is not None and vs.state.leader in live:
            return ErrorCode.ELECTION_NOT_NEEDED, None
        if vs is None or not any(r in live for r in replicas):
            return (
                ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE,
                f"Failed to elect leader for partition {tp.topic}-{tp.partition}: no replica "
                f"of {list(replicas)} is live.",
            )
        return None
    if vs is None or not replicas:
        return ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE, "The partition has no state yet."
    preferred = replicas[0]
    if vs.state.leader == preferred and preferred in live:
        return ErrorCode.ELECTION_NOT_NEEDED, None
    if preferred not in live or preferred not in vs.state.isr:
        return (
            ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
            f"Failed to elect leader for partition {tp.topic}-{tp.partition}: preferred "
            f"replica {preferred} is not live and in sync.",
        )
    return None


def _elected(cluster: ClusterRuntime, tp: TopicPartition, election_type: int) -> bool:
    metadata = cluster.metadata
    vs = metadata.state(tp.topic, tp.partition)
    if vs is None:
        return False
    if election_type == UNCLEAN:
        return vs.state.leader in metadata.brokers
    replicas = metadata.replicas(tp.topic, tp.partition)
    return bool(replicas) and vs.state.leader == replicas[0]


async def _request_unclean_election(
    cluster: ClusterRuntime, partitions: list[TopicPartition]
) -> None:
    """Runs the unclean election on this broker's controller if active, else writes the
    controller's decisions itself (see the module docstring). Errors are logged: the
    caller's wait shows whether the election happened."""
    try:
        if cluster.controller.is_active:
            with contextlib.suppress(NotControllerError):
                await cluster.controller.elect_unclean_leaders(partitions)
                return
        metadata = cluster.metadata
        views = metadata.partition_views(partitions)
        changes = logic.unclean_elections(views, set(metadata.brokers), cluster.controller.epoch)
        # A state changed meanwhile is left alone: the caller's wait tells.
        written, _ = await metadata.write_decisions(changes)
        for tp in written:
            log.warning("unclean election on demand: %s led by %s", tp, changes[tp].leader)
    except ZkError as exc:
        log.warning("unclean election failed: %r", exc)


async def _request_election(cluster: ClusterRuntime, partitions: list[TopicPartition]) -> None:
    """Runs the election on this broker's controller if active, else asks the controller
    through /admin/preferred_replica_election. Errors are logged: the caller's wait shows
    whether the election happened."""
    try:
        if cluster.controller.is_active:
            with contextlib.suppress(NotControllerError):  # lost the role meanwhile
                await cluster.controller.elect_preferred_leaders(partitions)
                return
        await cluster.metadata.store.request_preferred_election(partitions)
    except NodeExistsError:
        pass  # an earlier request is pending; the wait tells whether it covered these
    except ZkError as exc:
        log.warning("preferred election request failed: %r", exc)


async def _elect_in_cluster(
    ctx: RequestContext,
    request: ElectLeadersRequest,
    election_type: int,
    wanted: list[TopicPartition],
) -> ElectLeadersResponse:
    cluster = ctx.broker.cluster
    assert cluster is not None
    metadata = cluster.metadata
    outcomes: dict[TopicPartition, tuple[ErrorCode, str | None]] = {}
    to_elect: list[TopicPartition] = []
    for tp in wanted:
        decided = _decide(ctx, tp, election_type)
        if decided is None:
            to_elect.append(tp)
        else:
            outcomes[tp] = decided
    if to_elect:
        zk_timeout_s = cluster.client.connection_timeout_ms / 1000
        try:
            # Bounded: while ZooKeeper is unreachable its calls only wait for it.
            async with asyncio.timeout(zk_timeout_s):
                if election_type == UNCLEAN:
                    await _request_unclean_election(cluster, to_elect)
                else:
                    await _request_election(cluster, to_elect)
            await metadata.wait_until(
                lambda: all(_elected(cluster, tp, election_type) for tp in to_elect),
                max(request.timeout_ms, 0) / 1000,
            )
        except TimeoutError:
            log.warning("election not requested: ZooKeeper did not answer in %.0f s", zk_timeout_s)
        what = "An unclean" if election_type == UNCLEAN else "The preferred"
        for tp in to_elect:
            if _elected(cluster, tp, election_type):
                outcomes[tp] = (ErrorCode.NONE, None)
            else:
                again = _decide(ctx, tp, election_type)
                outcomes[tp] = again or (
                    ErrorCode.REQUEST_TIMED_OUT,
                    f"{what} leader of {tp.topic}-{tp.partition} was not elected within "
                    f"{request.timeout_ms} ms.",
                )
    ordered = {tp: outcomes[tp] for tp in wanted if tp in outcomes}
    return _response(request, ordered)
