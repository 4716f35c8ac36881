from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from storage_helpers import append, open_log, read_all

from strom.storage.indexes import OFFSET_ENTRY
from strom.storage.log_config import LogConfig


def _fill(tmp_path: Path, config: LogConfig, count: int = 30) -> list[bytes]:
    plog = open_log(tmp_path, config)
    values = [f"value-{i}".encode() * 8 for i in range(count)]
    for i, value in enumerate(values):
        append(plog, [value], timestamp=1000 + i)
    plog.close()
    return values


def _log_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "t-0").glob("*.log"))


def test_torn_tail_is_truncated(
    tmp_path: Path, small_config: LogConfig, caplog: pytest.LogCaptureFixture
) -> None:
    values = _fill(tmp_path, small_config)
    last = _log_files(tmp_path)[-1]
    size = last.stat().st_size
    os.truncate(last, size - 7)  # cut the last batch mid-way
    with caplog.at_level(logging.WARNING, logger="strom.storage"):
        plog = open_log(tmp_path, small_config, recovery_point=0, clean=False)
    assert "truncating" in caplog.text
    assert plog.log_end_offset == len(values) - 1
    assert [r.value for r in read_all(plog)] == values[:-1]
    append(plog, [b"next"])
    assert read_all(plog)[-1].offset == len(values) - 1
    plog.close()


def test_garbage_appended_is_cut(tmp_path: Path, small_config: LogConfig) -> None:
    values = _fill(tmp_path, small_config)
    last = _log_files(tmp_path)[-1]
    size = last.stat().st_size
    with open(last, "ab") as f:
        f.write(os.urandom(500))
    plog = open_log(tmp_path, small_config, recovery_point=0, clean=False)
    assert last.stat().st_size == size
    assert [r.value for r in read_all(plog)] == values
    plog.close()


def test_corrupt_batch_in_middle_drops_later_segments(
    tmp_path: Path, small_config: LogConfig
) -> None:
    _fill(tmp_path, small_config)
    files = _log_files(tmp_path)
    assert len(files) > 3
    target = files[1]
    with open(target, "r+b") as f:
        f.seek(100)
        f.write(b"\xff" * 4)  # inside the records of a batch: CRC fails
    plog = open_log(tmp_path, small_config, recovery_point=0, clean=False)
    assert len(plog.segments) == 2
    offsets = [r.offset for r in read_all(plog)]
    assert offsets == list(range(len(offsets)))
    assert len(_log_files(tmp_path)) == 2
    plog.close()


def test_recovery_starts_at_recovery_point(tmp_path: Path, small_config: LogConfig) -> None:
    values = _fill(tmp_path, small_config)
    files = _log_files(tmp_path)
    with open(files[0], "r+b") as f:  # corrupt data below the recovery point: not looked at
        f.seek(100)
        f.write(b"\xff" * 4)
    plog = open_log(tmp_path, small_config, recovery_point=len(values), clean=False)
    assert plog.log_end_offset == len(values)
    plog.close()


@pytest.mark.parametrize("damage", ["delete", "garbage", "odd-size", "decreasing"])
def test_bad_index_is_rebuilt_after_clean_shutdown(
    tmp_path: Path, small_config: LogConfig, damage: str
) -> None:
    values = _fill(tmp_path, small_config, 60)
    index = sorted((tmp_path / "t-0").glob("*.index"))[0]
    original = index.read_bytes()
    assert len(original) >= 16
    if damage == "delete":
        index.unlink()
    elif damage == "garbage":
        index.write_bytes(b"\x7f" * len(original))
    elif damage == "odd-size":
        index.write_bytes(original + b"\x00")
    else:
        index.write_bytes(original[8:16] + original[0:8] + original[16:])
    plog = open_log(tmp_path, small_config, recovery_point=len(values), clean=True)
    # An inactive segment's indexes are read when it is first used: the read finds the damage
    # and rebuilds them, and the rebuilt entries are on disk once the log is closed.
    assert not plog.segments[0].loaded
    assert [r.value for r in read_all(plog)] == values
    plog.close()
    assert index.read_bytes() == original


def test_timeindex_deleted_is_rebuilt(tmp_path: Path, small_config: LogConfig) -> None:
    _fill(tmp_path, small_config, 60)
    timeindex = sorted((tmp_path / "t-0").glob("*.timeindex"))[0]
    original = timeindex.read_bytes()
    timeindex.write_bytes(original[:5])
    plog = open_log(tmp_path, small_config, recovery_point=60, clean=True)
    # The rebuilt index lacks only the final "largest timestamp" entry the roll added, which
    # duplicates the last entry when nothing larger came since; its max timestamp is intact.
    assert plog.segments[0].max_timestamp >= 1000
    assert plog.offset_for_timestamp(1010) == (10, 1010)
    plog.close()


def test_garbage_files_are_skipped(tmp_path: Path, small_config: LogConfig) -> None:
    values = _fill(tmp_path, small_config)
    directory = tmp_path / "t-0"
    (directory / "notes.txt").write_text("hello")
    (directory / "subdir").mkdir()
    (directory / "00000000000000000999.index").write_bytes(b"\x00" * 8)  # orphan index
    (directory / "00000000000000000003.log.deleted").write_bytes(b"x")
    (directory / "00000000000000000003.log.cleaned").write_bytes(b"x")
    (directory / "00000000000000000077.timeindex.swap").write_bytes(b"x")
    plog = open_log(tmp_path, small_config, recovery_point=0, clean=False)
    assert [r.value for r in read_all(plog)] == values
    assert (directory / "notes.txt").exists()
    assert not (directory / "00000000000000000999.index").exists()
    assert not (directory / "00000000000000000003.log.deleted").exists()
    assert not (directory / "00000000000000000003.log.cleaned").exists()
    plog.close()


def test_whole_garbage_segment(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    directory.mkdir()
    (directory / "00000000000000000000.log").write_bytes(os.urandom(4000))
    plog = open_log(tmp_path, recovery_point=0, clean=False)
    assert plog.log_end_offset == 0
    append(plog, [b"a"])
    assert [r.value for r in read_all(plog)] == [b"a"]
    plog.close()


def test_clean_open_with_torn_tail_still_repairs(tmp_path: Path, small_config: LogConfig) -> None:
    values = _fill(tmp_path, small_config)
    last = _log_files(tmp_path)[-1]
    os.truncate(last, last.stat().st_size - 3)
    plog = open_log(tmp_path, small_config, recovery_point=len(values), clean=True)
    assert plog.log_end_offset == len(values) - 1
    plog.close()


def test_recovery_leaves_the_index_files_to_the_next_write(
    tmp_path: Path, small_config: LogConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = _fill(tmp_path, small_config)
    last = _log_files(tmp_path)[-1]
    os.truncate(last, last.stat().st_size - 7)  # a torn last batch
    index = last.with_suffix(".index")
    stale = OFFSET_ENTRY.pack(10_000, 900)  # an entry past the log: not to survive
    index.write_bytes(index.read_bytes() + stale)
    truncated: list[str] = []
    truncate = os.truncate

    def counting(path: str | Path, length: int) -> None:
        truncated.append(str(path))
        truncate(path, length)

    monkeypatch.setattr(os, "truncate", counting)
    plog = open_log(tmp_path, small_config, recovery_point=0, clean=False)
    # Opening rebuilt the indexes in memory and truncated no index file.
    assert [path for path in truncated if path.endswith((".index", ".timeindex"))] == []
    recovered = [segment.offset_index.path for segment in plog.segments]
    assert [r.value for r in read_all(plog)] == values[:-1]
    plog.flush()  # the recovery point passes the segments: their index files are replaced
    plog.close()
    for path in recovered:
        entries = path.read_bytes()
        assert stale not in entries and len(entries) % OFFSET_ENTRY.size == 0
    reopened = open_log(tmp_path, small_config)
    assert [r.value for r in read_all(reopened)] == values[:-1]
    assert [r.value for r in read_all(reopened, start=len(values) - 3)] == values[-3:-1]
    reopened.close()


def test_a_crash_before_the_index_files_are_replaced_recovers_again(
    tmp_path: Path, small_config: LogConfig
) -> None:
    values = _fill(tmp_path, small_config)
    last = _log_files(tmp_path)[-1]
    index = last.with_suffix(".index")
    index.write_bytes(index.read_bytes() + OFFSET_ENTRY.pack(10_000, 900))
    crashed = open_log(tmp_path, small_config, recovery_point=0, clean=False)
    assert crashed.log_end_offset == len(values)
    # No flush, no close: the files are as the first crash left them, and so is the recovery point.
    again = open_log(tmp_path, small_config, recovery_point=0, clean=False)
    assert [r.value for r in read_all(again)] == values
    again.close()
