"""Replication state of one partition on one broker: role, epochs, ISR and the high watermark.

No I/O here: the caller feeds in what happened (a controller decision, a local append, a follower
fetch, the result of an ISR write) and acts on the events returned. Time comes from an injected
clock, so tests drive lag and ISR expiry by hand.

Leader rules (the behaviour of Kafka's Partition, restated):
  high watermark   the smallest log end offset (LEO) among the leader and the followers of the
                   *maximal* ISR, and among followers that are caught up and about to join it;
                   it only moves forward, never past the leader's LEO, and not at all while the
                   committed ISR is smaller than the effective min.insync.replicas (Kafka 3.7+).
                   Follower LEOs only count once reported in the current leader epoch: becoming
                   leader forgets them (a new leader) and a fetch carrying another epoch is fenced
                   before it can update anything (`check_follower_fetch`).
  caught up        a follower whose LEO equals the leader's, or that reached the leader's LEO
                   (as of one of its fetches) within the last replica.lag.time.max.ms.
  ISR shrink       ISR followers that are not caught up leave (`maybe_shrink_isr`, called on a
                   timer, Kafka runs it every replica.lag.time.max.ms / 2).
  ISR expand       a follower outside the ISR joins once its LEO reaches both the high watermark
                   and the offset where the current leader epoch began (so it holds every record
                   this leader may have committed).
  ISR changes      one at a time: a change is *pending* until the caller reports the result of
                   its compare-and-set on the ZooKeeper state znode. While an expansion is
                   pending the maximal ISR already includes the new member (stricter for the
                   high watermark, hence safe); while a shrink is pending it still includes the
                   leaving members (the write may fail).
  acks=all         refused before the append (NOT_ENOUGH_REPLICAS) when the committed ISR is
                   smaller than the effective min ISR; acknowledged once the high watermark
                   passes the batch, with NOT_ENOUGH_REPLICAS_AFTER_APPEND when the maximal ISR
                   shrank below the min ISR meanwhile.
  effective min ISR  min(min.insync.replicas, replication factor), as Kafka.

Epoch rules: a controller decision whose partition epoch (the state znode's version) or leader
epoch is older than the one applied is stale and ignored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from strom.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from strom.cluster.zk.context import PartitionUpdate
    from strom.cluster.zk.layout import PartitionState

__all__ = [
    "DEFAULT_REPLICA_LAG_TIME_MAX_MS",
    "UNKNOWN_OFFSET",
    "Event",
    "HighWatermarkMoved",
    "IsrChangeRequested",
    "MonotonicClock",
    "PartitionStateUpdate",
    "PendingIsrChange",
    "RemoteReplica",
    "ReplicaState",
    "Role",
    "Transition",
]

UNKNOWN_OFFSET = -1
NO_EPOCH = -1
DEFAULT_REPLICA_LAG_TIME_MAX_MS = 30_000  # replica.lag.time.max.ms


class MonotonicClock(Protocol):
    """What the state needs of a clock (strom.clock.Clock satisfies it)."""

    def monotonic_ms(self) -> int: ...


class Role(enum.Enum):
    NONE = "none"
    LEADER = "leader"
    FOLLOWER = "follower"


@dataclass(frozen=True, slots=True)
class PartitionStateUpdate:
    """A controller decision for one partition (Kafka's LeaderAndIsr partition state)."""

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    replicas: tuple[int, ...]
    partition_epoch: int  # the version of the ZooKeeper state znode
    controller_epoch: int = -1

    @classmethod
    def from_zk(cls, update: PartitionUpdate) -> PartitionStateUpdate:
        state = update.state
        return cls(
            leader=state.leader,
            leader_epoch=state.leader_epoch,
            isr=tuple(state.isr),
            replicas=tuple(update.replicas),
            partition_epoch=update.zk_version,
            controller_epoch=state.controller_epoch,
        )


@dataclass(frozen=True, slots=True)
class PendingIsrChange:
    """An ISR change the leader wants written: compare-and-set of the state znode at
    `expected_partition_epoch`, then `isr_change_committed` / `isr_change_failed`."""

    kind: Literal["expand", "shrink"]
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]  # the proposed ISR
    controller_epoch: int
    expected_partition_epoch: int

    def zk_state(self) -> PartitionState:
        """The znode content to write (leader and epoch unchanged: only the ISR moves)."""
        from strom.cluster.zk.layout import PartitionState

        return PartitionState(
            leader=self.leader,
            leader_epoch=self.leader_epoch,
            isr=self.isr,
            controller_epoch=self.controller_epoch,
        )


@dataclass(frozen=True, slots=True)
class HighWatermarkMoved:
    """The leader's high watermark advanced: apply it to the log (update_high_watermark) and
    wake the produce (acks=all) and fetch purgatories of the partition."""

    old: int
    new: int


@dataclass(frozen=True, slots=True)
class IsrChangeRequested:
    """Persist `change` (compare-and-set in ZooKeeper), then report the outcome."""

    change: PendingIsrChange


Event = HighWatermarkMoved | IsrChangeRequested


@dataclass(frozen=True, slots=True)
class Transition:
    """The outcome of become_leader / become_follower."""

    applied: bool  # False: the decision was stale and nothing changed
    new_leader_epoch: bool  # leader: stamp the epoch at the log end; follower: (re)start fetching
    events: tuple[Event, ...] = ()


@dataclass(slots=True)
class RemoteReplica:
    """The leader's view of one follower, updated by that follower's fetches."""

    broker_id: int
    log_end_offset: int = UNKNOWN_OFFSET
    log_start_offset: int = UNKNOWN_OFFSET
    # The leader's LEO when the previous fetch arrived: reaching it later still proves the
    # follower was at most one fetch interval behind (Kafka's lastFetchLeaderLogEndOffset).
    last_fetch_leader_log_end_offset: int = UNKNOWN_OFFSET
    last_fetch_time_ms: int | None = None
    # The latest time at which the follower had everything the leader had. None: never (in this
    # leadership), which no amount of elapsed time can turn into "caught up".
    last_caught_up_time_ms: int | None = None

    def is_caught_up(self, leader_log_end_offset: int, now_ms: int, max_lag_ms: int) -> bool:
        if self.log_end_offset == leader_log_end_offset:
            return True
        last = self.last_caught_up_time_ms
        return last is not None and now_ms - last <= max_lag_ms


@dataclass(slots=True)
class ReplicaState:
    """Replication state of one partition on the broker `local_broker_id`."""

    local_broker_id: int
    clock: MonotonicClock
    replica_lag_time_max_ms: int = DEFAULT_REPLICA_LAG_TIME_MAX_MS
    min_insync_replicas: int = 1
    role: Role = Role.NONE
    leader_id: int = -1
    leader_epoch: int = NO_EPOCH
    partition_epoch: int = -1
    controller_epoch: int = -1
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()  # committed (in ZooKeeper); empty on a follower, as in Kafka
    pending: PendingIsrChange | None = None
    # Leader only: the local log's end and high watermark, and where this leader epoch began.
    log_end_offset: int = 0
    high_watermark: int = 0
    leader_epoch_start_offset: int | None = None
    followers: dict[int, RemoteReplica] = field(default_factory=dict)

    # -- views ---------------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    @property
    def maximal_isr(self) -> tuple[int, ...]:
        """The ISR including a pending expansion (and still the leaving members of a pending
        shrink): what the high watermark and acks=all wait for."""
        pending = self.pending
        if pending is not None and pending.kind == "expand":
            return pending.isr
        return self.isr

    @property
    def effective_min_isr(self) -> int:
        return max(1, min(self.min_insync_replicas, len(self.replicas) or 1))

    @property
    def under_min_isr(self) -> bool:
        return self.is_leader and len(self.isr) < self.effective_min_isr

    def out_of_sync_replicas(self) -> set[int]:
        """ISR followers that are not caught up (none while an ISR change is pending)."""
        if not self.is_leader or self.pending is not None:
            return set()
        now = self.clock.monotonic_ms()
        out = set()
        for replica_id in self.isr:
            if replica_id == self.local_broker_id:
                continue
            follower = self.followers.get(replica_id)
            if follower is None or not follower.is_caught_up(
                self.log_end_offset, now, self.replica_lag_time_max_ms
            ):
                out.add(replica_id)
        return out

    # -- role changes --------------------------------------------------------------------------

    def _is_stale(self, update: PartitionStateUpdate) -> bool:
        return (
            update.partition_epoch < self.partition_epoch or update.leader_epoch < self.leader_epoch
        )

    def _is_repeat(self, update: PartitionStateUpdate, role: Role) -> bool:
        return (
            self.role is role
            and update.partition_epoch == self.partition_epoch
            and update.leader_epoch == self.leader_epoch
            and update.leader == self.leader_id
        )

    def become_leader(
        self, update: PartitionStateUpdate, log_end_offset: int, high_watermark: int
    ) -> Transition:
        """Apply a decision that makes this broker the leader.

        `log_end_offset` / `high_watermark` are the local log's. On a new leader epoch the
        caller must record the epoch as starting at the log end in the log's leader epoch
        cache (`log.leader_epoch_cache.assign(epoch, log.log_end_offset)`): a follower holding
        records of a later epoch than this log ever saw must be able to learn where to truncate.
        """
        if update.leader != self.local_broker_id:
            raise ValueError(f"broker {self.local_broker_id} is not the leader in {update}")
        if self._is_stale(update):
            return Transition(applied=False, new_leader_epoch=False)
        now = self.clock.monotonic_ms()
        if self._is_repeat(update, Role.LEADER):
            # The state we already hold (a repeated notification): keep a pending ISR change,
            # whose write may still succeed. Only the replica set may have changed (a
            # reassignment began or ended: the assignment changes, not the state).
            if tuple(update.replicas) == self.replicas:
                return Transition(applied=True, new_leader_epoch=False)
            self.replicas = tuple(update.replicas)
            self._sync_followers()
            events = self._maybe_increment_high_watermark(now)
            return Transition(applied=True, new_leader_epoch=False, events=tuple(events))
        was_leader = self.is_leader
        new_epoch = update.leader_epoch > self.leader_epoch or not was_leader
        self.role = Role.LEADER
        self.leader_id = update.leader
        self.controller_epoch = update.controller_epoch
        self.partition_epoch = update.partition_epoch
        self.replicas = tuple(update.replicas)
        self.isr = tuple(update.isr)
        self.pending = None  # the controller's state supersedes any change in flight
        self.log_end_offset = max(log_end_offset, 0)
        if not was_leader:
            self.high_watermark = max(high_watermark, 0)
        self._sync_followers()
        if new_epoch:
            self.leader_epoch = update.leader_epoch
            self.leader_epoch_start_offset = self.log_end_offset
            for follower in self.followers.values():
                self._reset_follower(follower, now, was_leader)
        events = self._maybe_increment_high_watermark(now)
        return Transition(applied=True, new_leader_epoch=new_epoch, events=tuple(events))

    def _sync_followers(self) -> None:
        wanted = [r for r in self.replicas if r != self.local_broker_id]
        self.followers = {r: self.followers.get(r) or RemoteReplica(r) for r in wanted}

    def _reset_follower(self, follower: RemoteReplica, now_ms: int, was_leader: bool) -> None:
        """A new leader epoch: ISR members get a fresh lag allowance, others none, so a
        follower that left the ISR does not hold back the high watermark (Kafka does this)."""
        in_isr = follower.broker_id in self.isr
        if not was_leader:
            # What a previous leadership learnt of this follower may describe records that the
            # follower has since truncated: forget it.
            follower.log_end_offset = UNKNOWN_OFFSET
            follower.log_start_offset = UNKNOWN_OFFSET
            follower.last_fetch_leader_log_end_offset = UNKNOWN_OFFSET
            follower.last_fetch_time_ms = None
        else:
            follower.last_fetch_leader_log_end_offset = self.log_end_offset
            follower.last_fetch_time_ms = now_ms if in_isr else None
        follower.last_caught_up_time_ms = now_ms if in_isr else None

    def become_follower(self, update: PartitionStateUpdate) -> Transition:
        """Apply a decision in which another broker (or none, leader -1) leads.

        `new_leader_epoch` tells the caller to (re)start fetching: truncate first, then fetch
        from `update.leader` with the new epoch.
        """
        if update.leader == self.local_broker_id:
            raise ValueError(f"broker {self.local_broker_id} leads in {update}")
        if self._is_stale(update):
            return Transition(applied=False, new_leader_epoch=False)
        if self._is_repeat(update, Role.FOLLOWER):
            self.replicas = tuple(update.replicas)
            return Transition(applied=True, new_leader_epoch=False)
        new_epoch = update.leader_epoch > self.leader_epoch or self.role is not Role.FOLLOWER
        self.role = Role.FOLLOWER
        self.leader_id = update.leader
        self.leader_epoch = update.leader_epoch
        self.controller_epoch = update.controller_epoch
        self.partition_epoch = update.partition_epoch
        self.replicas = tuple(update.replicas)
        self.isr = ()
        self.pending = None
        self.leader_epoch_start_offset = None
        self.followers = {}
        return Transition(applied=True, new_leader_epoch=new_epoch)

    def become_none(self) -> None:
        """The replica was removed or its partition deleted: forget the role (not the epochs,
        which keep fencing stale decisions)."""
        self.role = Role.NONE
        self.leader_id = -1
        self.isr = ()
        self.pending = None
        self.followers = {}
        self.leader_epoch_start_offset = None

    def set_min_insync_replicas(self, value: int) -> list[Event]:
        """The topic's min.insync.replicas changed; lowering it may let the HW advance."""
        self.min_insync_replicas = value
        return self._maybe_increment_high_watermark(self.clock.monotonic_ms())

    # -- leader: appends and follower fetches ---------------------------------------------------

    def on_local_append(self, log_end_offset: int) -> list[Event]:
        """The leader appended (produce, marker, coordinator write): `log_end_offset` is the
        log's new end. With an ISR of one the high watermark follows at once."""
        if not self.is_leader:
            return []
        self.log_end_offset = max(self.log_end_offset, log_end_offset)
        return self._maybe_increment_high_watermark(self.clock.monotonic_ms())

    def check_follower_fetch(self, replica_id: int, current_leader_epoch: int) -> ErrorCode:
        """The partition-level answer to a fetch from follower `replica_id` before reading:
        NONE, or the error to return (then nothing else is done for it). An epoch of -1 (Fetch
        before v9) is not checked."""
        if current_leader_epoch != NO_EPOCH:
            if current_leader_epoch < self.leader_epoch:
                return ErrorCode.FENCED_LEADER_EPOCH
            if current_leader_epoch > self.leader_epoch:
                return ErrorCode.UNKNOWN_LEADER_EPOCH
        if not self.is_leader:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        if replica_id not in self.followers:
            # A replica unknown in this epoch: with an epoch the follower retries later (Kafka
            # answers UNKNOWN_LEADER_EPOCH), without one nothing better than this is known.
            if current_leader_epoch != NO_EPOCH:
                return ErrorCode.UNKNOWN_LEADER_EPOCH
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        return ErrorCode.NONE

    def update_follower_fetch_state(
        self,
        replica_id: int,
        fetch_offset: int,
        log_start_offset: int,
        leader_log_end_offset: int,
    ) -> list[Event]:
        """Record a follower fetch that passed `check_follower_fetch` and was not answered with a
        diverging epoch: the follower's LEO is its fetch offset. `leader_log_end_offset` is the
        leader's LEO when the fetch was read (appends after the read must not make the follower
        look behind). May expand the ISR and advance the high watermark."""
        follower = self.followers.get(replica_id)
        if not self.is_leader or follower is None:
            return []
        now = self.clock.monotonic_ms()
        self.log_end_offset = max(self.log_end_offset, leader_log_end_offset)
        if fetch_offset >= leader_log_end_offset:
            caught_up: int | None = now
        elif (
            follower.last_fetch_time_ms is not None
            and fetch_offset >= follower.last_fetch_leader_log_end_offset
        ):
            # It now has what the leader had at its previous fetch: it was caught up then.
            caught_up = follower.last_fetch_time_ms
        else:
            caught_up = None
        if caught_up is not None:
            previous = follower.last_caught_up_time_ms
            follower.last_caught_up_time_ms = (
                caught_up if previous is None else max(previous, caught_up)
            )
        follower.log_end_offset = fetch_offset
        follower.log_start_offset = log_start_offset
        follower.last_fetch_leader_log_end_offset = max(
            leader_log_end_offset, follower.last_fetch_leader_log_end_offset
        )
        follower.last_fetch_time_ms = now
        events: list[Event] = []
        expand = self._maybe_expand_isr(follower)
        if expand is not None:
            events.append(expand)
        events.extend(self._maybe_increment_high_watermark(now))
        return events

    def _maybe_expand_isr(self, follower: RemoteReplica) -> IsrChangeRequested | None:
        start = self.leader_epoch_start_offset
        if (
            self.pending is not None
            or follower.broker_id in self.isr
            or follower.broker_id not in self.replicas
            or start is None
            or follower.log_end_offset < self.high_watermark
            or follower.log_end_offset < start
        ):
            return None
        return self._propose("expand", (*self.isr, follower.broker_id))

    def maybe_shrink_isr(self) -> list[Event]:
        """Drop lagging followers from the ISR (a pending change blocks this until resolved)."""
        out = self.out_of_sync_replicas()
        if not out:
            return []
        return [self._propose("shrink", tuple(r for r in self.isr if r not in out))]

    def _propose(
        self, kind: Literal["expand", "shrink"], isr: tuple[int, ...]
    ) -> IsrChangeRequested:
        change = PendingIsrChange(
            kind=kind,
            leader=self.local_broker_id,
            leader_epoch=self.leader_epoch,
            isr=isr,
            controller_epoch=self.controller_epoch,
            expected_partition_epoch=self.partition_epoch,
        )
        self.pending = change
        return IsrChangeRequested(change)

    # -- leader: outcome of an ISR write --------------------------------------------------------

    def isr_change_committed(self, change: PendingIsrChange, partition_epoch: int) -> list[Event]:
        """The compare-and-set succeeded; `partition_epoch` is the znode's new version. A result
        for a change that is no longer pending (a controller decision came first) is ignored."""
        if change != self.pending or not self.is_leader:
            return []
        self.pending = None
        self.isr = change.isr
        self.partition_epoch = max(self.partition_epoch, partition_epoch)
        # A shrink may have removed the slowest member: the high watermark may advance now.
        return self._maybe_increment_high_watermark(self.clock.monotonic_ms())

    def isr_change_failed(self, change: PendingIsrChange, *, retry: bool) -> list[Event]:
        """The write failed. `retry` (connection loss, timeout): keep the change pending and ask
        for it again. Otherwise (the znode version moved: the controller changed the state) go
        back to the committed ISR; the caller should re-read the state and apply it with
        become_leader / become_follower, or wait for the controller's notification."""
        if change != self.pending or not self.is_leader:
            return []
        if retry:
            return [IsrChangeRequested(change)]
        self.pending = None
        return []

    # -- leader: acks=all -----------------------------------------------------------------------

    def check_min_isr_before_append(self, min_insync_replicas: int | None = None) -> ErrorCode:
        """For an acks=all produce, before appending: NOT_ENOUGH_REPLICAS when the committed ISR
        is smaller than the effective min ISR. Appends with acks 0 or 1 skip this check."""
        if not self.is_leader:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        if len(self.isr) < self._effective_min_isr(min_insync_replicas):
            return ErrorCode.NOT_ENOUGH_REPLICAS
        return ErrorCode.NONE

    def check_enough_replicas(
        self, required_offset: int, min_insync_replicas: int | None = None
    ) -> ErrorCode | None:
        """For an acks=all produce waiting in purgatory, `required_offset` being its last offset
        + 1: None while the high watermark is below it (keep waiting); NONE once replicated;
        NOT_ENOUGH_REPLICAS_AFTER_APPEND when replicated but the ISR shrank below the min ISR;
        NOT_LEADER_OR_FOLLOWER when leadership was lost meanwhile."""
        if not self.is_leader:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        if self.high_watermark < required_offset:
            return None
        if len(self.maximal_isr) < self._effective_min_isr(min_insync_replicas):
            return ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        return ErrorCode.NONE

    def _effective_min_isr(self, override: int | None) -> int:
        configured = self.min_insync_replicas if override is None else override
        return max(1, min(configured, len(self.replicas) or 1))

    # -- leader: the high watermark -------------------------------------------------------------

    def _maybe_increment_high_watermark(self, now_ms: int) -> list[Event]:
        if not self.is_leader or self.under_min_isr:
            return []
        candidate = self.log_end_offset
        maximal = self.maximal_isr
        for replica_id, follower in self.followers.items():
            if follower.log_end_offset >= candidate:
                continue
            # A follower about to join the ISR holds the HW back too; otherwise, with an ISR of
            # just the leader, the HW would run ahead and the follower could never reach it.
            if replica_id in maximal or follower.is_caught_up(
                self.log_end_offset, now_ms, self.replica_lag_time_max_ms
            ):
                candidate = follower.log_end_offset
        if candidate <= self.high_watermark:
            return []
        old, self.high_watermark = self.high_watermark, candidate
        return [HighWatermarkMoved(old, candidate)]
