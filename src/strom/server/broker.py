"""The broker: configuration, topic metadata, partition logs and the purgatories, together.

Everything here runs on the event loop thread (one writer per partition, no locks); blocking
disk work that may take long (fsync) is handed to the `io` thread pool sized by num.io.threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from strom.clock import Clock, SystemClock
from strom.cluster.features import SUPPORTED_FEATURES, check_compatible
from strom.cluster.local_metadata import LocalMetadata, TopicRecord
from strom.cluster.local_security import LocalSecurityStore
from strom.cluster.topic_names import INTERNAL_TOPICS, validate_topic_name
from strom.config import (
    BrokerConfig,
    ConfigError,
    decode_passwords,
    encode_passwords,
    log_config_for,
    log_no_effect,
    validate_topic_configs,
)
from strom.config.broker_keys import DYNAMIC_ONLY
from strom.protocol.errors import ErrorCode
from strom.replication.alter_log_dirs import UNTHROTTLED, ReplicaAlterLogDirsManager
from strom.runtime.acl_runtime import AclRuntime, LocalAclBackend
from strom.runtime.cleaner_runtime import CleanerRuntime
from strom.runtime.errors import ApiError
from strom.runtime.group_runtime import OFFSETS_TOPIC, GroupCoordinatorRuntime
from strom.runtime.host import CoordinatorHandle, Node
from strom.runtime.purgatory import Purgatory
from strom.runtime.quota_runtime import LocalQuotaBackend, MemoryQuotaBackend, QuotaRuntime
from strom.runtime.share_coordinator_runtime import SHARE_STATE_TOPIC, ShareCoordinatorRuntime
from strom.runtime.share_initializer import ShareStateInitializer
from strom.runtime.share_persister import SharePersister
from strom.runtime.share_runtime import ShareRuntime
from strom.runtime.txn_runtime import TRANSACTION_STATE_TOPIC, TransactionCoordinatorRuntime
from strom.security.client import InterBrokerSecurityReload
from strom.security.scram import MECHANISMS as SCRAM_MECHANISMS
from strom.security.scram import ScramCredential
from strom.server.authz import authorizer_from_config
from strom.server.fetch_session import FetchSessionCache
from strom.server.internal_produce import InternalProducer
from strom.server.log_limiter import LogLimiter
from strom.server.memory_pool import UNLIMITED_RESPONSES, ResponseBudget
from strom.server.metrics import BrokerMetrics
from strom.storage import faults
from strom.storage.errors import KafkaStorageError
from strom.storage.file_cache import open_files
from strom.storage.log_config import LogConfig
from strom.storage.log_manager import LogManager
from strom.storage.segment import unlink_paths

if TYPE_CHECKING:
    from strom.cluster.zk_metadata import ZkMetadata
    from strom.runtime.cluster_runtime import ClusterRuntime
    from strom.runtime.host import Metadata
    from strom.storage.partition_log import PartitionLog

log = logging.getLogger("strom.broker")

ALTER_LOG_DIRS_RATE = "replica.alter.log.dirs.io.max.bytes.per.second"


def broker_config_write_name(broker_id: int | None) -> str:
    """How a dynamic broker config write is named among a cluster's pending admin writes
    (topic config writes are named by their topic)."""
    return f"broker:{'' if broker_id is None else broker_id}"


def group_config_write_name(group_id: str) -> str:
    """How a group config write is named among a cluster's pending admin writes."""
    return f"group:{group_id}"


# Segment files unused this long give their descriptors back (checked this often): a partition
# neither written nor read holds none.
IDLE_FILE_S = 60.0
IDLE_FILE_CHECK_MS = 10_000
# The background opening of deferred logs: this long at a time, then this long for the rest.
# Files the produce path and the opening of logs left for later: looked for this often,
# written this many logs at a time.
DUE_FILES_INTERVAL_S = 1.0
DUE_FILES_BATCH = 500
WARM_UP_SLICE_S = 0.02
WARM_UP_PAUSE_S = 0.005
# A single broker leads every partition; its leader epoch never changes.
SINGLE_NODE_LEADER_EPOCH = 0
ZERO_UUID = uuid.UUID(int=0)


class Reconfigurable(Protocol):
    def check(self, config: BrokerConfig) -> object: ...

    def reconfigure(self, config: BrokerConfig) -> object: ...


class Broker:
    def __init__(
        self,
        config: BrokerConfig,
        metadata: Metadata,
        logs: LogManager,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.metadata = metadata
        self.logs = logs
        self.clock: Clock = clock or SystemClock()
        self.metrics = BrokerMetrics()
        self.fetch_purgatory = Purgatory("fetch")
        self.produce_purgatory = Purgatory("produce")
        self.fetch_sessions = FetchSessionCache(
            config.max_incremental_fetch_session_cache_slots, self.clock
        )
        self.io = ThreadPoolExecutor(
            max_workers=config.num_io_threads, thread_name_prefix="strom-io"
        )
        # Unlinking a large segment frees its extents synchronously: not on the event loop.
        logs.set_unlinker(self._unlink_in_pool)
        logs.remove_tree = self._remove_tree_in_pool
        self.node = self._advertised_node()
        # Listener name -> the port it is bound to (the registration needs the real ports).
        self.bound_ports: dict[str, int] = {}
        self._background: list[asyncio.Task[None]] = []
        self._flushing: set[PartitionLog] = set()
        self.cleaner = CleanerRuntime(self)
        self.groups = GroupCoordinatorRuntime(self)
        self.txns = TransactionCoordinatorRuntime(self)
        self.share_state = ShareCoordinatorRuntime(self)
        # Share-partition state, wherever its share coordinator is: this broker's share
        # partitions load and write it, the group coordinator initializes and deletes it.
        self.share_persister: SharePersister = SharePersister(self, self.share_state)
        self.share_initializer = ShareStateInitializer(self.groups, self.share_persister)
        self.shares = ShareRuntime(self)
        self.internal_producer = InternalProducer(self)
        # Moves replicas between log dirs (AlterReplicaLogDirs), as Kafka with one thread per
        # log dir (num.replica.alter.log.dirs.threads' default).
        threads = config.get("num.replica.alter.log.dirs.threads")
        self.log_dir_moves = ReplicaAlterLogDirsManager(
            logs,
            threads if isinstance(threads, int) else len(logs.log_dirs),
            on_moved=self._replica_moved,
            rate=self._alter_log_dirs_rate,
        )
        # Cluster mode (zookeeper.connect) only; None on a single broker, where nothing of
        # the replication path runs.
        self.cluster: ClusterRuntime | None = None
        # Bytes of responses that may still be built before those waiting for slow clients
        # use up the broker's memory for requests; the network sets it (fetches return less,
        # at least one batch, when it runs low).
        self.response_budget = ResponseBudget(UNLIMITED_RESPONSES, lambda: 0)
        # What acts on dynamic broker configs besides the logs (TLS listeners): checked before
        # a change is accepted, told after it is applied.
        self.reconfigurables: list[Reconfigurable] = []
        # authorizer.class.name: None (the default) lets every request through. The ACLs it
        # decides on are kept by `acls` (in the data directory, or ZooKeeper in a cluster).
        self.authorizer = authorizer_from_config(config)
        self.acls: AclRuntime | None = None
        # Single broker: where ACLs and client quotas are kept (strom-security.json).
        self.security_store: LocalSecurityStore | None = None
        # Client quotas (produce and fetch bytes, request time, controller mutations).
        self.quotas: QuotaRuntime = QuotaRuntime(config, MemoryQuotaBackend(), {})
        self._faults = faults.FaultFile.from_environment()
        self._storage_log = LogLimiter(log)

    def _remove_tree_in_pool(self, path: Path) -> None:
        try:
            self.io.submit(shutil.rmtree, path, True)
        except RuntimeError:  # the pool is shut down (closing): do it here
            shutil.rmtree(path, ignore_errors=True)

    def _unlink_in_pool(self, paths: list[Path]) -> None:
        try:
            self.io.submit(unlink_paths, paths)
        except RuntimeError:  # the pool is shut down (closing): do it here
            unlink_paths(paths)

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    def open(cls, config: BrokerConfig, clock: Clock | None = None) -> Broker:
        """Load metadata and every partition log (blocking; runs before the loop serves).
        The metadata file lives in the first log dir, which must therefore be usable."""
        metadata = LocalMetadata.load(config.log_dirs[0])
        # Levels this broker cannot run at (a file from a newer Strom, edited by hand).
        check_compatible(SUPPORTED_FEATURES, metadata.finalized_features.levels)
        # Dynamic broker configs (AlterConfigs) are kept by the metadata store.
        config = config.with_dynamic(
            decode_passwords(metadata.dynamic_configs_for(config.broker_id), config),
            decode_passwords(metadata.dynamic_configs_for(None), config),
        )
        broker_ref: list[Broker] = []

        def config_for(topic: str) -> LogConfig:
            if broker_ref:
                return broker_ref[0].log_config(topic)
            record = metadata.get_topic(topic)
            return log_config_for(record.configs if record else {}, config)

        logs = LogManager.open(
            list(config.log_dirs),
            config_for,
            config.producer_id_expiration_ms,
            cluster_id=metadata.cluster_id,
            broker_id=config.broker_id,
        )
        broker = cls(config, metadata, logs, clock)
        broker_ref.append(broker)
        broker.security_store = LocalSecurityStore.load(config.log_dirs[0])
        broker.quotas = QuotaRuntime(
            config,
            LocalQuotaBackend(broker.security_store),
            broker.security_store.entity_configs(),
        )
        if broker.authorizer is not None:
            broker.authorizer.replace_all(broker.security_store.all_acls())
            broker.acls = AclRuntime(broker.authorizer, LocalAclBackend(broker.security_store))
        broker._reconcile_logs()
        broker.groups.load()
        broker.txns.load()  # after the groups: it may write markers to __consumer_offsets
        broker.share_state.load()
        return broker

    @classmethod
    def open_cluster(cls, config: BrokerConfig, metadata: ZkMetadata) -> Broker:
        """Cluster mode: open the logs against the topics in ZooKeeper (blocking). The
        coordinators load nothing here: their partitions' logs may be follower copies."""
        broker_ref: list[Broker] = []

        def config_for(topic: str) -> LogConfig:
            if broker_ref:
                return broker_ref[0].log_config(topic)
            record = metadata.get_topic(topic)
            return log_config_for(record.configs if record else {}, config)

        logs = LogManager.open(
            list(config.log_dirs),
            config_for,
            config.producer_id_expiration_ms,
            cluster_id=metadata.cluster_id,
            broker_id=config.broker_id,
        )
        # Here, in a worker thread, rather than partition by partition on the event loop when
        # the replica manager applies the partition states.
        logs.open_deferred(budget_s=float("inf"))
        broker = cls(config, metadata, logs)
        broker_ref.append(broker)
        for topic, partition in list(logs.partitions()):
            if config.broker_id not in metadata.replicas(topic, partition):
                log.warning(
                    "partition %s-%d is on disk but this broker is not one of its replicas: "
                    "deleting it",
                    topic,
                    partition,
                )
                logs.delete_partition(topic, partition)
        return broker

    def _reconcile_logs(self) -> None:
        """Make the partition logs on disk match the topics in the metadata store."""
        for name, record in self.metadata.topics.items():
            cfg = self.log_config(name)
            for partition in range(record.num_partitions):
                if not self.logs.has(name, partition) and not self.logs.is_offline(name, partition):
                    try:
                        self.logs.create(name, partition, record.topic_id, cfg, is_new=False)
                    except KafkaStorageError:
                        # A log dir is offline: the partition's log may be in it.
                        self.logs.offline_partitions[(name, partition)] = None
        for topic, partition in list(self.logs.partitions()):
            known = self.metadata.get_topic(topic)
            if known is None or partition >= known.num_partitions:
                log.warning(
                    "partition %s-%d is on disk but not in the metadata: deleting it",
                    topic,
                    partition,
                )
                self.logs.delete_partition(topic, partition)

    def start_background_tasks(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self.logs.on_dir_failure = lambda log_dir, reason: loop.call_soon_threadsafe(
            self.handle_log_dir_failure, log_dir, reason
        )
        self.groups.start()
        self.txns.start()
        self.shares.resume()
        self.log_dir_moves.resume_all()
        self._background = [
            asyncio.create_task(
                self._every(cfg.log_retention_check_interval_ms, self._retention), name="retention"
            ),
            asyncio.create_task(
                self._every(cfg.log_flush_scheduler_interval_ms, self._flush), name="flush"
            ),
            asyncio.create_task(
                self._every(cfg.log_flush_offset_checkpoint_interval_ms, self._checkpoint),
                name="checkpoint",
            ),
            asyncio.create_task(
                self._every(
                    cfg.get_int("replica.high.watermark.checkpoint.interval.ms"),
                    self._checkpoint_high_watermarks,
                ),
                name="high-watermark-checkpoint",
            ),
        ]
        if self._faults is not None:
            self._background.append(
                asyncio.create_task(self._every(100, self._poll_faults), name="fault-injection")
            )
        self._background.append(
            asyncio.create_task(
                self._every(
                    cfg.get_int("producer.id.expiration.check.interval.ms"),
                    self._expire_producers,
                ),
                name="producer-expiration",
            )
        )
        self._background.append(
            asyncio.create_task(
                self._every(IDLE_FILE_CHECK_MS, self._close_idle_files), name="idle-files"
            )
        )
        self._background.append(asyncio.create_task(self._write_due_files(), name="due-files"))
        if self.logs.deferred:
            self._background.append(
                asyncio.create_task(self._open_deferred_logs(), name="open-deferred-logs")
            )
        self.cleaner.start()

    async def close(self) -> None:
        # While the coordinators still take writes: share partitions persist their state and
        # checkpoint their delay indexes.
        await self.shares.close()
        await self.internal_producer.close()
        if self.acls is not None:
            self.acls.stop()
        self.quotas.stop()
        if self.cluster is not None:
            await self.cluster.shutdown()
        await self.log_dir_moves.stop()
        await self.cleaner.stop()  # before the logs close under a pass
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.txns.stop()
        await self.share_initializer.close()
        self.shares.store.close()
        await self.share_persister.close()
        self.txns.close()
        self.groups.close()
        self.share_state.close()
        self.fetch_purgatory.expire_all()
        self.produce_purgatory.expire_all()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.io, self.logs.close)
        self.io.shutdown(wait=True)

    async def _every(self, interval_ms: int, job: object) -> None:
        assert callable(job)
        interval = max(interval_ms, 10) / 1000.0
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background job %s failed", getattr(job, "__name__", job))

    async def _retention(self) -> None:
        deleted = self.logs.run_retention(self.clock.now_ms())
        if deleted:
            log.info("retention deleted %d segment(s)", deleted)

    async def _flush(self) -> None:
        now = self.clock.now_ms()
        for partition_log in self.logs.all_logs():
            if partition_log.needs_flush(now):
                self.request_flush(partition_log)

    async def _write_due_files(self) -> None:
        """Write the files the produce path and the opening of logs left for later (leader
        epochs, producer snapshots: PartitionLog.files_due), in the worker pool, a batch at a
        time."""
        loop = asyncio.get_running_loop()
        while True:
            pending = self.logs.take_due_files(DUE_FILES_BATCH)
            if not pending:
                await asyncio.sleep(DUE_FILES_INTERVAL_S)
                continue
            failed = await loop.run_in_executor(self.io, self.logs.write_due_files, pending)
            for plog, exc in failed:
                self.storage_failure(f"writing the files of {plog.name}", exc, plog)
                plog.files_due(plog)
            if failed:
                await asyncio.sleep(DUE_FILES_INTERVAL_S)

    async def _open_deferred_logs(self) -> None:
        """Open the partitions that start-up left unopened (storage/deferred_logs.py), a few
        milliseconds' worth at a time, so that retention and the cleaner see every log while
        requests are served in between."""
        started = time.monotonic()
        total = len(self.logs.deferred)
        while self.logs.open_deferred(WARM_UP_SLICE_S):
            await asyncio.sleep(WARM_UP_PAUSE_S)
        log.info(
            "opened the %d partition(s) left unopened at start-up in %.1f s",
            total,
            time.monotonic() - started,
        )

    async def _close_idle_files(self) -> None:
        open_files.close_idle(IDLE_FILE_S)

    async def _checkpoint(self) -> None:
        taken = self.logs.offsets_by_dir()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.io, self.logs.write_offsets_by_dir, taken)

    async def _checkpoint_high_watermarks(self) -> None:
        marks = self.logs.high_watermarks_by_dir()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.io, self.logs.write_high_watermarks, marks)

    async def _poll_faults(self) -> None:
        assert self._faults is not None
        self._faults.poll()

    async def _expire_producers(self) -> None:
        self.logs.remove_expired_producers(self.clock.now_ms())

    def _advertised_node(self) -> Node:
        # Clients are told about the first data-plane listener, never the control plane's.
        listener = self.config.advertised_data_plane_listeners[0]
        host = listener.host
        if host in ("", "0.0.0.0", "::"):
            host = socket.getfqdn()
        return Node(self.config.broker_id, host, listener.port, self.config.broker_rack)

    def node_for(self, listener: str = "") -> Node:
        """This broker as clients of `listener` reach it (each client is told about the
        listener it came in on, as Kafka does); "" or an unknown name: the first data-plane
        listener."""
        for x in self.config.advertised_data_plane_listeners:
            if x.name == listener and x.name != self.config.advertised_data_plane_listeners[0].name:
                host = x.host if x.host not in ("", "0.0.0.0", "::") else self.node.host
                port = x.port or self.bound_ports.get(x.name, 0)
                return Node(self.node.node_id, host, port, self.node.rack)
        return self.node

    def bind_port(self, port: int, listener_name: str | None = None) -> None:
        """Called once a listener is bound, so that port 0 advertises the real port."""
        if listener_name is not None:
            self.bound_ports[listener_name] = port
        client_listener = self.config.advertised_data_plane_listeners[0].name
        if self.node.port == 0 and listener_name in (None, client_listener):
            self.node = Node(self.node.node_id, self.node.host, port, self.node.rack)

    # -- topics -----------------------------------------------------------------------------

    def log_config(self, topic: str) -> LogConfig:
        record = self.metadata.get_topic(topic)
        return log_config_for(record.configs if record else {}, self.config)

    def coordinator_for_topic(self, topic: str) -> CoordinatorHandle | None:
        if topic == OFFSETS_TOPIC:
            return self.groups
        if topic == TRANSACTION_STATE_TOPIC:
            return self.txns
        if topic == SHARE_STATE_TOPIC:
            return self.share_state
        return None

    def next_producer_id(self) -> int:
        """A producer id of the broker's own (raises ApiError while none can be had)."""
        return self.txns.producer_ids.next_id()

    async def produce_internal(
        self, topic: str, partition: int, batch: bytes, timeout_ms: int
    ) -> ErrorCode:
        """Append a batch of the broker's own through the produce path (acks=all)."""
        return await self.internal_producer.produce(topic, partition, batch, timeout_ms)

    def partition_log(self, topic: str, partition: int) -> PartitionLog | None:
        return self.logs.get(topic, partition)

    def after_append(self, topic: str, partition: int) -> None:
        """After any append (produce, transaction marker): move the high watermark and, with it,
        the last stable offset, then wake the fetches waiting on the partition. One broker is
        the whole ISR, so its log end is the high watermark. In cluster mode the ISR decides
        (runtime/replica_manager.py)."""
        if self.cluster is not None:
            self.cluster.replicas.after_append(topic, partition)
            return
        partition_log = self.logs.get(topic, partition)
        if partition_log is not None:
            partition_log.update_high_watermark(partition_log.log_end_offset)
            self.fetch_purgatory.notify((topic, partition))

    def request_flush(self, partition_log: PartitionLog) -> None:
        """fsync the log in the worker pool, unless a flush of it is already running: the
        running one covers the appends made meanwhile up to its start, and the next produce or
        the flush scheduler asks again for the rest, so fsyncs never pile up on one log."""
        if partition_log in self._flushing:
            return
        self._flushing.add(partition_log)
        future = asyncio.get_running_loop().run_in_executor(self.io, partition_log.flush)

        def done(finished: asyncio.Future[None]) -> None:
            self._flushing.discard(partition_log)
            exc = None if finished.cancelled() else finished.exception()
            if isinstance(exc, OSError):
                # The recovery point stays where it was; a full disk is tried again later.
                self.storage_failure(f"flushing {partition_log.name}", exc, partition_log)
            elif exc is not None:
                log.error("flushing %s failed: %r", partition_log.name, exc)

        future.add_done_callback(done)

    def leader_epoch(self, topic: str, partition: int) -> int:
        if self.cluster is not None:
            return self.cluster.replicas.leader_epoch(topic, partition)
        return SINGLE_NODE_LEADER_EPOCH

    def controller_id(self) -> int:
        if self.cluster is not None:
            active = self.cluster.controller.active_controller_id
            return -1 if active is None else active
        return self.node.node_id

    def live_broker_ids(self) -> list[int]:
        if self.cluster is not None:
            return sorted(self.cluster.metadata.brokers)
        return [self.node.node_id]

    def validate_new_topic(
        self, name: str, num_partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> tuple[int, int, dict[str, str]]:
        """Check a CreateTopics entry; returns the resolved partitions, RF and configs."""
        problem = validate_topic_name(name)
        if problem is not None:
            raise ApiError(ErrorCode.INVALID_TOPIC_EXCEPTION, problem)
        if self.metadata.get_topic(name) is not None:
            raise ApiError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        if num_partitions == -1:
            num_partitions = self.config.num_partitions
        if num_partitions <= 0:
            raise ApiError(
                ErrorCode.INVALID_PARTITIONS, "Number of partitions must be larger than 0."
            )
        if replication_factor == -1:
            replication_factor = self.config.default_replication_factor
        if replication_factor <= 0:
            raise ApiError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0.",
            )
        available = len(self.live_broker_ids())
        if replication_factor > available:
            raise ApiError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"Replication factor: {replication_factor} larger than available brokers: "
                f"{available}.",
            )
        try:
            normalized = validate_topic_configs(configs)
        except ConfigError as exc:
            raise ApiError(ErrorCode.INVALID_CONFIG, str(exc)) from exc
        return num_partitions, replication_factor, normalized

    def create_topic(
        self,
        name: str,
        num_partitions: int = -1,
        replication_factor: int = -1,
        configs: dict[str, str] | None = None,
        replicas: dict[int, tuple[int, ...]] | None = None,
    ) -> TopicRecord:
        """Create a topic; `replicas` (a manual assignment) only matters in cluster mode."""
        num_partitions, replication_factor, normalized = self.validate_new_topic(
            name, num_partitions, replication_factor, configs or {}
        )
        if self.cluster is not None:
            # Written to ZooKeeper in the background (CreateTopics waits for it); the topic id
            # is known once the cache has the topic.
            self.cluster.create_topic(
                name, num_partitions, replication_factor, normalized, replicas
            )
            return TopicRecord(ZERO_UUID, num_partitions, replication_factor, normalized)
        assert isinstance(self.metadata, LocalMetadata)
        try:
            record = self.metadata.create_topic(
                name, num_partitions, replication_factor, normalized
            )
        except OSError as exc:
            raise self.storage_failure(f"creating topic {name}", exc) from exc
        try:
            self._create_logs(name, range(num_partitions), record.topic_id)
        except ApiError:
            try:
                self.metadata.delete_topic(name)
            except OSError as exc:  # the next start-up creates the missing logs instead
                log.error("topic %s is kept without all its logs: %s", name, exc)
            raise
        log.info("created topic %s with %d partition(s)", name, num_partitions)
        return record

    def _create_logs(self, topic: str, partitions: range, topic_id: uuid.UUID) -> None:
        """Create the partitions' logs, or none of them: out of descriptors or disk space,
        the ones created are removed again and the request gets KAFKA_STORAGE_ERROR."""
        cfg = self.log_config(topic)
        created: list[int] = []
        try:
            for partition in partitions:
                self.logs.create(topic, partition, topic_id, cfg)
                created.append(partition)
        except (OSError, KafkaStorageError) as exc:
            for partition in created:
                try:
                    self.logs.delete_partition(topic, partition)
                except OSError as again:
                    log.error("could not remove %s-%d again: %s", topic, partition, again)
            doing = f"creating {len(partitions)} partition(s) of {topic}"
            if isinstance(exc, KafkaStorageError):  # every log dir is offline
                raise ApiError(ErrorCode.KAFKA_STORAGE_ERROR, f"{doing} failed: {exc}") from exc
            raise self.storage_failure(doing, exc) from exc

    def storage_failure(
        self, doing: str, exc: OSError, where: PartitionLog | Path | None = None
    ) -> ApiError:
        """An I/O error while serving a request: one log line per interval and kind, the log
        directory of `where` taken offline if the disk failed (not when descriptors, memory
        or, with a single log dir, disk space ran out: LogManager.io_failed), and the error to
        answer with."""
        kind = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        self._storage_log.warning(kind, "%s failed: %s", doing, exc)
        if where is not None:
            self.logs.io_failed(where, exc)
        return ApiError(ErrorCode.KAFKA_STORAGE_ERROR, f"{doing} failed: {exc.strerror or exc}")

    def create_internal_topic(
        self, name: str, num_partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> TopicRecord:
        """Create an internal topic (__consumer_offsets, __transaction_state) on first use."""
        return self.create_topic(name, num_partitions, replication_factor, configs)

    def maybe_auto_create(self, name: str) -> TopicRecord | None:
        """Create a topic a client asked about, when auto.create.topics.enable allows."""
        if not self.config.auto_create_topics_enable or name in INTERNAL_TOPICS:
            return None
        if validate_topic_name(name) is not None:
            return None
        return self.create_topic(name)

    def delete_topic(self, name: str) -> None:
        record = self.metadata.get_topic(name)
        if record is None:
            raise ApiError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        if not self.config.delete_topic_enable:
            raise ApiError(ErrorCode.TOPIC_DELETION_DISABLED)
        if self.cluster is not None:
            # The controller deletes it; every replica's watch then deletes its logs.
            zk = self.cluster.metadata
            self.cluster.start_write(name, lambda: zk.delete_topic(name))
            return
        assert isinstance(self.metadata, LocalMetadata)
        self.metadata.delete_topic(name)
        for partition in range(record.num_partitions):
            self.logs.delete_partition(name, partition)
            self.fetch_purgatory.notify((name, partition))
        log.info("deleted topic %s", name)

    def add_partitions(self, name: str, count: int) -> None:
        record = self.metadata.get_topic(name)
        if record is None:
            raise ApiError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        if count <= record.num_partitions:
            raise ApiError(
                ErrorCode.INVALID_PARTITIONS,
                f"Topic currently has {record.num_partitions} partitions, which is higher than "
                f"or equal to the requested {count}.",
            )
        if self.cluster is not None:
            zk = self.cluster.metadata
            self.cluster.start_write(name, lambda: zk.add_partitions(name, count))
            return
        assert isinstance(self.metadata, LocalMetadata)
        old = record.num_partitions
        self._create_logs(name, range(old, count), record.topic_id)
        try:
            self.metadata.set_partition_count(name, count)
        except OSError as exc:
            for partition in range(old, count):
                self.logs.delete_partition(name, partition)
            raise self.storage_failure(f"adding partitions to {name}", exc) from exc

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        """Replace a topic's overrides (already validated) and apply them to its logs."""
        if self.cluster is not None:
            zk = self.cluster.metadata
            self.cluster.start_write(name, lambda: zk.set_topic_configs(name, configs))
            return
        assert isinstance(self.metadata, LocalMetadata)
        self.metadata.set_topic_configs(name, configs)
        self.logs.update_config(name, self.log_config(name))

    def set_group_configs(self, group_id: str, configs: dict[str, str]) -> None:
        """Replace a group's configs (already validated). In cluster mode they go to ZooKeeper
        (/config/groups/<group>) and every broker reads them from its watch."""
        if self.cluster is not None:
            zk = self.cluster.metadata
            self.cluster.start_write(
                group_config_write_name(group_id), lambda: zk.set_group_configs(group_id, configs)
            )
            return
        assert isinstance(self.metadata, LocalMetadata)
        self.metadata.set_group_configs(group_id, configs)

    def set_dynamic_broker_configs(self, broker_id: int | None, configs: dict[str, str]) -> None:
        """Replace the dynamic values of this broker (its id) or of the cluster-wide defaults
        (None), already validated; persist them and apply them to the config and every log.
        In cluster mode they go to ZooKeeper, and every broker concerned applies them from
        its watch (`apply_dynamic_broker_configs`)."""
        stored = encode_passwords(configs, self.config)
        if self.cluster is not None:
            zk = self.cluster.metadata
            self.cluster.start_write(
                broker_config_write_name(broker_id),
                lambda: zk.set_dynamic_broker_configs(broker_id, stored),
            )
            return
        assert isinstance(self.metadata, LocalMetadata)
        if broker_id is None:
            updated = self.config.with_dynamic(cluster_default=configs)
        else:
            updated = self.config.with_dynamic(per_broker=configs)
        self.metadata.set_dynamic_broker_configs(broker_id, stored)
        self._use_config(updated)

    def apply_dynamic_broker_configs(
        self, per_broker: dict[str, str], default: dict[str, str]
    ) -> None:
        """Cluster mode: the dynamic configs in ZooKeeper changed. Values this version cannot
        take (written by another tool) are refused whole, with a log line."""
        try:
            updated = self.config.with_dynamic(
                per_broker=decode_passwords(per_broker, self.config),
                cluster_default=decode_passwords(default, self.config),
            )
        except ConfigError as exc:
            log.error("ignoring dynamic broker configs from ZooKeeper: %s", exc)
            return
        self._use_config(updated)

    # -- SCRAM users -------------------------------------------------------------------------

    def scram_users(self) -> dict[str, dict[str, str]]:
        """User -> SCRAM mechanism -> credential in Kafka's form (salted and hashed)."""
        return {
            user: {m: v for m, v in config.items() if m in SCRAM_MECHANISMS}
            for user, config in self.metadata.users.items()
        }

    def scram_credential(self, user: str, mechanism: str) -> ScramCredential | None:
        text = self.metadata.users.get(user, {}).get(mechanism)
        if text is None:
            return None
        try:
            return ScramCredential.from_kafka(text)
        except ValueError as exc:
            log.error("ignoring the %s credential of user %s: %s", mechanism, user, exc)
            return None

    def set_scram_users(
        self, changed: dict[str, dict[str, str]]
    ) -> dict[str, tuple[ErrorCode, str]] | Awaitable[dict[str, tuple[ErrorCode, str]]]:
        """Replaces the SCRAM credentials of these users (user -> mechanism -> credential;
        the user's other config entries stay). Single broker: written to the metadata file at
        once; cluster mode: to /config/users/<user> in ZooKeeper, answered once this broker's
        watch has it. Returns the users that failed, with the error to answer."""

        def merged(user: str) -> dict[str, str]:
            config = {
                k: v
                for k, v in self.metadata.users.get(user, {}).items()
                if k not in SCRAM_MECHANISMS
            }
            config.update(changed[user])
            return config

        metadata = self.metadata
        if isinstance(metadata, LocalMetadata):
            for user in changed:
                metadata.set_user_config(user, merged(user))
            return {}
        cluster = self.cluster
        assert cluster is not None
        names = {}
        for user in changed:
            config = merged(user)
            name = f"user:{user}"
            names[name] = user
            cluster.start_write(
                name,
                lambda u=user, c=config: metadata.set_user_config(u, c),  # type: ignore[misc]
            )

        async def settle() -> dict[str, tuple[ErrorCode, str]]:
            errors = await cluster.settle(set(names))
            return {names[n]: (e.code, e.message or e.code.name) for n, e in errors.items()}

        return settle()

    def check_reconfiguration(self, updated: BrokerConfig) -> None:
        """Raises ConfigError when a dynamic change cannot be applied (a key store that does
        not load, a certificate whose name changed)."""
        for part in self.reconfigurables:
            part.check(updated)

    def _use_config(self, updated: BrokerConfig) -> None:
        old, self.config = self.config, updated
        changed = [
            key
            for new_layer, old_layer in (
                (updated.dynamic_broker_configs, old.dynamic_broker_configs),
                (updated.dynamic_default_configs, old.dynamic_default_configs),
            )
            for key, value in new_layer.items()
            if old_layer.get(key) != value
        ]
        log_no_effect(changed)
        if updated.producer_id_expiration_ms != old.producer_id_expiration_ms:
            self.logs.set_producer_id_expiration(updated.producer_id_expiration_ms)
        for part in self.reconfigurables:
            part.reconfigure(updated)
        for name in self.metadata.topics:
            self.logs.update_config(name, self.log_config(name))

    def data_dirs(self) -> list[Path]:
        return list(self.config.log_dirs)

    # -- log directories (JBOD) -------------------------------------------------------------

    def missing_log_error(self, topic: str, partition: int) -> ErrorCode:
        """Why a partition has no log here: its log dir is offline or its log cannot be
        opened now (KAFKA_STORAGE_ERROR), or this broker does not have it
        (UNKNOWN_TOPIC_OR_PARTITION)."""
        if self.logs.is_unavailable(topic, partition):
            return ErrorCode.KAFKA_STORAGE_ERROR
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION

    def handle_log_dir_failure(self, log_dir: Path, reason: str) -> None:
        """A log dir failed (I/O error): take it offline and stop serving its partitions;
        the other directories go on. With none left the broker halts, as Kafka does, and on a
        single broker also when it is the first one (which holds the topic metadata)."""
        offline = self.logs.take_offline(log_dir, reason)
        if not self.logs.live_log_dirs:
            self._halt(
                "Shutdown broker because all log dirs in "
                f"{', '.join(map(str, self.logs.log_dirs))} have failed"
            )
        if self.cluster is None and log_dir == self.logs.log_dirs[0]:
            # It holds strom-metadata.json: as Kafka's metadata log dir, it cannot be lost.
            self._halt(f"Shutdown broker because the metadata log dir {log_dir} has failed")
        for topic, partition in offline:
            if self.cluster is None and topic == OFFSETS_TOPIC:
                self.groups.resign(partition)
            elif self.cluster is None and topic == TRANSACTION_STATE_TOPIC:
                self.txns.resign(partition)
            self.fetch_purgatory.notify((topic, partition))
            self.produce_purgatory.notify((topic, partition))
        if self.cluster is not None:
            self.cluster.log_dir_failed(log_dir, offline)

    @staticmethod
    def _halt(message: str) -> None:
        """Stop at once, as Kafka's Exit.halt: nothing more is written anywhere."""
        log.critical("%s", message)
        logging.shutdown()
        os._exit(1)

    def _alter_log_dirs_rate(self) -> int:
        """replica.alter.log.dirs.io.max.bytes.per.second: a dynamic-only key (as Kafka's, it
        is read from this broker's dynamic configs, then the cluster-wide default)."""
        for layer in (self.config.dynamic_broker_configs, self.config.dynamic_default_configs):
            value = layer.get(ALTER_LOG_DIRS_RATE)
            if value is not None:
                rate = DYNAMIC_ONLY[ALTER_LOG_DIRS_RATE].parse(value, None)
                if isinstance(rate, int):
                    return rate
        return UNTHROTTLED

    def _replica_moved(self, key: tuple[str, int]) -> None:
        self.fetch_purgatory.notify(key)


async def open_cluster_broker(config: BrokerConfig) -> Broker:
    """Cluster mode: connect to ZooKeeper, read the cluster, open the logs (blocking part in a
    thread). The ZooKeeper client is imported here so that a single broker never loads it."""
    from strom.cluster.ids import new_cluster_id
    from strom.cluster.zk.client import ZkClient
    from strom.cluster.zk_metadata import ZkMetadata
    from strom.runtime.cluster_runtime import ClusterRuntime

    assert config.zookeeper_connect
    client = ZkClient(
        config.zookeeper_connect,
        session_timeout_ms=config.get_int("zookeeper.session.timeout.ms"),
        connection_timeout_ms=config.get("zookeeper.connection.timeout.ms"),  # type: ignore[arg-type]
    )
    await client.start()
    try:
        metadata = ZkMetadata(client, config.broker_id)
        await metadata.start(new_cluster_id())
        await metadata.load()
        try:
            config = config.with_dynamic(
                decode_passwords(metadata.dynamic_configs_for(config.broker_id), config),
                decode_passwords(metadata.dynamic_configs_for(None), config),
            )
        except ConfigError as exc:
            log.error("ignoring dynamic broker configs from ZooKeeper: %s", exc)
        loop = asyncio.get_running_loop()
        broker = await loop.run_in_executor(None, Broker.open_cluster, config, metadata)
        broker.cluster = ClusterRuntime(broker, client, metadata)
        broker.reconfigurables.append(InterBrokerSecurityReload(broker.cluster.replicas.security))
        if broker.authorizer is not None:
            from strom.cluster.zk.acl_store import ZkAclStore

            broker.acls = await AclRuntime.open_zk(
                broker.authorizer, ZkAclStore(client), client.connection_timeout_ms / 1000
            )
        from strom.cluster.zk.quota_store import ZkQuotaStore

        broker.quotas = await QuotaRuntime.open_zk(
            config, ZkQuotaStore(client), client.connection_timeout_ms / 1000
        )
        return broker
    except BaseException:
        await client.close()
        raise
