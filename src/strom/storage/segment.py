"""One log segment: `<base>.log` plus its `.index` and `.timeindex` (see indexes.py), and the
`.txnindex` of aborted transactions whose markers it holds (txn_index.py; created on first use).

The `.log` file is record batches (format v2) back to back, exactly as produced and as Kafka
stores them. Invariants kept by this class:
  * batches are in increasing offset order and every offset in the file is >= base_offset and
    fits in base_offset + 2**31 - 1 (index entries store int32 relative offsets);
  * `size` is the file length and the end of the last whole batch;
  * `next_offset` is the last batch's last offset + 1 (base_offset when empty);
  * `max_timestamp` / `offset_of_max_timestamp` describe the batch with the largest max timestamp.

Writes are os.write on an O_APPEND descriptor; reads are os.pread on the same descriptor (pread
ignores O_APPEND). The descriptor comes from the file cache (file_cache.py), which never closes
one in use; `lock` orders reads and fsyncs in worker threads against close().
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import logging
import os
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from strom.protocol.records.batch_header import BATCH_HEADER_SIZE, BatchHeader
from strom.storage import faults
from strom.storage.batch_io import pread_exact, read_batch_header, scan_headers
from strom.storage.errors import NotCachedError
from strom.storage.file_cache import CachedFile
from strom.storage.indexes import IndexCorruptError, IndexMissingError, OffsetIndex, TimeIndex
from strom.storage.log_config import LogConfig
from strom.storage.txn_index import TXN_INDEX_SUFFIX, TransactionIndex

log = logging.getLogger("strom.storage")

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"
MAX_RELATIVE_OFFSET = 2**31 - 1
# Linux >= 4.14: a buffered read that fails with EAGAIN instead of waiting for the disk.
_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)


def file_stem(base_offset: int) -> str:
    """Kafka names segment files by their base offset, zero-padded to 20 digits."""
    return f"{base_offset:020d}"


def segment_paths(directory: Path, base_offset: int, suffix: str = "") -> tuple[Path, Path, Path]:
    stem = file_stem(base_offset)
    return (
        directory / f"{stem}{LOG_SUFFIX}{suffix}",
        directory / f"{stem}{INDEX_SUFFIX}{suffix}",
        directory / f"{stem}{TIMEINDEX_SUFFIX}{suffix}",
    )


def txn_index_path(directory: Path, base_offset: int, suffix: str = "") -> Path:
    return directory / f"{file_stem(base_offset)}{TXN_INDEX_SUFFIX}{suffix}"


def unlink_paths(paths: list[Path]) -> None:
    """Unlink files, ignoring those already gone."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def floor_index(segments: Sequence[Segment], offset: int) -> int:
    """Index of the segment that would hold `offset`: the last whose base is at or below it
    (0 when `offset` is below them all)."""
    bases = [segment.base_offset for segment in segments]
    return max(0, bisect.bisect_right(bases, offset) - 1)


class SegmentClosedError(OSError):
    """A read raced with the deletion or replacement of this segment; retry on the new list."""


class Segment:
    """One segment. The `.log` descriptor lives in the file cache (file_cache.py): it is
    opened when the segment is written or read and may be closed again whenever it is idle.

    A segment loaded from disk (`create=False`) learns only its size until something needs
    more: its indexes and tail state (next offset, largest timestamp) are read on first use
    (`ensure_loaded`), so opening a partition with many segments reads only the active one.
    """

    __slots__ = (
        "_bytes_since_index_entry",
        "_closed",
        "_first_batch_timestamp",
        "_loaded",
        "_max_timestamp",
        "_next_offset",
        "_next_read",
        "_offset_of_max_timestamp",
        "base_offset",
        "created_ms",
        "directory",
        "dirty",
        "file",
        "index_interval_bytes",
        "lock",
        "offset_index",
        "roll_jitter_ms",
        "size",
        "suffix",
        "time_index",
        "txn_index",
    )

    def __init__(
        self,
        directory: Path,
        base_offset: int,
        config: LogConfig,
        now_ms: int,
        suffix: str = "",
        *,
        create: bool = True,
    ) -> None:
        """A segment whose `.log` is created if missing (`create`), its state that of an empty
        one until load() or recovery; or one found on disk (`create=False`), which touches
        nothing but the file's size until it is used."""
        self.directory = directory
        self.base_offset = base_offset
        self.suffix = suffix
        self.lock = threading.Lock()
        log_path, index_path, time_path = segment_paths(directory, base_offset, suffix)
        faults.check(log_path, "write")
        self.file = CachedFile(log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, exists=not create)
        self.offset_index = OffsetIndex(index_path, base_offset, config.segment_index_bytes)
        self.time_index = TimeIndex(time_path, base_offset, config.segment_index_bytes)
        self.txn_index = TransactionIndex(
            txn_index_path(directory, base_offset, suffix), base_offset
        )
        self.index_interval_bytes = config.index_interval_bytes
        self._closed = False
        if create:
            fd = self.file.acquire()
            try:
                self.size = os.fstat(fd).st_size
            finally:
                self.file.release()
            # Kafka's layout: every segment has both index files from the start (Kafka makes
            # them by its first append at the latest), so tools reading a live log dir find
            # them; empty until entries are written at flush, roll or close.
            self.offset_index.write_pending(create=True)
            self.time_index.write_pending(create=True)
            self.file.close()  # a new partition's segment may not be written for long
        else:
            self.size = os.stat(log_path).st_size
        self._next_offset = base_offset
        self._max_timestamp = -1
        self._offset_of_max_timestamp = base_offset
        # The timestamp segment.ms is measured from: the first batch's max timestamp (Kafka's
        # "rolling based timestamp"), else the time the segment was created or opened.
        self._first_batch_timestamp: int | None = None
        # A created segment is empty or about to be recovered: nothing to read lazily.
        self._loaded = create
        self.created_ms = now_ms
        jitter = config.segment_jitter_ms
        self.roll_jitter_ms = random.randrange(jitter) if jitter > 0 else 0
        self._bytes_since_index_entry = 0
        self.dirty = False  # written since the last fsync
        # (next offset, position) where the last read ended: where a consumer continues.
        self._next_read: tuple[int, int] | None = None

    @property
    def log_path(self) -> Path:
        return Path(self.file.path)

    # -- state read on first use -----------------------------------------------------------

    @property
    def next_offset(self) -> int:
        if not self._loaded:
            self.ensure_loaded()
        return self._next_offset

    @next_offset.setter
    def next_offset(self, value: int) -> None:
        self._next_offset = value

    @property
    def max_timestamp(self) -> int:
        if not self._loaded:
            self.ensure_loaded()
        return self._max_timestamp

    @property
    def offset_of_max_timestamp(self) -> int:
        if not self._loaded:
            self.ensure_loaded()
        return self._offset_of_max_timestamp

    @property
    def first_batch_timestamp(self) -> int | None:
        if not self._loaded:
            self.ensure_loaded()
        return self._first_batch_timestamp

    @property
    def loaded(self) -> bool:
        return self._loaded

    def ensure_loaded(self) -> None:
        """Read the indexes and tail state of a segment found on disk (once). Indexes that do
        not match the `.log` are rebuilt from its batch headers, with a warning."""
        if self._loaded:
            return
        try:
            self.load()
        except IndexMissingError:
            self.rebuild_indexes()
        except IndexCorruptError as exc:
            log.warning("rebuilding the indexes of %s: %s", self.log_path, exc)
            self.rebuild_indexes()

    # -- loading -------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the indexes (raising IndexCorruptError) and derive the tail state from them."""
        self._loaded = True
        found = self.offset_index.load(self.size)
        found = self.time_index.load() and found
        if self.size and not found:
            raise IndexMissingError(f"{self.log_path}: index files are missing")
        last_time_offset = self.time_index.last_entry()[1]
        if last_time_offset > self.base_offset + MAX_RELATIVE_OFFSET:
            raise IndexCorruptError(f"{self.time_index.path}: offset beyond the segment")
        self._max_timestamp, self._offset_of_max_timestamp = self.time_index.last_entry()
        _, position = self.offset_index.last_entry()
        last_position = position
        self._next_offset = self.base_offset
        self._bytes_since_index_entry = self.size - position
        for pos, header in scan_headers(self.pread, position, self.size):
            self._note_batch(header)
            last_position = pos + header.size
        if last_position != self.size and self.size:
            raise IndexCorruptError(
                f"{self.log_path}: batches end at {last_position} but the file has {self.size} bytes"
            )
        self._load_first_timestamp()

    def rebuild_indexes(self) -> None:
        """Index every whole batch from the start of the `.log` again (no CRC checks: that is
        recovery's job after an unclean shutdown)."""
        self.reset_indexes()
        for position, header in scan_headers(self.pread, 0, self.size):
            self.index_batch(position, header)

    def _load_first_timestamp(self) -> None:
        self._first_batch_timestamp = None
        for _, header in scan_headers(self.pread, 0, self.size):
            self._first_batch_timestamp = header.max_timestamp
            break

    def reset_indexes(self) -> None:
        """Forget all index state; recovery then replays every batch through index_batch()."""
        self._loaded = True
        self.offset_index.reset()
        self.time_index.reset()
        self._next_offset = self.base_offset
        self._max_timestamp = -1
        self._offset_of_max_timestamp = self.base_offset
        self._first_batch_timestamp = None
        self._bytes_since_index_entry = 0

    # -- writing -------------------------------------------------------------------------------

    def _note_batch(self, header: BatchHeader) -> None:
        self._next_offset = header.last_offset + 1
        if header.max_timestamp > self._max_timestamp:
            self._max_timestamp = header.max_timestamp
            self._offset_of_max_timestamp = header.last_offset

    def index_batch(self, position: int, header: BatchHeader) -> None:
        """Account for a batch stored at `position` (appended now, or found by recovery).

        As in Kafka, an index entry is added once more than index.interval.bytes have been
        written since the previous one, pointing at the batch that crossed the threshold.
        """
        if position == 0:
            self._first_batch_timestamp = header.max_timestamp
        self._note_batch(header)
        if self._bytes_since_index_entry > self.index_interval_bytes:
            if not self.offset_index.is_full:
                self.offset_index.append(header.last_offset, position)
            if not self.time_index.is_full:
                self.time_index.maybe_append(self._max_timestamp, self._offset_of_max_timestamp)
            self._bytes_since_index_entry = 0
        self._bytes_since_index_entry += header.size

    def append(self, data: bytes | bytearray | memoryview, batches: list[BatchHeader]) -> None:
        """Write whole batches (already offset-assigned) with one os.write and index them.

        A write that fails part way (a full disk) is cut back off the file, which then still
        ends with a whole batch, and the OSError goes to the caller.
        """
        if not self._loaded:
            self.ensure_loaded()
        faults.check(self.file.path, "write")
        position = self.size
        view = memoryview(data)
        total = len(view)
        fd = self.file.acquire()
        try:
            try:
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            except OSError:
                if len(view) != total:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, position)
                raise
        finally:
            self.file.release()
        for header in batches:
            self.index_batch(position, header)
            position += header.size
        self.size += total
        self.dirty = True

    def can_hold(self, last_offset: int) -> bool:
        return last_offset - self.base_offset <= MAX_RELATIVE_OFFSET

    @property
    def indexes_full(self) -> bool:
        if not self._loaded:
            self.ensure_loaded()
        return self.offset_index.is_full or self.time_index.is_full

    def on_become_inactive(self, *, write: bool = True) -> None:
        """Record the largest timestamp as the last time index entry (read back on load) and
        write the indexes out (`write=False`: closing, which decides that, follows)."""
        if not self._loaded:
            return  # never touched since it was found on disk: its files are as they were
        self.time_index.maybe_append(self._max_timestamp, self._offset_of_max_timestamp)
        if write:
            self.offset_index.write_pending(create=self.size > 0)
            self.time_index.write_pending(create=self.size > 0)

    def truncate_bytes(self, size: int) -> None:
        """Cut the .log file to `size` bytes (a batch boundary) without touching the indexes."""
        self._next_read = None
        fd = self.file.acquire()
        try:
            os.ftruncate(fd, size)
        finally:
            self.file.release()
        self.size = size
        self.dirty = True

    def truncate_to(self, offset: int) -> int:
        """Remove the batch containing `offset` and everything after; returns bytes removed."""
        self.ensure_loaded()
        found = self.locate(offset)
        if found is None:
            return 0
        position, _ = found
        removed = self.size - position
        self.offset_index.truncate_to(offset)
        self.time_index.truncate_to(offset)
        self.txn_index.truncate_to(offset)
        self.truncate_bytes(position)
        # Re-derive the tail state from what remains, as a load would.
        self._next_offset = self.base_offset
        self._max_timestamp, self._offset_of_max_timestamp = self.time_index.last_entry()
        _, index_position = self.offset_index.last_entry()
        for _, header in scan_headers(self.pread, index_position, self.size):
            self._note_batch(header)
        if self.size == 0:
            self._next_offset = self.base_offset
        self._bytes_since_index_entry = 0
        self._load_first_timestamp()
        return removed

    # -- reading -------------------------------------------------------------------------------

    def batches(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, BatchHeader]]:
        return scan_headers(self.pread, start, self.size if end is None else end)

    def locate(self, offset: int, nowait: bool = False) -> tuple[int, BatchHeader] | None:
        """The first batch whose last offset is >= `offset`, as (position, header).

        `nowait`: raise NotCachedError instead of waiting for the disk.
        """
        hint = self._next_read
        if hint is not None and hint[0] == offset and hint[1] + BATCH_HEADER_SIZE <= self.size:
            # A consumer reading on from where the last read ended: one header read instead of
            # a scan from the index entry (64 KiB per partition per fetch adds up over many).
            found = read_batch_header(self._read_nowait if nowait else self.pread, hint[1])
            if found is not None and found.base_offset == offset:
                return hint[1], found
        if not self._loaded:
            self.ensure_loaded()
        _, position = self.offset_index.lookup(offset)
        reader = self._read_nowait if nowait else self.pread
        for pos, header in scan_headers(reader, position, self.size):
            if header.last_offset >= offset:
                return pos, header
        return None

    def remember_read_end(self, next_offset: int, position: int) -> None:
        """A read returned batches up to `position`, where `next_offset` starts (or will)."""
        self._next_read = (next_offset, position)

    def locate_timestamp(self, timestamp: int) -> Iterator[tuple[int, BatchHeader]]:
        """Batches from the index's floor entry for `timestamp` onwards."""
        if not self._loaded:
            self.ensure_loaded()
        _, offset = self.time_index.lookup(timestamp)
        _, position = self.offset_index.lookup(offset)
        return self.batches(position)

    def pread(self, size: int, position: int) -> bytes:
        """Read under the lock, so a concurrent close can never leave us reading a closed file."""
        with self.lock:
            if self._closed:
                raise SegmentClosedError(f"{self.log_path} is closed")
            faults.check(self.file.path, "read")
            fd = self.file.acquire()
            try:
                return pread_exact(fd, size, position)
            finally:
                self.file.release()

    def read(self, position: int, size: int) -> bytes:
        return self.pread(size, position)

    def read_nowait(self, position: int, size: int) -> bytearray:
        """As `read`, but only from the page cache (preadv with RWF_NOWAIT): raises
        NotCachedError when any of it would have to come from the disk, so that the event
        loop never waits for one."""
        return self._read_nowait(size, position)

    def _read_nowait(self, size: int, position: int) -> bytearray:
        buf = bytearray(size)
        got = 0
        with self.lock:
            if self._closed:
                raise SegmentClosedError(f"{self.log_path} is closed")
            faults.check(self.file.path, "read")
            fd = self.file.acquire()
            try:
                while got < size:
                    try:
                        n = os.preadv(fd, [memoryview(buf)[got:]], position + got, _RWF_NOWAIT)
                    except BlockingIOError:
                        raise NotCachedError(f"{self.log_path} at {position + got}") from None
                    except OSError as exc:
                        # A file system without RWF_NOWAIT (tmpfs on older kernels): the
                        # read goes to the worker pool as if uncached.
                        if exc.errno != errno.EOPNOTSUPP:
                            raise
                        raise NotCachedError(f"{self.log_path}: no RWF_NOWAIT") from None
                    if n == 0:
                        break  # end of file
                    got += n
            finally:
                self.file.release()
        if got < size:
            del buf[got:]
        return buf

    # -- durability and lifetime ---------------------------------------------------------------

    def fsync(self) -> None:
        """Write the indexes out and fsync every file of the segment."""
        with self.lock:
            if self._closed:
                return
            faults.check(self.file.path, "flush")
            fd = self.file.acquire()
            try:
                os.fsync(fd)
            finally:
                self.file.release()
            self.offset_index.fsync()
            self.time_index.fsync()
            self.txn_index.fsync()
            self.dirty = False

    def close(self) -> None:
        """Write the indexes out and give the descriptor back; reads then raise
        SegmentClosedError."""
        with self.lock:
            if self._closed:
                return
            self._closed = True
            self.file.close()
            try:
                if self._loaded:
                    # Kafka's layout: a segment with batches has both index files.
                    self.offset_index.write_pending(create=self.size > 0)
                    self.time_index.write_pending(create=self.size > 0)
            finally:
                # Raises when aborted transactions wait for a full disk: the caller must not
                # take the log for cleanly closed.
                self.txn_index.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def paths(self) -> list[Path]:
        """Every file of the segment (the indexes and the .txnindex may not exist)."""
        return [self.log_path, self.offset_index.path, self.time_index.path, self.txn_index.path]

    def rename_suffix(self, suffix: str) -> None:
        """Rename the files to `<stem>.<kind><suffix>` (e.g. '.swap', '', '.deleted').

        The .txnindex cannot be rebuilt from the .log, so it moves to '.swap' before the .log
        (whose rename commits a cleaner swap) and out of '.swap' after it; recovery.py relies
        on this order to tell a committed swap's .txnindex from an uncommitted one.
        """
        txn_path = txn_index_path(self.directory, self.base_offset, suffix)
        if suffix == ".swap":
            self.txn_index.rename(txn_path)
        log_path, index_path, time_path = segment_paths(self.directory, self.base_offset, suffix)
        os.rename(self.log_path, log_path)
        self.file.rename(log_path)
        self.offset_index.rename(index_path)
        self.time_index.rename(time_path)
        if suffix != ".swap":
            self.txn_index.rename(txn_path)
        self.suffix = suffix

    def update_parent_dir(self, directory: Path) -> None:
        """The partition directory was renamed (its replica moved to another log dir): the
        open files stay valid, only the names change."""
        self.directory = directory
        self.file.rename(directory / self.log_path.name)
        self.offset_index.path = directory / self.offset_index.path.name
        self.time_index.path = directory / self.time_index.path.name
        self.txn_index.path = directory / self.txn_index.path.name

    def delete(self, unlink: Callable[[list[Path]], object] | None = None) -> None:
        """Close, rename to `.deleted`, then unlink (file.delete.delay.ms is not honoured).

        The renames happen here; `unlink` (default: at once, in this thread) removes the
        `.deleted` files. The broker passes one that runs in its worker pool, because unlinking
        a large file frees its extents synchronously and would stall the event loop; a crash
        before it runs leaves `.deleted` files, which recovery unlinks.
        """
        with self.lock:
            self._closed = True
            self.file.close()
        renamed: list[Path] = []
        for path in self.paths():
            deleted = path.with_name(path.name.removesuffix(self.suffix) + ".deleted")
            try:
                os.rename(path, deleted)
            except FileNotFoundError:
                continue
            renamed.append(deleted)
        (unlink or unlink_paths)(renamed)

    def __repr__(self) -> str:
        return f"Segment(base={self.base_offset}, next={self._next_offset}, size={self.size})"
