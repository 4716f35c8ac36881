"""What a share group learns from the records it passes: filtered out, or delayed until when.

A record is delayed by its headers (the last occurrence of each counts, as Kafka's
`Headers.lastHeader`):

    strom.deliver.at   epoch milliseconds, as decimal ASCII: deliverable from then on
    strom.delay.ms     milliseconds after the record's timestamp (its append time on a topic
                       with LogAppendTime, the producer's time otherwise)

`strom.deliver.at` wins over `strom.delay.ms`; a record with neither gets its topic's
`strom.delivery.delay.ms` after its timestamp. A header that is not a decimal integer counts as
absent. The due time is only computed; whether the record waits is the share partition's
decision (strom.coordinator.share.partition).

Records are decoded only when something may mark them: a filter is set, the topic has a
default delay, or the batch's bytes (decompressed) contain one of the header names. Control
batches carry no records to mark.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from strom.coordinator.share.states import Mark
from strom.protocol.compression import CompressionError, decompress
from strom.protocol.records.batch_header import (
    ATTR_CODEC_MASK,
    BATCH_HEADER_SIZE,
    LOG_OVERHEAD,
    parse_batch_header,
)
from strom.protocol.records.codec import decode_records
from strom.protocol.records.errors import RecordError
from strom.share.filter import FilterInput, RecordFilter

__all__ = ["DELAY_HEADER", "DELIVER_AT_HEADER", "batch_marks", "due_time"]

DELIVER_AT_HEADER: Final = "strom.deliver.at"
DELAY_HEADER: Final = "strom.delay.ms"
_NAMES: Final = (DELIVER_AT_HEADER.encode(), DELAY_HEADER.encode())
_INTEGER = re.compile(rb"-?\d{1,19}")


def _integer(value: bytes | None) -> int | None:
    if value is None or _INTEGER.fullmatch(value) is None:
        return None
    return int(value)


def due_time(
    timestamp: int, headers: Sequence[tuple[str, bytes | None]], topic_delay_ms: int
) -> int:
    """When the record may be delivered; -1 when it has no delay."""
    deliver_at = delay = None
    for name, value in headers:
        if name == DELIVER_AT_HEADER:
            deliver_at = _integer(value)
        elif name == DELAY_HEADER:
            delay = _integer(value)
    if deliver_at is not None:
        return deliver_at
    if delay is not None:
        return timestamp + delay if delay > 0 else -1
    return timestamp + topic_delay_ms if topic_delay_ms > 0 else -1


def _may_have_delays(batch: bytes | memoryview) -> bool:
    header = parse_batch_header(batch)
    body = memoryview(batch)[BATCH_HEADER_SIZE : header.batch_length + LOG_OVERHEAD]
    codec = header.attributes & ATTR_CODEC_MASK
    if codec:
        try:
            data: bytes | memoryview = decompress(codec, body)
        except CompressionError:
            return True  # let decoding say what is wrong
    else:
        data = body
    raw = bytes(data)
    return any(name in raw for name in _NAMES)


def batch_marks(
    batch: bytes | memoryview,
    record_filter: RecordFilter | None,
    topic_delay_ms: int,
    out: dict[int, Mark],
) -> None:
    """Add the marks of one stored batch's records to `out` (unmarked: deliver as they are).

    A batch that cannot be decoded is left unmarked: its records are delivered, and the
    consumer reports what is wrong with them, as with Fetch."""
    header = parse_batch_header(batch)
    if header.is_control:
        return
    if record_filter is None and topic_delay_ms <= 0 and not _may_have_delays(batch):
        return
    try:
        _, records = decode_records(batch)
    except RecordError:
        return
    for record in records:
        if record_filter is not None and not record_filter.matches_input(
            FilterInput.of(record.key, record.timestamp, record.headers)
        ):
            out[record.offset] = Mark(filtered=True)
            continue
        due = due_time(record.timestamp, record.headers, topic_delay_ms)
        if due >= 0:
            out[record.offset] = Mark(due_ms=due)
