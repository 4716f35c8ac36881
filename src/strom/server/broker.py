"""The broker: configuration, topic metadata, partition logs, the purgatories and the runtimes
on top of them, together; how it opens (single broker: `Broker.open`; cluster mode:
strom.server.cluster_startup), starts its background work and closes.

Everything here runs on the event loop thread (one writer per partition, no locks); blocking
disk work that may take long (fsync) is handed to the `io` thread pool sized by num.io.threads
(strom.server.disk_io). The broker's request-side services each have a module of their own, of
which `Broker` is made: topic administration (topic_admin), dynamic configs
(dynamic_configs), SCRAM users (scram_users) and failed log directories (log_dir_failures);
its periodic jobs on the logs are in background_jobs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from strom.clock import Clock, SystemClock
from strom.cluster.features import SUPPORTED_FEATURES, check_compatible
from strom.cluster.local_metadata import LocalMetadata
from strom.cluster.local_security import LocalSecurityStore
from strom.config import BrokerConfig, decode_passwords, log_config_for
from strom.protocol.errors import ErrorCode
from strom.replication.alter_log_dirs import ReplicaAlterLogDirsManager
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
from strom.server.authz import authorizer_from_config
from strom.server.background_jobs import BackgroundJobs
from strom.server.disk_io import DiskWork
from strom.server.dynamic_configs import DynamicConfigs, Reconfigurable
from strom.server.fetch_session import FetchSessionCache
from strom.server.internal_produce import InternalProducer
from strom.server.log_dir_failures import LogDirFailures
from strom.server.memory_pool import UNLIMITED_RESPONSES, ResponseBudget
from strom.server.metrics import BrokerMetrics
from strom.server.scram_users import ScramUsers
from strom.server.topic_admin import TopicAdmin
from strom.storage.log_config import LogConfig
from strom.storage.log_manager import LogManager

if TYPE_CHECKING:
    from strom.cluster.zk_metadata import ZkMetadata
    from strom.runtime.cluster_runtime import ClusterRuntime
    from strom.runtime.host import Metadata
    from strom.storage.partition_log import PartitionLog

log = logging.getLogger("strom.broker")

# A single broker leads every partition; its leader epoch never changes.
SINGLE_NODE_LEADER_EPOCH = 0


class Broker(TopicAdmin, DynamicConfigs, ScramUsers, LogDirFailures):
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
        self.disk = DiskWork(logs, config.num_io_threads)
        self.io = self.disk.pool
        # One topic's logs are created at a time (server/log_creation.py).
        self.log_creation_lock = asyncio.Lock()
        self.node = self._advertised_node()
        # Listener name -> the port it is bound to (the registration needs the real ports).
        self.bound_ports: dict[str, int] = {}
        self.jobs = BackgroundJobs(logs, self.clock, self.disk)
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
        self.jobs.start(cfg)
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
        await self.jobs.stop()
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

    def after_append(
        self, topic: str, partition: int, partition_log: PartitionLog | None = None
    ) -> None:
        """After any append (produce, transaction marker): move the high watermark and, with it,
        the last stable offset, then wake the fetches waiting on the partition. One broker is
        the whole ISR, so its log end is the high watermark. In cluster mode the ISR decides
        (runtime/replica_manager.py). `partition_log`: the log appended to, when the caller
        has it at hand."""
        if self.cluster is not None:
            self.cluster.replicas.after_append(topic, partition)
            return
        if partition_log is None:
            partition_log = self.logs.get(topic, partition)
        if partition_log is not None:
            partition_log.update_high_watermark(partition_log.log_end_offset)
            self.fetch_purgatory.notify((topic, partition))

    def request_flush(self, partition_log: PartitionLog) -> None:
        self.disk.request_flush(partition_log)

    def storage_failure(
        self, doing: str, exc: OSError, where: PartitionLog | Path | None = None
    ) -> ApiError:
        return self.disk.storage_failure(doing, exc, where)

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
