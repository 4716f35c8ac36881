"""One cleaning pass over a log (Kafka's `Cleaner.doClean`), run in a cleaner thread.

Input: a `CleanJob` planned on the event loop (cleaner.py): the cleanable segments (log start
up to the base of the first segment that may not be cleaned, the pass's upper bound), the first
dirty offset, the active producers' last records and the aborted transactions overlapping the
range. The pass:

  1. builds the key map (key -> offset of its latest record) over the dirty section, leaving out
     aborted and control batches; when the map reaches MAX_MAP_ENTRIES the range ends with the
     segment that filled it (Kafka's full dedupe buffer);
  2. walks every batch of the range once, in offset order, through compaction.BatchFilter,
     writing what survives into cleaned segments;
  3. swaps each cleaned segment in for the segments it replaces (below), then records the new
     first dirty offset in `cleaner-offset-checkpoint`.

Grouping: consecutive segments are cleaned into one segment named by the first one's base
offset. A segment joins the current group while the group's output plus the segment's size stays
within segment.bytes and its offsets within 2**31 - 1 of the group's base. A group also takes in
the next segment, whatever its size (up to 2**31 - 1 bytes of output), while the segment it took
last contributed no batch: recovery of an interrupted swap replaces the segments whose base
offsets fall in the cleaned segment's range [base, next offset), so that range must reach the
base of the group's last segment. When it cannot (the last group of the pass, or too big a
segment next), the group's last batch is kept as an empty batch instead.

Swapping a group in (under `PartitionLog.cleaner_lock`; nothing happens once the log asked the
pass to stop: `cleaning_aborted`):
  1. `<base>.log.cleaned` (+ .index, .timeindex, .txnindex) is written and fsynced;
  2. renamed to `.swap` (indexes first, the .log last: that rename commits), directory fsynced;
  3. the cleaned segment replaces the old ones in the segment list, so a reader that finds an
     old segment closed re-reads the list and finds the new one;
  4. the old segments are deleted (renamed to `.deleted`, unlinked);
  5. the `.swap` files get their final names, directory fsynced.
A crash before 2 leaves `.cleaned` files, which loading deletes (the old segments are intact);
after 2, loading deletes the old segments in the swap's offset range and completes the rename.

Concurrency: the pass only reads non-active segments below the last stable offset, which nothing
else writes. Appends and rolls replace the segment list copy-on-write under the log's
`_segments_lock`, as step 3 does. Whatever removes or truncates segments (truncation, closing,
deletion) first sets `cleaning_aborted` and then takes `cleaner_lock`, so it waits for a swap in
progress and no later swap happens; retention skips a log while it is being cleaned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from strom.protocol.records.batch_header import BatchHeader, iter_batch_headers
from strom.protocol.records.codec import build_empty_batch
from strom.storage.checkpoint import fsync_dir
from strom.storage.compaction import (
    NO_HORIZON,
    BatchFilter,
    PassStats,
    ProducerLast,
    TxnCleaningState,
    map_keys,
)
from strom.storage.errors import CleaningAbortedError
from strom.storage.log_config import LogConfig
from strom.storage.partition_log import PartitionLog
from strom.storage.segment import (
    MAX_RELATIVE_OFFSET,
    Segment,
    SegmentClosedError,
    floor_index,
    segment_paths,
    txn_index_path,
)
from strom.storage.txn_index import AbortedTxn

log = logging.getLogger("strom.storage")

MAX_MAP_ENTRIES = 2_000_000
READ_CHUNK = 1024 * 1024
WRITE_BUFFER = 1024 * 1024
MAX_SEGMENT_BYTES = 2**31 - 1  # positions in the offset index are int32

# Records the first dirty offset of a log once a pass is done (cleaner.py's checkpoint).
CheckpointWriter = Callable[[PartitionLog, int], None]


@dataclass(frozen=True, slots=True)
class CleanJob:
    plog: PartitionLog
    segments: tuple[Segment, ...]  # the cleanable segments, from the log start
    first_dirty: int
    upper_bound: int  # base of the first segment not cleaned
    now_ms: int
    producers: dict[int, ProducerLast]
    aborted: tuple[AbortedTxn, ...]
    config: LogConfig
    # False: not dirty enough; the pass only looks for a delete horizon stored in the batches
    # that has passed (the log was opened since the last pass, so none is known) and cleans
    # only if it finds one.
    due: bool


@dataclass(frozen=True, slots=True)
class CleanResult:
    topic: str
    partition: int
    start_offset: int  # first offset of the cleaned range (the log start)
    end_offset: int  # end of the range covered by the key map, now the first dirty offset
    bytes_before: int
    bytes_after: int
    records_removed: int
    batches_removed: int
    empty_batches_kept: int
    segments_before: int
    segments_after: int


@dataclass(frozen=True, slots=True)
class PassOutcome:
    result: CleanResult | None  # None: nothing was cleaned
    # The earliest delete horizon left in the batches (NO_HORIZON: none); None: unknown.
    earliest_horizon: int | None
    replaced_bases: tuple[int, ...] = ()  # base offsets of the segments swapped out


def run(job: CleanJob, store_checkpoint: CheckpointWriter) -> PassOutcome:
    """Clean `job.plog` (see module doc). Returns with result None when the log asked the pass
    to stop; other failures raise, with the unfinished cleaned files removed."""
    plog = job.plog
    try:
        if not job.due:
            horizon = _earliest_stored_horizon(job)
            if horizon > job.now_ms:
                return PassOutcome(None, horizon)
        return _clean(job, store_checkpoint)
    except (CleaningAbortedError, SegmentClosedError) as exc:
        if isinstance(exc, SegmentClosedError) and not plog.cleaning_aborted:
            raise
        log.info("%s: cleaning stopped: the log is being truncated, moved or closed", plog.name)
        return PassOutcome(None, None)


def _check(plog: PartitionLog) -> None:
    if plog.cleaning_aborted:
        raise CleaningAbortedError(plog.name)


def _batches(
    plog: PartitionLog, segment: Segment, start: int = 0
) -> Iterator[tuple[BatchHeader, memoryview]]:
    """Every batch of `segment` from byte `start`, read a chunk at a time."""
    position = start
    end = segment.size
    while position < end:
        _check(plog)
        chunk = memoryview(segment.read(position, min(READ_CHUNK, end - position)))
        used = 0
        for offset, header in iter_batch_headers(chunk):
            yield header, chunk[offset : offset + header.size]
            used = offset + header.size
        if used == 0:  # one batch bigger than the chunk
            header = next(segment.batches(position, end))[1]
            yield header, memoryview(segment.read(position, header.size))
            used = header.size
        position += used


def _earliest_stored_horizon(job: CleanJob) -> int:
    """The earliest delete horizon set in a batch of the range (headers only)."""
    earliest = NO_HORIZON
    for segment in job.segments:
        _check(job.plog)
        for _, header in segment.batches():
            if header.has_delete_horizon and header.records_count:
                earliest = min(earliest, header.first_timestamp)
    return earliest


def _build_key_map(job: CleanJob) -> tuple[dict[bytes, int], list[Segment], int]:
    """(key map, the segments to clean, end of the map's range); see module doc."""
    segments = list(job.segments)
    dirty_from = job.first_dirty
    first = floor_index(segments, dirty_from)
    scan_start = segments[first].base_offset
    txns = TxnCleaningState(t for t in job.aborted if t.last_offset >= scan_start)
    key_map: dict[bytes, int] = {}
    for i in range(first, len(segments)):
        segment = segments[i]
        if segment.next_offset <= dirty_from:
            continue
        for header, data in _batches(job.plog, segment):
            map_keys(key_map, header, data, txns, dirty_from)
        if len(key_map) >= MAX_MAP_ENTRIES and i + 1 < len(segments):
            return key_map, segments[: i + 1], segments[i + 1].base_offset
    return key_map, segments, job.upper_bound


class _CleanedGroup:
    """The cleaned segment being written for a group of consecutive segments."""

    def __init__(self, job: CleanJob, base: int, kept_aborts_from: int) -> None:
        plog = job.plog
        for stale in [
            *segment_paths(plog.directory, base, ".cleaned"),
            txn_index_path(plog.directory, base, ".cleaned"),
        ]:
            stale.unlink(missing_ok=True)
        self.plog = plog
        self.base = base
        self.segment = Segment(plog.directory, base, plog.config, job.now_ms, ".cleaned")
        self.inputs: list[Segment] = []
        self.kept_aborts_from = kept_aborts_from
        self.size = 0  # output bytes, pending included
        self.next_offset = base  # after the last batch written
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._last_input: BatchHeader | None = None
        self._last_input_kept = False
        # Set once the swap's renames start: from then on the files are recovery's business.
        self.swapping = False

    def _last_input_contributed(self) -> bool:
        return len(self.inputs) <= 1 or self.next_offset > self.inputs[-1].base_offset

    def takes(self, segment: Segment, max_bytes: int) -> bool:
        if segment.next_offset - 1 - self.base > MAX_RELATIVE_OFFSET:
            return False
        if self.size + segment.size <= max_bytes:
            return True
        return not self._last_input_contributed() and (
            self.size + segment.size <= MAX_SEGMENT_BYTES
        )

    def _add(self, batch: bytes, next_offset: int) -> None:
        self._pending.append(batch)
        self._pending_size += len(batch)
        self.size += len(batch)
        self.next_offset = next_offset
        if self._pending_size >= WRITE_BUFFER:
            self._write_pending()

    def _write_pending(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self.segment.append(data, [header for _, header in iter_batch_headers(data)])
            self._pending.clear()
            self._pending_size = 0

    def clean_segment(self, segment: Segment, batch_filter: BatchFilter) -> None:
        self.inputs.append(segment)
        for header, data in _batches(self.plog, segment):
            batch = batch_filter.filter(header, data)
            self._last_input = header
            self._last_input_kept = batch is not None
            if batch is not None:
                self._add(batch, header.next_offset)

    def finish(self, kept_aborts: list[AbortedTxn]) -> Segment:
        last = self._last_input
        if not self._last_input_contributed() and last is not None and not self._last_input_kept:
            self._add(build_empty_batch(last), last.next_offset)
        self._write_pending()
        for entry in kept_aborts[self.kept_aborts_from :]:
            self.segment.txn_index.append(entry)
        self.segment.on_become_inactive()
        self.segment.fsync()
        return self.segment

    def discard(self) -> None:
        if self.swapping:
            return
        self.segment.close()
        for path in self.segment.paths():
            path.unlink(missing_ok=True)


def _swap_in(plog: PartitionLog, group: _CleanedGroup, cleaned: Segment) -> None:
    """Steps 2-5 of the module doc; crash points between them are handled by recovery.py, and
    so is a failure between them: the files are left as they are."""
    directory = plog.directory
    with plog.cleaner_lock:
        _check(plog)
        if plog.closed:
            raise CleaningAbortedError(plog.name)
        group.swapping = True
        cleaned.rename_suffix(".swap")
        fsync_dir(directory)
        plog.replace_segments(group.inputs, cleaned)
        for old in group.inputs:
            old.delete(plog.unlink_files)
        cleaned.rename_suffix("")
        fsync_dir(directory)


def _clean(job: CleanJob, store_checkpoint: CheckpointWriter) -> PassOutcome:
    plog = job.plog
    key_map, segments, map_end = _build_key_map(job)
    txns = TxnCleaningState(job.aborted)
    stats = PassStats()
    batch_filter = BatchFilter(
        key_map,
        map_end,
        job.upper_bound,
        job.producers,
        job.now_ms,
        job.config.delete_retention_ms,
        txns,
        stats,
    )
    bytes_before = sum(segment.size for segment in segments)
    cleaned_segments: list[Segment] = []
    replaced: list[int] = []
    group: _CleanedGroup | None = None

    def swap(current: _CleanedGroup) -> None:
        cleaned = current.finish(txns.kept_aborts)
        _swap_in(plog, current, cleaned)
        cleaned_segments.append(cleaned)
        replaced.extend(segment.base_offset for segment in current.inputs)

    try:
        for segment in segments:
            if group is not None and not group.takes(segment, job.config.segment_bytes):
                swap(group)
                group = None
            if group is None:
                group = _CleanedGroup(job, segment.base_offset, len(txns.kept_aborts))
            group.clean_segment(segment, batch_filter)
        if group is not None:
            swap(group)
            group = None
    finally:
        if group is not None:
            group.discard()
    with plog.cleaner_lock:
        _check(plog)
        store_checkpoint(plog, max(map_end, job.first_dirty))
    result = CleanResult(
        plog.topic,
        plog.partition,
        segments[0].base_offset,
        map_end,
        bytes_before,
        sum(segment.size for segment in cleaned_segments),
        stats.records_removed,
        stats.batches_removed,
        stats.empty_batches_kept,
        len(segments),
        len(cleaned_segments),
    )
    log.info("%s: cleaned %s", plog.name, result)
    return PassOutcome(result, stats.earliest_horizon, tuple(replaced))
