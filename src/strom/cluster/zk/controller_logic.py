"""The controller's decisions, without I/O: replica placement and partition leader elections.

Everything here is a function of plain data (broker ids, racks, replica lists, partition
states) returning new `PartitionState` values; the controller writes them to ZooKeeper with a
compare-and-set and, on a conflict, re-reads and asks again. This keeps every rule testable
with tables and property tests, and keeps the rules in one place.

Invariants every function here keeps (the property tests check them):
- a leader is always one of the partition's replicas and a live broker;
- unless unclean election is allowed, a new leader comes from the current ISR, and an ISR only
  shrinks (brokers rejoin the ISR through the leader, never through the controller);
- every change of leader or ISR made by the controller increments the leader epoch (as
  Kafka's ZooKeeper controller: followers use the epoch to fence a stale leader) and stamps
  the controller epoch of the controller that made it;
- an ISR never becomes empty: when its last member dies the partition goes leaderless
  (leader -1) but keeps that member, so the broker holding every committed record is known
  and is elected again when it returns.

Elections follow Kafka's strategies (PartitionLeaderElectionAlgorithms): offline, reassign,
preferred replica and controlled shutdown. Placement follows Kafka's classic
`assignReplicasToBrokers`, rack-unaware and rack-aware.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace

from strom.cluster.zk.layout import NO_LEADER, PartitionState, TopicPartition

# The controller epoch before any controller was elected; the first controller has epoch 1.
INITIAL_CONTROLLER_EPOCH = 0
INITIAL_LEADER_EPOCH = 0


# --- replica placement -----------------------------------------------------------------------


class AssignmentError(ValueError):
    """Replicas cannot be placed as asked."""


class InvalidPartitionsError(AssignmentError):
    pass


class InvalidReplicationFactorError(AssignmentError):
    pass


class IncompleteRackInfoError(AssignmentError):
    """Some brokers have broker.rack and some do not: a rack-aware placement is impossible."""


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    broker_id: int
    rack: str | None = None


def assign_replicas(
    brokers: Iterable[BrokerInfo],
    num_partitions: int,
    replication_factor: int,
    *,
    start_index: int = -1,
    start_partition_id: int = -1,
    rng: random.Random | None = None,
) -> dict[int, tuple[int, ...]]:
    """Replicas for partitions `start_partition_id..` (from 0 when negative), first replica
    being the preferred leader.

    Goals (as Kafka): leaders spread round-robin over the brokers from a random start; the
    followers of one broker's partitions spread over the other brokers (an increasing shift
    after each full round); with racks, replicas spread over racks before doubling up.
    `start_index` >= 0 fixes both the start and the shift (Kafka's fixedStartIndex), which
    makes the result deterministic; otherwise `rng` draws them.
    """
    ordered = sorted(brokers, key=lambda b: b.broker_id)
    if num_partitions <= 0:
        raise InvalidPartitionsError("number of partitions must be larger than 0")
    if replication_factor <= 0:
        raise InvalidReplicationFactorError("replication factor must be larger than 0")
    if replication_factor > len(ordered):
        raise InvalidReplicationFactorError(
            f"replication factor: {replication_factor} larger than available brokers: "
            f"{len(ordered)}"
        )
    if len({b.broker_id for b in ordered}) != len(ordered):
        raise AssignmentError("duplicate broker ids")
    rng = rng or random.Random()
    racks = [b.rack for b in ordered]
    if all(r is None for r in racks):
        ids = [b.broker_id for b in ordered]
        return _assign_rack_unaware(
            ids, num_partitions, replication_factor, start_index, start_partition_id, rng
        )
    if any(r is None for r in racks):
        raise IncompleteRackInfoError(
            "not all brokers have rack information for replica rack aware assignment"
        )
    rack_of = {b.broker_id: b.rack for b in ordered if b.rack is not None}
    return _assign_rack_aware(
        rack_of, num_partitions, replication_factor, start_index, start_partition_id, rng
    )


def assign_added_partitions(
    brokers: Iterable[BrokerInfo],
    existing: Mapping[int, Sequence[int]],
    total_partitions: int,
    *,
    rng: random.Random | None = None,
) -> dict[int, tuple[int, ...]]:
    """Replicas for the partitions added when a topic grows to `total_partitions`.

    The new partitions continue the existing placement: same replication factor as partition
    0, round-robin resuming at the first broker whose id is >= partition 0's first replica,
    partition ids continuing after the existing ones (Kafka's createNewPartitionsAssignment).
    """
    if not existing or 0 not in existing:
        raise InvalidPartitionsError("the topic has no partition 0")
    to_add = total_partitions - len(existing)
    if to_add <= 0:
        raise InvalidPartitionsError(
            f"topic has {len(existing)} partitions; the count can only be increased"
        )
    ordered = sorted(brokers, key=lambda b: b.broker_id)
    first = existing[0][0]
    start = next((i for i, b in enumerate(ordered) if b.broker_id >= first), 0)
    return assign_replicas(
        ordered,
        to_add,
        len(existing[0]),
        start_index=start,
        start_partition_id=len(existing),
        rng=rng,
    )


def _replica_index(first: int, shift: int, j: int, n: int) -> int:
    # The j-th follower sits `1 + (shift + j) % (n - 1)` places after the leader: never on
    # the leader itself, distinct for distinct j < n - 1.
    return (first + 1 + (shift + j) % (n - 1)) % n


def _assign_rack_unaware(
    ids: list[int],
    num_partitions: int,
    rf: int,
    fixed_start: int,
    start_partition_id: int,
    rng: random.Random,
) -> dict[int, tuple[int, ...]]:
    n = len(ids)
    start = fixed_start if fixed_start >= 0 else rng.randrange(n)
    shift = fixed_start if fixed_start >= 0 else rng.randrange(n)
    out: dict[int, tuple[int, ...]] = {}
    pid = max(0, start_partition_id)
    for _ in range(num_partitions):
        if pid > 0 and pid % n == 0:
            shift += 1
        first = (pid + start) % n
        replicas = [ids[first]]
        replicas += [ids[_replica_index(first, shift, j, n)] for j in range(rf - 1)]
        out[pid] = tuple(replicas)
        pid += 1
    return out


def rack_alternated(rack_of: Mapping[int, str]) -> list[int]:
    """Brokers ordered by taking one from each rack in turn (racks sorted by name, brokers by
    id), e.g. rack1: 0,1,2  rack2: 3,4,5  ->  0,3,1,4,2,5. Round-robin over this list puts
    consecutive replicas on different racks."""
    by_rack: dict[str, list[int]] = {}
    for broker, rack in sorted(rack_of.items()):
        by_rack.setdefault(rack, []).append(broker)
    queues = [by_rack[r] for r in sorted(by_rack)]
    out: list[int] = []
    depth = 0
    while len(out) < len(rack_of):
        out.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return out


def _assign_rack_aware(
    rack_of: Mapping[int, str],
    num_partitions: int,
    rf: int,
    fixed_start: int,
    start_partition_id: int,
    rng: random.Random,
) -> dict[int, tuple[int, ...]]:
    arranged = rack_alternated(rack_of)
    n = len(arranged)
    num_racks = len(set(rack_of.values()))
    start = fixed_start if fixed_start >= 0 else rng.randrange(n)
    shift = fixed_start if fixed_start >= 0 else rng.randrange(n)
    out: dict[int, tuple[int, ...]] = {}
    pid = max(0, start_partition_id)
    for _ in range(num_partitions):
        if pid > 0 and pid % n == 0:
            shift += 1
        first = (pid + start) % n
        leader = arranged[first]
        replicas = [leader]
        racks_used = {rack_of[leader]}
        brokers_used = {leader}
        k = 0
        for _ in range(rf - 1):
            while True:
                broker = arranged[_replica_index(first, shift * num_racks, k, n)]
                rack = rack_of[broker]
                k += 1
                # Skip a broker whose rack already has a replica while some rack has none,
                # and a broker that already has a replica while some broker has none.
                if (rack not in racks_used or len(racks_used) == num_racks) and (
                    broker not in brokers_used or len(brokers_used) == n
                ):
                    replicas.append(broker)
                    racks_used.add(rack)
                    brokers_used.add(broker)
                    break
        out[pid] = tuple(replicas)
        pid += 1
    return out


# --- partition states and elections ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionView:
    """What the controller knows of one partition: its replicas (preference order) and its
    current state, None when the partition was never initialised (no state znode yet)."""

    replicas: tuple[int, ...]
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


def initial_state(
    replicas: Sequence[int], live: AbstractSet[int], controller_epoch: int
) -> PartitionState | None:
    """A new partition: the first live replica leads, every live replica is in the ISR
    (they are all empty). None when no replica is live: the partition waits for one."""
    alive = [r for r in replicas if r in live]
    if not alive:
        return None
    return PartitionState(alive[0], INITIAL_LEADER_EPOCH, tuple(alive), controller_epoch)


def elect_offline(
    replicas: Sequence[int],
    state: PartitionState,
    live: AbstractSet[int],
    unclean: bool,
    controller_epoch: int,
) -> PartitionState | None:
    """The leader is gone: the first replica (preference order) that is live and in the ISR
    leads, with the ISR cut to live brokers. Without one, and only if unclean election is
    enabled, the first live replica leads with an ISR of itself (records it never had are
    lost). None when no replica can lead."""
    leader = next((r for r in replicas if r in live and r in state.isr), None)
    if leader is not None:
        return _changed(state, leader, [r for r in state.isr if r in live], controller_epoch)
    if not unclean:
        return None
    leader = next((r for r in replicas if r in live), None)
    if leader is None:
        return None
    # Kafka 3.2+ may mark this RECOVERING; Strom leaves the recovery state as it was.
    return _changed(state, leader, [leader], controller_epoch)


def elect_preferred(
    replicas: Sequence[int], state: PartitionState, live: AbstractSet[int], controller_epoch: int
) -> PartitionState | None:
    """Move leadership back to the preferred (first) replica if it is live and in sync; None
    when it already leads or cannot."""
    if not replicas or state.leader == replicas[0]:
        return None
    preferred = replicas[0]
    if preferred not in live or preferred not in state.isr:
        return None
    return _changed(state, preferred, state.isr, controller_epoch)


def elect_reassigned(
    target_replicas: Sequence[int],
    state: PartitionState,
    live: AbstractSet[int],
    controller_epoch: int,
) -> PartitionState | None:
    """End of a reassignment: the first target replica that is live and in sync leads."""
    leader = next((r for r in target_replicas if r in live and r in state.isr), None)
    if leader is None:
        return None
    return _changed(state, leader, state.isr, controller_epoch)


def elect_controlled_shutdown(
    replicas: Sequence[int],
    state: PartitionState,
    live: AbstractSet[int],
    shutting_down: AbstractSet[int],
    controller_epoch: int,
) -> PartitionState | None:
    """Move leadership off brokers that are shutting down, to the first replica that is live,
    in sync and staying; the leaving brokers drop out of the ISR."""
    leader = next(
        (r for r in replicas if r in live and r in state.isr and r not in shutting_down), None
    )
    if leader is None:
        return None
    return _changed(
        state, leader, [r for r in state.isr if r not in shutting_down], controller_epoch
    )


def remove_from_isr(
    state: PartitionState, replica: int, controller_epoch: int
) -> PartitionState | None:
    """A replica went offline: drop it from the ISR (and from leadership). The last ISR
    member stays (see the module invariants). None when it is not in the ISR."""
    if replica not in state.isr:
        return None
    leader = NO_LEADER if state.leader == replica else state.leader
    isr = state.isr if len(state.isr) == 1 else tuple(r for r in state.isr if r != replica)
    return _changed(state, leader, isr, controller_epoch)


def is_fenced(state: PartitionState, controller_epoch: int) -> bool:
    """A newer controller already wrote this state: this controller must stop acting."""
    return state.controller_epoch > controller_epoch


def _shrunk_isr(state: PartitionState, live: AbstractSet[int]) -> tuple[int, ...]:
    isr = tuple(r for r in state.isr if r in live)
    if isr:
        return isr
    # Keep one member: the last leader if it was in sync (it had every committed record),
    # else the first. Kafka keeps whichever member its removals reached last.
    return (state.leader,) if state.leader in state.isr else state.isr[:1]


def reconcile(
    partitions: Mapping[TopicPartition, PartitionView],
    live: AbstractSet[int],
    controller_epoch: int,
    unclean: Callable[[str], bool] = lambda topic: False,
) -> dict[TopicPartition, PartitionState]:
    """The state changes that bring every partition in line with the live brokers.

    This one rule covers controller failover, brokers dying and brokers returning:
    - a partition never initialised gets its first state (if a replica is live);
    - a partition whose leader is not live gets one by offline election; if none can lead
      it goes leaderless (leader -1) with dead brokers dropped from the ISR (keeping one);
    - a partition whose leader is live drops dead brokers from its ISR.
    Partitions already in line produce no change, so calling it again is harmless.
    `unclean(topic)` says whether the topic allows unclean leader election.
    """
    out: dict[TopicPartition, PartitionState] = {}
    for tp, view in partitions.items():
        state = view.state
        if state is None:
            first = initial_state(view.replicas, live, controller_epoch)
            if first is not None:
                out[tp] = first
            continue
        new: PartitionState | None
        if state.leader not in live:
            new = elect_offline(view.replicas, state, live, unclean(tp.topic), controller_epoch)
            if new is None:
                isr = _shrunk_isr(state, live) if state.isr else state.isr
                if state.leader != NO_LEADER or isr != state.isr:
                    new = _changed(state, NO_LEADER, isr, controller_epoch)
        else:
            isr = _shrunk_isr(state, live)
            new = _changed(state, state.leader, isr, controller_epoch) if isr != state.isr else None
        if new is not None:
            out[tp] = new
    return out


def topics_needing_unclean_check(
    partitions: Mapping[TopicPartition, PartitionView], live: AbstractSet[int]
) -> set[str]:
    """Topics with a leaderless partition that no live in-sync replica can take over: only
    their `unclean.leader.election.enable` matters for `reconcile`, so only their configs
    need reading."""
    return {
        tp.topic
        for tp, view in partitions.items()
        if view.state is not None
        and view.state.leader not in live
        and not any(r in live for r in view.state.isr)
    }


def controlled_shutdown(
    partitions: Mapping[TopicPartition, PartitionView],
    live: AbstractSet[int],
    shutting_down: AbstractSet[int],
    controller_epoch: int,
) -> tuple[dict[TopicPartition, PartitionState], set[TopicPartition]]:
    """Before brokers in `shutting_down` stop: move their leaderships elsewhere and drop them
    from the ISRs of the partitions they follow, so that producers with acks=all do not wait
    for them. Returns the changes and the partitions they still lead afterwards (no other
    in-sync replica: those stay until the broker is gone). A partition with a single replica
    has nowhere to go and nothing to wait for, so, as in Kafka, it is not counted: it must
    not make the shutdown retry."""
    staying = set(live) - set(shutting_down)
    out: dict[TopicPartition, PartitionState] = {}
    remaining: set[TopicPartition] = set()
    for tp, view in partitions.items():
        state = view.state
        if state is None or len(view.replicas) <= 1:
            continue
        if state.leader in shutting_down:
            new = elect_controlled_shutdown(
                view.replicas, state, staying, shutting_down, controller_epoch
            )
            if new is None:
                remaining.add(tp)
            else:
                out[tp] = new
        elif state.leader != NO_LEADER and any(r in shutting_down for r in state.isr):
            # (A leaderless partition is left to `reconcile`: its ISR is what it has.)
            isr = [r for r in state.isr if r not in shutting_down] or [state.leader]
            out[tp] = _changed(state, state.leader, isr, controller_epoch)
    return out, remaining


def preferred_elections(
    partitions: Mapping[TopicPartition, PartitionView],
    live: AbstractSet[int],
    controller_epoch: int,
) -> dict[TopicPartition, PartitionState]:
    """Preferred replica election for each partition given (where it changes anything)."""
    out: dict[TopicPartition, PartitionState] = {}
    for tp, view in partitions.items():
        if view.state is not None:
            new = elect_preferred(view.replicas, view.state, live, controller_epoch)
            if new is not None:
                out[tp] = new
    return out


def unclean_elections(
    partitions: Mapping[TopicPartition, PartitionView],
    live: AbstractSet[int],
    controller_epoch: int,
) -> dict[TopicPartition, PartitionState]:
    """ElectLeaders UNCLEAN: every partition without a live leader gets the first live
    in-sync replica, else the first live replica (unclean, whatever the topic's config).
    Partitions with a live leader, or no live replica, are left out."""
    out: dict[TopicPartition, PartitionState] = {}
    for tp, view in partitions.items():
        state = view.state
        if state is None or state.leader in live:
            continue
        new = elect_offline(view.replicas, state, live, True, controller_epoch)
        if new is not None:
            out[tp] = new
    return out


def imbalanced_partitions(
    partitions: Mapping[TopicPartition, PartitionView],
    live: AbstractSet[int],
    threshold_percent: float = 10.0,
) -> dict[TopicPartition, PartitionView]:
    """For auto.leader.rebalance.enable: the partitions of every preferred broker whose share
    of partitions not led by it exceeds `threshold_percent`
    (leader.imbalance.per.broker.percentage) and that it could lead now."""
    by_preferred: dict[int, list[tuple[TopicPartition, PartitionView, PartitionState]]] = {}
    for tp, view in partitions.items():
        if view.replicas and view.state is not None:
            by_preferred.setdefault(view.replicas[0], []).append((tp, view, view.state))
    out: dict[TopicPartition, PartitionView] = {}
    for broker, entries in by_preferred.items():
        if broker not in live:
            continue
        not_led = [(tp, view, st) for tp, view, st in entries if st.leader != broker]
        if 100.0 * len(not_led) / len(entries) > threshold_percent:
            out.update((tp, view) for tp, view, st in not_led if broker in st.isr)
    return out
