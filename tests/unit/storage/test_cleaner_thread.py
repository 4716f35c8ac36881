"""A cleaning pass in its own thread while the log is appended to, rolled, read, truncated or
closed on the caller's thread (the broker runs passes in cleaner threads, off the event loop)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import append, open_log, read_all

from strom.storage import cleaner
from strom.storage.checkpoint import read_offsets
from strom.storage.cleaning_pass import PassOutcome
from strom.storage.compaction import BatchFilter
from strom.storage.log_config import LogConfig
from strom.storage.partition_log import PartitionLog

COMPACT = LogConfig(
    segment_bytes=600,
    cleanup_policy=frozenset({"compact"}),
    retention_ms=-1,
    delete_retention_ms=1000,
    min_cleanable_dirty_ratio=0.0,
)
DEADLINE_S = 60


class PausedPass:
    """Runs a pass in a thread that stops at its first batch until `release()`."""

    def __init__(self, plog: PartitionLog, mp: pytest.MonkeyPatch) -> None:
        job = cleaner.plan(plog, now_ms=10_000)
        assert job is not None
        self.job = job
        self.reached = threading.Event()
        self.go = threading.Event()
        self.outcome: PassOutcome | None = None
        self.error: BaseException | None = None
        real_filter = BatchFilter.filter
        paused = self

        def filter_(self: BatchFilter, *args: object) -> bytes | None:
            paused.reached.set()
            assert paused.go.wait(DEADLINE_S)
            return real_filter(self, *args)  # type: ignore[arg-type]

        mp.setattr(BatchFilter, "filter", filter_)
        self.thread = threading.Thread(target=self._run, name="test-cleaner")
        self.thread.start()
        assert self.reached.wait(DEADLINE_S)

    def _run(self) -> None:
        try:
            self.outcome = cleaner.run_job(self.job)
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def release(self) -> None:
        self.go.set()

    def join(self) -> cleaner.CleanResult | None:
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
        return cleaner.finish(self.job, self.outcome)


@pytest.fixture
def mp() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _overwrites(plog: PartitionLog, rounds: int, keys: int, tag: str) -> dict[bytes, bytes]:
    latest = {}
    for r in range(rounds):
        for k in range(keys):
            key, value = b"k%d" % k, f"{tag}{r}-".encode() + b"." * 40
            append(plog, [value], keys=[key])
            latest[key] = value
    return latest


def test_appends_rolls_and_reads_go_on_during_a_pass(
    tmp_path: Path, mp: pytest.MonkeyPatch
) -> None:
    plog = open_log(tmp_path, COMPACT)
    latest = _overwrites(plog, 20, 4, "a")
    plog.roll()
    paused = PausedPass(plog, mp)
    assert plog.cleaning
    # While the pass waits: the log takes appends and rolls, and reads see everything.
    latest.update(_overwrites(plog, 5, 6, "b"))
    plog.roll()
    seen = {r.key: r.value for r in read_all(plog)}
    assert seen == latest
    paused.release()
    end = time.monotonic() + DEADLINE_S
    extra = 0
    while paused.thread.is_alive() and time.monotonic() < end:
        # Reads and appends race with the pass's segment swap.
        records = read_all(plog)
        offsets = [r.offset for r in records]
        assert offsets == sorted(set(offsets))
        assert {r.key: r.value for r in records} == latest
        value = b"c%d" % extra
        append(plog, [value], keys=[b"extra"])
        latest[b"extra"] = value
        extra += 1
    result = paused.join()
    assert result is not None and result.records_removed > 0
    assert not plog.cleaning
    assert {r.key: r.value for r in read_all(plog)} == latest
    assert not list((tmp_path / "t-0").glob("*.cleaned"))
    assert not list((tmp_path / "t-0").glob("*.swap"))
    plog.close()
    reopened = open_log(tmp_path, COMPACT, recovery_point=0, clean=False)
    assert {r.key: r.value for r in read_all(reopened)} == latest
    reopened.close()


def test_truncation_stops_a_pass(tmp_path: Path, mp: pytest.MonkeyPatch) -> None:
    plog = open_log(tmp_path, COMPACT)
    _overwrites(plog, 20, 4, "a")
    plog.roll()
    paused = PausedPass(plog, mp)
    plog.truncate_to(30)  # a follower's divergence, below the pass's upper bound
    expected = [(r.offset, r.value) for r in read_all(plog)]
    assert expected[-1][0] == 29
    paused.release()
    assert paused.join() is None
    assert [(r.offset, r.value) for r in read_all(plog)] == expected
    assert not list((tmp_path / "t-0").glob("*.cleaned"))
    assert read_offsets(tmp_path / "cleaner-offset-checkpoint") == {}
    # A later pass cleans what is left.
    append(plog, [b"new"], keys=[b"k0"])
    plog.roll()
    mp.undo()
    assert cleaner.clean(plog, now_ms=10_000) is not None
    plog.close()


def test_closing_stops_a_pass(tmp_path: Path, mp: pytest.MonkeyPatch) -> None:
    plog = open_log(tmp_path, COMPACT)
    latest = _overwrites(plog, 20, 4, "a")
    plog.roll()
    paused = PausedPass(plog, mp)
    closer = threading.Thread(target=plog.close)
    closer.start()
    paused.release()
    closer.join(DEADLINE_S)
    assert paused.join() is None
    assert not list((tmp_path / "t-0").glob("*.cleaned"))
    mp.undo()
    reopened = open_log(tmp_path, COMPACT)
    assert {r.key: r.value for r in read_all(reopened)} == latest
    reopened.close()
