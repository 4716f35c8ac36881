"""Kafka's small text checkpoint files, read and written atomically.

Format (shared by `recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`,
`replication-offset-checkpoint`, `cleaner-offset-checkpoint` and `leader-epoch-checkpoint`):

    <version, always 0>\\n
    <number of entries>\\n
    <entry>\\n            (one per entry, fields separated by a single space)

Offset checkpoints have entries `<topic> <partition> <offset>`; the leader epoch checkpoint has
`<epoch> <start offset>`. Writes go to `<name>.tmp`, are fsynced, then renamed over the target and
the directory fsynced, so a crash leaves either the old or the new file, never a torn one.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from strom.storage import faults
from strom.storage.file_cache import open_fd, read_file

log = logging.getLogger("strom.storage")

VERSION = 0


class CheckpointFormatError(ValueError):
    pass


def fsync_dir(directory: Path) -> None:
    """Make a rename or file creation in `directory` durable."""
    fd = open_fd(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(directory: Path) -> None:
    """Make everything written to the file system holding `directory` durable, with one
    syncfs(2) instead of an fsync per file (Linux reports the writeback errors of the whole
    file system to it since 5.8); sync(2) where syncfs is missing."""
    fd = open_fd(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _syncfs is None:
            os.sync()
        elif _syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(directory))
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return function


_syncfs = _load_syncfs()


def sync_file(path: Path) -> None:
    """fsync a file written by `write_atomically(..., sync=False)`, then its directory."""
    try:
        fd = open_fd(path, os.O_RDONLY)
    except FileNotFoundError:
        return  # replaced or deleted since: whoever did that made it durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def write_atomically(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write via `<name>.tmp` and rename; `sync=False` leaves the fsyncs to `sync_file`."""
    faults.check(path, "write")
    tmp = path.with_name(path.name + ".tmp")
    fd = open_fd(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # a full disk: give back what the attempt took
        raise
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync:
        fsync_dir(path.parent)


def format_lines(entries: Iterable[tuple[object, ...]]) -> bytes:
    rows = [" ".join(str(field) for field in entry) for entry in entries]
    text = f"{VERSION}\n{len(rows)}\n" + "".join(row + "\n" for row in rows)
    return text.encode()


def parse_lines(data: bytes, fields: int) -> list[list[str]]:
    """Split a checkpoint into entries of `fields` columns; raises CheckpointFormatError."""
    try:
        lines = data.decode().splitlines()
    except UnicodeDecodeError as exc:
        raise CheckpointFormatError("not text") from exc
    if len(lines) < 2:
        raise CheckpointFormatError("missing version or count line")
    if lines[0].strip() != str(VERSION):
        raise CheckpointFormatError(f"unsupported version {lines[0]!r}")
    try:
        count = int(lines[1])
    except ValueError as exc:
        raise CheckpointFormatError(f"bad count {lines[1]!r}") from exc
    body = [line for line in lines[2:] if line.strip()]
    if len(body) != count:
        raise CheckpointFormatError(f"expected {count} entries, found {len(body)}")
    entries = [line.split() for line in body]
    for entry in entries:
        if len(entry) != fields:
            raise CheckpointFormatError(f"bad entry {' '.join(entry)!r}")
    return entries


def write_offsets(path: Path, offsets: Mapping[tuple[str, int], int]) -> None:
    """Write a `<topic> <partition> <offset>` checkpoint, sorted for stable output."""
    rows = [
        f"{topic} {partition} {offset}\n" for (topic, partition), offset in sorted(offsets.items())
    ]
    write_atomically(path, f"{VERSION}\n{len(rows)}\n{''.join(rows)}".encode())


def read_offsets(path: Path) -> dict[tuple[str, int], int]:
    """Read an offset checkpoint; a missing or malformed file reads as empty (and is logged)."""
    try:
        data = read_file(path)
    except FileNotFoundError:
        return {}
    try:
        entries = parse_lines(data, 3)
        return {(topic, int(partition)): int(offset) for topic, partition, offset in entries}
    except (CheckpointFormatError, ValueError) as exc:
        log.warning("ignoring malformed checkpoint %s: %s", path, exc)
        return {}
