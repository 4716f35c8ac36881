"""AlterPartition on the active controller: a partition leader asks it to write a new ISR
(KIP-497; Kafka's ZooKeeper-mode controller from 2.7).

`check` is the controller's decision for one partition, in Kafka's order; `alter_partitions`
writes the accepted states with compare-and-set against the versions in the controller's cache
(the partition epoch is the state znode's version), fenced by its controller epoch, tells the
local broker, and moves reassignments on whose new replicas may now be in sync. Strom's own
leaders write their ISR changes to ZooKeeper themselves (with compare-and-set and an ISR change
notification, the way of Kafka before 2.7); this is the path for a leader that asks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING

from strom.cluster.zk import controller_tasks as tasks
from strom.cluster.zk.client import BadVersionError, NoNodeError
from strom.cluster.zk.context import ControllerContext
from strom.cluster.zk.layout import RECOVERED, RECOVERING, PartitionState, TopicPartition
from strom.cluster.zk.store import VersionedState
from strom.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from strom.cluster.zk.controller_host import ControllerHost

log = logging.getLogger("strom.controller")

# AlterPartition v2 introduced INELIGIBLE_REPLICA (KIP-841); older leaders get this instead.
INELIGIBLE_REPLICA_VERSION = 2


@dataclass(frozen=True, slots=True)
class Proposal:
    """One partition of a request: what its leader wants written."""

    leader_epoch: int
    isr: tuple[int, ...]
    leader_recovery_state: int
    partition_epoch: int


Outcome = ErrorCode | VersionedState


def check(
    current: VersionedState | None,
    leader: int,
    wanted: Proposal,
    live: Set[int],
    version: int,
) -> ErrorCode | VersionedState | None:
    """The error to answer, the current state when it already is what the leader wants, or
    None when the new state is to be written."""
    if current is None:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    state = current.state
    if wanted.partition_epoch > current.version or wanted.leader_epoch > state.leader_epoch:
        # The leader knows a newer state than this controller: likely no longer the active one.
        return ErrorCode.NOT_CONTROLLER
    if wanted.leader_epoch < state.leader_epoch:
        return ErrorCode.FENCED_LEADER_EPOCH
    if (
        leader == state.leader
        and wanted.isr == state.isr
        and wanted.leader_recovery_state == state.leader_recovery_state
    ):
        return current  # already done (checked before the partition epoch: idempotent)
    if wanted.partition_epoch < current.version:
        return ErrorCode.INVALID_UPDATE_VERSION
    if wanted.leader_recovery_state == RECOVERING and len(wanted.isr) > 1:
        return ErrorCode.INVALID_REQUEST
    if state.leader_recovery_state == RECOVERED and wanted.leader_recovery_state == RECOVERING:
        return ErrorCode.INVALID_REQUEST
    if not set(wanted.isr) <= live:
        return (
            ErrorCode.INELIGIBLE_REPLICA
            if version >= INELIGIBLE_REPLICA_VERSION
            else ErrorCode.OPERATION_NOT_ATTEMPTED
        )
    return None


async def alter_partitions(
    controller: ControllerHost,
    ctx: ControllerContext,
    leader: int,
    wanted: Mapping[TopicPartition, Proposal],
    version: int,
) -> dict[TopicPartition, Outcome]:
    """Checks and writes the proposals of `leader`; the outcome of each partition."""
    out: dict[TopicPartition, Outcome] = {}
    live = ctx.live_ids()
    written: dict[TopicPartition, VersionedState] = {}
    for tp, proposal in wanted.items():
        current = ctx.states.get(tp) if tp.topic in ctx.assignments else None
        decided = check(current, leader, proposal, live, version)
        if decided is not None:
            out[tp] = decided
            continue
        assert current is not None
        new = PartitionState(
            leader=leader,
            leader_epoch=proposal.leader_epoch,
            isr=proposal.isr,
            controller_epoch=ctx.fence.epoch,
            leader_recovery_state=proposal.leader_recovery_state,
        )
        try:
            vs = await controller.store.update_partition_state(tp, new, current.version, ctx.fence)
        except (BadVersionError, NoNodeError):
            log.info("controller: AlterPartition of %s from broker %d lost a race", tp, leader)
            out[tp] = ErrorCode.INVALID_UPDATE_VERSION
            continue
        ctx.states[tp] = vs
        written[tp] = vs
        out[tp] = vs
        log.info(
            "controller: ISR of %s now %s (AlterPartition from %d)", tp, list(vs.state.isr), leader
        )
    if written and controller._ctx is ctx:
        controller.listener.on_partition_states({tp: ctx.update(tp) for tp in written})
        await tasks.advance_reassignments(controller, ctx)  # new replicas may be in sync now
    return out
