"""Cluster metadata from ZooKeeper: the cluster-mode counterpart of `LocalMetadata`.

Every broker keeps a cache of what the cluster's znodes say (live brokers with their
endpoints, topics with ids, assignments and configs, partition states with their znode
versions) and keeps it current with watches, so that request handlers read it synchronously
without touching ZooKeeper (Kafka's brokers keep a MetadataCache the same way; there the
controller pushes UpdateMetadata, here each broker watches the znodes itself).

The read side has the same shape as `LocalMetadata` (`topics`, `get_topic`, `topic_by_id`,
`cluster_id`, dynamic configs, producer ids) so the broker and its handlers use either one.
Writes (create and delete topics, add partitions, change topic configs) are asynchronous:
they go to ZooKeeper through `ZkClusterStore`, the controller acts on them, and the cache
hears of the result through its watches (`wait_until` lets a caller wait for that).

Everything here runs on the event loop; watch callbacks only schedule work on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from strom.cluster.errors import ClusterMetadataError
from strom.cluster.features import (
    SUPPORTED_FEATURES,
    FeatureIncompatibilityError,
    FinalizedFeatures,
    incompatibilities,
)
from strom.cluster.local_metadata import TopicLookup, TopicRecord
from strom.cluster.zk import layout as L
from strom.cluster.zk.client import (
    BadVersionError,
    NodeExistsError,
    SessionState,
    Stat,
    WatchHandle,
    ZkClient,
    ZkError,
)
from strom.cluster.zk.controller_logic import (
    BrokerInfo,
    PartitionView,
    assign_added_partitions,
    assign_replicas,
)
from strom.cluster.zk.entity_configs import (
    EntityConfigs,
    notify_config_change,
    write_entity_config,
)
from strom.cluster.zk.feature_znode import FEATURE, FeatureZNode
from strom.cluster.zk.layout import (
    BrokerRegistration,
    PartitionState,
    TopicAssignment,
    TopicPartition,
)
from strom.cluster.zk.producer_id_blocks import ProducerIdBlocks
from strom.cluster.zk.store import VersionedState, ZkClusterStore

log = logging.getLogger("strom.cluster")

ZERO_UUID = uuid.UUID(int=0)
# How long a config write waits for this broker's own watch to apply it (the write itself
# is done by then; this only makes a describe right after it read its own write).
APPLY_WAIT_S = 5.0


@dataclass
class MetadataListener:
    """What the broker wants to hear about; every callback runs on the event loop."""

    on_partition: Callable[[TopicPartition], None] = lambda tp: None
    on_topic_removed: Callable[[str, int], None] = lambda topic, count: None
    on_topic_config: Callable[[str], None] = lambda topic: None
    on_brokers: Callable[[], None] = lambda: None
    on_broker_configs: Callable[[], None] = lambda: None
    # The finalized features changed to levels this broker does not support (the reason).
    on_features_incompatible: Callable[[str], None] = lambda reason: None


@dataclass
class _TopicWatches:
    handles: list[WatchHandle] = field(default_factory=list)
    partitions: dict[int, WatchHandle] = field(default_factory=dict)

    def cancel(self) -> None:
        for handle in [*self.handles, *self.partitions.values()]:
            handle.cancel()


class ZkMetadata:
    def __init__(self, client: ZkClient, broker_id: int) -> None:
        self.client = client
        self.store = ZkClusterStore(client)
        self.broker_id = broker_id
        self.listener = MetadataListener()
        self._cluster_id = ""
        self.brokers: dict[int, BrokerRegistration] = {}
        self.assignments: dict[str, TopicAssignment] = {}
        self.configs: dict[str, dict[str, str]] = {}
        # Dynamic broker configs: this broker's (/config/brokers/<id>) and the cluster-wide
        # default (/config/brokers/<default>, key None), kept current by data watches.
        self.broker_configs: dict[int | None, dict[str, str]] = {}
        # /config/users/<user>: each user's config (SCRAM credentials in Kafka's form, by
        # mechanism); the SASL listeners read it. /config/groups/<group>: each group's
        # configs (share.*). Both kept current by watches.
        self._users = EntityConfigs(client, L.CONFIG_USERS, "user", self._changed, self._spawn)
        self._groups = EntityConfigs(client, L.CONFIG_GROUPS, "group", self._changed, self._spawn)
        self.states: dict[TopicPartition, VersionedState] = {}
        # /feature as this broker reads it (Kafka's ZkMetadataCache features): none, epoch
        # -1, while the znode is absent, unreadable or disabled.
        self.finalized_features = FinalizedFeatures()
        self.feature_problem: str | None = None
        self._topics: dict[str, TopicRecord] = {}
        self._by_id: dict[uuid.UUID, str] = {}
        self._watches: list[WatchHandle] = []
        self._topic_watches: dict[str, _TopicWatches] = {}
        self._brokers_dirty = False
        self._brokers_refreshing = False
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._tasks: set[asyncio.Future[object]] = set()
        self._producer_ids = ProducerIdBlocks(self.store, broker_id, self._spawn)

    # --- start and stop -----------------------------------------------------------------

    async def start(self, proposed_cluster_id: str) -> None:
        await self.store.ensure_persistent_paths()
        self._cluster_id = await self.store.get_or_create_cluster_id(proposed_cluster_id)
        self._watches.append(await self.client.watch_children(L.BROKER_IDS, self._brokers_seen))
        self._watches.append(await self.client.watch_children(L.TOPICS, self._topics_seen))
        await self._users.start()
        await self._groups.start()
        for entity in (None, self.broker_id):
            self._watches.append(
                await self.client.watch_data(
                    L.broker_config_path(entity), self._broker_config_watcher(entity)
                )
            )
        self.client.add_state_listener(self._on_session)
        await self._producer_ids.fetch_ahead()
        # Before serving: a broker must know the levels it runs at, and must not run at levels
        # it does not support (FeatureIncompatibilityError, as Kafka's broker stops).
        await self.store.ensure_feature_znode()
        self._watches.append(await self.client.watch_data(FEATURE, self._features_seen))
        found = await self.client.get_or_none(FEATURE)
        self._features_seen(*(found or (None, None)))
        if self.feature_problem is not None:
            raise FeatureIncompatibilityError(
                "the cluster's finalized features are incompatible with this broker: "
                + self.feature_problem
            )

    async def load(self) -> None:
        """Reads every topic now (start-up: the logs are reconciled against the result)."""
        for topic in await self.store.topics():
            await self._load_topic(topic)
        await self._read_brokers(await self.store.broker_ids())

    async def register(self, registration: BrokerRegistration, wait_ms: int = 30_000) -> None:
        """Register /brokers/ids/<id>. A broker restarted quickly after a crash finds its
        previous session's znode still there until that session expires; like Kafka, wait
        for it (up to `wait_ms`, about a session timeout) instead of failing at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000.0
        while True:
            try:
                await self.store.register_broker(registration)
                return
            except NodeExistsError:
                if loop.time() >= deadline:
                    raise
                log.warning(
                    "broker id %d is still registered by an older ZooKeeper session; "
                    "waiting for that session to expire",
                    registration.broker_id,
                )
                await asyncio.sleep(1.0)

    def stop(self) -> None:
        self.client.remove_state_listener(self._on_session)
        for handle in self._watches:
            handle.cancel()
        for watches in self._topic_watches.values():
            watches.cancel()
        self._users.stop()
        self._groups.stop()
        for task in list(self._tasks):
            task.cancel()
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()

    # --- the LocalMetadata-shaped read side -----------------------------------------------

    @property
    def cluster_id(self) -> str:
        return self._cluster_id

    @property
    def topics(self) -> Mapping[str, TopicRecord]:
        return MappingProxyType(self._topics)

    def get_topic(self, name: str) -> TopicRecord | None:
        return self._topics.get(name)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicLookup | None:
        name = self._by_id.get(topic_id)
        return None if name is None else TopicLookup(name, self._topics[name])

    def dynamic_configs_for(self, broker_id: int | None) -> dict[str, str]:
        """The dynamic broker configs of this broker (its id) or the cluster default (None)."""
        return dict(self.broker_configs.get(broker_id, {}))

    def reserve_producer_ids(self, count: int) -> int:
        """`count` ids from the blocks claimed in ZooKeeper (at most one block's worth)."""
        return self._producer_ids.reserve(count)

    # --- cluster views ------------------------------------------------------------------

    def state(self, topic: str, partition: int) -> VersionedState | None:
        return self.states.get(TopicPartition(topic, partition))

    def replicas(self, topic: str, partition: int) -> tuple[int, ...]:
        assignment = self.assignments.get(topic)
        return assignment.partitions.get(partition, ()) if assignment else ()

    def live_broker_infos(self) -> list[BrokerInfo]:
        return [BrokerInfo(b, r.rack) for b, r in sorted(self.brokers.items())]

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Waits until the cache satisfies `predicate` (checked after every change)."""
        if predicate():
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, fut)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                await fut
            return True
        except TimeoutError:
            return predicate()
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    def partition_views(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, PartitionView]:
        """The cached replicas and states of `partitions` (those with a state), as
        controller_logic decides from them."""
        return {
            tp: PartitionView(self.replicas(tp.topic, tp.partition), vs.state)
            for tp in partitions
            if (vs := self.states.get(tp)) is not None
        }

    async def write_decisions(
        self, changes: Mapping[TopicPartition, PartitionState]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, VersionedState]]:
        """A broker that is not the controller writes decisions the controller would make
        (stamped with its epoch by the caller): each a compare-and-set against the cached
        version, then the written ones announced as ISR changes so that the controller
        re-reads them. Returns (the versions written, the partitions whose state changed
        meanwhile, with the state the write expected)."""
        written: dict[TopicPartition, int] = {}
        conflicts: dict[TopicPartition, VersionedState] = {}
        for tp, state in changes.items():
            known = self.states.get(tp)
            if known is None:
                continue
            try:
                written[tp] = (
                    await self.store.update_partition_state(tp, state, known.version)
                ).version
            except BadVersionError:
                conflicts[tp] = known
        if written:
            await self.store.notify_isr_change(list(written))
        return written, conflicts

    def put_state(self, tp: TopicPartition, versioned: VersionedState) -> bool:
        """A partition state learnt outside the watches (the controller's own decision, a
        LeaderAndIsr request): kept only if newer than the cached one; wakes the waiters."""
        known = self.states.get(tp)
        if known is not None and known.version >= versioned.version:
            return False
        self.states[tp] = versioned
        self._changed()
        return True

    def _changed(self) -> None:
        for predicate, fut in list(self._waiters):
            if not fut.done() and predicate():
                fut.set_result(None)

    # --- writes ---------------------------------------------------------------------------

    async def create_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: Mapping[str, str],
        replicas: Mapping[int, tuple[int, ...]] | None = None,
    ) -> TopicAssignment:
        """Places the replicas over the live brokers (unless given) and writes the topic; the
        controller then elects the leaders. Raises controller_logic's AssignmentError and the
        store's TopicExistsError."""
        if replicas is None:
            replicas = assign_replicas(self.live_broker_infos(), num_partitions, replication_factor)
        return await self.store.create_topic(name, replicas, configs)

    async def delete_topic(self, name: str) -> None:
        await self.store.mark_topic_for_deletion(name)

    async def add_partitions(self, name: str, count: int) -> None:
        found = await self.client.get_or_none(L.topic_path(name))
        if found is None:
            raise ClusterMetadataError(f"topic {name!r} does not exist")
        current = TopicAssignment.from_json(name, found[0])
        added = assign_added_partitions(
            self.live_broker_infos(), current.partitions, count - len(current.partitions)
        )
        merged = dict(current.partitions)
        merged.update(added)
        # Reassignments in progress are kept (CreatePartitions refuses them anyway).
        updated = replace(current, partitions=merged)
        await self.store.set_topic_assignment(name, updated, found[1].version)

    async def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> None:
        """Replaces the topic's overrides; every broker's config watch applies them. The
        change notification is written too, for Kafka tools that read it."""
        await self.client.set(L.topic_config_path(name), L.EntityConfig(dict(configs)).to_json())
        await notify_config_change(self.client, f"topics/{name}")
        # Answer once this broker applies them: a DescribeConfigs here then shows them.
        await self.wait_until(lambda: self.configs.get(name) == dict(configs), APPLY_WAIT_S)

    async def set_dynamic_broker_configs(
        self, broker_id: int | None, configs: Mapping[str, str]
    ) -> None:
        """Replaces a broker's (or, with None, the cluster default's) dynamic configs; the
        brokers concerned apply them from their watch. As Kafka, a change notification is
        written too."""
        await write_entity_config(self.client, L.broker_config_path(broker_id), configs)
        if broker_id in (None, self.broker_id):
            await self.wait_until(
                lambda: self.broker_configs.get(broker_id, {}) == dict(configs), APPLY_WAIT_S
            )

    @property
    def users(self) -> dict[str, dict[str, str]]:
        return self._users.configs

    async def set_user_config(self, user: str, config: Mapping[str, str]) -> None:
        """Replaces a user's config (/config/users/<user>, created when missing) and writes
        the change notification as Kafka does; returns once this broker's watch has it."""
        await self._users.write(user, config)
        await self.wait_until(lambda: self.users.get(user, {}) == dict(config), APPLY_WAIT_S)

    def group_configs(self, group_id: str) -> dict[str, str]:
        """A group's configs (IncrementalAlterConfigs on GROUP resources), as LocalMetadata."""
        return dict(self._groups.configs.get(group_id, {}))

    async def set_group_configs(self, group_id: str, configs: Mapping[str, str]) -> None:
        """Replaces a group's configs (/config/groups/<group>) and writes the change
        notification; returns once this broker's watch has them (every broker applies them
        from its own watch)."""
        await self._groups.write(group_id, configs)
        await self.wait_until(
            lambda: self._groups.configs.get(group_id, {}) == dict(configs), APPLY_WAIT_S
        )

    # --- watches ------------------------------------------------------------------------

    def _broker_config_watcher(
        self, entity: int | None
    ) -> Callable[[bytes | None, Stat | None], None]:
        def changed(data: bytes | None, stat: Stat | None) -> None:
            try:
                configs = dict(L.EntityConfig.from_json(data).config)
            except L.LayoutError as exc:
                log.error("ignoring dynamic configs of %s: %s", L.broker_config_path(entity), exc)
                return
            if self.broker_configs.get(entity, {}) == configs:
                return
            self.broker_configs[entity] = configs
            self.listener.on_broker_configs()
            self._changed()

        return changed

    def _features_seen(self, data: bytes | None, stat: Stat | None) -> None:
        features = FinalizedFeatures()
        if data is not None and stat is not None:
            try:
                node = FeatureZNode.from_json(data)
            except L.LayoutError as exc:
                log.error("ignoring %s: %s", FEATURE, exc)
            else:
                if node.enabled:
                    features = FinalizedFeatures(node.in_force(), stat.version)
        if features == self.finalized_features:
            return
        problems = incompatibilities(SUPPORTED_FEATURES, features.levels)
        if problems:
            self.feature_problem = ", ".join(
                f"{name} ({why})" for name, why in sorted(problems.items())
            )
            self.listener.on_features_incompatible(self.feature_problem)
            return
        self.finalized_features = features
        log.info(
            "finalized features %s (epoch %d)", dict(features.levels) or "none", features.epoch
        )
        self._changed()

    def _spawn(self, coro: Coroutine[object, object, object]) -> None:
        # The task runs the coroutine itself (not a wrapper awaiting it), so one cancelled
        # before it started (at stop) closes it instead of leaving it never awaited.
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[object]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, ZkError):
            log.warning("ZooKeeper read failed: %r", exc)
        elif exc is not None:
            log.error("cluster metadata update failed", exc_info=exc)

    def _on_session(self, state: SessionState) -> None:
        # Back after a disconnection (same session) or with a new session: the watches of
        # topics and partition states re-read their znodes by themselves (kazoo's recipes),
        # but the watch of /brokers/ids only reports a different list of ids, and a broker
        # that registered again meanwhile (new session, maybe a new endpoint) keeps its id.
        if state in (SessionState.CONNECTED, SessionState.NEW_SESSION):
            self._refresh_brokers()

    def _brokers_seen(self, children: list[str]) -> None:
        self._refresh_brokers()

    def _refresh_brokers(self) -> None:
        """Reads the registered brokers again, one refresh at a time (two overlapping reads
        could finish in the wrong order), each reading the list of ids itself."""
        self._brokers_dirty = True
        if self._brokers_refreshing:
            return

        async def refresh() -> None:
            try:
                while self._brokers_dirty:
                    self._brokers_dirty = False
                    if await self._read_brokers(await self.store.broker_ids()):
                        self.listener.on_brokers()
                        self._changed()
            finally:
                self._brokers_refreshing = False

        self._brokers_refreshing = True
        self._spawn(refresh())

    async def _read_brokers(self, ids: list[int]) -> bool:
        """Reads every registration again: one may have been replaced under the same id."""
        fresh: dict[int, BrokerRegistration] = {}
        for broker_id in ids:
            try:
                read = await self.store.broker(broker_id)
            except L.LayoutError as exc:
                log.error("ignoring broker %d: %s", broker_id, exc)
                continue
            if read is not None:
                fresh[broker_id] = read[0]
        if fresh == self.brokers:
            return False
        self.brokers = fresh
        log.info("live brokers: %s", sorted(fresh))
        return True

    def _topics_seen(self, children: list[str]) -> None:
        current = set(children)
        for topic in set(self._topic_watches) - current:
            self._forget_topic(topic)
        for topic in sorted(current - set(self._topic_watches)):
            self._spawn(self._load_topic(topic))

    async def _load_topic(self, topic: str) -> None:
        if topic in self._topic_watches:
            return
        watches = self._topic_watches[topic] = _TopicWatches()

        def assignment_changed(data: bytes | None, stat: object) -> None:
            if data is None or self._topic_watches.get(topic) is not watches:
                return
            try:
                assignment = TopicAssignment.from_json(topic, data)
            except L.LayoutError as exc:
                log.error("ignoring topic %s: %s", topic, exc)
                return
            self.assignments[topic] = assignment
            self._refresh_record(topic)
            for p in assignment.partitions:
                if p not in watches.partitions:
                    self._spawn(self._watch_partition(topic, p, watches))
            for p in assignment.partitions:
                self.listener.on_partition(TopicPartition(topic, p))
            self._changed()  # e.g. a reassignment recorded or completed

        def config_changed(data: bytes | None, stat: object) -> None:
            if self._topic_watches.get(topic) is not watches:
                return
            try:
                self.configs[topic] = dict(L.EntityConfig.from_json(data).config)
            except L.LayoutError as exc:
                log.error("ignoring config of topic %s: %s", topic, exc)
                return
            if self._refresh_record(topic):
                self.listener.on_topic_config(topic)

        # The config first: the topic must not appear (in `topics`) without its overrides.
        watches.handles.append(
            await self.client.watch_data(L.topic_config_path(topic), config_changed)
        )
        watches.handles.append(
            await self.client.watch_data(L.topic_path(topic), assignment_changed)
        )

    async def _watch_partition(self, topic: str, partition: int, watches: _TopicWatches) -> None:
        tp = TopicPartition(topic, partition)
        if partition in watches.partitions:
            return

        def state_changed(data: bytes | None, stat: Stat | None) -> None:
            if self._topic_watches.get(topic) is not watches:
                return
            if data is None or stat is None:
                self.states.pop(tp, None)
            else:
                try:
                    state = PartitionState.from_json(data, L.partition_state_path(tp))
                except L.LayoutError as exc:
                    log.error("ignoring state of %s: %s", tp, exc)
                    return
                old = self.states.get(tp)
                if old is not None and old.version > stat.version and old.state == state:
                    return
                self.states[tp] = VersionedState(state, stat.version)
            self.listener.on_partition(tp)
            self._changed()

        handle = WatchHandle()  # placeholder until the real one is known
        watches.partitions[partition] = handle
        watches.partitions[partition] = await self.client.watch_data(
            L.partition_state_path(tp), state_changed
        )

    def _refresh_record(self, topic: str) -> bool:
        """Rebuilds the TopicRecord of `topic`; True when it changed."""
        assignment = self.assignments.get(topic)
        if assignment is None or topic not in self.configs:
            return False
        # The replication factor is the target's while partition 0 is being reassigned.
        first = min(assignment.partitions, default=0)
        removing = assignment.removing_replicas.get(first, ())
        rf = len([r for r in assignment.partitions.get(first, ()) if r not in removing])
        record = TopicRecord(
            assignment.topic_id or ZERO_UUID,
            len(assignment.partitions),
            max(rf, 1),
            dict(self.configs[topic]),
        )
        if self._topics.get(topic) == record:
            return False
        self._topics[topic] = record
        self._by_id[record.topic_id] = topic
        self._changed()
        return True

    def _forget_topic(self, topic: str) -> None:
        watches = self._topic_watches.pop(topic, None)
        if watches is not None:
            watches.cancel()
        assignment = self.assignments.pop(topic, None)
        self.configs.pop(topic, None)
        record = self._topics.pop(topic, None)
        if record is not None:
            self._by_id.pop(record.topic_id, None)
        count = len(assignment.partitions) if assignment else 0
        for tp in [tp for tp in self.states if tp.topic == topic]:
            del self.states[tp]
            count = max(count, tp.partition + 1)
        log.info("topic %s removed from the cluster metadata", topic)
        self.listener.on_topic_removed(topic, count)
        self._changed()
