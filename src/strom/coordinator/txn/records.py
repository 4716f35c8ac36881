"""The records of `__transaction_state`, in Kafka's own key/value format.

Key: int16 key version 0, then TransactionLogKey (the transactional id). Value: int16 value
version, then TransactionLogValue; a record with no value (tombstone) removes the id, and lets
compaction drop it. The partition list is null for Empty, as Kafka writes it.

Values are written at version 0, the one every Kafka broker reads, unless the id carries a
previous producer id (after its epochs ran out and it got a new producer id), which only
version 1 can hold (a tagged field).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from strom.coordinator.txn.generated.transaction_log_key import TransactionLogKey
from strom.coordinator.txn.generated.transaction_log_value import (
    PartitionsSchema,
    TransactionLogValue,
)
from strom.coordinator.txn.metadata import NO_PRODUCER_ID, TopicPartition, TxnSnapshot, TxnState
from strom.protocol.errors import ProtocolError

__all__ = ["TxnRecord", "decode", "tombstone", "transaction_record"]

_INT16 = struct.Struct(">h")
KEY_VERSION = 0


@dataclass(frozen=True, slots=True)
class TxnRecord:
    """One record for `__transaction_state`: key and value bytes, value None for a tombstone."""

    key: bytes
    value: bytes | None


def _key(transactional_id: str) -> bytes:
    return _INT16.pack(KEY_VERSION) + TransactionLogKey(transactional_id).encode(KEY_VERSION)


def _partition_list(partitions: frozenset[TopicPartition]) -> list[PartitionsSchema]:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(partitions):
        by_topic.setdefault(topic, []).append(partition)
    return [PartitionsSchema(topic, ids) for topic, ids in by_topic.items()]


def transaction_record(transactional_id: str, snap: TxnSnapshot) -> TxnRecord:
    if snap.state == TxnState.EMPTY and snap.partitions:
        raise ValueError(f"an Empty transaction has no partitions: {snap}")
    value = TransactionLogValue(
        producer_id=snap.producer_id,
        previous_producer_id=snap.previous_producer_id,
        producer_epoch=snap.producer_epoch,
        transaction_timeout_ms=snap.timeout_ms,
        transaction_status=int(snap.state),
        transaction_partitions=(
            None if snap.state == TxnState.EMPTY else _partition_list(snap.partitions)
        ),
        transaction_last_update_timestamp_ms=snap.last_update_ms,
        transaction_start_timestamp_ms=snap.start_ms,
    )
    version = 0 if snap.previous_producer_id == NO_PRODUCER_ID else 1
    return TxnRecord(_key(transactional_id), _INT16.pack(version) + value.encode(version))


def tombstone(transactional_id: str) -> TxnRecord:
    return TxnRecord(_key(transactional_id), None)


def decode(record: TxnRecord) -> tuple[str, TxnSnapshot | None] | None:
    """(transactional id, snapshot or None for a tombstone); None for an unknown key version.

    Raises ProtocolError for bytes that do not parse or an unknown state id.
    """
    if len(record.key) < 2:
        raise ProtocolError("transaction record key shorter than its version")
    (key_version,) = _INT16.unpack_from(record.key)
    if key_version != KEY_VERSION:
        return None  # a record type of a newer Kafka: skipped, as Kafka skips unknown keys
    key = TransactionLogKey.decode(memoryview(record.key)[2:], key_version)
    if record.value is None:
        return key.transactional_id, None
    if len(record.value) < 2:
        raise ProtocolError("transaction record value shorter than its version")
    (value_version,) = _INT16.unpack_from(record.value)
    value = TransactionLogValue.decode(memoryview(record.value)[2:], value_version)
    try:
        state = TxnState(value.transaction_status)
    except ValueError:
        raise ProtocolError(f"unknown transaction state id {value.transaction_status}") from None
    partitions: frozenset[TopicPartition] = frozenset()
    if state != TxnState.EMPTY and value.transaction_partitions is not None:
        partitions = frozenset(
            (p.topic, i) for p in value.transaction_partitions for i in p.partition_ids
        )
    return key.transactional_id, TxnSnapshot(
        producer_id=value.producer_id,
        producer_epoch=value.producer_epoch,
        timeout_ms=value.transaction_timeout_ms,
        state=state,
        partitions=partitions,
        start_ms=value.transaction_start_timestamp_ms,
        last_update_ms=value.transaction_last_update_timestamp_ms,
        previous_producer_id=value.previous_producer_id,
    )
