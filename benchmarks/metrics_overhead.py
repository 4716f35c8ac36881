"""What the broker's counters cost per request, measured in-process (no network, no noise from
other processes' scheduling beyond this one's):

    .venv/bin/python benchmarks/metrics_overhead.py

Times, per call, what the request path adds for metrics: `BrokerMetrics.request_done` (two
clock reads and a histogram bucket), `produced` (per appended partition), `fetched` (per
returned partition) and the event loop's selector wrapper (per loop iteration), against an
empty function call as the floor. Not part of the test run.
"""

from __future__ import annotations

import selectors
import time
import timeit

from strom.server.metrics import BrokerMetrics, LoopIdleMeter

N = 1_000_000


def per_call_ns(statement: str, namespace: dict[str, object]) -> float:
    best = min(timeit.repeat(statement, globals=namespace, number=N, repeat=5))
    return best / N * 1e9


def main() -> int:
    metrics = BrokerMetrics()
    for topic in ("orders", "payments"):
        metrics.produced(topic, 0, 0)

    def nothing() -> None:
        pass

    ns: dict[str, object] = {"m": metrics, "perf": time.perf_counter, "nothing": nothing}
    floor = per_call_ns("nothing()", ns)
    rows = {
        "empty call (floor)": floor,
        "request_done (per request)": per_call_ns("m.request_done(0, perf())", ns),
        "produced (per appended partition)": per_call_ns("m.produced('orders', 1024, 10)", ns),
        "fetched (per returned partition)": per_call_ns("m.fetched('orders', 1024)", ns),
    }
    selector = selectors.DefaultSelector()
    plain = selector.select
    meter = LoopIdleMeter()

    class Loop:
        _selector = selector

    meter.install(Loop())  # type: ignore[arg-type]
    ns.update({"plain": plain, "wrapped": selector.select})
    rows["selector select(0), plain"] = per_call_ns("plain(0)", ns)
    rows["selector select(0), with the idle meter"] = per_call_ns("wrapped(0)", ns)
    for name, ns_per_call in rows.items():
        print(f"{name:45s} {ns_per_call:8.0f} ns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
