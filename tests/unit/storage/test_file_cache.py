"""The descriptor cache (file_cache.py) and what a partition holds open."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest
from storage_helpers import append, read_all

from strom.storage import file_cache
from strom.storage.file_cache import CachedFile, FileCache
from strom.storage.log_config import LogConfig
from strom.storage.log_manager import LogManager

CONFIG = LogConfig(segment_bytes=4096, index_interval_bytes=100, retention_ms=-1)


def _fds_under(directory: Path) -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            count += 1
    return count


def _files(tmp_path: Path, count: int, cache: FileCache) -> list[CachedFile]:
    return [
        CachedFile(tmp_path / f"f{i}", os.O_RDWR | os.O_CREAT | os.O_APPEND, cache=cache)
        for i in range(count)
    ]


def test_bound_and_least_recently_used_eviction(tmp_path: Path) -> None:
    cache = FileCache(3)
    files = _files(tmp_path, 5, cache)
    for f in files[:3]:
        fd = f.acquire()
        os.write(fd, b"x")
        f.release()
    assert len(cache) == 3 and _fds_under(tmp_path) == 3
    files[0].acquire()  # now the most recently used
    files[0].release()
    files[3].acquire()
    files[3].release()
    assert [f.is_open for f in files] == [True, False, True, True, False]
    assert len(cache) == 3 and _fds_under(tmp_path) == 3
    # A reopened file keeps its contents (no O_TRUNC) and position-independent appends.
    fd = files[1].acquire()
    os.write(fd, b"y")
    files[1].release()
    assert (tmp_path / "f1").read_bytes() == b"xy"


def test_a_descriptor_in_use_is_never_evicted(tmp_path: Path) -> None:
    cache = FileCache(2)
    files = _files(tmp_path, 4, cache)
    held = [files[0].acquire(), files[1].acquire()]
    fd = files[2].acquire()  # over the bound rather than closing one in use
    assert len(cache) == 3
    for f, number in zip(files[:2], held, strict=True):
        assert os.fstat(number).st_ino == os.stat(f.path).st_ino
    files[2].release()
    files[0].release()
    files[1].release()
    files[3].acquire()
    files[3].release()
    # Back within the bound, by closing the least recently used idle ones.
    assert [f.is_open for f in files] == [False, False, True, True]
    assert os.readlink(f"/proc/self/fd/{fd}") == files[2].path


def test_close_while_in_use_waits_for_release(tmp_path: Path) -> None:
    cache = FileCache(4)
    (f,) = _files(tmp_path, 1, cache)
    fd = f.acquire()
    f.close()
    os.write(fd, b"still valid")
    f.release()
    assert not f.is_open and len(cache) == 0


def test_a_deleted_file_is_not_recreated_by_a_reopen(tmp_path: Path) -> None:
    cache = FileCache(1)
    first, second = _files(tmp_path, 2, cache)
    first.acquire()
    first.release()
    second.acquire()  # evicts the first
    second.release()
    os.unlink(first.path)
    with pytest.raises(FileNotFoundError):
        first.acquire()
    assert not os.path.exists(first.path)


def test_idle_descriptors_are_closed(tmp_path: Path) -> None:
    cache = FileCache(10)
    files = _files(tmp_path, 3, cache)
    for f in files:
        f.acquire()
        f.release()
    busy = files[1].acquire()
    assert cache.close_idle(0.0) == 2
    assert [f.is_open for f in files] == [False, True, False]
    os.fstat(busy)
    files[1].release()


def test_threads_share_the_cache(tmp_path: Path) -> None:
    cache = FileCache(4)
    files = _files(tmp_path, 16, cache)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(400):
                f = files[(i * 7 + offset) % len(files)]
                fd = f.acquire()
                try:
                    os.write(fd, b"a")
                    assert os.fstat(fd).st_ino == os.stat(f.path).st_ino
                finally:
                    f.release()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(os.path.getsize(f.path) for f in files) == 1600
    assert len(cache) <= 4


def test_partitions_hold_descriptors_only_within_the_bound(tmp_path: Path) -> None:
    """More partitions than the cache's bound: each written, read and reopened, and the
    process never holds more segment descriptors than the bound."""
    file_cache.open_files.resize(8)
    try:
        manager = LogManager.open([tmp_path], lambda _topic: CONFIG)
        tid = uuid.uuid4()
        logs = [manager.create("t", p, tid, CONFIG) for p in range(40)]
        for round_ in range(3):
            for p, plog in enumerate(logs):
                append(plog, [f"{p}-{round_}-{i}".encode() * 10 for i in range(5)])
                assert _fds_under(tmp_path) <= 8
        for p, plog in enumerate(logs):
            values = [r.value for r in read_all(plog)]
            assert values == [f"{p}-{r}-{i}".encode() * 10 for r in range(3) for i in range(5)]
            assert _fds_under(tmp_path) <= 8
        manager.close()
        assert _fds_under(tmp_path) == 0
        reopened = LogManager.open([tmp_path], lambda _topic: CONFIG)
        assert _fds_under(tmp_path) == 0  # nothing is read at start-up after a clean stop
        for p in range(40):
            plog = reopened.get("t", p)
            assert plog is not None
            assert [r.value for r in read_all(plog)][-1] == f"{p}-2-4".encode() * 10
        assert _fds_under(tmp_path) <= 8
        reopened.close()
    finally:
        file_cache.open_files.resize(file_cache.DEFAULT_CAPACITY)


def test_open_gives_descriptors_back_when_the_process_has_none(tmp_path: Path) -> None:
    """Under a low RLIMIT_NOFILE (in a child process): cached descriptors fill the table, and
    an open that then fails with EMFILE closes some of them and succeeds."""
    script = textwrap.dedent(
        f"""
        import os, resource
        from strom.storage import file_cache
        from strom.storage.file_cache import CachedFile
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        file_cache.open_files.resize(1000)
        files = [CachedFile({str(tmp_path)!r} + f"/f{{i}}", os.O_RDWR | os.O_CREAT)
                 for i in range(200)]
        for f in files:
            f.acquire()
            f.release()
        assert len(file_cache.open_files) < 64
        fd = file_cache.open_fd({str(tmp_path)!r} + "/other", os.O_RDWR | os.O_CREAT)
        os.close(fd)
        print("ok", len(file_cache.open_files))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_exhaustion_with_nothing_to_give_back_raises(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    script = textwrap.dedent(
        f"""
        import errno, os, resource
        from strom.storage import file_cache
        resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))
        held = []
        try:
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        try:
            file_cache.open_fd({str(tmp_path)!r} + "/x", os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            print("raised", exc.errno == errno.EMFILE)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.stdout.strip() == "raised True", out.stderr
    assert (soft, hard) == resource.getrlimit(resource.RLIMIT_NOFILE)
    assert errno.EMFILE in file_cache.EXHAUSTED
