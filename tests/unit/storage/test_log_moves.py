"""The swap of a caught-up future log for the current one (storage/log_moves.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

from storage_helpers import append, read_all

from strom.replication.follower_log import append_as_follower
from strom.storage import cleaner
from strom.storage.checkpoint import read_offsets, write_offsets
from strom.storage.file_cache import open_files
from strom.storage.log_config import LogConfig
from strom.storage.log_manager import LogManager
from strom.storage.log_moves import replace_current_with_future
from strom.storage.partition_log import PartitionLog

CONFIG = LogConfig(segment_bytes=300, retention_ms=-1)
TID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def _config_for(topic: str) -> LogConfig:
    return CONFIG


def _copy(current: PartitionLog, future: PartitionLog) -> None:
    while future.log_end_offset < current.log_end_offset:
        result = current.read(future.log_end_offset, 10_000, current.log_end_offset, True)
        append_as_follower(future, result.records, 20_000)


def _setup(tmp_path: Path) -> tuple[LogManager, PartitionLog, Path, Path]:
    dirs = [tmp_path / "a", tmp_path / "b"]
    manager = LogManager.open(dirs, _config_for)
    current = manager.create("t", 0, TID, CONFIG)
    for i in range(20):
        append(current, [f"r{i}".encode() * 10], epoch=i // 10)
    source = current.directory.parent
    target = next(d.absolute() for d in dirs if d.absolute() != source)
    return manager, current, source, target


def test_swap_keeps_the_log_object_and_moves_the_files(tmp_path: Path) -> None:
    manager, current, source, target = _setup(tmp_path)
    before = [r.value for r in read_all(current)]
    write_offsets(source / cleaner.CHECKPOINT_FILE, {("t", 0): 7})
    future = manager.create_future("t", 0, target)
    _copy(current, future)
    current.leader_epoch_cache.assign(5, current.log_end_offset)  # a leader with no record yet
    assert replace_current_with_future(manager, ("t", 0))
    assert manager.get("t", 0) is current  # every holder keeps the same object
    assert current.directory == target / "t-0"
    assert manager.log_dir_of[("t", 0)] == target
    assert not (source / "t-0").exists() and not manager.future_logs
    assert not any(p.name.startswith("t-0") for p in source.iterdir())
    assert [r.value for r in read_all(current)] == before
    assert current.leader_epoch_cache.latest_epoch == 5
    assert current.end_offset_for_epoch(0) == (0, 10)
    assert read_offsets(target / cleaner.CHECKPOINT_FILE) == {("t", 0): 7}
    assert ("t", 0) not in read_offsets(source / cleaner.CHECKPOINT_FILE)
    assert ("t", 0) in read_offsets(target / "recovery-point-offset-checkpoint")
    assert ("t", 0) not in read_offsets(source / "recovery-point-offset-checkpoint")
    # Writing goes on in the new directory; new segments and snapshots land there.
    for i in range(20, 30):
        append(current, [f"r{i}".encode() * 10], epoch=5)
    current.flush()
    assert len(list((target / "t-0").glob("*.log"))) > 1
    manager.close()
    reopened = LogManager.open([tmp_path / "a", tmp_path / "b"], _config_for)
    moved = reopened.get("t", 0)
    assert moved is not None and moved.directory == target / "t-0"
    assert [r.value for r in read_all(moved)] == [f"r{i}".encode() * 10 for i in range(30)]
    reopened.close()


def test_swap_waits_for_a_running_flush(tmp_path: Path) -> None:
    manager, current, _, target = _setup(tmp_path)
    future = manager.create_future("t", 0, target)
    _copy(current, future)
    with current.flushes_paused() as paused:  # as a flush in a worker thread would hold it
        assert paused
        assert not replace_current_with_future(manager, ("t", 0))
    assert manager.get_future("t", 0) is future and future.directory.exists()
    assert replace_current_with_future(manager, ("t", 0))
    manager.close()


def test_future_log_follows_the_log_start_offset(tmp_path: Path) -> None:
    manager, current, _, target = _setup(tmp_path)
    future = manager.create_future("t", 0, target)
    _copy(current, future)
    current.delete_records_before(12)
    assert replace_current_with_future(manager, ("t", 0))
    assert current.log_start_offset == 12
    assert read_all(current)[0].offset == 12
    manager.close()


def test_swap_with_descriptors_evicted_reopens_by_the_new_names(tmp_path: Path) -> None:
    """The file cache may close any idle descriptor and reopen it by name later: after the
    swap every name points into the new directory."""
    previous = open_files.capacity
    open_files.resize(1)
    try:
        manager, current, _, target = _setup(tmp_path)
        before = [r.value for r in read_all(current)]
        future = manager.create_future("t", 0, target)
        _copy(current, future)
        assert replace_current_with_future(manager, ("t", 0))
        assert all(str(s.log_path).startswith(str(target)) for s in current.segments)
        assert [r.value for r in read_all(current)] == before
        append(current, [b"after"], epoch=5)
        current.flush()
        assert read_all(current)[-1].value == b"after"
        manager.close()
    finally:
        open_files.resize(previous)
