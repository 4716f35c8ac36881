"""What a retention round and a cleaner planning round cost with many idle partitions.

    .venv/bin/python benchmarks/retention_rounds.py [--partitions N] [--rounds R] [--dir D]
        [--src DIR]

In one process: a LogManager over one log dir (default: a fresh directory under /dev/shm, so
that creating the logs measures no disk), one topic with cleanup.policy=compact,delete and
retention.ms of 7 days (so both retention and the cleaner consider every partition), N
partitions each given one record, then `run_retention` and `plan_cleaning` at the same clock:
the first round (every log written since the last), then R rounds with every partition idle.
Prints the seconds of each round (process CPU time and wall) and how many logs each idle round
decided on (retention's delete_expired_segments and the cleaner's plan, counted by wrapping
them). `--src DIR` imports Strom from another source tree (for example
`git archive <commit> src | tar -x -C /tmp/before`) for a "before" figure. Not part of the
test run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

DAY_MS = 86_400_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--partitions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm"))
    parser.add_argument("--src", type=Path)
    args = parser.parse_args()
    if args.src is not None:
        sys.path.insert(0, str(args.src))

    from strom.protocol.records.codec import Record, build_batch
    from strom.protocol.records.validation import validate_batches
    from strom.storage import cleaner, log_manager
    from strom.storage.log_config import LogConfig
    from strom.storage.log_manager import LogManager

    decided = {"retention": 0, "cleaner": 0}
    retention_check = log_manager.delete_expired_segments
    plan = cleaner.plan

    def counting_retention(plog, now_ms):  # type: ignore[no-untyped-def]
        decided["retention"] += 1
        return retention_check(plog, now_ms)

    def counting_plan(plog, *rest):  # type: ignore[no-untyped-def]
        decided["cleaner"] += 1
        return plan(plog, *rest)

    log_manager.delete_expired_segments = counting_retention  # type: ignore[assignment]
    cleaner.plan = counting_plan  # type: ignore[assignment]

    config = LogConfig(cleanup_policy=frozenset({"compact", "delete"}), retention_ms=7 * DAY_MS)
    root = Path(tempfile.mkdtemp(prefix="strom-retention-rounds-", dir=args.dir))
    try:
        manager = LogManager.open([root], lambda _topic: config)
        now = int(time.time() * 1000)
        data = build_batch([Record(0, now, b"key", b"v" * 100)])
        started = time.monotonic()
        topic_id = uuid.uuid4()
        for partition in range(args.partitions):
            plog = manager.create("idle", partition, topic_id, config)
            buf = bytearray(data)
            plog.append_as_leader(buf, validate_batches(buf), 0, now)
            plog.update_high_watermark(plog.log_end_offset)
        print(
            f"{args.partitions} partitions created and written in {time.monotonic() - started:.1f} s"
        )

        def one_round(label: str) -> tuple[float, float, float, float]:
            decided.update(retention=0, cleaner=0)
            cpu, wall = time.process_time(), time.perf_counter()
            manager.run_retention(now)
            retention = time.process_time() - cpu, time.perf_counter() - wall
            cpu, wall = time.process_time(), time.perf_counter()
            for job in manager.plan_cleaning(now):
                cleaner.finish(job, None)
            planning = time.process_time() - cpu, time.perf_counter() - wall
            print(
                f"{label}: retention {retention[0] * 1000:.2f} ms CPU ({retention[1] * 1000:.2f} "
                f"wall), {decided['retention']} logs decided on; cleaner planning "
                f"{planning[0] * 1000:.2f} ms CPU ({planning[1] * 1000:.2f} wall), "
                f"{decided['cleaner']} logs"
            )
            return (*retention, *planning)

        one_round("first round (every log written)")
        idle = [one_round(f"idle round {i + 1}") for i in range(args.rounds)]
        medians = [statistics.median(column) * 1000 for column in zip(*idle, strict=True)]
        print(
            f"median idle round: retention {medians[0]:.2f} ms CPU ({medians[1]:.2f} wall), "
            f"cleaner planning {medians[2]:.2f} ms CPU ({medians[3]:.2f} wall)"
        )
        manager.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
