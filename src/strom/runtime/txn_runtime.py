"""The transaction coordinator's runtime: the I/O around the I/O-free transaction shards.

`__transaction_state` has transaction.state.log.num.partitions partitions (compacted); a
transactional id belongs to partition `abs(java_hash(id)) % partitions`, Kafka's placement,
and each partition has one `TransactionCoordinatorShard`. The runtime:
- hands out producer ids from blocks of 1000 reserved in the broker's metadata store (the
  reservation is persisted before an id of the block is used, so ids never repeat, even after
  kill -9; a restart skips the unused rest of a block, as Kafka does);
- creates `__transaction_state` on first use (FindCoordinator or InitProducerId);
- appends the records a shard handler returns, replays them, then finishes every transaction
  the shard has in PrepareCommit/PrepareAbort: writes the COMMIT/ABORT marker to each of its
  partitions (user partitions through the partition log, `__consumer_offsets` partitions
  through the group runtime, whose shard turns pending transactional offsets into committed
  ones) and appends CompleteCommit/CompleteAbort. On a single broker all of this happens in one
  step of the event loop, so EndTxn is answered once the transaction is complete, and no
  WriteTxnMarkers request is ever needed. In cluster mode EndTxn is answered once the Prepare
  record is replicated, and `TxnMarkerSender` then writes the markers through the partitions'
  leaders (WriteTxnMarkers) before CompleteCommit/CompleteAbort is appended;
- at start-up, replays every partition into a fresh shard and finishes the transactions a
  crash left in a Prepare state (writing their markers again is harmless);
- keeps one timer per shard for the timeout abort and transactional id expiry checks.

In cluster mode a shard lives on the leader of its partition: it is loaded (and its prepared
transactions finished) when this broker becomes the leader, unloaded when it stops leading.
Every answer waits until the ISR has what the shard wrote (`CoordinatorRuntime.run`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from strom.cluster.errors import ProducerIdsUnavailableError
from strom.coordinator.txn import (
    MarkerJob,
    TransactionCoordinatorShard,
    TxnConfig,
    TxnRecord,
)
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.describe_transactions_response import TransactionState
from strom.runtime.coordinator_runtime import CoordinatorRuntime
from strom.runtime.errors import ApiError
from strom.runtime.internal_topic import append_records, read_batches, replay_end
from strom.runtime.txn_marker_sender import TxnMarkerSender
from strom.runtime.txn_markers import TxnMarker, append_marker

if TYPE_CHECKING:
    from strom.runtime.host import BrokerHost

log = logging.getLogger("strom.transactions")

TRANSACTION_STATE_TOPIC = "__transaction_state"
PRODUCER_ID_BLOCK_SIZE = 1000
MARKER_RETRY_S = 1.0
T = TypeVar("T")


class ProducerIdManager:
    """Producer ids from persisted blocks (Kafka's ProducerIdManager, with the block kept in
    the local metadata store instead of the controller)."""

    def __init__(self, reserve: Callable[[int], int], block_size: int = PRODUCER_ID_BLOCK_SIZE):
        self._reserve = reserve
        self._block_size = block_size
        self._next = 0
        self._end = 0

    def next_id(self) -> int:
        if self._next >= self._end:
            try:
                first = self._reserve(self._block_size)
            except ProducerIdsUnavailableError as exc:
                # Cluster mode, while the next block is claimed from ZooKeeper: Kafka's
                # answer then is the retriable COORDINATOR_LOAD_IN_PROGRESS.
                raise ApiError(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS) from exc
            self._next, self._end = first, first + self._block_size
        pid = self._next
        self._next += 1
        return pid


def txn_config(broker: BrokerHost) -> TxnConfig:
    cfg = broker.config
    return TxnConfig(
        max_timeout_ms=cfg.get_int("transaction.max.timeout.ms"),
        transactional_id_expiration_ms=cfg.get_int("transactional.id.expiration.ms"),
        abort_timed_out_interval_ms=cfg.get_int(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms"
        ),
        remove_expired_interval_ms=cfg.get_int(
            "transaction.remove.expired.transaction.cleanup.interval.ms"
        ),
    )


class TransactionCoordinatorRuntime(CoordinatorRuntime[TransactionCoordinatorShard]):
    TOPIC = TRANSACTION_STATE_TOPIC
    PARTITIONS_KEY = "transaction.state.log.num.partitions"
    REPLICATION_KEY = "transaction.state.log.replication.factor"
    KEYS = "transactional ids"
    WRITE_TIMEOUT_KEY = "request.timeout.ms"
    log = log

    def __init__(self, broker: BrokerHost) -> None:
        self._retry: dict[int, asyncio.TimerHandle] = {}
        self._sender: TxnMarkerSender | None = None
        super().__init__(broker)
        self.config = txn_config(broker)
        self.producer_ids = ProducerIdManager(broker.metadata.reserve_producer_ids)

    # -- loading ----------------------------------------------------------------------------

    def _new_shard(self, partition: int) -> TransactionCoordinatorShard:
        return TransactionCoordinatorShard(
            partition, self.config, self.broker.clock, self.producer_ids.next_id
        )

    def _replay_log(self, partition: int, shard: TransactionCoordinatorShard) -> int:
        partition_log = self.broker.partition_log(TRANSACTION_STATE_TOPIC, partition)
        if partition_log is None:
            return 0
        count = 0
        for header, records in read_batches(partition_log, replay_end(self.broker, partition_log)):
            if header.is_control:
                continue
            for rec in records:
                if rec.key is not None:
                    shard.replay(TxnRecord(rec.key, rec.value))
                    count += 1
        return count

    def _topic_configs(self, clustered: bool) -> dict[str, str]:
        cfg = self.broker.config
        configs = {
            "cleanup.policy": "compact",
            "compression.type": "uncompressed",
            "segment.bytes": str(cfg.get_int("transaction.state.log.segment.bytes")),
        }
        if clustered:
            configs["min.insync.replicas"] = str(cfg.get_int("transaction.state.log.min.isr"))
        return configs

    def _loaded(self, partition: int) -> None:
        # Finish what the previous coordinator (or a crash) left prepared. At start-up this
        # runs after the group runtime has loaded, so markers written to `__consumer_offsets`
        # partitions reach loaded group shards.
        self._finish_prepared(partition)

    def _dropping(self, partition: int) -> None:
        retry = self._retry.pop(partition, None)
        if retry is not None:
            retry.cancel()
        if self._sender is not None:
            self._sender.stop(partition)

    # -- running handlers -------------------------------------------------------------------

    def check_partition(
        self, transactional_id: str, producer_id: int, producer_epoch: int, tp: tuple[str, int]
    ) -> ErrorCode:
        """NONE when `tp` is in the producer's open transaction (TxnOffsetCommit's check)."""
        if not transactional_id:
            return ErrorCode.INVALID_REQUEST
        if self.broker.metadata.get_topic(TRANSACTION_STATE_TOPIC) is None:
            return ErrorCode.INVALID_PRODUCER_ID_MAPPING
        try:
            _, shard = self.shard_for(transactional_id)
        except ApiError as exc:
            if self.broker.cluster is not None and exc.code == ErrorCode.NOT_COORDINATOR:
                # Another broker coordinates the id. Kafka asks it (AddPartitionsToTxn v4,
                # KIP-890); not done here: the commit is taken unverified, as before KIP-890.
                return ErrorCode.NONE
            raise
        return shard.check_partition(transactional_id, producer_id, producer_epoch, tp)

    def describe(self, transactional_id: str) -> TransactionState:
        if transactional_id and self.broker.metadata.get_topic(TRANSACTION_STATE_TOPIC) is None:
            return TransactionState(
                error_code=ErrorCode.TRANSACTIONAL_ID_NOT_FOUND, transactional_id=transactional_id
            )
        if not transactional_id:
            return TransactionState(error_code=ErrorCode.INVALID_REQUEST)
        _, shard = self.shard_for(transactional_id)
        return shard.describe(transactional_id)

    def write(self, partition: int, records: list[TxnRecord]) -> None:
        self._append(partition, records)
        if records:
            self._finish_prepared(partition)
        self._schedule(partition)

    def _append(self, partition: int, records: list[TxnRecord]) -> None:
        if not records:
            return
        end = append_records(
            self.broker, TRANSACTION_STATE_TOPIC, partition, [(r.key, r.value) for r in records]
        )
        self.appended(partition, end)
        shard = self.shards[partition]
        for record in records:
            shard.replay(record)

    # -- markers ----------------------------------------------------------------------------

    def _finish_prepared(self, partition: int) -> None:
        """Write the markers of every prepared transaction of the shard and complete it (in
        cluster mode: in the background, `TxnMarkerSender`)."""
        shard = self.shards.get(partition)
        if shard is None:
            return
        if self.broker.cluster is not None:
            sender = self._marker_sender()
            if sender is not None:
                for job in shard.pending_markers():
                    sender.start(partition, job)
            return
        for job in shard.pending_markers():
            try:
                for topic, index in sorted(job.partitions):
                    self._write_marker(partition, job, topic, index)
            except Exception:
                log.exception(
                    "writing the %s markers of transactional id %r failed; retrying",
                    "COMMIT" if job.commit else "ABORT",
                    job.transactional_id,
                )
                self._retry_later(partition)
                continue
            self._append(partition, shard.markers_written(job))

    def _marker_sender(self) -> TxnMarkerSender | None:
        if self._sender is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return None  # before the loop runs: `start` comes back
            self._sender = TxnMarkerSender(
                self.broker,
                self.await_committed,
                self._complete,
                lambda partition: partition in self.shards,
                TRANSACTION_STATE_TOPIC,
            )
        return self._sender

    def _complete(self, partition: int, job: MarkerJob) -> None:
        """Every marker of `job` is written: append CompleteCommit/CompleteAbort."""
        shard = self.shards.get(partition)
        if shard is None:
            return
        try:
            self._append(partition, shard.markers_written(job))
        except ApiError as exc:
            cluster = self.broker.cluster
            if (
                partition in self.shards
                and cluster is not None
                and cluster.replicas.is_leader(TRANSACTION_STATE_TOPIC, partition)
            ):
                raise  # still leading: the marker sender tries again
            log.warning(
                "completing transactional id %r failed (%s); the next leader retries",
                job.transactional_id,
                exc.code.name,
            )
        self._schedule(partition)

    def _write_marker(self, txn_partition: int, job: MarkerJob, topic: str, index: int) -> None:
        """Single broker: write one marker now (this broker leads every partition)."""
        coordinator_epoch = self.broker.leader_epoch(TRANSACTION_STATE_TOPIC, txn_partition)
        marker = TxnMarker(
            job.producer_id, job.producer_epoch, job.commit, coordinator_epoch, ((topic, index),)
        )
        code, _ = append_marker(self.broker, marker, topic, index)
        if code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
            # The topic was deleted (or shrunk) meanwhile: nothing is left to mark there.
            log.warning("no partition %s-%d for a transaction marker: skipped", topic, index)
        elif code != ErrorCode.NONE:
            # The partition refuses the marker for good (a newer producer epoch or
            # coordinator epoch is already there); retrying would never succeed. Kafka's
            # coordinator gives up on such a partition as well.
            log.warning("partition %s-%d refused a transaction marker: %s", topic, index, code)

    def _retry_later(self, partition: int) -> None:
        if partition in self._retry:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # loading, before the loop runs: `start` retries

        def retry() -> None:
            self._retry.pop(partition, None)
            self._finish_prepared(partition)

        self._retry[partition] = loop.call_later(MARKER_RETRY_S, retry)

    # -- timers -----------------------------------------------------------------------------

    def start(self) -> None:
        """Arm the timers (and retry unfinished transactions) once the event loop runs."""
        for partition in self.shards:
            if self.shards[partition].pending_markers():
                self._finish_prepared(partition)
            self._schedule(partition)

    async def stop(self) -> None:
        """Abandon the markers in flight (cluster mode) and close their connections."""
        if self._sender is not None:
            await self._sender.close()

    def _fire(self, partition: int) -> None:
        shard = self.shards.get(partition)
        if shard is None:
            return
        try:
            self.write(partition, shard.tick())
        except Exception:
            log.exception("transaction coordinator timer failed on partition %d", partition)
        self._schedule(partition)
