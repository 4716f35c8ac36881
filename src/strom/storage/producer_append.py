"""One producer's state and the checks of its part of an append (Kafka's ProducerStateEntry
and ProducerAppendInfo): the errors a refused append raises, the entry kept per producer id, and
what an append leads to (`Analysis`). `ProducerStateManager` (producer_state.py) keeps the
entries of a partition, its transactions and snapshots.

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
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from dataclasses import dataclass, field

from strom.protocol.records.batch_header import BatchHeader
from strom.storage.errors import StorageError

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
