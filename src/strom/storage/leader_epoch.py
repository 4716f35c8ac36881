"""The leader epoch cache: which leader epoch started at which offset.

Persisted as `leader-epoch-checkpoint` in the partition directory, Kafka's format:
    0\\n<count>\\n<epoch> <start offset>\\n...
Entries increase in both epoch and start offset. Used to answer OffsetsForLeaderEpoch (the end
offset of an epoch is the start offset of the next larger epoch, or the log end for the latest)
and to decide what a follower truncates.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
from pathlib import Path

from strom.storage.checkpoint import (
    CheckpointFormatError,
    format_lines,
    parse_lines,
    sync_file,
    write_atomically,
)
from strom.storage.file_cache import read_file

log = logging.getLogger("strom.storage")

FILE_NAME = "leader-epoch-checkpoint"
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


class LeaderEpochCache:
    """Entries in memory, the file written after each change.

    A change made on the produce path (`assign(..., defer=True)`: the first append of a
    partition and epoch) is not written there: creating a file costs a millisecond or more on
    some disks, a hundred seconds for the first record of each of 100,000 partitions. The
    broker writes such files from its worker pool a moment later (`write_unwritten`), the next
    flush writes and fsyncs them (`sync`), and so does closing the log. A crash before that
    loses nothing: recovery stamps the epochs again from the batches it validates, as Kafka's
    does. Kafka writes the file on assign without fsync since KAFKA-15046; the records of an
    unflushed epoch are at the mercy of the page cache exactly as the file is.

    Writes may come from a worker thread while the event loop changes the entries: every
    change bumps `_version` and publishes an immutable `_snapshot`; a writer writes a snapshot
    and records its version, under `_file_lock` (one writer of the file at a time).
    """

    __slots__ = (
        "_file",
        "_file_lock",
        "_snapshot",
        "_synced",
        "_version",
        "_written",
        "epochs",
        "start_offsets",
    )

    def __init__(self, directory: Path) -> None:
        self._file = os.path.join(directory, FILE_NAME)  # a str: a Path costs half a kilobyte
        self.epochs: list[int] = []
        self.start_offsets: list[int] = []
        self._snapshot: tuple[tuple[int, int], ...] = ()
        self._version = 0  # bumped by every change
        self._written = 0  # the version the file holds
        self._synced = 0  # the version made durable
        self._file_lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        try:
            data = read_file(self._file)
        except FileNotFoundError:
            return
        try:
            entries = [(int(e), int(o)) for e, o in parse_lines(data, 2)]
        except (CheckpointFormatError, ValueError) as exc:
            log.warning("ignoring malformed %s: %s", self.path, exc)
            return
        for epoch, offset in entries:
            self._assign(epoch, offset)
        self._snapshot = tuple(zip(self.epochs, self.start_offsets, strict=True))

    @property
    def path(self) -> Path:
        return Path(self._file)

    @property
    def unwritten(self) -> bool:
        return self._version != self._written

    def _changed(self, *, defer: bool = False, sync: bool = False) -> None:
        self._snapshot = tuple(zip(self.epochs, self.start_offsets, strict=True))
        self._version += 1
        if defer:
            return
        try:
            self._write(sync=sync)
        except OSError as exc:
            log.warning("%s: could not be written now (%s); retried later", self.path, exc)

    def _write(self, sync: bool) -> None:
        with self._file_lock:
            version, snapshot = self._version, self._snapshot
            if version != self._written:
                write_atomically(self.path, format_lines(snapshot), sync=sync)
                self._written = version
                if sync:
                    self._synced = version
            elif sync and self._synced != self._written:
                sync_file(self.path)
                self._synced = self._written

    def write_unwritten(self) -> None:
        """Write the file if the entries changed since it was written, without fsync (any
        thread; raises OSError)."""
        if self.unwritten:
            self._write(sync=False)

    def sync(self) -> None:
        """Write the file if it is behind and fsync it if that was not done yet
        (PartitionLog.flush, in a worker thread; raises OSError)."""
        if self._version != self._synced:
            self._write(sync=True)

    def update_parent_dir(self, directory: Path) -> None:
        """The partition directory was renamed (its replica moved to another log dir)."""
        self._file = os.path.join(directory, FILE_NAME)

    @property
    def latest_epoch(self) -> int:
        return self.epochs[-1] if self.epochs else UNDEFINED_EPOCH

    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self.epochs, self.start_offsets, strict=True))

    def _assign(self, epoch: int, start_offset: int) -> bool:
        if epoch < 0 or (self.epochs and epoch <= self.epochs[-1]):
            return False
        # A new epoch that starts at or before an older entry's offset supersedes those entries
        # (they described offsets that the new leader's log overwrote).
        while self.start_offsets and self.start_offsets[-1] >= start_offset:
            self.epochs.pop()
            self.start_offsets.pop()
        self.epochs.append(epoch)
        self.start_offsets.append(start_offset)
        return True

    def assign(self, epoch: int, start_offset: int, *, defer: bool = False) -> bool:
        """Record that `epoch` starts at `start_offset`, if it is newer than the latest;
        `defer`: leave the file to a later write (see the class). True when it was newer."""
        if not self._assign(epoch, start_offset):
            return False
        self._changed(defer=defer)
        return True

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(epoch, end offset) as OffsetsForLeaderEpoch answers it.

        For the latest epoch the end is the log end; for an older epoch, the start offset of the
        next larger epoch, paired with the largest known epoch <= the requested one (or the
        requested one when it is below every known epoch). Unknown: (-1, -1).
        """
        if epoch == UNDEFINED_EPOCH or not self.epochs:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if epoch == self.epochs[-1]:
            return epoch, log_end_offset
        higher = bisect.bisect_right(self.epochs, epoch)
        if higher >= len(self.epochs):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if higher == 0:
            return epoch, self.start_offsets[0]
        return self.epochs[higher - 1], self.start_offsets[higher]

    def truncate_from_end(self, end_offset: int) -> None:
        """Drop epochs starting at or after `end_offset` (the log was truncated there)."""
        keep = bisect.bisect_left(self.start_offsets, end_offset)
        if keep < len(self.epochs):
            del self.epochs[keep:], self.start_offsets[keep:]
            self._changed(sync=True)

    def truncate_from_start(self, start_offset: int) -> None:
        """The log now starts at `start_offset`: older epochs go, the one covering it starts there."""
        covering = bisect.bisect_right(self.start_offsets, start_offset) - 1
        if covering < 0 or (covering == 0 and self.start_offsets[0] == start_offset):
            return
        del self.epochs[:covering], self.start_offsets[:covering]
        self.start_offsets[0] = start_offset
        self._changed(sync=True)

    def clear(self) -> None:
        if self.epochs:
            self.epochs, self.start_offsets = [], []
            self._changed(sync=True)
