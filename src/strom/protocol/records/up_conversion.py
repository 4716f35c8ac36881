"""Produce v0-2 with message format v0/v1: validate a message set and convert it to one v2 batch.

Kafka 3.x stores only record batch v2 (with inter.broker.protocol.version 3.0 and later the
message format is always v2), so its ``LogValidator`` converts a produced v0/v1 message set on
append; :func:`up_convert` does the same, with the same checks and error codes:

- per shallow entry, in order: larger than ``max.message.bytes`` -> MESSAGE_TOO_LARGE, CRC-32
  mismatch -> CORRUPT_MESSAGE (:func:`.legacy.iter_message_set`);
- a compressed wrapper must be the only entry, and every entry must have the first one's magic
  -> INVALID_RECORD;
- per record (the inner messages of a wrapper, or each uncompressed message): the wrapper's
  magic, an intact CRC (inner messages; CORRUPT_MESSAGE), a key on compacted topics, and with
  CreateTime a timestamp within ``message.timestamp.before/after.max.ms`` unless it is -1; a
  producer-set LogAppendTime type is refused unless the topic uses CreateTime and the record
  has a timestamp. Refused records fail the whole set: INVALID_TIMESTAMP if one of them failed
  for its timestamp, else INVALID_RECORD.

The result is one uncompressed-or-recompressed v2 batch (base offset 0, no producer id, so the
log assigns offsets as for any batch): records keep their keys, values and timestamps (-1 for
magic 0; a LogAppendTime wrapper's time for its inner messages); the codec is the topic's
``compression.type`` at the topic's level for it, or the producer's codec at its default
level with ``producer``. The caller appends it as a client
batch, so a LogAppendTime topic stamps it like any other. Its size is checked again against
``max.message.bytes`` (MESSAGE_TOO_LARGE), as Kafka re-checks a converted batch: many small
uncompressed messages may add up to one batch above the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from strom.protocol.compression import CODEC_NONE, DEFAULT_MAX_DECOMPRESSED
from strom.protocol.records.batch_header import NO_TIMESTAMP, BatchHeader, parse_batch_header
from strom.protocol.records.codec import Record, build_batch
from strom.protocol.records.errors import (
    InvalidRecordError,
    InvalidTimestampError,
    RecordTooLargeError,
)
from strom.protocol.records.legacy import LegacyMessage, inner_messages, iter_message_set
from strom.protocol.records.recompression import TOPIC_CODECS

__all__ = ["AppendRules", "UpConverted", "target_codec", "up_convert"]


def target_codec(compression_type: str, source_codec: int) -> int:
    """The codec a topic stores a batch with (Kafka's ``BrokerCompressionType.targetCompression``)."""
    if compression_type == "producer":
        return source_codec
    return TOPIC_CODECS[compression_type]


@dataclass(frozen=True, slots=True)
class AppendRules:
    """The topic settings and the clock that decide whether and how a message set is taken."""

    now_ms: int
    compression_type: str = "producer"
    # The topic's compression.<codec>.level for compression_type's codec (None: its default);
    # not used with "producer", where Kafka compresses at the codec's default level.
    compression_level: int | None = None
    create_time: bool = True  # message.timestamp.type; False for LogAppendTime
    timestamp_before_max_ms: int = 2**63 - 1
    timestamp_after_max_ms: int = 2**63 - 1
    compacted: bool = False
    max_message_bytes: int | None = None


class UpConverted(NamedTuple):
    """The v2 batch made from a message set (writable, for the log to stamp) and its header."""

    batch: bytearray
    header: BatchHeader


def _record_error(
    message: LegacyMessage, wrapper: LegacyMessage, index: int, rules: AppendRules
) -> tuple[bool, str] | None:
    """(is a timestamp error, description) when Kafka refuses this record, else None."""
    if message.magic != wrapper.magic:
        return False, f"record {index} has magic {message.magic}, its set has {wrapper.magic}"
    if rules.compacted and message.key is None:
        return False, f"record {index}: a compacted topic cannot accept a message without key"
    timestamp = message.timestamp
    if rules.create_time and timestamp != NO_TIMESTAMP:
        if rules.now_ms - timestamp > rules.timestamp_before_max_ms or (
            timestamp - rules.now_ms > rules.timestamp_after_max_ms
        ):
            return True, (
                f"record {index}: timestamp {timestamp} is out of range "
                f"[{rules.now_ms - rules.timestamp_before_max_ms}, "
                f"{rules.now_ms + rules.timestamp_after_max_ms}]"
            )
    elif wrapper.log_append_time:
        return True, f"record {index}: a producer may not set the timestamp type LogAppendTime"
    return None


def _raise_record_errors(errors: list[tuple[bool, str]]) -> None:
    shown = "; ".join(text for _, text in errors[:3])
    if any(is_timestamp for is_timestamp, _ in errors):
        raise InvalidTimestampError(f"{len(errors)} record(s) refused: {shown}")
    raise InvalidRecordError(f"{len(errors)} record(s) refused: {shown}")


def up_convert(
    buf: bytes | bytearray | memoryview,
    rules: AppendRules,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
) -> UpConverted:
    """Validate the v0/v1 message set ``buf`` and convert it to one v2 batch (module docstring).

    Raises a :class:`~strom.protocol.records.errors.RecordError` subclass, whose error code is
    the answer, for anything Kafka refuses.
    """
    shallow = list(iter_message_set(buf, rules.max_message_bytes))
    if not shallow:
        raise InvalidRecordError("no message in the message set")
    source_codec = CODEC_NONE
    for entry in shallow:
        if entry.codec != CODEC_NONE:
            source_codec = entry.codec  # the last one, as Kafka picks it
    if source_codec != CODEC_NONE and len(shallow) > 1:
        raise InvalidRecordError("a compressed message set must be the only entry")
    first_magic = shallow[0].magic
    records: list[Record] = []
    index = 0
    for entry in shallow:
        if entry.magic != first_magic:
            raise InvalidRecordError(
                f"message magic {entry.magic} differs from the first message's {first_magic}"
            )
        members = inner_messages(entry, max_decompressed) if entry.codec else [entry]
        errors: list[tuple[bool, str]] = []
        for message in members:
            error = _record_error(message, entry, index, rules)
            if error is not None:
                errors.append(error)
            elif not errors:
                records.append(Record(len(records), message.timestamp, message.key, message.value))
            index += 1
        if errors:
            _raise_record_errors(errors)
    for record in records:
        if record.timestamp < NO_TIMESTAMP:
            # Kafka's batch builder throws on these (an unknown server error); the cause is
            # the timestamp, so say so.
            raise InvalidTimestampError(f"invalid negative timestamp {record.timestamp}")
    codec = target_codec(rules.compression_type, source_codec)
    level = None if rules.compression_type == "producer" else rules.compression_level
    batch = bytearray(
        build_batch(records, base_offset=0, compression=codec, compression_level=level)
    )
    if rules.max_message_bytes is not None and len(batch) > rules.max_message_bytes:
        raise RecordTooLargeError(
            f"the converted batch of {len(batch)} bytes exceeds the maximum of "
            f"{rules.max_message_bytes}"
        )
    return UpConverted(batch, parse_batch_header(batch))
