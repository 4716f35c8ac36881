from __future__ import annotations

import os
import uuid
from pathlib import Path

from storage_helpers import append, read_all

from strom.storage.log_config import LogConfig
from strom.storage.log_manager import CLEAN_SHUTDOWN_FILE, LogManager

CONFIG = LogConfig(segment_bytes=1024, retention_ms=-1)


def _config_for(topic: str) -> LogConfig:
    return CONFIG


def test_create_close_reopen(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    manager = LogManager.open(dirs, _config_for)
    tid = uuid.uuid4()
    logs = [manager.create("my-topic", p, tid, CONFIG) for p in range(4)]
    assert sorted(len([p for p in d.iterdir() if p.is_dir()]) for d in dirs) == [2, 2]
    for i, plog in enumerate(logs):
        for j in range(i + 1):
            append(plog, [f"{i}-{j}".encode()])
    manager.close()
    for d in dirs:
        assert (d / CLEAN_SHUTDOWN_FILE).exists()
        assert (d / "recovery-point-offset-checkpoint").read_text().startswith("0\n2\n")

    reopened = LogManager.open(dirs, _config_for)
    for d in dirs:
        assert not (d / CLEAN_SHUTDOWN_FILE).exists()
    for p in range(4):
        loaded = reopened.get("my-topic", p)
        assert loaded is not None and loaded.topic_id == tid
        assert loaded.log_end_offset == p + 1
        assert loaded.recovery_point == p + 1
        assert [r.value for r in read_all(loaded)] == [f"{p}-{j}".encode() for j in range(p + 1)]
    assert reopened.get("my-topic", 9) is None
    reopened.close()


def test_unclean_reopen_recovers(tmp_path: Path) -> None:
    manager = LogManager.open([tmp_path], _config_for)
    plog = manager.create("t", 0, uuid.uuid4(), CONFIG)
    for i in range(10):
        append(plog, [str(i).encode() * 20])
    manager.checkpoint()
    # No close(): simulate kill -9 with a torn tail.
    last = sorted((tmp_path / "t-0").glob("*.log"))[-1]
    os.truncate(last, last.stat().st_size - 5)
    reopened = LogManager.open([tmp_path], _config_for)
    recovered = reopened.get("t", 0)
    assert recovered is not None and recovered.log_end_offset == 9
    reopened.close()


def test_delete_partition_and_leftovers(tmp_path: Path) -> None:
    manager = LogManager.open([tmp_path], _config_for)
    manager.create("t", 0, uuid.uuid4(), CONFIG)
    manager.create("t", 1, uuid.uuid4(), CONFIG)
    manager.delete_partition("t", 0)
    assert manager.get("t", 0) is None
    assert not any(p.name.startswith("t-0") for p in tmp_path.iterdir())
    manager.close()
    (tmp_path / "x-3.0123abcd-delete").mkdir()
    (tmp_path / "not a partition").mkdir()
    (tmp_path / "stray-file").write_text("x")
    reopened = LogManager.open([tmp_path], _config_for)
    assert not (tmp_path / "x-3.0123abcd-delete").exists()
    assert set(reopened.logs) == {("t", 1)}
    reopened.close()


def test_retention_and_cleaner_through_manager(tmp_path: Path) -> None:
    configs = {
        "del": LogConfig(segment_bytes=1024, retention_ms=1000),
        "cmp": LogConfig(segment_bytes=600, cleanup_policy=frozenset({"compact"}), retention_ms=-1),
    }
    manager = LogManager.open([tmp_path], configs.__getitem__)
    d = manager.create("del", 0, uuid.uuid4(), configs["del"])
    c = manager.create("cmp", 0, uuid.uuid4(), configs["cmp"])
    for i in range(30):
        append(d, [b"x" * 100], timestamp=i)
        append(c, [b"y" * 100], keys=[b"same"], timestamp=i)
    c.roll()
    assert manager.run_retention(now_ms=1_000_000) > 0
    results = manager.run_cleaner(now_ms=1_000_000)
    assert [r.topic for r in results] == ["cmp"]
    assert len(read_all(c)) == 1
    manager.update_config("del", LogConfig(retention_ms=5))
    assert d.config.retention_ms == 5
    manager.close()
