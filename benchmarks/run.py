"""Strom's benchmark driver: throughput, latency, start-up and memory against any Kafka broker.

    .venv/bin/python benchmarks/run.py                 # starts a Strom broker itself
    .venv/bin/python benchmarks/run.py --bootstrap host:port   # measures any broker
    .venv/bin/python benchmarks/run.py --quick         # smaller volumes, for a smoke run

Clients are confluent-kafka (librdkafka) with the settings of the reference measurements:
acks=1, no compression, linger.ms=5, batch.size=1000000. Every workload writes to a fresh
topic. The same run measures what this machine can do from Python at all (loopback socket
copy, file append), so each figure is also shown as a fraction of that ceiling.

This is not part of the test run; nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

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


class StromBroker:
    """A Strom broker process started for the run, with its pid for CPU and memory readings."""

    def __init__(self, sets: list[str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="strom-bench-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
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

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


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


def create_topic(bootstrap: str, partitions: int) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(60)
    return name


def produce(bootstrap: str, topic: str, size: int, count: int, partitions: int) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG})
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
    bootstrap: str,
    broker: StromBroker | None,
    label: str,
    size: int,
    total_bytes: int,
    partitions: int,
) -> list[Row]:
    count = max(1, total_bytes // size)
    topic = create_topic(bootstrap, partitions)
    cpu0 = broker.cpu_seconds() if broker else None
    produce_s = produce(bootstrap, topic, size, count, partitions)
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


def latency(bootstrap: str, rate: int, seconds: float) -> Row:
    """End to end: produce 100-byte records at `rate`/s, consume them, time each one."""
    topic = create_topic(bootstrap, 1)
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
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 0})
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
            if msg is None or msg.error() is not None:
                continue
            sent = float(msg.value()[:20].decode())
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
        workload=f"100 B at {rate}/s end to end ({len(samples)} records)",
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
    args = parser.parse_args()
    volume = 200 * MB if args.quick else 1000 * MB
    broker = None if args.bootstrap else StromBroker(args.set)
    bootstrap = args.bootstrap or broker.bootstrap  # type: ignore[union-attr]
    rows: list[Row] = []
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
            if args.only and not any(o in label for o in args.only):
                continue
            rows += throughput(bootstrap, broker, label, size, total, partitions)
            print(rows[-2], rows[-1], sep="\n", file=sys.stderr)
        if not args.only or any("latency" in o for o in args.only):
            rows.append(latency(bootstrap, 5000, 5 if args.quick else 20))
        if broker is not None:
            rows.append(
                Row(workload="resident memory, after the loads", notes=f"{broker.rss_mb():.0f} MB")
            )
    finally:
        if broker is not None:
            broker.stop()
    print_table(rows, loopback_ceiling(), append_ceiling())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
