"""The cluster controller: elected through ZooKeeper, it decides partition leaders and ISRs.

Every broker runs a `ZkController`. All of them try to create the ephemeral /controller znode;
the one that succeeds (in the same transaction it increments /controller_epoch with a
compare-and-set) is the controller until its session ends. The others watch /controller and
try again when it disappears.

The active controller keeps a cache of the cluster (live brokers, topic assignments, partition
states with their znode versions), watches the znodes that announce changes (/brokers/ids,
/brokers/topics and each topic, /admin/delete_topics, /admin/preferred_replica_election,
/admin/reassign_partitions, /isr_change_notification, /config/changes), asks
`controller_logic` (and `reassignment`, through `controller_tasks`) what must change, and
writes the new partition states with compare-and-set, fenced by its controller epoch (see
`store`). On a version conflict (a leader changed its ISR meanwhile) it re-reads the state and
decides again.

Like Kafka's controller, events are handled one at a time by a single task, in order; the
watches only enqueue events. Nothing needs a lock, and a decision always sees the effects of
the previous one.

Stepping down: the moment the session expires or is closed, or the connection has been down
for a whole session timeout (the server has then expired the session, even if we cannot hear
it), the controller stops acting: it drops its cache and watches and makes no further writes.
A write already in flight is rejected by ZooKeeper through the epoch fence.

The local broker learns the outcome through `ControllerListener`; the other brokers hosting
the partitions through LeaderAndIsr (and StopReplica for deleted topics) requests sent by the
`ControllerChannelManager` right after each write, and, as a fallback that needs no request,
through their own watches of the state znodes.

The parts: this module holds the election, the session states and the event task;
`controller_events` what the active controller does on taking over and on each event;
`controller_writes` the compare-and-set writes and the notices that follow them;
`controller_tasks` reassignments, elections on demand and the leader imbalance timer;
`context` the active controller's cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from strom.cluster.features import FeatureUpdate
from strom.cluster.zk import alter_partition
from strom.cluster.zk import controller_events as events
from strom.cluster.zk import controller_features as features
from strom.cluster.zk import controller_logic as logic
from strom.cluster.zk import controller_tasks as tasks
from strom.cluster.zk import controller_writes as writes
from strom.cluster.zk import layout as L
from strom.cluster.zk.client import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    Op,
    SessionState,
    TransactionFailed,
    WatchHandle,
    ZkClient,
    ZkConnectionError,
    ZkError,
)
from strom.cluster.zk.context import (
    ControllerContext,
    ControllerListener,
    NotControllerError,
    PartitionUpdate,
    StaleBrokerEpochError,
)
from strom.cluster.zk.controller_channel import LEADER_AND_ISR, ControllerChannelManager
from strom.cluster.zk.layout import (
    ControllerRegistration,
    PartitionState,
    TopicPartition,
)
from strom.cluster.zk.store import (
    ControllerFence,
    ControllerMovedError,
    ZkClusterStore,
)

__all__ = [
    "ControllerListener",
    "NotControllerError",
    "PartitionUpdate",
    "ZkController",
]

log = logging.getLogger("strom.controller")


_Event = tuple[str, Callable[[], Awaitable[object]], "asyncio.Future[object] | None"]


class ZkController:
    def __init__(
        self,
        client: ZkClient,
        broker_id: int,
        *,
        listener: ControllerListener | None = None,
        unclean_leader_election_enable: bool = False,
        delete_topic_enable: bool = True,
        auto_leader_rebalance_enable: bool = False,
        leader_imbalance_check_interval_s: float = 300.0,
        leader_imbalance_per_broker_percentage: float = 10.0,
        clock: Callable[[], float] = time.time,
        channel: ControllerChannelManager | None = None,
    ) -> None:
        self.client = client
        self.store = ZkClusterStore(client)
        self.broker_id = broker_id
        self.listener = listener or ControllerListener()
        self.unclean_default = unclean_leader_election_enable
        self.delete_topic_enable = delete_topic_enable
        self.auto_leader_rebalance_enable = auto_leader_rebalance_enable
        self.leader_imbalance_check_interval_s = leader_imbalance_check_interval_s
        self.leader_imbalance_per_broker_percentage = leader_imbalance_per_broker_percentage
        self._rebalance_timer: asyncio.TimerHandle | None = None
        self._clock = clock
        self.channel = channel
        if channel is not None:
            channel.on_response = self._on_channel_response
        self._ctx: ControllerContext | None = None
        self.active_controller_id: int | None = None
        # Leader changes this broker wrote as controller (a partition whose leader moved to
        # another live broker), for /metrics: Kafka's LeaderElectionRateAndTimeMs count.
        self.leader_elections = 0
        self._known_epoch = 0
        self._queue: asyncio.Queue[_Event] = asyncio.Queue()
        self._runner: asyncio.Task[None] | None = None
        self._controller_watch: WatchHandle | None = None
        self._suspend_timer: asyncio.TimerHandle | None = None
        self._resync_pending = False

    # --- public surface -----------------------------------------------------------------

    @property
    def is_active(self) -> bool:
        return self._ctx is not None

    @property
    def epoch(self) -> int:
        """The controller epoch of the active controller as last seen (own if active)."""
        return self._ctx.fence.epoch if self._ctx else self._known_epoch

    async def start(self) -> None:
        await self.store.ensure_persistent_paths()
        await self.client.ensure_path(L.CONTROLLER_EPOCH)
        self.client.add_state_listener(self._on_session)
        self._runner = asyncio.create_task(self._run(), name=f"controller-{self.broker_id}")
        self._controller_watch = await self.client.watch_data(L.CONTROLLER, self._on_controller)

    async def stop(self) -> None:
        """Stops taking part; if active, gives up /controller so another broker takes over."""
        self.client.remove_state_listener(self._on_session)
        if self._controller_watch:
            self._controller_watch.cancel()
        if self._suspend_timer:
            self._suspend_timer.cancel()
        if self._runner:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        # Requests still queued (ControlledShutdown, ElectLeaders handlers wait on them).
        while not self._queue.empty():
            _, _, fut = self._queue.get_nowait()
            self._fail(fut, NotControllerError("controller stopped"))
        if self._ctx is not None:
            self._resign("shutting down")
            # Disconnected, the delete could only wait for ZooKeeper; /controller goes with
            # the session anyway.
            if self.client.connected:
                with contextlib.suppress(ZkError):
                    await self._delete_own_registration()
        if self.channel is not None:
            await self.channel.close()

    def broker_epoch(self, broker_id: int) -> int | None:
        """The active controller's view of a live broker's epoch (its registration czxid);
        None when not the controller or the broker is not registered."""
        return None if self._ctx is None else self._ctx.live.get(broker_id)

    async def controlled_shutdown(self, broker_id: int) -> set[TopicPartition]:
        """Moves leadership off `broker_id` before it stops; returns the partitions it still
        leads (Kafka's ControlledShutdown response). ValueError if it is not registered."""
        result = await self._submit(
            "controlled-shutdown",
            self._active_handler(lambda ctx: events.controlled_shutdown(self, ctx, broker_id)),
        )
        assert isinstance(result, set)
        return result

    async def alter_partitions(
        self,
        broker_id: int,
        broker_epoch: int,
        wanted: Mapping[TopicPartition, alter_partition.Proposal],
        version: int,
    ) -> dict[TopicPartition, alter_partition.Outcome]:
        """AlterPartition from the leader `broker_id` (see `alter_partition`). StaleBrokerEpoch
        when the broker is not registered with exactly that epoch."""

        async def run(ctx: ControllerContext) -> object:
            if ctx.live.get(broker_id) != broker_epoch:
                raise StaleBrokerEpochError(f"broker {broker_id} epoch {broker_epoch}")
            return await alter_partition.alter_partitions(self, ctx, broker_id, wanted, version)

        result = await self._submit("alter-partition", self._active_handler(run))
        assert isinstance(result, dict)
        return result

    async def update_features(
        self, updates: list[FeatureUpdate], validate_only: bool
    ) -> features.FeatureOutcome:
        """UpdateFeatures on the controller's event task (see `controller_features`)."""
        result = await self._submit(
            "update-features",
            self._active_handler(lambda ctx: features.update(self, ctx, updates, validate_only)),
        )
        assert isinstance(result, features.FeatureOutcome)
        return result

    async def elect_preferred_leaders(
        self, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, PartitionState]:
        """Preferred replica election for `partitions` (all when None)."""
        wanted = None if partitions is None else set(partitions)
        result = await self._submit(
            "preferred-election",
            self._active_handler(lambda ctx: writes.elect_preferred(self, ctx, wanted)),
        )
        assert isinstance(result, dict)
        return result

    async def elect_unclean_leaders(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, PartitionState]:
        """ElectLeaders UNCLEAN for `partitions` (see `controller_tasks.elect_unclean`)."""
        wanted = set(partitions)
        result = await self._submit(
            "unclean-election",
            self._active_handler(lambda ctx: tasks.elect_unclean(self, ctx, wanted)),
        )
        assert isinstance(result, dict)
        return result

    def reelect_offline_partitions(self) -> None:
        """Unclean election was enabled: partitions without a live leader are elected again
        (a no-op unless this broker is the controller)."""
        if self._ctx is not None:
            self._enqueue(
                "reelect-offline",
                self._active_handler(
                    lambda ctx: tasks.offline_partitions_after_config_change(self, ctx)
                ),
            )

    async def sync(self) -> None:
        """Returns once every event queued before the call was handled (for tests)."""
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(("sync", _noop, fut))
        await fut

    def partition(self, tp: TopicPartition) -> PartitionUpdate | None:
        """The active controller's view of one partition."""
        if self._ctx is None or tp not in self._ctx.states:
            return None
        return self._ctx.update(tp)

    def _on_channel_response(self, broker_id: int, api_key: int, response: Any) -> None:
        if api_key == LEADER_AND_ISR and response.error_code == 0 and self._ctx is not None:
            self._enqueue(
                "leader-and-isr-response",
                self._active_handler(
                    lambda ctx: events.leader_and_isr_answered(self, ctx, broker_id, response)
                ),
            )

    # --- event machinery ------------------------------------------------------------------

    def _enqueue(self, name: str, handler: Callable[[], Awaitable[object]]) -> None:
        self._queue.put_nowait((name, handler, None))

    async def _submit(self, name: str, handler: Callable[[], Awaitable[object]]) -> object:
        if self._ctx is None:
            raise NotControllerError(f"broker {self.broker_id} is not the controller")
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((name, handler, fut))
        return await fut

    async def _run(self) -> None:
        while True:
            name, handler, fut = await self._queue.get()
            try:
                result = await handler()
                if fut is not None and not fut.done():
                    fut.set_result(result)
            except ControllerMovedError as exc:
                log.warning("controller %s: %s", self.broker_id, exc)
                self._resign("another controller was elected")
                self._fail(fut, NotControllerError(str(exc)))
                self._enqueue("elect", self._elect)
            except asyncio.CancelledError:
                self._fail(fut, NotControllerError("controller stopped"))
                raise
            except Exception as exc:
                if isinstance(exc, ZkConnectionError):
                    log.warning("controller event %s: ZooKeeper unavailable (%s)", name, exc)
                else:
                    log.exception("controller event %s failed", name)
                self._fail(fut, exc)
                # The event's work may be half done: look at everything again shortly.
                self._schedule_resync()

    def _schedule_resync(self, delay: float = 0.5) -> None:
        if self._ctx is None or self._resync_pending:
            return
        self._resync_pending = True

        def fire() -> None:
            self._resync_pending = False
            self._enqueue("resync", self._active_handler(lambda ctx: events.resync(self, ctx)))

        asyncio.get_running_loop().call_later(delay, fire)

    @staticmethod
    def _fail(fut: asyncio.Future[object] | None, exc: BaseException) -> None:
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    def _active_handler(
        self, fn: Callable[[ControllerContext], Awaitable[object]]
    ) -> Callable[[], Awaitable[object]]:
        """Wraps a handler that only makes sense while this broker is the controller."""

        async def run() -> object:
            ctx = self._ctx
            if ctx is None:
                raise NotControllerError(f"broker {self.broker_id} is not the controller")
            return await fn(ctx)

        return run

    # --- session and election -----------------------------------------------------------

    def _on_session(self, state: SessionState) -> None:
        if self._suspend_timer:
            self._suspend_timer.cancel()
            self._suspend_timer = None
        if state in (SessionState.CONNECTED, SessionState.NEW_SESSION):
            # After a new session, or after resigning while disconnected: run for election.
            # Still active (same session): changes may have been missed while away.
            self._enqueue("elect", self._elect)
            self._schedule_resync(0)
        elif state == SessionState.SUSPENDED:
            timeout = self.client.session_timeout_ms / 1000
            loop = asyncio.get_running_loop()
            self._suspend_timer = loop.call_later(timeout, self._suspended_too_long)
        elif state in (SessionState.EXPIRED, SessionState.CLOSED):
            self._resign(f"ZooKeeper session {state.value}")

    def _suspended_too_long(self) -> None:
        self._suspend_timer = None
        self._resign("disconnected from ZooKeeper for a whole session timeout")

    def _on_controller(self, data: bytes | None, stat: object) -> None:
        if data is None:
            self._set_active_controller(None)
            self._enqueue("elect", self._elect)
            return
        try:
            self._set_active_controller(ControllerRegistration.from_json(data).broker_id)
        except L.LayoutError as exc:
            log.error("unreadable %s: %s", L.CONTROLLER, exc)

    def _set_active_controller(self, controller_id: int | None) -> None:
        if controller_id != self.active_controller_id:
            self.active_controller_id = controller_id
            self.listener.on_controller_change(controller_id, self.epoch)

    async def _elect(self) -> None:
        if self._ctx is not None:
            return
        for _ in range(5):
            data, stat = await self.client.get(L.CONTROLLER_EPOCH)
            current = L.decode_controller_epoch(data) if data else logic.INITIAL_CONTROLLER_EPOCH
            registration = ControllerRegistration(self.broker_id, int(self._clock() * 1000))
            try:
                await self.client.transaction(
                    [
                        Op.create(L.CONTROLLER, registration.to_json(), ephemeral=True),
                        Op.set(
                            L.CONTROLLER_EPOCH, L.encode_controller_epoch(current + 1), stat.version
                        ),
                    ]
                )
            except TransactionFailed as exc:
                if exc.index == 0 and isinstance(exc.cause, NodeExistsError):
                    # Someone holds /controller; if it is a leftover of ours (we resigned
                    # while the session lived on), give it up and run again.
                    if await self._delete_own_registration():
                        continue
                    self._known_epoch = current
                    return
                if exc.index == 1 and isinstance(exc.cause, BadVersionError):
                    continue  # another controller came and went meanwhile: read again
                raise exc.cause from None
            fence = ControllerFence(current + 1, stat.version + 1)
            log.info("broker %s is the controller, epoch %s", self.broker_id, fence.epoch)
            self._known_epoch = fence.epoch
            self._ctx = ctx = ControllerContext(fence)
            self._set_active_controller(self.broker_id)
            try:
                await events.failover(self, ctx)
            except BaseException:
                # Half a failover is worse than none: give the role up so that a broker
                # (maybe this one, again) starts over from ZooKeeper.
                self._resign("failover did not complete")
                with contextlib.suppress(ZkError):
                    await self._delete_own_registration()
                raise
            return

    async def _delete_own_registration(self) -> bool:
        found = await self.client.get_or_none(L.CONTROLLER)
        if found is None or found[1].ephemeral_owner != self.client.session_id:
            return False
        with contextlib.suppress(NoNodeError, BadVersionError):
            await self.client.delete(L.CONTROLLER, found[1].version)
        return True

    def _resign(self, reason: str) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is None:
            return
        log.warning(
            "broker %s resigns as controller (epoch %s): %s",
            self.broker_id,
            ctx.fence.epoch,
            reason,
        )
        for handle in [*ctx.watches, *ctx.topic_watches.values()]:
            handle.cancel()
        if self.channel is not None:
            self.channel.clear()
        if self._rebalance_timer is not None:
            self._rebalance_timer.cancel()
            self._rebalance_timer = None
        if self.active_controller_id == self.broker_id:
            self._set_active_controller(None)


async def _noop() -> None:
    return None
