"""TransactionCoordinatorShard: the transaction coordinator for one `__transaction_state`
partition, without I/O.

The runtime drives a shard with these calls:
- request handlers (`init_producer_id`, `add_partitions`, `end_txn`) return an error code (or
  result) and the records to append; the runtime appends them and calls `replay` for each
  before anything else runs. State changes only in `replay`, so loading the partition at
  start-up (replaying every record) rebuilds exactly the state the handlers left;
- `pending_markers()` lists the transactions in PrepareCommit/PrepareAbort. For each, the
  runtime writes the COMMIT/ABORT marker to every partition of the transaction, then calls
  `markers_written(job)`, which returns the CompleteCommit/CompleteAbort record. After a
  restart the same call finds the transactions a crash left half-way; writing their markers
  again is harmless (a second marker for a producer without an open transaction changes
  nothing a reader sees);
- `tick()` when `next_deadline_ms()` has passed: aborts transactions older than their
  timeout (bumping the epoch, which fences the silent producer) and removes transactional ids
  idle for transactional.id.expiration.ms;
- `unload()`.

Behaviour follows Kafka's TransactionCoordinator for clients of transaction version 0/1
(EndTxn up to v4: the epoch is bumped by InitProducerId and by fencing, not by every EndTxn).
Because the runtime writes a shard's records before the next call, Kafka's in-flight
"pending state" never exists between calls; a transaction whose markers are not all written
stays in its Prepare state, and requests that would change it get CONCURRENT_TRANSACTIONS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from strom.clock import Clock
from strom.coordinator.txn.config import TxnConfig
from strom.coordinator.txn.metadata import (
    EPOCH_EXHAUSTED,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    VALID_PREVIOUS,
    TopicPartition,
    TransactionMetadata,
    TxnSnapshot,
    TxnState,
)
from strom.coordinator.txn.records import TxnRecord, decode, tombstone, transaction_record
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.describe_transactions_response import TopicData, TransactionState
from strom.protocol.messages.list_transactions_response import (
    TransactionState as ListedTransaction,
)

__all__ = ["InitResult", "MarkerJob", "TransactionCoordinatorShard"]

Records = list[TxnRecord]


@dataclass(frozen=True, slots=True)
class InitResult:
    error: ErrorCode
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH


@dataclass(frozen=True, slots=True)
class MarkerJob:
    """Markers to write: one per partition, then `markers_written(job)`."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    commit: bool
    partitions: frozenset[TopicPartition]


class TransactionCoordinatorShard:
    def __init__(
        self,
        partition: int,
        config: TxnConfig,
        clock: Clock,
        new_producer_id: Callable[[], int],
    ) -> None:
        self.partition = partition
        self.config = config
        self.clock = clock
        # Producer ids come from the broker-wide allocator (persisted blocks), injected so
        # that the shard stays free of I/O and tests can count.
        self._new_producer_id = new_producer_id
        self.transactions: dict[str, TransactionMetadata] = {}
        # last_producer_epoch values decided by InitProducerId, applied when its Empty record
        # is replayed (the record format has no field for it).
        self._last_epoch_notes: dict[tuple[str, bytes | None], int] = {}
        now = clock.now_ms()
        self._abort_check_at = now + config.abort_timed_out_interval_ms
        self._expire_check_at = now + config.remove_expired_interval_ms

    # -- replay ----------------------------------------------------------------------------

    def replay(self, record: TxnRecord) -> None:
        decoded = decode(record)
        if decoded is None:
            return
        txn_id, snap = decoded
        note = self._last_epoch_notes.pop((txn_id, record.value), None)
        if snap is None or snap.state == TxnState.DEAD:
            self.transactions.pop(txn_id, None)
            return
        meta = self.transactions.get(txn_id)
        if meta is None:
            meta = TransactionMetadata(
                txn_id, snap.producer_id, snap.producer_epoch, snap.timeout_ms, snap.state
            )
            self.transactions[txn_id] = meta
            last = NO_PRODUCER_EPOCH
        elif snap.state == TxnState.EMPTY:
            last = NO_PRODUCER_EPOCH
        elif (snap.producer_id, snap.producer_epoch) != (meta.producer_id, meta.producer_epoch):
            last = NO_PRODUCER_EPOCH  # fenced: no retry may get the old epoch back
        else:
            last = meta.last_producer_epoch
        meta.apply(snap)
        meta.last_producer_epoch = note if note is not None else last

    # -- building records -------------------------------------------------------------------

    def _transition(
        self,
        meta: TransactionMetadata,
        state: TxnState,
        *,
        producer_id: int | None = None,
        producer_epoch: int | None = None,
        timeout_ms: int | None = None,
        partitions: frozenset[TopicPartition] | None = None,
        start_ms: int | None = None,
        previous_producer_id: int | None = None,
    ) -> TxnRecord:
        if meta.state not in VALID_PREVIOUS[state]:
            raise AssertionError(f"{meta.transactional_id}: {meta.state.name} -> {state.name}")
        snap = TxnSnapshot(
            producer_id=meta.producer_id if producer_id is None else producer_id,
            producer_epoch=meta.producer_epoch if producer_epoch is None else producer_epoch,
            timeout_ms=meta.timeout_ms if timeout_ms is None else timeout_ms,
            state=state,
            partitions=frozenset(meta.partitions) if partitions is None else partitions,
            start_ms=meta.start_ms if start_ms is None else start_ms,
            last_update_ms=self.clock.now_ms(),
            previous_producer_id=(
                meta.previous_producer_id if previous_producer_id is None else previous_producer_id
            ),
        )
        return transaction_record(meta.transactional_id, snap)

    def _fence_and_abort(self, meta: TransactionMetadata) -> TxnRecord:
        """PrepareAbort with the epoch bumped: the old producer can neither produce nor end
        the transaction any more, and its markers carry the new epoch."""
        return self._transition(
            meta, TxnState.PREPARE_ABORT, producer_epoch=meta.producer_epoch + 1
        )

    # -- InitProducerId ---------------------------------------------------------------------

    def init_producer_id(
        self, transactional_id: str, timeout_ms: int, expected: tuple[int, int] | None = None
    ) -> tuple[InitResult, Records]:
        """InitProducerId for a transactional id; `expected` is (producer id, epoch) of v3+."""
        if not transactional_id:
            return InitResult(ErrorCode.INVALID_REQUEST), []
        if timeout_ms <= 0 or timeout_ms > self.config.max_timeout_ms:
            return InitResult(ErrorCode.INVALID_TRANSACTION_TIMEOUT), []
        now = self.clock.now_ms()
        meta = self.transactions.get(transactional_id)
        if meta is None:
            # A new id: producer id fresh, epoch 0 (Kafka creates it at epoch -1 and bumps).
            pid = self._new_producer_id()
            snap = TxnSnapshot(pid, 0, timeout_ms, TxnState.EMPTY, frozenset(), -1, now)
            return InitResult(ErrorCode.NONE, pid, 0), [transaction_record(transactional_id, snap)]
        if expected is not None and not self._valid_expected_producer(meta, expected):
            return InitResult(ErrorCode.PRODUCER_FENCED), []
        if meta.state.is_prepare:
            return InitResult(ErrorCode.CONCURRENT_TRANSACTIONS), []
        if meta.state == TxnState.ONGOING:
            # Abort the open transaction first (with a bumped epoch, fencing its producer)
            # and let the client retry, which bumps the epoch again: Kafka's answer too.
            return InitResult(ErrorCode.CONCURRENT_TRANSACTIONS), [self._fence_and_abort(meta)]
        if meta.epoch_exhausted and (expected is None or expected[1] == meta.producer_epoch):
            pid = self._new_producer_id()
            last = meta.producer_epoch if expected is not None else NO_PRODUCER_EPOCH
            record = self._transition(
                meta,
                TxnState.EMPTY,
                producer_id=pid,
                producer_epoch=0,
                timeout_ms=timeout_ms,
                partitions=frozenset(),
                start_ms=-1,
                previous_producer_id=meta.producer_id,
            )
            self._last_epoch_notes[(transactional_id, record.value)] = last
            return InitResult(ErrorCode.NONE, pid, 0), [record]
        bumped = meta.producer_epoch + 1
        if expected is None:
            epoch, last = bumped, NO_PRODUCER_EPOCH
        elif meta.producer_epoch == NO_PRODUCER_EPOCH or expected[1] == meta.producer_epoch:
            epoch, last = bumped, meta.producer_epoch
        elif expected[1] == meta.last_producer_epoch:
            # A retry of a bump whose answer was lost: give the same epoch again.
            epoch, last = meta.producer_epoch, meta.last_producer_epoch
        else:
            return InitResult(ErrorCode.PRODUCER_FENCED), []
        record = self._transition(
            meta,
            TxnState.EMPTY,
            producer_epoch=epoch,
            timeout_ms=timeout_ms,
            partitions=frozenset(),
            start_ms=-1,
        )
        self._last_epoch_notes[(transactional_id, record.value)] = last
        return InitResult(ErrorCode.NONE, meta.producer_id, epoch), [record]

    @staticmethod
    def _valid_expected_producer(meta: TransactionMetadata, expected: tuple[int, int]) -> bool:
        pid, epoch = expected
        return (
            meta.producer_epoch == NO_PRODUCER_EPOCH
            or pid == meta.producer_id
            # a retry after a producer id rotation whose answer was lost
            or (pid == meta.previous_producer_id and epoch >= EPOCH_EXHAUSTED)
        )

    # -- AddPartitionsToTxn / AddOffsetsToTxn -----------------------------------------------

    def _check_producer(
        self, transactional_id: str, producer_id: int, producer_epoch: int
    ) -> tuple[ErrorCode | None, TransactionMetadata | None]:
        meta = self.transactions.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING, None
        if meta.producer_epoch != producer_epoch:
            return ErrorCode.PRODUCER_FENCED, None
        return None, meta

    def add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> tuple[ErrorCode, Records]:
        if not transactional_id:
            return ErrorCode.INVALID_REQUEST, []
        error, meta = self._check_producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            assert error is not None
            return error, []
        if meta.state.is_prepare:
            return ErrorCode.CONCURRENT_TRANSACTIONS, []
        added = frozenset(partitions)
        if meta.state == TxnState.ONGOING and added <= meta.partitions:
            return ErrorCode.NONE, []
        starting = meta.state in (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)
        now = self.clock.now_ms()
        return ErrorCode.NONE, [
            self._transition(
                meta,
                TxnState.ONGOING,
                partitions=frozenset(meta.partitions) | added,
                start_ms=now if starting else meta.start_ms,
            )
        ]

    def verify_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode]:
        """AddPartitionsToTxn v4+ with verify_only, asked by a partition's leader before it
        appends a transactional batch (KIP-890): NONE for each partition in the producer's open
        transaction, TRANSACTION_ABORTABLE for the others; a wrong producer id or epoch, or a
        transaction being prepared, fails them all (Kafka's verification)."""
        wanted = list(partitions)
        if not transactional_id:
            return dict.fromkeys(wanted, ErrorCode.INVALID_REQUEST)
        error, meta = self._check_producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            assert error is not None
            return dict.fromkeys(wanted, error)
        if meta.state.is_prepare:
            return dict.fromkeys(wanted, ErrorCode.CONCURRENT_TRANSACTIONS)
        open_ = meta.state == TxnState.ONGOING
        return {
            tp: ErrorCode.NONE
            if open_ and tp in meta.partitions
            else ErrorCode.TRANSACTION_ABORTABLE
            for tp in wanted
        }

    def check_partition(
        self, transactional_id: str, producer_id: int, producer_epoch: int, tp: TopicPartition
    ) -> ErrorCode:
        """Is `tp` part of the producer's open transaction? (Kafka's verification, used
        before TxnOffsetCommit writes to a `__consumer_offsets` partition.)"""
        error, meta = self._check_producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            assert error is not None
            return error
        if meta.state.is_prepare:
            return ErrorCode.CONCURRENT_TRANSACTIONS
        if meta.state != TxnState.ONGOING or tp not in meta.partitions:
            return ErrorCode.INVALID_TXN_STATE
        return ErrorCode.NONE

    # -- EndTxn -----------------------------------------------------------------------------

    def end_txn(
        self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool
    ) -> tuple[ErrorCode, Records]:
        if not transactional_id:
            return ErrorCode.INVALID_REQUEST, []
        error, meta = self._check_producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            assert error is not None
            return error, []
        state = meta.state
        if state == TxnState.ONGOING:
            target = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
            return ErrorCode.NONE, [self._transition(meta, target)]
        if state == TxnState.COMPLETE_COMMIT:
            return (ErrorCode.NONE if commit else ErrorCode.INVALID_TXN_STATE), []
        if state == TxnState.COMPLETE_ABORT:
            return (ErrorCode.INVALID_TXN_STATE if commit else ErrorCode.NONE), []
        if state == TxnState.PREPARE_COMMIT:
            return (
                ErrorCode.CONCURRENT_TRANSACTIONS if commit else ErrorCode.INVALID_TXN_STATE
            ), []
        if state == TxnState.PREPARE_ABORT:
            return (
                ErrorCode.INVALID_TXN_STATE if commit else ErrorCode.CONCURRENT_TRANSACTIONS
            ), []
        return ErrorCode.INVALID_TXN_STATE, []  # Empty: nothing to end

    # -- markers ----------------------------------------------------------------------------

    def pending_markers(self) -> list[MarkerJob]:
        return [
            MarkerJob(
                meta.transactional_id,
                meta.producer_id,
                meta.producer_epoch,
                meta.state == TxnState.PREPARE_COMMIT,
                frozenset(meta.partitions),
            )
            for meta in self.transactions.values()
            if meta.state.is_prepare
        ]

    def markers_written(self, job: MarkerJob) -> Records:
        """The CompleteCommit/CompleteAbort record once every marker of `job` is written."""
        meta = self.transactions.get(job.transactional_id)
        expected = TxnState.PREPARE_COMMIT if job.commit else TxnState.PREPARE_ABORT
        if (
            meta is None
            or meta.state != expected
            or (meta.producer_id, meta.producer_epoch) != (job.producer_id, job.producer_epoch)
        ):
            return []
        target = TxnState.COMPLETE_COMMIT if job.commit else TxnState.COMPLETE_ABORT
        return [self._transition(meta, target, partitions=frozenset())]

    # -- admin ------------------------------------------------------------------------------

    def describe(self, transactional_id: str) -> TransactionState:
        out = TransactionState(transactional_id=transactional_id)
        if not transactional_id:
            out.error_code = ErrorCode.INVALID_REQUEST
            return out
        meta = self.transactions.get(transactional_id)
        if meta is None:
            out.error_code = ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
            return out
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(meta.partitions):
            by_topic.setdefault(topic, []).append(partition)
        out.transaction_state = meta.state.display_name
        out.transaction_timeout_ms = meta.timeout_ms
        out.transaction_start_time_ms = meta.start_ms
        out.producer_id = meta.producer_id
        out.producer_epoch = meta.producer_epoch
        out.topics = [TopicData(topic, parts) for topic, parts in by_topic.items()]
        return out

    def list_transactions(
        self, states: set[TxnState], producer_ids: set[int], min_duration_ms: int = -1
    ) -> list[ListedTransaction]:
        """Transactions matching every non-empty filter (the caller resolves state names)."""
        now = self.clock.now_ms()
        out = []
        for meta in self.transactions.values():
            if producer_ids and meta.producer_id not in producer_ids:
                continue
            if states and meta.state not in states:
                continue
            if min_duration_ms >= 0 and now - meta.start_ms <= min_duration_ms:
                continue
            out.append(
                ListedTransaction(meta.transactional_id, meta.producer_id, meta.state.display_name)
            )
        return out

    # -- time -------------------------------------------------------------------------------

    def next_deadline_ms(self) -> int | None:
        return min(self._abort_check_at, self._expire_check_at)

    def tick(self) -> Records:
        now = self.clock.now_ms()
        records: Records = []
        if now >= self._abort_check_at:
            self._abort_check_at = now + self.config.abort_timed_out_interval_ms
            records += self.abort_timed_out()
        if now >= self._expire_check_at:
            self._expire_check_at = now + self.config.remove_expired_interval_ms
            records += self.expire_transactional_ids()
        return records

    def abort_timed_out(self) -> Records:
        """PrepareAbort (epoch bumped) for every transaction open longer than its timeout."""
        now = self.clock.now_ms()
        return [
            self._fence_and_abort(meta)
            for meta in self.transactions.values()
            if meta.state == TxnState.ONGOING
            and meta.start_ms + meta.timeout_ms < now
            and meta.producer_epoch < 32767  # an epoch of 32767 cannot be bumped again
        ]

    def expire_transactional_ids(self) -> Records:
        """Tombstones for ids idle (Empty or Complete*) for transactional.id.expiration.ms."""
        horizon = self.clock.now_ms() - self.config.transactional_id_expiration_ms
        return [
            tombstone(txn_id)
            for txn_id, meta in self.transactions.items()
            if meta.state.expiration_allowed and meta.last_update_ms <= horizon
        ]

    def unload(self) -> None:
        self.transactions.clear()
        self._last_epoch_notes.clear()
