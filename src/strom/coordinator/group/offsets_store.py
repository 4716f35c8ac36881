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


OffsetKey = tuple[str, str, int]  # (group, topic, partition)


class PendingTxnOffsets:
    """Offsets committed inside open transactions (TxnOffsetCommit), per producer id.

    They become committed offsets when the transaction's COMMIT marker is replayed and vanish
    on ABORT (Kafka's pendingTransactionalOffsets / openTransactionsByGroup). A regular commit
    or a tombstone replayed later for the same key wins over a pending one, as in Kafka, where
    the marker materializes a pending offset only if it is newer than the committed one.
    """

    def __init__(self) -> None:
        self._by_producer: dict[int, dict[OffsetKey, OffsetAndMetadata]] = {}
        self._producers_by_group: dict[str, set[int]] = {}

    def put(self, producer_id: int, key: OffsetKey, value: OffsetAndMetadata) -> None:
        self._by_producer.setdefault(producer_id, {})[key] = value
        self._producers_by_group.setdefault(key[0], set()).add(producer_id)

    def discard_key(self, key: OffsetKey) -> None:
        for producer_id in self._producers_by_group.get(key[0], ()):
            self._by_producer.get(producer_id, {}).pop(key, None)

    def pop_producer(self, producer_id: int) -> dict[OffsetKey, OffsetAndMetadata]:
        pending = self._by_producer.pop(producer_id, {})
        for group_id in {key[0] for key in pending}:
            producers = self._producers_by_group.get(group_id)
            if producers is not None:
                producers.discard(producer_id)
                if not producers:
                    del self._producers_by_group[group_id]
        return pending

    def has(self, key: OffsetKey) -> bool:
        return any(
            key in self._by_producer.get(producer_id, {})
            for producer_id in self._producers_by_group.get(key[0], ())
        )

    def has_group(self, group_id: str) -> bool:
        return group_id in self._producers_by_group

    def keys_of_group(self, group_id: str) -> set[OffsetKey]:
        return {
            key
            for producer_id in self._producers_by_group.get(group_id, ())
            for key in self._by_producer.get(producer_id, {})
            if key[0] == group_id
        }

    def producers(self) -> list[int]:
        return list(self._by_producer)
