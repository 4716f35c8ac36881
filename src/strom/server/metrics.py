"""The broker's counters: plain integers bumped where the work already happens.

What is counted on the request path is counted once per request or once per partition of a
request, never per record: a request's API and its time from frame to encoded response
(`request_done`), bytes and records a produce appended per topic (`produced`: the record count
is in the batch header), bytes a fetch returned per topic (`fetched`), connections created per
listener, the throttle time of a response a quota delays (`throttled`, per API), and
successful and failed authentications per listener (in `NetworkShared`, where the connections
see them). Each is an attribute increment or a dict lookup plus one, with no lock (the event loop
is the only writer) and no call into a metrics library. Everything else (partitions, ISR state,
log sizes, group lag, purgatory sizes, connection counts) is read from the broker when
`/metrics` is scraped, by `server/http/prometheus.py`, which also turns these counters into
Prometheus metric families.

`LoopIdleMeter` measures the event loop's idle ratio (Kafka's network processor idle percent):
the time its selector spends waiting for I/O, two clock reads per loop iteration.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

# Request latency buckets, milliseconds (upper bounds; +Inf is implied).
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
    5000.0, 10000.0, 30000.0,
)  # fmt: skip


@dataclass(slots=True)
class LatencyHistogram:
    """Counts per bucket (not cumulative; the exposition sums them) and the total."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    total_ms: float = 0.0

    def observe(self, ms: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS_MS, ms)] += 1
        self.total_ms += ms


@dataclass(slots=True)
class TopicCounters:
    bytes_in: int = 0
    messages_in: int = 0
    bytes_out: int = 0
    produce_requests: int = 0
    fetch_requests: int = 0
    failed_produce_requests: int = 0


class BrokerMetrics:
    def __init__(self) -> None:
        # api key -> histogram of request time (its count is the request count)
        self.requests: dict[int, LatencyHistogram] = {}
        # api key -> histogram of the throttle times of throttled responses (quotas)
        self.throttles: dict[int, LatencyHistogram] = {}
        self.topics: dict[str, TopicCounters] = {}
        # Share groups' acknowledgements: partitions acknowledged (Kafka counts requests per
        # partition as share-acknowledgement) and records per acknowledge type.
        self.share_acknowledgements = 0
        self.share_records_acknowledged: dict[int, int] = {}
        self.connections_created: dict[str, int] = {}
        self.connections_closed: dict[str, int] = {}
        self.idle = LoopIdleMeter()

    def request_done(self, api_key: int, started: float) -> None:
        histogram = self.requests.get(api_key)
        if histogram is None:
            histogram = self.requests[api_key] = LatencyHistogram()
        histogram.observe((time.perf_counter() - started) * 1000.0)

    def throttled(self, api_key: int, throttle_ms: int) -> None:
        histogram = self.throttles.get(api_key)
        if histogram is None:
            histogram = self.throttles[api_key] = LatencyHistogram()
        histogram.observe(float(throttle_ms))

    def share_acknowledged(self, batches: list[tuple[int, int, list[int]]]) -> None:
        """One partition's acknowledgement batches (first offset, last offset, a type for the
        whole range or one per offset), counted per batch."""
        self.share_acknowledgements += 1
        counts = self.share_records_acknowledged
        for first, last, types in batches:
            if len(types) == 1:
                counts[types[0]] = counts.get(types[0], 0) + last - first + 1
            else:
                for kind in set(types):
                    counts[kind] = counts.get(kind, 0) + types.count(kind)

    def _topic(self, topic: str) -> TopicCounters:
        counters = self.topics.get(topic)
        if counters is None:
            counters = self.topics[topic] = TopicCounters()
        return counters

    def produced(self, topic: str, size: int, records: int) -> None:
        counters = self._topic(topic)
        counters.bytes_in += size
        counters.messages_in += records

    def fetched(self, topic: str, size: int) -> None:
        self._topic(topic).bytes_out += size

    def connection_opened(self, listener: str) -> None:
        self.connections_created[listener] = self.connections_created.get(listener, 0) + 1

    def connection_closed(self, listener: str) -> None:
        self.connections_closed[listener] = self.connections_closed.get(listener, 0) + 1

    def forget_topic(self, topic: str) -> None:
        self.topics.pop(topic, None)


class LoopIdleMeter:
    """Time the event loop spends blocked in its selector, as a running total.

    Installed by wrapping the loop's selector `select`; the ratio over a scrape interval is
    (idle time delta) / (wall time delta), which `/metrics` reports as the average since the
    previous scrape.
    """

    def __init__(self) -> None:
        self.idle_s = 0.0
        self.started = time.monotonic()
        self._last_idle = 0.0
        self._last_at = self.started

    def install(self, loop: asyncio.AbstractEventLoop) -> bool:
        selector: Any = getattr(loop, "_selector", None)
        if not isinstance(selector, selectors.BaseSelector):
            return False  # not a selector loop (uvloop): the ratio stays unknown
        inner = selector.select
        clock = time.monotonic

        def select(timeout: float | None = None) -> Any:
            before = clock()
            try:
                return inner(timeout)
            finally:
                self.idle_s += clock() - before

        selector.select = select  # type: ignore[method-assign]
        return True

    def ratio_since_last(self) -> float:
        """Idle fraction since the previous call (since start for the first)."""
        now = time.monotonic()
        idle, elapsed = self.idle_s - self._last_idle, now - self._last_at
        self._last_idle, self._last_at = self.idle_s, now
        if elapsed <= 0:
            return 1.0
        return min(1.0, max(0.0, idle / elapsed))
