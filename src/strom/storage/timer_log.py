"""The timer log: the entries of a delayed-delivery timer index, on disk (RocketMQ's timer log).

Each entry is one pending delayed record, 24 bytes, big-endian::

    due_ms  int64   when the record may be delivered (epoch milliseconds)
    offset  int64   the record's offset in its partition
    next    int64   the index of the next entry of the same wheel slot, -1 at the chain's end

Entries are numbered from 0 in the order they are appended and live in segment files of
`SEGMENT_ENTRIES` entries, `timer-<index of its first entry, 20 digits>.log`, created at full
size and memory-mapped (so a chain can be walked without a system call per entry; the pages
are page cache, not heap). An entry is written once, except for its `next` field, set when the
next entry of its chain is appended. The wheel (strom.storage.timer_index) holds only each
slot's first and last entry index and count; everything per record is here.

An entry dies when its record is taken from the timer or when it is copied to a finer wheel
level. Each segment counts its live entries; a segment that is not the one being appended to
and has none left is deleted. The log keeps, per segment, the smallest record offset written
into it, so the oldest offset a live entry may name (where a rebuild must start reading the
partition) is known without reading entries.

Nothing here is fsynced while running: the files are trusted only after a clean close wrote a
checkpoint (strom.storage.timer_index), which msyncs the segments first.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["ENTRY", "NO_ENTRY", "SEGMENT_ENTRIES", "SegmentInfo", "TimerLog"]

ENTRY: Final = struct.Struct(">qqq")
NEXT: Final = struct.Struct(">q")
NO_ENTRY: Final = -1
SEGMENT_ENTRIES: Final = 1 << 16  # 1.5 MiB a segment
READ_BLOCK: Final = 256
_SEGMENT_NAME = re.compile(r"timer-(\d{20})\.log")


@dataclass(slots=True)
class SegmentInfo:
    """What the log keeps in memory per segment (a handful of segments per million entries)."""

    base: int  # index of the segment's first entry
    live: int = 0
    min_offset: int = -1  # smallest record offset written into it, -1 while empty


class _Segment:
    __slots__ = ("fd", "info", "map", "path")

    def __init__(self, path: Path, info: SegmentInfo, *, create: bool) -> None:
        self.path = path
        self.info = info
        size = SEGMENT_ENTRIES * ENTRY.size
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        self.fd = os.open(path, flags, 0o644)
        try:
            if create or os.fstat(self.fd).st_size != size:
                os.ftruncate(self.fd, size)
            self.map = mmap.mmap(self.fd, size)
        except BaseException:
            os.close(self.fd)
            raise

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


def segment_path(directory: Path, base: int) -> Path:
    return directory / f"timer-{base:020d}.log"


class TimerLog:
    """Append-only entry store; entry indexes are stable for the life of the entry."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._segments: dict[int, _Segment] = {}  # by base index
        self.next_index = 0

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path) -> TimerLog:
        """An empty log in `directory`, removing any segment files found there."""
        directory.mkdir(parents=True, exist_ok=True)
        for path in directory.iterdir():
            if _SEGMENT_NAME.fullmatch(path.name):
                path.unlink()
        return cls(directory)

    @classmethod
    def reopen(cls, directory: Path, next_index: int, segments: list[SegmentInfo]) -> TimerLog:
        """The log as a checkpoint described it; files it does not list are removed."""
        log = cls(directory)
        log.next_index = next_index
        wanted = {info.base for info in segments}
        for path in directory.iterdir():
            m = _SEGMENT_NAME.fullmatch(path.name)
            if m is not None and int(m.group(1)) not in wanted:
                path.unlink()
        try:
            for info in segments:
                path = segment_path(directory, info.base)
                if not path.exists():
                    raise FileNotFoundError(path)
                log._segments[info.base] = _Segment(path, info, create=False)
        except BaseException:
            log.close()
            raise
        return log

    def flush(self) -> None:
        for seg in self._segments.values():
            seg.map.flush()

    def close(self) -> None:
        for seg in self._segments.values():
            seg.close()
        self._segments.clear()

    def delete(self) -> None:
        """Close and remove every segment file."""
        paths = [seg.path for seg in self._segments.values()]
        self.close()
        for path in paths:
            path.unlink(missing_ok=True)

    # -- entries -------------------------------------------------------------------------

    def _segment(self, index: int) -> _Segment:
        return self._segments[index - index % SEGMENT_ENTRIES]

    def append(self, due_ms: int, offset: int, next_index: int = NO_ENTRY) -> int:
        """A new entry at the end of the log; returns its index."""
        index = self.next_index
        seg = self._writable(index)
        ENTRY.pack_into(seg.map, (index - seg.info.base) * ENTRY.size, due_ms, offset, next_index)
        info = seg.info
        info.live += 1
        if info.min_offset < 0 or offset < info.min_offset:
            info.min_offset = offset
        self.next_index = index + 1
        return index

    def append_many(self, entries: list[tuple[int, int, int]]) -> int:
        """Append (due_ms, offset, next) entries in order; returns the first one's index."""
        first = self.next_index
        index = first
        pack = ENTRY.pack_into
        size = ENTRY.size
        pos = 0
        while pos < len(entries):
            seg = self._writable(index)
            info = seg.info
            room = info.base + SEGMENT_ENTRIES - index
            chunk = entries[pos : pos + room]
            at = (index - info.base) * size
            low = info.min_offset
            for due, offset, nxt in chunk:
                pack(seg.map, at, due, offset, nxt)
                at += size
                if low < 0 or offset < low:
                    low = offset
            info.min_offset = low
            info.live += len(chunk)
            index += len(chunk)
            pos += len(chunk)
        self.next_index = index
        return first

    def _writable(self, index: int) -> _Segment:
        base = index - index % SEGMENT_ENTRIES
        seg = self._segments.get(base)
        if seg is None:
            previous = self._segments.get(base - SEGMENT_ENTRIES)
            if previous is not None and previous.info.live == 0:
                del self._segments[previous.info.base]
                previous.close()
                previous.path.unlink(missing_ok=True)
            info = SegmentInfo(base)
            seg = self._segments[base] = _Segment(
                segment_path(self.directory, base), info, create=True
            )
        return seg

    def read(self, index: int) -> tuple[int, int, int]:
        """(due_ms, offset, next) of a live entry."""
        seg = self._segment(index)
        due, offset, nxt = ENTRY.unpack_from(seg.map, (index - seg.info.base) * ENTRY.size)
        return due, offset, nxt

    def read_chain(self, head: int, limit: int) -> list[tuple[int, int, int, int]]:
        """Up to `limit` entries of a chain from `head`: (index, due_ms, offset, next).

        Chains written by one cascade are runs of consecutive entries, so entries are
        unpacked a block at a time from where the chain is, and followed while they link
        to the next one."""
        out: list[tuple[int, int, int, int]] = []
        size = ENTRY.size
        segments = self._segments
        index = head
        while index != NO_ENTRY and len(out) < limit:
            base = index - index % SEGMENT_ENTRIES
            seg_map = segments[base].map
            at = index - base
            block = min(limit - len(out), SEGMENT_ENTRIES - at, READ_BLOCK)
            start = at * size
            for due, offset, nxt in ENTRY.iter_unpack(seg_map[start : start + block * size]):
                out.append((index, due, offset, nxt))
                if nxt != index + 1 or len(out) >= limit:
                    index = nxt
                    break
                index = nxt
        return out

    def link(self, index: int, next_index: int) -> None:
        seg = self._segment(index)
        NEXT.pack_into(seg.map, (index - seg.info.base) * ENTRY.size + 16, next_index)

    def kill(self, index: int) -> None:
        """The entry is no longer part of any chain; its segment may go once all are."""
        self.kill_many([index])

    def kill_many(self, indexes: list[int]) -> None:
        per_base: dict[int, int] = {}
        for index in indexes:
            base = index - index % SEGMENT_ENTRIES
            per_base[base] = per_base.get(base, 0) + 1
        active = (self.next_index - 1) - (self.next_index - 1) % SEGMENT_ENTRIES
        for base, n in per_base.items():
            seg = self._segments[base]
            seg.info.live -= n
            if seg.info.live == 0 and base != active:
                del self._segments[base]
                seg.close()
                seg.path.unlink(missing_ok=True)

    # -- views ---------------------------------------------------------------------------

    @property
    def live(self) -> int:
        return sum(seg.info.live for seg in self._segments.values())

    @property
    def segments(self) -> list[SegmentInfo]:
        return [self._segments[base].info for base in sorted(self._segments)]

    def min_live_offset(self) -> int | None:
        """A lower bound of the offsets live entries name (None when there are none)."""
        lows = [s.info.min_offset for s in self._segments.values() if s.info.live > 0]
        return min(lows) if lows else None

    def disk_bytes(self) -> int:
        return len(self._segments) * SEGMENT_ENTRIES * ENTRY.size
