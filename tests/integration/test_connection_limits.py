"""Kafka's connection limits on a real broker: connections.max.idle.ms, max.connections,
max.connections.per.ip with overrides, max.connection.creation.rate, and the limits changed
through AlterConfigs without a restart, and the ip entities' connection_creation_rate. Over
max.connections or a creation rate a new connection waits, as Kafka's acceptor makes it wait;
over max.connections.per.ip or its address's creation rate it is closed. Each is logged; a
normal client (confluent-kafka from 127.0.0.1) is served meanwhile.

Connections come from their own loopback addresses (127.0.0.x) so that the per-address
counts are the test's own."""

from __future__ import annotations

import contextlib
import select
import socket
import time
import urllib.request

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from prometheus_client.parser import text_string_to_metric_families

from strom.protocol.messages.incremental_alter_configs_request import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
)
from strom.protocol.messages.incremental_alter_configs_response import (
    IncrementalAlterConfigsResponse,
)

from .broker_process import HOST
from .clients import ck_conf, create_topic, wait_until
from .conftest import BrokerFactory
from .kafka_wire import (
    ConnectionClosed,
    api_versions_request,
    frame,
    recv_frame,
    request_header,
    roundtrip,
    wait_closed,
)
from .test_client_quotas import QuotaAdmin

pytestmark = pytest.mark.integration


def connect_from(source: str, port: int) -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10)
    s.connect((HOST, port))
    return s


def served(s: socket.socket) -> bool:
    """Answers ApiVersions (the connection was admitted), or is closed (refused)."""
    try:
        s.settimeout(10)
        s.sendall(api_versions_request())
        return len(recv_frame(s)) > 0
    except (OSError, ConnectionClosed):
        return False


def open_from(
    source: str, port: int, count: int
) -> tuple[list[socket.socket], list[socket.socket]]:
    """Opens `count` connections from `source`; returns (admitted, refused)."""
    socks = [connect_from(source, port) for _ in range(count)]
    admitted = [s for s in socks if served(s)]
    refused = [s for s in socks if s not in admitted]
    close_all(refused)
    return admitted, refused


def kept(source: str, port: int) -> socket.socket | None:
    """One connection from `source` when it is admitted (kept open), else None."""
    s = connect_from(source, port)
    if served(s):
        return s
    s.close()
    return None


WAITING = (
    "listener PLAINTEXT accepts no more connections until one closes: the listener has the "
    "configured maximum of 25 connections (listener.name.plaintext.max.connections)"
)


def open_count(http_port: int) -> int:
    """The broker's open connections on its listener, from its /metrics."""
    with urllib.request.urlopen(f"http://{HOST}:{http_port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "kafka_server_socket_server_metrics_connection_count":
                return int(sample.value)
    raise AssertionError("no connection count in /metrics")


def answer_all(socks: list[socket.socket], answered: set[socket.socket]) -> set[socket.socket]:
    """Adds to `answered` the connections whose ApiVersions answer has arrived."""
    waiting = [s for s in socks if s not in answered]
    readable, _, _ = select.select(waiting, [], [], 0.2) if waiting else ([], [], [])
    for s in readable:
        s.settimeout(30)
        assert len(recv_frame(s)) > 0, "closed instead of served"
        answered.add(s)
    return answered


def broker_closed_none(socks: list[socket.socket]) -> bool:
    return not any(wait_closed(s, 0.05) for s in socks)


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()


def normal_client_works(bootstrap: str, topic: str) -> bool:
    producer = ck.Producer(ck_conf(bootstrap, **{"message.timeout.ms": 20_000}))
    errors: list[object] = []
    producer.produce(topic, b"v", on_delivery=lambda err, _m: errors.append(err))
    return producer.flush(30) == 0 and errors == [None]


def set_broker_config(bootstrap: str, key: str, value: str) -> None:
    """A dynamic config of broker 0 (IncrementalAlterConfigs through confluent-kafka)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(
        ConfigResource.Type.BROKER,
        "0",
        incremental_configs=[ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)],
    )
    for fut in admin.incremental_alter_configs([resource]).values():
        fut.result(timeout=30)


def set_cluster_default(port: int, key: str, value: str) -> None:
    """IncrementalAlterConfigs v0 on the broker resource named "" (Kafka's `kafka-configs
    --entity-default`; the Python clients insist on a broker id)."""
    request = IncrementalAlterConfigsRequest(
        resources=[AlterConfigsResource(4, "", [AlterableConfig(key, 0, value)])]  # BROKER, SET
    )
    with socket.create_connection((HOST, port), timeout=30) as sock:
        answer = roundtrip(sock, frame(request_header(44, 0, 7, "test") + request.encode(0)))
    (result,) = IncrementalAlterConfigsResponse.decode(answer[4:], 0).responses
    assert (result.error_code, result.error_message) == (0, None)


def test_idle_connections_are_closed(broker_factory: BrokerFactory, topic: str) -> None:
    broker = broker_factory({"connections.max.idle.ms": 2000})
    create_topic(broker.bootstrap, topic, 1)
    idle = connect_from("127.0.0.2", broker.port)
    busy = connect_from("127.0.0.3", broker.port)
    assert served(idle) and served(busy)
    # One that sent half a request and then nothing (slow-loris) is idle too.
    half = connect_from("127.0.0.4", broker.port)
    half.sendall(api_versions_request()[:6])
    end = time.monotonic() + 60
    while not wait_closed(idle, 0.3):
        assert time.monotonic() < end, "the idle connection was not closed"
        assert served(busy)  # a connection that keeps talking stays
    assert wait_closed(half, 30)
    assert served(busy)
    close_all([idle, busy, half])
    # librdkafka reconnects after the broker closed its idle connections.
    assert normal_client_works(broker.bootstrap, topic)
    time.sleep(3)
    assert normal_client_works(broker.bootstrap, topic)
    log = broker.log_text()
    assert "idle for more than 2000 ms (connections.max.idle.ms)" in log
    assert "Traceback" not in log


def test_connection_counts_and_rate_and_their_dynamic_change(
    broker_factory: BrokerFactory, topic: str
) -> None:
    broker = broker_factory(
        {
            "max.connections.per.ip": 5,
            # The normal client's address keeps room for it.
            "max.connections.per.ip.overrides": "127.0.0.3:12,127.0.0.1:1000",
            # Creation rates over two one-second samples (Kafka's default: eleven).
            "quota.window.num": 2,
            "strom.http.listeners": "http://127.0.0.1:0",
        }
    )
    bootstrap = broker.bootstrap
    port = broker.port
    create_topic(bootstrap, topic, 1)

    # Per address: 5, and 12 for the overridden one; the rest refused, the client served.
    two, refused = open_from("127.0.0.2", port, 8)
    assert (len(two), len(refused)) == (5, 3)
    three, refused = open_from("127.0.0.3", port, 15)
    assert (len(three), len(refused)) == (12, 3)
    assert normal_client_works(bootstrap, topic)
    # Closing one makes room for one more.
    two.pop().close()
    extra = None
    end = time.monotonic() + 30
    while extra is None:
        assert time.monotonic() < end, "the freed slot was not given again"
        extra = kept("127.0.0.2", port)
    two.append(extra)

    # Raised through AlterConfigs, as the cluster-wide default: taken up at once.
    set_cluster_default(port, "max.connections.per.ip", "8")
    more, refused = open_from("127.0.0.2", port, 6)
    assert (len(more), len(refused)) == (3, 3)
    held = two + three + more
    assert len(held) == 20

    # Broker-wide, lowered at run time to 25 with 20 held: 5 more are served, the others wait
    # (not refused) until connections close, as Kafka's acceptor waits for a slot.
    http_port = broker.http_listening_port()
    wait_until(lambda: open_count(http_port) == 20, "only the held connections open", 60)
    set_cluster_default(port, "max.connections", "25")
    wait_until(lambda: open_count(http_port) == 20, "the admin connection gone", 60)
    # From five addresses: each within max.connections.per.ip.
    ten = [connect_from(f"127.0.0.{10 + i // 2}", port) for i in range(10)]
    for s in ten:
        s.sendall(api_versions_request())
    answered: set[socket.socket] = set()
    wait_until(lambda: len(answer_all(ten, answered)) == 5, "5 of the 10 served", 60)
    wait_until(lambda: WAITING in broker.log_text(), "the listener waiting for a slot", 60)
    assert open_count(http_port) == 25
    assert len(answer_all(ten, answered)) == 5
    close_all(held[:3])
    wait_until(lambda: len(answer_all(ten, answered)) == 8, "3 more served", 60)
    assert open_count(http_port) == 25
    close_all(held[3:5])
    wait_until(lambda: len(answer_all(ten, answered)) == 10, "all served", 60)
    assert broker_closed_none(ten)

    # Lowered below the open count: the least recently active connections are closed. 24
    # open, 3 of them idle since before the others' last request; the admin connection makes
    # 25, 3 above 22.
    held = held[5:] + ten
    close_all(held[:1])
    held = held[1:]
    wait_until(lambda: open_count(http_port) == 24, "24 open", 60)
    idle, active = held[:3], held[3:]
    for s in active:
        assert served(s)
    set_cluster_default(port, "max.connections", "22")
    wait_until(lambda: all(wait_closed(s, 0.1) for s in idle), "the idle ones closed", 60)
    assert all(served(s) for s in active)
    assert "the least recently active one is closed (max.connections)" in broker.log_text()
    close_all(held)
    set_cluster_default(port, "max.connections", "1000")
    wait_until(lambda: normal_client_works(bootstrap, topic), "the client after the flood", 60)

    # Creation rate: at most 10 new connections a second (over two one-second samples). A
    # burst beyond it is delayed, not refused: every connection is served.
    set_broker_config(bootstrap, "max.connection.creation.rate", "10")
    burst = [connect_from(f"127.0.0.{20 + i // 4}", port) for i in range(40)]
    for s in burst:
        s.sendall(api_versions_request())
    answered = set()
    wait_until(lambda: len(answer_all(burst, answered)) == 40, "the whole burst served", 120)
    close_all(burst)
    wait_until(lambda: normal_client_works(bootstrap, topic), "the client after the burst", 60)

    log = broker.log_text()
    assert "(max.connections.per.ip)" in log
    # The listener's limit falls back to the broker's, as in Kafka, and is checked first.
    assert WAITING in log
    assert "delays accepting connections" in log and "(max.connection.creation.rate)" in log
    assert "Traceback" not in log
    assert broker.is_alive()


def test_address_creation_rate_closes_connections_over_it(broker_factory: BrokerFactory) -> None:
    """KIP-612's connection_creation_rate of the ip entity (and the default ip entity): a
    connection over its address's rate is closed after its throttle time, unserved; changes
    take effect without a restart."""
    broker = broker_factory({"quota.window.num": 2})
    port = broker.port
    admin = QuotaAdmin(broker.bootstrap)
    try:
        assert admin.alter({"ip": "127.0.0.7"}, {"connection_creation_rate": 5}) == (0, None)
        # A burst of 50 against 5 a second: the first ones served, the rest closed.
        seven = [served(s) for s in [connect_from("127.0.0.7", port) for _ in range(50)]]
        assert seven[0] and not all(seven)
        others, refused = open_from("127.0.0.8", port, 50)
        assert (len(others), len(refused)) == (50, 0)
        close_all(others)

        # The default ip entity: every address without its own entry.
        assert admin.alter({"ip": "127.0.0.1"}, {"connection_creation_rate": 100000}) == (0, None)
        assert admin.alter({"ip": None}, {"connection_creation_rate": 1}) == (0, None)
        nine = [served(s) for s in [connect_from("127.0.0.9", port) for _ in range(10)]]
        assert nine[0] and nine.count(False) >= 5
        # Removed: served again, at once.
        assert admin.alter({"ip": None}, {"connection_creation_rate": None}) == (0, None)
        assert admin.alter({"ip": "127.0.0.7"}, {"connection_creation_rate": None}) == (0, None)
        for source in ("127.0.0.7", "127.0.0.9"):
            admitted, refused = open_from(source, port, 50)
            assert (len(admitted), len(refused)) == (50, 0)
            close_all(admitted)
    finally:
        admin.close()
    log = broker.log_text()
    assert "(client quota connection_creation_rate)" in log
    assert "Traceback" not in log
    assert broker.is_alive()
