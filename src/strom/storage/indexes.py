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

Kafka preallocates these files and memory-maps them; we append with os.write and keep the
entries in Python lists for lookups, so on disk each file is exactly its entries (which is also
what Kafka leaves behind after it trims the files on close).
"""

from __future__ import annotations

import bisect
import logging
import os
import struct
from pathlib import Path

log = logging.getLogger("strom.storage")

OFFSET_ENTRY = struct.Struct(">ii")
TIME_ENTRY = struct.Struct(">qi")


class IndexCorruptError(ValueError):
    pass


def _open_append(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)


class _Index:
    """Shared file handling: an O_APPEND fd plus a max entry count from segment.index.bytes."""

    ENTRY: struct.Struct

    def __init__(self, path: Path, base_offset: int, max_index_bytes: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max(1, max_index_bytes // self.ENTRY.size)
        self._fd = _open_append(path)

    @property
    def is_full(self) -> bool:
        return len(self) >= self.max_entries

    def __len__(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def _read_raw(self) -> bytes:
        size = os.fstat(self._fd).st_size
        return os.pread(self._fd, size, 0) if size else b""

    def _write(self, data: bytes) -> None:
        os.write(self._fd, data)

    def _truncate_entries(self, count: int) -> None:
        os.ftruncate(self._fd, count * self.ENTRY.size)

    def fsync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def rename(self, path: Path) -> None:
        os.rename(self.path, path)
        self.path = path


class OffsetIndex(_Index):
    ENTRY = OFFSET_ENTRY

    def __init__(self, path: Path, base_offset: int, max_index_bytes: int) -> None:
        super().__init__(path, base_offset, max_index_bytes)
        self.offsets: list[int] = []  # absolute offsets
        self.positions: list[int] = []

    def __len__(self) -> int:
        return len(self.offsets)

    def load(self, log_size: int) -> None:
        """Read the file and check it; raises IndexCorruptError (the caller rebuilds)."""
        raw = self._read_raw()
        if len(raw) % self.ENTRY.size:
            raise IndexCorruptError(f"{self.path}: size {len(raw)} is not a multiple of 8")
        offsets: list[int] = []
        positions: list[int] = []
        for rel, pos in self.ENTRY.iter_unpack(raw):
            if rel < 0 or pos < 0 or pos >= log_size:
                raise IndexCorruptError(f"{self.path}: entry ({rel}, {pos}) outside the segment")
            if offsets and (rel + self.base_offset <= offsets[-1] or pos <= positions[-1]):
                raise IndexCorruptError(f"{self.path}: entries not increasing at ({rel}, {pos})")
            offsets.append(rel + self.base_offset)
            positions.append(pos)
        self.offsets, self.positions = offsets, positions

    def append(self, offset: int, position: int) -> None:
        if self.offsets and offset <= self.offsets[-1]:
            return  # Kafka refuses non-increasing entries; so do we, silently
        self._write(self.ENTRY.pack(offset - self.base_offset, position))
        self.offsets.append(offset)
        self.positions.append(position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the last entry with offset <= target, else (base, 0)."""
        i = bisect.bisect_right(self.offsets, offset) - 1
        if i < 0:
            return self.base_offset, 0
        return self.offsets[i], self.positions[i]

    def last_entry(self) -> tuple[int, int]:
        if not self.offsets:
            return self.base_offset, 0
        return self.offsets[-1], self.positions[-1]

    def truncate_to(self, offset: int) -> None:
        """Drop entries with offset >= `offset`."""
        keep = bisect.bisect_left(self.offsets, offset)
        if keep < len(self.offsets):
            del self.offsets[keep:], self.positions[keep:]
            self._truncate_entries(keep)

    def reset(self) -> None:
        self.offsets, self.positions = [], []
        self._truncate_entries(0)


class TimeIndex(_Index):
    ENTRY = TIME_ENTRY

    def __init__(self, path: Path, base_offset: int, max_index_bytes: int) -> None:
        super().__init__(path, base_offset, max_index_bytes)
        self.timestamps: list[int] = []
        self.offsets: list[int] = []  # absolute offsets

    def __len__(self) -> int:
        return len(self.timestamps)

    def load(self) -> None:
        raw = self._read_raw()
        if len(raw) % self.ENTRY.size:
            raise IndexCorruptError(f"{self.path}: size {len(raw)} is not a multiple of 12")
        timestamps: list[int] = []
        offsets: list[int] = []
        for ts, rel in self.ENTRY.iter_unpack(raw):
            if rel < 0:
                raise IndexCorruptError(f"{self.path}: negative relative offset {rel}")
            if timestamps and (ts <= timestamps[-1] or rel + self.base_offset < offsets[-1]):
                raise IndexCorruptError(f"{self.path}: entries not increasing at ({ts}, {rel})")
            timestamps.append(ts)
            offsets.append(rel + self.base_offset)
        self.timestamps, self.offsets = timestamps, offsets

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Add an entry only when it raises the largest timestamp (and never moves offsets back)."""
        if self.timestamps and (timestamp <= self.timestamps[-1] or offset < self.offsets[-1]):
            return
        if timestamp < 0:
            return
        self._write(self.ENTRY.pack(timestamp, offset - self.base_offset))
        self.timestamps.append(timestamp)
        self.offsets.append(offset)

    def lookup(self, timestamp: int) -> tuple[int, int]:
        """(timestamp, offset) of the last entry with timestamp <= target, else (-1, base)."""
        i = bisect.bisect_right(self.timestamps, timestamp) - 1
        if i < 0:
            return -1, self.base_offset
        return self.timestamps[i], self.offsets[i]

    def last_entry(self) -> tuple[int, int]:
        if not self.timestamps:
            return -1, self.base_offset
        return self.timestamps[-1], self.offsets[-1]

    def truncate_to(self, offset: int) -> None:
        """Drop entries with offset >= `offset`."""
        keep = bisect.bisect_left(self.offsets, offset)
        if keep < len(self.offsets):
            del self.offsets[keep:], self.timestamps[keep:]
            self._truncate_entries(keep)

    def reset(self) -> None:
        self.timestamps, self.offsets = [], []
        self._truncate_entries(0)
