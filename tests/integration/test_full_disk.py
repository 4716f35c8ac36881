"""A full disk: produces fail with KAFKA_STORAGE_ERROR, fetches keep working, and produces
succeed again once space is freed, without a restart.

The broker's data dir is a real, size-limited tmpfs mounted in the broker's own user and mount
namespace (`unshare`, no root needed), filled up by a file the test writes into it through
/proc/<pid>/root and freed by removing that file. Where user namespaces are not allowed the
test is skipped.
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from strom.client.connection import Connection, open_connection
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from strom.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)

from .broker_process import BrokerProcess, tmpfs_available
from .clients import Rec, ck_consume, ck_produce, create_topic
from .conftest import BrokerFactory
from .kafka_wire import RawRecord, api_versions_ok, record_batch

pytestmark = pytest.mark.skipif(
    not tmpfs_available(), reason="no user namespaces here to mount a small tmpfs"
)

DEADLINE_S = 60.0
TMPFS_BYTES = 16 * 1024 * 1024
BIG = 64 * 1024  # more than any page a segment file's tail may have left


async def _produce(conn: Connection, topic: str, partition: int, value: bytes) -> int:
    request = ProduceRequest(
        acks=-1,
        timeout_ms=10_000,
        topic_data=[
            TopicProduceData(
                name=topic,
                partition_data=[
                    PartitionProduceData(
                        index=partition, records=record_batch([RawRecord(None, value)])
                    )
                ],
            )
        ],
    )
    response = await conn.request(0, request, 9)
    return int(response.responses[0].partition_responses[0].error_code)


async def _fetch(conn: Connection, topic: str, partition: int) -> tuple[int, int]:
    """(error code, bytes of records) of a fetch from offset 0."""
    request = FetchRequest(
        max_wait_ms=0,
        min_bytes=1,
        topics=[
            FetchTopic(
                topic=topic,
                partitions=[
                    FetchPartition(partition=partition, fetch_offset=0, partition_max_bytes=1 << 20)
                ],
            )
        ],
    )
    response = await conn.request(1, request, 11)
    data = response.responses[0].partitions[0]
    return int(data.error_code), len(data.records or b"")


def _fill(path: Path) -> int:
    """Write `path` until the file system is full; returns its size."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 512):
            block = b"\0" * chunk
            while True:
                try:
                    written += f.write(block) or 0
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    return written


async def _full_disk(b: BrokerProcess, topic: str) -> None:
    conn = await open_connection(
        b.host, b.port, "strom-it", connect_timeout_s=10, request_timeout_s=DEADLINE_S
    )
    filler = b.visible_data_dir / "filler"
    try:
        assert _fill(filler) > 0
        assert os.statvfs(b.visible_data_dir).f_bavail == 0
        for _ in range(3):  # every attempt fails the same way, and nothing is half-written
            assert await _produce(conn, topic, 0, b"refused" * (BIG // 7)) == (
                ErrorCode.KAFKA_STORAGE_ERROR
            )
        for partition in (0, 1):
            code, size = await _fetch(conn, topic, partition)
            assert code == ErrorCode.NONE and size > 0
        assert api_versions_ok(b.host, b.port)  # the listener takes new connections
        filler.unlink()
        assert await _produce(conn, topic, 0, b"after" * (BIG // 5)) == ErrorCode.NONE
    finally:
        await conn.close()
        filler.unlink(missing_ok=True)


def test_a_full_disk_fails_produces_keeps_fetches_and_recovers(
    broker_factory: BrokerFactory, topic: str
) -> None:
    b = broker_factory(tmpfs_bytes=TMPFS_BYTES)
    create_topic(b.bootstrap, topic, 2)
    ck_produce(
        b.bootstrap,
        topic,
        [Rec(key=None, value=f"p{p}-before".encode(), partition=p) for p in (0, 1)],
        deadline_s=DEADLINE_S,
    )
    asyncio.run(_full_disk(b, topic))
    got = ck_consume(b.bootstrap, topic, [0, 1], end_offsets={0: 2, 1: 1}, deadline_s=DEADLINE_S)
    assert sorted((g.partition, g.value) for g in got) == [
        (0, b"after" * (BIG // 5)),
        (0, b"p0-before"),
        (1, b"p1-before"),
    ]
    text = b.log_text_since_last_start()
    assert "No space left on device" in text
    assert text.count("No space left on device") < 3  # one line per kind and interval
    assert "Traceback" not in text
    assert b.is_alive()
