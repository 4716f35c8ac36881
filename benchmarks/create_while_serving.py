"""How a broker answers other requests while it creates a big topic.

    .venv/bin/python benchmarks/create_while_serving.py [--partitions N] [--src DIR]

Starts `python -m strom serve` on a free port with a fresh data directory (under /tmp), sends
one CreateTopics of N partitions (default 10,000) on one connection and, on a second
connection, a Metadata request naming no topic (the brokers only: the loop's answer time, not
the size of the answer) 50 ms after the previous answer, until the creation is answered.
Prints the creation's wall time, how many Metadata requests were answered before it, and the
answer times (the longest: how long the loop answered nothing). `--src DIR`
runs the broker from another source tree (for example `git archive <commit> src | tar -x -C
/tmp/before`) for a "before" figure. The driver always uses this tree's client. Not part of
the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from strom.client.connection import open_connection
from strom.protocol.messages.create_topics_request import CreatableTopic, CreateTopicsRequest
from strom.protocol.messages.metadata_request import MetadataRequest

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_accepting(port: int, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the broker did not start")


async def drive(port: int, partitions: int) -> None:
    creator = await open_connection(
        HOST, port, "bench-create", connect_timeout_s=10, request_timeout_s=3600
    )
    asker = await open_connection(
        HOST, port, "bench-ask", connect_timeout_s=10, request_timeout_s=3600
    )
    request = CreateTopicsRequest(
        topics=[CreatableTopic(name="big", num_partitions=partitions, replication_factor=1)],
        timeout_ms=3_600_000,
    )
    started = time.monotonic()
    creation = asyncio.create_task(creator.request(19, request, 5, timeout_s=3600))
    answers: list[float] = []  # every Metadata answer time while the creation ran
    during = 0  # of those, answered before the creation's answer
    while not creation.done():
        sent = time.monotonic()
        await asker.request(3, MetadataRequest(topics=[]), 12, timeout_s=3600)
        answers.append(time.monotonic() - sent)
        if not creation.done():
            during += 1
        await asyncio.sleep(0.05)
    response = await creation
    wall = time.monotonic() - started
    result = response.topics[0]
    print(f"CreateTopics of {partitions} partitions: error code {result.error_code}, {wall:.1f} s")
    print(
        f"Metadata requests answered before it: {during}; answer time median "
        f"{statistics.median(answers) * 1000:.1f} ms, longest {max(answers) * 1000:.1f} ms"
    )
    await creator.close()
    await asker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--partitions", type=int, default=10_000)
    parser.add_argument("--src", type=Path)
    args = parser.parse_args()
    env = dict(os.environ)
    if args.src is not None:
        env["PYTHONPATH"] = str(args.src)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="strom-create-bench-") as data:
        proc = subprocess.Popen(
            [sys.executable, "-m", "strom", "serve", "--set", f"log.dirs={data}",
             "--set", f"listeners=PLAINTEXT://{HOST}:{port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_accepting(port)
            asyncio.run(drive(port, args.partitions))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=600)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
