"""Appending fetched batches to a follower's log, with the offsets the leader assigned.

`append_as_follower(log, records, now_ms)` is the follower's counterpart of
`PartitionLog.append_as_leader`, written against the log's public parts:
  * the bytes are stored unchanged: base offsets, partition leader epochs and timestamps are the
    leader's (the CRC covers neither offsets nor epoch, so it is checked as received);
  * every batch is validated (magic, lengths, CRC-32C, record counts) before anything is written;
    a trailing partial batch (a fetch may end in one) is left for the next fetch;
  * offsets must increase and start at or after the log end: no overlap, no reordering. Gaps
    are allowed because a compacted leader log has them;
  * the leader epoch cache learns an epoch from the first batch that carries it, so the
    follower's cache matches the leader's (it is what a later truncation is decided from);
  * producer state is updated with Origin.REPLICATION (nothing refused, markers end
    transactions, aborts go to the transaction index of the segment holding the marker).
Segments roll by the same rules as a leader append (size, time, index space, relative offset
range), checked batch by batch so segment.bytes holds for a large fetch too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from strom.protocol.records.batch_header import BatchHeader, iter_batch_headers
from strom.protocol.records.codec import decode_records
from strom.protocol.records.control import CONTROL_ABORT, CONTROL_COMMIT, parse_control_record
from strom.protocol.records.errors import CorruptRecordError, RecordError
from strom.protocol.records.validation import validate_batches
from strom.storage.partition_log import PartitionLog
from strom.storage.producer_append import Origin, ProducerStateError
from strom.storage.segment import Segment

__all__ = [
    "FollowerAppendResult",
    "OffsetMismatchError",
    "append_as_follower",
    "truncate_fully_and_start_at",
]

log = logging.getLogger("strom.replication")


class OffsetMismatchError(CorruptRecordError):
    """Fetched batches overlap the log end or go backwards: the follower must truncate or
    fetch again from its log end rather than append these."""


@dataclass(frozen=True, slots=True)
class FollowerAppendResult:
    first_offset: int  # base offset of the first batch appended; -1 when nothing was
    last_offset: int  # last offset appended; -1 when nothing was
    valid_bytes: int  # bytes appended (a trailing partial batch is not counted)
    batches: int
    last_epoch: int  # partition leader epoch of the last batch appended; -1 when none


def whole_batches_length(data: bytes | bytearray | memoryview) -> int:
    """Length of the leading run of complete batches (the rest is a partial batch)."""
    end = 0
    for position, header in iter_batch_headers(data):
        end = position + header.size
    return end


def append_as_follower(
    log_: PartitionLog, records: bytes | bytearray | memoryview, now_ms: int
) -> FollowerAppendResult:
    """Append the complete batches of `records` (a Fetch response's records) to `log_`.

    Raises RecordError subclasses (CORRUPT_MESSAGE and the like) for a damaged batch and
    OffsetMismatchError for offsets that do not continue the log; nothing is written then.
    """
    view = records if isinstance(records, memoryview) else memoryview(records)
    end = whole_batches_length(view)
    if end == 0:
        return FollowerAppendResult(-1, -1, 0, 0, -1)
    view = view[:end]
    headers = validate_batches(view, from_client=False)
    expected = log_.log_end_offset
    for header in headers:
        if header.base_offset < expected:
            raise OffsetMismatchError(
                f"{log_.name}: batch at offset {header.base_offset} does not follow {expected}"
            )
        expected = header.next_offset

    # Consecutive batches that fit the active segment are written with one write.
    position = 0
    group_start = 0
    group: list[BatchHeader] = []
    for header in headers:
        first_ts = group[0].max_timestamp if group else None
        pending = position - group_start
        if log_.needs_roll(
            pending, first_ts, header.size, header.max_timestamp, header.last_offset, now_ms
        ):
            _write(log_, view[group_start:position], group)
            group, group_start = [], position
            if log_.needs_roll(
                0, None, header.size, header.max_timestamp, header.last_offset, now_ms
            ):
                log_.roll(now_ms)
        group.append(header)
        position += header.size
    _write(log_, view[group_start:position], group)
    log_.on_change(log_)  # retention.bytes may apply before the high watermark moves
    return FollowerAppendResult(
        first_offset=headers[0].base_offset,
        last_offset=headers[-1].last_offset,
        valid_bytes=end,
        batches=len(headers),
        last_epoch=headers[-1].partition_leader_epoch,
    )


def _write(log_: PartitionLog, data: memoryview, headers: list[BatchHeader]) -> None:
    """Write batches to the active segment, then update the epoch cache and producer state."""
    if not headers:
        return
    segment = log_.active_segment
    segment.append(data, headers)
    cache = log_.leader_epoch_cache
    state = log_.producer_state
    position = 0
    for header in headers:
        epoch = header.partition_leader_epoch
        if epoch >= 0 and epoch > cache.latest_epoch:
            cache.assign(epoch, header.base_offset)
        if header.producer_id >= 0:
            _update_producer_state(log_, segment, data[position : position + header.size], header)
        position += header.size
    state.map_end_offset = headers[-1].next_offset


def _update_producer_state(
    log_: PartitionLog, segment: Segment, batch: memoryview, header: BatchHeader
) -> None:
    marker: tuple[bool, int] | None = None
    if header.is_control:
        try:
            _, decoded = decode_records(batch)
            kind, coordinator_epoch = parse_control_record(decoded[0]) if decoded else (-1, -1)
        except RecordError as exc:
            log.warning(
                "%s: unreadable control batch at %d: %s", log_.name, header.base_offset, exc
            )
            return
        if kind not in (CONTROL_ABORT, CONTROL_COMMIT):
            return  # another kind of control record, or an emptied (compacted) marker
        marker = (kind == CONTROL_COMMIT, coordinator_epoch)
    state = log_.producer_state
    try:
        analysis = state.analyze([header], header.base_offset, Origin.REPLICATION, marker)
    except ProducerStateError as exc:
        # Replication refuses nothing: the leader already accepted the batch. Only a plain batch
        # inside an open transaction can get here; the state is left as it was, as on replay.
        log.warning("%s: producer state at offset %d: %s", log_.name, header.base_offset, exc)
        return
    state.apply(analysis, segment.txn_index)


def truncate_fully_and_start_at(log_: PartitionLog, offset: int, now_ms: int) -> None:
    """Drop the whole log and continue it empty at `offset` (a follower whose log end is below
    the leader's log start: what it lacks was deleted by retention on the leader).

    Uses only the log's public operations, in an order that never leaves the segment list
    empty (a flush in a worker thread may look at it): the new segment goes in first.
    """
    if offset == log_.log_start_offset == log_.log_end_offset:
        return
    old = list(log_.segments)
    if offset <= old[-1].base_offset:
        # A new segment must sort after every old one; truncating first empties the log down
        # to a single empty segment at or below `offset`.
        log_.truncate_to(min(offset, log_.log_start_offset), now_ms)
        old = list(log_.segments)
    if old[-1].base_offset != offset or old[-1].size:
        log_.replace_segments([], Segment(log_.directory, offset, log_.config, now_ms))
        log_.remove_segments(old)
    log_.log_start_offset = offset
    log_.leader_epoch_cache.clear()
    log_.producer_state.truncate_fully_and_start_at(offset)
    log_.recovery_point = offset
    log_.update_high_watermark(offset)
