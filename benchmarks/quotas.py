"""Achieved rates under client quotas: a producer and a consumer held to 1 and 10 MB/s.

    .venv/bin/python benchmarks/quotas.py            # starts a Strom broker itself
    .venv/bin/python benchmarks/quotas.py --seconds 30

For each quota a fresh client id gets producer_byte_rate (then consumer_byte_rate) through
AlterClientQuotas (kafka-python's request class); a confluent-kafka producer writes 10 kB
records as fast as it can for `--seconds` (librdkafka waits the throttle times the broker
reports), then a consumer with its own quota reads the topic from the start for as long. The
rates are over the whole run, the first window's burst included (Kafka averages over 11
one-second samples, so a client starting fresh may use about ten seconds' worth at once).
The same is measured without a quota. This is not part of the test run.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import kafka
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from kafka.protocol.admin import AlterClientQuotasRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import StromBroker

MB = 1_000_000
RECORD = b"x" * 10_000


def set_quota(bootstrap: str, client_id: str, key: str, value: float) -> None:
    admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        manager = admin._manager
        request = AlterClientQuotasRequest(
            entries=[([("client-id", client_id)], [(key, value, False)])], validate_only=False
        )

        async def call() -> Any:
            return await manager.send(request)

        (entry,) = manager.run(call).entries
        assert entry.error_code == 0, entry
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, client_id: str, seconds: float) -> tuple[float, int]:
    throttles: list[float] = []
    sent = [0]
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "throttle_cb": lambda event: throttles.append(event.throttle_time),
        }
    )

    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            sent[0] += len(RECORD)

    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            p.produce(topic, RECORD, on_delivery=delivered)
        except BufferError:
            p.poll(0.05)
        p.poll(0)
    p.flush(60)
    elapsed = time.monotonic() - started
    return sent[0] / elapsed / MB, len(throttles)


def consume(bootstrap: str, topic: str, client_id: str, seconds: float) -> tuple[float, int]:
    throttles: list[float] = []
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "group.id": f"bench-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "throttle_cb": lambda event: throttles.append(event.throttle_time),
        }
    )
    c.subscribe([topic])
    read = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        msg = c.poll(0.1)
        if msg is not None and msg.error() is None:
            read += len(msg.value())
    elapsed = time.monotonic() - started
    c.close()
    return read / elapsed / MB, len(throttles)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    broker = StromBroker([])
    try:
        bootstrap = broker.bootstrap
        print(
            f"{'quota':>12} {'produced MB/s':>14} {'throttle events':>16} "
            f"{'consumed MB/s':>14} {'throttle events':>16}"
        )
        for quota_mb in (1, 10, None):
            topic = f"quota-bench-{uuid.uuid4().hex[:6]}"
            admin = AdminClient({"bootstrap.servers": bootstrap})
            admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
            tag = uuid.uuid4().hex[:6]
            writer, reader = f"writer-{tag}", f"reader-{tag}"
            if quota_mb is not None:
                set_quota(bootstrap, writer, "producer_byte_rate", quota_mb * MB)
                set_quota(bootstrap, reader, "consumer_byte_rate", quota_mb * MB)
            produced, p_throttles = produce(bootstrap, topic, writer, args.seconds)
            consumed, c_throttles = consume(bootstrap, topic, reader, args.seconds)
            label = f"{quota_mb} MB/s" if quota_mb is not None else "none"
            print(
                f"{label:>12} {produced:14.1f} {p_throttles:16d} {consumed:14.1f} {c_throttles:16d}"
            )
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
