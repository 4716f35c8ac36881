"""The share coordinator's runtime: `__share_group_state` and its I/O-free shards.

The topic is created on first use with the partition count, replication factor and segment
size of `__consumer_offsets` (offsets.topic.*: Kafka 3.9's configuration has no
share.coordinator.state.topic.* keys; Kafka 4.x's defaults are the same 50 partitions), and is
compacted. A share partition's state lives on partition `abs(java_hash("group:topicId:p")) %
partitions`, Kafka's placement. In cluster mode a shard lives on the leader of its partition and
moves with it, as the group and transaction coordinators do (`CoordinatorRuntime`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from strom.coordinator.group.records import CoordinatorRecord
from strom.coordinator.share.coordinator import (
    UNINITIALIZED_START_OFFSET,
    Outcome,
    ShareCoordinatorShard,
    ShareState,
    StateKey,
    StateWrite,
    coordinator_key,
)
from strom.protocol.errors import ErrorCode
from strom.runtime.coordinator_runtime import CoordinatorRuntime
from strom.runtime.internal_topic import append_records, read_batches, replay_end

if TYPE_CHECKING:
    from strom.runtime.host import BrokerHost

log = logging.getLogger("strom.share")

SHARE_STATE_TOPIC = "__share_group_state"
# A summary of a share partition with no state (Kafka's PartitionFactory defaults).
_NO_STATE = ShareState(start_offset=UNINITIALIZED_START_OFFSET, leader_epoch=0)


class ShareCoordinatorRuntime(CoordinatorRuntime[ShareCoordinatorShard]):
    TOPIC = SHARE_STATE_TOPIC
    PARTITIONS_KEY = "offsets.topic.num.partitions"
    REPLICATION_KEY = "offsets.topic.replication.factor"
    KEYS = "share partitions"
    WRITE_TIMEOUT_KEY = "offsets.commit.timeout.ms"
    log = log

    def __init__(self, broker: BrokerHost) -> None:
        super().__init__(broker)

    def _new_shard(self, partition: int) -> ShareCoordinatorShard:
        return ShareCoordinatorShard(partition)

    def _replay_log(self, partition: int, shard: ShareCoordinatorShard) -> int:
        partition_log = self.broker.partition_log(SHARE_STATE_TOPIC, partition)
        if partition_log is None:
            return 0
        count = 0
        for header, records in read_batches(partition_log, replay_end(self.broker, partition_log)):
            if header.is_control:
                continue
            for rec in records:
                if rec.key is not None:
                    try:
                        shard.replay(CoordinatorRecord(rec.key, rec.value))
                    except Exception:  # a record of a future format: keep loading the rest
                        log.exception("unreadable record in %s-%d", SHARE_STATE_TOPIC, partition)
                        continue
                    count += 1
        return count

    def _topic_configs(self, clustered: bool) -> dict[str, str]:
        return {
            "cleanup.policy": "compact",
            "segment.bytes": str(self.broker.config.get_int("offsets.topic.segment.bytes")),
        }

    def _fire(self, partition: int) -> None:
        return None  # share coordinator shards have no timers

    def write(self, partition: int, records: list[CoordinatorRecord]) -> None:
        shard = self.shards[partition]
        if records:
            end = append_records(
                self.broker, SHARE_STATE_TOPIC, partition, [(r.key, r.value) for r in records]
            )
            self.appended(partition, end)
            for record in records:
                shard.replay(record)

    # -- the share-state operations (handlers of keys 83-87, and this broker's own share
    # partitions through the persister): each answers once its write is committed ----------

    def _checked(self, topic_id: uuid.UUID, partition: int) -> Outcome | None:
        """UNKNOWN_TOPIC_OR_PARTITION for a share partition that does not exist."""
        found = self.broker.metadata.topic_by_id(topic_id)
        if found is None or not 0 <= partition < found.record.num_partitions:
            return Outcome(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        return None

    def _operate(
        self,
        key: StateKey,
        call: Callable[[ShareCoordinatorShard], tuple[Outcome, list[CoordinatorRecord]]],
    ) -> Outcome | Awaitable[Outcome]:
        refused = self._checked(key[1], key[2])
        if refused is not None:
            return refused
        return self.run(coordinator_key(*key), call, lambda code: Outcome(code))

    def initialize(
        self, key: StateKey, state_epoch: int, start_offset: int
    ) -> Outcome | Awaitable[Outcome]:
        now = self.broker.clock.now_ms()
        return self._operate(key, lambda s: s.initialize(key, state_epoch, start_offset, now))

    def read(self, key: StateKey, leader_epoch: int) -> Outcome | Awaitable[Outcome]:
        now = self.broker.clock.now_ms()
        return self._operate(key, lambda s: s.read(key, leader_epoch, now))

    def write_state(self, key: StateKey, write: StateWrite) -> Outcome | Awaitable[Outcome]:
        now = self.broker.clock.now_ms()
        return self._operate(key, lambda s: s.write(key, write, now))

    def delete(self, key: StateKey) -> Outcome | Awaitable[Outcome]:
        return self._operate(key, lambda s: (Outcome(), s.delete(key)))

    def summary(self, key: StateKey) -> Outcome | Awaitable[Outcome]:
        return self._operate(key, lambda s: (Outcome(state=s.summary(key) or _NO_STATE), []))
