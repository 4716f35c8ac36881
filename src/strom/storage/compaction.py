"""Kafka's compaction rules: which batches and records one cleaning pass keeps, and how.

A pass walks every batch of the cleaned range in offset order (cleaner.py drives it). Per batch
(Kafka's `LogCleaner.cleanInto` filter and `MemoryRecords.filterTo`):

  1. Transaction state (`TxnCleaningState`, Kafka's CleanedTransactionMetadata) decides whether
     the batch may be discarded: a data batch may when it belongs to an aborted transaction (the
     aborted transaction index says so); an ABORT marker may when no batch of its transaction
     was met in this pass (it is then also left out of the cleaned transaction index); a COMMIT
     marker may when no batch of its transaction was met since the producer's previous marker;
     an emptied control batch always may.
  2. The batch's fate, first rule that applies:
       RETAIN_EMPTY  it is the last batch of an active producer: the batch holding the producer's
                     last data offset, or, for a producer without one, its marker of the current
                     epoch. Its sequence numbers and epoch are what idempotence and fencing need
                     after a reload, so it stays even with no records left;
       RETAIN_EMPTY  it ends exactly at the upper bound of the pass (the base of the first segment
                     not cleaned), so that the end of the cleaned range stays known;
       DELETE        a data batch that may be discarded, or a marker that may be discarded whose
                     delete horizon has passed;
       DELETE_EMPTY  otherwise: kept if a record survives.
  3. Records (unless the whole batch is discarded): control records stay; a data record stays
     when it is past the key map's range, or it has a key, no later record with the same key
     exists in the map, and it has a value or its delete horizon has not passed. Keyless
     records go (the server refuses them on compacted topics anyway).
  4. Output: the original bytes when every record stayed and no delete horizon has to be set;
     else the batch rebuilt from the kept records with the same base offset, last offset
     (last_offset_delta is kept so the producer's last sequence survives), producer id, epoch,
     base sequence, leader epoch, codec, timestamp type and control/transactional bits; a kept
     batch with no record is written as a bare header (`build_empty_batch`).

Delete horizons (KIP-534) live in the batch: attribute bit 6 set and the base timestamp replaced
by the horizon (records' timestamp deltas are re-based, so their timestamps do not change). The
first pass that keeps a tombstone, or a marker it may discard, sets horizon = now +
delete.retention.ms; later passes keep it; the first pass at or after the horizon drops the
tombstones and markers. Nothing about horizons is kept anywhere else.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from strom.protocol.records.batch_header import BatchHeader
from strom.protocol.records.codec import Record, build_batch, build_empty_batch, decode_records
from strom.protocol.records.control import CONTROL_ABORT, CONTROL_COMMIT, parse_control_record
from strom.protocol.records.errors import RecordError
from strom.storage.txn_index import AbortedTxn

NO_HORIZON = 2**63 - 1  # "no delete horizon pending": later than any time


@dataclass(frozen=True, slots=True)
class ProducerLast:
    """What the cleaner must keep of an active producer (Kafka's LastRecord)."""

    last_data_offset: int | None  # last offset of its last data batch; None if it has none
    epoch: int


class Retention(enum.Enum):
    DELETE = "delete"
    RETAIN_EMPTY = "retain-empty"
    DELETE_EMPTY = "delete-empty"


@dataclass(slots=True)
class _AbortedInPass:
    txn: AbortedTxn
    observed: bool = False  # a batch of the transaction was met in this pass


class TxnCleaningState:
    """Transactions met so far in a pass (one instance per pass, batches fed in offset order).

    `aborted` are the aborted transactions overlapping the pass's range (from the transaction
    indexes). `kept_aborts` collects, in marker order, the index entries of ABORT markers that
    stay because batches of their transaction were met: the cleaned segment's index gets them.
    """

    def __init__(self, aborted: Iterable[AbortedTxn]) -> None:
        self._pending = deque(sorted(set(aborted), key=lambda txn: txn.first_offset))
        self._ongoing_aborted: dict[int, _AbortedInPass] = {}
        self._ongoing_committed: set[int] = set()
        self.kept_aborts: list[AbortedTxn] = []

    def _start_aborted_up_to(self, offset: int) -> None:
        pending = self._pending
        while pending and pending[0].first_offset <= offset:
            txn = pending.popleft()
            self._ongoing_aborted.setdefault(txn.producer_id, _AbortedInPass(txn))

    def on_data_batch(self, header: BatchHeader) -> bool:
        """Note a data batch; True when it belongs to an aborted transaction."""
        self._start_aborted_up_to(header.last_offset)
        if not header.is_transactional:
            return False
        aborted = self._ongoing_aborted.get(header.producer_id)
        if aborted is not None:
            aborted.observed = True
            return True
        self._ongoing_committed.add(header.producer_id)
        return False

    def on_control_batch(self, header: BatchHeader, kind: int | None) -> bool:
        """Note a control batch of type `kind` (None: it has no record); True when it may go."""
        self._start_aborted_up_to(header.last_offset)
        if kind is None:
            return True  # emptied by an earlier pass
        if kind == CONTROL_ABORT:
            aborted = self._ongoing_aborted.pop(header.producer_id, None)
            if aborted is not None and aborted.observed:
                self.kept_aborts.append(aborted.txn)
                return False
            return True
        if kind == CONTROL_COMMIT:
            if header.producer_id in self._ongoing_committed:
                self._ongoing_committed.discard(header.producer_id)
                return False
            return True
        return False  # other control types are kept


@dataclass(slots=True)
class PassStats:
    records_removed: int = 0
    batches_removed: int = 0
    empty_batches_kept: int = 0
    # The earliest delete horizon of what was kept only because its horizon is still ahead:
    # the time a later pass would remove something (NO_HORIZON: nothing).
    earliest_horizon: int = NO_HORIZON

    def note_horizon(self, horizon: int) -> None:
        self.earliest_horizon = min(self.earliest_horizon, horizon)


def control_kind(records: list[Record]) -> int | None:
    """The control record type of a control batch's records; None when there is none."""
    if not records:
        return None
    try:
        kind, _ = parse_control_record(records[0])
    except RecordError:
        return -1  # unreadable: kept, like a control type we do not know
    return kind


class BatchFilter:
    """Applies the module's rules to the batches of one pass.

    `key_map`: key -> offset of its latest record in the dirty section, covering offsets below
    `map_end`. `upper_bound`: the base offset of the first segment the pass does not clean.
    `producers`: the active producers' last records, taken when the pass was planned.
    """

    def __init__(
        self,
        key_map: Mapping[bytes, int],
        map_end: int,
        upper_bound: int,
        producers: Mapping[int, ProducerLast],
        now_ms: int,
        delete_retention_ms: int,
        txns: TxnCleaningState,
        stats: PassStats,
    ) -> None:
        self.key_map = key_map
        self.map_end = map_end
        self.upper_bound = upper_bound
        self.producers = producers
        self.now_ms = now_ms
        self.delete_retention_ms = delete_retention_ms
        self.txns = txns
        self.stats = stats

    def _is_last_of_producer(self, header: BatchHeader) -> bool:
        last = self.producers.get(header.producer_id)
        if last is None:
            return False
        if last.last_data_offset is not None:
            return header.last_offset == last.last_data_offset
        return header.is_control and header.producer_epoch == last.epoch

    def _horizon_passed(self, header: BatchHeader) -> bool:
        return header.has_delete_horizon and header.first_timestamp <= self.now_ms

    def _keeps_record(self, header: BatchHeader, record: Record) -> bool:
        if record.offset >= self.map_end:
            return True
        if record.key is None:
            return False
        if record.offset < self.key_map.get(record.key, -1):
            return False  # a later record has the same key
        return record.value is not None or not self._horizon_passed(header)

    def filter(self, header: BatchHeader, read: bytes | bytearray | memoryview) -> bytes | None:
        """The batch as the cleaned segment holds it (None: dropped). `read` is the batch's
        bytes as stored; the records are decoded only when some may go."""
        records: list[Record] | None = None
        if header.is_control:
            records = decode_records(memoryview(read))[1]
            may_discard = self.txns.on_control_batch(header, control_kind(records))
            discard_records = may_discard and self._horizon_passed(header)
        else:
            may_discard = self.txns.on_data_batch(header)
            discard_records = may_discard
        last_of_producer = header.producer_id >= 0 and self._is_last_of_producer(header)
        if last_of_producer or header.next_offset == self.upper_bound:
            retention = Retention.RETAIN_EMPTY
        elif discard_records:
            retention = Retention.DELETE
        else:
            retention = Retention.DELETE_EMPTY
        count = header.records_count
        if retention is Retention.DELETE:
            self.stats.records_removed += count
            self.stats.batches_removed += 1
            return None
        if discard_records:
            kept: list[Record] = []
        else:
            if records is None:
                records = decode_records(memoryview(read))[1]
            kept = (
                records
                if header.is_control
                else [record for record in records if self._keeps_record(header, record)]
            )
        self.stats.records_removed += count - len(kept)
        if not kept:
            if retention is Retention.RETAIN_EMPTY:
                self.stats.empty_batches_kept += 1
                return build_empty_batch(header)
            self.stats.batches_removed += 1
            return None
        marker_may_go = may_discard and header.is_control
        has_tombstone = not header.is_control and any(r.value is None for r in kept)
        needs_horizon = (has_tombstone or marker_may_go) and not header.has_delete_horizon
        horizon: int | None = None
        if needs_horizon:
            horizon = self.now_ms + self.delete_retention_ms
        elif header.has_delete_horizon:
            horizon = header.first_timestamp
        if horizon is not None and (has_tombstone or marker_may_go):
            self.stats.note_horizon(horizon)
        if len(kept) == count and not needs_horizon:
            return bytes(read)
        return build_batch(
            kept,
            base_offset=header.base_offset,
            last_offset_delta=header.last_offset_delta,
            compression=header.compression,
            timestamp_type=header.timestamp_type,
            producer_id=header.producer_id,
            producer_epoch=header.producer_epoch,
            base_sequence=header.base_sequence,
            is_transactional=header.is_transactional,
            is_control=header.is_control,
            has_delete_horizon=horizon is not None,
            partition_leader_epoch=header.partition_leader_epoch,
            first_timestamp=horizon,
            max_timestamp=header.max_timestamp if header.timestamp_type else None,
        )


def map_keys(
    key_map: dict[bytes, int],
    header: BatchHeader,
    read: bytes | bytearray | memoryview,
    txns: TxnCleaningState,
    dirty_from: int,
) -> None:
    """Add a batch of the dirty section to the key map (Kafka's buildOffsetMapForSegment):
    aborted batches and control batches add nothing, so they never shadow a committed record."""
    if header.is_control:
        txns.on_control_batch(header, control_kind(decode_records(memoryview(read))[1]))
        return
    if txns.on_data_batch(header) or header.last_offset < dirty_from:
        return
    for record in decode_records(memoryview(read))[1]:
        if record.key is not None and record.offset >= dirty_from:
            key_map[record.key] = record.offset
