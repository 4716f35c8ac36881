"""A producer: records are gathered per partition into record batches (v2) and sent to each
partition's leader, several requests in flight.

Partitioning follows Kafka's default partitioner: murmur2 of the key bytes, made positive,
modulo the partition count; records without a key go to one partition per batch, in turn
(Kafka's sticky partitioner). Not idempotent: a batch retried after a lost answer may be
written twice, as with any producer with `enable.idempotence=false`.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from strom.client.client import Client
from strom.client.errors import KafkaError
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from strom.protocol.records.codec import Record, build_batch

PRODUCE = 0

COMPRESSION_CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}

_RETRIES = 5
_RETRY_BACKOFF_S = 0.2
# Bytes of a record beyond its key, value and headers (length, attributes, deltas, counts).
_RECORD_OVERHEAD = 21

TopicPartition = tuple[str, int]


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (Utils.murmur2): a 32-bit signed hash with seed 0x9747b28c."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    end = length - length % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(slots=True)
class _Buffer:
    records: list[Record] = field(default_factory=list)
    size: int = 0


@dataclass(slots=True)
class ProduceResult:
    records: int = 0
    bytes: int = 0
    # partition -> (first offset written, last offset written); -1 with acks=0
    offsets: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)


class Producer:
    def __init__(
        self,
        client: Client,
        *,
        acks: int = -1,
        compression: int = 0,
        batch_bytes: int = 256 * 1024,
        linger_ms: float = 5.0,
        max_in_flight: int = 5,
        timeout_ms: int = 30000,
        on_delivered: Callable[[int, int], None] | None = None,
    ) -> None:
        self.client = client
        self.acks = acks
        self.compression = compression
        self.batch_bytes = batch_bytes
        self.linger_s = linger_ms / 1000.0
        self.timeout_ms = timeout_ms
        self.on_delivered = on_delivered
        self.result = ProduceResult()
        self._buffers: dict[TopicPartition, _Buffer] = defaultdict(_Buffer)
        self._partition_counts: dict[str, int] = {}
        self._sticky: dict[str, int] = {}
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._linger: asyncio.TimerHandle | None = None
        self._error: BaseException | None = None

    async def partitions_of(self, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is None:
            metadata = await self.client.metadata([topic])
            count = len(metadata.topic(topic).partitions)
            if count == 0:
                raise KafkaError(ErrorCode.LEADER_NOT_AVAILABLE, f"topic {topic!r}")
            self._partition_counts[topic] = count
        return count

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | None]] = (),
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """Queue one record; raises the first delivery error seen so far."""
        if self._error is not None:
            raise self._error
        count = await self.partitions_of(topic)
        if partition is None:
            if key is not None:
                partition = partition_for_key(key, count)
            else:
                partition = self._sticky.setdefault(topic, 0) % count
        elif not 0 <= partition < count:
            raise KafkaError(
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                f"partition {topic}-{partition}",
                f"the topic has {count} partitions",
            )
        buf = self._buffers[(topic, partition)]
        ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        buf.records.append(Record(len(buf.records), ts, key, value, list(headers)))
        buf.size += (
            _RECORD_OVERHEAD
            + (len(key) if key else 0)
            + (len(value) if value else 0)
            + sum(len(k) + len(v or b"") for k, v in headers)
        )
        if buf.size >= self.batch_bytes:
            if key is None:
                self._sticky[topic] = partition + 1
            self._drain([(topic, partition)])
        elif self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(self.linger_s, self._drain_all)

    def _drain_all(self) -> None:
        self._linger = None
        for topic in {t for t, _ in self._buffers}:
            self._sticky[topic] = self._sticky.get(topic, 0) + 1
        self._drain(list(self._buffers))

    def _drain(self, partitions: list[TopicPartition]) -> None:
        batches: dict[TopicPartition, list[Record]] = {}
        for tp in partitions:
            buf = self._buffers.pop(tp, None)
            if buf is not None and buf.records:
                batches[tp] = buf.records
        if batches:
            task = asyncio.get_running_loop().create_task(self._send_batches(batches))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._error is None:
            self._error = task.exception()

    async def _send_batches(self, batches: dict[TopicPartition, list[Record]]) -> None:
        encoded = {
            tp: build_batch(records, base_offset=0, compression=self.compression)
            for tp, records in batches.items()
        }
        pending = dict(encoded)
        for attempt in range(_RETRIES + 1):
            by_leader: dict[int, dict[TopicPartition, bytes]] = defaultdict(dict)
            for tp in pending:
                by_leader[await self.client.leader_for(*tp, refresh=attempt > 0)][tp] = pending[tp]
            results = await asyncio.gather(
                *(self._request(leader, parts) for leader, parts in by_leader.items()),
                return_exceptions=True,
            )
            failed: dict[TopicPartition, bytes] = {}
            last_error: BaseException | None = None
            for (_leader, parts), outcome in zip(by_leader.items(), results, strict=True):
                if isinstance(outcome, KafkaError) and outcome.retriable:
                    failed.update(parts)
                    last_error = outcome
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    for tp, (error, base_offset) in outcome.items():
                        if error is None:
                            self._delivered(tp, batches[tp], base_offset)
                        elif error.retriable:
                            failed[tp] = parts[tp]
                            last_error = error
                        else:
                            raise error
            if not failed:
                return
            pending = failed
            await asyncio.sleep(_RETRY_BACKOFF_S * (attempt + 1))
        assert last_error is not None
        raise last_error

    async def _request(
        self, leader: int, parts: dict[TopicPartition, bytes]
    ) -> dict[TopicPartition, tuple[KafkaError | None, int]]:
        topics: dict[str, list[PartitionProduceData]] = defaultdict(list)
        for (topic, partition), data in parts.items():
            topics[topic].append(PartitionProduceData(partition, data))
        request = ProduceRequest(
            transactional_id=None,
            acks=self.acks,
            timeout_ms=self.timeout_ms,
            topic_data=[TopicProduceData(t, ps) for t, ps in topics.items()],
        )
        async with self._in_flight:
            response = await self.client.call(
                PRODUCE,
                request,
                node_id=leader,
                expect_response=self.acks != 0,
                timeout_s=self.timeout_ms / 1000.0 + self.client.request_timeout_s,
            )
        if response is None:
            return {tp: (None, -1) for tp in parts}
        out: dict[TopicPartition, tuple[KafkaError | None, int]] = {}
        for t in response.responses:
            for p in t.partition_responses:
                tp = (t.name, p.index)
                error = (
                    None
                    if p.error_code == ErrorCode.NONE
                    else KafkaError(p.error_code, f"produce to {t.name}-{p.index}", p.error_message)
                )
                out[tp] = (error, p.base_offset)
        return out

    def _delivered(self, tp: TopicPartition, records: list[Record], base_offset: int) -> None:
        size = sum(len(r.value or b"") + len(r.key or b"") for r in records)
        self.result.records += len(records)
        self.result.bytes += size
        if base_offset >= 0:
            first, _ = self.result.offsets.get(tp, (base_offset, base_offset))
            self.result.offsets[tp] = (first, base_offset + len(records) - 1)
        else:
            self.result.offsets[tp] = (-1, -1)
        if self.on_delivered is not None:
            self.on_delivered(len(records), size)

    async def flush(self) -> ProduceResult:
        """Send everything queued and wait for every answer; raises the first error."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self._drain(list(self._buffers))
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._error is not None:
            raise self._error
        return self.result

    async def close(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
