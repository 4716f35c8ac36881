"""A produced v2 batch rewritten in the topic's codec (``compression.type`` other than producer).

Kafka's ``LogValidator`` keeps a produced batch as it came (offsets and leader epoch stamped in
place) when the topic's ``compression.type`` is ``producer`` or names the batch's own codec;
otherwise it builds a new batch in the topic's codec (``uncompressed`` included) at the topic's
level for that codec (``compression.<codec>.level``, KIP-390; a batch already in the topic's
codec is kept whatever level it was written at). :func:`recompress` builds that batch as
Kafka's ``MemoryRecordsBuilder`` does:

- producer id, producer epoch, base sequence and the transactional bit of the produced batch;
- the records' keys, values, headers and timestamps; offsets renumbered 0..n-1 (the log assigns
  the base offset);
- base timestamp the first record's timestamp, max timestamp the largest record timestamp;
- CreateTime (a LogAppendTime topic's append stamps the type and the time, as for any batch),
  no control bit (clients may not write control batches), no delete horizon.

The result is usually of another size, so the caller checks it against ``max.message.bytes``
again, as Kafka does after a conversion.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from strom.protocol.compression import (
    CODEC_GZIP,
    CODEC_LZ4,
    CODEC_NAMES,
    CODEC_NONE,
    CODEC_ZSTD,
    DEFAULT_MAX_DECOMPRESSED,
)
from strom.protocol.records.batch_header import NO_TIMESTAMP, BatchHeader, parse_batch_header
from strom.protocol.records.codec import Record, build_batch, decode_records
from strom.protocol.records.errors import InvalidTimestampError

__all__ = ["TOPIC_CODECS", "Recompressed", "recompress", "topic_codec_level"]

# compression.type values other than "producer" and the codec ids they store with.
TOPIC_CODECS: Final[dict[str, int]] = {"uncompressed": CODEC_NONE} | {
    name: codec for codec, name in CODEC_NAMES.items() if codec != CODEC_NONE
}


def topic_codec_level(codec: int, gzip_level: int, lz4_level: int, zstd_level: int) -> int | None:
    """The topic's level for ``codec`` (None for codecs without levels)."""
    if codec == CODEC_GZIP:
        return gzip_level
    if codec == CODEC_LZ4:
        return lz4_level
    if codec == CODEC_ZSTD:
        return zstd_level
    return None


class Recompressed(NamedTuple):
    """The rebuilt batch (writable, for the log to stamp) and its header."""

    batch: bytearray
    header: BatchHeader


def recompress(
    batch: bytes | bytearray | memoryview,
    header: BatchHeader,
    codec: int,
    level: int | None,
    records: list[Record] | None = None,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
) -> Recompressed:
    """Rebuild the validated produced batch ``batch`` (header ``header``) in ``codec``.

    ``records`` are its decoded records when the caller already has them. Raises a
    :class:`~strom.protocol.records.errors.RecordError` when the records cannot be decoded, and
    INVALID_TIMESTAMP for a record timestamp below -1 (Kafka's builder throws on it).
    """
    if records is None:
        _, records = decode_records(batch, max_decompressed)
    for record in records:
        if record.timestamp < NO_TIMESTAMP:
            raise InvalidTimestampError(f"invalid negative timestamp {record.timestamp}")
    renumbered = [
        Record(index, record.timestamp, record.key, record.value, record.headers)
        for index, record in enumerate(records)
    ]
    built = bytearray(
        build_batch(
            renumbered,
            base_offset=0,
            compression=codec,
            compression_level=level,
            producer_id=header.producer_id,
            producer_epoch=header.producer_epoch,
            base_sequence=header.base_sequence,
            is_transactional=header.is_transactional,
            partition_leader_epoch=header.partition_leader_epoch,
        )
    )
    return Recompressed(built, parse_batch_header(built))
