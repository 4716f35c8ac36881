"""Share-group consume throughput: 1, 4 and 16 ShareConsumers on one partition.

    .venv/bin/python benchmarks/share_groups.py            # starts a Strom broker itself
    .venv/bin/python benchmarks/share_groups.py --records 20000 --size 100

For each consumer count a fresh share group subscribes to a fresh one-partition topic. A new
share group starts at the end of the log, so the driver first produces marker records until
one is delivered; then it produces `--records` records (confluent-kafka, linger.ms=5) and
measures from the first produce until every record has been received (implicit
acknowledgement: each poll accepts the previous one's records). The consumers run in threads
of this process (librdkafka does the network work in its own threads). The broker runs with
group.share.partition.max.record.locks=2000 (Kafka 4.x's default; Kafka 3.9's 200 would cap
the records in flight for 16 consumers). For comparison the same produce + consume is measured
with one plain Consumer assigned to the partition from its start.

This is not part of the test run; nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, ShareConsumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import StromBroker

MB = 1_000_000


def create_topic(bootstrap: str) -> str:
    name = f"share-bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(30)
    return name


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records = 0
        self.primed = False


def consume_loop(
    bootstrap: str, group: str, topic: str, counter: Counter, stop: threading.Event
) -> None:
    consumer = ShareConsumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "max.poll.records": 500}
    )
    consumer.subscribe([topic])
    try:
        while not stop.is_set():
            got = 0
            for m in consumer.poll(0.2):
                if m.error():
                    continue
                if m.key() == b"prime":
                    counter.primed = True
                    continue
                got += 1
            if got:
                with counter.lock:
                    counter.records += got
    finally:
        consumer.close()


def produce(bootstrap: str, topic: str, count: int, size: int) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1_000_000, "acks": 1}
    )
    value = b"x" * size
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, value)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)


def share_run(bootstrap: str, consumers: int, records: int, size: int) -> tuple[float, float]:
    topic = create_topic(bootstrap)
    group = f"share-bench-{uuid.uuid4().hex[:8]}"
    counter = Counter()
    stop = threading.Event()
    threads = [
        threading.Thread(target=consume_loop, args=(bootstrap, group, topic, counter, stop))
        for _ in range(consumers)
    ]
    for t in threads:
        t.start()
    marker = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    deadline = time.monotonic() + 60
    while not counter.primed and time.monotonic() < deadline:
        marker.produce(topic, b"", key=b"prime")
        marker.flush(10)
        time.sleep(0.2)
    started = time.monotonic()
    produce(bootstrap, topic, records, size)
    deadline = time.monotonic() + 600
    while counter.records < records and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    stop.set()
    for t in threads:
        t.join(60)
    rate = counter.records / elapsed
    return rate, rate * size / MB


def consumer_group_run(bootstrap: str, records: int, size: int) -> tuple[float, float]:
    topic = create_topic(bootstrap)
    started = time.monotonic()
    produce(bootstrap, topic, records, size)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"cg-bench-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = 0
    deadline = time.monotonic() + 600
    while got < records and time.monotonic() < deadline:
        for m in consumer.consume(1000, 0.5):
            if not m.error():
                got += 1
    elapsed = time.monotonic() - started
    consumer.close()
    rate = got / elapsed
    return rate, rate * size / MB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="measure a broker started separately")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1024, help="value bytes per record")
    parser.add_argument("--consumers", default="1,4,16")
    args = parser.parse_args()
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = StromBroker(["group.share.partition.max.record.locks=2000"])
        bootstrap = broker.bootstrap
    try:
        print(f"{args.records} records of {args.size} B, one partition, produce + consume")
        print("| workload | records/s | MB/s |")
        print("| --- | --- | --- |")
        rate, mb = consumer_group_run(bootstrap, args.records, args.size)
        print(f"| plain consumer (assigned), 1 consumer | {rate:,.0f} | {mb:,.1f} |")
        for n in (int(x) for x in args.consumers.split(",")):
            rate, mb = share_run(bootstrap, n, args.records, args.size)
            print(f"| share group, {n} consumer(s) | {rate:,.0f} | {mb:,.1f} |", flush=True)
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
