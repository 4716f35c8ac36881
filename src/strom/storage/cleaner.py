"""Log compaction: keep only the latest record per key in the non-active part of a log.

When a log is cleaned (cleanup.policy includes "compact"):
  * The cleanable range is [log start, first uncleanable offset), where the first uncleanable
    offset is the smallest of: the active segment's base, the base of the first segment that
    reaches the high watermark or the last stable offset (an open transaction may still be
    aborted), the base of the first segment holding a record younger than
    min.compaction.lag.ms. Only whole segments are cleaned.
  * The dirty section starts at the offset stored in `cleaner-offset-checkpoint` (the end of the
    previous clean; log start when absent). The log is cleaned when
    dirty bytes / cleanable bytes >= min.cleanable.dirty.ratio, or when the first dirty segment
    waited longer than max.compaction.lag.ms, or when a tombstone delete horizon has passed.
  * A key -> latest offset map is built over the dirty section (capped at MAX_MAP_ENTRIES keys;
    when the cap is hit the dirty section ends at that segment, as Kafka does with a full
    dedupe buffer; records of aborted transactions are left out, so that they never shadow a
    committed record), then every batch of the cleanable range is rewritten keeping a record
    unless a later record with its key exists in the map.
  * Offsets never change: a rebuilt batch keeps its base offset, last offset delta, producer
    id/epoch, base sequence and leader epoch; records keep their absolute offsets and
    timestamps. Control batches are copied unchanged. A batch that loses all its records is
    dropped, except the last data batch of each producer id in the range, which stays as an
    empty batch so that the producer's last sequence survives (Kafka keeps those too), and the
    last batch of each group (see _clean_group). Keyless records are kept (the server rejects
    them on compacted topics).
  * Transactions: aborted records and markers are not removed (Kafka removes them); the
    transaction index entries of the old segments are copied to the cleaned one, so
    read_committed consumers still skip aborted records.
  * Tombstones (null value) use Kafka's v2 scheme: the first clean that keeps a tombstone
    rewrites its batch with attribute bit 6 set and base timestamp = now +
    delete.retention.ms (the delete horizon; record timestamps are re-based so they are
    unchanged). A later clean after the horizon drops the tombstones of that batch.
  * Consecutive segments are grouped into one cleaned segment while their total size stays
    within segment.bytes and their offsets within 2**31 - 1 of the group's base.

Swapping a group in, crash-safe (recovery.py finishes or rolls back what a crash interrupts):
  1. write `<base>.log.cleaned` (+ .index.cleaned, .timeindex.cleaned), fsync;
  2. rename the indexes, then the log, to `.swap` (the `.log.swap` rename is the commit), fsync
     the directory;
  3. delete the old segments (rename to `.deleted`, unlink);
  4. rename the `.swap` files to their final names, fsync the directory.
A crash before 2 leaves `.cleaned` files, which loading deletes (the old segments are intact);
after 2, loading deletes the old segments in the swap's offset range and completes the rename.

`cleaner-offset-checkpoint` (one per log dir, Kafka's checkpoint format) holds, per partition,
the first dirty offset. The map is a Python dict, so memory grows with the number of distinct
keys in the dirty section up to the cap (Kafka bounds it with a fixed 24-byte-per-key buffer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from strom.protocol.records.batch_header import BatchHeader, iter_batch_headers
from strom.protocol.records.codec import Record, build_batch, decode_records
from strom.storage.checkpoint import fsync_dir, read_offsets, write_offsets
from strom.storage.partition_log import PartitionLog
from strom.storage.segment import MAX_RELATIVE_OFFSET, Segment, segment_paths, txn_index_path

log = logging.getLogger("strom.storage")

CHECKPOINT_FILE = "cleaner-offset-checkpoint"
MAX_MAP_ENTRIES = 2_000_000
WRITE_BUFFER = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CleanResult:
    topic: str
    partition: int
    start_offset: int  # first offset of the cleaned range (the log start)
    end_offset: int  # end of the cleaned range, now the first dirty offset
    bytes_before: int
    bytes_after: int
    records_removed: int
    segments_before: int
    segments_after: int


# -- checkpoint ---------------------------------------------------------------------------------


def _checkpoint_path(plog: PartitionLog) -> Path:
    return plog.directory.parent / CHECKPOINT_FILE


def first_dirty_offset(plog: PartitionLog) -> int:
    stored = read_offsets(_checkpoint_path(plog)).get((plog.topic, plog.partition))
    if stored is None or stored < plog.log_start_offset or stored > plog.log_end_offset:
        return plog.log_start_offset
    return stored


def _store_checkpoint(plog: PartitionLog, offset: int) -> None:
    path = _checkpoint_path(plog)
    offsets = read_offsets(path)
    offsets[(plog.topic, plog.partition)] = offset
    write_offsets(path, offsets)


def forget(log_dir: Path, topic: str, partition: int) -> None:
    """Remove a deleted partition from the log dir's cleaner checkpoint."""
    path = log_dir / CHECKPOINT_FILE
    offsets = read_offsets(path)
    if offsets.pop((topic, partition), None) is not None:
        write_offsets(path, offsets)


# -- choosing what to clean ---------------------------------------------------------------------


def cleanable_segments(plog: PartitionLog, now_ms: int) -> list[Segment]:
    """The non-active segments below the high watermark whose records are all old enough."""
    lag = plog.config.min_compaction_lag_ms
    stable = plog.last_stable_offset  # never above the high watermark
    result = []
    for segment in plog.segments[:-1]:
        if segment.next_offset > stable:
            break
        if lag > 0 and (segment.max_timestamp < 0 or now_ms - segment.max_timestamp < lag):
            break
        result.append(segment)
    return result


def _is_due(plog: PartitionLog, segments: list[Segment], dirty_from: int, now_ms: int) -> bool:
    total = sum(segment.size for segment in segments)
    dirty = [s for s in segments if s.next_offset > dirty_from]
    if not total:
        return False
    horizon = plog.cleaner_delete_horizon_ms
    if horizon is not None and horizon <= now_ms:
        return True
    if not dirty:
        return False
    if sum(segment.size for segment in dirty) / total >= plog.config.min_cleanable_dirty_ratio:
        return True
    first_ts = dirty[0].first_batch_timestamp
    max_lag = plog.config.max_compaction_lag_ms
    return first_ts is not None and first_ts >= 0 and now_ms - first_ts > max_lag


# -- cleaning -----------------------------------------------------------------------------------


def clean(plog: PartitionLog, now_ms: int) -> CleanResult | None:
    """Compact `plog` if it is cleanable now (see module doc); None when nothing was done."""
    if not plog.config.compact:
        return None
    segments = cleanable_segments(plog, now_ms)
    dirty_from = first_dirty_offset(plog)
    if not segments or not _is_due(plog, segments, dirty_from, now_ms):
        return None
    aborted = _aborted_ranges(plog, segments)
    key_map, segments = _build_key_map(segments, dirty_from, aborted)
    end_offset = segments[-1].next_offset
    bytes_before = sum(segment.size for segment in segments)
    last_of_producer = _last_batch_per_producer(segments)
    stats = _Stats()
    cleaned_segments = []
    for group in _group(segments, plog.config.segment_bytes):
        cleaned = _clean_group(plog, group, key_map, last_of_producer, now_ms, stats)
        _swap_in(plog, group, cleaned)
        cleaned_segments.append(cleaned)
    _store_checkpoint(plog, max(end_offset, dirty_from))
    plog.cleaner_delete_horizon_ms = stats.earliest_horizon
    result = CleanResult(
        plog.topic,
        plog.partition,
        segments[0].base_offset,
        end_offset,
        bytes_before,
        sum(segment.size for segment in cleaned_segments),
        stats.records_removed,
        len(segments),
        len(cleaned_segments),
    )
    log.info("%s: cleaned %s", plog.name, result)
    return result


def _batch_records(segment: Segment, position: int, header: BatchHeader) -> list[Record]:
    return decode_records(memoryview(segment.read(position, header.size)))[1]


def _aborted_ranges(plog: PartitionLog, segments: list[Segment]) -> dict[int, list[range]]:
    """producer id -> offset ranges of its aborted transactions overlapping `segments`."""
    ranges: dict[int, list[range]] = {}
    if segments:
        for txn in plog.collect_aborted_txns(segments[0].base_offset, segments[-1].next_offset):
            ranges.setdefault(txn.producer_id, []).append(
                range(txn.first_offset, txn.last_offset + 1)
            )
    return ranges


def _is_aborted(header: BatchHeader, aborted: dict[int, list[range]]) -> bool:
    # A producer has one transaction open at a time, so its transactional batch inside the
    # span of one of its aborted transactions belongs to that transaction.
    if not header.is_transactional or header.producer_id not in aborted:
        return False
    return any(header.base_offset in span for span in aborted[header.producer_id])


def _build_key_map(
    segments: list[Segment], dirty_from: int, aborted: dict[int, list[range]]
) -> tuple[dict[bytes, int], list[Segment]]:
    """key -> latest offset over the dirty section; may shorten the range when the map is full."""
    key_map: dict[bytes, int] = {}
    for i, segment in enumerate(segments):
        if segment.next_offset <= dirty_from:
            continue
        for position, header in segment.batches():
            if header.last_offset < dirty_from or header.is_control or _is_aborted(header, aborted):
                continue
            for record in _batch_records(segment, position, header):
                if record.key is not None and record.offset >= dirty_from:
                    key_map[record.key] = record.offset
        if len(key_map) >= MAX_MAP_ENTRIES and i + 1 < len(segments):
            return key_map, segments[: i + 1]
    return key_map, segments


def _last_batch_per_producer(segments: list[Segment]) -> dict[int, int]:
    last: dict[int, int] = {}
    for segment in segments:
        for _, header in segment.batches():
            if header.producer_id >= 0 and not header.is_control:
                last[header.producer_id] = header.base_offset
    return last


def _group(segments: list[Segment], max_bytes: int) -> list[list[Segment]]:
    groups: list[list[Segment]] = []
    for segment in segments:
        if groups:
            current = groups[-1]
            size = sum(s.size for s in current) + segment.size
            span = segment.next_offset - 1 - current[0].base_offset
            if size <= max_bytes and span <= MAX_RELATIVE_OFFSET:
                current.append(segment)
                continue
        groups.append([segment])
    return groups


@dataclass(slots=True)
class _Stats:
    records_removed: int = 0
    earliest_horizon: int | None = None

    def note_horizon(self, horizon: int) -> None:
        if self.earliest_horizon is None or horizon < self.earliest_horizon:
            self.earliest_horizon = horizon


def _clean_batch(
    segment: Segment,
    position: int,
    header: BatchHeader,
    key_map: dict[bytes, int],
    keep_if_empty: bool,
    now_ms: int,
    delete_retention_ms: int,
    stats: _Stats,
) -> bytes | None:
    """The batch as it should be after cleaning; None to drop it."""
    original = segment.read(position, header.size)
    if header.is_control:
        return original
    records = decode_records(memoryview(original))[1]
    horizon_passed = header.has_delete_horizon and header.first_timestamp <= now_ms
    kept = []
    for record in records:
        latest = key_map.get(record.key) if record.key is not None else None
        if latest is not None and record.offset < latest:
            continue  # superseded by a later record with the same key
        if record.value is None and horizon_passed:
            continue  # tombstone whose delete.retention.ms is over
        kept.append(record)
    stats.records_removed += len(records) - len(kept)
    has_tombstone = any(record.value is None for record in kept)
    if has_tombstone:
        horizon = (
            header.first_timestamp if header.has_delete_horizon else now_ms + delete_retention_ms
        )
        stats.note_horizon(horizon)
    if len(kept) == len(records) and has_tombstone == header.has_delete_horizon:
        return original
    if not kept and not keep_if_empty:
        return None
    return build_batch(
        kept,
        base_offset=header.base_offset,
        last_offset_delta=header.last_offset_delta,
        compression=header.compression,
        timestamp_type=header.timestamp_type,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
        is_transactional=header.is_transactional,
        has_delete_horizon=has_tombstone,
        partition_leader_epoch=header.partition_leader_epoch,
        first_timestamp=horizon if has_tombstone else None,
        max_timestamp=header.max_timestamp if header.timestamp_type else None,
    )


def _clean_group(
    plog: PartitionLog,
    group: list[Segment],
    key_map: dict[bytes, int],
    last_of_producer: dict[int, int],
    now_ms: int,
    stats: _Stats,
) -> Segment:
    base = group[0].base_offset
    for stale in [
        *segment_paths(plog.directory, base, ".cleaned"),
        txn_index_path(plog.directory, base, ".cleaned"),
    ]:
        stale.unlink(missing_ok=True)
    cleaned = Segment(plog.directory, base, plog.config, now_ms, ".cleaned")
    pending: list[bytes] = []
    pending_size = 0

    def write_pending() -> None:
        nonlocal pending_size
        if pending:
            data = b"".join(pending)
            cleaned.append(data, [header for _, header in iter_batch_headers(data)])
            pending.clear()
            pending_size = 0

    # The group's last batch is kept (possibly empty) so that the cleaned segment ends where
    # the group ended: recovery of an interrupted swap deletes the old segments whose base
    # offsets fall inside the swap's offset range, which must therefore span the whole group.
    group_last_offset = max(segment.next_offset for segment in group) - 1
    for segment in group:
        for position, header in segment.batches():
            keep_if_empty = header.last_offset == group_last_offset or (
                header.producer_id >= 0
                and last_of_producer.get(header.producer_id) == header.base_offset
            )
            batch = _clean_batch(
                segment,
                position,
                header,
                key_map,
                keep_if_empty,
                now_ms,
                plog.config.delete_retention_ms,
                stats,
            )
            if batch is not None:
                pending.append(batch)
                pending_size += len(batch)
                if pending_size >= WRITE_BUFFER:
                    write_pending()
    write_pending()
    for segment in group:  # offsets do not change, so the aborted transactions stay as they are
        for entry in segment.txn_index.entries():
            cleaned.txn_index.append(entry)
    cleaned.on_become_inactive()
    cleaned.fsync()
    return cleaned


def _swap_in(plog: PartitionLog, group: list[Segment], cleaned: Segment) -> None:
    """Steps 2-4 of the module doc; crash points between them are handled by recovery.py."""
    directory = plog.directory
    # The .log rename is the commit point; an index left as .cleaned is rebuilt by recovery.
    cleaned.rename_suffix(".swap")
    fsync_dir(directory)
    for old in group:
        old.delete()
    cleaned.rename_suffix("")
    fsync_dir(directory)
    plog.replace_segments(group, cleaned)
