"""Partition reassignment (KIP-455) as Kafka's ZooKeeper-mode controller does it, without I/O.

A partition's assignment in /brokers/topics/<topic> carries, while it is being reassigned,
the full replica set (target replicas first, then the original ones not in the target) and
the `adding_replicas` / `removing_replicas` of the move. The assignment znode is the only
record of the original replicas, so it is the last thing rewritten when a move completes:
a controller that fails over half way resumes from it.

    origin = replicas - adding      target = replicas - removing

Starting (or replacing, or cancelling) a reassignment only rewrites the assignment
(`plan_reassignment`); the new replicas then follow the leader like any follower and the
leader adds them to the ISR once caught up. From there the controller's rule
(`reassignment_actions`) is level-triggered, so that it can be re-run after any event and
after a failover:
- once every target replica is in the ISR: a target replica leads (the current leader if it
  is one and live, else the first live target replica in the ISR, Kafka's reassign election),
  the ISR shrinks to the target, then the assignment becomes the target (no adding/removing);
  the removed brokers see they are no longer replicas and delete their logs;
- a partition not being reassigned whose leader or ISR names brokers that are not replicas
  any more (a cancelled move, or the step between the two writes above) gets them removed,
  with a new leader from the remaining in-sync replicas when the leader was one of them.

Cancelling reassigns to the original replicas: no adding or removing remains, so the second
rule drops the replicas that were being added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace

from strom.cluster.zk.layout import NO_LEADER, PartitionState, TopicAssignment, TopicPartition
from strom.protocol.errors import ErrorCode


@dataclass(frozen=True, slots=True)
class ReplicaAssignment:
    """One partition's replicas with its reassignment, if any (Kafka's ReplicaAssignment)."""

    replicas: tuple[int, ...]
    adding: tuple[int, ...] = ()
    removing: tuple[int, ...] = ()

    @property
    def origin(self) -> tuple[int, ...]:
        return tuple(r for r in self.replicas if r not in self.adding)

    @property
    def target(self) -> tuple[int, ...]:
        return tuple(r for r in self.replicas if r not in self.removing)

    @property
    def is_being_reassigned(self) -> bool:
        return bool(self.adding or self.removing)

    def reassign_to(self, target: Sequence[int]) -> ReplicaAssignment:
        """The assignment while moving from the original replicas to `target`: replicas are
        target + origin without repeats, so reassigning to the origin ends any move."""
        origin = self.origin
        full = tuple(dict.fromkeys([*target, *origin]))
        return ReplicaAssignment(
            full,
            tuple(r for r in full if r not in origin),
            tuple(r for r in full if r not in target),
        )


def partition_assignment(assignment: TopicAssignment, partition: int) -> ReplicaAssignment | None:
    replicas = assignment.partitions.get(partition)
    if replicas is None:
        return None
    return ReplicaAssignment(
        tuple(replicas),
        tuple(assignment.adding_replicas.get(partition, ())),
        tuple(assignment.removing_replicas.get(partition, ())),
    )


def with_partitions(
    assignment: TopicAssignment, changes: Mapping[int, ReplicaAssignment]
) -> TopicAssignment:
    """`assignment` with these partitions' replicas and reassignments replaced."""
    partitions = dict(assignment.partitions)
    adding = dict(assignment.adding_replicas)
    removing = dict(assignment.removing_replicas)
    for p, ra in changes.items():
        partitions[p] = ra.replicas
        adding.pop(p, None)
        removing.pop(p, None)
        if ra.adding:
            adding[p] = ra.adding
        if ra.removing:
            removing[p] = ra.removing
    return replace(
        assignment, partitions=partitions, adding_replicas=adding, removing_replicas=removing
    )


# --- starting and cancelling -----------------------------------------------------------------

Outcome = tuple[ErrorCode, str | None]


def _invalid(message: str) -> Outcome:
    return ErrorCode.INVALID_REPLICA_ASSIGNMENT, message


def plan_reassignment(
    current: ReplicaAssignment | None,
    target: Sequence[int] | None,
    live: AbstractSet[int],
) -> ReplicaAssignment | Outcome:
    """The new assignment of one partition for an AlterPartitionReassignments entry, or the
    error to answer. `target` None cancels; `current` None means the partition does not exist.

    A partition that does not exist is UNKNOWN_TOPIC_OR_PARTITION whatever the entry says, as
    Kafka's KRaft controller answers (Kafka 3.9's ZooKeeper controller looked at the replicas
    first: INVALID_REPLICA_ASSIGNMENT or NO_REASSIGNMENT_IN_PROGRESS for an unknown topic whose
    entry was also wrong). Then the replicas, in the ZooKeeper controller's order."""
    if current is None:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist."
    if target is None:
        if not current.is_being_reassigned:
            return ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, "No reassignment is in progress."
        return current.reassign_to(current.origin)
    if not target:
        return _invalid("Empty replica list specified in partition reassignment.")
    if len(set(target)) != len(target):
        return _invalid(f"Duplicate replica ids in partition reassignment replica list: {target}")
    if any(r < 0 for r in target):
        return _invalid(f"Invalid broker id in replica list: {target}")
    new = current.reassign_to(target)
    dead = [r for r in new.adding if r not in live]
    if dead:
        return _invalid(
            f"Replica assignment has brokers that are not alive. Replica list: {list(new.adding)},"
            f" live broker list: {sorted(live)}"
        )
    return new


# --- the controller's rule -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReassignView:
    assignment: ReplicaAssignment
    state: PartitionState | None


def _changed(
    state: PartitionState, leader: int, isr: Sequence[int], controller_epoch: int
) -> PartitionState:
    return replace(
        state,
        leader=leader,
        leader_epoch=state.leader_epoch + 1,
        isr=tuple(isr),
        controller_epoch=controller_epoch,
    )


def needs_action(view: ReassignView) -> bool:
    """Whether `reassignment_actions` may have something to do for this partition."""
    state = view.state
    if state is None:
        return False
    if view.assignment.is_being_reassigned:
        return True
    replicas = view.assignment.replicas
    return (state.leader != NO_LEADER and state.leader not in replicas) or any(
        r not in replicas for r in state.isr
    )


def reassignment_actions(
    partitions: Mapping[TopicPartition, ReassignView],
    live: AbstractSet[int],
    controller_epoch: int,
) -> tuple[dict[TopicPartition, PartitionState], dict[TopicPartition, ReplicaAssignment]]:
    """The partition states to write, then the completed assignments to write once those
    states are in (a completed partition with a state still to write must wait for it)."""
    states: dict[TopicPartition, PartitionState] = {}
    completed: dict[TopicPartition, ReplicaAssignment] = {}
    for tp, view in partitions.items():
        state = view.state
        if state is None:
            continue
        ra = view.assignment
        if ra.is_being_reassigned:
            target = ra.target
            if not set(target) <= set(state.isr):
                continue  # phase A: the new replicas are catching up
            if state.leader in target and state.leader in live:
                leader = state.leader
            else:
                found = next((r for r in target if r in live and r in state.isr), None)
                if found is None:
                    continue  # no target replica can lead yet: wait for one to return
                leader = found
            isr = tuple(r for r in state.isr if r in target)
            if leader != state.leader or isr != state.isr:
                states[tp] = _changed(state, leader, isr, controller_epoch)
            completed[tp] = ReplicaAssignment(target)
            continue
        replicas = ra.replicas
        if not needs_action(view):
            continue
        isr = tuple(r for r in state.isr if r in replicas)
        if not isr:
            # No in-sync replica is left among the replicas: nothing here can be elected
            # cleanly; the partition goes leaderless and keeps its ISR (see controller_logic).
            isr = state.isr
        if state.leader in replicas or state.leader == NO_LEADER:
            leader = state.leader
        else:
            leader = next((r for r in replicas if r in live and r in isr), NO_LEADER)
        if leader != state.leader or isr != state.isr:
            states[tp] = _changed(state, leader, isr, controller_epoch)
    return states, completed
