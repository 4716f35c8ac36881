"""AlterPartitionReassignments (key 45), version 0: move partitions to other brokers (KIP-455).

Each entry names a partition's target replicas (the first is the preferred leader), or null
to cancel the partition's reassignment in progress. Answered by any broker: it validates the
entries as Kafka's controller does and rewrites the topic's assignment znode with a
compare-and-set (replicas = target + original, with adding_replicas / removing_replicas), which
the controller watches and drives to completion (`cluster/zk/reassignment.py`). Kafka in
ZooKeeper mode answers NOT_CONTROLLER on brokers that are not the controller; clients send the
request to the controller anyway. The answer comes once the reassignment is recorded (and the
local cache shows it), not when it completes.

Per partition: INVALID_REPLICA_ASSIGNMENT (empty list, repeated or negative ids, a new replica
on a broker that is not live), UNKNOWN_TOPIC_OR_PARTITION (also for a topic being deleted),
NO_REASSIGNMENT_IN_PROGRESS (cancelling none), REQUEST_TIMED_OUT (ZooKeeper unavailable).
A single broker (no zookeeper.connect) answers the same checks against itself: only its own id
is a live broker, so nothing can move. Needs ALTER on the cluster (CLUSTER_AUTHORIZATION_FAILED
for the whole request). Not done: replication throttles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping

from strom.cluster.zk import layout as L
from strom.cluster.zk import reassignment as R
from strom.cluster.zk.client import BadVersionError, NoNodeError, ZkError
from strom.cluster.zk.layout import TopicPartition
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.alter_partition_reassignments_request import (
    AlterPartitionReassignmentsRequest,
)
from strom.protocol.messages.alter_partition_reassignments_response import (
    AlterPartitionReassignmentsResponse,
    ReassignablePartitionResponse,
    ReassignableTopicResponse,
)
from strom.security.acl import AclOperation
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles

log = logging.getLogger("strom.reassignments")

WRITE_ATTEMPTS = 10
_Targets = dict[TopicPartition, tuple[int, ...] | None]
_Outcomes = dict[TopicPartition, R.Outcome]


def _targets(request: AlterPartitionReassignmentsRequest) -> _Targets:
    out: _Targets = {}
    for topic in request.topics:
        for p in topic.partitions:
            tp = TopicPartition(topic.name, p.partition_index)
            out[tp] = None if p.replicas is None else tuple(p.replicas)
    return out


def _response(targets: _Targets, outcomes: _Outcomes) -> AlterPartitionReassignmentsResponse:
    by_topic: dict[str, list[ReassignablePartitionResponse]] = {}
    for tp in targets:
        code, message = outcomes.get(tp, (ErrorCode.NONE, None))
        by_topic.setdefault(tp.topic, []).append(
            ReassignablePartitionResponse(
                partition_index=tp.partition, error_code=code, error_message=message
            )
        )
    return AlterPartitionReassignmentsResponse(
        error_code=ErrorCode.NONE,
        error_message=None,
        responses=[
            ReassignableTopicResponse(name=name, partitions=parts)
            for name, parts in by_topic.items()
        ],
    )


def plan_topic(
    topic_partitions: Mapping[int, R.ReplicaAssignment | None],
    targets: Mapping[int, tuple[int, ...] | None],
    live: set[int],
) -> tuple[dict[int, R.ReplicaAssignment], dict[int, R.Outcome]]:
    """The changed assignments and the errors of one topic's entries."""
    changes: dict[int, R.ReplicaAssignment] = {}
    errors: dict[int, R.Outcome] = {}
    for p, target in targets.items():
        current = topic_partitions.get(p)
        planned = R.plan_reassignment(current, target, live)
        if isinstance(planned, R.ReplicaAssignment):
            if planned != current:
                changes[p] = planned
        else:
            errors[p] = planned
    return changes, errors


@handles(45, 0, 0)
def handle_alter_partition_reassignments(
    ctx: RequestContext, request: AlterPartitionReassignmentsRequest
) -> AlterPartitionReassignmentsResponse | Awaitable[AlterPartitionReassignmentsResponse]:
    targets = _targets(request)
    if not authorize_cluster(ctx, AclOperation.ALTER):
        return AlterPartitionReassignmentsResponse(
            error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
            error_message="Request is not authorized to alter partition reassignments.",
        )
    if ctx.broker.cluster is None:
        own = ctx.broker.node.node_id
        outcomes: _Outcomes = {}
        for tp, target in targets.items():
            record = ctx.broker.metadata.get_topic(tp.topic)
            exists = record is not None and 0 <= tp.partition < record.num_partitions
            current = R.ReplicaAssignment((own,)) if exists else None
            planned = R.plan_reassignment(current, target, {own})
            if not isinstance(planned, R.ReplicaAssignment):
                outcomes[tp] = planned
        return _response(targets, outcomes)
    return _alter_in_cluster(ctx, request, targets)


async def _alter_in_cluster(
    ctx: RequestContext, request: AlterPartitionReassignmentsRequest, targets: _Targets
) -> AlterPartitionReassignmentsResponse:
    cluster = ctx.broker.cluster
    assert cluster is not None
    metadata = cluster.metadata
    by_topic: dict[str, dict[int, tuple[int, ...] | None]] = {}
    for tp, target in targets.items():
        by_topic.setdefault(tp.topic, {})[tp.partition] = target
    outcomes: _Outcomes = {}
    written: dict[str, L.TopicAssignment] = {}
    for topic, wanted in by_topic.items():
        try:
            # Bounded: while ZooKeeper is unreachable its calls only wait for it.
            async with asyncio.timeout(cluster.client.connection_timeout_ms / 1000):
                result = await _alter_topic(ctx, topic, wanted)
        except (ZkError, TimeoutError) as exc:
            log.warning("reassignment of %s not recorded: %r", topic, exc)
            failed = (ErrorCode.REQUEST_TIMED_OUT, f"ZooKeeper: {exc!r}")
            outcomes.update({TopicPartition(topic, p): failed for p in wanted})
            continue
        except L.LayoutError as exc:
            log.error("reassignment of %s: unreadable assignment: %s", topic, exc)
            failed = (ErrorCode.UNKNOWN_SERVER_ERROR, f"Unreadable assignment of {topic}: {exc}")
            outcomes.update({TopicPartition(topic, p): failed for p in wanted})
            continue
        errors, assignment = result
        outcomes.update({TopicPartition(topic, p): e for p, e in errors.items()})
        if assignment is not None:
            written[topic] = assignment
    if written:
        await metadata.wait_until(
            lambda: all(metadata.assignments.get(t) == a for t, a in written.items()),
            max(request.timeout_ms, 0) / 1000,
        )
    return _response(targets, outcomes)


async def _alter_topic(
    ctx: RequestContext, topic: str, wanted: Mapping[int, tuple[int, ...] | None]
) -> tuple[dict[int, R.Outcome], L.TopicAssignment | None]:
    """Plans and writes one topic's entries (compare-and-set, re-planned on a conflict).
    Returns the errors by partition and the assignment written, if any."""
    cluster = ctx.broker.cluster
    assert cluster is not None
    metadata = cluster.metadata
    store = metadata.store
    for _ in range(WRITE_ATTEMPTS):
        found = await store.versioned_topic_assignment(topic)
        if found is not None and await metadata.client.exists(L.delete_topic_path(topic)):
            found = None  # being deleted: as unknown (Kafka)
        current: dict[int, R.ReplicaAssignment | None] = {}
        if found is not None:
            current = {p: R.partition_assignment(found[0], p) for p in wanted}
        changes, errors = plan_topic(current, wanted, set(metadata.brokers))
        if found is None or not changes:
            return errors, None
        assignment, version = found
        new = R.with_partitions(assignment, changes)
        try:
            await store.set_topic_assignment(topic, new, version)
        except (BadVersionError, NoNodeError):
            continue  # changed meanwhile (the controller completed a move): plan again
        for p, ra in sorted(changes.items()):
            log.info(
                "reassignment of %s-%d: replicas %s (adding %s, removing %s)",
                topic,
                p,
                list(ra.replicas),
                list(ra.adding),
                list(ra.removing),
            )
        return errors, new
    raise BadVersionError(f"the assignment of {topic} kept changing")
