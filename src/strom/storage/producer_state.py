"""Producer state of one partition: idempotence (sequence numbers), fencing (epochs), transactions.

What is kept per producer id (Kafka's ProducerStateEntry): the epoch, the metadata of its last
five batches (first/last sequence, last offset, offset delta, max timestamp), the epoch of the
transaction coordinator that wrote its last marker, the first offset of its open transaction,
and its last timestamp. Five batches because a producer has at most five requests in flight
(max.in.flight.requests.per.connection <= 5 with idempotence): any retry is one of them.

Validation of a leader append (`ProducerStateManager.analyze`, Kafka's ProducerAppendInfo):
  * duplicate: same epoch and the exact first/last sequence of a remembered batch. Nothing is
    written; the caller answers NONE with the original offsets (Kafka does, for a client append).
  * epoch lower than the known one: INVALID_PRODUCER_EPOCH (47). Kafka answers this (not
    PRODUCER_FENCED) on the produce path since 2.7, for transactional producers too.
  * a new (higher) epoch must start at sequence 0, else OUT_OF_ORDER_SEQUENCE_NUMBER (45),
    unless the producer is unknown here.
  * same epoch: the first sequence must follow the last one (last + 1; 0 after 2**31 - 1),
    else OUT_OF_ORDER_SEQUENCE_NUMBER.
  * an unknown producer id (never seen, or expired, or its data deleted by retention) is
    accepted at any sequence: since KIP-360 (Kafka 2.5) the broker no longer answers
    UNKNOWN_PRODUCER_ID from the produce path, and neither do we.
  * a non-transactional batch while the producer has an open transaction: INVALID_TXN_STATE
    (48). A transactional batch with no open transaction starts one at its offset. Kafka 4.0
    first asks the coordinator whether the partition is in the transaction
    (transaction.partition.verification.enable); we do not verify (see the produce handler).
  * markers (control batches from the coordinator): epoch as above (with transaction
    version 2 the marker epoch must exceed the producer's, except for a retried marker of a
    finished transaction), coordinator epoch not older than the last marker's, else
    TRANSACTION_COORDINATOR_FENCED (52). A marker ends the open transaction; an abort is then
    recorded in the segment's transaction index (txn_index.py).
Replay (loading, truncation) validates nothing: it only rebuilds the state from the log.

Transactions and the last stable offset: `ongoing` maps the first offset of every open
transaction to its producer; a finished transaction moves to `unreplicated` until the high
watermark passes its marker. The first unstable offset is the smallest first offset of both.

Snapshots (`<20-digit offset>.snapshot`, Kafka's format: producer_snapshot.py) hold the state
after every batch below their offset, taken when a segment rolls and on close; only the last
batch of each producer survives a snapshot, as in Kafka (a retry of an older one is then
OUT_OF_ORDER_SEQUENCE_NUMBER).
"""

from __future__ import annotations

import enum
import itertools
import logging
import os
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from strom.protocol.records.batch_header import BatchHeader
from strom.storage.errors import StorageError
from strom.storage.producer_snapshot import (
    SNAPSHOT_FILE,
    CorruptSnapshotError,
    SnapshotRow,
    read_snapshot,
    snapshot_path,
    write_snapshot,
)
from strom.storage.txn_index import AbortedTxn, TransactionIndex

log = logging.getLogger("strom.storage")

NUM_BATCHES_TO_RETAIN = 5
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
INT32_MAX = 0x7FFFFFFF


class Origin(enum.Enum):
    CLIENT = "client"  # produce requests: full validation, duplicates detected
    COORDINATOR = "coordinator"  # markers: epochs checked, no sequences
    REPLICATION = "replication"  # replay and followers: nothing refused


# -- errors -------------------------------------------------------------------------------------


class ProducerStateError(StorageError):
    """An append refused by producer state; `error_code` is the Kafka code to answer with."""


class OutOfOrderSequenceError(ProducerStateError):
    error_code = 45


class InvalidProducerEpochError(ProducerStateError):
    error_code = 47


class InvalidTxnStateError(ProducerStateError):
    error_code = 48


class TransactionCoordinatorFencedError(ProducerStateError):
    error_code = 52


# -- entries ------------------------------------------------------------------------------------


def decrement_sequence(sequence: int, delta: int) -> int:
    """`sequence - delta` in the wrapping int32 sequence space."""
    if sequence < delta:
        return INT32_MAX - (delta - sequence) + 1
    return sequence - delta


def in_sequence(last: int, following: int) -> bool:
    return following == last + 1 or (following == 0 and last == INT32_MAX)


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    last_seq: int
    last_offset: int
    offset_delta: int
    timestamp: int

    @property
    def first_seq(self) -> int:
        return decrement_sequence(self.last_seq, self.offset_delta)

    @property
    def first_offset(self) -> int:
        return self.last_offset - self.offset_delta


@dataclass(slots=True)
class ProducerStateEntry:
    producer_id: int
    producer_epoch: int = NO_PRODUCER_EPOCH
    coordinator_epoch: int = -1
    last_timestamp: int = -1
    current_txn_first_offset: int | None = None
    batches: deque[BatchMetadata] = field(default_factory=deque)

    @property
    def is_empty(self) -> bool:
        return not self.batches

    @property
    def first_seq(self) -> int:
        return self.batches[0].first_seq if self.batches else NO_SEQUENCE

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    @property
    def last_data_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else -1

    @property
    def last_offset_delta(self) -> int:
        return self.batches[-1].offset_delta if self.batches else 0

    def without_batches(self) -> ProducerStateEntry:
        return ProducerStateEntry(
            self.producer_id,
            self.producer_epoch,
            self.coordinator_epoch,
            self.last_timestamp,
            self.current_txn_first_offset,
        )

    def find_duplicate(self, epoch: int, first_seq: int, last_seq: int) -> BatchMetadata | None:
        if epoch != self.producer_epoch:
            return None
        for batch in self.batches:
            if batch.first_seq == first_seq and batch.last_seq == last_seq:
                return batch
        return None

    def maybe_update_epoch(self, epoch: int) -> None:
        """A new epoch starts a new sequence space: the remembered batches are forgotten."""
        if epoch != self.producer_epoch:
            self.batches.clear()
            self.producer_epoch = epoch

    def add_batch(self, epoch: int, last_seq: int, last_offset: int, delta: int, ts: int) -> None:
        self.maybe_update_epoch(epoch)
        if len(self.batches) == NUM_BATCHES_TO_RETAIN:
            self.batches.popleft()
        self.batches.append(BatchMetadata(last_seq, last_offset, delta, ts))
        self.last_timestamp = ts

    def merge(self, newer: ProducerStateEntry) -> None:
        """Apply the result of an append (an entry derived from this one by ProducerAppendInfo)."""
        self.maybe_update_epoch(newer.producer_epoch)
        for batch in newer.batches:
            if len(self.batches) == NUM_BATCHES_TO_RETAIN:
                self.batches.popleft()
            self.batches.append(batch)
        self.coordinator_epoch = newer.coordinator_epoch
        self.current_txn_first_offset = newer.current_txn_first_offset
        self.last_timestamp = newer.last_timestamp


@dataclass(frozen=True, slots=True)
class CompletedTxn:
    producer_id: int
    first_offset: int
    last_offset: int  # the marker's offset
    is_aborted: bool


# -- validating one producer's part of an append ------------------------------------------------


class ProducerAppendInfo:
    """Checks one producer's batches against its state and builds the entry they lead to."""

    def __init__(
        self, producer_id: int, current: ProducerStateEntry, origin: Origin, where: str
    ) -> None:
        self.producer_id = producer_id
        self.current = current
        self.origin = origin
        self.where = where
        self.updated = current.without_batches()
        self.started_txns: list[int] = []  # first offsets of transactions begun by this append

    def _check_epoch(self, epoch: int, offset: int, transaction_version: int) -> None:
        current = self.updated.producer_epoch
        invalid = epoch <= current if transaction_version >= 2 else epoch < current
        if not invalid:
            return
        if (
            transaction_version >= 2
            and epoch == current
            and self.updated.current_txn_first_offset is None
        ):
            return  # a retried marker of a transaction that is already over
        message = (
            f"epoch {epoch} of producer {self.producer_id} at offset {offset} in {self.where} "
            f"is older than the last seen epoch {current}"
        )
        if self.origin is Origin.REPLICATION:
            log.warning("%s", message)
            return
        raise InvalidProducerEpochError(message)

    def _check_sequence(self, epoch: int, first_seq: int, offset: int) -> None:
        if epoch != self.updated.producer_epoch:
            if first_seq != 0 and self.updated.producer_epoch != NO_PRODUCER_EPOCH:
                raise OutOfOrderSequenceError(
                    f"producer {self.producer_id} at offset {offset} in {self.where}: a new epoch "
                    f"{epoch} must start at sequence 0, not {first_seq}"
                )
            return
        if not self.updated.is_empty:
            last = self.updated.last_seq
        elif epoch == self.current.producer_epoch:
            last = self.current.last_seq
        else:
            last = NO_SEQUENCE
        # A producer whose state was lost (expired, or its batches deleted) has no epoch here;
        # it is accepted at any sequence.
        if self.current.producer_epoch != NO_PRODUCER_EPOCH and not in_sequence(last, first_seq):
            raise OutOfOrderSequenceError(
                f"producer {self.producer_id} at offset {offset} in {self.where}: sequence "
                f"{first_seq} does not follow {last}"
            )

    def append_data(self, header: BatchHeader, first_offset: int) -> None:
        """A data batch whose first offset in the log is `first_offset`."""
        epoch = header.producer_epoch
        self._check_epoch(epoch, first_offset, 0)
        if self.origin is Origin.CLIENT:
            self._check_sequence(epoch, header.base_sequence, first_offset)
        delta = header.last_offset_delta
        self.updated.add_batch(
            epoch, header.last_sequence, first_offset + delta, delta, header.max_timestamp
        )
        open_txn = self.updated.current_txn_first_offset
        if open_txn is not None and not header.is_transactional:
            raise InvalidTxnStateError(
                f"producer {self.producer_id} wrote a non-transactional batch at offset "
                f"{first_offset} in {self.where} while its transaction from {open_txn} is open"
            )
        if open_txn is None and header.is_transactional:
            self.updated.current_txn_first_offset = first_offset
            self.started_txns.append(first_offset)

    def append_marker(
        self,
        commit: bool,
        coordinator_epoch: int,
        producer_epoch: int,
        offset: int,
        timestamp: int,
        transaction_version: int = 0,
    ) -> CompletedTxn | None:
        """An end-transaction marker at `offset`; the finished transaction, if it had data."""
        self._check_epoch(producer_epoch, offset, transaction_version)
        if self.updated.coordinator_epoch > coordinator_epoch:
            message = (
                f"marker for producer {self.producer_id} at offset {offset} in {self.where} has "
                f"coordinator epoch {coordinator_epoch}, older than {self.updated.coordinator_epoch}"
            )
            if self.origin is not Origin.REPLICATION:
                raise TransactionCoordinatorFencedError(message)
            log.info("%s", message)
        first = self.updated.current_txn_first_offset
        completed = (
            None if first is None else CompletedTxn(self.producer_id, first, offset, not commit)
        )
        self.updated.maybe_update_epoch(producer_epoch)
        self.updated.coordinator_epoch = coordinator_epoch
        self.updated.current_txn_first_offset = None
        self.updated.last_timestamp = timestamp
        return completed


@dataclass(slots=True)
class Analysis:
    """The outcome of validating an append: per-producer updates, or the duplicate it repeats."""

    infos: dict[int, ProducerAppendInfo] = field(default_factory=dict)
    completed: list[CompletedTxn] = field(default_factory=list)
    duplicate: BatchMetadata | None = None


# -- the manager --------------------------------------------------------------------------------


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
