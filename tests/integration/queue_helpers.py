"""Helpers for issue #16's tests: a share consumer that notes when each record arrived, group
configs through confluent-kafka's AdminClient, and reading a dead-letter topic."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import confluent_kafka as ck
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from .clients import DEADLINE_S
from .share_helpers import share_conf

PRIME = b"__prime__"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Arrival:
    value: bytes
    key: bytes | None
    offset: int
    partition: int
    delivery_count: int
    timestamp: int
    headers: tuple[tuple[str, bytes | None], ...]
    received_ms: int  # this process's clock when poll() returned it

    def header(self, name: str) -> bytes | None:
        found = None
        for k, v in self.headers:
            if k == name:
                found = v
        return found


@dataclass
class Receiver:
    """A ShareConsumer polling in its own thread; `decide(arrival)` picks the acknowledgement
    (explicit mode) or, None, implicit mode accepts everything."""

    bootstrap: str
    group: str
    topics: list[str]
    decide: Callable[[Arrival], Any] | None = None
    conf: dict[str, Any] = field(default_factory=dict)
    got: list[Arrival] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self.primed = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def _run(self) -> None:
        conf = share_conf(self.bootstrap, self.group, **self.conf)
        if self.decide is not None:
            conf["share.acknowledgement.mode"] = "explicit"
        consumer = ck.ShareConsumer(conf)
        consumer.subscribe(self.topics)
        try:
            while not self._stop.is_set():
                messages = consumer.poll(0.2)
                received = now_ms()
                for m in messages:
                    if m.error():
                        continue
                    arrival = Arrival(
                        m.value(),
                        m.key(),
                        m.offset(),
                        m.partition(),
                        m.delivery_count(),
                        m.timestamp()[1],
                        tuple(m.headers() or ()),
                        received,
                    )
                    if arrival.value != PRIME:
                        with self._lock:
                            self.got.append(arrival)
                    else:
                        self.primed.set()
                    if self.decide is not None:
                        consumer.acknowledge(m, self.decide(arrival))
                if self.decide is not None and messages:
                    consumer.commit_sync(30)
        finally:
            consumer.close()

    def start_primed(self, topic: str, partition: int = 0) -> Receiver:
        """Start, and return once the consumer has received a marker record produced now
        (its group is live and reading), so what is produced next is read as it comes."""
        self.start()
        producer = ck.Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 0})
        producer.produce(topic, PRIME, partition=partition)
        assert producer.flush(DEADLINE_S) == 0
        assert self.primed.wait(DEADLINE_S), "the share consumer never got the marker record"
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(DEADLINE_S)
        assert not self._thread.is_alive(), "share consumer did not close"

    def arrivals(self) -> list[Arrival]:
        with self._lock:
            return list(self.got)

    def values(self) -> list[bytes]:
        return [a.value for a in self.arrivals()]


def alter_group(bootstrap: str, group: str, **configs: str) -> None:
    """IncrementalAlterConfigs SET on a GROUP resource (names with _ for .)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entries = [
        ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET)
        for k, v in configs.items()
    ]
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)
    admin.incremental_alter_configs([resource])[resource].result(DEADLINE_S)


def describe_group(bootstrap: str, group: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ResourceType.GROUP, group)
    described = admin.describe_configs([resource])[resource].result(DEADLINE_S)
    return {name: entry.value for name, entry in described.items()}


def read_all(bootstrap: str, topic: str, partitions: int = 1) -> list[ck.Message]:
    """Every record of `topic` now (assign and read to the high watermarks)."""
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        ends = {}
        for p in range(partitions):
            _, high = consumer.get_watermark_offsets(ck.TopicPartition(topic, p), DEADLINE_S)
            ends[p] = high
        consumer.assign([ck.TopicPartition(topic, p, 0) for p in range(partitions)])
        out: list[ck.Message] = []
        positions = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + DEADLINE_S
        while any(positions[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is None or m.error():
                continue
            out.append(m)
            positions[m.partition()] = m.offset() + 1
        return out
    finally:
        consumer.close()
