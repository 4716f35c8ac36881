"""The broker's cleaner schedule: passes run in cleaner threads, never on the event loop, as
many at once as log.cleaner.threads (0: no cleaning); shutdown stops them and waits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from strom.config import BrokerConfig
from strom.protocol.records.codec import Record, build_batch
from strom.protocol.records.validation import validate_batches
from strom.server.broker import Broker
from strom.storage import cleaner
from strom.storage.cleaning_pass import PassOutcome
from strom.storage.partition_log import PartitionLog

TOPICS = ("c1", "c2")


def _broker(tmp_path: Path, **sets: str) -> Broker:
    b = Broker.open(BrokerConfig.load(None, {"log.dirs": str(tmp_path / "data"), **sets}))
    for name in TOPICS:
        b.create_topic(
            name,
            1,
            configs={
                "cleanup.policy": "compact",
                "segment.bytes": "600",
                "min.cleanable.dirty.ratio": "0.01",
            },
        )
    return b


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = _broker(tmp_path)
    yield b
    b.logs.close()
    b.io.shutdown(wait=True)


def _overwrite(plog: PartitionLog) -> None:
    for i in range(40):
        data = build_batch([Record(0, 1_000 + i, b"k%d" % (i % 3), b"v%d" % i + b"." * 40)])
        plog.append_as_leader(bytearray(data), validate_batches(data), 0, 10_000)
    plog.update_high_watermark(plog.log_end_offset)
    plog.roll()


def _logs(broker: Broker) -> list[PartitionLog]:
    logs = [broker.partition_log(name, 0) for name in TOPICS]
    assert all(plog is not None for plog in logs)
    return logs  # type: ignore[return-value]


def test_passes_run_in_cleaner_threads(broker: Broker, mp: pytest.MonkeyPatch) -> None:
    for plog in _logs(broker):
        _overwrite(plog)
    threads: list[str] = []
    real_run = cleaner.run_job

    def run_job(job: cleaner.CleanJob) -> PassOutcome:
        threads.append(threading.current_thread().name)
        return real_run(job)

    mp.setattr(cleaner, "run_job", run_job)

    async def scenario() -> None:
        loop_thread = threading.current_thread().name
        await broker.cleaner.run_round()
        assert len(threads) == 2 and loop_thread not in threads
        assert all(name.startswith("strom-log-cleaner") for name in threads)
        assert all(not plog.cleaning for plog in _logs(broker))
        # A dynamic change of log.cleaner.threads takes a new pool of that size.
        broker._use_config(broker.config.with_dynamic(per_broker={"log.cleaner.threads": "2"}))
        for plog in _logs(broker):
            _overwrite(plog)
        await broker.cleaner.run_round()
        assert len(threads) == 4
        await broker.cleaner.stop()

    asyncio.run(scenario())
    for plog in _logs(broker):
        batches = [h for segment in plog.segments for _, h in segment.batches()]
        assert len(batches) == 3  # the latest record of each key


def test_no_cleaner_threads_no_cleaning(tmp_path: Path) -> None:
    broker = _broker(tmp_path, **{"log.cleaner.threads": "0"})
    try:
        for plog in _logs(broker):
            _overwrite(plog)
        sizes = [plog.size_bytes for plog in _logs(broker)]
        asyncio.run(broker.cleaner.run_round())
        assert [plog.size_bytes for plog in _logs(broker)] == sizes
        assert all(not plog.cleaning for plog in _logs(broker))
    finally:
        broker.logs.close()
        broker.io.shutdown(wait=True)


def test_stop_waits_for_a_pass_and_stops_it(broker: Broker, mp: pytest.MonkeyPatch) -> None:
    plog = _logs(broker)[0]
    _overwrite(plog)
    started, release = threading.Event(), threading.Event()
    real_run = cleaner.run_job
    outcomes: list[PassOutcome] = []

    def run_job(job: cleaner.CleanJob) -> PassOutcome:
        started.set()
        assert release.wait(30)
        outcome = real_run(job)
        outcomes.append(outcome)
        return outcome

    mp.setattr(cleaner, "run_job", run_job)

    async def scenario() -> None:
        round_ = asyncio.create_task(broker.cleaner.run_round())
        assert await asyncio.to_thread(started.wait, 30)
        stopping = asyncio.create_task(broker.cleaner.stop())
        await asyncio.sleep(0)
        assert plog.cleaning_aborted
        release.set()
        await stopping
        await round_

    asyncio.run(scenario())
    assert outcomes and outcomes[0].result is None  # stopped before swapping anything in
    assert not list(plog.directory.glob("*.cleaned"))


@pytest.fixture
def mp() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch
