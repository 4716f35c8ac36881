"""The group coordinator's runtime: the I/O around the I/O-free coordinator shards.

`__consumer_offsets` has offsets.topic.num.partitions partitions; a group belongs to the
partition `abs(java_hash(group_id)) % partitions` (Kafka's placement, so a Strom data directory
and Kafka agree), and each partition has one `GroupCoordinatorShard`. The runtime:
- creates `__consumer_offsets` on first use (FindCoordinator, as Kafka does),
- loads a shard by replaying every record of its partition at start-up (in cluster mode: when
  this broker becomes the partition's leader, and unloads it when it stops leading it; the
  requests for a partition led elsewhere answer NOT_COORDINATOR),
- appends the records a shard handler returns as one batch, then replays them into the shard
  before anything else runs (the event loop is the shard's only writer), and
- keeps one timer per shard at the shard's next deadline (session and rebalance timeouts,
  the initial rebalance delay, offset expiry), driven by the broker's clock.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from strom.coordinator.group.config import GroupConfig
from strom.coordinator.group.records import CoordinatorRecord
from strom.coordinator.group.shard import GroupCoordinatorShard
from strom.protocol.errors import ErrorCode
from strom.protocol.records.control import CONTROL_ABORT, CONTROL_COMMIT, parse_control_record
from strom.runtime.coordinator_runtime import CoordinatorRuntime
from strom.runtime.errors import ApiError
from strom.runtime.internal_topic import append_records, read_batches, replay_end

if TYPE_CHECKING:
    from strom.runtime.host import BrokerHost

log = logging.getLogger("strom.groups")

OFFSETS_TOPIC = "__consumer_offsets"
T = TypeVar("T")


# group.consumer.assignors names Kafka's assignors by class; Strom's have the short names that
# Kafka's later versions also accept.
_ASSIGNOR_CLASSES = {
    "org.apache.kafka.coordinator.group.assignor.UniformAssignor": "uniform",
    "org.apache.kafka.coordinator.group.assignor.RangeAssignor": "range",
}


def consumer_assignors(configured: list[str] | None) -> tuple[str, ...]:
    names = tuple(_ASSIGNOR_CLASSES.get(n, n) for n in configured or ())
    return names or ("uniform",)


def group_config(broker: BrokerHost) -> GroupConfig:
    cfg = broker.config
    return GroupConfig(
        initial_rebalance_delay_ms=cfg.get_int("group.initial.rebalance.delay.ms"),
        min_session_timeout_ms=cfg.get_int("group.min.session.timeout.ms"),
        max_session_timeout_ms=cfg.get_int("group.max.session.timeout.ms"),
        max_size=cfg.get_int("group.max.size"),
        offsets_retention_ms=cfg.get_int("offsets.retention.minutes") * 60_000,
        offsets_retention_check_interval_ms=cfg.get_int("offsets.retention.check.interval.ms"),
        consumer_session_timeout_ms=cfg.get_int("group.consumer.session.timeout.ms"),
        consumer_heartbeat_interval_ms=cfg.get_int("group.consumer.heartbeat.interval.ms"),
        consumer_assignors=consumer_assignors(cfg.get_list("group.consumer.assignors")),
        consumer_max_size=cfg.get_int("group.consumer.max.size"),
        offset_metadata_max_bytes=cfg.get_int("offset.metadata.max.bytes"),
        share_session_timeout_ms=cfg.get_int("group.share.session.timeout.ms"),
        share_heartbeat_interval_ms=cfg.get_int("group.share.heartbeat.interval.ms"),
        share_max_size=cfg.get_int("group.share.max.size"),
    )


class BrokerTopics:
    """The coordinator's read-only view of topic metadata."""

    def __init__(self, broker: BrokerHost) -> None:
        self._broker = broker

    def partitions_of(self, topic: str) -> int | None:
        record = self._broker.metadata.get_topic(topic)
        return record.num_partitions if record is not None else None

    def topic_id_of(self, topic: str) -> uuid.UUID | None:
        record = self._broker.metadata.get_topic(topic)
        return record.topic_id if record is not None else None

    def topic_names(self) -> list[str]:
        return sorted(self._broker.metadata.topics)


class GroupCoordinatorRuntime(CoordinatorRuntime[GroupCoordinatorShard]):
    TOPIC = OFFSETS_TOPIC
    PARTITIONS_KEY = "offsets.topic.num.partitions"
    REPLICATION_KEY = "offsets.topic.replication.factor"
    KEYS = "groups"
    WRITE_TIMEOUT_KEY = "offsets.commit.timeout.ms"
    log = log

    def __init__(self, broker: BrokerHost) -> None:
        super().__init__(broker)
        self.config = group_config(broker)
        self.topics = BrokerTopics(broker)

    def _new_shard(self, partition: int) -> GroupCoordinatorShard:
        return GroupCoordinatorShard(partition, self.config, self.broker.clock, self.topics)

    def _replay_log(self, partition: int, shard: GroupCoordinatorShard) -> int:
        partition_log = self.broker.partition_log(OFFSETS_TOPIC, partition)
        if partition_log is None:
            return 0
        count = 0
        for header, records in read_batches(partition_log, replay_end(self.broker, partition_log)):
            if header.is_control:
                # A transaction marker: settles the producer's pending offsets.
                for rec in records:
                    kind, _ = parse_control_record(rec)
                    if kind in (CONTROL_COMMIT, CONTROL_ABORT) and header.producer_id >= 0:
                        shard.replay_end_transaction_marker(
                            header.producer_id, kind == CONTROL_COMMIT
                        )
                continue
            producer_id = header.producer_id if header.is_transactional else -1
            for rec in records:
                if rec.key is not None:
                    shard.replay(CoordinatorRecord(rec.key, rec.value), producer_id)
                    count += 1
        return count

    def _topic_configs(self, clustered: bool) -> dict[str, str]:
        return {
            "cleanup.policy": "compact",
            "segment.bytes": str(self.broker.config.get_int("offsets.topic.segment.bytes")),
        }

    # -- running handlers -------------------------------------------------------------------

    def run_transactional(
        self,
        group_id: str,
        producer_id: int,
        producer_epoch: int,
        call: Callable[[GroupCoordinatorShard], tuple[T, list[CoordinatorRecord]]],
        on_error: Callable[[ErrorCode], T],
    ) -> T | Awaitable[T]:
        """Run TxnOffsetCommit: its records go out as a transactional batch of the producer,
        pending until the transaction's marker (`write_marker`). Raises StorageError when the
        partition's producer state refuses the batch."""
        try:
            partition, shard = self.shard_for(group_id)
            result, records = call(shard)
            self.write(partition, records, (producer_id, producer_epoch))
        except ApiError as exc:
            return on_error(exc.code)
        return self.answer_when_committed(partition, result, on_error)

    def write_marker(
        self,
        partition: int,
        producer_id: int,
        producer_epoch: int,
        coordinator_epoch: int,
        commit: bool,
    ) -> int | None:
        """Append a transaction's COMMIT/ABORT marker (for the transaction coordinator, or a
        WriteTxnMarkers request) and replay it: the producer's pending transactional offsets
        are committed or dropped. Returns the log end offset after it; None when the
        partition does not exist here. The caller checks leadership (cluster mode); raises
        ProducerStateError when the partition refuses the marker."""
        partition_log = self.broker.partition_log(OFFSETS_TOPIC, partition)
        if partition_log is None:
            return None
        now = self.broker.clock.now_ms()
        partition_log.append_marker(
            producer_id,
            producer_epoch,
            coordinator_epoch,
            commit,
            self.broker.leader_epoch(OFFSETS_TOPIC, partition),
            now,
        )
        end = partition_log.log_end_offset
        self.broker.after_append(OFFSETS_TOPIC, partition)
        shard = self.shards.get(partition)
        if shard is not None:
            shard.replay_end_transaction_marker(producer_id, commit)
            self.appended(partition, end)
        return end

    def write(
        self,
        partition: int,
        records: list[CoordinatorRecord],
        producer: tuple[int, int] | None = None,
    ) -> None:
        """Append `records` as one batch and replay them; `producer` (id, epoch) makes the
        batch transactional (TxnOffsetCommit)."""
        shard = self.shards[partition]
        if records:
            end = append_records(
                self.broker, OFFSETS_TOPIC, partition, [(r.key, r.value) for r in records], producer
            )
            self.appended(partition, end)
            producer_id = producer[0] if producer is not None else -1
            for record in records:
                shard.replay(record, producer_id)
        self._schedule(partition)

    # -- timers -----------------------------------------------------------------------------

    def _fire(self, partition: int) -> None:
        shard = self.shards.get(partition)
        if shard is None:
            return
        try:
            # tick() returns after the first timer that produced records, so those records
            # are replayed before the next due timer looks at the state.
            for _ in range(10_000):
                records = shard.tick()
                self.write(partition, records)
                deadline = shard.next_deadline_ms()
                if not records or deadline is None or deadline > self.broker.clock.now_ms():
                    break
        except Exception:
            log.exception("group coordinator timer failed on partition %d", partition)
        self._schedule(partition)

    def start(self) -> None:
        """Arm the timers of the loaded shards once the event loop runs (session timeouts of
        members loaded from the log, offset expiry)."""
        for partition in self.shards:
            self._schedule(partition)
