"""ShareGroupStatePartitionMetadata (record type 15 of `__consumer_offsets`): which share
partitions of a share group have share-partition state with the share coordinator.

As in Kafka's group coordinator, a share group is assigned only partitions whose state is
initialized. A heartbeat that finds subscribed partitions with no state writes them as
*initializing* and hands the runtime an `Initialization`: it sends InitializeShareGroupState
for them (state epoch = the group epoch; start offset -1, chosen by the share partition leader
with share.auto.offset.reset, for a topic the group has not seen, 0 for partitions added to a
topic it reads) and, once the share coordinator has them, writes them as *initialized*
(`initialized`), or takes them out of initializing when it failed (`uninitialized`). A later
heartbeat sees assignable partitions the target assignment does not cover and assigns
again. Partitions left initializing longer than INITIALIZE_RETRY_MS (a coordinator that failed
over meanwhile) are initialized again. Deleting a topic's offsets removes it
(`without_topics`), so the group starts it again.

The record's value holds the topic names and partition lists only; the time a topic started
initializing is that of the replay, as in Kafka.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from strom.coordinator.group.generated.share_group_state_partition_metadata_key import (
    ShareGroupStatePartitionMetadataKey,
)
from strom.coordinator.group.generated.share_group_state_partition_metadata_value import (
    ShareGroupStatePartitionMetadataValue,
    TopicInfo,
    TopicPartitionsInfo,
)
from strom.coordinator.group.records import CoordinatorRecord, encode_record

__all__ = [
    "INITIALIZE_RETRY_MS",
    "STATE_PARTITION_METADATA",
    "Initialization",
    "StatePartitions",
    "TopicInit",
]

STATE_PARTITION_METADATA = 15
# Kafka's group.share.initialize.retry.interval.ms default (not a Kafka 3.9 key).
INITIALIZE_RETRY_MS = 30_000


@dataclass(frozen=True)
class TopicInit:
    name: str
    partitions: frozenset[int]
    timestamp: int = 0


@dataclass(frozen=True)
class Initialization:
    """The InitializeShareGroupState the runtime sends after a heartbeat."""

    group_id: str
    state_epoch: int
    partitions: tuple[tuple[uuid.UUID, int, int], ...]  # topic id, partition, start offset

    def topics(self) -> dict[uuid.UUID, frozenset[int]]:
        out: dict[uuid.UUID, set[int]] = {}
        for topic_id, partition, _ in self.partitions:
            out.setdefault(topic_id, set()).add(partition)
        return {t: frozenset(ps) for t, ps in out.items()}


@dataclass(frozen=True)
class StatePartitions:
    initializing: dict[uuid.UUID, TopicInit] = field(default_factory=dict)
    initialized: dict[uuid.UUID, TopicInit] = field(default_factory=dict)
    deleting: dict[uuid.UUID, str] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.initializing or self.initialized or self.deleting)

    def assignable(self, topic_id: uuid.UUID, count: int) -> list[int]:
        """The initialized partitions of a topic that (still) exist."""
        found = self.initialized.get(topic_id)
        return sorted(p for p in found.partitions if p < count) if found is not None else []

    def known(self) -> dict[uuid.UUID, frozenset[int]]:
        """Every partition with state or being given state (what deleting the group deletes)."""
        out: dict[uuid.UUID, frozenset[int]] = {}
        for entries in (self.initialized, self.initializing):
            for topic_id, init in entries.items():
                out[topic_id] = out.get(topic_id, frozenset()) | init.partitions
        return out

    # -- changes (each returns the new value; the caller writes its record) -----------------

    def to_initialize(
        self, topics: dict[str, tuple[uuid.UUID, int]], now_ms: int
    ) -> dict[uuid.UUID, TopicInit]:
        """Subscribed partitions neither initialized nor initializing recently."""
        out: dict[uuid.UUID, TopicInit] = {}
        for name, (topic_id, count) in sorted(topics.items()):
            done: set[int] = set()
            if topic_id in self.initialized:
                done |= self.initialized[topic_id].partitions
            pending = self.initializing.get(topic_id)
            if pending is not None and now_ms - pending.timestamp < INITIALIZE_RETRY_MS:
                done |= pending.partitions
            wanted = frozenset(range(count)) - done
            if wanted:
                out[topic_id] = TopicInit(name, wanted, now_ms)
        return out

    def start_offset(self, topic_id: uuid.UUID) -> int:
        """Where a partition being initialized starts: 0 when the group already reads the
        topic (a partition added to it), else -1 (share.auto.offset.reset decides)."""
        return 0 if topic_id in self.initialized or topic_id in self.initializing else -1

    def with_initializing(self, new: dict[uuid.UUID, TopicInit]) -> StatePartitions:
        initializing = dict(self.initializing)
        for topic_id, init in new.items():
            old = initializing.get(topic_id)
            parts = init.partitions | (old.partitions if old is not None else frozenset())
            initializing[topic_id] = TopicInit(init.name, parts, init.timestamp)
        deleting = {t: n for t, n in self.deleting.items() if t not in new}
        return StatePartitions(initializing, dict(self.initialized), deleting)

    def with_initialized(
        self, done: dict[uuid.UUID, frozenset[int]], names: dict[uuid.UUID, str]
    ) -> StatePartitions:
        initialized = dict(self.initialized)
        initializing = dict(self.initializing)
        for topic_id, parts in done.items():
            old = initialized.get(topic_id)
            name = old.name if old is not None else names.get(topic_id, "<UNKNOWN>")
            initialized[topic_id] = TopicInit(
                name, parts | (old.partitions if old is not None else frozenset())
            )
            pending = initializing.get(topic_id)
            if pending is not None:
                left = pending.partitions - parts
                if left:
                    initializing[topic_id] = TopicInit(pending.name, left, pending.timestamp)
                else:
                    del initializing[topic_id]
        return StatePartitions(initializing, initialized, dict(self.deleting))

    def without_initializing(self, failed: dict[uuid.UUID, frozenset[int]]) -> StatePartitions:
        initializing = dict(self.initializing)
        for topic_id, parts in failed.items():
            pending = initializing.get(topic_id)
            if pending is None:
                continue
            left = pending.partitions - parts
            if left:
                initializing[topic_id] = TopicInit(pending.name, left, pending.timestamp)
            else:
                del initializing[topic_id]
        return StatePartitions(initializing, dict(self.initialized), dict(self.deleting))

    def without_topics(self, topic_ids: set[uuid.UUID]) -> StatePartitions:
        return StatePartitions(
            {t: v for t, v in self.initializing.items() if t not in topic_ids},
            {t: v for t, v in self.initialized.items() if t not in topic_ids},
            {t: n for t, n in self.deleting.items() if t not in topic_ids},
        )


# -- the record --------------------------------------------------------------------------------


def _key(group_id: str) -> ShareGroupStatePartitionMetadataKey:
    return ShareGroupStatePartitionMetadataKey(group_id)


def _infos(entries: dict[uuid.UUID, TopicInit]) -> list[TopicPartitionsInfo]:
    return [
        TopicPartitionsInfo(topic_id, init.name, sorted(init.partitions))
        for topic_id, init in sorted(entries.items())
    ]


def state_partitions_record(group_id: str, state: StatePartitions) -> CoordinatorRecord:
    value = ShareGroupStatePartitionMetadataValue(
        initializing_topics=_infos(state.initializing),
        initialized_topics=_infos(state.initialized),
        deleting_topics=[TopicInfo(t, n) for t, n in sorted(state.deleting.items())],
    )
    return encode_record(STATE_PARTITION_METADATA, _key(group_id), 0, value)


def state_partitions_tombstone(group_id: str) -> CoordinatorRecord:
    return encode_record(STATE_PARTITION_METADATA, _key(group_id), 0, None)


def replay_state_partitions(
    value: ShareGroupStatePartitionMetadataValue | None, now_ms: int
) -> StatePartitions:
    if value is None:
        return StatePartitions()
    return StatePartitions(
        {
            t.topic_id: TopicInit(t.topic_name, frozenset(t.partitions), now_ms)
            for t in value.initializing_topics
        },
        {
            t.topic_id: TopicInit(t.topic_name, frozenset(t.partitions))
            for t in value.initialized_topics
        },
        {t.topic_id: t.topic_name for t in value.deleting_topics},
    )
