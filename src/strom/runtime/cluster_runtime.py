"""Cluster mode (zookeeper.connect set): ZooKeeper session, metadata cache, controller, replicas.

`strom.server.cluster_startup.open_cluster_broker` builds a `Broker` whose metadata is a
`ZkMetadata` and attaches a `ClusterRuntime` to it (`broker.cluster`); `ClusterRuntime.start`
runs once the listeners are bound (the registration must carry the real port): it registers the broker in /brokers/ids,
runs for controller (every broker runs a `ZkController`, one wins) and applies the partition
states. On SIGTERM, `controlled_shutdown` moves leaderships to other in-sync replicas while
the listeners still serve, then `shutdown` closes the session (its ephemeral znodes disappear
at once).

Admin writes from the synchronous handlers (CreateTopics, DeleteTopics, CreatePartitions,
configs, auto-creation) start a ZooKeeper write here and return; the handlers that can wait
then `await settle(...)`, which waits for the writes and for the cache to show the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from strom.cluster.features import SUPPORTED_FEATURES, registration_features
from strom.cluster.local_metadata import TopicRecord
from strom.cluster.topic_names import INTERNAL_TOPICS
from strom.cluster.zk import controller_logic as logic
from strom.cluster.zk.client import ZkClient, ZkError
from strom.cluster.zk.context import ControllerListener, NotControllerError, PartitionUpdate
from strom.cluster.zk.controller import ZkController
from strom.cluster.zk.controller_channel import ChannelConfig, ControllerChannelManager
from strom.cluster.zk.layout import BrokerRegistration, Endpoint, TopicPartition
from strom.cluster.zk.store import TopicExistsError, VersionedState
from strom.cluster.zk_metadata import MetadataListener, ZkMetadata
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.metadata_response import (
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from strom.runtime.controlled_shutdown import move_leaderships_away
from strom.runtime.controller_requests import ControllerRequests
from strom.runtime.errors import ApiError
from strom.runtime.host import ClusterHost, Node
from strom.runtime.replica_manager import ReplicaManager

log = logging.getLogger("strom.cluster")

CONTROLLED_SHUTDOWN_TIMEOUT_S = 10.0
# Bound on each step of leaving the cluster before the session is closed anyway.
SHUTDOWN_STEP_S = 5.0
AUTHORIZED_OPERATIONS_OMITTED = -2147483648
UNSETTLED_WRITE_KEEP_S = 60.0


class _ControllerHooks(ControllerListener):
    """The active controller's decisions reach the partitions at once (the other brokers
    hear of them through their watches of the state znodes)."""

    def __init__(self, runtime: ClusterRuntime) -> None:
        self.runtime = runtime

    def on_partition_states(self, updates: Mapping[TopicPartition, PartitionUpdate]) -> None:
        metadata = self.runtime.metadata
        for tp, update in updates.items():
            metadata.put_state(tp, VersionedState(update.state, update.zk_version))
            self.runtime.replicas.apply(tp)

    def offline_replicas(self) -> frozenset[TopicPartition]:
        return frozenset(TopicPartition(*k) for k in self.runtime.broker.logs.offline_partitions)


class ClusterRuntime:
    def __init__(self, broker: ClusterHost, client: ZkClient, metadata: ZkMetadata) -> None:
        self.broker = broker
        self.client = client
        self.metadata = metadata
        self.replicas = ReplicaManager(broker, metadata)
        cfg = broker.config
        self.controller = ZkController(
            client,
            cfg.broker_id,
            listener=_ControllerHooks(self),
            unclean_leader_election_enable=cfg.get("unclean.leader.election.enable") is True,
            delete_topic_enable=cfg.delete_topic_enable,
            auto_leader_rebalance_enable=cfg.get("auto.leader.rebalance.enable") is True,
            leader_imbalance_check_interval_s=cfg.get_int(
                "leader.imbalance.check.interval.seconds"
            ),
            leader_imbalance_per_broker_percentage=cfg.get_int(
                "leader.imbalance.per.broker.percentage"
            ),
            channel=ControllerChannelManager(
                cfg.broker_id,
                ChannelConfig(
                    cfg.control_plane_listener_name,
                    cfg.inter_broker_listener_name,
                    request_timeout_ms=cfg.get_int("controller.socket.timeout.ms"),
                    security=self.replicas.security,
                ),
            ),
        )
        self.control = ControllerRequests(self)
        self._pending: list[tuple[str, asyncio.Future[None], float]] = []
        self._creating_internal: dict[str, asyncio.Task[None]] = {}
        self._shrinker: asyncio.Task[None] | None = None
        self._controlled_shutdown_done = False

    # --- start and stop -------------------------------------------------------------------

    async def start(self) -> None:
        replicas = self.replicas
        self.metadata.listener = MetadataListener(
            on_partition=replicas.apply,
            on_topic_removed=replicas.topic_removed,
            on_topic_config=replicas.topic_config_changed,
            on_brokers=replicas.brokers_changed,
            on_broker_configs=self._broker_configs_changed,
            on_features_incompatible=self._features_incompatible,
        )
        # A quick restart after kill -9 may find the old session's registration until it
        # expires: wait a little longer than a session timeout for it.
        await self.metadata.register(
            self._registration(),
            self.broker.config.get_int("zookeeper.session.timeout.ms") + 2000,
        )
        await self.control.refresh_broker_epoch()
        await self.controller.start()
        replicas.apply_all()
        self._shrinker = asyncio.create_task(self._shrink_loop(), name="isr-shrink")

    def log_dir_failed(self, log_dir: Path, offline: Sequence[tuple[str, int]]) -> None:
        """A log dir of this broker failed: stop serving its partitions and tell the
        controller through /log_dir_event_notification (ZooKeeper-mode Kafka's way); it asks
        this broker which replicas are offline and moves their leaderships away."""
        self.replicas.log_dir_failed(offline)
        broker_id = self.broker.config.broker_id

        async def notify() -> None:
            while True:
                try:
                    path = await self.metadata.store.notify_log_dir_failure(broker_id)
                except ZkError as exc:
                    log.warning("telling the controller that %s failed: %r; retrying", log_dir, exc)
                    await asyncio.sleep(1.0)
                    continue
                log.info("log dir failure of %s announced at %s", log_dir, path)
                return

        self.replicas._spawn(notify())

    @staticmethod
    def _features_incompatible(reason: str) -> None:
        """/feature now finalizes levels this broker cannot run at. Kafka's broker exits;
        this one stops as on SIGTERM (its leaderships move away first)."""
        log.critical(
            "the cluster's finalized features are incompatible with this broker (%s): "
            "shutting down",
            reason,
        )
        os.kill(os.getpid(), signal.SIGTERM)

    def _broker_configs_changed(self) -> None:
        metadata = self.metadata
        self.broker.apply_dynamic_broker_configs(
            metadata.dynamic_configs_for(self.broker.config.broker_id),
            metadata.dynamic_configs_for(None),
        )
        for topic in list(metadata.topics):
            self.replicas.topic_config_changed(topic)  # broker defaults under topic configs
        # The controller's default for topics without their own unclean.leader.election.enable.
        unclean = self.broker.config.get("unclean.leader.election.enable") is True
        turned_on = unclean and not self.controller.unclean_default
        self.controller.unclean_default = unclean
        if turned_on:
            self.controller.reelect_offline_partitions()  # as Kafka's controller does

    def _registration(self) -> BrokerRegistration:
        cfg = self.broker.config
        node = self.broker.node
        advertised = cfg.advertised_listeners or cfg.listeners
        client_listener = cfg.advertised_data_plane_listeners[0].name
        endpoints = []
        # Every listener is registered, the control-plane one too (as Kafka does): the
        # controller finds it there by name; clients are only ever given data-plane ones.
        for listener in advertised:
            if listener.name == client_listener:
                host, port = node.host, node.port
            else:
                host = listener.host or node.host
                port = listener.port or self.broker.bound_ports.get(listener.name, 0)
            protocol = cfg.listener_protocols.get(listener.name, "PLAINTEXT")
            endpoints.append(Endpoint(listener.name, host, port, protocol))
        return BrokerRegistration(
            cfg.broker_id,
            tuple(endpoints),
            cfg.broker_rack,
            int(time.time() * 1000),
            registration_features(SUPPORTED_FEATURES),
        )

    async def _shrink_loop(self) -> None:
        interval = max(self.replicas.lag_max_ms / 2, 50) / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.replicas.shrink_isr()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ISR shrink failed")

    async def controlled_shutdown(self) -> None:
        """Move this broker's leaderships to other in-sync replicas and take it out of the
        ISRs. The listeners must still serve meanwhile (`strom serve` closes them after this,
        as Kafka does): followers that cannot fetch fall out of the ISR, and a partition whose
        ISR shrank to this broker has nowhere to go. Runs once; `shutdown` calls it if needed."""
        if self._controlled_shutdown_done:
            return
        self._controlled_shutdown_done = True
        if not self.broker.config.get("controlled.shutdown.enable"):
            log.info("controlled shutdown disabled (controlled.shutdown.enable=false)")
            return
        if not self.client.connected:
            # Its writes would only wait for ZooKeeper: the controller moves the leaderships
            # once it sees the registration gone.
            log.warning("controlled shutdown skipped: ZooKeeper is unreachable")
            return
        try:
            async with asyncio.timeout(CONTROLLED_SHUTDOWN_TIMEOUT_S):
                await move_leaderships_away(self)
        except (TimeoutError, ZkError, NotControllerError, ValueError) as exc:
            log.warning("controlled shutdown incomplete (%r); leaving anyway", exc)
        except Exception:
            # Best effort: whatever went wrong, the stop must go on and close the session.
            log.exception("controlled shutdown failed; leaving anyway")

    async def shutdown(self) -> None:
        """Controlled shutdown (unless done already), then leave the cluster (the session
        closes).

        Whatever happens on the way, the session is closed at the end: ZooKeeper then deletes
        /brokers/ids/<id> (and /controller) at once. A process that exits without closing it
        leaves them for a whole session timeout, and a quick restart waits for that."""
        try:
            await self.controlled_shutdown()
            if self._shrinker is not None:
                self._shrinker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._shrinker
            await _bounded("stopping the replicas", self.replicas.stop(), SHUTDOWN_STEP_S)
            await _bounded("stopping the controller", self.controller.stop(), SHUTDOWN_STEP_S)
            self.metadata.stop()
        finally:
            await self.client.close()

    # --- admin writes started by synchronous handlers --------------------------------------

    def start_write(self, name: str, make: Callable[[], Awaitable[None]]) -> None:
        """Start an admin write to ZooKeeper; the request that started it collects its
        outcome with `settle(names)`. Writes nobody settles (topics auto-created by Metadata)
        are dropped once finished for a while."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._pending = [
            entry
            for entry in self._pending
            if not (entry[1].done() and now - entry[2] > UNSETTLED_WRITE_KEEP_S)
        ]

        async def run() -> None:
            await make()

        self._pending.append((name, asyncio.ensure_future(run()), now))

    async def settle(self, names: Collection[str]) -> dict[str, ApiError]:
        """Waits for the writes started under these names (by the request at hand: the
        writes of other requests are left to them); returns their errors by name.

        While ZooKeeper is unreachable a write waits for it; like Kafka's brokers, the answer
        does not: once a `zookeeper.connection.timeout.ms` has passed and ZooKeeper is still
        away, REQUEST_TIMED_OUT (the write itself goes on, and may still be applied once
        ZooKeeper is back)."""
        mine = [(name, task) for name, task, _ in self._pending if name in names]
        self._pending = [entry for entry in self._pending if entry[0] not in names]
        errors: dict[str, ApiError] = {}
        waiting = {task for _, task in mine}
        while waiting:
            _, waiting = await asyncio.wait(
                waiting, timeout=self.client.connection_timeout_ms / 1000
            )
            if waiting and not self.client.connected:
                break
        for name, task in mine:
            if not task.done():
                task.add_done_callback(_log_late_write)
                errors[name] = ApiError(
                    ErrorCode.REQUEST_TIMED_OUT,
                    f"ZooKeeper did not answer within {self.client.connection_timeout_ms} ms",
                )
                continue
            try:
                await task
            except TopicExistsError:
                errors[name] = ApiError(
                    ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists."
                )
            except logic.AssignmentError as exc:
                errors[name] = ApiError(ErrorCode.INVALID_REPLICATION_FACTOR, str(exc))
            except ZkError as exc:
                errors[name] = ApiError(ErrorCode.REQUEST_TIMED_OUT, f"ZooKeeper: {exc!r}")
            except Exception as exc:
                log.exception("admin write for %s failed", name)
                errors[name] = ApiError(ErrorCode.UNKNOWN_SERVER_ERROR, repr(exc))
        return errors

    async def finish(
        self, results: Sequence[Any], timeout_ms: int, done: Callable[[str], bool]
    ) -> None:
        """For an admin response whose entries (with `name`, `error_code`, `error_message`)
        started writes: put the write errors in, then wait up to `timeout_ms` until the cache
        shows every other entry `done` (other brokers see it about as soon)."""
        errors = await self.settle({result.name for result in results})
        ok: list[str] = []
        for result in results:
            error = errors.get(result.name)
            if error is not None:
                result.error_code = error.code
                result.error_message = error.message or error.code.name
            elif result.error_code == ErrorCode.NONE:
                ok.append(result.name)
        await self.metadata.wait_until(
            lambda: all(done(name) for name in ok), max(timeout_ms, 0) / 1000
        )

    def create_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: Mapping[str, str],
        replicas: Mapping[int, tuple[int, ...]] | None = None,
    ) -> None:
        live = len(self.metadata.brokers)
        if replicas is None and replication_factor > live:
            raise ApiError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"Replication factor: {replication_factor} larger than available brokers: {live}.",
            )

        async def write() -> None:
            await self.metadata.create_topic(
                name, num_partitions, replication_factor, configs, replicas
            )
            log.info(
                "created topic %s (%d partition(s), RF %d)",
                name,
                num_partitions,
                replication_factor,
            )

        self.start_write(name, write)

    def create_internal_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: Mapping[str, str],
    ) -> None:
        """Start creating `__consumer_offsets` or `__transaction_state` (first FindCoordinator),
        with the configured replication factor capped at the live brokers. Nobody waits: the
        client asks again (COORDINATOR_NOT_AVAILABLE) and finds the leader once it is elected.
        Two brokers racing to create it is harmless (the second one finds it exists)."""
        if name in self._creating_internal:
            return
        rf = max(1, min(replication_factor, len(self.metadata.brokers)))

        async def write() -> None:
            try:
                await self.metadata.create_topic(name, num_partitions, rf, configs, None)
                log.info(
                    "created internal topic %s (%d partition(s), RF %d)", name, num_partitions, rf
                )
            except TopicExistsError:
                pass
            except Exception:
                log.exception("creating internal topic %s failed", name)
            finally:
                self._creating_internal.pop(name, None)

        self._creating_internal[name] = asyncio.ensure_future(write())

    def leader_node(self, topic: str, partition: int, listener: str = "") -> Node | None:
        """The live broker leading the partition (FindCoordinator), None without one."""
        versioned = self.metadata.state(topic, partition)
        if versioned is None:
            return None
        leader = versioned.state.leader
        return next((node for node in self.nodes(listener) if node.node_id == leader), None)

    # --- views for Metadata and DescribeCluster -------------------------------------------

    def nodes(self, listener: str = "") -> list[Node]:
        """The live brokers at their endpoints of `listener` (the one a client came in on;
        brokers without it are left out, as Kafka does); "": the first data-plane one."""
        cfg = self.broker.config
        wanted = listener or cfg.data_plane_listeners[0].name
        out: list[Node] = []
        for broker_id, registration in sorted(self.metadata.brokers.items()):
            if broker_id == self.broker.node.node_id:
                out.append(self.broker.node_for(listener))
                continue
            usable = [
                e
                for e in registration.endpoints
                if e.listener_name != cfg.control_plane_listener_name
            ]
            if not usable:
                continue
            endpoint = next((e for e in usable if e.listener_name == wanted), None)
            if endpoint is None:
                if listener:
                    continue
                endpoint = usable[0]
            out.append(Node(broker_id, endpoint.host, endpoint.port, registration.rack))
        return out

    def describe_topic(self, record: TopicRecord, name: str) -> MetadataResponseTopic:
        live = set(self.metadata.brokers)
        partitions: list[MetadataResponsePartition] = []
        me = self.broker.config.broker_id
        for p in range(record.num_partitions):
            replicas = list(self.metadata.replicas(name, p))
            versioned = self.metadata.state(name, p)
            leader, epoch, isr = -1, -1, []
            if versioned is not None:
                leader = versioned.state.leader
                epoch = versioned.state.leader_epoch
                isr = list(versioned.state.isr)
            error = ErrorCode.NONE if leader in live else ErrorCode.LEADER_NOT_AVAILABLE
            partitions.append(
                MetadataResponsePartition(
                    error_code=error,
                    partition_index=p,
                    leader_id=leader if leader in live else -1,
                    leader_epoch=epoch,
                    replica_nodes=replicas,
                    isr_nodes=isr,
                    offline_replicas=[
                        r
                        for r in replicas
                        if r not in live or (r == me and self.broker.logs.is_offline(name, p))
                    ],
                )
            )
        return MetadataResponseTopic(
            error_code=ErrorCode.NONE,
            name=name,
            topic_id=record.topic_id,
            is_internal=name in INTERNAL_TOPICS,
            partitions=partitions,
            topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
        )

    def topic_ready(self, name: str) -> bool:
        """The topic is in the cache and each of its partitions has a leader."""
        record = self.metadata.get_topic(name)
        if record is None:
            return False
        for p in range(record.num_partitions):
            vs = self.metadata.state(name, p)
            if vs is None or vs.state.leader < 0:
                return False
        return True


def _log_late_write(task: asyncio.Future[None]) -> None:
    """A write whose request was answered REQUEST_TIMED_OUT finished after all."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        log.info("an admin write answered as timed out was applied after all")
    else:
        log.warning("an admin write answered as timed out failed: %r", exc)


async def _bounded(what: str, step: Awaitable[None], timeout_s: float) -> None:
    """Runs a shutdown step for at most `timeout_s`; a step that hangs (or fails) is logged
    and left behind, so that the steps after it (closing the session) still run. Unlike
    `asyncio.wait_for`, it does not wait for the abandoned step to finish cancelling."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        log.warning("shutdown: %s did not finish within %.0f s; going on", what, timeout_s)
        task.cancel()
        return
    if not task.cancelled() and task.exception() is not None:
        log.warning("shutdown: %s failed: %r", what, task.exception())
