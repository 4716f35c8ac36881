"""How long `strom.testing.broker()` takes to hand a test a serving broker.

    .venv/bin/python benchmarks/fixture_startup.py [runs]

Each run enters the context manager (spawn `strom serve`, wait for its "started" log line),
checks the broker answers ApiVersions, and leaves it (SIGTERM, wait, delete the data). Prints
every run's start time and the median. Not part of the test run.
"""

from __future__ import annotations

import socket
import statistics
import struct
import sys
import time

import strom.testing


def api_versions_answers(host: str, port: int) -> bool:
    request = struct.pack(">hhih", 18, 0, 1, 0)  # ApiVersions v0, null client id
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        return len(sock.recv(4)) == 4


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        with strom.testing.broker() as b:
            ready = time.perf_counter() - started
            assert api_versions_answers(b.host, b.port)
        times.append(ready * 1000)
        print(f"start {ready * 1000:.0f} ms")
    print(f"median {statistics.median(times):.0f} ms, min {min(times):.0f}, max {max(times):.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
