"""PartitionLog against a list model, driven by hypothesis."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from storage_helpers import append, open_log, read_all, records_of

from strom.storage.errors import OffsetOutOfRangeError
from strom.storage.log_config import LogConfig
from strom.storage.retention import delete_expired_segments

CONFIG = LogConfig(segment_bytes=400, index_interval_bytes=64, retention_ms=-1)
values_strategy = st.lists(st.binary(max_size=60), min_size=1, max_size=4)


class PartitionLogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="strom-model-"))
        self.plog = open_log(self.tmp, CONFIG)
        self.model: list[bytes] = []  # value at each offset
        self.start = 0

    def teardown(self) -> None:
        self.plog.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(values=values_strategy)
    def do_append(self, values: list[bytes]) -> None:
        result = append(self.plog, values, timestamp=len(self.model))
        assert result.first_offset == len(self.model)
        self.model.extend(values)

    @rule(data=st.data(), max_bytes=st.integers(1, 2000))
    def do_read(self, data: st.DataObject, max_bytes: int) -> None:
        offset = data.draw(st.integers(self.start, len(self.model)))
        result = self.plog.read(offset, max_bytes, len(self.model), True)
        records = [r for r in records_of(result.records) if r.offset >= offset]
        if offset < len(self.model):
            assert records, "min_one_batch must return something below the end"
        for record in records:
            assert record.value == self.model[record.offset]
        assert [r.offset for r in records] == list(range(offset, offset + len(records)))

    @rule(data=st.data())
    def read_out_of_range(self, data: st.DataObject) -> None:
        offset = data.draw(st.sampled_from([self.start - 1, len(self.model) + 1]))
        if offset < 0:
            return
        with pytest.raises(OffsetOutOfRangeError):
            self.plog.read(offset, 100, len(self.model) + 5, True)

    @rule()
    def do_roll(self) -> None:
        self.plog.roll()

    @rule(clean=st.booleans())
    def reopen(self, clean: bool) -> None:
        if clean:
            self.plog.flush()
        start, point = self.plog.log_start_offset, self.plog.recovery_point
        self.plog.close()
        self.plog = open_log(
            self.tmp, CONFIG, recovery_point=point, clean=clean, log_start_offset=start
        )

    @precondition(lambda self: len(self.model) > 0)
    @rule(data=st.data())
    def delete_records(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(0, len(self.model)))
        self.plog.delete_records_before(offset)
        self.start = max(self.start, offset)
        delete_expired_segments(self.plog, now_ms=0)

    @invariant()
    def offsets_agree(self) -> None:
        assert self.plog.log_end_offset == len(self.model)
        assert self.plog.log_start_offset == self.start
        assert self.plog.high_watermark == len(self.model)

    @invariant()
    def contents_agree(self) -> None:
        records = read_all(self.plog)
        assert [r.value for r in records] == self.model[self.start :]


TestPartitionLogModel = pytest.mark.property(PartitionLogMachine.TestCase)
PartitionLogMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None
)
