"""Idempotent and transactional produce, read_committed fetch, ListOffsets and DescribeProducers,
through the handlers of a real broker on a temporary data directory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strom.config import BrokerConfig
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.describe_producers_request import (
    DescribeProducersRequest,
    TopicRequest,
)
from strom.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from strom.protocol.messages.list_offsets_request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from strom.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from strom.protocol.records.batch_header import iter_batch_headers
from strom.protocol.records.codec import Record, build_batch
from strom.server.broker import Broker
from strom.server.context import RequestContext
from strom.server.handlers.describe_producers import handle_describe_producers
from strom.server.handlers.fetch import handle_fetch
from strom.server.handlers.list_offsets import handle_list_offsets
from strom.server.handlers.produce import handle_produce

TOPIC = "t"
# Record timestamps near the broker's clock, so that no segment rolls by segment.ms.
NOW = time.time_ns() // 1_000_000


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker.open(BrokerConfig.load(None, {"log.dirs": str(tmp_path / "data")}))
    b.create_topic(TOPIC, 1)
    yield b
    b.logs.close()
    b.io.shutdown(wait=True)


def ctx(broker: Broker, api_key: int, version: int) -> RequestContext:
    return RequestContext(broker, api_key, version, 1, "test", "127.0.0.1:1", bytearray())


def idempotent_batch(
    pid: int, epoch: int, seq: int, count: int = 3, txn: bool = False, tag: bytes = b"v"
) -> bytes:
    return build_batch(
        [Record(i, NOW + i, None, tag + b"%d" % i) for i in range(count)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        is_transactional=txn,
    )


def produce(broker: Broker, data: bytes) -> Any:
    request = ProduceRequest(
        acks=-1,
        timeout_ms=1_000,
        topic_data=[
            TopicProduceData(
                name=TOPIC, partition_data=[PartitionProduceData(index=0, records=data)]
            )
        ],
    )
    response = handle_produce(ctx(broker, 0, 9), request)
    assert response is not None and not asyncio.iscoroutine(response)
    return response.responses[0].partition_responses[0]


def fetch(broker: Broker, offset: int, isolation: int) -> Any:
    request = FetchRequest(
        max_wait_ms=0,
        min_bytes=0,
        isolation_level=isolation,
        topics=[
            FetchTopic(
                topic=TOPIC,
                partitions=[FetchPartition(fetch_offset=offset, partition_max_bytes=1 << 20)],
            )
        ],
    )
    response = handle_fetch(ctx(broker, 1, 11), request)
    assert not asyncio.iscoroutine(response)
    return response.responses[0].partitions[0]  # type: ignore[union-attr]


def latest(broker: Broker, isolation: int) -> int:
    request = ListOffsetsRequest(
        replica_id=-1,
        isolation_level=isolation,
        topics=[ListOffsetsTopic(name=TOPIC, partitions=[ListOffsetsPartition(timestamp=-1)])],
    )
    response = handle_list_offsets(ctx(broker, 2, 7), request)
    offset: int = response.topics[0].partitions[0].offset
    return offset


def batch_offsets(records: bytes) -> list[int]:
    return [header.base_offset for _, header in iter_batch_headers(records)]


def test_retried_idempotent_batch_is_written_once(broker: Broker) -> None:
    plain = build_batch([Record(0, NOW, None, b"plain")])
    assert produce(broker, plain).base_offset == 0
    data = idempotent_batch(pid=42, epoch=0, seq=0)
    first = produce(broker, data)
    assert (first.error_code, first.base_offset) == (ErrorCode.NONE, 1)
    retry = produce(broker, data)
    assert (retry.error_code, retry.base_offset) == (ErrorCode.NONE, 1)
    log = broker.partition_log(TOPIC, 0)
    assert log is not None and log.log_end_offset == 4
    assert batch_offsets(fetch(broker, 0, 0).records) == [0, 1]
    # The next batch continues the sequence.
    assert produce(broker, idempotent_batch(pid=42, epoch=0, seq=3)).base_offset == 4


def test_produce_errors_for_sequence_and_epoch(broker: Broker) -> None:
    produce(broker, idempotent_batch(pid=5, epoch=2, seq=0))
    gap = produce(broker, idempotent_batch(pid=5, epoch=2, seq=7))
    assert (gap.error_code, gap.base_offset) == (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, -1)
    old = produce(broker, idempotent_batch(pid=5, epoch=1, seq=3))
    assert old.error_code == ErrorCode.INVALID_PRODUCER_EPOCH
    bumped = produce(broker, idempotent_batch(pid=5, epoch=3, seq=0))
    assert bumped.error_code == ErrorCode.NONE


def test_read_committed_fetch_stops_at_the_lso_and_lists_aborts(broker: Broker) -> None:
    log = broker.partition_log(TOPIC, 0)
    assert log is not None
    produce(broker, idempotent_batch(pid=9, epoch=0, seq=0, count=2, txn=True))  # 0-1
    produce(broker, build_batch([Record(0, NOW, None, b"plain")]))  # 2
    committed = fetch(broker, 0, 1)
    assert committed.records == b""
    assert (committed.high_watermark, committed.last_stable_offset) == (3, 0)
    assert committed.aborted_transactions == []
    uncommitted = fetch(broker, 0, 0)
    assert batch_offsets(uncommitted.records) == [0, 2]
    assert uncommitted.last_stable_offset == 0
    assert uncommitted.aborted_transactions is None
    assert (latest(broker, 0), latest(broker, 1)) == (3, 0)

    abort_at = log.append_marker(9, 0, 0, False, 0, broker.clock.now_ms())
    broker.after_append(TOPIC, 0)
    assert abort_at == 3
    after = fetch(broker, 0, 1)
    assert batch_offsets(after.records) == [0, 2, 3]
    assert after.last_stable_offset == after.high_watermark == 4
    assert [(t.producer_id, t.first_offset) for t in after.aborted_transactions] == [(9, 0)]
    assert latest(broker, 1) == 4
    # A fetch past the aborted transaction does not report it.
    assert fetch(broker, 4, 1).aborted_transactions == []


def test_read_committed_long_poll_wakes_on_the_marker(broker: Broker) -> None:
    log = broker.partition_log(TOPIC, 0)
    assert log is not None
    produce(broker, idempotent_batch(pid=9, epoch=0, seq=0, count=2, txn=True))

    async def scenario() -> Any:
        request = FetchRequest(
            max_wait_ms=5_000,
            min_bytes=1,
            isolation_level=1,
            topics=[
                FetchTopic(
                    topic=TOPIC,
                    partitions=[FetchPartition(fetch_offset=0, partition_max_bytes=1 << 20)],
                )
            ],
        )
        pending = handle_fetch(ctx(broker, 1, 11), request)
        assert asyncio.iscoroutine(pending)
        task = asyncio.ensure_future(pending)
        await asyncio.sleep(0.01)
        # More transactional data does not move the LSO: the fetch keeps waiting.
        produce(broker, idempotent_batch(pid=9, epoch=0, seq=2, count=1, txn=True))
        await asyncio.sleep(0.01)
        assert not task.done()
        log.append_marker(9, 0, 0, True, 0, broker.clock.now_ms())
        broker.after_append(TOPIC, 0)
        return await asyncio.wait_for(task, 1)

    response = asyncio.run(scenario())
    data = response.responses[0].partitions[0]
    assert batch_offsets(data.records) == [0, 2, 3]
    assert data.last_stable_offset == 4


def test_describe_producers(broker: Broker) -> None:
    produce(broker, idempotent_batch(pid=77, epoch=4, seq=0, count=5))
    produce(broker, idempotent_batch(pid=78, epoch=0, seq=0, count=1, txn=True))
    request = DescribeProducersRequest(topics=[TopicRequest(name=TOPIC, partition_indexes=[0, 9])])
    response = handle_describe_producers(ctx(broker, 61, 0), request)
    known, unknown = response.topics[0].partitions
    assert unknown.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    states = {p.producer_id: p for p in known.active_producers}
    assert (states[77].producer_epoch, states[77].last_sequence) == (4, 4)
    assert states[77].current_txn_start_offset == -1
    assert states[78].current_txn_start_offset == 5
    assert states[77].last_timestamp == NOW + 4
