"""ReplicaAlterLogDirsManager: a replica moves between log dirs while its log is written,
truncated, or its move is redirected; the copy never runs on the event loop."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

from replication_helpers import append as append_batch
from replication_helpers import log_bytes

from strom.protocol.records.batch_header import iter_batch_headers
from strom.protocol.records.codec import Record, decode_records
from strom.replication.alter_log_dirs import ReplicaAlterLogDirsManager, _Move
from strom.storage.log_config import LogConfig
from strom.storage.log_manager import LogManager
from strom.storage.partition_log import PartitionLog

CONFIG = LogConfig(segment_bytes=4096, retention_ms=-1)
TID = uuid.UUID("12345678-1234-5678-1234-567812345678")
KEY = ("t", 0)


def _config_for(topic: str) -> LogConfig:
    return CONFIG


def append(plog: PartitionLog, values: list[bytes], epoch: int = 0) -> None:
    append_batch(plog, epoch, values)


def read_all(plog: PartitionLog) -> list[Record]:
    data = memoryview(log_bytes(plog))
    out: list[Record] = []
    for position, header in iter_batch_headers(data):
        out.extend(decode_records(data[position : position + header.size])[1])
    return out


def _manager(tmp_path: Path) -> tuple[LogManager, Path, Path]:
    manager = LogManager.open([tmp_path / "a", tmp_path / "b"], _config_for)
    plog = manager.create("t", 0, TID, CONFIG)
    source = plog.directory.parent
    target = next(d for d in manager.log_dirs if d != source)
    return manager, source, target


async def _until(predicate: object, what: str, timeout_s: float = 30.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.005)


def test_move_while_appending_keeps_every_record_once_in_order(tmp_path: Path) -> None:
    manager, source, target = _manager(tmp_path)
    current = manager.get(*KEY)
    assert current is not None
    for i in range(300):
        append(current, [f"before-{i}".encode() * 5])

    async def main() -> None:
        loop_thread = threading.get_ident()
        copier_threads: set[int] = set()
        mover = ReplicaAlterLogDirsManager(manager, threads=2)
        original = mover._copy_once

        def spy(*args: object) -> int:
            copier_threads.add(threading.get_ident())
            return original(*args)  # type: ignore[arg-type]

        mover._copy_once = spy  # type: ignore[method-assign]
        manager.create_future("t", 0, target)
        mover.start(KEY)
        assert KEY in manager.cleaning_paused
        written = 0
        while KEY in mover.moves:
            append(current, [f"during-{written}".encode() * 5])
            written += 1
            await asyncio.sleep(0)
        assert copier_threads - {loop_thread}, "the copy ran in worker threads"
        assert written > 0, "records were appended while the move ran"
        assert current.directory == target / "t-0"
        assert KEY not in manager.cleaning_paused and not manager.future_logs
        expected = [f"before-{i}".encode() * 5 for i in range(300)]
        expected += [f"during-{i}".encode() * 5 for i in range(written)]
        assert [r.value for r in read_all(current)] == expected
        assert [r.offset for r in read_all(current)] == list(range(300 + written))
        await mover.stop()

    asyncio.run(main())
    assert not (source / "t-0").exists()
    manager.close()


def test_future_log_truncated_with_its_current_log(tmp_path: Path) -> None:
    """A follower's log may be truncated (a new leader) after the future copied from it: the
    future is truncated to where the two agree, by leader epoch, before the swap."""
    manager, _, target = _manager(tmp_path)
    current = manager.get(*KEY)
    assert current is not None
    for i in range(50):
        append(current, [f"e0-{i}".encode()], epoch=0)
    for i in range(50):
        append(current, [f"e1-{i}".encode()], epoch=1)

    async def main() -> None:
        mover = ReplicaAlterLogDirsManager(manager, threads=1)
        future = manager.create_future("t", 0, target)
        mover._copy_round(_Move(KEY), current, future)
        assert future.log_end_offset == 100
        current.truncate_to(70)  # the epoch-1 records from 70 on were never committed
        for i in range(40):
            append(current, [f"e2-{i}".encode()], epoch=2)
        mover.start(KEY)
        await _until(lambda: KEY not in mover.moves, "the move")
        values = [r.value for r in read_all(current)]
        assert values == (
            [f"e0-{i}".encode() for i in range(50)]
            + [f"e1-{i}".encode() for i in range(20)]
            + [f"e2-{i}".encode() for i in range(40)]
        )
        assert current.directory.parent == target
        await mover.stop()

    asyncio.run(main())
    manager.close()


def test_redirect_and_cancel_remove_the_future_log(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    manager = LogManager.open(dirs, _config_for)
    current = manager.create("t", 0, TID, CONFIG)
    for _ in range(200):
        append(current, [b"x" * 100])
    others = [d for d in manager.log_dirs if d != current.directory.parent]

    async def main() -> None:
        mover = ReplicaAlterLogDirsManager(manager, threads=1)
        first = manager.create_future("t", 0, others[0])
        mover.start(KEY)
        manager.delete_future("t", 0)  # what a redirecting AlterReplicaLogDirs does
        assert KEY not in mover.moves and not first.directory.exists()
        manager.create_future("t", 0, others[1])
        mover.start(KEY)
        await _until(lambda: KEY not in mover.moves, "the move")
        assert current.directory.parent == others[1]
        assert [p for p in others[0].iterdir() if p.is_dir()] == []
        await mover.stop()

    asyncio.run(main())
    manager.close()
