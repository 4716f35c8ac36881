"""The transaction index: `<base>.txnindex`, the aborted transactions whose markers are in a segment.

File format (Kafka's, so its tools read it), entries back to back with no header, 34 bytes each,
big endian:

     0  version              int16   0
     2  producer_id          int64
    10  first_offset         int64   offset of the transaction's first batch in this partition
    18  last_offset          int64   offset of the ABORT marker
    26  last_stable_offset   int64   the LSO right after the marker was written: the first offset
                                     of the next transaction still open then (of another
                                     producer), else last_offset + 1

An entry lives in the index of the segment that holds its marker; its first offset may be in an
earlier segment. Entries are appended in marker order, so last_offset increases through a file.
A read_committed fetch of [fetch offset, upper bound) needs every aborted transaction with
last_offset >= fetch offset and first_offset < upper bound: they are in the segment holding the
fetch offset and later ones, and the walk can stop at the first entry whose last stable offset
reaches the upper bound (any later abort started at or after that LSO, so beyond the range).

The file is created on the first append (most segments never see an abort). Entries are kept in
memory once read: indexes are tiny (one entry per aborted transaction) and reads are frequent.
Aborts are rare, so the file holds no descriptor: each append and fsync opens it for a moment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from strom.storage.file_cache import open_fd, read_file

log = logging.getLogger("strom.storage")

TXN_INDEX_SUFFIX = ".txnindex"
ENTRY = struct.Struct(">hqqqq")
ENTRY_SIZE = ENTRY.size  # 34
VERSION = 0

assert ENTRY_SIZE == 34


@dataclass(frozen=True, slots=True)
class AbortedTxn:
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int

    def encode(self) -> bytes:
        return ENTRY.pack(
            VERSION, self.producer_id, self.first_offset, self.last_offset, self.last_stable_offset
        )


def decode_entries(data: bytes) -> list[AbortedTxn]:
    """Whole entries of `data`; a torn trailing entry is ignored (the caller truncates it)."""
    out: list[AbortedTxn] = []
    for position in range(0, len(data) - ENTRY_SIZE + 1, ENTRY_SIZE):
        version, pid, first, last, lso = ENTRY.unpack_from(data, position)
        if version > VERSION:
            raise ValueError(f"aborted transaction entry version {version} is not supported")
        out.append(AbortedTxn(pid, first, last, lso))
    return out


class TransactionIndex:
    __slots__ = ("_entries", "_file", "_lock", "_unsynced", "_written", "base_offset")

    def __init__(self, path: Path, base_offset: int) -> None:
        self._file = str(path)  # a str: a Path per segment costs half a kilobyte
        self.base_offset = base_offset
        self._lock = threading.Lock()  # flush() may fsync from a worker thread
        self._unsynced = False
        self._entries: list[AbortedTxn] | None = None  # loaded on first use
        # Entries in the file; those after it in `_entries` are still to be written (an
        # append that found the disk full: fsync writes them, or fails and so does the flush).
        self._written = 0

    @property
    def path(self) -> Path:
        return Path(self._file)

    @path.setter
    def path(self, path: Path) -> None:
        self._file = str(path)

    # -- reading -------------------------------------------------------------------------------

    def entries(self) -> list[AbortedTxn]:
        if self._entries is None:
            try:
                data = read_file(self._file)
            except FileNotFoundError:
                data = b""
            entries = decode_entries(data)
            if len(data) != len(entries) * ENTRY_SIZE:
                log.warning("%s: dropping a torn entry at its end", self.path)
                self._truncate_file(len(entries) * ENTRY_SIZE)
            self._entries = entries
            self._written = len(entries)
        return self._entries

    def collect(self, fetch_offset: int, upper_bound: int) -> tuple[list[AbortedTxn], bool]:
        """Entries overlapping [fetch_offset, upper_bound); True when later segments can't add any."""
        found: list[AbortedTxn] = []
        for entry in self.entries():
            if entry.last_offset >= fetch_offset and entry.first_offset < upper_bound:
                found.append(entry)
            if entry.last_stable_offset >= upper_bound:
                return found, True
        return found, False

    # -- writing -------------------------------------------------------------------------------

    def append(self, entry: AbortedTxn) -> None:
        """Add an entry; readers see it at once. Written to the file now if the file can take
        it, else at the next fsync (the marker it describes is in the log already, so the
        append itself must not fail)."""
        entries = self.entries()
        if entries and entries[-1].last_offset >= entry.last_offset:
            raise ValueError(
                f"{self.path}: aborted transaction at {entry.last_offset} does not follow the one "
                f"at {entries[-1].last_offset}"
            )
        entries.append(entry)
        try:
            self._write_pending()
        except OSError as exc:
            log.warning(
                "%s: the aborted transaction at %d waits to be written: %s",
                self.path,
                entry.last_offset,
                exc,
            )

    def _write_pending(self) -> None:
        entries = self._entries or []
        with self._lock:
            if self._written >= len(entries):
                return
            data = b"".join(entry.encode() for entry in entries[self._written :])
            fd = open_fd(self._file, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, self._written * ENTRY_SIZE)  # no torn entry
                    raise
            finally:
                os.close(fd)
            self._written = len(entries)
            self._unsynced = True

    def truncate_to(self, offset: int) -> None:
        """Drop the entries whose marker is at or after `offset` (the log was cut there)."""
        entries = self.entries()
        keep = [entry for entry in entries if entry.last_offset < offset]
        if len(keep) != len(entries):
            if len(keep) < self._written:
                self._truncate_file(len(keep) * ENTRY_SIZE)
                self._written = len(keep)
            self._entries = keep

    def reset(self) -> None:
        """Remove every entry (recovery rebuilds the index while replaying the segment)."""
        if os.path.exists(self._file):
            self._truncate_file(0)
        self._entries = []
        self._written = 0

    def _truncate_file(self, size: int) -> None:
        with self._lock, contextlib.suppress(FileNotFoundError):
            os.truncate(self._file, size)
            self._unsynced = True

    # -- lifetime ------------------------------------------------------------------------------

    def fsync(self) -> None:
        """Write what waits and make the file durable (raises OSError when it cannot)."""
        self._write_pending()
        with self._lock:
            if not self._unsynced:
                return
            try:
                fd = open_fd(self._file, os.O_RDONLY)
            except FileNotFoundError:
                self._unsynced = False
                return
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._unsynced = False

    def close(self) -> None:
        """Write what waits (nothing is held open); raises OSError when it cannot, so that
        the log is not taken for cleanly shut down."""
        self._write_pending()

    def rename(self, path: Path) -> None:
        """Point at a new name, moving the file if it exists (segment suffix changes)."""
        self._write_pending()
        if os.path.exists(self._file):
            os.rename(self._file, path)
        self._file = str(path)
