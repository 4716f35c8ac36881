"""Many partitions on one broker: throughput, topic creation, memory, descriptors, start-up.

    .venv/bin/python benchmarks/partitions.py                     # 1; 1,000; 10,000; 100,000
    .venv/bin/python benchmarks/partitions.py --steps 1,1000      # fewer steps
    .venv/bin/python benchmarks/partitions.py --size 1024         # record size (default 16 KiB)
    .venv/bin/python benchmarks/partitions.py --bootstrap HOST:PORT   # a broker started apart
                                                                  # (no RSS, files, restarts)

Each step creates topics of at most 10,000 partitions each (Kafka refuses larger requests)
totalling the step's count, one CreateTopics request per topic, and times it until Metadata
shows every partition with a leader. Then one confluent-kafka producer writes records
round-robin over every partition of the step (at least `--per-partition` each, at least
`--volume` bytes in all; acks=1, linger.ms=5, no compression, as benchmarks/run.py) and one
consumer assigned to all of them reads everything back. After each step: the broker's
resident memory and open descriptors (from /proc), and how long Metadata and ListOffsets for
every partition take. After the last step the broker is stopped with SIGTERM and started
again (time to accept connections, time until every partition is open), then killed with
SIGKILL and started again (recovery). The broker runs from a temporary directory.

This is not part of the test run; nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewTopic,
    OffsetSpec,
)

MB = 1_000_000
MAX_PARTITIONS_PER_TOPIC = 10_000
PRODUCER_CONFIG = {
    "acks": "1",
    "compression.type": "none",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "queue.buffering.max.kbytes": 2_097_151,
    "queue.buffering.max.messages": 2_000_000,
    # librdkafka fails records not delivered within 5 minutes (its default), which the first
    # round over 100,000 partitions exceeded on the 2-core machine: measure it instead.
    "message.timeout.ms": 1_800_000,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Broker:
    """A Strom broker process of this run."""

    def __init__(self, sets: list[str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="strom-partitions-"))
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.sets = sets
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "broker.log"

    def start(self) -> float:
        """Start; returns the seconds until it accepts connections."""
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
        for item in self.sets:
            args += ["--set", item]
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stderr=log, stdout=log)
        deadline = started + 3600
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.05):
                    return time.monotonic() - started
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"broker exited; see {self.log_path}") from None
                time.sleep(0.01)
        raise RuntimeError(f"broker did not start; see {self.log_path}")

    def stop(self) -> float:
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(3600)
        return time.monotonic() - started

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(60)

    def _status(self, field_name: str) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        return 0

    def rss_mb(self) -> float:
        return self._status("VmRSS") / 1024

    def open_files(self) -> int:
        assert self.proc is not None
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Step:
    partitions: int
    topics: list[tuple[str, int]] = field(default_factory=list)
    create_s: float = 0.0
    produce_mb_s: float = 0.0
    consume_mb_s: float = 0.0
    records: int = 0
    produce_cpu_s_per_gb: float | None = None
    metadata_ms: float = 0.0
    list_offsets_ms: float = 0.0
    rss: list[tuple[str, float, int]] = field(default_factory=list)
    # records produced to each partition
    expected: dict[tuple[str, int], int] = field(default_factory=dict)


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 300_000})


def create_topics(
    bootstrap: str, prefix: str, partitions: int
) -> tuple[list[tuple[str, int]], float]:
    client = admin(bootstrap)
    topics: list[tuple[str, int]] = []
    left = partitions
    while left > 0:
        count = min(left, MAX_PARTITIONS_PER_TOPIC)
        topics.append((f"{prefix}-{len(topics)}", count))
        left -= count
    started = time.monotonic()
    for name, count in topics:
        futures = client.create_topics(
            [NewTopic(name, num_partitions=count, replication_factor=1)],
            request_timeout=600,
            operation_timeout=600,
        )
        futures[name].result(timeout=600)
    while True:
        md = client.list_topics(timeout=600)
        if all(
            name in md.topics
            and len(md.topics[name].partitions) == count
            and all(p.leader >= 0 for p in md.topics[name].partitions.values())
            for name, count in topics
        ):
            break
        time.sleep(0.05)
    return topics, time.monotonic() - started


def targets(topics: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return [(name, p) for name, count in topics for p in range(count)]


def produce(bootstrap: str, where: list[tuple[str, int]], size: int, count: int) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG})
    payload = os.urandom(size)
    failures = [0]

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failures[0] += 1

    started = time.perf_counter()
    n = len(where)
    for i in range(count):
        topic, partition = where[i % n]
        while True:
            try:
                producer.produce(topic, payload, partition=partition, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 1000 == 0:
            producer.poll(0)
    left = producer.flush(1800)
    elapsed = time.perf_counter() - started
    if failures[0] or left:
        raise RuntimeError(f"{failures[0]} records failed, {left} undelivered")
    return elapsed


def consume(bootstrap: str, where: list[tuple[str, int]], count: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 1_048_576,
            "queued.max.messages.kbytes": 1_048_576,
        }
    )
    consumer.assign([TopicPartition(t, p, 0) for t, p in where])
    got = 0
    started = time.perf_counter()
    while got < count:
        batch = consumer.consume(min(10_000, count - got), timeout=5)
        if not batch and time.perf_counter() - started > 1800:
            raise RuntimeError(f"consumed only {got} of {count}")
        got += sum(1 for m in batch if m.error() is None)
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed


def read_back(
    bootstrap: str, where: list[tuple[str, int]], expected: dict[tuple[str, int], int]
) -> float:
    """Read every partition from offset 0 to its end; raises unless each holds exactly the
    records produced to it (every record back). Returns the seconds it took."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 1_048_576,
            "queued.max.messages.kbytes": 1_048_576,
        }
    )
    consumer.assign([TopicPartition(t, p, 0) for t, p in where])
    want = sum(expected.values())
    counts: dict[tuple[str, int], int] = {}
    got = 0
    started = time.perf_counter()
    last_progress = started
    while got < want:
        batch = consumer.consume(10_000, timeout=5)
        for m in batch:
            if m.error() is None:
                key = (str(m.topic()), int(m.partition() or 0))
                counts[key] = counts.get(key, 0) + 1
                got += 1
        if batch:
            last_progress = time.perf_counter()
        elif time.perf_counter() - last_progress > 600:
            break
    consumer.close()
    wrong = [k for k in where if counts.get(k, 0) != expected.get(k, 0)]
    if wrong:
        k = wrong[0]
        raise RuntimeError(
            f"{len(wrong)} partitions differ, e.g. {k[0]}-{k[1]}: read {counts.get(k, 0)}, "
            f"produced {expected.get(k, 0)}"
        )
    return time.perf_counter() - started


def metadata_ms(bootstrap: str, repeats: int = 3) -> float:
    client = admin(bootstrap)
    client.list_topics(timeout=600)  # connected and warm
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        client.list_topics(timeout=600)
        best = min(best, time.perf_counter() - started)
    return best * 1000


def list_offsets_ms(bootstrap: str, where: list[tuple[str, int]], repeats: int = 3) -> float:
    client = admin(bootstrap)
    request = {TopicPartition(t, p): OffsetSpec.latest() for t, p in where}
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        futures = client.list_offsets(request, request_timeout=600)
        for future in futures.values():
            future.result()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def wait_for_log(broker: Broker, pattern: str, deadline_s: float = 3600) -> re.Match[str] | None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = list(re.finditer(pattern, broker.log_text()))
        if found:
            return found[-1]
        time.sleep(0.1)
    return None


def run_step(bootstrap: str, broker: Broker | None, n: int, args: argparse.Namespace) -> Step:
    step = Step(n)
    step.topics, step.create_s = create_topics(bootstrap, f"p{n}-{uuid.uuid4().hex[:6]}", n)
    if broker is not None:
        step.rss.append(("after creating", broker.rss_mb(), broker.open_files()))
    where = targets(step.topics)
    count = max(n * args.per_partition, args.volume // args.size)
    step.records = count
    for i, key in enumerate(where[: min(count, len(where))]):
        step.expected[key] = count // len(where) + (1 if i < count % len(where) else 0)
    os.sync()
    cpu0 = broker.cpu_seconds() if broker is not None else None
    seconds = produce(bootstrap, where, args.size, count)
    step.produce_mb_s = count * args.size / seconds / MB
    if broker is not None and cpu0 is not None:
        step.produce_cpu_s_per_gb = (broker.cpu_seconds() - cpu0) / (count * args.size / 1e9)
        step.rss.append(("after producing", broker.rss_mb(), broker.open_files()))
    step.consume_mb_s = count * args.size / consume(bootstrap, where, count) / MB
    if broker is not None:
        step.rss.append(("after consuming", broker.rss_mb(), broker.open_files()))
    step.metadata_ms = metadata_ms(bootstrap)
    step.list_offsets_ms = list_offsets_ms(bootstrap, where)
    return step


def print_steps(steps: list[Step], size: int) -> None:
    print(f"\nrecord size {size} B; one producer, one consumer (confluent-kafka)")
    print(
        "| partitions | create | produce MB/s | (CPU s/GB) | consume MB/s | Metadata ms "
        "| ListOffsets ms | RSS MB / open files |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in steps:
        cpu = f"{s.produce_cpu_s_per_gb:.1f}" if s.produce_cpu_s_per_gb is not None else ""
        rss = "; ".join(f"{what}: {mb:.0f} / {files}" for what, mb, files in s.rss)
        print(
            f"| {s.partitions:,} | {s.create_s:.2f} s | {s.produce_mb_s:,.0f} | {cpu} "
            f"| {s.consume_mb_s:,.0f} | {s.metadata_ms:,.1f} | {s.list_offsets_ms:,.1f} | {rss} |"
        )


def restarts(broker: Broker, steps: list[Step]) -> None:
    """Clean stop and start, then kill -9 and start, with every step's partitions; after each
    start every record of every partition is read back."""
    where = [key for s in steps for key in targets(s.topics)]
    expected = {k: v for s in steps for k, v in s.expected.items()}
    total_partitions = len(where)
    print(f"\nrestarts with {total_partitions:,} partitions on disk")
    stop_s = broker.stop()
    start_s = broker.start()
    md_started = time.monotonic()
    metadata_ms(broker.bootstrap, repeats=1)
    first_metadata = time.monotonic() - md_started
    rss_idle = broker.rss_mb()
    warm = wait_for_log(
        broker,
        r"opened the (\d+) partition\(s\) left unopened at start-up in "
        r"([\d.]+) s",
    )
    print(f"clean stop (SIGTERM until exit): {stop_s:.1f} s")
    print(
        f"start after a clean stop, until accepting connections: {start_s:.2f} s "
        f"(+{first_metadata:.2f} s to the first Metadata answer); RSS then {rss_idle:.0f} MB, "
        f"{broker.open_files()} open files"
    )
    if warm is not None:
        print(
            f"  every partition opened in the background after {float(warm.group(2)):.1f} s; "
            f"RSS then {broker.rss_mb():.0f} MB, {broker.open_files()} open files"
        )
    seconds = read_back(broker.bootstrap, where, expected)
    print(f"  every record of every partition read back after the clean restart ({seconds:.0f} s)")
    broker.kill9()
    start_s = broker.start()
    print(
        f"start after kill -9, until accepting connections: {start_s:.2f} s; RSS "
        f"{broker.rss_mb():.0f} MB, {broker.open_files()} open files"
    )
    seconds = read_back(broker.bootstrap, where, expected)
    print(f"  every record of every partition read back after kill -9 ({seconds:.0f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1,1000,10000,100000")
    parser.add_argument("--size", type=int, default=16 * 1024)
    parser.add_argument("--per-partition", type=int, default=2)
    parser.add_argument("--volume", type=int, default=1_000_000_000)
    parser.add_argument("--bootstrap")
    parser.add_argument("--set", action="append", default=[], help="broker config key=value")
    parser.add_argument("--keep", action="store_true", help="keep the broker's directory")
    args = parser.parse_args()
    steps = [int(x) for x in args.steps.split(",")]
    broker: Broker | None = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = Broker(args.set)
        start_s = broker.start()
        print(
            f"broker started in {start_s:.2f} s; RSS {broker.rss_mb():.0f} MB, "
            f"{broker.open_files()} open files; data in {broker.dir}"
        )
        bootstrap = broker.bootstrap
    done: list[Step] = []
    try:
        for n in steps:
            done.append(run_step(bootstrap, broker, n, args))
            print_steps(done[-1:], args.size)
        print_steps(done, args.size)
        if broker is not None:
            restarts(broker, done)
    finally:
        if broker is not None:
            if broker.proc is not None and broker.proc.poll() is None:
                broker.stop()
            if not args.keep:
                broker.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
