"""The sparse per-segment indexes, in Kafka's on-disk layout.

`.index` (OffsetIndex): 8-byte entries, big-endian
    int32 offset relative to the segment's base offset
    int32 byte position of a batch in the `.log` file
  An entry (o, p) means "the batch whose last offset is o starts at byte p"; entries increase in
  both fields. A lookup takes the last entry with offset <= target and scans forward from p.

`.timeindex` (TimeIndex): 12-byte entries, big-endian
    int64 timestamp: the largest batch max-timestamp seen in the segment so far
    int32 offset relative to the base offset: the last offset of the batch that set it
  Timestamps strictly increase; offsets never decrease. The last entry of a segment that is no
  longer active holds the segment's largest timestamp (written on roll and on close), which is
  how retention learns a segment's age without reading it.

Kafka preallocates these files and memory-maps them. Here an index holds no descriptor: its
entries are read into two compact arrays the first time the segment needs them (`load`), new
entries are kept in memory (`_pending`) and written out with one write when the segment is
flushed, rolled or closed (`write_pending`), each time through a descriptor opened for the
moment. A segment creates both files empty (Kafka's layout has them from a segment's start);
on disk a file is exactly its written entries (which is also what Kafka leaves behind after it
trims the files on close). Entries not yet written when the broker dies are rebuilt
by recovery, which starts at a segment the last flush has not covered; a missing file reads as
an index without entries. Recovery rebuilds the entries in memory and leaves the files alone:
the flush or close that moves the recovery point past the segment replaces them (or empties
one that holds entries while none are left), so opening a partition after a crash costs no
file-system write per index.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import struct
import sys
from array import array
from pathlib import Path

from strom.storage.file_cache import open_fd, read_file

log = logging.getLogger("strom.storage")

OFFSET_ENTRY = struct.Struct(">ii")
TIME_ENTRY = struct.Struct(">qi")
# Written out before this much waits in memory, so a busy segment's file keeps up.
_PENDING_LIMIT = 64 * 1024


class IndexCorruptError(ValueError):
    pass


class IndexMissingError(IndexCorruptError):
    """A non-empty segment without index files (rebuilt from the .log's batch headers)."""


class _Index:
    """Shared file handling: entries written so far, entries pending, and the file's path."""

    ENTRY: struct.Struct
    __slots__ = (
        "_file",
        "_fresh",
        "_pending",
        "_stale",
        "_unsynced",
        "_written",
        "base_offset",
        "max_entries",
    )

    def __init__(self, path: Path, base_offset: int, max_index_bytes: int) -> None:
        self._file = str(path)  # a str: a Path per index costs half a kilobyte
        self.base_offset = base_offset
        self.max_entries = max(1, max_index_bytes // self.ENTRY.size)
        self._written = 0  # entries in the file
        self._pending = bytearray()  # entries after those, not yet written
        self._unsynced = False  # written since the last fsync
        # Neither loaded nor reset: whatever the file holds (a leftover of an earlier segment
        # at this base) is not this index's, and the first write replaces it.
        self._fresh = True
        # Reset by recovery: the file's entries are not to be trusted, and the next write (at
        # the flush or close that recovery is followed by) replaces the file, or empties it
        # when no entry is pending. Until then a crash leaves the segment past the recovery
        # point, so that the next recovery resets it again.
        self._stale = False

    @property
    def path(self) -> Path:
        return Path(self._file)

    @path.setter
    def path(self, path: Path) -> None:
        self._file = str(path)

    @property
    def is_full(self) -> bool:
        return len(self) >= self.max_entries

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def _read_raw(self) -> bytes | None:
        """The file's bytes; None when it does not exist."""
        try:
            return read_file(self._file)
        except FileNotFoundError:
            return None

    def _add(self, entry: bytes) -> None:
        self._pending += entry
        if len(self._pending) >= _PENDING_LIMIT:
            self.write_pending()

    def write_pending(self, create: bool = False) -> None:
        """Write the entries kept in memory; `create`: make the file even with none."""
        if not self._pending and not (create and self._written == 0):
            if self._stale:
                self._empty_stale_file()
            return
        replace = self._fresh or self._stale
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if replace else 0)
        fd = open_fd(self._file, flags)
        self._fresh = self._stale = False
        try:
            view = memoryview(self._pending)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        self._written += len(self._pending) // self.ENTRY.size
        self._pending = bytearray()
        self._unsynced = True

    def _empty_stale_file(self) -> None:
        """The file of a reset index with no entry to write: emptied, when it is not (most
        are: a segment under index.interval.bytes has no entries)."""
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self._file).st_size:
                os.truncate(self._file, 0)
                self._unsynced = True
        self._fresh = self._stale = False

    def _reset_entries(self) -> None:
        """Forget every entry; the file is dealt with at the next write (`_stale`)."""
        self._written = 0
        self._pending = bytearray()
        self._stale = True

    def _truncate_entries(self, count: int) -> None:
        """Keep the first `count` entries, on disk and pending."""
        if count == 0:
            with contextlib.suppress(FileNotFoundError):
                os.truncate(self._file, 0)
            self._written = 0
            self._pending = bytearray()
            self._fresh = self._stale = False
            self._unsynced = True
        elif count < self._written:
            with contextlib.suppress(FileNotFoundError):
                os.truncate(self._file, count * self.ENTRY.size)
            self._written = count
            self._pending = bytearray()
            self._unsynced = True
        else:
            del self._pending[(count - self._written) * self.ENTRY.size :]

    def fsync(self) -> None:
        """Write what is pending and make it durable."""
        self.write_pending()
        if not self._unsynced:
            return
        try:
            fd = open_fd(self._file, os.O_RDONLY)
        except FileNotFoundError:
            return  # truncated away to nothing and never written again
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._unsynced = False

    def close(self) -> None:
        """Write what is pending (the file then holds every entry)."""
        self.write_pending()

    def rename(self, path: Path) -> None:
        self.write_pending()
        with contextlib.suppress(FileNotFoundError):
            os.rename(self._file, path)
        self._file = str(path)


class OffsetIndex(_Index):
    ENTRY = OFFSET_ENTRY
    __slots__ = ("positions", "relative_offsets")

    def __init__(self, path: Path, base_offset: int, max_index_bytes: int) -> None:
        super().__init__(path, base_offset, max_index_bytes)
        self.relative_offsets = array("i")
        self.positions = array("i")

    def __len__(self) -> int:
        return len(self.relative_offsets)

    def load(self, log_size: int) -> bool:
        """Read the file and check it; raises IndexCorruptError (the caller rebuilds). False
        when there is no file."""
        raw = self._read_raw()
        self._pending = bytearray()
        self._fresh = False
        if raw is None:
            self.relative_offsets, self.positions = array("i"), array("i")
            self._written = 0
            return False
        if len(raw) % self.ENTRY.size:
            raise IndexCorruptError(f"{self.path}: size {len(raw)} is not a multiple of 8")
        entries = array("i", raw)
        if sys.byteorder == "little":  # the file is big-endian
            entries.byteswap()
        relative, positions = entries[0::2], entries[1::2]
        previous_rel = previous_pos = -1
        for rel, pos in zip(relative, positions, strict=True):
            if rel < 0 or pos < 0 or pos >= log_size:
                raise IndexCorruptError(f"{self.path}: entry ({rel}, {pos}) outside the segment")
            if rel <= previous_rel or pos <= previous_pos:
                raise IndexCorruptError(f"{self.path}: entries not increasing at ({rel}, {pos})")
            previous_rel, previous_pos = rel, pos
        self.relative_offsets, self.positions = relative, positions
        self._written = len(relative)
        return True

    @property
    def offsets(self) -> list[int]:
        """The entries' absolute offsets (for tests and tools; lookups use the arrays)."""
        return [rel + self.base_offset for rel in self.relative_offsets]

    def append(self, offset: int, position: int) -> None:
        relative = offset - self.base_offset
        if self.relative_offsets and relative <= self.relative_offsets[-1]:
            return  # Kafka refuses non-increasing entries; so do we, silently
        self._add(self.ENTRY.pack(relative, position))
        self.relative_offsets.append(relative)
        self.positions.append(position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the last entry with offset <= target, else (base, 0)."""
        i = bisect.bisect_right(self.relative_offsets, offset - self.base_offset) - 1
        if i < 0:
            return self.base_offset, 0
        return self.relative_offsets[i] + self.base_offset, self.positions[i]

    def last_entry(self) -> tuple[int, int]:
        if not self.relative_offsets:
            return self.base_offset, 0
        return self.relative_offsets[-1] + self.base_offset, self.positions[-1]

    def truncate_to(self, offset: int) -> None:
        """Drop entries with offset >= `offset`."""
        keep = bisect.bisect_left(self.relative_offsets, offset - self.base_offset)
        if keep < len(self.relative_offsets):
            del self.relative_offsets[keep:], self.positions[keep:]
            self._truncate_entries(keep)

    def reset(self) -> None:
        self.relative_offsets, self.positions = array("i"), array("i")
        self._reset_entries()


class TimeIndex(_Index):
    ENTRY = TIME_ENTRY
    __slots__ = ("relative_offsets", "timestamps")

    def __init__(self, path: Path, base_offset: int, max_index_bytes: int) -> None:
        super().__init__(path, base_offset, max_index_bytes)
        self.timestamps = array("q")
        self.relative_offsets = array("i")

    def __len__(self) -> int:
        return len(self.timestamps)

    def load(self) -> bool:
        raw = self._read_raw()
        self._pending = bytearray()
        self._fresh = False
        if raw is None:
            self.timestamps, self.relative_offsets = array("q"), array("i")
            self._written = 0
            return False
        if len(raw) % self.ENTRY.size:
            raise IndexCorruptError(f"{self.path}: size {len(raw)} is not a multiple of 12")
        timestamps = array("q")
        relative = array("i")
        previous_ts = previous_rel = -(2**63)
        for ts, rel in self.ENTRY.iter_unpack(raw):
            if rel < 0:
                raise IndexCorruptError(f"{self.path}: negative relative offset {rel}")
            if ts <= previous_ts or rel < previous_rel:
                raise IndexCorruptError(f"{self.path}: entries not increasing at ({ts}, {rel})")
            previous_ts, previous_rel = ts, rel
            timestamps.append(ts)
            relative.append(rel)
        self.timestamps, self.relative_offsets = timestamps, relative
        self._written = len(timestamps)
        return True

    @property
    def offsets(self) -> list[int]:
        return [rel + self.base_offset for rel in self.relative_offsets]

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Add an entry only when it raises the largest timestamp (and never moves offsets back)."""
        relative = offset - self.base_offset
        if self.timestamps and (
            timestamp <= self.timestamps[-1] or relative < self.relative_offsets[-1]
        ):
            return
        if timestamp < 0:
            return
        self._add(self.ENTRY.pack(timestamp, relative))
        self.timestamps.append(timestamp)
        self.relative_offsets.append(relative)

    def lookup(self, timestamp: int) -> tuple[int, int]:
        """(timestamp, offset) of the last entry with timestamp <= target, else (-1, base)."""
        i = bisect.bisect_right(self.timestamps, timestamp) - 1
        if i < 0:
            return -1, self.base_offset
        return self.timestamps[i], self.relative_offsets[i] + self.base_offset

    def last_entry(self) -> tuple[int, int]:
        if not self.timestamps:
            return -1, self.base_offset
        return self.timestamps[-1], self.relative_offsets[-1] + self.base_offset

    def truncate_to(self, offset: int) -> None:
        """Drop entries with offset >= `offset`."""
        keep = bisect.bisect_left(self.relative_offsets, offset - self.base_offset)
        if keep < len(self.relative_offsets):
            del self.relative_offsets[keep:], self.timestamps[keep:]
            self._truncate_entries(keep)

    def reset(self) -> None:
        self.timestamps, self.relative_offsets = array("q"), array("i")
        self._reset_entries()
