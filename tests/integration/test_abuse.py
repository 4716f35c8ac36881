"""Hostile and broken clients against one broker, while a normal client produces and consumes.

Each attack comes from its own loopback address (127.0.0.x, x > 1), the normal client from
127.0.0.1, as a shared network would have them. The broker runs with
queued.max.request.bytes=64 MiB; its resident memory is sampled throughout and must stay under
`RSS_BOUND_MB` (the broker's idle size plus twice the request memory, one share for requests
being received and one for responses waiting for clients that do not read, plus 48 MB for
thousands of connections and the allocator's slack). Before the limits, 30 connections that
each announced a 100 MB request made the broker reserve 3 GB.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import confluent_kafka as ck
import pytest

from .broker_process import HOST, BrokerProcess
from .certs import STORE_PASSWORD, Pki
from .clients import ck_conf, create_topic, wait_until
from .conftest import BrokerFactory
from .kafka_wire import (
    api_versions_request,
    frame,
    i8,
    i32,
    i64,
    recv_frame,
    request_header,
    string,
)
from .secure import start_secure

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POOL = 64 << 20
IDLE_SLACK_MB = 48


@dataclass
class Traffic:
    """A normal producer and consumer on 127.0.0.1, counting what gets through."""

    bootstrap: str
    topic: str
    security: dict[str, object] = field(default_factory=dict)
    produced: int = 0
    acked: int = 0
    consumed: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    produced_all: threading.Event = field(default_factory=threading.Event)

    def run_producer(self) -> None:
        p = ck.Producer(ck_conf(self.bootstrap, **self.security, **{"acks": "all", "linger.ms": 5}))

        def done(err: ck.KafkaError | None, _msg: ck.Message) -> None:
            if err is not None:
                self.errors.append(f"produce: {err}")
            else:
                self.acked += 1

        while not self.stop.is_set():
            p.produce(self.topic, value=b"v" * 1000, on_delivery=done)
            self.produced += 1
            p.poll(0.005)
        p.flush(30)
        self.produced_all.set()

    def run_consumer(self) -> None:
        c = ck.Consumer(
            ck_conf(
                self.bootstrap,
                **self.security,
                **{"group.id": f"{self.topic}-g", "auto.offset.reset": "earliest"},
            )
        )
        c.subscribe([self.topic])
        try:
            while not self.produced_all.is_set() or self.consumed < self.acked:
                msg = c.poll(0.2)
                if msg is None:
                    if time.monotonic() > self._drain_deadline:
                        break
                    continue
                if msg.error():
                    self.errors.append(f"consume: {msg.error()}")
                    continue
                self.consumed += 1
        finally:
            c.close()

    _drain_deadline: float = float("inf")


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.max_mb = 0.0
        self.stop = threading.Event()

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(OSError):
                self.max_mb = max(self.max_mb, self.rss_mb())
            time.sleep(0.05)


def open_from(source: str, port: int, count: int, blocking: bool = True) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind((source, 0))
        if blocking:
            s.settimeout(10)
            try:
                s.connect((HOST, port))
            except OSError:
                s.close()
                continue
        else:
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect((HOST, port))
        socks.append(s)
    return socks


def closed_by_broker(s: socket.socket) -> bool:
    s.settimeout(0.001)
    try:
        return s.recv(1) == b""
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def fetch_v4(topic: str, correlation_id: int, offset: int = 0, max_wait_ms: int = 500) -> bytes:
    body = (
        i32(-1)  # replica id
        + i32(max_wait_ms)
        + i32(1)  # min bytes
        + i32(50 << 20)  # max bytes
        + i8(0)  # read uncommitted
        + i32(1)
        + string(topic)
        + i32(1)
        + i32(0)  # partition
        + i64(offset)  # fetch offset
        + i32(50 << 20)  # partition max bytes
    )
    return frame(request_header(1, 4, correlation_id, "never-reads") + body)


@contextlib.contextmanager
def normal_traffic(
    broker: BrokerProcess,
    topic: str,
    bootstrap: str | None = None,
    security: dict[str, object] | None = None,
) -> Iterator[Traffic]:
    traffic = Traffic(bootstrap or broker.bootstrap, topic, security or {})
    threads = [
        threading.Thread(target=traffic.run_producer, daemon=True),
        threading.Thread(target=traffic.run_consumer, daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        yield traffic
    finally:
        traffic.stop.set()
        threads[0].join(60)
        traffic._drain_deadline = time.monotonic() + 60
        threads[1].join(90)


def keeps_working(traffic: Traffic, what: str) -> None:
    """The normal client's acknowledged and consumed counts both move on."""
    acked, consumed = traffic.acked, traffic.consumed
    wait_until(
        lambda: traffic.acked > acked + 20 and traffic.consumed > consumed + 20,
        f"the normal client to produce and consume during {what}",
        60,
    )


def test_hostile_clients_are_bounded_and_a_normal_client_keeps_working(
    broker_factory: BrokerFactory, topic: str
) -> None:
    broker = broker_factory(
        {
            "queued.max.request.bytes": POOL,
            # Kafka requires queued.max.request.bytes >= socket.request.max.bytes.
            "socket.request.max.bytes": POOL,
            "message.max.bytes": 8 << 20,
            "group.initial.rebalance.delay.ms": 0,
            # The flood's addresses get 100 connections each.
            "max.connections.per.ip.overrides": "127.0.0.5:100,127.0.0.6:100,127.0.0.7:100",
        }
    )
    bulk = f"{topic}-bulk"
    create_topic(broker.bootstrap, topic, 1)
    create_topic(broker.bootstrap, bulk, 1)
    # Data for the clients that never read their fetch responses.
    p = ck.Producer(ck_conf(broker.bootstrap, **{"linger.ms": 20}))
    for _ in range(45):
        p.produce(bulk, value=b"b" * 900_000)
        p.poll(0)
    assert p.flush(60) == 0

    sampler = RssSampler(broker.pid)
    idle_mb = sampler.rss_mb()
    bound_mb = idle_mb + 2 * POOL / (1 << 20) + IDLE_SLACK_MB
    sampler.start()
    port = broker.port
    with normal_traffic(broker, topic) as traffic:
        keeps_working(traffic, "the start")

        # 1. Announcing huge requests and sending nothing: above socket.request.max.bytes,
        # refused at once; below it, costing nothing.
        over = open_from("127.0.0.2", port, 100)
        under = open_from("127.0.0.2", port, 200)
        for s in over:
            s.sendall(struct.pack(">i", 100 << 20))
        for s in under:
            s.sendall(struct.pack(">i", 60 << 20))
        wait_until(lambda: all(closed_by_broker(s) for s in over), "oversized refused", 30)
        keeps_working(traffic, "announced huge requests")
        assert not any(closed_by_broker(s) for s in under)
        close_all(over + under)

        # 2. Half-sent large requests that stall: one reservation fits at a time; a stalled
        # holder is closed while others wait, and a normal client's large request gets the
        # memory in its turn.
        stalled = open_from("127.0.0.3", port, 30)
        for s in stalled:
            s.sendall(struct.pack(">i", 50 << 20) + b"x" * (1 << 20))
        big = ck.Producer(ck_conf(broker.bootstrap, **{"message.max.bytes": 10 << 20}))
        delivered: list[ck.KafkaError | None] = []
        big.produce(topic, value=b"L" * (3 << 20), on_delivery=lambda e, _m: delivered.append(e))
        wait_until(lambda: big.poll(0.2) >= 0 and bool(delivered), "the large request", 60)
        assert delivered == [None]
        keeps_working(traffic, "stalled large requests")
        close_all(stalled)

        # 3. Byte-at-a-time senders get their answers.
        slow = open_from("127.0.0.4", port, 40)
        request = api_versions_request(correlation_id=7)
        for i in range(len(request)):
            for s in slow:
                s.send(request[i : i + 1])
            time.sleep(0.01)
        for s in slow:
            s.settimeout(30)
            assert len(recv_frame(s)) > 10
        keeps_working(traffic, "byte-at-a-time senders")
        close_all(slow)

        # 4. Thousands of connections at once: beyond max.connections.per.ip (100 for these
        # addresses) closed at once, the rest cheap (max.connection.creation.rate, 1000/s
        # over Kafka's quota window, would delay accepting, never refuse).
        flood = []
        for source in ("127.0.0.5", "127.0.0.6", "127.0.0.7"):
            flood += open_from(source, port, 1200, blocking=False)
        keeps_working(traffic, "a flood of connections")
        # At least what exceeds the per-address limits is refused.
        wait_until(lambda: sum(closed_by_broker(s) for s in flood) >= 3300, "refusals", 60)
        close_all(flood)

        # 5. Clients that never read their responses: each sends many fetches of the 40 MB
        # topic and reads nothing.
        never = open_from("127.0.0.8", port, 10)
        for s in never:
            with contextlib.suppress(OSError):
                s.setblocking(False)
                s.send(b"".join(fetch_v4(bulk, c) for c in range(64)))
        keeps_working(traffic, "clients that never read")
        time.sleep(3)
        keeps_working(traffic, "clients that never read (later)")
        close_all(never)

        # 6. The same with fetches waiting at the log's end (long polls): new data wakes all
        # 640 of them at once, and they share what may still be read.
        waiting = open_from("127.0.0.9", port, 10)
        for s in waiting:
            s.sendall(b"".join(fetch_v4(bulk, c, offset=45, max_wait_ms=30_000) for c in range(64)))
        time.sleep(1)
        more = ck.Producer(ck_conf(broker.bootstrap, **{"linger.ms": 20}))
        for _ in range(20):
            more.produce(bulk, value=b"c" * 900_000)
            more.poll(0)
        assert more.flush(60) == 0
        keeps_working(traffic, "long polls woken at once for clients that never read")
        close_all(waiting)
    sampler.stop.set()
    sampler.join()
    print(f"resident memory: idle {idle_mb:.0f} MB, at most {sampler.max_mb:.0f} MB")
    assert traffic.errors == []
    assert traffic.consumed >= traffic.acked > 0
    assert broker.is_alive()
    assert sampler.max_mb < bound_mb, (
        f"resident memory reached {sampler.max_mb:.0f} MB (idle {idle_mb:.0f} MB, bound "
        f"{bound_mb:.0f} MB)"
    )
    log = broker.log_text()
    assert "Traceback" not in log
    assert "queued.max.request.bytes" in log
    assert "max.connections.per.ip" in log


def tls_from(source: str, port: int, ca: Path, count: int) -> list[ssl.SSLSocket]:
    """`count` TLS connections from `source`, handshake done."""
    context = ssl.create_default_context(cafile=str(ca))
    socks = []
    for _ in range(count):
        raw = socket.socket()
        raw.bind((source, 0))
        raw.settimeout(10)
        raw.connect((HOST, port))
        socks.append(context.wrap_socket(raw, server_hostname=HOST))
    return socks


def test_hostile_clients_over_tls_are_bounded_too(
    broker_factory: BrokerFactory, topic: str, tmp_path: Path
) -> None:
    """The same limits on a TLS listener, where responses wait as plaintext until the client
    takes them and each byte a client sends may come in a TLS record of its own: half-open
    handshakes, huge announced requests, byte-at-a-time senders and clients that never read,
    beside a normal confluent-kafka producer and consumer on the same TLS listener."""
    pki = Pki.make(tmp_path / "pki")
    store = pki.broker.write_pkcs12(pki.directory / "broker.p12")
    broker = start_secure(
        broker_factory,
        {"SSL": "SSL"},
        {
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": store,
            "ssl.keystore.password": STORE_PASSWORD,
            "queued.max.request.bytes": POOL,
            "socket.request.max.bytes": POOL,
            "message.max.bytes": 8 << 20,
            "group.initial.rebalance.delay.ms": 0,
            "max.connections.per.ip.overrides": "127.0.0.2:600",
        },
    )
    process = broker.process
    port = broker.ports["SSL"]
    bulk = f"{topic}-bulk"
    create_topic(broker.plaintext, topic, 1)
    create_topic(broker.plaintext, bulk, 1)
    p = ck.Producer(ck_conf(broker.plaintext, **{"linger.ms": 20}))
    for _ in range(45):
        p.produce(bulk, value=b"b" * 900_000)
        p.poll(0)
    assert p.flush(60) == 0

    sampler = RssSampler(process.pid)
    idle_mb = sampler.rss_mb()
    bound_mb = idle_mb + 2 * POOL / (1 << 20) + IDLE_SLACK_MB
    sampler.start()
    security = {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca_file)}
    with normal_traffic(process, topic, broker.bootstrap("SSL"), security) as traffic:
        keeps_working(traffic, "the start")

        # 1. TCP connections that never start their TLS handshake.
        silent = open_from("127.0.0.2", port, 500)
        keeps_working(traffic, "half-open handshakes")

        # 2. Huge announced requests over TLS: above socket.request.max.bytes closed at once,
        # below it costing nothing.
        over = tls_from("127.0.0.3", port, pki.ca_file, 20)
        under = tls_from("127.0.0.3", port, pki.ca_file, 50)
        for s in over:
            s.sendall(struct.pack(">i", 100 << 20))
        for s in under:
            s.sendall(struct.pack(">i", 60 << 20))
        wait_until(lambda: all(closed_by_broker(s) for s in over), "oversized refused", 30)
        keeps_working(traffic, "huge requests announced over TLS")
        assert not any(closed_by_broker(s) for s in under)
        close_all([*over, *under])

        # 3. A byte per TLS record: answered all the same.
        slow = tls_from("127.0.0.4", port, pki.ca_file, 20)
        request = api_versions_request(correlation_id=7)
        for i in range(len(request)):
            for s in slow:
                s.sendall(request[i : i + 1])
            time.sleep(0.01)
        for s in slow:
            s.settimeout(30)
            assert len(recv_frame(s)) > 10
        close_all(slow)
        keeps_working(traffic, "byte-at-a-time TLS senders")

        # 4. TLS clients that never read: many fetches of the 40 MB topic each.
        never = tls_from("127.0.0.5", port, pki.ca_file, 10)
        for s in never:
            s.sendall(b"".join(fetch_v4(bulk, c) for c in range(64)))
        keeps_working(traffic, "TLS clients that never read")
        time.sleep(3)
        keeps_working(traffic, "TLS clients that never read (later)")
        close_all([*never, *silent])
    sampler.stop.set()
    sampler.join()
    print(f"resident memory: idle {idle_mb:.0f} MB, at most {sampler.max_mb:.0f} MB")
    assert traffic.errors == []
    assert traffic.consumed >= traffic.acked > 0
    assert process.is_alive()
    assert sampler.max_mb < bound_mb, (
        f"resident memory reached {sampler.max_mb:.0f} MB (idle {idle_mb:.0f} MB, bound "
        f"{bound_mb:.0f} MB)"
    )
    assert "Traceback" not in process.log_text()
