"""What opening every partition costs after a kill -9 (recovery from the recovery points).

    .venv/bin/python benchmarks/recovery_open.py [--partitions N] [--dir D] [--src DIR ...]

Makes one log dir (under --dir, default /tmp) of N partitions (default 10,000), two 1 KiB
records each, with the checkpoints written and no clean shutdown: what a broker killed with
kill -9 after its periodic checkpoint leaves (the recovery points are where the last flush
left them: 0 here, so every partition's segment is recovered). Then, for this tree and each
`--src` tree (`git archive <commit> src | tar -x -C /tmp/before`), in a fresh process and on
a fresh copy of the log dir: `LogManager.open` (which reads nothing per partition) and the
opening of every partition (`open_deferred`, what the broker's warm-up and first requests do),
timed in process CPU and wall, then a flush of every log (where index files are written), and
the number of truncate(2) calls on index files in each step. Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
CHILD = r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
counts = {"index_truncates": 0}
truncate = os.truncate
def counting(path, length):
    if str(path).endswith((".index", ".timeindex")):
        counts["index_truncates"] += 1
    truncate(path, length)
os.truncate = counting
from strom.storage.log_config import LogConfig
from strom.storage.log_manager import LogManager
root = Path(sys.argv[1])
cpu, wall = time.process_time(), time.perf_counter()
manager = LogManager.open([root], lambda topic: LogConfig())
opened = (time.process_time() - cpu, time.perf_counter() - wall)
cpu, wall = time.process_time(), time.perf_counter()
manager.open_deferred(float("inf"))
recovered = (time.process_time() - cpu, time.perf_counter() - wall, counts["index_truncates"])
cpu, wall = time.process_time(), time.perf_counter()
manager.flush()
flushed = (time.process_time() - cpu, time.perf_counter() - wall, counts["index_truncates"])
print(json.dumps({"open": opened, "recover": recovered, "flush": flushed,
                  "logs": len(manager.logs)}))
"""


def make_crashed_dir(root: Path, partitions: int) -> None:
    from strom.protocol.records.codec import Record, build_batch
    from strom.protocol.records.validation import validate_batches
    from strom.storage.log_config import LogConfig
    from strom.storage.log_manager import LogManager

    config = LogConfig()
    manager = LogManager.open([root], lambda _topic: config)
    now = int(time.time() * 1000)
    data = build_batch([Record(i, now, None, b"v" * 1024) for i in range(2)])
    topic_id = uuid.uuid4()
    for partition in range(partitions):
        plog = manager.create("crashed", partition, topic_id, config)
        buf = bytearray(data)
        plog.append_as_leader(buf, validate_batches(buf), 0, now)
        plog.update_high_watermark(plog.log_end_offset)
    manager.write_due_files(manager.take_due_files(partitions))
    manager.checkpoint()
    # No close(): no clean shutdown marker, recovery points as checkpointed (0).


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--partitions", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--src", type=Path, action="append", default=[])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="strom-recovery-open-", dir=args.dir))
    try:
        original = work / "crashed"
        started = time.monotonic()
        make_crashed_dir(original, args.partitions)
        print(f"{args.partitions} partitions written in {time.monotonic() - started:.1f} s")
        for src in [None, *args.src]:
            copy = work / "copy"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(original, copy)
            os.sync()
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(copy), str(src or SRC)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            label = "this tree" if src is None else str(src)
            opened, recovered, flushed = result["open"], result["recover"], result["flush"]
            print(
                f"{label}: LogManager.open {opened[0]:.2f} s CPU ({opened[1]:.2f} wall); "
                f"opening {result['logs']} partitions {recovered[0]:.2f} s CPU "
                f"({recovered[1]:.2f} wall), {recovered[2]} index truncates; "
                f"flush {flushed[0]:.2f} s CPU ({flushed[1]:.2f} wall), "
                f"{flushed[2] - recovered[2]} index truncates"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
