"""Server-side partition assignors of KIP-848 consumer groups: "uniform" and "range".

An assignor maps every partition of the subscribed topics to exactly one member subscribed
to that topic. Input: the members (subscribed topic ids, and their current target assignment,
which lets an assignor be sticky) and the partition count of each topic. Both assignors are
deterministic: the same input always yields the same assignment.

- uniform (the default): balanced and sticky. A member keeps the partitions it already has
  where it still subscribes to them; free partitions go to the least loaded eligible member;
  then partitions move from the most to the least loaded members (only to members subscribed
  to their topic) until no such move narrows the gap. With identical subscriptions every
  member ends within one partition of every other; with unchanged membership and topics the
  assignment does not change.
- range: per topic, the subscribed members (static members first, by instance id, then by
  member id) get consecutive ranges; the first `partitions % members` get one more. Not
  sticky, as in Kafka; co-partitioned topics land on the same members.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

Assignment = dict[uuid.UUID, frozenset[int]]
TopicPartition = tuple[uuid.UUID, int]


class AssignorError(Exception):
    """The assignor cannot produce an assignment (e.g. a topic without metadata)."""


@dataclass(frozen=True)
class MemberSpec:
    member_id: str
    subscribed: frozenset[uuid.UUID]
    instance_id: str | None = None
    current: Mapping[uuid.UUID, frozenset[int]] = field(default_factory=dict)


class Assignor(Protocol):
    name: str

    def assign(
        self, members: Mapping[str, MemberSpec], partitions: Mapping[uuid.UUID, int]
    ) -> dict[str, Assignment]: ...


def _freeze(owned: dict[str, dict[uuid.UUID, set[int]]]) -> dict[str, Assignment]:
    return {
        mid: {tid: frozenset(ps) for tid, ps in topics.items() if ps}
        for mid, topics in owned.items()
    }


class UniformAssignor:
    name = "uniform"

    def assign(
        self, members: Mapping[str, MemberSpec], partitions: Mapping[uuid.UUID, int]
    ) -> dict[str, Assignment]:
        order = sorted(members)
        owned: dict[str, dict[uuid.UUID, set[int]]] = {m: {} for m in order}
        load = dict.fromkeys(order, 0)
        owner: dict[TopicPartition, str] = {}

        def give(member_id: str, tp: TopicPartition) -> None:
            owned[member_id].setdefault(tp[0], set()).add(tp[1])
            owner[tp] = member_id
            load[member_id] += 1

        def take(member_id: str, tp: TopicPartition) -> None:
            owned[member_id][tp[0]].discard(tp[1])
            del owner[tp]
            load[member_id] -= 1

        wanted: set[uuid.UUID] = set()
        for spec in members.values():
            for tid in spec.subscribed:
                if tid not in partitions:
                    raise AssignorError(f"topic {tid} has no metadata")
                wanted.add(tid)
        # 1. Stickiness: keep what is still valid (first claim wins on conflicts).
        for mid in order:
            spec = members[mid]
            for tid in sorted(spec.current):
                if tid not in spec.subscribed:
                    continue
                for p in sorted(spec.current[tid]):
                    if p < partitions[tid] and (tid, p) not in owner:
                        give(mid, (tid, p))
        # 2. Free partitions to the least loaded eligible member.
        subscribers = {
            tid: [m for m in order if tid in members[m].subscribed] for tid in sorted(wanted)
        }
        for tid, eligible in subscribers.items():
            for p in range(partitions[tid]):
                if (tid, p) not in owner:
                    give(min(eligible, key=lambda m: (load[m], m)), (tid, p))
        # 3. Balance: move one partition at a time from a heavier to a lighter member.
        # Each move lowers the sum of squared loads, so the loop ends.
        while True:
            moved = False
            by_load = sorted(order, key=lambda m: (load[m], m))
            for donor in reversed(by_load):
                for receiver in by_load:
                    if load[donor] - load[receiver] < 2:
                        break
                    candidates = [
                        (tid, p)
                        for tid in sorted(owned[donor])
                        if tid in members[receiver].subscribed
                        for p in owned[donor][tid]
                    ]
                    if candidates:
                        tp = max(candidates)
                        take(donor, tp)
                        give(receiver, tp)
                        moved = True
                        break
                if moved:
                    break
            if not moved:
                return _freeze(owned)


class RangeAssignor:
    name = "range"

    def assign(
        self, members: Mapping[str, MemberSpec], partitions: Mapping[uuid.UUID, int]
    ) -> dict[str, Assignment]:
        def sort_key(mid: str) -> tuple[int, str]:
            instance = members[mid].instance_id
            return (0, instance) if instance is not None else (1, mid)

        order = sorted(members, key=sort_key)
        owned: dict[str, dict[uuid.UUID, set[int]]] = {m: {} for m in order}
        topics: set[uuid.UUID] = set()
        for spec in members.values():
            topics.update(spec.subscribed)
        for tid in sorted(topics):
            if tid not in partitions:
                raise AssignorError(f"topic {tid} has no metadata")
            subscribed = [m for m in order if tid in members[m].subscribed]
            quota, extra = divmod(partitions[tid], len(subscribed))
            start = 0
            for i, mid in enumerate(subscribed):
                end = start + quota + (1 if i < extra else 0)
                if end > start:
                    owned[mid][tid] = set(range(start, end))
                start = end
        return _freeze(owned)


ASSIGNORS: dict[str, Assignor] = {a.name: a for a in (UniformAssignor(), RangeAssignor())}
