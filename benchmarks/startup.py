"""How long `strom serve` takes until it accepts connections, and the CPU it spends doing so.

    .venv/bin/python benchmarks/startup.py [runs] [--src DIR]

Each run starts `python -m strom serve` on a free port with a fresh data directory, polls the
port until a connection is accepted, reads the broker's CPU time (user + system, from
/proc/<pid>/stat) at that moment, and stops it. The CPU figure does not depend on what else
the machine runs; the wall-clock one does. `--src DIR` runs the broker from another source tree
(for example `git archive <commit> src | tar -x -C /tmp/before` for a "before" figure).
Prints every run and the medians. Not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def one_run(src: Path | None) -> tuple[float, float]:
    port = free_port()
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    with tempfile.TemporaryDirectory() as data:
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "strom", "serve", "--set", f"log.dirs={data}",
             "--set", f"listeners=PLAINTEXT://127.0.0.1:{port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = started + 60
            while time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        wall = time.monotonic() - started
                        cpu = cpu_seconds(proc.pid)
                        return wall, cpu
                except OSError:
                    if proc.poll() is not None:
                        raise RuntimeError("the broker exited") from None
                    time.sleep(0.005)
            raise RuntimeError("the broker did not listen within 60 s")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="?", type=int, default=8)
    parser.add_argument("--src", type=Path, help="the source tree to run (its src/ directory)")
    args = parser.parse_args()
    walls, cpus = [], []
    for i in range(args.runs):
        wall, cpu = one_run(args.src)
        walls.append(wall)
        cpus.append(cpu)
        print(f"run {i + 1}: listening after {wall * 1000:.0f} ms, {cpu * 1000:.0f} ms of CPU")
    print(
        f"median: {statistics.median(walls) * 1000:.0f} ms wall, "
        f"{statistics.median(cpus) * 1000:.0f} ms CPU"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
