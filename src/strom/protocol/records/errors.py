"""Errors raised by malformed or refused record batches, each with its Kafka error code.

CRC, length and truncation problems of a batch are CORRUPT_MESSAGE (2), as in Kafka's
``DefaultRecordBatch.ensureValid``; what Kafka's ``ProduceRequest.validateRecords`` and
``LogValidator.validateBatch`` refuse (a magic other than 2, more than one batch, bad record
counts, control batches from clients) and malformed records inside a batch are INVALID_RECORD
(87); a codec id above 4 is UNSUPPORTED_COMPRESSION_TYPE (76); a batch above the size limit is
MESSAGE_TOO_LARGE (10); a record timestamp outside the topic's bounds is INVALID_TIMESTAMP (32).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CorruptRecordError",
    "InvalidRecordError",
    "InvalidTimestampError",
    "RecordError",
    "RecordTooLargeError",
    "UnsupportedCompressionError",
    "UnsupportedMagicError",
]

# Error codes (plain ints: protocol/errors.py is written separately and not imported here).
_CORRUPT_MESSAGE: Final = 2
_MESSAGE_TOO_LARGE: Final = 10
_INVALID_TIMESTAMP: Final = 32
_UNSUPPORTED_COMPRESSION_TYPE: Final = 76
_INVALID_RECORD: Final = 87


class RecordError(Exception):
    """A batch or record is malformed. ``error_code`` is the Kafka error code to answer with."""

    error_code: int = _CORRUPT_MESSAGE


class CorruptRecordError(RecordError):
    """Bad CRC, impossible lengths, truncated data, undecodable compressed data."""

    error_code = _CORRUPT_MESSAGE


class InvalidRecordError(RecordError):
    """A well-formed batch that Kafka's validation refuses, or malformed records inside one."""

    error_code = _INVALID_RECORD


class InvalidTimestampError(RecordError):
    """A record timestamp Kafka's validation refuses (out of bounds, or LogAppendTime set by the
    producer)."""

    error_code = _INVALID_TIMESTAMP


class UnsupportedMagicError(RecordError):
    """A magic other than 2. Kafka answers INVALID_RECORD for this on Produce v3+."""

    error_code = _INVALID_RECORD


class UnsupportedCompressionError(RecordError):
    """Codec id 5-7."""

    error_code = _UNSUPPORTED_COMPRESSION_TYPE


class RecordTooLargeError(RecordError):
    """The batch is larger than the caller's limit (``message.max.bytes``)."""

    error_code = _MESSAGE_TOO_LARGE
