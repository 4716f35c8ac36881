"""Several log directories (JBOD): placement, meta.properties, checkpoints, future logs found at
start-up, directories failing at start-up and at run time (through the fault-injection seam)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import append, read_all

from strom.storage import faults
from strom.storage.checkpoint import read_offsets
from strom.storage.errors import KafkaStorageError
from strom.storage.log_config import LogConfig
from strom.storage.log_dirs import LogDirConfigError, read_meta_properties
from strom.storage.log_manager import LogDirNotFoundError, LogManager
from strom.storage.log_moves import future_dir_name

CONFIG = LogConfig(segment_bytes=1024, retention_ms=-1)
TID = uuid.UUID("12345678-1234-5678-1234-567812345678")
CLUSTER = "MkU3OEVBNTcwNTJENDM2Qk"


def _config_for(topic: str) -> LogConfig:
    return CONFIG


@pytest.fixture(autouse=True)
def _no_faults() -> Iterator[None]:
    faults.clear()
    yield
    faults.clear()


def _open(dirs: list[Path], **kw: object) -> LogManager:
    return LogManager.open(dirs, _config_for, cluster_id=CLUSTER, broker_id=1, **kw)  # type: ignore[arg-type]


def _partition_dirs(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.is_dir())


def test_new_partitions_go_to_the_directory_with_fewest_logs(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    manager = _open(dirs)
    manager.create("t", 0, TID, CONFIG)
    manager.create("t", 1, TID, CONFIG)
    manager.create("t", 2, TID, CONFIG)
    assert [_partition_dirs(d) for d in dirs] == [["t-0"], ["t-1"], ["t-2"]]
    manager.delete_partition("t", 1)  # b is the emptiest now
    manager.create("u", 0, TID, CONFIG)
    assert _partition_dirs(dirs[1]) == ["u-0"]
    # A future log counts for its directory as Kafka's nextLogDirs counts it.
    manager.create_future("t", 0, dirs[2])
    manager.create("u", 1, TID, CONFIG)
    assert "u-1" in _partition_dirs(dirs[0])
    manager.close()


def test_meta_properties_in_every_directory_and_checked(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    _open(dirs).close()
    for d in dirs:
        meta = read_meta_properties(d)
        assert meta is not None and (meta.version, meta.cluster_id, meta.broker_id) == (
            0,
            CLUSTER,
            1,
        )
        text = (d / "meta.properties").read_text()
        assert text.startswith("#\n#") and "broker.id=1\n" in text and "version=0\n" in text
    with pytest.raises(LogDirConfigError, match="Stored node id 1 doesn't match"):
        LogManager.open(dirs, _config_for, cluster_id=CLUSTER, broker_id=2)
    with pytest.raises(LogDirConfigError, match=r"Invalid cluster\.id"):
        LogManager.open(dirs, _config_for, cluster_id="AAAAAAAAAAAAAAAAAAAAAA", broker_id=1)


def test_the_same_directory_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    with pytest.raises(LogDirConfigError, match="Duplicate log directory"):
        _open([tmp_path / "a", tmp_path / "link"])


def test_checkpoints_per_directory_list_its_own_logs(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    manager = _open(dirs)
    for p in range(4):
        append(manager.create("t", p, TID, CONFIG), [b"x"] * (p + 1))
    manager.checkpoint()
    for d in dirs:
        hosted = {("t", int(name.rsplit("-", 1)[1])) for name in _partition_dirs(d)}
        for name in (
            "recovery-point-offset-checkpoint",
            "log-start-offset-checkpoint",
            "replication-offset-checkpoint",
        ):
            assert set(read_offsets(d / name)) == hosted, name
        marks = read_offsets(d / "replication-offset-checkpoint")
        assert all(marks[k] == k[1] + 1 for k in hosted)
    manager.close()


def test_a_partition_in_two_directories_stops_start_up(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    manager = _open(dirs)
    manager.create("t", 0, TID, CONFIG)
    manager.close()
    (dirs[1] / "t-0").mkdir()
    with pytest.raises(LogDirConfigError, match="Duplicate log directories for t-0"):
        _open(dirs)


def test_an_unusable_directory_starts_offline_and_the_others_serve(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    bad.write_text("not a directory")
    manager = _open([good, bad])
    assert manager.live_log_dirs == [good.absolute()]
    assert bad.absolute() in manager.offline_dirs
    plog = manager.create("t", 0, TID, CONFIG)  # new: placed on the live directory
    assert plog.directory.parent == good.absolute()
    # A partition this broker should have may be in the offline directory: not created.
    with pytest.raises(KafkaStorageError, match="are offline"):
        manager.create("t", 1, TID, CONFIG, is_new=False)
    with pytest.raises(LogDirNotFoundError):
        manager.is_online(tmp_path / "elsewhere")
    assert not manager.is_online(bad)
    manager.close()


def test_no_usable_directory_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(LogDirConfigError, match="none of the specified log dirs"):
        _open([tmp_path / "f"])


def test_io_error_takes_only_that_directory_offline(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    manager = _open(dirs)
    logs = [manager.create("t", p, TID, CONFIG) for p in range(4)]
    for plog in logs:
        append(plog, [b"before"])
    failing = logs[1].directory.parent
    faults.inject(failing, ["write"])
    with pytest.raises(OSError) as raised:
        append(logs[1], [b"lost"])
    manager.io_failed(logs[1], raised.value)
    assert failing in manager.offline_dirs
    gone = {k for k, d in manager.offline_partitions.items() if d == failing}
    assert gone == {("t", 1), ("t", 3)}
    assert manager.get("t", 1) is None and manager.is_offline("t", 1)
    for p in (0, 2):
        plog = manager.get("t", p)
        assert plog is not None
        append(plog, [b"after"])
        assert [r.value for r in read_all(plog)] == [b"before", b"after"]
    # Reported again (another thread, another file): nothing more happens.
    manager.io_failed(failing / "t-3", OSError(5, "again"))
    faults.clear()
    manager.close()
    # After a restart the directory is back with everything it had acknowledged.
    reopened = _open(dirs)
    assert not reopened.offline_dirs
    for p in range(4):
        plog = reopened.get("t", p)
        assert plog is not None and read_all(plog)[0].value == b"before"
    reopened.close()


def test_reads_and_checkpoints_fail_through_the_seam(tmp_path: Path) -> None:
    manager = _open([tmp_path / "a", tmp_path / "b"])
    plog = manager.create("t", 0, TID, CONFIG)
    append(plog, [b"x"])
    faults.inject(plog.directory.parent, ["read"])
    with pytest.raises(OSError, match="injected read error"):
        plog.read(0, 1000, plog.log_end_offset, True)
    faults.clear()
    faults.inject(plog.directory.parent, ["write"])
    manager.checkpoint()  # the checkpoint write fails: the directory goes offline
    assert plog.directory.parent in manager.offline_dirs
    faults.clear()
    manager.close()


def test_future_log_found_at_start_up_without_current_is_promoted(tmp_path: Path) -> None:
    """A crash between the swap's two renames leaves the future log alone: it was caught up,
    so start-up makes it the current log."""
    dirs = [tmp_path / "a", tmp_path / "b"]
    manager = _open(dirs)
    plog = manager.create("t", 0, TID, CONFIG)
    append(plog, [b"one", b"two"])
    source = plog.directory.parent
    target = next(d.absolute() for d in dirs if d.absolute() != source)
    manager.close()
    (source / "t-0").rename(target / future_dir_name("t", 0))
    reopened = _open(dirs)
    moved = reopened.get("t", 0)
    assert moved is not None and moved.directory == target / "t-0"
    assert [r.value for r in read_all(moved)] == [b"one", b"two"]
    assert not reopened.future_logs
    reopened.close()


def test_future_log_with_its_current_log_is_loaded_as_future(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    manager = _open(dirs)
    plog = manager.create("t", 0, TID, CONFIG)
    append(plog, [b"one"])
    target = next(d.absolute() for d in dirs if d.absolute() != plog.directory.parent)
    future = manager.create_future("t", 0, target)
    assert future.directory.name.startswith("t-0.") and future.directory.name.endswith("-future")
    manager.close()
    reopened = _open(dirs)
    assert reopened.get("t", 0) is not None
    loaded = reopened.get_future("t", 0)
    assert loaded is not None and loaded.directory.parent == target
    reopened.delete_partition("t", 0)  # takes the future log with it
    assert not reopened.future_logs and _partition_dirs(target) == []
    reopened.close()
