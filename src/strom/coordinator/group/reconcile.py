"""Moving one KIP-848 member from its current assignment towards its target assignment.

The rule that keeps a partition from having two owners: a member is given a partition only
once no other member owns it (owning includes "pending revocation": the old owner was told to
give it up but has not yet confirmed). Step by step:
- partitions the member owns and keeps: current & target;
- partitions it must give up: current - target. While it still reports owning any of them in
  its heartbeat, it stays at its epoch in UNREVOKED_PARTITIONS and gets nothing new;
- partitions it may receive: target - current, minus those another member still owns
  (UNRELEASED_PARTITIONS until they are free).
When nothing is left to revoke, the member moves to the target epoch.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace

from strom.coordinator.group.consumer_group import Assignment, ConsumerMember, MemberState

Owned = list[tuple[uuid.UUID, list[int]]] | None


class FencedMember(Exception):
    """The member's state cannot be reconciled; it must rejoin (FENCED_MEMBER_EPOCH)."""


def _owns_any(owned: Owned, partitions: Assignment) -> bool:
    if owned is None:
        # Not reported: assume the member still owns everything it was given.
        return True
    for topic_id, ps in owned:
        pending = partitions.get(topic_id)
        if pending and any(p in pending for p in ps):
            return True
    return False


def reconcile(
    member: ConsumerMember,
    target_epoch: int,
    target: Assignment,
    partition_epoch: Callable[[uuid.UUID, int], int],
    owned: Owned,
) -> ConsumerMember:
    """The member's next state (the same object when nothing changes)."""
    if member.state is MemberState.STABLE:
        if member.member_epoch == target_epoch:
            return member
        return _next(member, member.member_epoch, target_epoch, target, partition_epoch, owned)
    if member.state is MemberState.UNREVOKED_PARTITIONS:
        if _owns_any(owned, member.pending_revocation):
            return member
        return _next(member, member.member_epoch + 1, target_epoch, target, partition_epoch, owned)
    if member.state is MemberState.UNRELEASED_PARTITIONS:
        return _next(member, member.member_epoch, target_epoch, target, partition_epoch, owned)
    # UNKNOWN (a state from a newer Kafka): start over, unless the member still holds
    # partitions, which it must first drop by rejoining.
    if owned is None or owned:
        raise FencedMember("member in an unknown state")
    return _next(member, target_epoch, target_epoch, target, partition_epoch, owned)


def _next(
    member: ConsumerMember,
    epoch: int,
    target_epoch: int,
    target: Assignment,
    partition_epoch: Callable[[uuid.UUID, int], int],
    owned: Owned,
) -> ConsumerMember:
    assigned: dict[uuid.UUID, frozenset[int]] = {}
    revoking: dict[uuid.UUID, frozenset[int]] = {}
    incoming: dict[uuid.UUID, frozenset[int]] = {}
    unreleased = False
    for topic_id in set(target) | set(member.assigned):
        want = target.get(topic_id, frozenset())
        have = member.assigned.get(topic_id, frozenset())
        keep = have & want
        give_up = have - keep
        free = set()
        for p in want - keep:
            if partition_epoch(topic_id, p) == -1:
                free.add(p)
            else:
                unreleased = True
        if keep:
            assigned[topic_id] = keep
        if give_up:
            revoking[topic_id] = give_up
        if free:
            incoming[topic_id] = frozenset(free)
    if revoking and _owns_any(owned, revoking):
        # Revoke first; stay at this epoch until the member confirms.
        return replace(
            member.with_epoch(epoch),
            state=MemberState.UNREVOKED_PARTITIONS,
            assigned=assigned,
            pending_revocation=revoking,
        )
    for topic_id, ps in incoming.items():
        assigned[topic_id] = assigned.get(topic_id, frozenset()) | ps
    state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
    return replace(
        member.with_epoch(target_epoch),
        state=state,
        assigned=assigned,
        pending_revocation={},
    )
