from __future__ import annotations

import os
from pathlib import Path

import pytest
from storage_helpers import append, open_log, read_all

from strom.storage import cleaner
from strom.storage.checkpoint import read_offsets
from strom.storage.log_config import LogConfig
from strom.storage.partition_log import PartitionLog
from strom.storage.segment import Segment

COMPACT = LogConfig(
    segment_bytes=600,
    cleanup_policy=frozenset({"compact"}),
    retention_ms=-1,
    delete_retention_ms=1000,
    min_cleanable_dirty_ratio=0.1,
)


def _populate(plog: PartitionLog, rounds: int = 6, keys: int = 5) -> dict[bytes, tuple[int, bytes]]:
    latest: dict[bytes, tuple[int, bytes]] = {}
    for r in range(rounds):
        for k in range(keys):
            key, value = f"k{k}".encode(), f"v{r}-{k}".encode() * 4
            result = append(plog, [value], keys=[key], timestamp=100 + r)
            latest[key] = (result.first_offset, value)
    plog.roll()
    return latest


def test_compaction_keeps_latest_per_key_and_offsets(tmp_path: Path) -> None:
    plog = open_log(tmp_path, COMPACT)
    latest = _populate(plog)
    end = plog.log_end_offset
    before = {r.offset: r.value for r in read_all(plog)}
    result = cleaner.clean(plog, now_ms=10_000)
    assert result is not None and result.records_removed > 0
    after = read_all(plog)
    assert plog.log_end_offset == end
    assert {r.key: (r.offset, r.value) for r in after} == latest
    assert len(after) == len(latest)
    for record in after:  # offsets and values unchanged
        assert before[record.offset] == record.value
    checkpoint = read_offsets(tmp_path / "cleaner-offset-checkpoint")
    assert checkpoint[("t", 0)] == result.end_offset
    # Nothing dirty now: a second call does nothing.
    assert cleaner.clean(plog, now_ms=10_000) is None
    # Survives a reopen.
    plog.close()
    reopened = open_log(tmp_path, COMPACT, recovery_point=0, clean=False)
    assert {r.key: (r.offset, r.value) for r in read_all(reopened)} == latest
    reopened.close()


def test_read_from_compacted_gap(tmp_path: Path) -> None:
    plog = open_log(tmp_path, COMPACT)
    _populate(plog)
    cleaner.clean(plog, now_ms=10_000)
    records = read_all(plog, start=0)
    assert records[0].offset > 0
    first = plog.read(0, 1 << 20, plog.high_watermark, True)
    assert first.records and first.first_offset <= records[0].offset
    plog.close()


def test_tombstones_removed_after_delete_retention(tmp_path: Path) -> None:
    plog = open_log(tmp_path, COMPACT)
    _populate(plog, rounds=2)
    append(plog, [None], keys=[b"k1"], timestamp=200)
    append(plog, [b"x" * 300], keys=[b"pad"], timestamp=200)
    plog.roll()
    assert cleaner.clean(plog, now_ms=5_000) is not None
    keys = {r.key: r.value for r in read_all(plog)}
    assert keys[b"k1"] is None  # the tombstone stays for delete.retention.ms
    assert plog.cleaner_horizon_ms == 6_000
    assert cleaner.clean(plog, now_ms=5_500) is None  # not dirty, horizon not reached
    assert cleaner.clean(plog, now_ms=6_000) is not None
    keys = {r.key: r.value for r in read_all(plog)}
    assert b"k1" not in keys
    assert set(keys) == {b"k0", b"k2", b"k3", b"k4", b"pad"}
    plog.close()


def test_not_cleanable_below_dirty_ratio_or_within_lag(tmp_path: Path) -> None:
    config = LogConfig(
        segment_bytes=600,
        cleanup_policy=frozenset({"compact"}),
        min_compaction_lag_ms=10_000,
        retention_ms=-1,
    )
    plog = open_log(tmp_path, config)
    _populate(plog)
    assert cleaner.clean(plog, now_ms=5_000) is None  # records only ~5 s old
    assert cleaner.clean(plog, now_ms=20_000) is not None
    plog.close()
    delete_only = open_log(tmp_path / "other", LogConfig(segment_bytes=600))
    _populate(delete_only)
    assert cleaner.clean(delete_only, now_ms=20_000) is None
    delete_only.close()


def test_crash_before_commit_rolls_back(tmp_path: Path) -> None:
    plog = open_log(tmp_path, COMPACT)
    _populate(plog)
    everything = [(r.offset, r.value) for r in read_all(plog)]
    plog.close()
    directory = tmp_path / "t-0"
    # A half-written cleaner output next to intact segments.
    (directory / "00000000000000000000.log.cleaned").write_bytes(os.urandom(100))
    (directory / "00000000000000000000.index.cleaned").write_bytes(b"")
    reopened = open_log(tmp_path, COMPACT, recovery_point=0, clean=False)
    assert [(r.offset, r.value) for r in read_all(reopened)] == everything
    assert not list(directory.glob("*.cleaned"))
    reopened.close()


def test_crash_after_commit_completes_the_swap(tmp_path: Path) -> None:
    plog = open_log(tmp_path, COMPACT)
    latest = _populate(plog)
    directory = tmp_path / "t-0"

    class Crash(Exception):
        pass

    real_delete = Segment.delete
    calls = {"n": 0}

    def crashing_delete(self: Segment, unlink: object = None) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # crash after the first old segment of the group is gone
            raise Crash
        real_delete(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Segment, "delete", crashing_delete)
        with pytest.raises(Crash):
            cleaner.clean(plog, now_ms=10_000)
    assert list(directory.glob("*.swap"))
    for segment in plog.segments:
        segment.close()
    reopened = open_log(tmp_path, COMPACT, recovery_point=0, clean=False)
    assert not list(directory.glob("*.swap"))
    records = read_all(reopened)
    offsets = [r.offset for r in records]
    assert offsets == sorted(set(offsets))
    assert {r.key: (r.offset, r.value) for r in records} == latest
    reopened.close()


def test_checkpoint_forget(tmp_path: Path) -> None:
    plog = open_log(tmp_path, COMPACT)
    _populate(plog)
    cleaner.clean(plog, now_ms=10_000)
    cleaner.forget(tmp_path, "t", 0)
    assert read_offsets(tmp_path / "cleaner-offset-checkpoint") == {}
    plog.close()


def test_small_cleaned_segments_are_grouped_and_crash_mid_swap(tmp_path: Path) -> None:
    config = COMPACT
    plog = open_log(tmp_path, config)
    _populate(plog, rounds=8, keys=3)
    assert cleaner.clean(plog, now_ms=10_000) is not None  # leaves small segments behind
    latest = _populate(plog, rounds=4, keys=3)
    segments_before = len(plog.segments)
    directory = tmp_path / "t-0"
    real_delete = Segment.delete
    calls = {"n": 0}

    class Crash(Exception):
        pass

    def crashing_delete(self: Segment, unlink: object = None) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Crash
        real_delete(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Segment, "delete", crashing_delete)
        with pytest.raises(Crash):
            cleaner.clean(plog, now_ms=20_000)
    for segment in plog.segments:
        segment.close()
    reopened = open_log(tmp_path, config, recovery_point=0, clean=False)
    assert not list(directory.glob("*.swap"))
    assert len(reopened.segments) < segments_before  # the small segments were grouped
    records = read_all(reopened)
    offsets = [r.offset for r in records]
    assert offsets == sorted(set(offsets))
    assert {r.key: (r.offset, r.value) for r in records} == latest
    reopened.close()
