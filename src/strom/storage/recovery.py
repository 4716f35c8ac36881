"""Loading a partition directory: finishing interrupted operations and repairing torn segments.

What may be found in a partition directory and what loading does with it:
  <base>.log / .index / .timeindex   a segment; indexes are sanity-checked and rebuilt if bad
  <base>.txnindex                    aborted transactions of the segment (txn_index.py); cut
                                     with a torn tail, rebuilt by the producer state replay
                                     after an unclean shutdown
  *.deleted                          a deletion that was interrupted: unlinked
  *.cleaned                          cleaner output not yet committed: unlinked (the old segments
                                     are still complete, so this rolls the clean back)
  <base>.log.swap                    cleaner output that was committed (fsynced, then renamed from
                                     .cleaned): the swap is completed by deleting every segment
                                     whose base offset falls in the swap's offset range and
                                     renaming the .swap files into place (indexes are rebuilt)
  *.index.swap / *.timeindex.swap    unlinked; rebuilt from the .log.swap
  <base>.txnindex.swap               it cannot be rebuilt from the .log alone, so: with a
                                     <base>.log.swap, renamed into place with it; with a
                                     <base>.log.cleaned (swap not committed), unlinked; else the
                                     swap's final renames were cut short: renamed into place
  *.tmp                              a checkpoint write that never got renamed: unlinked
  an index without its .log          unlinked
  leader-epoch-checkpoint, partition.metadata, *.snapshot   left to their owners (snapshots:
                                     producer_state.py, loaded by rebuild_producer_state below)
  anything else                      logged and left alone (never deleted, never fatal)

After an unclean shutdown every segment from the one holding the recovery point onwards is read
batch by batch: framing, header and CRC (records.validate_batches), offsets increasing and
within the segment. The .log is cut at the first bad or partial batch, later segments are
deleted, and the indexes are rebuilt from the batches that survived.

Producer state (rebuild_producer_state) is loaded after the segments: the newest snapshot at or
below the replay start, then every batch from there to the log end is replayed. After an
unclean shutdown the replay starts at or below the first recovered segment, whose transaction
indexes are rebuilt from the markers met on the way.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path

from strom.protocol.primitives import ZERO_UUID
from strom.protocol.records.codec import decode_records
from strom.protocol.records.control import CONTROL_ABORT, CONTROL_COMMIT, parse_control_record
from strom.protocol.records.errors import RecordError
from strom.protocol.records.validation import validate_batches
from strom.storage.batch_io import FRAMING, LOG_OVERHEAD
from strom.storage.errors import InconsistentTopicIdError
from strom.storage.indexes import IndexCorruptError, IndexMissingError
from strom.storage.log_config import LogConfig
from strom.storage.partition_metadata import read_partition_metadata, write_partition_metadata
from strom.storage.producer_append import Origin, ProducerStateError
from strom.storage.producer_state import ProducerStateManager
from strom.storage.segment import Segment, segment_paths, txn_index_path

log = logging.getLogger("strom.storage")

SEGMENT_FILE = re.compile(
    r"^(\d{20})\.(log|index|timeindex|txnindex)(\.swap|\.cleaned|\.deleted)?$"
)
KNOWN_FILES = {"leader-epoch-checkpoint", "partition.metadata"}
# Share groups' delay indexes (strom.storage.timer_index) live beside the segments.
KNOWN_DIRS = {"strom-share-timers"}
RECOVERY_CHUNK = 1024 * 1024
MIN_BATCH_SIZE = 61


def recover_segment(segment: Segment, epochs: list[tuple[int, int]] | None = None) -> int:
    """Validate every batch, rebuild the indexes, cut a bad tail; returns the bytes cut.
    `epochs` collects (leader epoch, base offset) where the batches' epoch changes, for the
    leader epoch cache (whose file may not have been written before the crash)."""
    segment.reset_indexes()
    end = segment.size
    position = 0
    next_expected = segment.base_offset
    valid = True
    while valid and position < end:
        chunk = memoryview(segment.read(position, min(RECOVERY_CHUNK, end - position)))
        offset_in_chunk = 0
        while True:
            if len(chunk) - offset_in_chunk < LOG_OVERHEAD:
                break
            _, length = FRAMING.unpack_from(chunk, offset_in_chunk)
            size = length + LOG_OVERHEAD
            if size < MIN_BATCH_SIZE or position + offset_in_chunk + size > end:
                valid = False  # garbage length, or a batch torn by the crash
                break
            if offset_in_chunk + size > len(chunk):
                if offset_in_chunk == 0:  # one batch bigger than the chunk: read it whole
                    chunk = memoryview(segment.read(position, size))
                    continue
                break
            try:
                headers = validate_batches(
                    chunk[offset_in_chunk : offset_in_chunk + size], from_client=False
                )
            except RecordError as exc:
                log.debug(
                    "invalid batch at %s:%d: %s", segment.log_path, position + offset_in_chunk, exc
                )
                valid = False
                break
            header = headers[0] if len(headers) == 1 else None
            if (
                header is None
                or header.base_offset < next_expected
                or not segment.can_hold(header.last_offset)
            ):
                valid = False
                break
            segment.index_batch(position + offset_in_chunk, header)
            epoch = header.partition_leader_epoch
            if epochs is not None and epoch >= 0 and (not epochs or epochs[-1][0] != epoch):
                epochs.append((epoch, header.base_offset))
            next_expected = header.next_offset
            offset_in_chunk += size
        position += offset_in_chunk
        if offset_in_chunk == 0:
            break
    cut = end - position
    if cut:
        log.warning(
            "truncating %s at byte %d: %d bytes after the last valid batch (next offset %d)",
            segment.log_path,
            position,
            cut,
            segment.next_offset,
        )
        segment.truncate_bytes(position)
        segment.txn_index.truncate_to(segment.next_offset)
    return cut


def _unlink(path: Path, why: str) -> None:
    log.info("deleting %s (%s)", path, why)
    path.unlink(missing_ok=True)


def _open_segment(
    directory: Path, base: int, config: LogConfig, now_ms: int, suffix: str = ""
) -> Segment:
    """A segment found on disk: nothing is read until it is loaded, recovered or used."""
    return Segment(directory, base, config, now_ms, suffix, create=False)


def _complete_swap(
    directory: Path, base: int, config: LogConfig, now_ms: int, bases: set[int]
) -> None:
    swap = _open_segment(directory, base, config, now_ms, ".swap")
    recover_segment(swap)
    end = swap.next_offset
    for old in sorted(b for b in bases if base <= b < max(end, base + 1)):
        for path in [*segment_paths(directory, old), txn_index_path(directory, old)]:
            if path.exists():
                _unlink(path, "replaced by a committed cleaner swap")
        bases.discard(old)
    swap.rename_suffix("")
    swap.close()
    bases.add(base)
    log.info("completed an interrupted segment swap at %s base %d", directory, base)


def load_log_files(
    directory: Path,
    topic_id: uuid.UUID,
    config: LogConfig,
    recovery_point: int | None,
    clean_shutdown: bool,
    log_start_offset: int | None,
    now_ms: int,
    epochs: list[tuple[int, int]] | None = None,
) -> tuple[uuid.UUID, list[Segment], int, int]:
    """Create or check the partition directory and load its segments (never empty: an empty
    log gets one segment at its start). Returns (topic id, segments, log start offset,
    recovery point). A zero `topic_id` adopts the stored one."""
    try:
        directory.mkdir(parents=True)
        created = True
    except FileExistsError:
        created = False
    stored_id = None if created else read_partition_metadata(directory)
    if stored_id is not None and topic_id != ZERO_UUID and stored_id != topic_id:
        raise InconsistentTopicIdError(
            f"{directory} belongs to topic id {stored_id}, not {topic_id}"
        )
    if stored_id is None and topic_id != ZERO_UUID:
        write_partition_metadata(directory, topic_id, sync=False, new=created)
    segments = load_segments(
        directory,
        config,
        recovery_point=0 if recovery_point is None else recovery_point,
        clean_shutdown=clean_shutdown,
        now_ms=now_ms,
        epochs=epochs,
    )
    first_base = segments[0].base_offset if segments else (log_start_offset or 0)
    start = max(first_base, log_start_offset or 0)
    if not segments:
        segments.append(Segment(directory, start, config, now_ms))
    end = segments[-1].next_offset
    if start > end:
        # A checkpointed start beyond the data (data lost in a crash): start over there.
        log.warning("%s: log start offset %d is past the log end %d", directory, start, end)
        start = end
    # Without a checkpoint, only a clean shutdown vouches for what is on disk.
    unknown_point = end if clean_shutdown else 0
    point = unknown_point if recovery_point is None else min(end, recovery_point)
    return stored_id or topic_id, segments, start, point


def load_segments(
    directory: Path,
    config: LogConfig,
    *,
    recovery_point: int,
    clean_shutdown: bool,
    now_ms: int,
    epochs: list[tuple[int, int]] | None = None,
) -> list[Segment]:
    """Open every segment of a partition directory in base-offset order (see module doc)."""
    bases: set[int] = set()
    swaps: list[int] = []
    index_files: dict[int, list[Path]] = {}
    txn_swaps: list[int] = []
    uncommitted: set[int] = set()
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        path = Path(entry.path)
        name = entry.name
        if not entry.is_file():
            if name not in KNOWN_DIRS:
                log.warning("ignoring unexpected directory %s", path)
            continue
        match = SEGMENT_FILE.match(name)
        if match is None:
            if name.endswith(".deleted"):
                _unlink(path, "interrupted deletion")
            elif name.endswith(".tmp"):
                _unlink(path, "interrupted checkpoint write")
            elif name not in KNOWN_FILES and not name.endswith(".snapshot"):
                log.warning("ignoring unexpected file %s", path)
            continue
        base, kind, state = int(match.group(1)), match.group(2), match.group(3)
        if state == ".deleted":
            _unlink(path, "interrupted deletion")
        elif state == ".cleaned":
            if kind == "log":
                uncommitted.add(base)
            _unlink(path, "uncommitted cleaner output")
        elif state == ".swap":
            if kind == "log":
                swaps.append(base)
            elif kind == "txnindex":
                txn_swaps.append(base)
            else:
                _unlink(path, "index of a swap, rebuilt from its log")
        elif kind == "log":
            bases.add(base)
        else:
            index_files.setdefault(base, []).append(path)
    for base in txn_swaps:
        if base in swaps:
            continue  # moves with its .log.swap in _complete_swap
        path = txn_index_path(directory, base, ".swap")
        if base in uncommitted or base not in bases:
            _unlink(path, "transaction index of an uncommitted swap")
        else:
            log.info("completing the rename of %s", path)
            os.replace(path, txn_index_path(directory, base))
    for base in swaps:
        _complete_swap(directory, base, config, now_ms, bases)
    for base, paths in index_files.items():
        if base not in bases:
            for path in paths:
                if path.exists():
                    _unlink(path, "index without a .log")

    segments = [_open_segment(directory, base, config, now_ms) for base in sorted(bases)]
    if not segments:
        return segments
    if clean_shutdown:
        # Only the active segment is read now (its tail is the log end); the others load
        # their indexes when first used.
        active = segments[-1]
        try:
            active.load()
        except IndexMissingError:  # removed, or a log dir from elsewhere: rebuilt quietly
            active.rebuild_indexes()
        except IndexCorruptError as exc:
            log.warning("rebuilding the indexes of %s: %s", active.log_path, exc)
            recover_segment(active)
        return segments
    # Unclean: everything from the segment holding the recovery point on is validated batch
    # by batch; the segments before it were flushed with their indexes and load lazily.
    first_unflushed = 0
    for i, segment in enumerate(segments):
        if segment.base_offset <= recovery_point:
            first_unflushed = i
    for i in range(first_unflushed, len(segments)):
        if recover_segment(segments[i], epochs) and i + 1 < len(segments):
            _drop_after(segments, i)
            break
    return segments


def _drop_after(segments: list[Segment], index: int) -> None:
    """Delete the segments after `index`: data past a corrupt point cannot be trusted to follow it."""
    for segment in segments[index + 1 :]:
        log.warning("deleting %s: it follows a truncated segment", segment.log_path)
        segment.delete()
    del segments[index + 1 :]


# -- producer state ---------------------------------------------------------------------------


def load_producer_state(
    state: ProducerStateManager,
    segments: list[Segment],
    log_start_offset: int,
    log_end_offset: int,
    *,
    now_ms: int,
    expiration_ms: int,
    clean_shutdown: bool,
    recovery_point: int,
) -> None:
    """Producer state when a log opens (after load_segments, with the same arguments)."""
    # After an unclean shutdown load_segments recovered the segments from the one holding the
    # recovery point on: their transaction indexes are rebuilt by the replay.
    reindex_from = None
    if not clean_shutdown and segments:
        reindex_from = segments[0].base_offset
        for segment in segments:
            if segment.base_offset <= recovery_point:
                reindex_from = segment.base_offset
    state.remove_stray_snapshots(segment.base_offset for segment in segments)
    rebuild_producer_state(
        state,
        segments,
        log_start_offset,
        log_end_offset,
        now_ms=now_ms,
        expiration_ms=expiration_ms,
        clean_shutdown=clean_shutdown,
        reindex_from=reindex_from,
    )


def rebuild_producer_state(
    state: ProducerStateManager,
    segments: list[Segment],
    log_start_offset: int,
    log_end_offset: int,
    *,
    now_ms: int,
    expiration_ms: int,
    clean_shutdown: bool = False,
    reindex_from: int | None = None,
) -> None:
    """Load the newest usable snapshot and replay the log from there to `log_end_offset`.

    Snapshots above the log end (written before a truncation) or at or below the log start
    are deleted first, as Kafka does. `reindex_from`: the base of the first segment whose
    transaction index must be rebuilt (after an unclean shutdown); the replay then starts at a
    snapshot at or below it. A clean shutdown with no snapshot at all skips the replay and
    starts empty at the log end (Kafka's upgrade shortcut: the data predates producer state);
    a truncation (clean_shutdown False) always replays.
    """
    state.delete_snapshots_where(
        o for o in state.snapshots if o > log_end_offset or o <= log_start_offset
    )
    state.clear()
    if clean_shutdown and reindex_from is None and not state.snapshots:
        state.map_end_offset = log_end_offset
        state.take_snapshot_later()
        return
    limit = log_end_offset if reindex_from is None else min(reindex_from, log_end_offset)
    state.load_latest_snapshot(limit, log_start_offset, now_ms, expiration_ms)
    start = max(state.map_end_offset, log_start_offset)
    for i, segment in enumerate(segments):
        reindex = reindex_from is not None and segment.base_offset >= reindex_from
        if reindex:
            segment.txn_index.reset()
        following = segments[i + 1] if i + 1 < len(segments) else None
        if following is not None and following.base_offset <= start and not reindex:
            continue  # ends below the start: not read (nor loaded, if it is not yet)
        if segment.next_offset > start:
            _replay_segment(state, segment, start, log_end_offset, reindex)
    state.map_end_offset = log_end_offset
    state.take_snapshot_later()


def _replay_segment(
    state: ProducerStateManager, segment: Segment, start: int, end: int, reindex: bool
) -> None:
    for position, header in segment.batches():
        if header.base_offset >= end:
            break
        if header.last_offset < start or header.producer_id < 0:
            continue
        marker: tuple[bool, int] | None = None
        if header.is_control:
            try:
                _, records = decode_records(memoryview(segment.read(position, header.size)))
                kind, coordinator_epoch = parse_control_record(records[0]) if records else (-1, -1)
            except RecordError as exc:
                log.warning(
                    "unreadable control batch at %s:%d: %s", segment.log_path, position, exc
                )
                continue
            if kind not in (CONTROL_ABORT, CONTROL_COMMIT):
                continue  # an emptied (compacted) marker, or another kind of control record
            marker = (kind == CONTROL_COMMIT, coordinator_epoch)
        try:
            analysis = state.analyze([header], header.base_offset, Origin.REPLICATION, marker)
        except ProducerStateError as exc:  # only INVALID_TXN_STATE can be raised on replay
            log.warning("%s: replaying %s:%d: %s", state.where, segment.log_path, position, exc)
            continue
        state.apply(analysis, segment.txn_index if reindex else None)
