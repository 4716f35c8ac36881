"""Reading records: Fetch requests to partition leaders from positions the caller holds.

`Fetcher.fetch()` sends one Fetch per leader for the partitions it leads (concurrently) and
returns the records at or after each position, moving the positions past them. Control
batches are skipped; with read_committed, so are the batches of aborted transactions (the
response's aborted-transaction list, as Kafka's consumer does it). Partitions whose position
fell out of the log are reset to the log start or end (`reset`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from strom.client.admin import EARLIEST, LATEST, list_offsets
from strom.client.client import Client
from strom.client.errors import ClientError, KafkaError
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from strom.protocol.records.batch_header import (
    BATCH_HEADER_SIZE,
    HEADER_STRUCT,
    LOG_OVERHEAD,
    MAGIC,
    MAGIC_OFFSET,
    BatchHeader,
)
from strom.protocol.records.codec import Record, decode_records
from strom.protocol.records.errors import RecordError

FETCH = 1
_ZERO_UUID = uuid.UUID(int=0)

TopicPartition = tuple[str, int]


@dataclass(slots=True)
class FetchedPartition:
    topic: str
    partition: int
    records: list[Record]
    high_watermark: int


def iter_batches(data: memoryview) -> Iterator[tuple[BatchHeader, memoryview]]:
    """Whole batches in a fetched record set; a partial batch at the end (cut by the fetch
    size limits) is left out, as Kafka's consumer does."""
    pos = 0
    end = len(data)
    while end - pos >= BATCH_HEADER_SIZE:
        if data[pos + MAGIC_OFFSET] != MAGIC:
            raise ClientError(
                f"record batch with magic {data[pos + MAGIC_OFFSET]}: message format v0/v1 "
                "is not read by this client"
            )
        header = BatchHeader._make(HEADER_STRUCT.unpack_from(data, pos))
        size = LOG_OVERHEAD + header.batch_length
        if size < BATCH_HEADER_SIZE or pos + size > end:
            return
        yield header, data[pos : pos + size]
        pos += size


class Fetcher:
    def __init__(
        self,
        client: Client,
        positions: Mapping[TopicPartition, int],
        *,
        read_committed: bool = False,
        max_wait_ms: int = 500,
        max_bytes: int = 50 * 1024 * 1024,
        partition_max_bytes: int = 1024 * 1024,
        reset: int = EARLIEST,
    ) -> None:
        self.client = client
        self.positions = dict(positions)
        self.read_committed = read_committed
        self.max_wait_ms = max_wait_ms
        self.max_bytes = max_bytes
        self.partition_max_bytes = partition_max_bytes
        self.reset = reset
        self.high_watermarks: dict[TopicPartition, int] = {}

    async def fetch(self) -> list[FetchedPartition]:
        by_leader: dict[int, list[TopicPartition]] = defaultdict(list)
        for tp in self.positions:
            by_leader[await self.client.leader_for(*tp)].append(tp)
        results = await asyncio.gather(
            *(self._fetch_from(leader, tps) for leader, tps in by_leader.items())
        )
        out = [fp for result in results for fp in result]
        return out

    async def _fetch_from(self, leader: int, tps: list[TopicPartition]) -> list[FetchedPartition]:
        metadata = self.client.metadata_cache
        assert metadata is not None
        topics: dict[str, list[FetchPartition]] = defaultdict(list)
        for topic, partition in tps:
            topics[topic].append(
                FetchPartition(
                    partition=partition,
                    current_leader_epoch=-1,
                    fetch_offset=self.positions[(topic, partition)],
                    last_fetched_epoch=-1,
                    log_start_offset=-1,
                    partition_max_bytes=self.partition_max_bytes,
                )
            )
        ids = {t: metadata.topic(t).topic_id for t in topics}
        names = {v: k for k, v in ids.items()}
        request = FetchRequest(
            replica_id=-1,
            max_wait_ms=self.max_wait_ms,
            min_bytes=1,
            max_bytes=self.max_bytes,
            isolation_level=1 if self.read_committed else 0,
            session_id=0,
            session_epoch=-1,
            topics=[
                FetchTopic(topic=t, topic_id=ids[t], partitions=ps) for t, ps in topics.items()
            ],
            forgotten_topics_data=[],
            rack_id="",
        )
        version = await self.client.version_for(FETCH, leader)
        if version >= 13 and any(i == _ZERO_UUID for i in ids.values()):
            version = 12  # the broker gave no topic ids in Metadata: fetch by name
        response = await self.client.call(
            FETCH,
            request,
            node_id=leader,
            version=version,
            timeout_s=self.max_wait_ms / 1000.0 + self.client.request_timeout_s,
        )
        if response.error_code != ErrorCode.NONE:
            raise KafkaError(response.error_code, "fetch")
        out = []
        stale_metadata = False
        resets: list[TopicPartition] = []
        for t in response.responses:
            topic = t.topic if version < 13 else names.get(t.topic_id, "")
            for p in t.partitions:
                tp = (topic, p.partition_index)
                if tp not in self.positions:
                    continue
                if p.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
                    resets.append(tp)
                    continue
                if p.error_code != ErrorCode.NONE:
                    error = KafkaError(p.error_code, f"fetch from {topic}-{p.partition_index}")
                    if not error.retriable and p.error_code != ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                        raise error
                    stale_metadata = True
                    continue
                self.high_watermarks[tp] = p.high_watermark
                records = self._records(tp, p.records, p.aborted_transactions)
                out.append(FetchedPartition(topic, p.partition_index, records, p.high_watermark))
        if stale_metadata:
            await self.client.metadata(sorted({t for t, _ in self.positions}))
        if resets:
            answers = await list_offsets(self.client, resets, self.reset)
            for tp in resets:
                self.positions[tp] = answers[tp].offset
        return out

    def _records(
        self, tp: TopicPartition, data: memoryview | bytes | None, aborted: list[object] | None
    ) -> list[Record]:
        if not data:
            return []
        position = self.positions[tp]
        # producer id -> first offset of its aborted transaction, not yet reached
        pending_aborts = sorted(
            ((a.first_offset, a.producer_id) for a in (aborted or [])),  # type: ignore[attr-defined]
        )
        aborting: set[int] = set()
        records: list[Record] = []
        view = data if isinstance(data, memoryview) else memoryview(data)
        for header, batch in iter_batches(view):
            if header.last_offset < position:
                continue
            if self.read_committed:
                while pending_aborts and pending_aborts[0][0] <= header.last_offset:
                    aborting.add(pending_aborts.pop(0)[1])
            if header.is_control:
                if header.is_transactional:
                    aborting.discard(header.producer_id)
                position = header.next_offset
                continue
            if self.read_committed and header.is_transactional and header.producer_id in aborting:
                position = header.next_offset
                continue
            try:
                _, decoded = decode_records(batch)
            except RecordError as exc:
                raise ClientError(
                    f"{tp[0]}-{tp[1]}: unreadable batch at offset {header.base_offset}: {exc}"
                ) from None
            records.extend(r for r in decoded if r.offset >= position)
            position = header.next_offset
        self.positions[tp] = position
        return records


async def resolve_positions(
    client: Client,
    partitions: list[TopicPartition],
    start: int | str,
) -> dict[TopicPartition, int]:
    """Start positions: an offset (>= 0), "earliest", "latest", "-N" (N before the end), or
    "@<ms>" (the first offset at or after a time)."""
    if isinstance(start, int):
        return dict.fromkeys(partitions, start)
    if start in ("earliest", "beginning", "start"):
        answers = await list_offsets(client, partitions, EARLIEST)
        return {tp: a.offset for tp, a in answers.items()}
    if start in ("latest", "end"):
        answers = await list_offsets(client, partitions, LATEST)
        return {tp: a.offset for tp, a in answers.items()}
    if start.startswith("@"):
        ts = int(start[1:])
        answers = await list_offsets(client, partitions, ts)
        ends = await list_offsets(client, partitions, LATEST)
        return {tp: a.offset if a.offset >= 0 else ends[tp].offset for tp, a in answers.items()}
    if start.startswith("-"):
        back = int(start[1:])
        ends = await list_offsets(client, partitions, LATEST)
        begins = await list_offsets(client, partitions, EARLIEST)
        return {tp: max(begins[tp].offset, ends[tp].offset - back) for tp in partitions}
    return dict.fromkeys(partitions, int(start))
