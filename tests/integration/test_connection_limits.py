"""Kafka's connection limits on a real broker: connections.max.idle.ms, max.connections,
max.connections.per.ip with overrides, max.connection.creation.rate, and the limits changed
through AlterConfigs without a restart. Each refusal closes that one connection and is logged;
a normal client (confluent-kafka from 127.0.0.1) is served meanwhile.

Connections come from their own loopback addresses (127.0.0.x) so that the per-address
counts are the test's own."""

from __future__ import annotations

import contextlib
import socket
import time

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

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

    # Broker-wide, lowered at run time to 25: with the 20 held, at most 5 more from anybody.
    set_broker_config(bootstrap, "max.connections", "25")
    five, refused = open_from("127.0.0.5", port, 10)
    assert len(five) <= 5 and len(refused) >= 5
    close_all(held + five)
    wait_until(lambda: normal_client_works(bootstrap, topic), "the client after the flood", 60)

    # Creation rate: at most 10 new connections a second; a burst beyond is refused in part.
    # Once a new connection is admitted again (the last second's window has room), a burst
    # is refused beyond it.
    set_broker_config(bootstrap, "max.connection.creation.rate", "10")
    first = None
    end = time.monotonic() + 30
    while first is None:
        assert time.monotonic() < end, "no connection admitted at 10 per second"
        first = kept("127.0.0.6", port)
    burst, refused = open_from("127.0.0.6", port, 40)
    assert refused  # exact counting over the window: tests/unit/server/test_connection_limits.py
    close_all([first, *burst])
    wait_until(lambda: normal_client_works(bootstrap, topic), "the client after the burst", 60)

    log = broker.log_text()
    assert "(max.connections.per.ip)" in log
    # The listener's limit falls back to the broker's, as in Kafka, and is checked first.
    assert "(listener.name.plaintext.max.connections)" in log
    assert "(max.connection.creation.rate)" in log
    assert "Traceback" not in log
    assert broker.is_alive()
