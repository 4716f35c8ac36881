"""The active controller's work beyond reacting to failures: partition reassignment, unclean
elections on demand or after a config change, and the preferred-leader rebalance timer.

Kept apart from `controller` (the event machinery): these run inside its event task, on its
cache, and write through its compare-and-set loop (`controller_writes.write`).

Reassignments are started, replaced and cancelled by rewriting a topic's assignment znode
(any broker does it for AlterPartitionReassignments; the controller watches the znode; the
legacy /admin/reassign_partitions znode is turned into the same rewrite).
`advance_reassignments` is the level-triggered rule of `reassignment` applied to every
partition: the controller runs it after loading the cluster (failover), after an assignment
changed, after ISR changes and after brokers came or went, so a reassignment resumes
wherever it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from strom.cluster.zk import controller_logic as logic
from strom.cluster.zk import controller_writes as writes
from strom.cluster.zk import layout as L
from strom.cluster.zk import reassignment as R
from strom.cluster.zk.client import BadVersionError, NoNodeError
from strom.cluster.zk.context import ControllerContext
from strom.cluster.zk.controller_logic import PartitionView
from strom.cluster.zk.layout import PartitionState, TopicPartition

if TYPE_CHECKING:
    from strom.cluster.zk.controller_host import ControllerHost

log = logging.getLogger("strom.controller")

# Kafka's first leader imbalance check comes this long after a controller takes over.
FIRST_IMBALANCE_CHECK_S = 5.0


def reassign_views(
    ctx: ControllerContext, tps: Iterable[TopicPartition] | None = None
) -> dict[TopicPartition, R.ReassignView]:
    out: dict[TopicPartition, R.ReassignView] = {}
    wanted = None if tps is None else set(tps)
    for topic, assignment in ctx.assignments.items():
        for p in assignment.partitions:
            tp = TopicPartition(topic, p)
            if wanted is not None and tp not in wanted:
                continue
            ra = R.partition_assignment(assignment, p)
            vs = ctx.states.get(tp)
            if ra is not None:
                out[tp] = R.ReassignView(ra, vs.state if vs else None)
    return out


async def advance_reassignments(controller: ControllerHost, ctx: ControllerContext) -> None:
    """Completes the reassignments whose target replicas are all in sync and removes
    brokers that are no longer replicas from leaders and ISRs."""
    candidates = {tp for tp, view in reassign_views(ctx).items() if R.needs_action(view)}
    if not candidates:
        return
    views = {tp: v for tp, v in ctx.partitions().items() if tp in candidates}

    def decide(v: Mapping[TopicPartition, PartitionView]) -> dict[TopicPartition, PartitionState]:
        states, _ = R.reassignment_actions(reassign_views(ctx, v), ctx.live_ids(), ctx.fence.epoch)
        return states

    await writes.write(controller, ctx, views, decide)
    pending, completed = R.reassignment_actions(
        reassign_views(ctx, candidates), ctx.live_ids(), ctx.fence.epoch
    )
    by_topic: dict[str, dict[int, R.ReplicaAssignment]] = {}
    for tp, ra in completed.items():
        if tp not in pending:  # its state write lost every compare-and-set: later
            by_topic.setdefault(tp.topic, {})[tp.partition] = ra
    for topic, changes in sorted(by_topic.items()):
        await _write_assignment(controller, ctx, topic, changes)


async def _write_assignment(
    controller: ControllerHost,
    ctx: ControllerContext,
    topic: str,
    changes: Mapping[int, R.ReplicaAssignment],
) -> bool:
    """Compare-and-set of the topic's assignment; False when it changed meanwhile."""
    current = ctx.assignments.get(topic)
    version = ctx.assignment_versions.get(topic)
    if current is None or version is None:
        return False
    new = R.with_partitions(current, changes)
    try:
        ctx.assignment_versions[topic] = await controller.store.set_topic_assignment_fenced(
            topic, new, version, ctx.fence
        )
    except (BadVersionError, NoNodeError):
        # Changed meanwhile (another reassignment, more partitions): the topic's watch
        # brings the new assignment, and the rule runs again on it.
        log.info("controller: assignment of %s changed meanwhile; deciding again", topic)
        return False
    ctx.assignments[topic] = new
    for p, ra in sorted(changes.items()):
        log.info("controller: assignment of %s-%d is now %s", topic, p, ra)
    return True


async def elect_unclean(
    controller: ControllerHost, ctx: ControllerContext, wanted: set[TopicPartition]
) -> dict[TopicPartition, PartitionState]:
    """ElectLeaders with election type UNCLEAN: each partition without a live leader gets
    one, from the live in-sync replicas if any, else from any live replica, whatever the
    topic's unclean.leader.election.enable says (Kafka's admin-triggered offline election).
    Returns the states written."""
    live = ctx.live_ids()
    views = {
        tp: v
        for tp, v in ctx.partitions().items()
        if tp in wanted and v.state is not None and v.state.leader not in live
    }

    def decide(v: Mapping[TopicPartition, PartitionView]) -> dict[TopicPartition, PartitionState]:
        return logic.unclean_elections(v, ctx.live_ids(), ctx.fence.epoch)

    written = await writes.write(controller, ctx, views, decide)
    for tp, vs in sorted(written.items()):
        log.warning(
            "controller: unclean election on demand: %s led by %s, ISR %s",
            tp,
            vs.state.leader,
            list(vs.state.isr),
        )
    return {tp: vs.state for tp, vs in written.items()}


async def offline_partitions_after_config_change(
    controller: ControllerHost, ctx: ControllerContext
) -> None:
    """A topic config changed (a /config/changes notification): partitions without a live
    leader are elected again, so unclean.leader.election.enable turned on takes effect (as
    Kafka's controller does on that change)."""
    live = ctx.live_ids()
    views = {
        tp: v
        for tp, v in ctx.partitions().items()
        if v.state is not None and v.state.leader not in live
    }
    if views:
        with contextlib.suppress(NoNodeError):
            await writes.reconcile(controller, ctx, views)


def schedule_rebalance(controller: ControllerHost, ctx: ControllerContext, delay_s: float) -> None:
    """The next leader imbalance check (auto.leader.rebalance.enable) in `delay_s`; the timer
    is cancelled when the controller resigns."""
    if not controller.auto_leader_rebalance_enable or controller._ctx is not ctx:
        return
    if controller._rebalance_timer is not None:
        controller._rebalance_timer.cancel()

    def fire() -> None:
        controller._rebalance_timer = None
        if controller._ctx is ctx:
            controller._enqueue(
                "auto-rebalance",
                controller._active_handler(lambda c: _auto_rebalance(controller, c)),
            )

    controller._rebalance_timer = asyncio.get_running_loop().call_later(delay_s, fire)


async def _auto_rebalance(controller: ControllerHost, ctx: ControllerContext) -> None:
    try:
        await rebalance_preferred_leaders(
            controller, ctx, controller.leader_imbalance_per_broker_percentage
        )
    finally:
        schedule_rebalance(controller, ctx, controller.leader_imbalance_check_interval_s)


async def rebalance_preferred_leaders(
    controller: ControllerHost, ctx: ControllerContext, threshold_percent: float
) -> None:
    """auto.leader.rebalance.enable: preferred elections for the partitions of every broker
    whose share of partitions led by another broker exceeds leader.imbalance.per.broker.
    percentage (and that it can lead now: live and in sync)."""
    candidates = logic.imbalanced_partitions(ctx.partitions(), ctx.live_ids(), threshold_percent)
    if candidates:
        log.info("controller: leader imbalance; preferred elections for %s", sorted(candidates))
        await writes.elect_preferred(controller, ctx, set(candidates))


async def legacy_reassignment_requested(controller: ControllerHost, ctx: ControllerContext) -> None:
    """/admin/reassign_partitions (what older kafka-reassign-partitions tools write): each
    entry is started like an AlterPartitionReassignments entry, invalid ones are logged, and
    the znode is deleted once the moves are recorded in the topics' assignments (where
    ListPartitionReassignments shows them)."""
    found = await writes.read_admin_request(
        controller,
        L.REASSIGN_PARTITIONS,
        L.decode_reassignment,
        dict[TopicPartition, tuple[int, ...]](),
    )
    if found is None:
        return
    requested, version = found
    by_topic: dict[str, dict[int, R.ReplicaAssignment]] = {}
    for tp, target in sorted(requested.items()):
        assignment = ctx.assignments.get(tp.topic)
        current = None if assignment is None else R.partition_assignment(assignment, tp.partition)
        planned = R.plan_reassignment(current, target, ctx.live_ids())
        if isinstance(planned, R.ReplicaAssignment):
            by_topic.setdefault(tp.topic, {})[tp.partition] = planned
        else:
            log.warning(
                "controller: reassignment of %s in %s refused: %s",
                tp,
                L.REASSIGN_PARTITIONS,
                planned,
            )
    recorded = [
        await _write_assignment(controller, ctx, topic, changes)
        for topic, changes in sorted(by_topic.items())
    ]
    if all(recorded):
        # A newer request written meanwhile keeps the znode: its watch brings it here.
        with contextlib.suppress(NoNodeError, BadVersionError):
            await controller.client.delete(L.REASSIGN_PARTITIONS, version)
    else:
        controller._schedule_resync()  # the topic's new assignment first, then again
    await advance_reassignments(controller, ctx)
