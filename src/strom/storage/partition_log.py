"""`PartitionLog`: one partition's log, a list of segments plus the offsets that bound it.

Directory `<log dir>/<topic>-<partition>/`: segments (segment.py), `leader-epoch-checkpoint`
(leader_epoch.py), `partition.metadata` (partition_metadata.py), producer state snapshots
(producer_state.py: written when a segment rolls and on close, loaded on open).

Offsets, always log_start_offset <= high_watermark <= log_end_offset:
  log_start_offset  the first offset a client may read; moved by retention and DeleteRecords
  high_watermark    the end of what is committed and visible to consumers; moved by the caller
                    (single node: to the log end after every append; later: by the ISR)
  log_end_offset    the offset the next appended record gets
  last_stable_offset  min(first offset of an unfinished transaction, high watermark): the end of
                    what read_committed consumers see
  recovery_point    everything below it is fsynced; recovery after a crash starts there

Threading: one caller (the event loop) changes the log. flush() may run in a worker thread at
the same time; it only fsyncs fds (under each segment's lock, which close() also takes) and
raises recovery_point, so appends never wait for it.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from strom.protocol.records.batch_header import (
    BatchHeader,
    assign_offsets,
    iter_batch_headers,
    parse_batch_header,
)
from strom.protocol.records.control import CONTROL_ABORT, CONTROL_COMMIT, build_control_batch
from strom.storage import log_reads
from strom.storage.checkpoint import fsync_dir, sync_file
from strom.storage.errors import LogClosedError, OffsetOutOfRangeError
from strom.storage.leader_epoch import LeaderEpochCache
from strom.storage.log_config import LogConfig
from strom.storage.partition_metadata import FILE_NAME as PARTITION_METADATA_FILE
from strom.storage.producer_state import Analysis, Origin, ProducerStateManager
from strom.storage.recovery import load_log_files, load_producer_state, rebuild_producer_state
from strom.storage.segment import Segment, SegmentClosedError, unlink_paths
from strom.storage.txn_index import AbortedTxn

__all__ = [
    "AppendResult",
    "OffsetOutOfRangeError",  # re-exported: callers of read() catch it from here
    "PartitionLog",
    "ReadResult",
    "partition_dir_name",
]

log = logging.getLogger("strom.storage")

DEFAULT_PRODUCER_ID_EXPIRATION_MS = 86_400_000  # producer.id.expiration.ms


def now_wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _ignore_io_error(_plog: PartitionLog, _exc: OSError) -> None:
    """Without a LogManager there is no log dir to take offline."""


def _ignore_change(_plog: PartitionLog) -> None:
    """Without a LogManager nothing schedules checks."""


def _write_now(plog: PartitionLog) -> None:
    """Without a LogManager (tests, tools): the files are written at once."""
    try:
        plog.write_due_files()
    except OSError as exc:
        log.warning("%s: files not written yet: %s", plog.name, exc)


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


@dataclass(frozen=True, slots=True)
class AppendResult:
    first_offset: int
    last_offset: int
    log_append_time_ms: int  # -1 for CreateTime topics
    log_start_offset: int
    max_timestamp: int
    # A producer retry of a batch already in the log: nothing was written and the offsets
    # (and log_append_time_ms, the batch's timestamp, as Kafka answers) are the original's.
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class ReadResult:
    records: bytes | memoryview  # whole batches; empty when nothing is readable
    first_offset: int  # base offset of the first batch returned, -1 when empty
    next_offset: int  # offset after the last batch returned (the fetch offset when empty)
    high_watermark: int
    log_start_offset: int
    log_end_offset: int


class PartitionLog:
    # A broker holds one per partition, up to hundreds of thousands: no instance dicts.
    __slots__ = (
        "_dir_needs_fsync",
        "_flush_lock",
        "_io_failed",
        "_new_directory",
        "_segments_lock",
        "cleaner_horizon_ms",
        "cleaner_lock",
        "cleaning",
        "cleaning_aborted",
        "closed",
        "config",
        "directory",
        "files_due",
        "high_watermark",
        "last_flush_ms",
        "leader_epoch_cache",
        "log_start_offset",
        "on_change",
        "partition",
        "producer_id_expiration_ms",
        "producer_state",
        "recovery_point",
        "segments",
        "topic",
        "topic_id",
        "unlink_files",
    )

    def __init__(
        self,
        directory: Path,
        topic: str,
        partition: int,
        topic_id: uuid.UUID,
        config: LogConfig,
        segments: list[Segment],
        log_start_offset: int,
        recovery_point: int,
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ) -> None:
        self.directory = directory
        self.topic = topic
        self.partition = partition
        self.topic_id = topic_id
        self.config = config
        self.segments = segments
        self.log_start_offset = log_start_offset
        self.recovery_point = recovery_point
        self.high_watermark = log_start_offset
        self.leader_epoch_cache = LeaderEpochCache(directory)
        self.last_flush_ms = now_wall_ms()
        self.closed = False
        self._flush_lock = threading.Lock()
        # Guards replacing `segments` (roll, retention, cleaner, truncation), which may happen in
        # a worker thread (cleaner) while the event loop rolls. The list itself is never mutated.
        self._segments_lock = threading.Lock()
        # The cleaner (cleaner.py, cleaning_pass.py). `cleaning`: a pass is planned or running
        # (set and cleared on the event loop). `cleaning_aborted`: set by whatever removes or
        # truncates segments, which then takes `cleaner_lock`, held by a pass while it swaps
        # segments in; the pass stops at its next step. `cleaner_horizon_ms`: the earliest
        # delete horizon stored in the batches as the last pass saw them (None: not known since
        # opening).
        self.cleaning = False
        self.cleaning_aborted = False
        self.cleaner_lock = threading.Lock()
        self.cleaner_horizon_ms: int | None = None
        self._dir_needs_fsync = False
        # The directory or its partition.metadata was just made: see flush().
        self._new_directory = False
        # Read by DescribeProducers and the cleaner; changed only through this class.
        self.producer_state = ProducerStateManager(directory, self.name)
        self.producer_id_expiration_ms = producer_id_expiration_ms
        # Removes the `.deleted` files of dropped segments; the broker sets one that runs in
        # its worker pool (LogManager.set_unlinker).
        self.unlink_files: Callable[[list[Path]], object] = unlink_paths
        # Where I/O errors of this log go (report_io_error); LogManager sets it, one callable
        # shared by all its logs.
        self._io_failed: Callable[[PartitionLog, OSError], object] = _ignore_io_error
        # Told when files are left to be written later (`write_due_files`: the leader epoch
        # file of a deferred assign, a producer snapshot taken on opening); LogManager sets it
        # to collect the logs whose files the broker writes from its worker pool.
        self.files_due: Callable[[PartitionLog], object] = _write_now
        # Told when something retention or the cleaner decides on may have changed (high
        # watermark, log start offset, segment list, config); LogManager sets it to feed its
        # check schedules (check_schedule.py), so their rounds skip the logs that did not.
        self.on_change: Callable[[PartitionLog], object] = _ignore_change

    def report_io_error(self, exc: OSError) -> None:
        """An I/O error of this log met outside the broker's own paths (a follower's
        fetcher): its log dir may go offline."""
        self._io_failed(self, exc)

    def set_io_error_sink(self, sink: Callable[[PartitionLog, OSError], object]) -> None:
        self._io_failed = sink

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        topic: str,
        partition: int,
        topic_id: uuid.UUID,
        config: LogConfig,
        recovery_point: int | None,
        clean_shutdown: bool,
        log_start_offset: int | None = None,
        *,
        high_watermark: int | None = None,
        now_ms: int | None = None,
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ) -> PartitionLog:
        """Open (or create) the partition directory and load its segments.

        `high_watermark=None` sets it to the log end, which is right for a single node where
        everything on disk was acknowledged; replication passes its checkpointed value.
        """
        now = now_wall_ms() if now_ms is None else now_ms
        fresh = not (directory / PARTITION_METADATA_FILE).exists()
        recovered_epochs: list[tuple[int, int]] = []
        stored_id, segments, start, point = load_log_files(
            directory,
            topic_id,
            config,
            recovery_point,
            clean_shutdown,
            log_start_offset,
            now,
            recovered_epochs,
        )
        end = segments[-1].next_offset
        plog = cls(
            directory,
            topic,
            partition,
            stored_id,
            config,
            segments,
            start,
            point,
            producer_id_expiration_ms,
        )
        plog._new_directory = fresh
        plog.high_watermark = (
            end if high_watermark is None else max(start, min(high_watermark, end))
        )
        plog.leader_epoch_cache.truncate_from_end(end)
        for epoch, base in recovered_epochs:  # as Kafka's recovery stamps them
            plog.leader_epoch_cache.assign(epoch, base)
        plog.leader_epoch_cache.truncate_from_start(start)
        load_producer_state(
            plog.producer_state,
            segments,
            start,
            end,
            now_ms=now,
            expiration_ms=producer_id_expiration_ms,
            clean_shutdown=clean_shutdown,
            recovery_point=recovery_point or 0,
        )
        plog.producer_state.on_high_watermark_updated(plog.high_watermark)
        for segment in segments:  # what opening read is read; the next use opens again
            segment.file.close()
        return plog

    # -- state ---------------------------------------------------------------------------------

    @property
    def has_due_files(self) -> bool:
        return self.leader_epoch_cache.unwritten or self.producer_state.snapshot_due

    def write_due_files(self) -> None:
        """Write what was left for later, without fsync (any thread; raises OSError)."""
        self.leader_epoch_cache.write_unwritten()
        self.producer_state.write_due_snapshot()

    @property
    def active_segment(self) -> Segment:
        return self.segments[-1]

    @property
    def log_end_offset(self) -> int:
        return self.segments[-1].next_offset

    @property
    def size_bytes(self) -> int:
        return sum(segment.size for segment in self.segments)

    @property
    def name(self) -> str:
        return partition_dir_name(self.topic, self.partition)

    def _check_open(self) -> None:
        if self.closed:
            raise LogClosedError(f"{self.name} is closed")

    def update_high_watermark(self, offset: int) -> int:
        """Set the high watermark, clamped into [log_start_offset, log_end_offset]."""
        high_watermark = max(self.log_start_offset, min(offset, self.log_end_offset))
        if high_watermark != self.high_watermark:
            self.high_watermark = high_watermark
            self.on_change(self)
        if self.producer_state.unreplicated:
            self.producer_state.on_high_watermark_updated(self.high_watermark)
        return self.high_watermark

    @property
    def last_stable_offset(self) -> int:
        """The high watermark, or the first offset of an unfinished transaction below it."""
        first = self.producer_state.first_unstable_offset()
        if first is None or first >= self.high_watermark:
            return self.high_watermark
        return max(first, self.log_start_offset)

    def remove_expired_producers(self, now_ms: int) -> int:
        """Forget producers idle for producer.id.expiration.ms (not those inside a transaction)."""
        return self.producer_state.remove_expired(now_ms, self.producer_id_expiration_ms)

    def update_config(self, config: LogConfig) -> None:
        self.config = config
        self.on_change(self)

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """(epoch, end offset) for OffsetsForLeaderEpoch; (-1, -1) when unknown."""
        return self.leader_epoch_cache.end_offset_for(epoch, self.log_end_offset)

    def _segment_index(self, offset: int) -> int:
        """Index of the segment that would hold `offset` (the last with base <= offset)."""
        bases = [segment.base_offset for segment in self.segments]
        return max(0, bisect.bisect_right(bases, offset) - 1)

    # -- appending -----------------------------------------------------------------------------

    def append_as_leader(
        self,
        buf: bytearray | memoryview,
        batches: list[BatchHeader],
        leader_epoch: int,
        now_ms: int,
        *,
        origin: Origin = Origin.CLIENT,
        marker: tuple[bool, int] | None = None,
        transaction_version: int = 0,
    ) -> AppendResult:
        """Assign offsets to validated batches (back to back in `buf`) and append them.

        Batches with a producer id are first checked against the producer state: a refused
        append raises ProducerStateError (its error_code is the answer) and a retried batch
        is not written again (AppendResult.duplicate). Batches without one skip all of that.
        """
        self._check_open()
        if not batches:
            raise ValueError("append_as_leader needs at least one batch")
        log_append_time = self.config.message_timestamp_type == "LogAppendTime"
        first_offset = self.log_end_offset
        analysis: Analysis | None = None
        for header in batches:
            if header.producer_id >= 0:
                analysis = self.producer_state.analyze(
                    batches, first_offset, origin, marker, transaction_version
                )
                duplicate = analysis.duplicate
                if duplicate is not None:
                    return AppendResult(
                        first_offset=duplicate.first_offset,
                        last_offset=duplicate.last_offset,
                        log_append_time_ms=duplicate.timestamp,
                        log_start_offset=self.log_start_offset,
                        max_timestamp=duplicate.timestamp,
                        duplicate=True,
                    )
                break
        count = sum(header.last_offset_delta + 1 for header in batches)
        last_offset = first_offset + count - 1
        incoming_max_ts = now_ms if log_append_time else max(h.max_timestamp for h in batches)
        self._maybe_roll(len(buf), incoming_max_ts, last_offset, now_ms)

        position = 0
        next_offset = first_offset
        append_time = now_ms if log_append_time else None
        assigned: list[BatchHeader] = []
        for header in batches:
            if position + header.size > len(buf):
                raise ValueError("buffer does not hold exactly the given batches")
            assign_offsets(buf, position, next_offset, leader_epoch, append_time)
            # Re-read the patched header (base offset, epoch, max timestamp changed in place).
            patched = parse_batch_header(buf, position)
            if patched.size != header.size:
                raise ValueError("buffer does not hold exactly the given batches")
            assigned.append(patched)
            position += header.size
            next_offset += header.last_offset_delta + 1
        if position != len(buf):
            raise ValueError("buffer does not hold exactly the given batches")
        segment = self.active_segment
        segment.append(buf, assigned)
        if leader_epoch > self.leader_epoch_cache.latest_epoch and (
            self.leader_epoch_cache.assign(leader_epoch, first_offset, defer=True)
        ):
            self.files_due(self)
        if analysis is not None:
            self.producer_state.apply(analysis, segment.txn_index)
        self.producer_state.map_end_offset = last_offset + 1
        return AppendResult(
            first_offset=first_offset,
            last_offset=last_offset,
            log_append_time_ms=now_ms if log_append_time else -1,
            log_start_offset=self.log_start_offset,
            max_timestamp=max(header.max_timestamp for header in assigned),
        )

    def append_marker(
        self,
        producer_id: int,
        producer_epoch: int,
        coordinator_epoch: int,
        commit: bool,
        leader_epoch: int,
        now_ms: int,
        *,
        transaction_version: int = 0,
    ) -> int:
        """Write a COMMIT or ABORT marker for the producer's transaction; returns its offset.

        For the transaction coordinator. Raises ProducerStateError: INVALID_PRODUCER_EPOCH for
        an old epoch (transaction_version >= 2: the marker's epoch must exceed the producer's),
        TRANSACTION_COORDINATOR_FENCED for an old coordinator epoch. The caller then moves the
        high watermark and wakes fetches (Broker.after_append), which moves the LSO.
        """
        kind = CONTROL_COMMIT if commit else CONTROL_ABORT
        batch = bytearray(
            build_control_batch(kind, producer_id, producer_epoch, coordinator_epoch, 0, now_ms)
        )
        result = self.append_as_leader(
            batch,
            [header for _, header in iter_batch_headers(memoryview(batch))],
            leader_epoch,
            now_ms,
            origin=Origin.COORDINATOR,
            marker=(commit, coordinator_epoch),
            transaction_version=transaction_version,
        )
        return result.first_offset

    def _maybe_roll(self, size: int, max_timestamp: int, last_offset: int, now_ms: int) -> None:
        if self.needs_roll(0, None, size, max_timestamp, last_offset, now_ms):
            self.roll(now_ms)

    def needs_roll(
        self,
        pending_size: int,
        pending_first_timestamp: int | None,
        size: int,
        max_timestamp: int,
        last_offset: int,
        now_ms: int,
    ) -> bool:
        """Whether a batch (`size` bytes, up to `last_offset`) must go to a new segment, when
        `pending_size` bytes of batches (the first stamped `pending_first_timestamp`) are
        still to be written to the active one (a follower writes runs of batches at once)."""
        segment = self.active_segment
        current = segment.size + pending_size
        if current == 0:
            return False  # an empty segment takes any batch: nothing to gain by rolling
        reference = segment.first_batch_timestamp if segment.size else pending_first_timestamp
        if reference is not None and reference >= 0:
            waited = max_timestamp - reference
        else:
            waited = now_ms - segment.created_ms
        return (
            current + size > self.config.segment_bytes
            or waited > self.config.segment_ms - segment.roll_jitter_ms
            or segment.indexes_full
            or not segment.can_hold(last_offset)
        )

    def roll(self, now_ms: int | None = None) -> Segment:
        """Start a new active segment at the log end (no-op when the active one is empty)."""
        self._check_open()
        active = self.active_segment
        if active.size == 0:
            return active
        active.on_become_inactive()
        segment = Segment(
            self.directory,
            self.log_end_offset,
            self.config,
            now_wall_ms() if now_ms is None else now_ms,
        )
        with self._segments_lock:  # copy-on-write: a flush or the cleaner may be iterating
            self.segments = [*self.segments, segment]
        self.on_change(self)
        self._dir_needs_fsync = True
        # A snapshot at every segment base lets recovery of a segment start from its snapshot
        # (and retention delete them together). Its fsync waits for the next flush(). Without
        # it (a full disk) recovery starts from an older one: slower, not wrong.
        self.producer_state.map_end_offset = segment.base_offset
        try:
            self.producer_state.take_snapshot(sync=False)
        except OSError as exc:
            log.warning("%s: no producer snapshot at %d: %s", self.name, segment.base_offset, exc)
        log.debug("%s: rolled to segment %d", self.name, segment.base_offset)
        return segment

    # -- reading -------------------------------------------------------------------------------

    def _empty(self, fetch_offset: int) -> ReadResult:
        return ReadResult(
            b"", -1, fetch_offset, self.high_watermark, self.log_start_offset, self.log_end_offset
        )

    def read(
        self,
        fetch_offset: int,
        max_bytes: int,
        max_offset: int,
        min_one_batch: bool,
        *,
        nowait: bool = False,
    ) -> ReadResult:
        """See `_read`. `nowait`: raise NotCachedError rather than wait for the disk (the event
        loop reads this way and repeats a read that would block in the worker pool)."""
        try:
            return self._read(fetch_offset, max_bytes, max_offset, min_one_batch, nowait)
        except SegmentClosedError:
            # The cleaner or retention swapped a segment out under us; the new list is whole.
            return self._read(fetch_offset, max_bytes, max_offset, min_one_batch, nowait)

    def _read(
        self,
        fetch_offset: int,
        max_bytes: int,
        max_offset: int,
        min_one_batch: bool,
        nowait: bool = False,
    ) -> ReadResult:
        """Whole batches from the batch holding `fetch_offset`, below `max_offset`, from one
        segment (see `log_reads.read_batches`). Raises OffsetOutOfRangeError outside
        [log_start_offset, log_end_offset]."""
        self._check_open()
        end_offset = self.log_end_offset
        if fetch_offset < self.log_start_offset or fetch_offset > end_offset:
            raise OffsetOutOfRangeError(
                f"{self.name}: offset {fetch_offset} outside [{self.log_start_offset}, {end_offset}]"
            )
        segments = self.segments
        found = log_reads.read_batches(
            segments[self._segment_index(fetch_offset) :],
            fetch_offset,
            max_bytes,
            min(max_offset, end_offset),
            min_one_batch,
            nowait,
        )
        if found is None:
            return self._empty(fetch_offset)
        records, first_offset, next_offset = found
        return ReadResult(
            records,
            first_offset,
            next_offset,
            self.high_watermark,
            self.log_start_offset,
            end_offset,
        )

    def collect_aborted_txns(self, fetch_offset: int, upper_bound: int) -> list[AbortedTxn]:
        """Aborted transactions overlapping [fetch_offset, upper_bound), for read_committed."""
        segments = self.segments
        return log_reads.collect_aborted_txns(
            segments[self._segment_index(fetch_offset) :], fetch_offset, upper_bound
        )

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or after `timestamp`, or None."""
        self._check_open()
        return log_reads.offset_for_timestamp(self.segments, self.log_start_offset, timestamp)

    def latest_timestamp(self) -> tuple[int, int]:
        """(offset, timestamp) of the record with the largest timestamp; (-1, -1) when none."""
        self._check_open()
        return log_reads.latest_timestamp(self.segments, self.log_start_offset)

    # -- moving the ends -----------------------------------------------------------------------

    def maybe_increment_log_start_offset(self, offset: int) -> bool:
        if offset <= self.log_start_offset:
            return False
        self.log_start_offset = offset
        self.high_watermark = max(self.high_watermark, offset)
        self.leader_epoch_cache.truncate_from_start(offset)
        self.producer_state.on_log_start_offset_incremented(offset)
        self.on_change(self)
        return True

    def delete_records_before(self, offset: int) -> int:
        """DeleteRecords: move log_start_offset up to `offset` (-1: the high watermark)."""
        self._check_open()
        target = self.high_watermark if offset == -1 else offset
        if target < 0 or target > self.high_watermark:
            raise OffsetOutOfRangeError(
                f"{self.name}: cannot delete before {offset}, high watermark {self.high_watermark}"
            )
        self.maybe_increment_log_start_offset(target)
        return self.log_start_offset

    def abort_cleaning(self) -> None:
        """Stop a cleaning pass from swapping anything in from now on (waits for a swap in
        progress). For whatever is about to remove or truncate segments."""
        self.cleaning_aborted = True
        with self.cleaner_lock:
            pass

    def truncate_to(self, offset: int, now_ms: int | None = None) -> None:
        """Remove every batch holding offsets >= `offset` (a follower diverged from its leader)."""
        self._check_open()
        if offset >= self.log_end_offset:
            return
        self.abort_cleaning()
        now = now_wall_ms() if now_ms is None else now_ms
        keep = [segment for segment in self.segments if segment.base_offset < offset]
        if not keep or offset < self.log_start_offset:
            # Nothing below `offset` survives: start over with an empty segment there.
            self.remove_segments(list(self.segments))
            with self._segments_lock:
                self.segments = [Segment(self.directory, offset, self.config, now)]
            self.log_start_offset = offset
            self.leader_epoch_cache.clear()
            self.producer_state.truncate_fully_and_start_at(offset)
        else:
            self.remove_segments([s for s in self.segments if s.base_offset >= offset])
            keep[-1].truncate_to(offset)
            rebuild_producer_state(
                self.producer_state,
                self.segments,
                self.log_start_offset,
                self.log_end_offset,
                now_ms=now,
                expiration_ms=self.producer_id_expiration_ms,
            )
            self.files_due(self)  # the snapshot at the new log end
        self.leader_epoch_cache.truncate_from_end(self.log_end_offset)
        self.high_watermark = min(self.high_watermark, self.log_end_offset)
        self.recovery_point = min(self.recovery_point, self.log_end_offset)
        self.on_change(self)

    def remove_segments(self, doomed: list[Segment]) -> None:
        """Drop segments from the list (copy-on-write) and delete their files."""
        ids = {id(segment) for segment in doomed}
        with self._segments_lock:
            self.segments = [segment for segment in self.segments if id(segment) not in ids]
        for segment in doomed:
            segment.delete(self.unlink_files)
        # A segment's snapshot goes with it (Kafka deletes them together).
        self.producer_state.delete_snapshots_where(segment.base_offset for segment in doomed)

    def replace_segments(self, old: list[Segment], new: Segment) -> None:
        """Put `new` where the consecutive segments `old` are in the list (the cleaner's swap).

        Only the list changes here; the caller has already put the files in place.
        """
        ids = {id(segment) for segment in old}
        with self._segments_lock:
            kept = [segment for segment in self.segments if id(segment) not in ids]
            position = bisect.bisect_left([s.base_offset for s in kept], new.base_offset)
            self.segments = [*kept[:position], new, *kept[position:]]

    # -- durability ----------------------------------------------------------------------------

    def needs_flush(self, now_ms: int) -> bool:
        """Whether flush.messages or flush.ms ask for an fsync, or a rolled segment awaits one."""
        unflushed = self.log_end_offset - self.recovery_point
        if unflushed <= 0:
            return False
        return (
            unflushed >= self.config.flush_messages
            or now_ms - self.last_flush_ms >= self.config.flush_ms
            or self.active_segment.base_offset > self.recovery_point
        )

    def flush(self, up_to: int | None = None, now_ms: int | None = None) -> None:
        """fsync every segment holding offsets below `up_to` (default: the log end).

        Safe to call from a worker thread while the event loop appends: the segment list is
        replaced, never mutated, and each fsync holds the segment's lock.
        """
        target = self.log_end_offset if up_to is None else min(up_to, self.log_end_offset)
        with self._flush_lock:
            if target <= self.recovery_point and not self._dir_needs_fsync:
                return
            segments = self.segments
            for i, segment in enumerate(segments):
                if segment.base_offset >= target:
                    break
                following = segments[i + 1] if i + 1 < len(segments) else None
                # A segment that ends at or below the recovery point was fsynced already
                # (asked without loading it: it ends where the next one begins, or before).
                covered = following is not None and following.base_offset <= self.recovery_point
                if segment.dirty or (not covered and segment.next_offset > self.recovery_point):
                    segment.fsync()
            self.producer_state.write_due_snapshot()
            self.producer_state.sync_snapshots()
            self.leader_epoch_cache.sync()
            if self._new_directory:
                # Created (or given its partition.metadata) without fsyncs, which would cost
                # two per partition when a topic of thousands is created: durable now.
                sync_file(self.directory / PARTITION_METADATA_FILE)
                fsync_dir(self.directory.parent)
                self._new_directory = False
                self._dir_needs_fsync = True
            if self._dir_needs_fsync:
                self._dir_needs_fsync = False
                fsync_dir(self.directory)
            self.recovery_point = max(self.recovery_point, target)
            self.last_flush_ms = now_wall_ms() if now_ms is None else now_ms

    # -- moving between log dirs ---------------------------------------------------------------

    def rename_dir(self, directory: Path) -> None:
        """Point every file at `directory`, to which the caller renamed the partition
        directory (open files stay valid across a rename)."""
        self.directory = directory
        for segment in self.segments:
            segment.update_parent_dir(directory)
        self.leader_epoch_cache.update_parent_dir(directory)
        self.producer_state.update_parent_dir(directory)

    @contextlib.contextmanager
    def flushes_paused(self) -> Iterator[bool]:
        """Keep flushes of this log from running meanwhile; yields False (pausing nothing)
        when one is running, so that the caller never waits for an fsync."""
        acquired = self._flush_lock.acquire(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                self._flush_lock.release()

    def take_over(self, future: PartitionLog) -> list[Segment]:
        """Continue on the files of `future`, a copy of this log in another log dir that has
        caught up with it (same log end offset; log start offset and high watermark already
        set from this log). Call with the flushes of both logs paused (`flushes_paused`).

        This object stays the one every caller holds; it takes the future's directory,
        segments, leader epochs and producer state, and `future` is closed for good (its files
        are this log's now). Returns the old segments for the caller to close and delete."""
        if future.log_end_offset != self.log_end_offset:
            raise ValueError(
                f"{self.name}: future log ends at {future.log_end_offset}, "
                f"not {self.log_end_offset}"
            )
        with self._segments_lock:
            old = self.segments
            self.segments = future.segments
        self.directory = future.directory
        self.leader_epoch_cache = future.leader_epoch_cache
        self.producer_state = future.producer_state
        self.recovery_point = future.recovery_point
        self.last_flush_ms = future.last_flush_ms
        self._dir_needs_fsync = True
        self.cleaner_horizon_ms = None
        self.producer_state.on_high_watermark_updated(self.high_watermark)
        future.closed = True
        self.on_change(self)
        return old

    # -- lifetime ------------------------------------------------------------------------------

    def close(self, *, sync: bool = True) -> None:
        """Close every file; the active segment records its largest timestamp (as Kafka does).

        `sync=False` writes the producer snapshot without fsync: the caller makes everything
        durable (LogManager.close syncs each log dir's file system once). Raises OSError, with every file closed anyway, when something the
        next start-up must find could not be written (an aborted transaction's index entry,
        the leader epochs): the log is then not cleanly closed.
        """
        if self.closed:
            return
        self.abort_cleaning()
        self.closed = True
        # The snapshot at the log end makes the next open replay nothing (without it the
        # replay starts at an older one: slower, not wrong). A log that never had a producer
        # id nor a snapshot needs none: a clean open without snapshots starts empty at the
        # log end (recovery.rebuild_producer_state).
        state = self.producer_state
        state.map_end_offset = self.log_end_offset
        try:
            state.write_due_snapshot()
            if state.producers or state.snapshots:
                state.take_snapshot(sync=sync)
            if sync:
                state.sync_snapshots()
        except OSError as exc:
            log.error("%s: could not write the producer state snapshot: %s", self.name, exc)
        failure: OSError | None = None
        try:
            self.active_segment.on_become_inactive(write=False)
        except OSError as exc:  # indexes are rebuilt from the .log where they fall short
            log.error("%s: could not write the indexes: %s", self.name, exc)
        try:
            self.leader_epoch_cache.write_unwritten()
        except OSError as exc:
            failure = exc
        for segment in self.segments:
            try:
                segment.close()
            except OSError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def delete(self) -> None:
        """Close and remove the whole partition directory."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.name}, start={self.log_start_offset}, "
            f"hw={self.high_watermark}, end={self.log_end_offset}, segments={len(self.segments)})"
        )
