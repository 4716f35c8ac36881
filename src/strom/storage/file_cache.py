"""Open files as a bounded, least-recently-used cache of descriptors.

A broker cannot keep a descriptor per segment file: with a hundred thousand partitions the
process limit runs out long before the disk does. So the files the storage layer uses over and
over (each segment's `.log`) are `CachedFile`s: a path and open flags, and a descriptor only
while the file is in the cache. `acquire()` returns a descriptor, opening the file when it has
none (after closing the least recently used idle descriptors if the cache is full);
`release()` makes it evictable again. Files used once in a while (index files, transaction
indexes, snapshots, checkpoints) are opened for the moment with `open_fd` and closed at once.

Invariants:
  * at most `capacity` descriptors are cached, except that a descriptor in use (between
    acquire and release: a write on the event loop, a read or fsync in a worker thread) is
    never closed, so the count may exceed the bound by the number of files in use at once;
  * a file that was created once is reopened without O_CREAT, so a read racing with the file's
    deletion cannot bring an empty file back (it gets FileNotFoundError instead);
  * one lock guards the cache; no system call other than open and close runs under it.

Running out of descriptors anyway (EMFILE/ENFILE: sockets took the rest) makes an open close a
batch of idle cached descriptors and try once more; if that fails too, the OSError goes to the
caller, whose request fails with an error and loses nothing.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger("strom.storage")

# The bound until the broker sets one from its open-file limit (strom.max.open.files).
DEFAULT_CAPACITY = 1024
# Out of descriptors: close this share of the cached ones (at least the minimum) and retry.
_RELIEF_SHARE = 8
_RELIEF_MIN = 16
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE})


class FileCache:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = max(1, capacity)
        self._lock = threading.Lock()
        # Every cached descriptor, least recently used first.
        self._lru: OrderedDict[CachedFile, None] = OrderedDict()
        self.opens = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._lru)

    def resize(self, capacity: int) -> None:
        with self._lock:
            self.capacity = max(1, capacity)
            self._evict_locked(len(self._lru) - self.capacity)

    def shrink(self, count: int) -> int:
        """Close up to `count` idle descriptors (someone else needs descriptors now)."""
        with self._lock:
            return self._evict_locked(count)

    def close_idle(self, idle_s: float) -> int:
        """Close the descriptors not used for `idle_s` seconds: a partition that is neither
        written nor read holds none."""
        deadline = time.monotonic() - idle_s
        closed = 0
        busy: list[CachedFile] = []
        with self._lock:
            lru = self._lru
            while lru:
                cached = next(iter(lru))
                if cached._last_used > deadline:
                    break
                if cached._users:
                    busy.append(cached)
                    del lru[cached]
                    continue
                self._drop_locked(cached)
                closed += 1
            for cached in busy:
                lru[cached] = None
        return closed

    def relieve(self) -> int:
        """Close a batch of idle descriptors after an open failed with EMFILE or ENFILE."""
        return self.shrink(max(_RELIEF_MIN, len(self._lru) // _RELIEF_SHARE))

    def _evict_locked(self, count: int) -> int:
        """Close up to `count` idle descriptors, least recently used first; one in use moves
        to the recently used end instead."""
        evicted = 0
        busy: list[CachedFile] = []
        lru = self._lru
        while evicted < count and lru:
            cached = next(iter(lru))
            if cached._users:
                busy.append(cached)
                del lru[cached]
                continue
            self._drop_locked(cached)
            evicted += 1
        for cached in busy:
            lru[cached] = None
        self.evictions += evicted
        return evicted

    def _drop_locked(self, cached: CachedFile) -> None:
        del self._lru[cached]
        fd, cached._fd = cached._fd, -1
        try:
            os.close(fd)
        except OSError as exc:  # nothing to do about it; the descriptor is gone either way
            log.warning("closing %s: %s", cached.path, exc)

    def _open_locked(self, cached: CachedFile) -> int:
        self._evict_locked(len(self._lru) + 1 - self.capacity)
        flags = cached.flags if not cached._created else cached.flags & ~os.O_CREAT
        try:
            fd = os.open(cached.path, flags, 0o644)
        except OSError as exc:
            if exc.errno not in EXHAUSTED:
                raise
            self._evict_locked(max(_RELIEF_MIN, len(self._lru) // _RELIEF_SHARE))
            fd = os.open(cached.path, flags, 0o644)
        cached._fd = fd
        cached._created = True
        self._lru[cached] = None
        self.opens += 1
        return fd


# The process-wide cache: the open-file limit it works within is the process's.
open_files = FileCache()


def open_fd(path: Path | str, flags: int, mode: int = 0o644) -> int:
    """os.open for a descriptor held for a moment; on EMFILE/ENFILE the cache gives some back
    and the open is tried once more."""
    try:
        return os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno not in EXHAUSTED or open_files.relieve() == 0:
            raise
        return os.open(path, flags, mode)


def read_file(path: Path | str) -> bytes:
    """The whole file (FileNotFoundError when missing), through `open_fd`."""
    fd = open_fd(path, os.O_RDONLY)
    try:
        parts: list[bytes] = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)
    finally:
        os.close(fd)


class CachedFile:
    """One file with a descriptor in `cache` while it is in use or recently used."""

    __slots__ = ("_cache", "_closing", "_created", "_fd", "_last_used", "_users", "flags", "path")

    def __init__(
        self, path: Path | str, flags: int, *, cache: FileCache | None = None, exists: bool = False
    ) -> None:
        self.path = str(path)
        self.flags = flags
        self._cache = open_files if cache is None else cache
        self._fd = -1
        self._users = 0
        self._created = exists or not flags & os.O_CREAT
        self._closing = False
        self._last_used = 0.0

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    def acquire(self) -> int:
        """A descriptor for the file, valid until the matching `release()`."""
        cache = self._cache
        with cache._lock:
            self._users += 1
            self._last_used = time.monotonic()
            fd = self._fd
            if fd >= 0:
                cache._lru.move_to_end(self)
                return fd
            try:
                return cache._open_locked(self)
            except BaseException:
                self._users -= 1
                raise

    def release(self) -> None:
        cache = self._cache
        with cache._lock:
            self._users -= 1
            if self._closing and self._users == 0 and self._fd >= 0:
                self._closing = False
                cache._drop_locked(self)

    def close(self) -> None:
        """Give the descriptor back now, or at the last release when it is in use; a later
        acquire opens the file again."""
        cache = self._cache
        with cache._lock:
            if self._fd < 0:
                return
            if self._users:
                self._closing = True
            else:
                cache._drop_locked(self)

    def rename(self, path: Path | str) -> None:
        """The file was renamed to `path` (an open descriptor follows the file)."""
        self.path = str(path)

    def __repr__(self) -> str:
        return f"CachedFile({self.path}, fd={self._fd}, users={self._users})"
