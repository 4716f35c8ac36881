"""Strom's benchmark driver: throughput, latency, start-up and memory against any Kafka broker.

    .venv/bin/python benchmarks/run.py                 # starts a Strom broker itself
    .venv/bin/python benchmarks/run.py --bootstrap host:port   # measures any broker
    .venv/bin/python benchmarks/run.py --quick         # smaller volumes, for a smoke run
    .venv/bin/python benchmarks/run.py --idle-connections 1000   # + the 1 KiB workloads again
                                                       # with 1000 idle clients connected
    .venv/bin/python benchmarks/run.py --cluster       # ZooKeeper + 3 brokers, RF 3, acks=all

Clients are confluent-kafka (librdkafka) with the settings of the reference measurements:
acks=1, no compression, linger.ms=5, batch.size=1000000. Every workload writes to a fresh
topic. The same run measures what this machine can do from Python at all (loopback socket
copy, file append), so each figure is also shown as a fraction of that ceiling.

--idle-connections N opens N TCP connections that each send one ApiVersions request (so the
broker has accepted them and holds a connection object) and then stay idle for the rest of the
run; the broker's RSS before and after gives memory per connection, and the 1 KiB workloads run
again with them open. --cluster starts ZooKeeper (Debian's zookeeper package, as the cluster
tests do) and three Strom brokers on free loopback ports with temporary data directories,
creates topics with replication factor 3 and min.insync.replicas=2, and measures acks=all. In
both modes every throughput workload starts after an os.sync(), so the dirty pages of the
previous one are not being written back meanwhile and the "with"/"without" pairs compare alike.

This is not part of the test run; nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

MB = 1_000_000


@dataclass
class Row:
    workload: str
    mb_s: float | None = None
    records_s: float | None = None
    latency: str = ""
    cpu_s_per_gb: float | None = None
    ceiling_share: str = ""
    notes: str = ""
    extra: dict[str, str] = field(default_factory=dict)


# -- the broker under test -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class CpuMeter(Protocol):
    def cpu_seconds(self) -> float: ...


class StromBroker:
    """A Strom broker process started for the run, with its pid for CPU and memory readings."""

    def __init__(self, sets: list[str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="strom-bench-"))
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        args = [
            sys.executable,
            "-m",
            "strom",
            "serve",
            "--set",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "--set",
            f"log.dirs={self.dir / 'data'}",
        ]
        for item in sets:
            args += ["--set", item]
        started = time.monotonic()
        with open(self.dir / "broker.log", "wb") as log:
            self.proc = subprocess.Popen(args, stderr=log)
        self.startup_s = self._wait_listening(started)

    def _wait_listening(self, started: float) -> float:
        deadline = started + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.05):
                    return time.monotonic() - started
            except OSError:
                time.sleep(0.002)
        raise RuntimeError("broker did not start; see " + str(self.dir / "broker.log"))

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class BrokerGroup:
    """Several brokers measured together: CPU is the sum over all of them."""

    def __init__(self, brokers: list[StromBroker]) -> None:
        self.brokers = brokers

    def cpu_seconds(self) -> float:
        return sum(b.cpu_seconds() for b in self.brokers)


# -- ZooKeeper and a three-broker cluster -----------------------------------------------------

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
SLF4J_BINDING = Path("/usr/share/java/slf4j-simple.jar")


class ZooKeeper:
    """A standalone ZooKeeper from Debian's package, as tests/cluster/zk_server.py starts it."""

    def __init__(self) -> None:
        if shutil.which("java") is None or not ZOOKEEPER_JAR.exists():
            raise RuntimeError(
                f"--cluster needs java and {ZOOKEEPER_JAR} (apt-get install zookeeper)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="strom-bench-zk-"))
        self.port = free_port()
        config = self.dir / "zoo.cfg"
        config.write_text(
            "\n".join(
                [
                    "tickTime=2000",
                    f"dataDir={self.dir / 'data'}",
                    f"clientPort={self.port}",
                    "clientPortAddress=127.0.0.1",
                    "admin.enableServer=false",
                    "4lw.commands.whitelist=srvr",
                    "maxClientCnxns=0",
                    "",
                ]
            )
        )
        with open(self.dir / "zookeeper.log", "wb") as log:
            self.proc = subprocess.Popen(
                [
                    "java",
                    "-Xmx256m",
                    "-XX:+UseSerialGC",
                    "-XX:TieredStopAtLevel=1",
                    "-Dzookeeper.admin.enableServer=false",
                    "-cp",
                    f"{ZOOKEEPER_JAR}:{SLF4J_BINDING}",
                    "org.apache.zookeeper.server.ZooKeeperServerMain",
                    str(config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self._wait_serving(time.monotonic() + 60)
        except BaseException:
            self.stop()
            raise

    def _wait_serving(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"srvr")
                    reply = b""
                    while chunk := conn.recv(4096):
                        reply += chunk
                if b"Mode:" in reply:
                    return
            time.sleep(0.05)
        raise RuntimeError("ZooKeeper did not start; see " + str(self.dir / "zookeeper.log"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Cluster:
    """ZooKeeper and three Strom brokers; stop() stops all four (whatever did start)."""

    def __init__(self, sets: list[str], size: int = 3) -> None:
        self.zookeeper: ZooKeeper | None = None
        self.brokers: list[StromBroker] = []
        try:
            self.zookeeper = ZooKeeper()
            chroot = f"127.0.0.1:{self.zookeeper.port}/strom-bench"
            for broker_id in range(1, size + 1):
                self.brokers.append(
                    StromBroker([f"broker.id={broker_id}", f"zookeeper.connect={chroot}", *sets])
                )
        except BaseException:
            self.stop()
            raise
        self.bootstrap = ",".join(b.bootstrap for b in self.brokers)
        self.group = BrokerGroup(self.brokers)

    def stop(self) -> None:
        # SIGTERM to all at once: each does a controlled shutdown, which needs the others.
        for broker in self.brokers:
            broker.terminate()
        for broker in self.brokers:
            broker.stop()
        if self.zookeeper is not None:
            self.zookeeper.stop()


# -- idle connections --------------------------------------------------------------------------


def raise_fd_limit(needed: int) -> None:
    """Raises the soft open-files limit (inherited by brokers started afterwards)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            print(f"open-files limit {target} < {needed}; the run may fail", file=sys.stderr)


def api_versions_request(correlation_id: int) -> bytes:
    client_id = b"strom-bench-idle"
    # ApiVersions (key 18) v0, request header v1: no body.
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def read_response(conn: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed an idle connection")
            buf += chunk
        return bytes(buf)

    (size,) = struct.unpack(">i", exactly(4))
    return exactly(size)


class IdleConnections:
    """N connections that each completed one ApiVersions exchange, then stay open and silent."""

    def __init__(self, bootstrap: str, count: int) -> None:
        host, port = bootstrap.split(",")[0].rsplit(":", 1)
        self.sockets: list[socket.socket] = []
        try:
            for i in range(count):
                conn = socket.create_connection((host, int(port)), timeout=30)
                self.sockets.append(conn)
                conn.sendall(api_versions_request(i))
            self._read_answers()
        except BaseException:
            self.close()
            raise

    def ping(self) -> None:
        """One more ApiVersions on every connection (all sent, then all answered)."""
        for i, conn in enumerate(self.sockets):
            conn.sendall(api_versions_request(i))
        self._read_answers()

    def _read_answers(self) -> None:
        for i, conn in enumerate(self.sockets):
            (correlation_id,) = struct.unpack(">i", read_response(conn)[:4])
            if correlation_id != i:
                raise RuntimeError(f"connection {i}: correlation id {correlation_id}")

    def close(self) -> None:
        for conn in self.sockets:
            conn.close()
        self.sockets.clear()


# -- ceilings ----------------------------------------------------------------------------------


def loopback_ceiling(total: int = 2_000_000_000, chunk: int = 1 << 20) -> float:
    """MB/s that one Python thread can push through a loopback TCP socket to another."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received = [0]

    def sink() -> None:
        conn, _ = server.accept()
        buf = bytearray(chunk)
        view = memoryview(buf)
        while True:
            n = conn.recv_into(view)
            if n == 0:
                break
            received[0] += n
        conn.close()

    thread = threading.Thread(target=sink)
    thread.start()
    client = socket.create_connection(("127.0.0.1", port))
    payload = b"x" * chunk
    start = time.perf_counter()
    sent = 0
    while sent < total:
        client.sendall(payload)
        sent += chunk
    client.close()
    thread.join()
    elapsed = time.perf_counter() - start
    server.close()
    return received[0] / elapsed / MB


def append_ceiling(total: int = 1_000_000_000, chunk: int = 1 << 20) -> float:
    """MB/s of appending to a file from Python (page cache, no fsync)."""
    payload = b"x" * chunk
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "append.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        start = time.perf_counter()
        written = 0
        while written < total:
            written += os.write(fd, payload)
        elapsed = time.perf_counter() - start
        os.close(fd)
    return written / elapsed / MB


# -- workloads ---------------------------------------------------------------------------------


PRODUCER_CONFIG = {
    "acks": "1",
    "compression.type": "none",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "queue.buffering.max.messages": 1_000_000,
}


@dataclass
class Setup:
    """Where and how the workloads run: single broker (RF 1, acks=1) or the cluster."""

    bootstrap: str
    meter: CpuMeter | None
    replication: int = 1
    acks: str = "1"
    sync_first: bool = False


def create_topic(setup: Setup, partitions: int) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": setup.bootstrap})
    config = {"min.insync.replicas": "2"} if setup.replication > 1 else {}
    deadline = time.monotonic() + 60
    while True:
        topic = NewTopic(name, partitions, setup.replication, config=config)
        try:
            for future in admin.create_topics([topic]).values():
                future.result(60)
            break
        except Exception as exc:  # brokers of a fresh cluster may not all be registered yet
            if setup.replication == 1 or time.monotonic() > deadline:
                raise
            print(f"create topic: {exc}; retrying", file=sys.stderr)
            time.sleep(0.5)
    if setup.replication > 1:
        wait_in_sync(admin, name, partitions, setup.replication, deadline)
    return name


def wait_in_sync(
    admin: AdminClient, topic: str, partitions: int, replicas: int, deadline: float
) -> None:
    """Until every partition has a leader and all replicas in its ISR."""
    while time.monotonic() < deadline:
        meta = admin.list_topics(topic, timeout=10).topics.get(topic)
        if (
            meta is not None
            and meta.error is None
            and len(meta.partitions) == partitions
            and all(p.leader >= 0 and len(p.isrs) == replicas for p in meta.partitions.values())
        ):
            return
        time.sleep(0.2)
    raise RuntimeError(f"topic {topic}: replicas not in sync within the deadline")


def produce(
    bootstrap: str, topic: str, size: int, count: int, partitions: int, acks: str = "1"
) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG, "acks": acks})
    payload = os.urandom(size)
    failures = [0]

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failures[0] += 1

    start = time.perf_counter()
    for i in range(count):
        while True:
            try:
                if partitions > 1:
                    producer.produce(
                        topic, payload, partition=i % partitions, on_delivery=on_delivery
                    )
                else:
                    producer.produce(topic, payload, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(300)
    elapsed = time.perf_counter() - start
    if failures[0]:
        raise RuntimeError(f"{failures[0]} records failed to produce")
    return elapsed


def consume(bootstrap: str, topic: str, count: int, partitions: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 10_485_760,
            "queued.max.messages.kbytes": 1_048_576,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = 0
    start = time.perf_counter()
    while got < count:
        # consume() waits for the whole count or the timeout: never ask for more than remain.
        batch = consumer.consume(min(10_000, count - got), timeout=5)
        if not batch and time.perf_counter() - start > 300:
            raise RuntimeError(f"consumed only {got} of {count}")
        got += sum(1 for m in batch if m.error() is None)
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


def throughput(
    setup: Setup,
    label: str,
    size: int,
    total_bytes: int,
    partitions: int,
) -> list[Row]:
    count = max(1, total_bytes // size)
    bootstrap, broker = setup.bootstrap, setup.meter
    topic = create_topic(setup, partitions)
    if setup.sync_first:
        os.sync()
    cpu0 = broker.cpu_seconds() if broker else None
    produce_s = produce(bootstrap, topic, size, count, partitions, setup.acks)
    cpu1 = broker.cpu_seconds() if broker else None
    consume_s = consume(bootstrap, topic, count, partitions)
    cpu2 = broker.cpu_seconds() if broker else None
    gb = count * size / 1e9
    rows = []
    for kind, seconds, cpu in (
        ("produce", produce_s, (cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None),
        ("consume", consume_s, (cpu2 - cpu1) if cpu1 is not None and cpu2 is not None else None),
    ):
        rows.append(
            Row(
                workload=f"{label}: {kind}",
                mb_s=count * size / seconds / MB,
                records_s=count / seconds,
                cpu_s_per_gb=cpu / gb if cpu is not None else None,
            )
        )
    return rows


def latency(setup: Setup, rate: int, seconds: float, label: str = "") -> Row:
    """End to end: produce 100-byte records at `rate`/s, consume them, time each one."""
    bootstrap = setup.bootstrap
    topic = create_topic(setup, 1)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
            "fetch.min.bytes": 1,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    producer = Producer({"bootstrap.servers": bootstrap, "acks": setup.acks, "linger.ms": 0})
    # Warm up both clients (connections, metadata, the first fetch) before anything is timed.
    producer.produce(topic, b"warm-up".ljust(100, b"."))
    producer.flush(30)
    while (first := consumer.poll(1.0)) is None or first.error() is not None:
        pass
    count = int(rate * seconds)
    samples: list[float] = []
    done = threading.Event()

    def read() -> None:
        while len(samples) < count and not done.is_set():
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None or (value := msg.value()) is None:
                continue
            sent = float(value[:20].decode())
            samples.append((time.perf_counter() - sent) * 1000)

    reader = threading.Thread(target=read)
    reader.start()
    interval = 1.0 / rate
    start = time.perf_counter()
    for i in range(count):
        target = start + i * interval
        while (now := time.perf_counter()) < target:
            if target - now > 0.001:
                time.sleep(target - now - 0.0005)
            else:
                # Spin without holding the GIL: a bare spin starves the reader thread, whose
                # every poll() needs the GIL back, so it drains about one record per produce and
                # the measured latency was the client's own backlog (seconds), not the broker's.
                time.sleep(0)
        producer.produce(topic, f"{time.perf_counter():20.6f}".encode().ljust(100, b"."))
        producer.poll(0)
    producer.flush(30)
    reader.join(60)
    done.set()
    consumer.close()
    samples.sort()

    def pct(p: float) -> float:
        return samples[min(len(samples) - 1, int(p * len(samples)))]

    return Row(
        workload=f"{label}100 B at {rate}/s end to end ({len(samples)} records)",
        records_s=rate,
        latency=f"p50 {pct(0.5):.2f} ms, p99 {pct(0.99):.2f} ms, p99.9 {pct(0.999):.2f} ms",
        notes=f"mean {statistics.fmean(samples):.2f} ms",
    )


def print_table(rows: list[Row], loopback: float, append: float) -> None:
    def fmt(value: float | None, spec: str) -> str:
        return "" if value is None else format(value, spec)

    print()
    print(
        f"machine ceilings from Python: loopback socket {loopback:,.0f} MB/s, file append {append:,.0f} MB/s"
    )
    print()
    print(
        "| workload | MB/s | records/s | share of loopback ceiling | latency | broker CPU s per GB | notes |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        share = f"{row.mb_s / loopback:.0%}" if row.mb_s else ""
        print(
            f"| {row.workload} | {fmt(row.mb_s, ',.0f')} | {fmt(row.records_s, ',.0f')} | {share} "
            f"| {row.latency} | {fmt(row.cpu_s_per_gb, '.1f')} | {row.notes} |"
        )


def wanted(args: argparse.Namespace, label: str) -> bool:
    return not args.only or any(o in label for o in args.only)


def run_cluster(args: argparse.Namespace, volume: int) -> list[Row]:
    cluster = Cluster(args.set)
    rows: list[Row] = []
    try:
        setup = Setup(cluster.bootstrap, cluster.group, replication=3, acks="all", sync_first=True)
        startup = " / ".join(f"{b.startup_s * 1000:.0f}" for b in cluster.brokers)
        rows.append(
            Row(workload="3 brokers: start-up until accepting connections", notes=f"{startup} ms")
        )
        prefix = "3 brokers, RF 3, min.insync 2, acks=all: "
        label = "1 KiB records, 1 partition"
        if wanted(args, label):
            rows += throughput(setup, prefix + label, 1024, volume, 1)
            print(rows[-2], rows[-1], sep="\n", file=sys.stderr)
        if wanted(args, "latency"):
            rows.append(latency(setup, 5000, 5 if args.quick else 20, prefix))
            print(rows[-1], file=sys.stderr)
        rss = " / ".join(f"{b.rss_mb():.0f}" for b in cluster.brokers)
        rows.append(Row(workload="3 brokers: resident memory, after the loads", notes=f"{rss} MB"))
    finally:
        cluster.stop()
    return rows


def run_single(args: argparse.Namespace, volume: int) -> list[Row]:
    sets = list(args.set)
    if args.idle_connections > 0:
        # All from 127.0.0.1 within a second: above Strom's default connection limits
        # (max.connections.per.ip, max.connection.creation.rate), which would refuse some.
        limit = args.idle_connections + 1000
        sets = [f"max.connections.per.ip={limit}", f"max.connection.creation.rate={limit}", *sets]
    broker = None if args.bootstrap else StromBroker(sets)
    bootstrap = args.bootstrap or broker.bootstrap  # type: ignore[union-attr]
    setup = Setup(bootstrap, broker, sync_first=args.idle_connections > 0)
    rows: list[Row] = []
    idle: IdleConnections | None = None
    try:
        if broker is not None:
            rows.append(
                Row(
                    workload="start-up until accepting connections",
                    notes=f"{broker.startup_s * 1000:.0f} ms",
                )
            )
            rows.append(Row(workload="resident memory, idle", notes=f"{broker.rss_mb():.0f} MB"))
        plan = [
            ("16 KiB records, 1 partition", 16384, volume, 1),
            ("1 KiB records, 1 partition", 1024, volume, 1),
            ("1 KiB records, 1000 partitions", 1024, volume // 2, 1000),
        ]
        for label, size, total, partitions in plan:
            if not wanted(args, label):
                continue
            rows += throughput(setup, label, size, total, partitions)
            print(rows[-2], rows[-1], sep="\n", file=sys.stderr)
        if wanted(args, "latency"):
            rows.append(latency(setup, 5000, 5 if args.quick else 20))
        if args.idle_connections > 0:
            n = args.idle_connections
            rss0 = broker.rss_mb() if broker is not None else None
            opened = time.perf_counter()
            idle = IdleConnections(bootstrap, n)
            opened_s = time.perf_counter() - opened
            time.sleep(1)
            rss1 = broker.rss_mb() if broker is not None else None
            memory = (
                f"RSS {rss0:.1f} -> {rss1:.1f} MB, {(rss1 - rss0) * 1024 / n:.1f} KiB per connection"
                if rss0 is not None and rss1 is not None
                else "RSS not measured (broker not started by the driver)"
            )
            rows.append(
                Row(
                    workload=f"{n} idle connections opened (ApiVersions each)",
                    notes=f"{memory}; opened and answered in {opened_s:.2f} s",
                )
            )
            print(rows[-1], file=sys.stderr)
            for label, size, total, partitions in plan[1:]:
                if not wanted(args, label):
                    continue
                rows += throughput(setup, f"{label}, {n} idle connections", size, total, partitions)
                print(rows[-2], rows[-1], sep="\n", file=sys.stderr)
            idle.ping()
            rows.append(
                Row(
                    workload=f"{n} idle connections after the loads",
                    notes="all still open and answering ApiVersions"
                    + (f"; RSS {broker.rss_mb():.1f} MB" if broker is not None else ""),
                )
            )
        if broker is not None:
            rows.append(
                Row(workload="resident memory, after the loads", notes=f"{broker.rss_mb():.0f} MB")
            )
    finally:
        if idle is not None:
            idle.close()
        if broker is not None:
            broker.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="measure this broker instead of starting Strom")
    parser.add_argument("--quick", action="store_true", help="smaller volumes")
    parser.add_argument(
        "--set", action="append", default=[], help="extra strom serve --set key=value"
    )
    parser.add_argument(
        "--only", action="append", default=[], help="run only workloads whose name contains this"
    )
    parser.add_argument(
        "--idle-connections",
        type=int,
        default=0,
        metavar="N",
        help="then run the 1 KiB workloads again with N idle connections open",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="ZooKeeper + 3 Strom brokers: acks=all throughput and latency (RF 3)",
    )
    args = parser.parse_args()
    if args.cluster and (args.bootstrap or args.idle_connections):
        parser.error("--cluster starts its own brokers; no --bootstrap or --idle-connections")
    volume = 200 * MB if args.quick else 1000 * MB
    # Before any broker starts: the brokers inherit the limit and hold the other end.
    raise_fd_limit(args.idle_connections + 4096)
    rows = run_cluster(args, volume) if args.cluster else run_single(args, volume)
    print_table(rows, loopback_ceiling(), append_ceiling())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
