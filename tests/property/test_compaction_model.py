"""Compaction against a dict model, with plain, idempotent and transactional producers, small
segments, a moving clock and restarts: a read_committed reader of the cleaned log sees the
model's latest value of every key, and each pass removes what Kafka's rules remove."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from strom.protocol.records.batch_header import BatchHeader
from strom.protocol.records.codec import Record, build_batch, decode_records
from strom.protocol.records.control import CONTROL_ABORT, parse_control_record
from strom.protocol.records.validation import validate_batches
from strom.storage import cleaner
from strom.storage.log_config import LogConfig
from strom.storage.partition_log import PartitionLog

pytestmark = pytest.mark.property

DELETE_RETENTION_MS = 1_000
CONFIG = LogConfig(
    segment_bytes=350,
    cleanup_policy=frozenset({"compact"}),
    retention_ms=-1,
    delete_retention_ms=DELETE_RETENTION_MS,
    min_cleanable_dirty_ratio=0.0,
)
TOPIC_ID = uuid.UUID(int=7)
KEYS = st.sampled_from([b"a", b"b", b"c", b"d"])
VALUES = st.none() | st.binary(min_size=1, max_size=12)
IDEMPOTENT = (1, 2)
TRANSACTIONAL = (3, 4)


@dataclass
class Written:
    key: bytes
    value: bytes | None
    txn: int | None  # index into the model's transactions


@dataclass
class Txn:
    pid: int
    offsets: list[int] = field(default_factory=list)
    marker: int | None = None
    committed: bool | None = None  # None: still open


@dataclass(frozen=True)
class Pass:
    now_ms: int
    end: int  # every offset below it was in the pass's range


def stored(plog: PartitionLog) -> list[tuple[BatchHeader, list[Record]]]:
    out = []
    for segment in plog.segments:
        for position, header in segment.batches():
            data = segment.read(position, header.size)
            validate_batches(data, from_client=False)
            out.append(decode_records(data))
    return out


def read_committed(plog: PartitionLog) -> list[Record]:
    """What a read_committed consumer reading from offset 0 gets (Kafka's consumer algorithm:
    the fetch's aborted transactions, then ABORT markers ending them)."""
    lso = plog.last_stable_offset
    pending = sorted(plog.collect_aborted_txns(0, lso), key=lambda t: t.first_offset)
    aborted: set[int] = set()
    out: list[Record] = []
    for header, records in stored(plog):
        if header.base_offset >= lso:
            break
        while pending and pending[0].first_offset <= header.last_offset:
            aborted.add(pending.pop(0).producer_id)
        if header.is_control:
            if records and parse_control_record(records[0])[0] == CONTROL_ABORT:
                aborted.discard(header.producer_id)
            continue
        if header.is_transactional and header.producer_id in aborted:
            continue
        out.extend(records)
    return out


class CompactionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="strom-compaction-"))
        self.plog = self._open(clean=True)
        self.now = 1_000
        self.written: dict[int, Written] = {}
        self.txns: list[Txn] = []
        self.open_txn: dict[int, int] = {}  # pid -> index of its open transaction
        self.sequences: dict[int, int] = {}
        self.passes: list[Pass] = []
        self.first_covered: dict[int, int] = {}  # offset -> time of the first pass over it

    def _open(self, clean: bool) -> PartitionLog:
        return PartitionLog.open(
            self.tmp / "t-0",
            "t",
            0,
            TOPIC_ID,
            CONFIG,
            None if clean else 0,
            clean,
            now_ms=0,
        )

    def teardown(self) -> None:
        self.plog.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- writing -------------------------------------------------------------------------------

    def _append(
        self, pid: int, entries: list[tuple[bytes, bytes | None]], transactional: bool
    ) -> int:
        records = [Record(i, self.now, k, v) for i, (k, v) in enumerate(entries)]
        seq = self.sequences.get(pid, 0)
        data = build_batch(
            records,
            producer_id=pid,
            producer_epoch=0 if pid >= 0 else -1,
            base_sequence=seq if pid >= 0 else -1,
            is_transactional=transactional,
        )
        result = self.plog.append_as_leader(bytearray(data), validate_batches(data), 0, self.now)
        assert not result.duplicate
        if pid >= 0:
            self.sequences[pid] = seq + len(records)
        self.plog.update_high_watermark(self.plog.log_end_offset)
        return result.first_offset

    @rule(entries=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=3))
    def plain(self, entries: list[tuple[bytes, bytes | None]]) -> None:
        first = self._append(-1, entries, False)
        for i, (key, value) in enumerate(entries):
            self.written[first + i] = Written(key, value, None)

    @rule(
        pid=st.sampled_from(IDEMPOTENT),
        entries=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=2),
    )
    def idempotent(self, pid: int, entries: list[tuple[bytes, bytes | None]]) -> None:
        first = self._append(pid, entries, False)
        for i, (key, value) in enumerate(entries):
            self.written[first + i] = Written(key, value, None)

    @rule(
        pid=st.sampled_from(TRANSACTIONAL),
        entries=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=2),
    )
    def in_transaction(self, pid: int, entries: list[tuple[bytes, bytes | None]]) -> None:
        if pid not in self.open_txn:
            self.open_txn[pid] = len(self.txns)
            self.txns.append(Txn(pid))
        index = self.open_txn[pid]
        first = self._append(pid, entries, True)
        for i, (key, value) in enumerate(entries):
            self.written[first + i] = Written(key, value, index)
            self.txns[index].offsets.append(first + i)

    @precondition(lambda self: bool(self.open_txn))
    @rule(data=st.data(), commit=st.booleans())
    def end_transaction(self, data: st.DataObject, commit: bool) -> None:
        pid = data.draw(st.sampled_from(sorted(self.open_txn)))
        txn = self.txns[self.open_txn.pop(pid)]
        txn.marker = self.plog.append_marker(pid, 0, 0, commit, 0, self.now)
        txn.committed = commit
        self.plog.update_high_watermark(self.plog.log_end_offset)

    @rule()
    def roll(self) -> None:
        self.plog.roll(self.now)

    @rule(ms=st.integers(0, 1_500))
    def tick(self, ms: int) -> None:
        self.now += ms

    # -- cleaning and restarting ---------------------------------------------------------------

    @rule()
    def clean(self) -> None:
        lso, end = self.plog.last_stable_offset, self.plog.log_end_offset
        producers = {
            pid: (e.last_data_offset, e.producer_epoch)
            for pid, e in self.plog.producer_state.producers.items()
        }
        result = cleaner.clean(self.plog, self.now)
        assert (self.plog.last_stable_offset, self.plog.log_end_offset) == (lso, end)
        if result is None:
            return
        covered = Pass(self.now, result.end_offset)
        self.passes.append(covered)
        for offset in self.written:
            if offset < covered.end:
                self.first_covered.setdefault(offset, self.now)
        # An empty batch stays only where Kafka keeps one.
        for header, records in stored(self.plog):
            if records or header.base_offset >= covered.end:
                continue
            last = producers.get(header.producer_id)
            kept_for_producer = last is not None and (
                header.last_offset == last[0]
                or (last[0] < 0 and header.is_control and header.producer_epoch == last[1])
            )
            assert kept_for_producer or header.next_offset == covered.end, header

    @rule(clean_shutdown=st.booleans())
    def restart(self, clean_shutdown: bool) -> None:
        before = {
            pid: (e.producer_epoch, e.last_seq, e.last_data_offset, e.current_txn_first_offset)
            for pid, e in self.plog.producer_state.producers.items()
        }
        lso = self.plog.last_stable_offset
        self.plog.close()
        if not clean_shutdown:
            for snapshot in (self.tmp / "t-0").glob("*.snapshot"):
                snapshot.unlink()
        self.plog = self._open(clean_shutdown)
        after = {
            pid: (e.producer_epoch, e.last_seq, e.last_data_offset, e.current_txn_first_offset)
            for pid, e in self.plog.producer_state.producers.items()
        }
        assert after == before
        assert self.plog.last_stable_offset == lso

    # -- the model's view ----------------------------------------------------------------------

    def _aborted(self, offset: int) -> bool:
        index = self.written[offset].txn
        return index is not None and self.txns[index].committed is False

    def _visible(self, offset: int, limit: int) -> bool:
        """Committed (or written outside a transaction) and below `limit`."""
        index = self.written[offset].txn
        return offset < limit and (index is None or self.txns[index].committed is True)

    def _latest(self, limit: int) -> dict[bytes, int]:
        latest: dict[bytes, int] = {}
        for offset in sorted(self.written):
            if self._visible(offset, limit):
                latest[self.written[offset].key] = offset
        return latest

    def _tombstone_may_be_gone(self, offset: int) -> bool:
        first = self.first_covered.get(offset)
        return first is not None and any(
            p.now_ms >= first + DELETE_RETENTION_MS and p.end > offset for p in self.passes
        )

    @invariant()
    def records_are_the_written_ones_at_their_offsets(self) -> None:
        batches = stored(self.plog)
        offsets = [r.offset for _, records in batches for r in records]
        assert offsets == sorted(set(offsets))
        for header, records in batches:
            if header.is_control:
                continue
            for record in records:
                written = self.written[record.offset]
                assert (record.key, record.value) == (written.key, written.value)

    @invariant()
    def passes_removed_what_kafka_removes(self) -> None:
        surviving = {
            r.offset for h, records in stored(self.plog) if not h.is_control for r in records
        }
        for offset in surviving:
            passes = [p for p in self.passes if p.end > offset]
            if not passes:
                continue
            assert not self._aborted(offset), f"aborted record {offset} survived a pass"
            key = self.written[offset].key
            for p in passes:
                later = [
                    o
                    for o in self.written
                    if offset < o < p.end and self._visible(o, p.end) and self.written[o].key == key
                ]
                assert not later, f"record {offset} survived a pass despite {later}"

    def _txn_of_batch(self, header: BatchHeader) -> Txn:
        """The transaction a transactional data batch (maybe emptied) belongs to."""
        for txn in self.txns:
            if txn.pid == header.producer_id and header.base_offset in txn.offsets:
                return txn
        raise AssertionError(f"no transaction wrote {header}")

    @invariant()
    def markers_and_index_entries_stay_while_their_transaction_has_batches(self) -> None:
        batches = stored(self.plog)
        markers = {h.base_offset for h, _ in batches if h.is_control}
        aborted = self.plog.collect_aborted_txns(0, self.plog.log_end_offset)
        for header, _ in batches:
            if header.is_control or not header.is_transactional:
                continue
            txn = self._txn_of_batch(header)
            if txn.marker is None:
                continue
            assert txn.marker in markers, f"marker of {txn} gone before its batch {header}"
            if txn.committed is False:
                assert any(
                    t.producer_id == txn.pid
                    and t.first_offset <= header.base_offset <= t.last_offset
                    for t in aborted
                ), f"no aborted transaction entry for {header}"

    @invariant()
    def markers_go_only_after_a_delete_horizon(self) -> None:
        markers = {h.base_offset for h, _ in stored(self.plog) if h.is_control}
        for txn in self.txns:
            if txn.marker is None or txn.marker in markers:
                continue
            covering = [p.now_ms for p in self.passes if p.end > txn.marker]
            assert covering and max(covering) - min(covering) >= DELETE_RETENTION_MS, (
                f"marker {txn.marker} removed before delete.retention.ms"
            )

    @invariant()
    def read_committed_sees_the_latest_value_of_every_key(self) -> None:
        lso = self.plog.last_stable_offset
        seen: dict[bytes, tuple[int, bytes | None]] = {}
        for record in read_committed(self.plog):
            assert record.key is not None
            assert not self._aborted(record.offset), f"read_committed got aborted {record}"
            seen[record.key] = (record.offset, record.value)
        for key, offset in self._latest(lso).items():
            value = self.written[offset].value
            if value is None and key not in seen:
                assert self._tombstone_may_be_gone(offset), f"tombstone {offset} gone early"
                continue
            assert seen.get(key) == (offset, value)
        assert set(seen) <= set(self._latest(lso))


CompactionMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCompaction = CompactionMachine.TestCase
