"""Many partitions on one broker, driven by requests that each carry thousands of partitions.

    .venv/bin/python benchmarks/partitions_wire.py --partitions 100000
    .venv/bin/python benchmarks/partitions_wire.py --partitions 100000 --per-partition 4 \
        --size 256 --per-request 5000

benchmarks/partitions.py drives the broker with confluent-kafka, whose per-partition work
(a queue, a batch and a timer per partition in librdkafka's broker thread) is itself a cost at
100,000 partitions. Here Strom's own async client (`strom.client`, the CLI's) sends Produce
requests of `--per-request` partitions each, one record batch of `--per-partition` records per
partition (the same encoded batch for every partition, so the client's per-partition cost is a
list entry), and Fetch requests over the same slices until every partition is read to its end.
The topics are created as partitions.py creates them (CreateTopics of at most 10,000
partitions each). Then the broker is stopped with SIGTERM and started again, killed with
SIGKILL and started again, and after each start every partition is read back and its record
count checked. Reported: records/s and MB/s of record values, the broker's CPU seconds, its
resident memory and open descriptors.

This is not part of the test run; nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
import uuid
from collections.abc import Callable

from partitions import PRODUCER_CONFIG, Broker, create_topics, targets

from strom.client.client import Client
from strom.client.fetcher import iter_batches
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.fetch_request import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
)
from strom.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from strom.protocol.records.codec import Record, build_batch

MB = 1_000_000
PRODUCE = 0
FETCH = 1
# Fetch by topic name: v12 is the last version before topic ids.
FETCH_VERSION = 12

TopicPartition = tuple[str, int]


def slices(where: list[TopicPartition], size: int) -> list[list[TopicPartition]]:
    return [where[i : i + size] for i in range(0, len(where), size)]


def by_topic(part: list[TopicPartition]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for topic, partition in part:
        out.setdefault(topic, []).append(partition)
    return out


async def produce(
    bootstrap: str,
    where: list[TopicPartition],
    batch: bytes,
    per_request: int,
    in_flight: int,
    repeat: int = 1,
) -> tuple[float, int]:
    """Send `batch` `repeat` times to every partition; returns (seconds, requests sent)."""
    async with Client(bootstrap, request_timeout_s=600) as client:
        node = next(iter((await client.metadata([])).brokers))
        gate = asyncio.Semaphore(in_flight)
        requests = slices(where, per_request) * repeat

        async def send(part: list[TopicPartition]) -> None:
            request = ProduceRequest(
                transactional_id=None,
                acks=1,
                timeout_ms=30_000,
                topic_data=[
                    TopicProduceData(t, [PartitionProduceData(p, batch) for p in ps])
                    for t, ps in by_topic(part).items()
                ],
            )
            async with gate:
                response = await client.call(PRODUCE, request, node_id=node, timeout_s=600)
            for t in response.responses:
                for p in t.partition_responses:
                    if p.error_code != ErrorCode.NONE:
                        raise RuntimeError(
                            f"produce to {t.name}-{p.index}: error {p.error_code} {p.error_message}"
                        )

        started = time.perf_counter()
        await asyncio.gather(*(send(part) for part in requests))
        return time.perf_counter() - started, len(requests)


async def read_all(
    bootstrap: str,
    where: list[TopicPartition],
    per_request: int,
    in_flight: int,
    expected: int,
) -> tuple[float, int, int]:
    """Fetch every partition from offset 0 until it holds `expected` records; raises unless
    each holds exactly that many. Returns (seconds, records, record-set bytes)."""
    positions = dict.fromkeys(where, 0)
    counts = dict.fromkeys(where, 0)
    nbytes = [0]
    async with Client(bootstrap, request_timeout_s=600) as client:
        node = next(iter((await client.metadata([])).brokers))
        gate = asyncio.Semaphore(in_flight)

        async def fetch(part: list[TopicPartition]) -> None:
            left = list(part)
            while left:
                # 8 MB a response: four in flight stay below what the broker lets wait
                # unread on one connection (it closes a connection past that).
                request = FetchRequest(
                    replica_id=-1,
                    max_wait_ms=100,
                    min_bytes=1,
                    max_bytes=8 * 1024 * 1024,
                    isolation_level=0,
                    session_id=0,
                    session_epoch=-1,
                    topics=[
                        FetchTopic(
                            topic=t,
                            partitions=[
                                FetchPartition(
                                    partition=p,
                                    fetch_offset=positions[(t, p)],
                                    partition_max_bytes=1024 * 1024,
                                )
                                for p in ps
                            ],
                        )
                        for t, ps in by_topic(left).items()
                    ],
                    forgotten_topics_data=[],
                    rack_id="",
                )
                async with gate:
                    response = await client.call(
                        FETCH, request, node_id=node, version=FETCH_VERSION, timeout_s=600
                    )
                if response.error_code != ErrorCode.NONE:
                    raise RuntimeError(f"fetch: error {response.error_code}")
                for t in response.responses:
                    for p in t.partitions:
                        tp = (t.topic, p.partition_index)
                        if p.error_code != ErrorCode.NONE:
                            raise RuntimeError(f"fetch {tp}: error {p.error_code}")
                        if not p.records:
                            continue
                        data = memoryview(p.records)
                        for header, raw in iter_batches(data):
                            counts[tp] += header.records_count
                            nbytes[0] += len(raw)
                            positions[tp] = header.base_offset + header.last_offset_delta + 1
                left = [tp for tp in left if counts[tp] < expected]

        started = time.perf_counter()
        await asyncio.gather(*(fetch(part) for part in slices(where, per_request)))
        elapsed = time.perf_counter() - started
    wrong = [tp for tp in where if counts[tp] != expected]
    if wrong:
        raise RuntimeError(
            f"{len(wrong)} partitions differ, e.g. {wrong[0]}: {counts[wrong[0]]} records, "
            f"expected {expected}"
        )
    return elapsed, sum(counts.values()), nbytes[0]


def confluent_slice(
    bootstrap: str, where: list[TopicPartition], size: int, cap_s: float
) -> tuple[int, float]:
    """One confluent-kafka producer (partitions.py's settings) writing one record to each
    partition of `where`; returns (records delivered, seconds) after all or `cap_s`."""
    from confluent_kafka import KafkaError, Producer

    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG})
    payload = os.urandom(size)
    delivered = [0]

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is None:
            delivered[0] += 1

    started = time.perf_counter()
    for topic, partition in where:
        producer.produce(topic, payload, partition=partition, on_delivery=on_delivery)
    end = started + cap_s
    while delivered[0] < len(where) and time.perf_counter() < end:
        producer.poll(0.1)
    elapsed = time.perf_counter() - started
    producer.purge()
    producer.flush(5)
    return delivered[0], elapsed


def confluent_producers(
    bootstrap: str, where: list[TopicPartition], size: int, producers: int, cap_s: float
) -> None:
    """`producers` processes, each writing one record to every partition of its slice."""
    share = -(-len(where) // producers)
    parts = [where[i : i + share] for i in range(0, len(where), share)]
    with multiprocessing.get_context("fork").Pool(len(parts)) as pool:
        results = pool.starmap(confluent_slice, [(bootstrap, p, size, cap_s) for p in parts])
    delivered = sum(d for d, _ in results)
    seconds = max(s for _, s in results)
    print(
        f"confluent-kafka, {len(parts)} producer(s) of {share:,} partitions each: "
        f"{delivered:,} of {len(where):,} records delivered in {seconds:.1f} s = "
        f"{delivered / seconds:,.0f} records/s",
        flush=True,
    )


def report(
    what: str, broker: Broker, seconds: float, records: int, value_bytes: int, cpu: float
) -> None:
    print(
        f"{what}: {records:,} records in {seconds:.1f} s = {records / seconds:,.0f} records/s, "
        f"{value_bytes / seconds / MB:.1f} MB/s of values; broker CPU {cpu:.1f} s; "
        f"RSS {broker.rss_mb():.0f} MB, {broker.open_files():,} open files",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=100_000)
    parser.add_argument("--per-partition", type=int, default=1, help="records per partition")
    parser.add_argument("--size", type=int, default=1024, help="bytes per record value")
    parser.add_argument("--per-request", type=int, default=5_000, help="partitions per request")
    parser.add_argument("--in-flight", type=int, default=4, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=1, help="produce rounds over all")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="requests to each slice per round, pipelined (the single-partition figure)",
    )
    parser.add_argument(
        "--confluent",
        default="",
        help="after the restarts: rounds of N confluent-kafka producers over slices (N,M,...)",
    )
    parser.add_argument("--confluent-seconds", type=float, default=120.0)
    parser.add_argument("--no-restarts", action="store_true", help="skip the two restarts")
    parser.add_argument("--set", action="append", default=[], help="broker config key=value")
    parser.add_argument("--keep", action="store_true", help="keep the broker's directory")
    args = parser.parse_args()

    broker = Broker(args.set)
    start_s = broker.start()
    print(
        f"broker started in {start_s:.2f} s; RSS {broker.rss_mb():.0f} MB, "
        f"{broker.open_files()} open files; data in {broker.dir}",
        flush=True,
    )
    try:
        cpu0 = broker.cpu_seconds()
        topics, create_s = create_topics(
            broker.bootstrap, f"w{args.partitions}-{uuid.uuid4().hex[:6]}", args.partitions
        )
        print(
            f"created {args.partitions:,} partitions in {create_s:.1f} s; broker CPU "
            f"{broker.cpu_seconds() - cpu0:.1f} s; RSS {broker.rss_mb():.0f} MB, "
            f"{broker.open_files():,} open files",
            flush=True,
        )
        where = targets(topics)
        now = int(time.time() * 1000)
        value = os.urandom(args.size)
        batch = build_batch(
            [Record(i, now, None, value) for i in range(args.per_partition)], base_offset=0
        )
        print(f"one batch per partition per request: {len(batch)} bytes", flush=True)
        for r in range(args.rounds):
            os.sync()
            cpu0 = broker.cpu_seconds()
            seconds, requests = asyncio.run(
                produce(
                    broker.bootstrap, where, batch, args.per_request, args.in_flight, args.repeat
                )
            )
            records = len(where) * args.per_partition * args.repeat
            report(
                f"produce round {r + 1} ({requests} requests of {args.per_request:,} partitions)",
                broker,
                seconds,
                records,
                records * args.size,
                broker.cpu_seconds() - cpu0,
            )
        expected = args.rounds * args.repeat * args.per_partition

        def read(what: str) -> None:
            cpu0 = broker.cpu_seconds()
            seconds, records, _ = asyncio.run(
                read_all(broker.bootstrap, where, args.per_request, args.in_flight, expected)
            )
            report(
                f"{what}, every record of every partition",
                broker,
                seconds,
                records,
                records * args.size,
                broker.cpu_seconds() - cpu0,
            )

        read("consume")
        if not args.no_restarts:
            restarts(broker, read)
        for n in [int(x) for x in args.confluent.split(",") if x]:
            cpu0 = broker.cpu_seconds()
            confluent_producers(broker.bootstrap, where, args.size, n, args.confluent_seconds)
            print(f"  broker CPU {broker.cpu_seconds() - cpu0:.1f} s", flush=True)
    finally:
        if broker.proc is not None and broker.proc.poll() is None:
            broker.stop()
        if not args.keep:
            broker.remove()
    return 0


def restarts(broker: Broker, read: Callable[[str], None]) -> None:
    """SIGTERM and start, then kill -9 and start, reading everything back after each."""
    stop_s = broker.stop()
    start_s = broker.start()
    print(
        f"SIGTERM: stopped in {stop_s:.1f} s, started again in {start_s:.2f} s; RSS "
        f"{broker.rss_mb():.0f} MB, {broker.open_files():,} open files",
        flush=True,
    )
    read("read back after SIGTERM")
    broker.kill9()
    start_s = broker.start()
    print(
        f"kill -9: started again in {start_s:.2f} s; RSS {broker.rss_mb():.0f} MB, "
        f"{broker.open_files():,} open files",
        flush=True,
    )
    read("read back after kill -9")


if __name__ == "__main__":
    sys.exit(main())
