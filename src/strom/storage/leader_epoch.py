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
    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self.epochs: list[int] = []
        self.start_offsets: list[int] = []
        # `assign` runs on the produce path (the first append of every partition and epoch):
        # it writes the file without fsync and leaves that to the log's next flush, as Kafka
        # does since KAFKA-15046. Records below the recovery point were flushed with it; the
        # unflushed ones are at the mercy of the page cache exactly as the records are.
        self.needs_sync = False
        # `assign` could not write the file (a full disk): the next sync writes it, the
        # entries are in memory meanwhile.
        self.unwritten = False
        self._load()

    def _load(self) -> None:
        try:
            data = read_file(self.path)
        except FileNotFoundError:
            return
        try:
            entries = [(int(e), int(o)) for e, o in parse_lines(data, 2)]
        except (CheckpointFormatError, ValueError) as exc:
            log.warning("ignoring malformed %s: %s", self.path, exc)
            return
        for epoch, offset in entries:
            self._assign(epoch, offset)

    def _flush(self, sync: bool = True) -> None:
        data = format_lines(zip(self.epochs, self.start_offsets, strict=True))
        write_atomically(self.path, data, sync=sync)
        self.needs_sync = not sync

    def sync(self) -> None:
        """fsync a checkpoint that `assign` wrote without it (PartitionLog.flush, in a worker),
        or write it if `assign` could not (raises OSError when it still cannot)."""
        if self.unwritten:
            self._flush(sync=True)
            self.unwritten = False
        elif self.needs_sync:
            self.needs_sync = False
            sync_file(self.path)

    def update_parent_dir(self, directory: Path) -> None:
        """The partition directory was renamed (its replica moved to another log dir)."""
        self.path = directory / FILE_NAME

    def write_unwritten(self) -> None:
        """Write the file if `assign` could not, without fsync (raises OSError)."""
        if self.unwritten:
            self._flush(sync=False)
            self.unwritten = False

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

    def assign(self, epoch: int, start_offset: int) -> None:
        """Record that `epoch` starts at `start_offset`, if it is newer than the latest."""
        if self._assign(epoch, start_offset):
            try:
                self._flush(sync=False)
            except OSError as exc:  # on the produce path, after the records were written
                log.warning(
                    "%s: could not be written now (%s); retried at the next flush", self.path, exc
                )
                self.unwritten = True

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
            self._flush()

    def truncate_from_start(self, start_offset: int) -> None:
        """The log now starts at `start_offset`: older epochs go, the one covering it starts there."""
        covering = bisect.bisect_right(self.start_offsets, start_offset) - 1
        if covering < 0 or (covering == 0 and self.start_offsets[0] == start_offset):
            return
        del self.epochs[:covering], self.start_offsets[:covering]
        self.start_offsets[0] = start_offset
        self._flush()

    def clear(self) -> None:
        if self.epochs:
            self.epochs, self.start_offsets = [], []
            self._flush()
