"""The fetch session cache: ids, LRU eviction and what counts as a change."""

from __future__ import annotations

import uuid

from strom.clock import ManualClock
from strom.server.fetch_session import FetchSessionCache, SessionPartition


def test_sessions_get_distinct_ids_and_evict_least_recently_used() -> None:
    cache = FetchSessionCache(2, ManualClock())
    first = cache.create()
    second = cache.create()
    assert first is not None and second is not None
    assert first.session_id != second.session_id
    assert cache.get(first.session_id) is first  # first is now the most recently used
    third = cache.create()
    assert third is not None
    assert cache.get(second.session_id) is None
    assert cache.get(first.session_id) is first
    assert len(cache) == 2


def test_no_slots_means_sessionless() -> None:
    assert FetchSessionCache(0, ManualClock()).create() is None


def test_partition_changes_are_tracked_against_what_was_sent() -> None:
    entry = SessionPartition("t", uuid.uuid4(), 0, fetch_offset=0, max_bytes=1024)
    assert entry.changed(0, 0, 0)
    entry.mark_sent(5, 5, 0)
    assert not entry.changed(5, 5, 0)
    assert entry.changed(6, 6, 0)


def test_forget_topic_drops_its_partitions_from_every_session() -> None:
    cache = FetchSessionCache(4, ManualClock())
    session = cache.create()
    assert session is not None
    for topic, partition in [("a", 0), ("a", 1), ("b", 0)]:
        session.partitions[(topic, partition)] = SessionPartition(
            topic, uuid.uuid4(), partition, 0, 1
        )
    cache.forget_topic("a")
    assert list(session.partitions) == [("b", 0)]
