"""Many partitions under a small open-file limit, and running out of descriptors.

The broker runs with RLIMIT_NOFILE set low in its process (soft and hard, so start-up cannot
raise it), which keeps the tests small: a topic with more partitions than the broker may open
files is produced to and read back in full across a clean restart and a kill -9; and with every
descriptor taken by idle connections, requests that need a file fail with KAFKA_STORAGE_ERROR
while the listener keeps its socket, and everything works again once connections go away.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from strom.client.connection import Connection, open_connection
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.create_topics_request import CreatableTopic, CreateTopicsRequest
from strom.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from strom.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)

from .broker_process import BrokerProcess
from .clients import (
    Rec,
    ck_admin,
    ck_consume,
    ck_produce,
    ck_watermarks,
    create_topic,
    topic_partition_count,
    wait_until,
)
from .conftest import BrokerFactory
from .kafka_wire import RawRecord, api_versions_request, parse_api_versions_v0, record_batch

DEADLINE_S = 60.0


def _values(partitions: int, rounds: range) -> dict[int, list[bytes]]:
    return {p: [f"p{p}-r{r}".encode() for r in rounds] for p in range(partitions)}


def _produce(bootstrap: str, topic: str, partitions: int, rounds: range) -> None:
    recs = [
        Rec(key=None, value=f"p{p}-r{r}".encode(), partition=p)
        for r in rounds
        for p in range(partitions)
    ]
    ck_produce(bootstrap, topic, recs, deadline_s=DEADLINE_S, **{"batch.num.messages": 10_000})


def _read_back(bootstrap: str, topic: str, expected: dict[int, list[bytes]]) -> None:
    got = ck_consume(
        bootstrap,
        topic,
        list(expected),
        end_offsets={p: len(values) for p, values in expected.items()},
        deadline_s=DEADLINE_S,
    )
    found: dict[int, list[bytes]] = {}
    for g in got:
        found.setdefault(g.partition, []).append(g.value or b"")
    assert found == expected


def test_more_partitions_than_the_open_file_limit_across_restarts(
    broker_factory: BrokerFactory, topic: str
) -> None:
    limit = 256
    partitions = 700  # two segment files and more per partition would need ~1,400
    b = broker_factory(nofile=limit)
    create_topic(b.bootstrap, topic, partitions)
    _produce(b.bootstrap, topic, partitions, range(2))
    assert b.open_files() <= limit
    _read_back(b.bootstrap, topic, _values(partitions, range(2)))

    b.restart()  # SIGTERM: a clean stop
    _read_back(b.bootstrap, topic, _values(partitions, range(2)))
    _produce(b.bootstrap, topic, partitions, range(2, 3))

    b.kill9()
    b.start().wait_ready()
    _read_back(b.bootstrap, topic, _values(partitions, range(3)))
    assert b.open_files() <= limit
    assert "Too many open files" not in b.log_text()


# -- running out --------------------------------------------------------------------------------


def _produce_request(topic: str, partition: int, value: bytes) -> ProduceRequest:
    batch = record_batch([RawRecord(None, value)])
    return ProduceRequest(
        acks=1,
        timeout_ms=10_000,
        topic_data=[
            TopicProduceData(
                name=topic, partition_data=[PartitionProduceData(index=partition, records=batch)]
            )
        ],
    )


async def _produce_error(conn: Connection, topic: str, partition: int, value: bytes) -> int:
    response = await conn.request(0, _produce_request(topic, partition, value), 9)
    return int(response.responses[0].partition_responses[0].error_code)


async def _fetch_error(conn: Connection, topic: str, partition: int) -> int:
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
    return int(response.responses[0].partitions[0].error_code)


async def _create_error(conn: Connection, name: str, partitions: int) -> tuple[int, Any]:
    request = CreateTopicsRequest(
        topics=[CreatableTopic(name=name, num_partitions=partitions, replication_factor=1)],
        timeout_ms=30_000,
    )
    response = await conn.request(19, request, 5)
    result = response.topics[0]
    return int(result.error_code), result.error_message


def _api_versions(sock: socket.socket, correlation_id: int) -> bool:
    sock.sendall(api_versions_request(correlation_id=correlation_id))
    size = int.from_bytes(_recv(sock, 4), "big")
    return parse_api_versions_v0(_recv(sock, size)).correlation_id == correlation_id


def _recv(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def _fill_descriptors(b: BrokerProcess, limit: int) -> list[socket.socket]:
    """Idle connections, each answered once, until the broker holds every descriptor."""
    held: list[socket.socket] = []
    deadline = time.monotonic() + DEADLINE_S
    while b.open_files() < limit:
        assert time.monotonic() < deadline, f"the broker holds {b.open_files()} of {limit}"
        sock = socket.create_connection((b.host, b.port), timeout=DEADLINE_S)
        held.append(sock)
        assert _api_versions(sock, len(held))
    return held


async def _exhaustion(b: BrokerProcess, topic: str, limit: int) -> None:
    conn = await open_connection(
        b.host, b.port, "strom-it", connect_timeout_s=10, request_timeout_s=DEADLINE_S
    )
    try:
        for p in range(40):
            assert await _produce_error(conn, topic, p, b"before") == ErrorCode.NONE
        held = _fill_descriptors(b, limit)
        try:
            # Every descriptor is a connection now: the segment files were given back.
            assert await _produce_error(conn, topic, 7, b"refused") == (
                ErrorCode.KAFKA_STORAGE_ERROR
            )
            assert await _fetch_error(conn, topic, 8) == ErrorCode.KAFKA_STORAGE_ERROR
            code, message = await _create_error(conn, f"{topic}-new", 5)
            assert code == ErrorCode.KAFKA_STORAGE_ERROR
            assert "Too many open files" in (message or "")
            # A client arriving now waits in the listen backlog, not refused.
            late = socket.create_connection((b.host, b.port), timeout=DEADLINE_S)
            for sock in held[:20]:
                sock.close()
            assert _api_versions(late, 1)  # accepted once descriptors came back
            late.close()
        finally:
            for sock in held:
                sock.close()
        wait_until(lambda: b.open_files() < limit - 20, "descriptors given back")
        assert await _produce_error(conn, topic, 7, b"after") == ErrorCode.NONE
        assert await _fetch_error(conn, topic, 8) == ErrorCode.NONE
        code, _ = await _create_error(conn, f"{topic}-new", 5)
        assert code == ErrorCode.NONE
    finally:
        await conn.close()


def test_out_of_descriptors_fails_requests_and_keeps_the_listener(
    broker_factory: BrokerFactory, topic: str
) -> None:
    limit = 128
    b = broker_factory(nofile=limit)
    create_topic(b.bootstrap, topic, 40)
    asyncio.run(_exhaustion(b, topic, limit))
    # Nothing refused was written, nothing acknowledged was lost, the new topic is whole.
    expected = {p: [b"before"] for p in range(40)}
    expected[7].append(b"after")
    _read_back(b.bootstrap, topic, expected)
    assert topic_partition_count(b.bootstrap, f"{topic}-new") == 5
    text = b.log_text_since_last_start()
    assert "cannot accept connections" in text
    assert text.count("cannot accept connections") < 5  # one line, not one per attempt
    assert "Traceback" not in text


@pytest.mark.parametrize("limit", [64])
def test_starts_under_a_tiny_limit(broker_factory: BrokerFactory, topic: str, limit: int) -> None:
    """The cache's bound follows the limit: a broker with 64 descriptors serves 300 partitions."""
    b = broker_factory(nofile=limit)
    create_topic(b.bootstrap, topic, 300)
    _produce(b.bootstrap, topic, 300, range(1))
    _read_back(b.bootstrap, topic, _values(300, range(1)))


# -- creating a big topic -----------------------------------------------------------------------


def test_other_clients_are_answered_while_a_big_topic_is_created(
    broker_factory: BrokerFactory, topic: str
) -> None:
    from confluent_kafka.admin import NewTopic

    partitions = 4_000  # a few seconds of file creation at the least
    b = broker_factory()
    small, big = f"{topic}-small", f"{topic}-big"
    create_topic(b.bootstrap, small, 1)
    admin = ck_admin(b.bootstrap)  # kept: the request goes with its client
    creating = admin.create_topics(
        [NewTopic(big, num_partitions=partitions, replication_factor=1)],
        request_timeout=DEADLINE_S * 5,
    )[big]

    def made() -> int:
        return sum(1 for _ in b.visible_data_dir.glob(f"{big}-*"))

    wait_until(lambda: made() > 0, "the broker starts making the big topic's logs")
    # Another client's Metadata and Produce, answered while the logs are being made.
    metadata = ck_admin(b.bootstrap).list_topics(timeout=DEADLINE_S)
    ck_produce(b.bootstrap, small, [Rec(key=None, value=b"meanwhile", partition=0)])
    assert made() < partitions, "answered only after every log of the big topic was made"
    assert not creating.done()
    # The big topic was recorded first; partitions whose logs were not made had no leader.
    leaders = [p.leader for p in metadata.topics[big].partitions.values()]
    assert len(leaders) == partitions and -1 in leaders

    creating.result(timeout=DEADLINE_S * 5)
    assert made() == partitions
    assert topic_partition_count(b.bootstrap, big) == partitions
    ck_produce(b.bootstrap, big, [Rec(key=None, value=b"last", partition=partitions - 1)])
    assert ck_watermarks(b.bootstrap, big, partitions - 1) == (0, 1)
