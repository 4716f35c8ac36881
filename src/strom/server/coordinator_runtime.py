"""What the group and transaction coordinator runtimes have in common.

Each coordinates the keys (group ids, transactional ids) placed on the partitions of one
internal topic, with one I/O-free shard per partition that this broker leads. The shared part:
placement, creating the topic on first use, loading a shard by replaying its partition (at
start-up, or in cluster mode when this broker becomes the partition's leader), dropping it when
another broker leads, routing a key to its shard, and one timer per shard at its next deadline.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

from strom.protocol.errors import ErrorCode
from strom.server.errors import ApiError
from strom.server.internal_topic import ShardTimers

if TYPE_CHECKING:
    from strom.server.broker import Broker


class Shard(Protocol):
    def next_deadline_ms(self) -> int | None: ...

    def unload(self) -> None: ...


ShardT = TypeVar("ShardT", bound=Shard)


def java_string_hash(text: str) -> int:
    """Java's String.hashCode (over UTF-16 code units), as a signed 32-bit int."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(key: str, partitions: int) -> int:
    """Kafka's placement of a group (or transactional id) on its internal topic."""
    h = java_string_hash(key)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


class CoordinatorRuntime(Generic[ShardT]):
    TOPIC: ClassVar[str]
    PARTITIONS_KEY: ClassVar[str]  # the broker config giving the topic's partition count
    REPLICATION_KEY: ClassVar[str]  # ... and its replication factor
    KEYS: ClassVar[str]  # what a shard coordinates, for log lines ("groups")
    log: ClassVar[logging.Logger]

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.shards: dict[int, ShardT] = {}
        self._timers = ShardTimers(broker.clock, self._fire)

    # -- what each runtime defines ----------------------------------------------------------

    def _new_shard(self, partition: int) -> ShardT:
        raise NotImplementedError

    def _replay_log(self, partition: int, shard: ShardT) -> int:
        """Replay the partition into the shard; returns how many records it replayed."""
        raise NotImplementedError

    def _topic_configs(self, clustered: bool) -> dict[str, str]:
        raise NotImplementedError

    def _fire(self, partition: int) -> None:
        raise NotImplementedError

    def _loaded(self, partition: int) -> None:
        """Called once a shard is loaded and in place (hook)."""

    def _dropping(self, partition: int) -> None:
        """Called before a shard is dropped (hook)."""

    # -- placement --------------------------------------------------------------------------

    @property
    def num_partitions(self) -> int:
        record = self.broker.metadata.get_topic(self.TOPIC)
        if record is not None:
            return record.num_partitions
        return self.broker.config.get_int(self.PARTITIONS_KEY)

    def partition_for(self, key: str) -> int:
        return partition_for(key, self.num_partitions)

    # -- loading and leadership -------------------------------------------------------------

    def load(self) -> None:
        """Replay every existing partition of the topic into a fresh shard (single broker)."""
        record = self.broker.metadata.get_topic(self.TOPIC)
        if record is None:
            return
        loaded = 0
        for partition in range(record.num_partitions):
            shard = self._new_shard(partition)
            loaded += self._replay_log(partition, shard)
            self.shards[partition] = shard
        self.log.info("loaded %d record(s) from %s", loaded, self.TOPIC)
        for partition in self.shards:
            self._loaded(partition)

    def become_leader(self, partition: int) -> None:
        """Cluster mode: this broker now leads the partition, so it coordinates its keys;
        load the shard from the partition (a no-op when it is loaded already)."""
        if partition in self.shards:
            return
        shard = self._new_shard(partition)
        loaded = self._replay_log(partition, shard)
        self.shards[partition] = shard
        self.log.info(
            "coordinating the %s of %s-%d (%d record(s) loaded)",
            self.KEYS,
            self.TOPIC,
            partition,
            loaded,
        )
        self._loaded(partition)
        self._schedule(partition)

    def resign(self, partition: int) -> None:
        """Cluster mode: another broker leads the partition now; drop the shard (its waiting
        requests are answered NOT_COORDINATOR)."""
        self._timers.schedule(partition, None)
        self._dropping(partition)
        shard = self.shards.pop(partition, None)
        if shard is not None:
            shard.unload()
            self.log.info(
                "no longer coordinating the %s of %s-%d", self.KEYS, self.TOPIC, partition
            )

    def ensure_topic(self) -> None:
        """Create the topic the first time a key needs it."""
        if self.broker.metadata.get_topic(self.TOPIC) is not None:
            return
        cfg = self.broker.config
        replication_factor = cfg.get_int(self.REPLICATION_KEY)
        cluster = self.broker.cluster
        if cluster is not None:
            # The shards come with the partitions' leaderships (`become_leader`).
            cluster.create_internal_topic(
                self.TOPIC,
                cfg.get_int(self.PARTITIONS_KEY),
                replication_factor,
                self._topic_configs(clustered=True),
            )
            return
        self.broker.create_internal_topic(
            self.TOPIC,
            cfg.get_int(self.PARTITIONS_KEY),
            min(replication_factor, 1),
            self._topic_configs(clustered=False),
        )
        for partition in range(self.num_partitions):
            self.shards[partition] = self._new_shard(partition)
            self._schedule(partition)

    def shard_for(self, key: str) -> tuple[int, ShardT]:
        if self.broker.metadata.get_topic(self.TOPIC) is None:
            self.ensure_topic()
            if self.broker.cluster is not None:
                raise ApiError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        partition = self.partition_for(key)
        shard = self.shards.get(partition)
        if shard is None:
            if self.broker.cluster is not None:
                # Cluster mode: the partition's leader coordinates the key.
                raise ApiError(ErrorCode.NOT_COORDINATOR)
            raise ApiError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        return partition, shard

    # -- timers and shutdown ----------------------------------------------------------------

    def _schedule(self, partition: int) -> None:
        shard = self.shards.get(partition)
        self._timers.schedule(partition, shard.next_deadline_ms() if shard is not None else None)

    def close(self) -> None:
        self._timers.clear()
        for partition in list(self.shards):
            self._dropping(partition)
        for shard in self.shards.values():
            shard.unload()
