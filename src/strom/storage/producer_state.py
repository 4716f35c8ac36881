"""Producer state of one partition: idempotence (sequence numbers), fencing (epochs), transactions.

What is kept per producer id (Kafka's ProducerStateEntry): the epoch, the metadata of its last
five batches (first/last sequence, last offset, offset delta, max timestamp), the epoch of the
transaction coordinator that wrote its last marker, the first offset of its open transaction,
and its last timestamp. Five batches because a producer has at most five requests in flight
(max.in.flight.requests.per.connection <= 5 with idempotence): any retry is one of them.

How a leader append is validated: producer_append.py.

Transactions and the last stable offset: `ongoing` maps the first offset of every open
transaction to its producer; a finished transaction moves to `unreplicated` until the high
watermark passes its marker. The first unstable offset is the smallest first offset of both.

Snapshots (`<20-digit offset>.snapshot`, Kafka's format: producer_snapshot.py) hold the state
after every batch below their offset, taken when a segment rolls and on close; only the last
batch of each producer survives a snapshot, as in Kafka (a retry of an older one is then
OUT_OF_ORDER_SEQUENCE_NUMBER).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from strom.protocol.records.batch_header import BatchHeader
from strom.storage.producer_append import (
    Analysis,
    BatchMetadata,
    CompletedTxn,
    Origin,
    ProducerAppendInfo,
    ProducerStateEntry,
    ProducerStateError,
)
from strom.storage.producer_snapshot import (
    SNAPSHOT_FILE,
    CorruptSnapshotError,
    SnapshotRow,
    read_snapshot,
    snapshot_path,
    write_snapshot,
)
from strom.storage.txn_index import AbortedTxn, TransactionIndex

# Imported from here by the partition log and the produce path.
__all__ = [
    "Analysis",
    "Origin",
    "ProducerStateError",
    "ProducerStateManager",
    "read_entries",
    "write_entries",
]

log = logging.getLogger("strom.storage")


class ProducerStateManager:
    __slots__ = (
        "_due",
        "_unsynced",
        "directory",
        "last_snap_offset",
        "map_end_offset",
        "ongoing",
        "producers",
        "snapshots",
        "unreplicated",
        "where",
    )

    def __init__(self, directory: Path, where: str) -> None:
        self.directory = directory
        self.where = where
        self.producers: dict[int, ProducerStateEntry] = {}
        self.ongoing: dict[int, int] = {}  # first offset of an open transaction -> producer id
        # Finished transactions whose marker is not yet below the high watermark:
        # first offset -> (producer id, marker offset).
        self.unreplicated: dict[int, tuple[int, int]] = {}
        self.map_end_offset = 0  # the state covers every batch below this offset
        self.last_snap_offset = 0
        self.snapshots: list[int] = sorted(self._scan_snapshots())
        self._unsynced: list[Path] = []
        # (offset, rows) of a snapshot taken but not written yet (take_snapshot_later).
        self._due: tuple[int, list[SnapshotRow]] | None = None

    def update_parent_dir(self, directory: Path) -> None:
        """The partition directory was renamed (its replica moved to another log dir)."""
        self.directory = directory
        self._unsynced = [directory / path.name for path in self._unsynced]

    # -- validation and updates ----------------------------------------------------------------

    def prepare_update(self, producer_id: int, origin: Origin) -> ProducerAppendInfo:
        current = self.producers.get(producer_id) or ProducerStateEntry(producer_id)
        return ProducerAppendInfo(producer_id, current, origin, self.where)

    def analyze(
        self,
        batches: Sequence[BatchHeader],
        first_offset: int,
        origin: Origin,
        marker: tuple[bool, int] | None = None,
        transaction_version: int = 0,
    ) -> Analysis:
        """Validate batches about to be appended at `first_offset` (raises ProducerStateError).

        Changes nothing: `apply` does, once the batches are written. `marker` is
        (commit, coordinator epoch) for control batches, which only the coordinator writes.
        """
        result = Analysis()
        offset = first_offset
        for header in batches:
            pid = header.producer_id
            if pid >= 0:
                if origin is Origin.CLIENT:
                    entry = self.producers.get(pid)
                    if entry is not None:
                        duplicate = entry.find_duplicate(
                            header.producer_epoch, header.base_sequence, header.last_sequence
                        )
                        if duplicate is not None:
                            return Analysis(duplicate=duplicate)
                info = result.infos.get(pid)
                if info is None:
                    info = result.infos[pid] = self.prepare_update(pid, origin)
                if header.is_control:
                    if marker is None:
                        raise ValueError("a control batch needs its marker type")
                    completed = info.append_marker(
                        marker[0],
                        marker[1],
                        header.producer_epoch,
                        offset,
                        header.max_timestamp,
                        transaction_version,
                    )
                    if completed is not None:
                        result.completed.append(completed)
                else:
                    info.append_data(header, offset)
            offset += header.last_offset_delta + 1
        return result

    def apply(self, analysis: Analysis, txn_index: TransactionIndex | None) -> None:
        """Record an analyzed append now in the log; aborts go to `txn_index` (the segment of
        the marker) unless it is None (a replay that keeps the existing index)."""
        for info in analysis.infos.values():
            self.update(info)
        for completed in analysis.completed:
            if completed.is_aborted and txn_index is not None:
                lso = self.last_stable_offset_for(completed)
                txn_index.append(
                    AbortedTxn(
                        completed.producer_id, completed.first_offset, completed.last_offset, lso
                    )
                )
            self.complete_txn(completed)

    def update(self, info: ProducerAppendInfo) -> None:
        entry = self.producers.get(info.producer_id)
        if entry is None:
            self.producers[info.producer_id] = info.updated
        else:
            entry.merge(info.updated)
        for first in info.started_txns:
            self.ongoing[first] = info.producer_id

    def last_stable_offset_for(self, completed: CompletedTxn) -> int:
        """The LSO once `completed` is done: the next open transaction of another producer."""
        for first in sorted(self.ongoing):
            if self.ongoing[first] != completed.producer_id:
                return first
        return completed.last_offset + 1

    def complete_txn(self, completed: CompletedTxn) -> None:
        if self.ongoing.pop(completed.first_offset, None) is None:
            log.warning("%s: completing a transaction that was not open: %s", self.where, completed)
            return
        self.unreplicated[completed.first_offset] = (completed.producer_id, completed.last_offset)

    def first_unstable_offset(self) -> int | None:
        if not self.ongoing and not self.unreplicated:
            return None
        return min(itertools.chain(self.ongoing, self.unreplicated))

    def on_high_watermark_updated(self, high_watermark: int) -> None:
        self._drop_unreplicated_below(high_watermark)

    def on_log_start_offset_incremented(self, log_start_offset: int) -> None:
        self._drop_unreplicated_below(log_start_offset)
        self.map_end_offset = max(self.map_end_offset, log_start_offset)
        self.last_snap_offset = self.snapshots[-1] if self.snapshots else log_start_offset

    def _drop_unreplicated_below(self, offset: int) -> None:
        if self.unreplicated:
            done = [first for first, (_, last) in self.unreplicated.items() if last < offset]
            for first in done:
                del self.unreplicated[first]

    def remove_expired(self, now_ms: int, expiration_ms: int) -> int:
        """Forget producers idle for expiration_ms (never one with an open transaction)."""
        expired = [
            pid
            for pid, entry in self.producers.items()
            if entry.current_txn_first_offset is None
            and now_ms - entry.last_timestamp >= expiration_ms
        ]
        for pid in expired:
            del self.producers[pid]
        return len(expired)

    def clear(self) -> None:
        self.producers.clear()
        self.ongoing.clear()
        self.unreplicated.clear()

    def load_entry(self, entry: ProducerStateEntry) -> None:
        self.producers[entry.producer_id] = entry
        if entry.current_txn_first_offset is not None:
            self.ongoing[entry.current_txn_first_offset] = entry.producer_id

    # -- snapshots -----------------------------------------------------------------------------

    def _scan_snapshots(self) -> Iterable[int]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return [int(m.group(1)) for m in map(SNAPSHOT_FILE.match, names) if m is not None]

    def take_snapshot(self, sync: bool) -> Path | None:
        """Write the state at map_end_offset, unless a snapshot at that offset exists already."""
        if self.map_end_offset <= self.last_snap_offset:
            return None
        offset = self.map_end_offset
        path = snapshot_path(self.directory, offset)
        write_entries(path, self.producers.values(), sync)
        if offset not in self.snapshots:
            self.snapshots.append(offset)
            self.snapshots.sort()
        self.last_snap_offset = offset
        if not sync:
            self._unsynced.append(path)
        return path

    def take_snapshot_later(self) -> None:
        """As take_snapshot(sync=False), with the file written by `write_due_snapshot`
        (opening a log must not create a file per partition: it costs a millisecond or more
        on some disks). The rows are taken now, so later appends do not leak into it."""
        if self.map_end_offset <= self.last_snap_offset:
            return
        offset = self.map_end_offset
        self._due = (offset, [_snapshot_row(entry) for entry in self.producers.values()])
        if offset not in self.snapshots:
            self.snapshots.append(offset)
            self.snapshots.sort()
        self.last_snap_offset = offset

    @property
    def snapshot_due(self) -> bool:
        return self._due is not None

    def write_due_snapshot(self) -> None:
        """Write the snapshot `take_snapshot_later` took, without fsync (any thread; raises
        OSError and keeps it due)."""
        due, self._due = self._due, None
        if due is None:
            return
        offset, rows = due
        path = snapshot_path(self.directory, offset)
        try:
            write_snapshot(path, rows, sync=False)
        except OSError:
            self._due = due
            raise
        self._unsynced.append(path)

    def sync_snapshots(self) -> None:
        """fsync the snapshots written without it (called by the log's flush, maybe off-loop)."""
        pending, self._unsynced = self._unsynced, []
        for path in pending:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def delete_snapshot(self, offset: int) -> None:
        due = self._due
        if due is not None and due[0] == offset:
            self._due = None
        if offset in self.snapshots:
            self.snapshots.remove(offset)
        snapshot_path(self.directory, offset).unlink(missing_ok=True)

    def delete_snapshots_where(self, doomed: Iterable[int]) -> None:
        for offset in list(doomed):
            self.delete_snapshot(offset)

    def remove_stray_snapshots(self, segment_bases: Iterable[int]) -> None:
        """Delete snapshots not at a segment base, except the newest one above every base."""
        bases = set(segment_bases)
        newest_base = max(bases) if bases else None
        stray = [offset for offset in self.snapshots if offset not in bases]
        keep = stray[-1] if stray and (newest_base is None or stray[-1] > newest_base) else None
        self.delete_snapshots_where(offset for offset in stray if offset != keep)

    def load_latest_snapshot(
        self, limit: int, log_start_offset: int, now_ms: int, expiration_ms: int
    ) -> bool:
        """Load the newest readable snapshot at or below `limit`; corrupt ones are deleted."""
        for offset in reversed([o for o in self.snapshots if o <= limit]):
            path = snapshot_path(self.directory, offset)
            try:
                entries = read_entries(path)
            except (CorruptSnapshotError, OSError) as exc:
                log.warning(
                    "%s: deleting unreadable producer snapshot %s: %s", self.where, path, exc
                )
                self.delete_snapshot(offset)
                continue
            for entry in entries:
                if entry.current_txn_first_offset is not None or (
                    now_ms - entry.last_timestamp < expiration_ms
                ):
                    self.load_entry(entry)
            self.map_end_offset = self.last_snap_offset = offset
            log.debug("%s: loaded producer snapshot %s", self.where, path)
            return True
        self.map_end_offset = self.last_snap_offset = log_start_offset
        return False

    def truncate_fully_and_start_at(self, offset: int) -> None:
        self.clear()
        self.delete_snapshots_where(self.snapshots)
        self.last_snap_offset = 0
        self.map_end_offset = offset


def _snapshot_row(entry: ProducerStateEntry) -> SnapshotRow:
    return SnapshotRow(
        entry.producer_id,
        entry.producer_epoch,
        entry.last_seq,
        entry.last_data_offset,
        entry.last_offset_delta,
        entry.last_timestamp,
        entry.coordinator_epoch,
        -1 if entry.current_txn_first_offset is None else entry.current_txn_first_offset,
    )


def _entry_of(row: SnapshotRow) -> ProducerStateEntry:
    entry = ProducerStateEntry(
        row.producer_id,
        row.epoch,
        row.coordinator_epoch,
        row.timestamp,
        None if row.current_txn_first_offset < 0 else row.current_txn_first_offset,
    )
    if row.last_offset >= 0:
        entry.batches.append(
            BatchMetadata(row.last_sequence, row.last_offset, row.offset_delta, row.timestamp)
        )
    return entry


def write_entries(path: Path, entries: Iterable[ProducerStateEntry], sync: bool) -> None:
    write_snapshot(path, [_snapshot_row(entry) for entry in entries], sync)


def read_entries(path: Path) -> list[ProducerStateEntry]:
    return [_entry_of(row) for row in read_snapshot(path)]
