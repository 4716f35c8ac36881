"""Delayed delivery: a million delayed records pending on one partition.

    .venv/bin/python benchmarks/delayed_delivery.py                  # 1,000,000 records
    .venv/bin/python benchmarks/delayed_delivery.py --records 100000 --lead-s 60 --spread-s 30

Starts a Strom broker (with its HTTP listener for /metrics), creates a one-partition topic and
a share group reading it from the earliest offset, and starts `--consumers` ShareConsumers
(threads of this process). Then it produces `--records` records of 100 bytes (confluent-kafka,
linger.ms=5), each with the header `strom.deliver.at` set so that their due times are spread
evenly over `--spread-s` seconds starting `--lead-s` seconds after the first produce. It
reports:

- how long the share partition took to pass every record into its timer index
  (`strom_share_partition_delayed_records` reaching the record count) and the broker's RSS
  then, against its RSS before the records (the index is on disk: its files' size is shown);
- delivery lateness: the wall time a consumer's poll returned each record minus the record's
  due time (p50, p99, max; a negative one would be an early delivery and is counted);
- the same lateness on an idle broker: `--idle-records` records due 100 ms apart, nothing else
  pending.

This is not part of the test run; nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from confluent_kafka import Producer, ShareConsumer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import StromBroker, free_port


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Lateness:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: list[int] = []


def consume_loop(
    bootstrap: str, group: str, topic: str, into: Lateness, stop: threading.Event
) -> None:
    consumer = ShareConsumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "max.poll.records": 500}
    )
    consumer.subscribe([topic])
    try:
        while not stop.is_set():
            messages = consumer.poll(0.2)
            received = now_ms()
            late = []
            for m in messages:
                if m.error():
                    continue
                for name, value in m.headers() or ():
                    if name == "strom.deliver.at" and value is not None:
                        late.append(received - int(value))
            if late:
                with into.lock:
                    into.values.extend(late)
    finally:
        consumer.close()


def metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def memory(broker: StromBroker) -> str:
    """RSS, and its anonymous part (the heap) apart from mapped files (the timer log's
    segments are memory-mapped: their pages count in RSS while resident)."""
    fields = {}
    for line in Path(f"/proc/{broker.proc.pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            fields[name] = int(rest.split()[0]) / 1024
    return (
        f"RSS {fields.get('VmRSS', 0):.0f} MB (anonymous {fields.get('RssAnon', 0):.0f} MB, "
        f"files {fields.get('RssFile', 0):.0f} MB)"
    )


def dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def setup(bootstrap: str) -> tuple[str, str]:
    topic = f"delays-{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    entry = ConfigEntry(
        "share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[entry])
    admin.incremental_alter_configs([resource])[resource].result(30)
    return topic, group


def percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[int]) -> str:
    if not values:
        return "none received"
    early = sum(v < 0 for v in values)
    return (
        f"{len(values):,} received, lateness p50 {percentile(values, 0.5)} ms, "
        f"p99 {percentile(values, 0.99)} ms, max {max(values)} ms, mean "
        f"{statistics.fmean(values):.0f} ms, early {early}"
    )


def run_consumers(
    bootstrap: str, group: str, topic: str, count: int
) -> tuple[Lateness, threading.Event, list[threading.Thread]]:
    into = Lateness()
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=consume_loop, args=(bootstrap, group, topic, into, stop), daemon=True
        )
        for _ in range(count)
    ]
    for t in threads:
        t.start()
    return into, stop, threads


def wait_received(into: Lateness, count: int, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with into.lock:
            if len(into.values) >= count:
                return
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--lead-s", type=float, default=240.0)
    parser.add_argument("--spread-s", type=float, default=200.0)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--idle-records", type=int, default=200)
    args = parser.parse_args()

    http_port = free_port()
    broker = StromBroker(
        [
            f"strom.http.listeners=http://127.0.0.1:{http_port}",
            "group.share.partition.max.record.locks=2000",
        ]
    )
    try:
        bootstrap = broker.bootstrap
        topic, group = setup(bootstrap)
        into, stop, threads = run_consumers(bootstrap, group, topic, args.consumers)
        time.sleep(5)  # the consumers join the group
        before = memory(broker)
        producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1_000_000}
        )
        value = b"x" * 100
        started = now_ms()
        first_due = started + int(args.lead_s * 1000)
        step = args.spread_s * 1000 / args.records
        for i in range(args.records):
            due = str(first_due + int(i * step)).encode()
            while True:
                try:
                    producer.produce(topic, value, headers=[("strom.deliver.at", due)])
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(300)
        produced_s = (now_ms() - started) / 1000
        print(f"produced {args.records:,} records in {produced_s:.1f} s")
        name = "strom_share_partition_delayed_records"
        while True:
            pending = metric(http_port, name) or 0
            if pending >= args.records or now_ms() >= first_due:
                break
            time.sleep(0.5)
        indexed_s = (now_ms() - started) / 1000
        timers = broker.dir / "data" / f"{topic}-0" / "strom-share-timers"
        print(f"pending in the timer index: {int(pending):,} after {indexed_s:.1f} s")
        print(f"broker before the records: {before}")
        print(f"broker with them pending:  {memory(broker)}")
        print(f"timer files: {dir_size_mb(timers):.0f} MB")
        wait_received(into, args.records, args.lead_s + args.spread_s + 600)
        with into.lock:
            print("pending records:", summary(into.values))
        print(f"broker after delivery: {memory(broker)}")
        stop.set()
        for t in threads:
            t.join(30)

        topic, group = setup(bootstrap)
        into, stop, threads = run_consumers(bootstrap, group, topic, 1)
        time.sleep(5)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        first_due = now_ms() + 2000
        for i in range(args.idle_records):
            due = str(first_due + 100 * i).encode()
            producer.produce(topic, value, headers=[("strom.deliver.at", due)])
        producer.flush(30)
        wait_received(into, args.idle_records, 2 + args.idle_records * 0.1 + 120)
        with into.lock:
            print("idle:", summary(into.values))
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
