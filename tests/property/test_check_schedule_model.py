"""Retention and the cleaner on their schedules (only logs changed or due, check_schedule.py)
against the same rounds over every log: two LogManagers given the same appends, record
deletions, config changes, rolls and clock, one running `run_retention` / `run_cleaner`, the
other applying retention and a cleaning pass to each of its logs every round, end every round
with the same segments and log start offsets."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from strom.protocol.records.codec import Record, build_batch
from strom.protocol.records.validation import validate_batches
from strom.storage import cleaner
from strom.storage.log_config import LogConfig
from strom.storage.log_manager import LogManager
from strom.storage.partition_log import PartitionLog
from strom.storage.retention import delete_expired_segments

pytestmark = pytest.mark.property

CONFIGS = [
    LogConfig(segment_bytes=400, retention_ms=3_000),
    LogConfig(segment_bytes=400, retention_ms=-1, retention_bytes=900),
    LogConfig(segment_bytes=400, retention_ms=-1, segment_ms=2_000),
    LogConfig(
        segment_bytes=400,
        cleanup_policy=frozenset({"compact"}),
        retention_ms=-1,
        delete_retention_ms=1_500,
        min_cleanable_dirty_ratio=0.5,
        max_compaction_lag_ms=4_000,
    ),
    LogConfig(
        segment_bytes=400,
        cleanup_policy=frozenset({"compact", "delete"}),
        retention_ms=5_000,
        min_compaction_lag_ms=1_000,
        delete_retention_ms=500,
    ),
]
PARTITIONS = 5
TOPIC_ID = uuid.UUID(int=13)
KEYS = st.sampled_from([b"a", b"b", b"c"])
VALUES = st.none() | st.binary(min_size=1, max_size=40)


def _batch(key: bytes, value: bytes | None, timestamp: int) -> tuple[bytearray, list]:  # type: ignore[type-arg]
    data = build_batch([Record(0, timestamp, key, value)])
    return bytearray(data), validate_batches(data)


class ScheduledAgainstFullRounds(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="strom-schedule-"))
        self.configs = {f"t{p}": CONFIGS[p % len(CONFIGS)] for p in range(PARTITIONS)}
        self.scheduled = LogManager.open([self.root / "scheduled"], self.configs.__getitem__)
        self.every = LogManager.open([self.root / "every"], self.configs.__getitem__)
        self.now = 100_000
        for topic, config in self.configs.items():
            self.scheduled.create(topic, 0, TOPIC_ID, config)
            self.every.create(topic, 0, TOPIC_ID, config)

    def _pairs(self) -> list[tuple[PartitionLog, PartitionLog]]:
        pairs = []
        for topic in self.configs:
            a, b = self.scheduled.get(topic, 0), self.every.get(topic, 0)
            assert a is not None and b is not None
            pairs.append((a, b))
        return pairs

    @rule(
        which=st.integers(0, PARTITIONS - 1),
        key=KEYS,
        value=VALUES,
        age=st.integers(0, 6_000),
        count=st.integers(1, 6),
        replicated=st.booleans(),
    )
    def append(
        self, which: int, key: bytes, value: bytes | None, age: int, count: int, replicated: bool
    ) -> None:
        for plog in self._pairs()[which]:
            for _ in range(count):
                buf, headers = _batch(key, value, self.now - age)
                plog.append_as_leader(buf, headers, 0, self.now)
            if replicated:  # the high watermark follows (Broker.after_append)
                plog.update_high_watermark(plog.log_end_offset)
            else:  # a cluster leader waiting for its followers (ReplicaManager.after_append)
                plog.on_change(plog)

    @rule(which=st.integers(0, PARTITIONS - 1))
    def replicate(self, which: int) -> None:
        for plog in self._pairs()[which]:
            plog.update_high_watermark(plog.log_end_offset)

    @rule(which=st.integers(0, PARTITIONS - 1), fraction=st.floats(0, 1))
    def delete_records(self, which: int, fraction: float) -> None:
        for plog in self._pairs()[which]:
            start, high = plog.log_start_offset, plog.high_watermark
            plog.delete_records_before(start + int((high - start) * fraction))

    @rule(which=st.integers(0, PARTITIONS - 1), config=st.sampled_from(CONFIGS))
    def reconfigure(self, which: int, config: LogConfig) -> None:
        topic = f"t{which}"
        self.configs[topic] = config
        self.scheduled.update_config(topic, config)
        self.every.update_config(topic, config)

    @rule(which=st.integers(0, PARTITIONS - 1))
    def roll(self, which: int) -> None:
        for plog in self._pairs()[which]:
            plog.roll(self.now)

    @rule(step=st.sampled_from([0, 500, 1_000, 3_001, 5_000]))
    def rounds(self, step: int) -> None:
        self.now += step
        deleted = self.scheduled.run_retention(self.now)
        everything = sum(
            delete_expired_segments(plog, self.now) for plog in list(self.every.logs.values())
        )
        assert deleted == everything
        cleaned = sorted(r.topic for r in self.scheduled.run_cleaner(self.now))
        passes = [
            cleaner.clean(plog, self.now)
            for plog in list(self.every.logs.values())
            if plog.config.compact
        ]
        assert cleaned == sorted(r.topic for r in passes if r is not None)

    @invariant()
    def same_logs(self) -> None:
        for a, b in self._pairs():
            assert a.log_start_offset == b.log_start_offset
            assert [(s.base_offset, s.size) for s in a.segments] == [
                (s.base_offset, s.size) for s in b.segments
            ]

    def teardown(self) -> None:
        self.scheduled.close()
        self.every.close()
        shutil.rmtree(self.root, ignore_errors=True)


ScheduledAgainstFullRounds.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_scheduled_against_full_rounds = ScheduledAgainstFullRounds.TestCase
