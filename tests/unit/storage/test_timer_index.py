"""The timer index's edges: wheel boundaries, checkpoints that must not be trusted, disk and
memory that do not grow with what has been taken."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from strom.storage import timer_log
from strom.storage.timer_index import (
    CHECKPOINT,
    MAX_DUE,
    TimerCursor,
    TimerIndex,
    TimerIndexError,
)

W = 1_700_000_000_000 & ~0xFFFFF  # aligned on a level-2 bucket


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timer_log, "SEGMENT_ENTRIES", 8)


@pytest.mark.parametrize(
    "delay", [1, 1023, 1024, 1025, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 1 << 30, 1 << 40]
)
def test_never_early_never_late_across_bucket_edges(tmp_path: Path, delay: int) -> None:
    index = TimerIndex.create(tmp_path / "t", TimerCursor(W))
    index.add(W + delay, 7)
    assert index.take(W + delay - 1, 10) == []
    assert index.take(W + delay, 10) == [(W + delay, 7)]
    assert index.pending == 0
    index.abandon()


def test_same_due_time_in_offset_order_after_cascades(tmp_path: Path) -> None:
    index = TimerIndex.create(tmp_path / "t", TimerCursor(W))
    due = W + (1 << 20) + 5_000  # level 2 at first, cascaded twice
    for offset in range(10, 20):
        index.add(due, offset)
    index.add(W + (1 << 20) + 300, 25)  # in the same level-2 bucket
    assert index.take(W + (1 << 20) + 300, 100) == [(W + (1 << 20) + 300, 25)]
    index.add(due, 30)  # lands in level 1 now, after the level-2 ones in its chain
    assert index.take(due, 3) == [(due, 10), (due, 11), (due, 12)]
    index.add(due, 31)  # the slot being taken: appended behind the rest
    assert index.take(due, 100) == [(due, o) for o in [*range(13, 20), 30, 31]]
    index.abandon()


def test_adds_must_grow_and_follow_the_cursor(tmp_path: Path) -> None:
    index = TimerIndex.create(tmp_path / "t", TimerCursor(W, 5))
    assert not index.is_after_cursor(W, 5)
    assert index.is_after_cursor(W, 6)
    with pytest.raises(TimerIndexError):
        index.add(W, 5)
    index.add(W + 10, 8)
    with pytest.raises(TimerIndexError):
        index.add(W + 20, 8)
    index.abandon()


def test_far_future_is_clamped(tmp_path: Path) -> None:
    index = TimerIndex.create(tmp_path / "t", TimerCursor(W))
    index.add(1 << 62, 1)
    assert index.take(MAX_DUE - 1, 1) == []
    assert index.take(MAX_DUE, 1) == [(MAX_DUE, 1)]
    index.abandon()


def test_checkpoint_reused_only_when_it_matches(tmp_path: Path) -> None:
    d = tmp_path / "t"
    index = TimerIndex.create(d, TimerCursor(W))
    index.add(W + 5_000, 1)
    index.add(W + 50, 2)
    assert index.take(W + 50, 5) == [(W + 50, 2)]
    cursor = index.cursor
    index.close(b"tok")
    assert TimerIndex.open(d, b"tok", TimerCursor(W)) is None  # another cursor
    index = TimerIndex.create(d, cursor)
    index.add(W + 5_000, 1)
    index.close(b"tok")
    reopened = TimerIndex.open(d, b"tok", cursor)
    assert reopened is not None
    assert reopened.take(W + 5_000, 5) == [(W + 5_000, 1)]
    reopened.abandon()


def test_torn_or_damaged_checkpoint_is_ignored(tmp_path: Path) -> None:
    d = tmp_path / "t"
    index = TimerIndex.create(d, TimerCursor(W))
    index.add(W + 5, 1)
    index.close(b"tok")
    data = bytearray((d / CHECKPOINT).read_bytes())
    data[20] ^= 0xFF
    (d / CHECKPOINT).write_bytes(bytes(data))
    assert TimerIndex.open(d, b"tok", TimerCursor(W)) is None
    (d / CHECKPOINT).write_bytes(bytes(data[:10]))
    assert TimerIndex.open(d, b"tok", TimerCursor(W)) is None


def test_missing_segment_file_means_rebuild(tmp_path: Path) -> None:
    d = tmp_path / "t"
    index = TimerIndex.create(d, TimerCursor(W))
    index.add(W + 5, 1)
    index.close(b"tok")
    for path in d.glob("timer-*.log"):
        path.unlink()
    assert TimerIndex.open(d, b"tok", TimerCursor(W)) is None


def test_disk_goes_as_entries_are_taken(tmp_path: Path, small_segments: None) -> None:
    index = TimerIndex.create(tmp_path / "t", TimerCursor(W))
    for offset in range(100):
        index.add(W + 1_000 + offset * 700, offset)  # several levels, so several cascades
    assert len(list((tmp_path / "t").glob("timer-*.log"))) >= 100 // 8
    assert index.scan_from() == 0
    taken = index.take(W + 1_000 + 49 * 700, 1_000)
    assert [o for _, o in taken] == list(range(50))
    assert index.scan_from() is not None and index.scan_from() <= 50
    assert index.take(W + 10**9, 1_000) == [(W + 1_000 + o * 700, o) for o in range(50, 100)]
    assert len(list((tmp_path / "t").glob("timer-*.log"))) <= 1
    assert index.scan_from() is None
    index.abandon()


def test_memory_does_not_grow_with_pending_records(tmp_path: Path) -> None:
    index = TimerIndex.create(tmp_path / "t", TimerCursor(W))
    index.add(W + 1, 0)
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for offset in range(1, 30_001):
        index.add(W + 3_600_000 + offset * 37, offset)
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert index.pending == 30_001
    assert after - before < 256 * 1024  # 30k records, not 30k Python objects
    index.abandon()
