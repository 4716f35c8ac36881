"""Retention and the cleaner's planning look only at logs that changed or are due (check_schedule.py).

The counts are of the calls that decide on one log (retention's delete_expired_segments, the
cleaner's plan), so "touches none" means none of those calls for an idle partition.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import append, read_all

from strom.storage import cleaner, log_manager
from strom.storage.log_config import LogConfig
from strom.storage.log_manager import LogManager
from strom.storage.partition_log import PartitionLog

DELETE = LogConfig(segment_bytes=1024, retention_ms=60_000)
COMPACT = LogConfig(
    segment_bytes=600,
    cleanup_policy=frozenset({"compact"}),
    retention_ms=-1,
    delete_retention_ms=1000,
    min_cleanable_dirty_ratio=0.1,
)
CONFIGS = {"del": DELETE, "cmp": COMPACT}
PARTITIONS = 100


class Touched:
    """Which logs retention and the cleaner decided on since the last `reset`."""

    def __init__(self) -> None:
        self.retention: list[PartitionLog] = []
        self.cleaner: list[PartitionLog] = []

    def reset(self) -> None:
        self.retention.clear()
        self.cleaner.clear()


@pytest.fixture
def touched(monkeypatch: pytest.MonkeyPatch) -> Touched:
    seen = Touched()
    retention_check = log_manager.delete_expired_segments
    plan = cleaner.plan

    def counting_retention(plog: PartitionLog, now_ms: int) -> int:
        seen.retention.append(plog)
        return retention_check(plog, now_ms)

    def counting_plan(plog: PartitionLog, *args: object, **kwargs: object) -> object:
        seen.cleaner.append(plog)
        return plan(plog, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(log_manager, "delete_expired_segments", counting_retention)
    monkeypatch.setattr(cleaner, "plan", counting_plan)
    return seen


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[LogManager]:
    opened = LogManager.open([tmp_path], CONFIGS.__getitem__)
    yield opened
    opened.close()


def _create(manager: LogManager, topic: str, count: int) -> list[PartitionLog]:
    topic_id = uuid.uuid4()
    return [manager.create(topic, p, topic_id, CONFIGS[topic]) for p in range(count)]


def test_a_round_over_idle_partitions_touches_none(manager: LogManager, touched: Touched) -> None:
    deleting = _create(manager, "del", PARTITIONS)
    compacted = _create(manager, "cmp", PARTITIONS)
    for plog in [*deleting, *compacted]:
        append(plog, [b"v" * 50], keys=[b"k"], timestamp=1_000)
    # First rounds: every log is new and written, so each is looked at once.
    assert manager.run_retention(now_ms=2_000) == 0
    assert manager.run_cleaner(now_ms=2_000) == []
    assert len(touched.retention) == 2 * PARTITIONS
    assert {plog.topic for plog in touched.cleaner} == {"cmp"}
    touched.reset()
    for now in (2_000, 30_000, 60_000):  # idle, no expiry reached yet
        assert manager.run_retention(now_ms=now) == 0
        assert manager.run_cleaner(now_ms=now) == []
    assert touched.retention == [] and touched.cleaner == []
    # One partition written: that one only.
    append(deleting[7], [b"w"], timestamp=1_500)
    manager.run_retention(now_ms=60_000)
    manager.run_cleaner(now_ms=60_000)
    assert touched.retention == [deleting[7]] and touched.cleaner == []


def test_time_based_retention_checks_a_partition_when_its_oldest_segment_expires(
    manager: LogManager, touched: Touched
) -> None:
    early, late, idle = _create(manager, "del", 3)
    append(early, [b"a"], timestamp=1_000)
    append(late, [b"b"], timestamp=5_000)
    manager.run_retention(now_ms=10_000)
    touched.reset()
    # early expires at 1,000 + 60,000 + 1: nothing before, then early alone.
    assert manager.run_retention(now_ms=61_000) == 0
    assert touched.retention == []
    assert manager.run_retention(now_ms=61_001) == 1
    assert touched.retention == [early]
    assert early.log_start_offset == early.log_end_offset == 1
    touched.reset()
    assert manager.run_retention(now_ms=65_001) == 1
    assert touched.retention == [late]
    touched.reset()
    assert manager.run_retention(now_ms=10_000_000) == 0
    assert touched.retention == []
    assert idle.segments[0].size == 0


def test_a_segment_the_log_start_rule_leaves_oldest_and_expired_is_deleted_next_round(
    manager: LogManager, touched: Touched
) -> None:
    """One check runs the time rule before the log start offset rule: an expired segment
    that only became the oldest when the latter deleted the one before it goes at the next
    round, as a round over every log would delete it (found by the property test)."""
    (plog,) = _create(manager, "del", 1)
    append(plog, [b"new"], timestamp=100_000)
    plog.roll()
    append(plog, [b"old"], timestamp=1_000)
    plog.delete_records_before(plog.log_end_offset)
    assert manager.run_retention(now_ms=100_000) == 1  # below the log start offset
    assert manager.run_retention(now_ms=100_000) == 1  # expired (1,000 + 60,000)
    assert plog.segments[0].size == 0
    touched.reset()
    assert manager.run_retention(now_ms=100_000) == 0
    assert touched.retention == []


def test_changes_that_retention_depends_on_schedule_a_check(
    manager: LogManager, touched: Touched
) -> None:
    logs = _create(manager, "del", 4)
    for plog in logs:
        for i in range(20):
            append(plog, [b"x" * 100], timestamp=1_000 + i)
    manager.run_retention(now_ms=2_000)
    touched.reset()
    logs[0].delete_records_before(logs[0].segments[1].base_offset)
    manager.run_retention(now_ms=2_000)
    assert touched.retention == [logs[0]]
    assert logs[0].segments[0].base_offset == logs[0].log_start_offset
    touched.reset()
    # retention.bytes set on the topic: every log of it is looked at and shrunk.
    manager.update_config("del", LogConfig(segment_bytes=1024, retention_bytes=1500))
    assert manager.run_retention(now_ms=2_000) > 0
    assert sorted(map(id, touched.retention)) == sorted(map(id, logs))
    assert all(plog.size_bytes - plog.segments[0].size < 1500 for plog in logs)


def test_a_log_being_cleaned_is_checked_by_retention_in_a_later_round(
    manager: LogManager, touched: Touched
) -> None:
    (plog,) = _create(manager, "del", 1)
    append(plog, [b"a"], timestamp=1_000)
    plog.cleaning = True
    assert manager.run_retention(now_ms=100_000) == 0
    plog.cleaning = False
    assert manager.run_retention(now_ms=100_000) == 1
    assert touched.retention == [plog]  # skipped while cleaned, not dropped


def test_the_cleaner_plans_again_when_a_delete_horizon_passes(
    manager: LogManager, touched: Touched
) -> None:
    compacted = _create(manager, "cmp", 5)
    for plog in compacted:
        for r in range(2):
            for k in range(5):
                append(plog, [f"v{r}".encode() * 20], keys=[f"k{k}".encode()], timestamp=100)
        append(plog, [None], keys=[b"k1"], timestamp=200)
        append(plog, [b"x" * 300], keys=[b"pad"], timestamp=200)
        plog.roll()
    assert len(manager.run_cleaner(now_ms=5_000)) == 5
    assert all(plog.cleaner_horizon_ms == 6_000 for plog in compacted)
    assert all({r.key for r in read_all(plog)} >= {b"k1"} for plog in compacted)
    manager.run_cleaner(now_ms=5_000)  # the rounds after each pass plan it once more
    touched.reset()
    assert manager.run_cleaner(now_ms=5_999) == []
    assert touched.cleaner == []
    assert len(manager.run_cleaner(now_ms=6_000)) == 5
    assert sorted(map(id, touched.cleaner)) == sorted(map(id, compacted))
    assert all(b"k1" not in {r.key for r in read_all(plog)} for plog in compacted)


def test_deleted_partitions_leave_the_schedules(manager: LogManager) -> None:
    logs = _create(manager, "del", 3)
    for plog in logs:
        append(plog, [b"a"], timestamp=1_000)
    manager.run_retention(now_ms=2_000)
    assert len(manager.retention_checks) == 3  # each waits for its expiry
    manager.delete_partition("del", 1)
    assert len(manager.retention_checks) == 2
    assert manager.run_retention(now_ms=10_000_000) == 2
