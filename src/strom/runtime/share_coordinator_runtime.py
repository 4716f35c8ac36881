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
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from strom.coordinator.group.records import CoordinatorRecord
from strom.coordinator.share.coordinator import (
    ShareCoordinatorShard,
    ShareState,
    coordinator_key,
)
from strom.coordinator.share.partition import StateBatch
from strom.protocol.errors import ErrorCode
from strom.runtime.coordinator_runtime import CoordinatorRuntime
from strom.runtime.errors import ApiError
from strom.runtime.internal_topic import append_records, read_batches, replay_end

if TYPE_CHECKING:
    from strom.runtime.host import BrokerHost

log = logging.getLogger("strom.share")

SHARE_STATE_TOPIC = "__share_group_state"


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

    # -- what the share partitions ask -----------------------------------------------------

    def read_state(
        self, group_id: str, topic_id: uuid.UUID, partition: int
    ) -> tuple[ErrorCode, ShareState | None]:
        """The persisted state; (error, None) when the coordinator is not here."""
        try:
            _, shard = self.shard_for(coordinator_key(group_id, topic_id, partition))
        except ApiError as exc:
            return exc.code, None
        return ErrorCode.NONE, shard.read_state(group_id, topic_id, partition)

    def write_state(
        self,
        group_id: str,
        topic_id: uuid.UUID,
        partition: int,
        start_offset: int,
        batches: list[StateBatch],
    ) -> ErrorCode | Awaitable[ErrorCode]:
        """Persist a share partition's state; answers once it is committed."""
        now = self.broker.clock.now_ms()
        return self.run(
            coordinator_key(group_id, topic_id, partition),
            lambda shard: (
                ErrorCode.NONE,
                shard.write_state(group_id, topic_id, partition, start_offset, batches, now),
            ),
            lambda code: code,
        )

    def delete_state(
        self, group_id: str, topic_id: uuid.UUID, partition: int
    ) -> ErrorCode | Awaitable[ErrorCode]:
        return self.run(
            coordinator_key(group_id, topic_id, partition),
            lambda shard: (ErrorCode.NONE, shard.delete_state(group_id, topic_id, partition)),
            lambda code: code,
        )

    def group_states(self, group_id: str) -> dict[tuple[uuid.UUID, int], ShareState]:
        """Every persisted share partition of a group held by this broker's shards."""
        out: dict[tuple[uuid.UUID, int], ShareState] = {}
        for shard in self.shards.values():
            out.update(shard.group_states(group_id))
        return out
