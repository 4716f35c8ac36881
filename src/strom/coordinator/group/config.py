"""Group coordinator settings and the view of topic metadata a shard is given."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol


@dataclass
class GroupConfig:
    """Broker settings that govern consumer groups, with Kafka's defaults.

    Names map to Kafka's properties: `initial_rebalance_delay_ms` is
    group.initial.rebalance.delay.ms, `min/max_session_timeout_ms` are
    group.min/max.session.timeout.ms, `max_size` is group.max.size,
    `offsets_retention_ms` is offsets.retention.minutes (in ms),
    `offsets_retention_check_interval_ms` is offsets.retention.check.interval.ms,
    `consumer_*` are the group.consumer.* settings of the KIP-848 protocol and
    `offset_metadata_max_bytes` is offset.metadata.max.bytes.
    """

    initial_rebalance_delay_ms: int = 3000
    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1_800_000
    max_size: int = 2**31 - 1
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000
    offsets_retention_check_interval_ms: int = 600_000
    consumer_session_timeout_ms: int = 45_000
    consumer_heartbeat_interval_ms: int = 5000
    consumer_assignors: tuple[str, ...] = ("uniform", "range")
    consumer_max_size: int = 2**31 - 1
    offset_metadata_max_bytes: int = 4096
    # group.share.session.timeout.ms, group.share.heartbeat.interval.ms, group.share.max.size
    share_session_timeout_ms: int = 45_000
    share_heartbeat_interval_ms: int = 5000
    share_max_size: int = 200
    # Kafka's group.classic.new.member.join.timeout (not a public property): a member that
    # joins for the first time is dropped if its JoinGroup stays parked this long.
    new_member_join_timeout_ms: int = 300_000


class TopicsView(Protocol):
    """What the coordinator may know about topics (answered by the broker's metadata)."""

    def partitions_of(self, topic: str) -> int | None:
        """Number of partitions, or None when the topic does not exist."""
        ...

    def topic_id_of(self, topic: str) -> uuid.UUID | None:
        """The topic's id, or None when the topic does not exist."""
        ...


class NoTopics:
    """A TopicsView that knows no topic (tests of the classic protocol need no metadata)."""

    def partitions_of(self, topic: str) -> int | None:
        return None

    def topic_id_of(self, topic: str) -> uuid.UUID | None:
        return None
