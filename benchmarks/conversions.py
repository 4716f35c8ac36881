"""What the message format v0/v1 conversions cost: in-process codec figures and a live broker.

    .venv/bin/python benchmarks/conversions.py            # both parts
    .venv/bin/python benchmarks/conversions.py --codec    # only the in-process part
    .venv/bin/python benchmarks/conversions.py --quick    # smaller volumes
    .venv/bin/python benchmarks/conversions.py --recompress   # only the v2 recompression rows

Part 1 (one core, no broker, measured in CPU time of this process): the produce path's up-conversion (`up_convert`: a v0/v1 message
set validated and rebuilt as one v2 batch) and the fetch path's down-conversion (`down_convert`:
v2 batches to a v0/v1 message set), per codec, for 100-byte and 1 KiB records, next to what the
v2 produce path does per batch (`validate_batches`: header and CRC-32C) as the reference, and
the v2 produce path into a topic whose compression.type names another codec (`recompress`).

Part 2 (a Strom broker started for the run): the same 1 KiB records produced and consumed by
librdkafka speaking the current protocol (record batch v2) and with `api.version.request=false`
and `broker.version.fallback=0.9.0` (Produce v1 and Fetch v1, message format v0, so every
record is converted both ways), and by kafka-python with api_version (0, 10, 1) (Produce v2 /
Fetch v3, message format v1) and with its default (v2); the broker's CPU seconds per GB tell
what the conversions cost it. kafka-python itself is far slower than librdkafka, so its MB/s
say little about the broker.

Nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from confluent_kafka import Consumer, Producer, TopicPartition
from run import StromBroker  # the benchmark driver's broker process

from strom.protocol.records.codec import Record, build_batch
from strom.protocol.records.down_conversion import down_convert
from strom.protocol.records.legacy import encode_message, encode_wrapper
from strom.protocol.records.recompression import recompress
from strom.protocol.records.up_conversion import AppendRules, up_convert
from strom.protocol.records.validation import validate_batches

MB = 1_000_000
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3}
TARGETS = {**CODECS, "zstd": 4}
OLD_LIBRDKAFKA = {"api.version.request": False, "broker.version.fallback": "0.9.0"}


# -- part 1: the codecs in-process ------------------------------------------------------------


def timed(fn: Callable[[], object], min_seconds: float) -> float:
    """CPU seconds of this process per call, repeating until at least `min_seconds` of CPU have
    been spent (CPU time, not wall time: the figure does not depend on what else runs)."""
    fn()
    calls, start = 0, time.process_time()
    while True:
        fn()
        calls += 1
        elapsed = time.process_time() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def payload(size: int, i: int) -> bytes:
    # Half random, half repetitive: compressible like typical data, not trivially.
    return (os.urandom(size // 2) + b"%08d" % i * (size // 16))[:size]


def codec_rows(records_per_set: int, size: int, min_seconds: float) -> list[str]:
    now = int(time.time() * 1000)
    values = [payload(size, i) for i in range(records_per_set)]
    rows = []
    for name, codec in CODECS.items():
        for magic in (0, 1):
            if codec:
                legacy = encode_wrapper(
                    magic, codec, [(i, now, None, v) for i, v in enumerate(values)]
                )
            else:
                legacy = b"".join(
                    encode_message(magic, i, now, None, v) for i, v in enumerate(values)
                )
            rules = AppendRules(now_ms=now)
            up = timed(lambda legacy=legacy, rules=rules: up_convert(legacy, rules), min_seconds)
            rows.append(row(f"up, magic {magic} -> v2, {name}", records_per_set, size, up))
        batch = build_batch(
            [Record(i, now, None, v) for i, v in enumerate(values)], compression=codec
        )
        for magic in (0, 1):
            down = timed(lambda b=batch, m=magic: down_convert(b, m, 0), min_seconds)
            rows.append(row(f"down, v2 -> magic {magic}, {name}", records_per_set, size, down))
        check = timed(lambda b=batch: validate_batches(b), min_seconds)
        rows.append(
            row(f"v2 produce path (validate_batches), {name}", records_per_set, size, check)
        )
    return rows


# (source, target) codecs of a topic whose compression.type differs from the producer's.
RECOMPRESSIONS = [
    ("none", "lz4"),
    ("lz4", "gzip"),
    ("lz4", "zstd"),
    ("gzip", "none"),
    ("snappy", "lz4"),
]


def recompress_rows(records_per_set: int, size: int, min_seconds: float) -> list[str]:
    """The v2 produce path when the topic's compression.type names another codec than the
    batch's: decode the records and build the batch again (`recompress`)."""
    now = int(time.time() * 1000)
    records = [Record(i, now, None, payload(size, i)) for i in range(records_per_set)]
    rows = []
    for source, target in RECOMPRESSIONS:
        batch = build_batch(records, compression=CODECS[source])
        (header,) = validate_batches(batch)
        seconds = timed(
            lambda b=batch, h=header, t=TARGETS[target]: recompress(b, h, t, None), min_seconds
        )
        rows.append(row(f"recompress v2, {source} -> {target}", records_per_set, size, seconds))
    return rows


def row(label: str, records: int, size: int, seconds: float) -> str:
    return (
        f"| {label} | {size} B | {records / seconds:,.0f} | {records * size / seconds / MB:,.0f} |"
    )


# -- part 2: a live broker ---------------------------------------------------------------------


def ck_produce(bootstrap: str, topic: str, values: list[bytes], extra: dict[str, Any]) -> float:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "acks": "1",
            "enable.idempotence": False,
            **extra,
        }
    )
    start = time.perf_counter()
    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value, partition=0)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 1000 == 0:
            producer.poll(0)
    if producer.flush(300):
        raise RuntimeError("records left unsent")
    return time.perf_counter() - start


def ck_consume(bootstrap: str, topic: str, count: int, extra: dict[str, Any]) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 10_485_760,
            "queued.max.messages.kbytes": 1_048_576,
            **extra,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got, start = 0, time.perf_counter()
    while got < count:
        batch = consumer.consume(min(10_000, count - got), timeout=5)
        if not batch and time.perf_counter() - start > 300:
            raise RuntimeError(f"consumed only {got} of {count}")
        got += sum(1 for m in batch if m.error() is None)
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


def kp_produce(bootstrap: str, topic: str, values: list[bytes], api_version: Any) -> float:
    import kafka

    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap, api_version=api_version, linger_ms=5, batch_size=1_000_000
    )
    start = time.perf_counter()
    for value in values:
        producer.send(topic, value, partition=0)
    producer.flush(300)
    elapsed = time.perf_counter() - start
    producer.close()
    return elapsed


def kp_consume(bootstrap: str, topic: str, count: int, api_version: Any) -> float:
    import kafka

    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        api_version=api_version,
        enable_auto_commit=False,
        max_partition_fetch_bytes=10_485_760,
    )
    tp = kafka.TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    got, start = 0, time.perf_counter()
    while got < count:
        for msgs in consumer.poll(timeout_ms=1000, max_records=10_000).values():
            got += len(msgs)
        if time.perf_counter() - start > 600:
            raise RuntimeError(f"consumed only {got} of {count}")
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


def broker_rows(volume: int, kp_volume: int) -> list[str]:
    broker = StromBroker(["num.partitions=1"])
    rows = []
    try:
        size = 1024
        for label, producer, consumer, total in (
            (
                "librdkafka, record batch v2",
                lambda t, v: ck_produce(broker.bootstrap, t, v, {}),
                lambda t, n: ck_consume(broker.bootstrap, t, n, {}),
                volume,
            ),
            (
                "librdkafka 0.9.0 fallback, magic 0",
                lambda t, v: ck_produce(broker.bootstrap, t, v, OLD_LIBRDKAFKA),
                lambda t, n: ck_consume(broker.bootstrap, t, n, OLD_LIBRDKAFKA),
                volume,
            ),
            (
                "kafka-python, record batch v2",
                lambda t, v: kp_produce(broker.bootstrap, t, v, None),
                lambda t, n: kp_consume(broker.bootstrap, t, n, None),
                kp_volume,
            ),
            (
                "kafka-python (0, 10, 1), magic 1",
                lambda t, v: kp_produce(broker.bootstrap, t, v, (0, 10, 1)),
                lambda t, n: kp_consume(broker.bootstrap, t, n, (0, 10, 1)),
                kp_volume,
            ),
        ):
            count = total // size
            values = [payload(size, i) for i in range(count)]
            topic = f"conv-{uuid.uuid4().hex[:8]}"
            os.sync()
            cpu0 = broker.cpu_seconds()
            produce_s = producer(topic, values)
            cpu1 = broker.cpu_seconds()
            consume_s = consumer(topic, count)
            cpu2 = broker.cpu_seconds()
            gb = count * size / 1e9
            for kind, seconds, cpu in (
                ("produce", produce_s, cpu1 - cpu0),
                ("consume", consume_s, cpu2 - cpu1),
            ):
                rows.append(
                    f"| {label}: {kind} | {count * size / seconds / MB:,.0f} MB/s | "
                    f"{cpu / gb:.1f} |"
                )
                print(rows[-1], flush=True)
    finally:
        broker.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--codec", action="store_true", help="only the in-process part")
    parser.add_argument("--quick", action="store_true", help="smaller volumes")
    parser.add_argument(
        "--recompress", action="store_true", help="only the v2 recompression rows (in-process)"
    )
    args = parser.parse_args()
    min_seconds = 0.3 if args.quick else 1.0
    print("| conversion | record size | records/s | MB/s of record values |")
    print("| --- | --- | --- | --- |")
    for records, size in ((1000, 100), (500, 1024)):
        if not args.recompress:
            for line in codec_rows(records, size, min_seconds):
                print(line, flush=True)
        for line in recompress_rows(records, size, min_seconds):
            print(line, flush=True)
    if args.recompress:
        return 0
    if not args.codec:
        print()
        print("| workload (1 KiB records, 1 partition) | throughput | broker CPU s/GB |")
        print("| --- | --- | --- |")
        volume = 50 * MB if args.quick else 300 * MB
        broker_rows(volume, volume // 6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
