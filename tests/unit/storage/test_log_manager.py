from __future__ import annotations

import os
import uuid
from pathlib import Path

from storage_helpers import append, read_all

from strom.storage.log_config import LogConfig
from strom.storage.log_loading import CLEAN_SHUTDOWN_FILE
from strom.storage.log_manager import LogManager

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
    assert set(reopened.partitions()) == {("t", 1)}
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


def test_clean_restart_defers_opening(tmp_path: Path) -> None:
    """After a clean shutdown nothing is read per partition at start-up: the logs open when
    first asked for, and checkpoints keep the offsets of those never opened."""
    manager = LogManager.open([tmp_path], _config_for)
    tid = uuid.uuid4()
    for p in range(3):
        append(manager.create("t", p, tid, CONFIG), [f"v{p}".encode()] * (p + 1))
    manager.get("t", 2).delete_records_before(2)  # type: ignore[union-attr]
    manager.close()

    reopened = LogManager.open([tmp_path], _config_for)
    assert sorted(reopened.partitions()) == [("t", 0), ("t", 1), ("t", 2)]
    assert reopened.all_logs() == [] and len(reopened.deferred) == 3
    assert reopened.has("t", 1) and not reopened.has("t", 3)
    first = reopened.get("t", 1)
    assert first is not None and first.log_end_offset == 2 and first.topic_id == tid
    assert len(reopened.deferred) == 2
    reopened.checkpoint()
    points = (tmp_path / "recovery-point-offset-checkpoint").read_text().split("\n")
    assert sorted(points[2:5]) == ["t 0 1", "t 1 2", "t 2 3"]
    starts = (tmp_path / "log-start-offset-checkpoint").read_text()
    assert "t 2 2" in starts
    assert reopened.open_deferred(budget_s=60.0) == 0
    last = reopened.get("t", 2)
    assert last is not None and last.log_start_offset == 2 and last.log_end_offset == 3
    reopened.close()


def test_after_a_crash_a_log_is_recovered_when_opened(tmp_path: Path) -> None:
    """kill -9: nothing is read at start-up either; opening a log recovers it from its
    recovery point (a torn tail goes), and a clean stop before every log was recovered
    leaves no clean shutdown marker."""
    manager = LogManager.open([tmp_path], _config_for)
    tid = uuid.uuid4()
    for p in range(2):
        append(manager.create("t", p, tid, CONFIG), [b"kept"])
    manager.checkpoint()  # no close: as after kill -9
    for p in range(2):
        with open(sorted((tmp_path / f"t-{p}").glob("*.log"))[-1], "ab") as f:
            f.write(b"\x00\x00\x00\x00\x00\x00\x00\x01torn")  # a half-written batch

    reopened = LogManager.open([tmp_path], _config_for)
    assert len(reopened.deferred) == 2 and not reopened.all_logs()
    first = reopened.get("t", 0)
    assert first is not None and [r.value for r in read_all(first)] == [b"kept"]
    assert first.active_segment.size == os.path.getsize(first.active_segment.log_path)
    reopened.close()
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()  # t-1 is still to be recovered

    again = LogManager.open([tmp_path], _config_for)
    second = again.get("t", 1)
    assert second is not None and [r.value for r in read_all(second)] == [b"kept"]
    assert again.open_deferred(budget_s=60.0) == 0  # the warm-up: every log recovered
    again.close()
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()


def test_deferred_logs_of_a_failed_dir_go_offline(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    manager = LogManager.open(dirs, _config_for)
    tid = uuid.uuid4()
    for p in range(4):
        manager.create("t", p, tid, CONFIG)
    manager.close()
    reopened = LogManager.open(dirs, _config_for)
    gone = reopened.take_offline(dirs[0], "test")
    assert len(gone) == 2 and all(reopened.is_offline(*key) for key in gone)
    assert all(reopened.get(*key) is None for key in gone)
    assert len(reopened.partitions()) == 2
    reopened.close()


def test_deleting_a_deferred_partition(tmp_path: Path) -> None:
    manager = LogManager.open([tmp_path], _config_for)
    manager.create("t", 0, uuid.uuid4(), CONFIG)
    manager.close()
    reopened = LogManager.open([tmp_path], _config_for)
    reopened.delete_partition("t", 0)
    assert reopened.partitions() == []
    assert not any(p.name.startswith("t-0") for p in tmp_path.iterdir())
    reopened.close()


def test_leader_epochs_of_the_produce_path_are_written_later_or_recovered(
    tmp_path: Path,
) -> None:
    manager = LogManager.open([tmp_path], _config_for)
    plog = manager.create("t", 0, uuid.uuid4(), CONFIG)
    append(plog, [b"a"], epoch=3)
    epochs_file = plog.directory / "leader-epoch-checkpoint"
    assert not epochs_file.exists()  # not on the produce path
    pending = manager.take_due_files(10)
    assert pending == [plog] and manager.write_due_files(pending) == []
    assert epochs_file.read_text() == "0\n1\n3 0\n"
    append(plog, [b"b"], epoch=4)
    manager.checkpoint()  # no close and no write of the new epoch: as after kill -9
    reopened = LogManager.open([tmp_path], _config_for)
    recovered = reopened.get("t", 0)
    assert recovered is not None
    assert recovered.leader_epoch_cache.entries() == [(3, 0), (4, 1)]
    reopened.close()
    assert epochs_file.read_text() == "0\n2\n3 0\n4 1\n"


def test_a_checkpoint_is_rewritten_only_when_its_offsets_changed(tmp_path: Path) -> None:
    manager = LogManager.open([tmp_path], _config_for)
    tid = uuid.uuid4()
    logs = [manager.create("t", p, tid, CONFIG) for p in range(3)]
    names = ["recovery-point-offset-checkpoint", "replication-offset-checkpoint"]
    manager.checkpoint()
    inodes = {name: os.stat(tmp_path / name).st_ino for name in names}
    manager.write_offsets_by_dir(manager.offsets_by_dir())  # as the broker's periodic task
    manager.write_high_watermarks(manager.high_watermarks_by_dir())
    assert {name: os.stat(tmp_path / name).st_ino for name in names} == inodes
    append(logs[1], [b"x"])
    manager.checkpoint()
    assert os.stat(tmp_path / "replication-offset-checkpoint").st_ino != inodes[names[1]]
    assert "t 1 1" in (tmp_path / "replication-offset-checkpoint").read_text()
    manager.close()
    assert "t 1 1" in (tmp_path / "recovery-point-offset-checkpoint").read_text()
