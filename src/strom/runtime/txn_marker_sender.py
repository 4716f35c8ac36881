"""Cluster mode: completing prepared transactions by writing their markers on every broker.

Kafka's TransactionMarkerChannelManager, in small: once a transaction's PrepareCommit or
PrepareAbort record is replicated, its markers go to the leaders of its partitions, one
WriteTxnMarkers request per leader (over the inter-broker listener; the partitions this broker
leads are written directly through `txn_markers.write_markers`, the handler's own path). A
partition whose marker failed (NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS, a timeout, a lost
connection...) is retried after MARKER_RETRY_S with the leader the metadata then names. Only
when every partition has its marker does the coordinator append CompleteCommit/CompleteAbort.
Meanwhile the transaction stays prepared, and the shard answers CONCURRENT_TRANSACTIONS to the
requests that would change it. A partition that refuses the marker for good (a newer producer
epoch or coordinator epoch is there: INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED)
or no longer exists is given up, as on a single broker.

The work of a `__transaction_state` partition stops when this broker stops leading it; the new
leader loads the shard and finds the transaction still prepared (writing a marker twice is
harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from strom.coordinator.txn import MarkerJob
from strom.protocol.errors import ErrorCode, ProtocolError
from strom.protocol.messages.write_txn_markers_request import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
)
from strom.replication.broker_client import InterBrokerClient
from strom.runtime.txn_markers import TopicPartition, TxnMarker, write_markers

if TYPE_CHECKING:
    from strom.runtime.host import BrokerHost

log = logging.getLogger("strom.transactions")

MARKER_RETRY_S = 1.0
WRITE_TXN_MARKERS = 27
WRITE_TXN_MARKERS_MAX_VERSION = 1

# Done with the partition: written, or refused for good (as Kafka's coordinator gives up).
_FINAL = {
    ErrorCode.NONE,
    ErrorCode.INVALID_PRODUCER_EPOCH,
    ErrorCode.TRANSACTION_COORDINATOR_FENCED,
}

# A partition state without a leader (cluster/zk/layout.py, not imported on a single broker).
NO_LEADER = -1


class TxnMarkerSender:
    """Completes the prepared transactions of the `__transaction_state` partitions this broker
    leads (cluster mode only)."""

    def __init__(
        self,
        broker: BrokerHost,
        await_prepared: Callable[[int], Any],
        complete: Callable[[int, MarkerJob], None],
        coordinating: Callable[[int], bool],
        topic: str,
    ) -> None:
        self._broker = broker
        self._await_prepared = await_prepared  # async (partition) -> ErrorCode
        self._complete = complete
        self._coordinating = coordinating
        self._topic = topic
        cfg = broker.config
        self._timeout_ms = cfg.get_int("request.timeout.ms")
        cluster = broker.cluster
        assert cluster is not None
        self._client = InterBrokerClient(
            f"strom-txn-markers-{cfg.broker_id}",
            cluster.replicas.endpoint,
            # The receiver waits up to request.timeout.ms for its ISR before it answers.
            self._timeout_ms / 1000.0 + 5.0,
        )
        self._tasks: dict[tuple[int, str], asyncio.Task[None]] = {}

    def start(self, partition: int, job: MarkerJob) -> None:
        """Complete the transaction in the background (a no-op while it is under way)."""
        key = (partition, job.transactional_id)
        if key in self._tasks:
            return
        task = asyncio.get_running_loop().create_task(self._run(partition, job))
        self._tasks[key] = task

        def done(_: object) -> None:
            # Only its own entry: a task abandoned by `stop` may end after a new one started.
            if self._tasks.get(key) is task:
                del self._tasks[key]

        task.add_done_callback(done)

    def stop(self, partition: int) -> None:
        """This broker no longer coordinates the partition: abandon its work. The entries go
        at once, so that leading the partition again at once starts the work again."""
        for key, task in list(self._tasks.items()):
            if key[0] == partition:
                del self._tasks[key]
                task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.close()

    async def _run(self, partition: int, job: MarkerJob) -> None:
        while True:
            try:
                await self._complete_once(partition, job)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                # Still leading: try again (nothing else would until the leadership moves).
                log.exception(
                    "completing transactional id %r failed; retrying", job.transactional_id
                )
                await asyncio.sleep(MARKER_RETRY_S)

    async def _complete_once(self, partition: int, job: MarkerJob) -> None:
        # Kafka sends the markers only once the Prepare record is committed.
        while True:
            if not self._coordinating(partition):
                return
            code = await self._await_prepared(partition)
            if code == ErrorCode.NONE:
                break
            if code == ErrorCode.NOT_COORDINATOR:
                return
            await asyncio.sleep(MARKER_RETRY_S)
        remaining = set(job.partitions)
        while remaining:
            if not self._coordinating(partition):
                return
            await self._send_round(partition, job, remaining)
            if remaining:
                await asyncio.sleep(MARKER_RETRY_S)
        if self._coordinating(partition):
            self._complete(partition, job)

    async def _send_round(
        self, partition: int, job: MarkerJob, remaining: set[TopicPartition]
    ) -> None:
        """Send the remaining markers to the current leaders; drop those that are done."""
        broker = self._broker
        cluster = broker.cluster
        assert cluster is not None
        metadata = cluster.metadata
        by_leader: dict[int, list[TopicPartition]] = {}
        for topic, index in sorted(remaining):
            record = metadata.get_topic(topic)
            if record is None or index >= record.num_partitions:
                log.warning("no partition %s-%d for a transaction marker: skipped", topic, index)
                remaining.discard((topic, index))
                continue
            state = metadata.state(topic, index)
            leader = state.state.leader if state is not None else NO_LEADER
            if leader != NO_LEADER:
                by_leader.setdefault(leader, []).append((topic, index))
        coordinator_epoch = broker.leader_epoch(self._topic, partition)
        rounds = await asyncio.gather(
            *(self._send(leader, job, coordinator_epoch, tps) for leader, tps in by_leader.items())
        )
        for codes in rounds:
            for tp, code in codes.items():
                if code in _FINAL:
                    if code != ErrorCode.NONE:
                        log.warning(
                            "partition %s-%d refused a transaction marker: %s", *tp, code.name
                        )
                    remaining.discard(tp)

    async def _send(
        self, leader: int, job: MarkerJob, coordinator_epoch: int, tps: list[TopicPartition]
    ) -> dict[TopicPartition, ErrorCode]:
        marker = TxnMarker(
            job.producer_id, job.producer_epoch, job.commit, coordinator_epoch, tuple(tps)
        )
        if leader == self._broker.config.broker_id:
            (written,) = await write_markers(self._broker, [marker], self._timeout_ms)
            return written
        topics: dict[str, list[int]] = {}
        for topic, index in tps:
            topics.setdefault(topic, []).append(index)
        request = WriteTxnMarkersRequest(
            markers=[
                WritableTxnMarker(
                    producer_id=marker.producer_id,
                    producer_epoch=marker.producer_epoch,
                    transaction_result=marker.commit,
                    topics=[WritableTxnMarkerTopic(t, ps) for t, ps in topics.items()],
                    coordinator_epoch=coordinator_epoch,
                )
            ]
        )
        try:
            response = await self._client.call(
                leader, WRITE_TXN_MARKERS, WRITE_TXN_MARKERS_MAX_VERSION, request
            )
        except (OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError) as exc:
            log.info("WriteTxnMarkers to broker %d failed (%r); retrying", leader, exc)
            return {}
        codes: dict[TopicPartition, ErrorCode] = {}
        for result in response.markers:
            for topic_result in result.topics:
                for p in topic_result.partitions:
                    with contextlib.suppress(ValueError):
                        codes[(topic_result.name, p.partition_index)] = ErrorCode(p.error_code)
        return codes
