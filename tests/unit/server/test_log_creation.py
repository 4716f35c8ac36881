"""A single broker's CreateTopics makes the logs in its worker pool, a chunk at a time
(server/log_creation.py): pending partitions have no leader, a failure removes everything made,
a topic deleted meanwhile keeps none of its logs."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strom.config import BrokerConfig
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.create_topics_request import CreatableTopic, CreateTopicsRequest
from strom.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from strom.server import log_creation
from strom.server.broker import Broker
from strom.server.context import RequestContext
from strom.server.handlers.create_topics import handle_create_topics
from strom.server.handlers.metadata import handle_metadata

PARTITIONS = 12


@pytest.fixture
def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Broker]:
    monkeypatch.setattr(log_creation, "CHUNK", 4)
    b = Broker.open(BrokerConfig.load(None, {"log.dirs": str(tmp_path / "data")}))
    yield b
    b.logs.close()
    b.io.shutdown(wait=True)


def _ctx(broker: Broker, api_key: int, version: int) -> RequestContext:
    return RequestContext(broker, api_key, version, 1, "test", "127.0.0.1:1", bytearray())


def _create(broker: Broker, name: str) -> Any:
    request = CreateTopicsRequest(
        topics=[CreatableTopic(name=name, num_partitions=PARTITIONS, replication_factor=1)],
        timeout_ms=1000,
    )
    return handle_create_topics(_ctx(broker, 19, 7), request)


def _leaders(broker: Broker, name: str) -> list[tuple[int, int]]:
    request = MetadataRequest(topics=[MetadataRequestTopic(name=name)])
    response = handle_metadata(_ctx(broker, 3, 12), request)
    [topic] = response.topics
    return [(p.error_code, p.leader_id) for p in topic.partitions]


def _dirs(broker: Broker, name: str) -> list[Path]:
    """The topic's partition directories (not those renamed for removal)."""
    return [
        p
        for d in broker.logs.log_dirs
        for p in d.iterdir()
        if p.name.startswith(f"{name}-") and not p.name.endswith("-delete")
    ]


def _wrap_make_logs(broker: Broker, on_call: Any) -> list[int]:
    """Call `on_call(call number, loop)` in the worker thread before each chunk is made."""
    calls: list[int] = []
    make_logs = broker.logs.make_logs
    loop = asyncio.get_running_loop()

    def wrapped(*args: Any) -> Any:
        calls.append(len(calls) + 1)
        failure = on_call(len(calls), loop)
        if failure is not None:
            return [], failure
        return make_logs(*args)

    broker.logs.make_logs = wrapped  # type: ignore[method-assign]
    return calls


def test_partitions_have_no_leader_until_their_logs_are_made(broker: Broker) -> None:
    seen: list[list[tuple[int, int]]] = []

    async def run() -> Any:
        def look(call: int, loop: asyncio.AbstractEventLoop) -> None:
            if call == 2:  # the loop answers Metadata while the second chunk is made
                asyncio.run_coroutine_threadsafe(_look(), loop).result()

        async def _look() -> None:
            seen.append(_leaders(broker, "t"))

        _wrap_make_logs(broker, look)
        return await _create(broker, "t")

    response = asyncio.run(run())
    assert response.topics[0].error_code == ErrorCode.NONE
    node = broker.node.node_id
    assert seen == [
        [(ErrorCode.NONE, node)] * 4 + [(ErrorCode.LEADER_NOT_AVAILABLE, -1)] * 8,
    ]
    assert _leaders(broker, "t") == [(ErrorCode.NONE, node)] * PARTITIONS
    assert len(_dirs(broker, "t")) == PARTITIONS and not broker.logs.pending


def test_running_out_of_descriptors_removes_the_logs_and_the_topic(broker: Broker) -> None:
    async def run() -> Any:
        def fail_third(call: int, _loop: asyncio.AbstractEventLoop) -> Any:
            if call == 3:
                return broker.logs.log_dirs[0], OSError(errno.EMFILE, "Too many open files")
            return None

        _wrap_make_logs(broker, fail_third)
        return await _create(broker, "t")

    response = asyncio.run(run())
    [result] = response.topics
    assert result.error_code == ErrorCode.KAFKA_STORAGE_ERROR
    assert "Too many open files" in (result.error_message or "")
    assert broker.metadata.get_topic("t") is None
    assert _dirs(broker, "t") == [] and not broker.logs.partitions() and not broker.logs.pending
    # Nothing is left in the way: the same creation succeeds next time.
    broker.logs.make_logs = type(broker.logs).make_logs.__get__(broker.logs)  # type: ignore[method-assign]
    assert asyncio.run(_create(broker, "t")).topics[0].error_code == ErrorCode.NONE
    assert len(_dirs(broker, "t")) == PARTITIONS


def test_a_topic_deleted_while_its_logs_are_made_keeps_none(broker: Broker) -> None:
    async def run() -> Any:
        def delete_during_second(call: int, loop: asyncio.AbstractEventLoop) -> None:
            if call == 2:
                loop.call_soon_threadsafe(broker.delete_topic, "t")

        calls = _wrap_make_logs(broker, delete_during_second)
        response = await _create(broker, "t")
        return response, calls

    response, calls = asyncio.run(run())
    assert response.topics[0].error_code == ErrorCode.NONE  # deleted after it was created
    assert calls == [1, 2]  # no chunk made after the deletion was seen
    assert broker.metadata.get_topic("t") is None
    assert _dirs(broker, "t") == [] and not broker.logs.partitions() and not broker.logs.pending
