"""Cluster mode: this broker's role for each partition, from the partition states in ZooKeeper.

`ReplicaManager` is what Kafka's ReplicaManager is to a ZooKeeper-mode broker: given the
partition states the controller writes (and the cache in `ZkMetadata` hears of), it makes
this broker the leader of a partition (`ReplicaState.become_leader`, a new leader epoch
stamped in the log's epoch cache) or a follower (`ReplicaState.become_follower`, and the
partition handed to the fetcher towards the leader), creates the logs of partitions it
hosts and deletes the ones it no longer does.

As leader it applies the replication rules of `replication/replica_state.py`: appends and
follower fetches move the high watermark (which then wakes the fetch and produce
purgatories), a timer shrinks the ISR of lagging followers, and ISR changes are written to
ZooKeeper with compare-and-set. acks=all produces wait here until the ISR has the records.

Only used with zookeeper.connect; a single broker never creates one (`Broker.cluster` None).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from strom.cluster.zk.client import BadVersionError, ZkConnectionError, ZkError
from strom.cluster.zk.layout import NO_LEADER, TopicPartition
from strom.cluster.zk_metadata import ZkMetadata
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.produce_response import PartitionProduceResponse, ProduceResponse
from strom.quota.replication import UNLIMITED, ReplicationQuota
from strom.replication.fetcher import LeaderEndpoint, PartitionToFollow, ReplicaFetcherManager
from strom.replication.follower import FetcherConfig
from strom.replication.replica_state import (
    Event,
    HighWatermarkMoved,
    IsrChangeRequested,
    PartitionStateUpdate,
    PendingIsrChange,
    ReplicaState,
)
from strom.security.client import inter_broker_security
from strom.storage.errors import KafkaStorageError

if TYPE_CHECKING:
    from strom.runtime.host import BrokerHost
    from strom.storage.partition_log import PartitionLog

log = logging.getLogger("strom.replication")

Key = tuple[str, int]
ISR_RETRY_DELAY_S = 0.5
LEADER_THROTTLED_RATE = "leader.replication.throttled.rate"
FOLLOWER_THROTTLED_RATE = "follower.replication.throttled.rate"
LEADER_THROTTLED_REPLICAS = "leader.replication.throttled.replicas"
FOLLOWER_THROTTLED_REPLICAS = "follower.replication.throttled.replicas"


class ReplicaManager:
    def __init__(self, broker: BrokerHost, metadata: ZkMetadata) -> None:
        self.broker = broker
        self.metadata = metadata
        self.broker_id = broker.config.broker_id
        cfg = broker.config
        self.lag_max_ms = cfg.replica_lag_time_max_ms
        # How this broker connects to the others' inter-broker (and control-plane) listeners.
        self.security = inter_broker_security(cfg)
        self.states: dict[Key, ReplicaState] = {}
        self.following: dict[Key, LeaderEndpoint] = {}
        samples = cfg.get_int("replication.quota.window.num")
        window_ms = cfg.get_int("replication.quota.window.size.seconds") * 1000
        self.leader_quota = ReplicationQuota(
            self.broker_id,
            lambda: self._throttled_rate(LEADER_THROTTLED_RATE),
            lambda topic: self._topic_config(topic, LEADER_THROTTLED_REPLICAS),
            samples,
            window_ms,
        )
        self.follower_quota = ReplicationQuota(
            self.broker_id,
            lambda: self._throttled_rate(FOLLOWER_THROTTLED_RATE),
            lambda topic: self._topic_config(topic, FOLLOWER_THROTTLED_REPLICAS),
            samples,
            window_ms,
        )
        self.fetchers = ReplicaFetcherManager(
            self.broker_id,
            FetcherConfig(
                fetch_wait_max_ms=cfg.get_int("replica.fetch.wait.max.ms"),
                fetch_min_bytes=cfg.get_int("replica.fetch.min.bytes"),
                fetch_max_bytes=cfg.get_int("replica.fetch.max.bytes"),
                socket_timeout_ms=cfg.get_int("replica.socket.timeout.ms"),
            ),
            broker.clock,
            on_progress=self._follower_progress,
            quota=self.follower_quota,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False
        # ISR changes this broker (as leader) wrote, for /metrics (Kafka's IsrShrinksPerSec,
        # IsrExpandsPerSec).
        self.isr_shrinks = 0
        self.isr_expands = 0
        # Set by the controlled shutdown: this broker follows nothing any more (Kafka's
        # controller sends it StopReplica for that), so no leader takes it back into an ISR
        # in the moments before it stops.
        self._leaving = False

    def _throttled_rate(self, key: str) -> int:
        """A replication rate bound: dynamic-only, this broker's value, then the cluster-wide
        default (Kafka's DynamicConfig.Broker), unbounded when neither is set."""
        config = self.broker.config
        for layer in (config.dynamic_broker_configs, config.dynamic_default_configs):
            value = layer.get(key)
            if value is not None:
                with contextlib.suppress(ValueError):
                    return int(value)
        return UNLIMITED

    def _topic_config(self, topic: str, key: str) -> str:
        record = self.metadata.get_topic(topic)
        return (record.configs.get(key) or "") if record is not None else ""

    # --- views used by the handlers -----------------------------------------------------------

    def is_leader(self, topic: str, partition: int) -> bool:
        state = self.states.get((topic, partition))
        return state is not None and state.is_leader

    def leader_epoch(self, topic: str, partition: int) -> int:
        state = self.states.get((topic, partition))
        if state is not None and state.leader_epoch >= 0:
            return state.leader_epoch
        versioned = self.metadata.state(topic, partition)
        return versioned.state.leader_epoch if versioned else -1

    def check_produce(self, topic: str, partition: int, acks: int) -> ErrorCode:
        """Before an append: NONE, or why this broker must not take it."""
        if self.broker.logs.is_offline(topic, partition):
            return ErrorCode.KAFKA_STORAGE_ERROR
        state = self.states.get((topic, partition))
        if state is None or not state.is_leader:
            if self.metadata.get_topic(topic) is None:
                return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        if acks == -1:
            return state.check_min_isr_before_append()
        return ErrorCode.NONE

    async def await_acks_all(
        self,
        timeout_ms: int,
        response: ProduceResponse,
        appended: list[tuple[PartitionProduceResponse, PartitionLog, int]],
    ) -> ProduceResponse:
        """acks=all: wait until every appended partition is replicated to the ISR, or fails."""

        def outcome(plog: PartitionLog, last: int) -> ErrorCode | None:
            state = self.states.get((plog.topic, plog.partition))
            if state is None:
                return ErrorCode.NOT_LEADER_OR_FOLLOWER
            return state.check_enough_replicas(last + 1)

        def done() -> bool:
            return all(outcome(plog, last) is not None for _, plog, last in appended)

        keys = [(plog.topic, plog.partition) for _, plog, _ in appended]
        await self.broker.produce_purgatory.wait(keys, done, timeout_ms)
        for partition_response, plog, last in appended:
            code = outcome(plog, last)
            partition_response.error_code = ErrorCode.REQUEST_TIMED_OUT if code is None else code
        return response

    async def await_replicated(
        self, topic: str, partition: int, end_offset: int, timeout_ms: int
    ) -> ErrorCode:
        """Wait until the partition's high watermark reaches `end_offset` (an append of this
        leader, acks=all style): NONE, or the produce error (NOT_LEADER_OR_FOLLOWER,
        NOT_ENOUGH_REPLICAS_AFTER_APPEND, REQUEST_TIMED_OUT)."""
        key = (topic, partition)

        def outcome() -> ErrorCode | None:
            state = self.states.get(key)
            if state is None:
                return ErrorCode.NOT_LEADER_OR_FOLLOWER
            return state.check_enough_replicas(end_offset)

        await self.broker.produce_purgatory.wait([key], lambda: outcome() is not None, timeout_ms)
        code = outcome()
        return ErrorCode.REQUEST_TIMED_OUT if code is None else code

    # --- appends and follower fetches (leader side) --------------------------------------------

    def after_append(self, topic: str, partition: int) -> None:
        """Replaces `Broker.after_append`'s "HW = log end": the ISR decides. Follower fetches
        parked in the fetch purgatory wake up to take the new records."""
        key = (topic, partition)
        plog = self.broker.logs.get(topic, partition)
        state = self.states.get(key)
        if plog is not None and state is not None:
            plog.on_change(plog)  # retention.bytes may apply before the high watermark moves
            self.handle_events(key, state.on_local_append(plog.log_end_offset))
        self.broker.fetch_purgatory.notify(key)

    def handle_events(self, key: Key, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, HighWatermarkMoved):
                plog = self.broker.logs.get(*key)
                if plog is not None:
                    plog.update_high_watermark(event.new)
                self.broker.fetch_purgatory.notify(key)
                self.broker.produce_purgatory.notify(key)
            elif isinstance(event, IsrChangeRequested):
                self._spawn(self._write_isr(key, event.change))

    async def _write_isr(self, key: Key, change: PendingIsrChange) -> None:
        tp = TopicPartition(*key)
        store = self.metadata.store
        try:
            versioned = await store.update_partition_state(
                tp, change.zk_state(), change.expected_partition_epoch
            )
        except BadVersionError:
            state = self.states.get(key)
            if state is not None:
                state.isr_change_failed(change, retry=False)
            log.info("ISR change of %s lost a compare-and-set; re-reading", tp)
            fresh = await store.partition_state(tp)
            if fresh is not None:
                self.metadata.states[tp] = fresh
                self.apply(tp)
            return
        except (ZkConnectionError, ZkError) as exc:
            log.warning("ISR change of %s failed (%r); retrying", tp, exc)
            await asyncio.sleep(ISR_RETRY_DELAY_S)
            state = self.states.get(key)
            if state is not None:
                self.handle_events(key, state.isr_change_failed(change, retry=True))
            return
        log.info("%s: ISR %s -> %s (%s)", tp, change.kind, list(change.isr), versioned.version)
        if change.kind == "shrink":
            self.isr_shrinks += 1
        else:
            self.isr_expands += 1
        state = self.states.get(key)
        if state is not None:
            self.handle_events(key, state.isr_change_committed(change, versioned.version))
        with contextlib.suppress(ZkError):
            await store.notify_isr_change([tp])

    async def shrink_isr(self) -> None:
        """The timer (every replica.lag.time.max.ms / 2): drop lagging followers."""
        for key, state in list(self.states.items()):
            if state.is_leader:
                self.handle_events(key, state.maybe_shrink_isr())

    def _follower_progress(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self.broker.fetch_purgatory.notify(key)

    # --- applying partition states -------------------------------------------------------------

    def apply_all(self) -> None:
        for tp in list(self.metadata.states):
            self.apply(tp)

    def apply(self, tp: TopicPartition) -> None:
        """Act on the cached state of `tp` (called on every change of it or of its topic)."""
        if self._stopped:
            return
        key = (tp.topic, tp.partition)
        versioned = self.metadata.states.get(tp)
        replicas = self.metadata.replicas(tp.topic, tp.partition)
        record = self.metadata.get_topic(tp.topic)
        if versioned is None or record is None or not replicas:
            return
        if self.broker_id not in replicas:
            self._stop_hosting(key, delete=True)
            return
        if self.broker.logs.is_offline(*key):
            self._stop_hosting(key, delete=False)  # its log dir failed: nothing to serve
            return
        plog = self.broker.logs.get(*key)
        if plog is None:
            assignment = self.metadata.assignments.get(tp.topic)
            adding = assignment.adding_replicas.get(tp.partition, ()) if assignment else ()
            try:
                plog = self.broker.logs.create(
                    tp.topic,
                    tp.partition,
                    record.topic_id,
                    self.broker.log_config(tp.topic),
                    # Kafka's isNew: a new partition (its state never changed since the
                    # controller created it) or a replica a reassignment adds here.
                    is_new=versioned.version == 0 or self.broker_id in adding,
                )
            except KafkaStorageError as exc:
                log.error("%s-%d: %s", *key, exc)
                self.broker.logs.offline_partitions[key] = None
                self._stop_hosting(key, delete=False)
                return
        state = self.states.get(key)
        if state is None:
            state = ReplicaState(
                self.broker_id,
                self.broker.clock,
                self.lag_max_ms,
                plog.config.min_insync_replicas,
            )
            self.states[key] = state
        update = PartitionStateUpdate(
            leader=versioned.state.leader,
            leader_epoch=versioned.state.leader_epoch,
            isr=tuple(versioned.state.isr),
            replicas=tuple(replicas),
            partition_epoch=versioned.version,
            controller_epoch=versioned.state.controller_epoch,
        )
        if update.leader == self.broker_id:
            self._become_leader(key, state, update, plog)
        else:
            self._become_follower(key, state, update, plog)

    def _become_leader(
        self, key: Key, state: ReplicaState, update: PartitionStateUpdate, plog: PartitionLog
    ) -> None:
        was_leader = state.is_leader
        transition = state.become_leader(update, plog.log_end_offset, plog.high_watermark)
        if not transition.applied:
            return
        if key in self.following:
            del self.following[key]
            self.fetchers.remove_partitions([key])
        if transition.new_leader_epoch:
            if update.leader_epoch > plog.leader_epoch_cache.latest_epoch:
                plog.leader_epoch_cache.assign(update.leader_epoch, plog.log_end_offset)
            if not was_leader:
                log.info(
                    "%s-%d: leader, epoch %d, ISR %s, log end %d",
                    *key,
                    update.leader_epoch,
                    list(update.isr),
                    plog.log_end_offset,
                )
        self.handle_events(key, transition.events)
        self.broker.fetch_purgatory.notify(key)
        self.broker.produce_purgatory.notify(key)
        self._coordinators(key, leading=True)

    def _become_follower(
        self, key: Key, state: ReplicaState, update: PartitionStateUpdate, plog: PartitionLog
    ) -> None:
        was_leader = state.is_leader
        transition = state.become_follower(update)
        if not transition.applied:
            return
        self._coordinators(key, leading=False)
        if was_leader or transition.new_leader_epoch:
            # Waiting acks=all produces learn that this broker no longer leads.
            self.broker.produce_purgatory.notify(key)
            self.broker.fetch_purgatory.notify(key)
        self._follow(key, state, plog, restart=transition.new_leader_epoch)

    def stop_following(self) -> None:
        """Controlled shutdown: stop fetching for every partition, now and from now on."""
        self._leaving = True
        self.fetchers.remove_partitions(list(self.following))
        self.following.clear()

    def _follow(self, key: Key, state: ReplicaState, plog: PartitionLog, restart: bool) -> None:
        endpoint = self.endpoint(state.leader_id)
        if self._leaving or state.leader_id == NO_LEADER or endpoint is None:
            if key in self.following:
                del self.following[key]
                self.fetchers.remove_partitions([key])
            return
        if not restart and self.following.get(key) == endpoint:
            return
        log.info(
            "%s-%d: follower of broker %d, epoch %d", *key, state.leader_id, state.leader_epoch
        )
        self.following[key] = endpoint
        self.fetchers.add_partitions(endpoint, {key: PartitionToFollow(plog, state.leader_epoch)})

    def _coordinators(self, key: Key, leading: bool) -> None:
        """The coordinators move with the leadership of their internal topics' partitions:
        load the shard on becoming leader, unload it on losing it."""
        topic, partition = key
        runtime = self.broker.coordinator_for_topic(topic)
        if runtime is None:
            return
        try:
            if leading:
                runtime.become_leader(partition)
            else:
                runtime.resign(partition)
        except Exception:
            log.exception("moving the coordinator of %s-%d failed", topic, partition)

    def brokers_changed(self) -> None:
        """A leader may have registered (or moved): start following where we could not."""
        for key, state in list(self.states.items()):
            if state.leader_id not in (NO_LEADER, self.broker_id) and not state.is_leader:
                plog = self.broker.logs.get(*key)
                if plog is not None and self.following.get(key) != self.endpoint(state.leader_id):
                    self._follow(key, state, plog, restart=True)

    def endpoint(self, broker_id: int) -> LeaderEndpoint | None:
        """Where this broker reaches another one (its inter-broker listener, the first one
        configured here)."""
        registration = self.metadata.brokers.get(broker_id)
        if registration is None or not registration.endpoints:
            return None
        wanted = self.broker.config.inter_broker_listener_name
        chosen = next(
            (e for e in registration.endpoints if e.listener_name == wanted),
            registration.endpoints[0],
        )
        return LeaderEndpoint(
            broker_id,
            chosen.host,
            chosen.port,
            chosen.listener_name,
            self.security.get(chosen.listener_name),
        )

    def topic_config_changed(self, topic: str) -> None:
        self.broker.logs.update_config(topic, self.broker.log_config(topic))
        for key, state in list(self.states.items()):
            if key[0] == topic:
                plog = self.broker.logs.get(*key)
                if plog is not None:
                    self.handle_events(
                        key, state.set_min_insync_replicas(plog.config.min_insync_replicas)
                    )

    def topic_removed(self, topic: str, count: int) -> None:
        for key in [k for k in self.states if k[0] == topic]:
            self._stop_hosting(key, delete=True)
        for _, partition in [k for k in self.broker.logs.partitions() if k[0] == topic]:
            self._stop_hosting((topic, partition), delete=True)

    def log_dir_failed(self, keys: Iterable[Key]) -> None:
        """Their log dir failed: stop leading and following them (the controller, told
        through ZooKeeper, moves their leaderships away)."""
        for key in keys:
            self._stop_hosting(key, delete=False)

    def stop_replica(self, key: Key, delete: bool) -> None:
        """The controller's StopReplica (checked against ZooKeeper by the caller)."""
        self._stop_hosting(key, delete)

    def _stop_hosting(self, key: Key, delete: bool) -> None:
        state = self.states.pop(key, None)
        if state is not None:
            state.become_none()
        self._coordinators(key, leading=False)
        if key in self.following:
            del self.following[key]
        self.fetchers.remove_partitions([key])
        if delete and self.broker.logs.get(*key) is not None:
            log.info("%s-%d: no longer a replica here; deleting its log", *key)
            self.broker.logs.delete_partition(*key)
        elif delete:
            self.broker.logs.offline_partitions.pop(key, None)
        self.broker.fetch_purgatory.notify(key)
        self.broker.produce_purgatory.notify(key)

    # --- lifecycle -----------------------------------------------------------------------------

    def _spawn(self, coro: object) -> None:
        async def guarded() -> None:
            try:
                await coro  # type: ignore[misc]
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("replication task failed")

        task = asyncio.ensure_future(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        await self.fetchers.stop()
