"""Share consumers (confluent-kafka's ShareConsumer) and share-group requests on the wire.

A `ShareWorker` runs one ShareConsumer in its own thread (the consumer is not thread-safe,
so each stays in the thread that made it) and records every message it gets. A new share
group starts at the end of the log (share.auto.offset.reset=latest), and each share partition
is placed there when its leader first serves it (a member's first fetch of that partition,
which for partitions of different leaders or members comes at different times). So `prime`
produces marker records into one partition until one of that partition is delivered: its share
state then exists and every record produced into it after that is for the group.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import confluent_kafka as ck

from strom.protocol.messages.share_group_describe_request import ShareGroupDescribeRequest
from strom.protocol.messages.share_group_describe_response import (
    DescribedGroup,
    ShareGroupDescribeResponse,
)

from .broker_process import BrokerProcess
from .clients import DEADLINE_S, Rec, ck_produce, wait_until

PRIME_PREFIX = b"prime-"


@dataclass(frozen=True)
class Got:
    offset: int
    delivery_count: int
    value: bytes
    partition: int = 0


def share_conf(bootstrap: str, group: str, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "max.poll.records": 5,
        "socket.timeout.ms": 20_000,
    }
    conf.update({k.replace("_", "."): v for k, v in extra.items()})
    return conf


@dataclass
class ShareWorker:
    """One share consumer polling in a thread until stopped; implicit acknowledgement unless
    `decide` is given (explicit mode: `decide(message)` returns the AcknowledgeType)."""

    bootstrap: str
    group: str
    topics: list[str]
    conf: dict[str, Any] = field(default_factory=dict)
    decide: Callable[[Any], Any] | None = None
    got: list[Got] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ack_results: list[tuple[dict[Any, set[int]], Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ShareWorker:
        self._thread.start()
        return self

    def _run(self) -> None:
        conf = share_conf(self.bootstrap, self.group, **self.conf)
        if self.decide is not None:
            conf["share.acknowledgement.mode"] = "explicit"
        consumer = ck.ShareConsumer(conf)
        if self.decide is not None:
            consumer.set_acknowledgement_commit_callback(
                lambda offsets, exc: self.ack_results.append((offsets, exc))
            )
        consumer.subscribe(self.topics)
        try:
            while not self._stop.is_set():
                for m in consumer.poll(0.5):
                    if m.error():
                        self.errors.append(str(m.error()))
                        continue
                    with self._lock:
                        self.got.append(
                            Got(m.offset(), m.delivery_count(), m.value(), m.partition())
                        )
                    if self.decide is not None:
                        consumer.acknowledge(m, self.decide(m))
                if self.decide is not None:
                    consumer.commit_sync(30)
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(DEADLINE_S)
        assert not self._thread.is_alive(), "share consumer did not close"

    def values(self) -> list[bytes]:
        with self._lock:
            return [g.value for g in self.got if not g.value.startswith(PRIME_PREFIX)]


def prime(bootstrap: str, topic: str, workers: Iterable[ShareWorker], partition: int = 0) -> None:
    """Produce marker records into `partition` until a worker receives one of that partition
    (its share partition exists); markers of other partitions do not count."""
    workers = list(workers)
    n = 0

    def delivered() -> bool:
        nonlocal n
        if any(
            g.partition == partition and g.value.startswith(PRIME_PREFIX)
            for w in workers
            for g in list(w.got)
        ):
            return True
        marker = Rec(key=b"prime", value=PRIME_PREFIX + str(n).encode(), partition=partition)
        ck_produce(bootstrap, topic, [marker], **{"linger.ms": 0})
        n += 1
        return False

    wait_until(delivered, "a share consumer to receive a priming record", interval_s=0.5)


def produce_values(bootstrap: str, topic: str, values: list[bytes], partition: int = 0) -> None:
    """One record per batch, so that acquisitions (whole batches) can be spread."""
    recs = [Rec(key=None, value=v, partition=partition) for v in values]
    ck_produce(bootstrap, topic, recs, **{"linger.ms": 0, "batch.num.messages": 1})


class WireConnection:
    """One connection to a broker for requests of flexible versions (request header v2,
    response header v1). Share sessions live as long as the connection that opened them."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.sock = socket.create_connection((broker.host, broker.port), timeout=DEADLINE_S)

    def __enter__(self) -> WireConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def call(self, api_key: int, version: int, request: Any, response: Any) -> Any:
        header = struct.pack(">hhi", api_key, version, 9) + struct.pack(">h", 4) + b"test\x00"
        payload = header + request.encode(version)
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _recv(self.sock, 4))[0]
        answer = _recv(self.sock, size)
        return response.decode(answer[5:], version)  # after the correlation id and tags


def wire(broker: BrokerProcess, api_key: int, version: int, request: Any, response: Any) -> Any:
    """One request on a connection of its own."""
    with WireConnection(broker) as conn:
        return conn.call(api_key, version, request, response)


def share_group_describe(broker: BrokerProcess, group: str) -> DescribedGroup:
    request = ShareGroupDescribeRequest(group_ids=[group])
    (group_described,) = wire(broker, 77, 1, request, ShareGroupDescribeResponse).groups
    return group_described


def _recv(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def wait_members(broker: BrokerProcess, group: str, count: int) -> DescribedGroup:
    def ready() -> DescribedGroup | None:
        described = share_group_describe(broker, group)
        if len(described.members) == count and all(
            m.assignment.topic_partitions for m in described.members
        ):
            return described
        return None

    found: DescribedGroup = wait_until(ready, f"{count} assigned members in share group {group}")
    return found


def monotonic_deadline(seconds: float) -> float:
    return time.monotonic() + seconds
