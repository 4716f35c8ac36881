"""The broker's topic administration: creating topics (CreateTopics, auto-creation, the
internal topics on first use), deleting them, adding partitions, replacing a topic's config
overrides, and making the logs on disk match the topics at start-up. On a single broker this
writes the metadata file and the logs at once; in cluster mode it starts the ZooKeeper write
(`ClusterRuntime.start_write`) and the watches do the rest.

A part of `Broker` (strom.server.broker): the attributes declared here are the broker's."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from strom.cluster.local_metadata import LocalMetadata, TopicRecord
from strom.cluster.topic_names import INTERNAL_TOPICS, validate_topic_name
from strom.config import BrokerConfig, ConfigError, log_config_for, validate_topic_configs
from strom.protocol.errors import ErrorCode
from strom.runtime.errors import ApiError
from strom.storage.errors import KafkaStorageError
from strom.storage.log_config import LogConfig

if TYPE_CHECKING:
    from strom.runtime.cluster_runtime import ClusterRuntime
    from strom.runtime.host import Metadata
    from strom.runtime.purgatory import Purgatory
    from strom.server.disk_io import DiskWork
    from strom.storage.log_manager import LogManager

log = logging.getLogger("strom.broker")

ZERO_UUID = uuid.UUID(int=0)


class TopicAdmin:
    config: BrokerConfig
    metadata: Metadata
    logs: LogManager
    cluster: ClusterRuntime | None
    fetch_purgatory: Purgatory
    disk: DiskWork

    if TYPE_CHECKING:

        def live_broker_ids(self) -> list[int]: ...

    def log_config(self, topic: str) -> LogConfig:
        record = self.metadata.get_topic(topic)
        return log_config_for(record.configs if record else {}, self.config)

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
        *,
        logs_later: bool = False,
    ) -> TopicRecord:
        """Create a topic; `replicas` (a manual assignment) only matters in cluster mode.
        `logs_later`: a single broker only records the topic, its partitions pending, and the
        caller creates their logs off the event loop (server/log_creation.py)."""
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
            raise self.disk.storage_failure(f"creating topic {name}", exc) from exc
        if logs_later:
            for partition in range(num_partitions):
                self.logs.pending[(name, partition)] = record.topic_id
            return record
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

    def remove_created_logs(self, topic: str, partitions: list[int]) -> None:
        """Remove logs just created for a request that fails."""
        for partition in partitions:
            try:
                self.logs.delete_partition(topic, partition)
            except OSError as again:
                log.error("could not remove %s-%d again: %s", topic, partition, again)

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
            self.remove_created_logs(topic, created)
            doing = f"creating {len(partitions)} partition(s) of {topic}"
            if isinstance(exc, KafkaStorageError):  # every log dir is offline
                raise ApiError(ErrorCode.KAFKA_STORAGE_ERROR, f"{doing} failed: {exc}") from exc
            raise self.disk.storage_failure(doing, exc) from exc

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
            raise self.disk.storage_failure(f"adding partitions to {name}", exc) from exc

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        """Replace a topic's overrides (already validated) and apply them to its logs."""
        if self.cluster is not None:
            zk = self.cluster.metadata
            self.cluster.start_write(name, lambda: zk.set_topic_configs(name, configs))
            return
        assert isinstance(self.metadata, LocalMetadata)
        self.metadata.set_topic_configs(name, configs)
        self.logs.update_config(name, self.log_config(name))
