"""Which I/O errors take a log directory offline."""

from __future__ import annotations

import errno
import uuid
from pathlib import Path

import pytest

from strom.storage.errors import is_dir_failure
from strom.storage.log_config import LogConfig
from strom.storage.log_manager import LogManager

CONFIG = LogConfig(retention_ms=-1)


@pytest.mark.parametrize(
    ("code", "dirs", "offline"),
    [
        (errno.EMFILE, 1, False),
        (errno.ENFILE, 2, False),
        (errno.ENOMEM, 2, False),
        (errno.ENOSPC, 1, False),
        (errno.EDQUOT, 1, False),
        (errno.ENOSPC, 2, True),
        (errno.EIO, 1, True),
        (errno.EIO, 2, True),
    ],
)
def test_classification(code: int, dirs: int, offline: bool) -> None:
    assert is_dir_failure(OSError(code, "x"), dirs) is offline


def test_a_shortage_leaves_the_directory_online(tmp_path: Path) -> None:
    manager = LogManager.open([tmp_path / "a", tmp_path / "b"], lambda _t: CONFIG)
    plog = manager.create("t", 0, uuid.uuid4(), CONFIG)
    manager.io_failed(plog, OSError(errno.EMFILE, "Too many open files"))
    assert not manager.offline_dirs
    manager.io_failed(plog, OSError(errno.ENOSPC, "No space left on device"))
    assert list(manager.offline_dirs) == [plog.directory.parent]
    manager.close()


def test_a_full_single_directory_stays_online(tmp_path: Path) -> None:
    manager = LogManager.open([tmp_path / "a"], lambda _t: CONFIG)
    plog = manager.create("t", 0, uuid.uuid4(), CONFIG)
    manager.io_failed(plog, OSError(errno.ENOSPC, "No space left on device"))
    assert not manager.offline_dirs
    assert manager.get("t", 0) is plog
    manager.close()
