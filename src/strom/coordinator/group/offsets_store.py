"""Committed offsets of every group of a shard, as replayed from OffsetCommit records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OffsetAndMetadata:
    offset: int
    leader_epoch: int  # -1 when unknown
    metadata: str
    commit_timestamp_ms: int
    # Set only by OffsetCommit v1 with a retention time (Kafka's old per-commit expiry).
    expire_timestamp_ms: int | None = None


class OffsetStore:
    """group -> topic -> partition -> offset. Empty maps are removed, so `groups()` lists
    exactly the groups that have at least one committed offset."""

    def __init__(self) -> None:
        self._by_group: dict[str, dict[str, dict[int, OffsetAndMetadata]]] = {}

    def get(self, group_id: str, topic: str, partition: int) -> OffsetAndMetadata | None:
        topics = self._by_group.get(group_id)
        if topics is None:
            return None
        partitions = topics.get(topic)
        return None if partitions is None else partitions.get(partition)

    def put(self, group_id: str, topic: str, partition: int, value: OffsetAndMetadata) -> None:
        self._by_group.setdefault(group_id, {}).setdefault(topic, {})[partition] = value

    def remove(self, group_id: str, topic: str, partition: int) -> bool:
        topics = self._by_group.get(group_id)
        if topics is None:
            return False
        partitions = topics.get(topic)
        if partitions is None or partition not in partitions:
            return False
        del partitions[partition]
        if not partitions:
            del topics[topic]
            if not topics:
                del self._by_group[group_id]
        return True

    def has_offsets(self, group_id: str) -> bool:
        return group_id in self._by_group

    def groups(self) -> list[str]:
        return list(self._by_group)

    def topics_of(self, group_id: str) -> dict[str, dict[int, OffsetAndMetadata]]:
        return self._by_group.get(group_id, {})

    def iter_group(self, group_id: str) -> Iterator[tuple[str, int, OffsetAndMetadata]]:
        for topic, partitions in list(self._by_group.get(group_id, {}).items()):
            for partition, value in list(partitions.items()):
                yield topic, partition, value
