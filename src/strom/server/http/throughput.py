"""Per-topic throughput over the last minutes, for the console's charts.

A task samples this broker's per-topic counters (`server/metrics.py`) every
`SAMPLE_INTERVAL_S` and keeps `SAMPLES` of them; a chart asks for one topic's rates (bytes in,
bytes out, records in, per second, between consecutive samples). In a cluster each broker
charts what it handled itself: the leaders' share of a topic's traffic.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strom.server.metrics import BrokerMetrics

SAMPLE_INTERVAL_S = 2.0
SAMPLES = 150  # five minutes

# topic -> (bytes in, bytes out, records in)
Snapshot = dict[str, tuple[int, int, int]]


class ThroughputSampler:
    def __init__(self, metrics: BrokerMetrics) -> None:
        self.metrics = metrics
        self.samples: deque[tuple[float, Snapshot]] = deque(maxlen=SAMPLES)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.sample()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL_S)
            self.sample()

    def sample(self) -> None:
        snapshot = {
            topic: (c.bytes_in, c.bytes_out, c.messages_in)
            for topic, c in self.metrics.topics.items()
        }
        self.samples.append((time.time(), snapshot))

    def rates(self, topic: str) -> dict[str, list[float]]:
        """Per-second rates between consecutive samples: times (epoch seconds, the end of each
        interval), bytes_in, bytes_out, records_in."""
        out: dict[str, list[float]] = {"t": [], "bytes_in": [], "bytes_out": [], "records_in": []}
        previous: tuple[float, tuple[int, int, int]] | None = None
        for at, snapshot in self.samples:
            current = snapshot.get(topic, (0, 0, 0))
            if previous is not None:
                elapsed = at - previous[0]
                if elapsed > 0:
                    out["t"].append(round(at, 3))
                    for name, i in (("bytes_in", 0), ("bytes_out", 1), ("records_in", 2)):
                        out[name].append(max(0, current[i] - previous[1][i]) / elapsed)
            previous = (at, current)
        return out
