"""What the coordinator runtimes share: reading, appending to and timing an internal topic.

`__consumer_offsets` and `__transaction_state` are ordinary compacted topics whose records are
key/value pairs written by a coordinator shard. Loading a shard is reading every batch of its
partition up to the high watermark; persisting what a shard decided is appending its records
as one batch; each shard has one timer at its next deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from strom.clock import Clock
from strom.protocol.errors import ErrorCode
from strom.protocol.records.batch_header import BatchHeader, iter_batch_headers
from strom.protocol.records.codec import Record, build_batch, decode_records
from strom.runtime.errors import ApiError
from strom.storage.producer_append import Origin

if TYPE_CHECKING:
    from strom.runtime.host import BrokerHost
    from strom.storage.partition_log import PartitionLog

READ_CHUNK_BYTES = 1 << 20


def read_batches(
    partition_log: PartitionLog, end: int | None = None
) -> Iterator[tuple[BatchHeader, list[Record]]]:
    """Every batch from the log start to `end` (the high watermark unless given), with its
    records decoded."""
    offset = partition_log.log_start_offset
    if end is None:
        end = partition_log.high_watermark
    while offset < end:
        result = partition_log.read(offset, READ_CHUNK_BYTES, end, True)
        if not result.records:
            return
        view = memoryview(result.records)
        for position, header in iter_batch_headers(view):
            _, records = decode_records(view[position : position + header.size])
            yield header, records
            offset = header.next_offset


def append_records(
    broker: BrokerHost,
    topic: str,
    partition: int,
    records: Sequence[tuple[bytes, bytes | None]],
    producer: tuple[int, int] | None = None,
) -> int:
    """Append key/value records as one batch; `producer` (id, epoch) makes it transactional.
    Returns the log end offset after it (in cluster mode, what the ISR must reach)."""
    partition_log = broker.partition_log(topic, partition)
    if partition_log is None:
        raise ApiError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
    if broker.cluster is not None and not broker.cluster.replicas.is_leader(topic, partition):
        # Cluster mode: only the partition leader writes; a follower's log is replication's.
        raise ApiError(ErrorCode.NOT_COORDINATOR)
    producer_id, producer_epoch = producer if producer is not None else (-1, -1)
    now = broker.clock.now_ms()
    batch = bytearray(
        build_batch(
            [
                Record(offset=i, timestamp=now, key=key, value=value, headers=[])
                for i, (key, value) in enumerate(records)
            ],
            base_offset=0,
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            is_transactional=producer is not None,
        )
    )
    headers = [header for _, header in iter_batch_headers(batch)]
    try:
        partition_log.append_as_leader(
            batch,
            headers,
            broker.leader_epoch(topic, partition),
            now,
            # Coordinator-written transactional batches carry no sequence numbers.
            origin=Origin.COORDINATOR,
        )
    except OSError as exc:
        broker.logs.io_failed(partition_log, exc)
        raise ApiError(ErrorCode.KAFKA_STORAGE_ERROR) from exc
    end = partition_log.log_end_offset
    broker.after_append(topic, partition)
    return end


def replay_end(broker: BrokerHost, partition_log: PartitionLog) -> int | None:
    """Where loading a shard stops: the high watermark on a single broker; in cluster mode,
    where this broker has just become the partition's leader, its whole log (what it has
    beyond the high watermark is the new leader's to commit, as Kafka's loader reads it)."""
    return partition_log.log_end_offset if broker.cluster is not None else None


class ShardTimers:
    """One timer per shard, armed at the shard's next deadline (by the broker's clock)."""

    def __init__(self, clock: Clock, fire: Callable[[int], None]) -> None:
        self._clock = clock
        self._fire = fire
        self._timers: dict[int, tuple[int, asyncio.TimerHandle]] = {}

    def schedule(self, partition: int, deadline: int | None) -> None:
        """Arm (or move, or drop) the partition's timer; a no-op before the loop runs."""
        current = self._timers.get(partition)
        if current is not None:
            if current[0] == deadline:
                return
            current[1].cancel()
            del self._timers[partition]
        if deadline is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # loading before the loop serves: the runtime arms timers when it starts
        delay = max(0, deadline - self._clock.now_ms()) / 1000.0
        self._timers[partition] = (deadline, loop.call_later(delay, self._fired, partition))

    def _fired(self, partition: int) -> None:
        self._timers.pop(partition, None)
        self._fire(partition)

    def clear(self) -> None:
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
