"""Fetches share the response budget (what may be read while responses wait for clients that
do not read them): through the fetch handler of a real broker on a temporary data directory,
a fetch keeps of its grant what it read, a spent budget gives no records, a long poll holds
nothing while it waits, and the dispatcher's callback gives the charge back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from strom.config import BrokerConfig
from strom.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from strom.protocol.records.codec import Record, build_batch
from strom.protocol.records.validation import validate_batches
from strom.server.broker import Broker
from strom.server.context import RequestContext
from strom.server.handlers.fetch import handle_fetch
from strom.server.memory_pool import ResponseBudget

TOPIC = "t"
NOW = time.time_ns() // 1_000_000
VALUE = b"v" * 10_000


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker.open(BrokerConfig.load(None, {"log.dirs": str(tmp_path / "data")}))
    b.create_topic(TOPIC, 1)
    yield b
    b.groups.close()
    b.logs.close()
    b.io.shutdown(wait=True)


def produce(broker: Broker, batches: int) -> None:
    log = broker.partition_log(TOPIC, 0)
    assert log is not None
    for _ in range(batches):
        buf = bytearray(build_batch([Record(0, NOW, None, VALUE)]))
        log.append_as_leader(buf, validate_batches(buf), 0, NOW)
    log.update_high_watermark(log.log_end_offset)


def fetch(broker: Broker, offset: int = 0, max_wait_ms: int = 0) -> tuple[RequestContext, Any]:
    ctx = RequestContext(broker, 1, 12, 1, "test", "127.0.0.1:1", bytearray())
    request = FetchRequest(
        max_wait_ms=max_wait_ms,
        min_bytes=1,
        max_bytes=50 << 20,
        topics=[
            FetchTopic(
                topic=TOPIC,
                partitions=[FetchPartition(fetch_offset=offset, partition_max_bytes=50 << 20)],
            )
        ],
    )
    result = handle_fetch(ctx, request)
    if isinstance(result, Awaitable):
        waiting = result

        async def wait() -> Any:
            return await waiting

        result = asyncio.run(wait())
    return ctx, result


def records_of(response: Any) -> bytes:
    return bytes(response.responses[0].partitions[0].records or b"")


def test_a_fetch_keeps_what_it_read_of_its_grant(broker: Broker) -> None:
    produce(broker, 10)
    unsent = {"bytes": 0}
    budget = broker.response_budget = ResponseBudget(1 << 20, lambda: unsent["bytes"])
    ctx, response = fetch(broker)
    read = len(records_of(response))
    assert read > 10 * len(VALUE)
    # Granted up to the budget, kept only what was read: others may take the rest meanwhile.
    assert ctx.response_charge == read
    assert budget.reading == read
    assert budget.take(1 << 30) == (1 << 20) - read
    budget.give_back((1 << 20) - read)
    budget.give_back(ctx.response_charge)  # what the dispatcher does once it is written
    assert budget.reading == 0


def test_a_small_budget_gives_one_batch_and_a_spent_one_none(broker: Broker) -> None:
    produce(broker, 10)
    unsent = {"bytes": (1 << 20) - 100}
    budget = broker.response_budget = ResponseBudget(1 << 20, lambda: unsent["bytes"])
    ctx, response = fetch(broker)
    one_batch = len(records_of(response))
    assert len(VALUE) < one_batch < 2 * len(VALUE)
    assert ctx.response_charge == one_batch == budget.reading
    budget.give_back(ctx.response_charge)
    unsent["bytes"] = 1 << 20  # responses waiting for slow readers fill the budget
    ctx, response = fetch(broker)
    assert records_of(response) == b""
    assert ctx.response_charge == 0 == budget.reading


def test_a_long_poll_holds_no_budget_while_it_waits(broker: Broker) -> None:
    produce(broker, 1)
    budget = broker.response_budget = ResponseBudget(1 << 20, lambda: 0)
    seen: list[int] = []
    log = broker.partition_log(TOPIC, 0)
    assert log is not None
    end = log.log_end_offset

    async def scenario() -> tuple[RequestContext, Any]:
        ctx = RequestContext(broker, 1, 12, 1, "test", "127.0.0.1:1", bytearray())
        request = FetchRequest(
            max_wait_ms=30_000,
            min_bytes=1,
            max_bytes=50 << 20,
            topics=[
                FetchTopic(
                    topic=TOPIC,
                    partitions=[FetchPartition(fetch_offset=end, partition_max_bytes=50 << 20)],
                )
            ],
        )
        result = handle_fetch(ctx, request)
        assert isinstance(result, Awaitable)
        task = asyncio.ensure_future(result)
        await asyncio.sleep(0.05)
        seen.append(budget.reading)
        produce(broker, 2)
        broker.fetch_purgatory.notify((TOPIC, 0))
        return ctx, await task

    ctx, response = asyncio.run(scenario())
    assert seen == [0]
    assert ctx.response_charge == len(records_of(response)) == budget.reading > 0
