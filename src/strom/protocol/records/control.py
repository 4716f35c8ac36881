"""Control records: the transaction markers (commit and abort) written into partitions.

A control record's key is int16 version (0), int16 type (0 abort, 1 commit; Kafka has more
types); an end-transaction marker's value is int16 version (0), int32 coordinator epoch. It is
the only record of a transactional control batch.
"""

from __future__ import annotations

import struct
from typing import Final

from strom.protocol.records.codec import Record, build_batch
from strom.protocol.records.errors import InvalidRecordError

__all__ = ["CONTROL_ABORT", "CONTROL_COMMIT", "build_control_batch", "parse_control_record"]

CONTROL_ABORT: Final = 0
CONTROL_COMMIT: Final = 1

_CONTROL_KEY: Final = struct.Struct(">hh")  # version, type
_END_TXN_VALUE: Final = struct.Struct(">hi")  # version, coordinator epoch


def build_control_batch(
    kind: int,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    base_offset: int,
    timestamp: int,
    partition_leader_epoch: int = -1,
) -> bytes:
    """A transaction marker: a transactional control batch holding one control record.

    Key: int16 version 0, int16 type (0 abort, 1 commit). Value (the end-transaction marker):
    int16 version 0, int32 coordinator epoch. No sequence, CreateTime, uncompressed, as Kafka's
    ``MemoryRecords.withEndTransactionMarker`` writes it.
    """
    if kind not in (CONTROL_ABORT, CONTROL_COMMIT):
        raise ValueError(f"control record type {kind} is not abort (0) or commit (1)")
    record = Record(
        base_offset,
        timestamp,
        _CONTROL_KEY.pack(0, kind),
        _END_TXN_VALUE.pack(0, coordinator_epoch),
    )
    return build_batch(
        [record],
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        is_transactional=True,
        is_control=True,
        partition_leader_epoch=partition_leader_epoch,
    )


def parse_control_record(record: Record) -> tuple[int, int]:
    """``(type, coordinator_epoch)`` of a control record.

    Types other than abort (0) and commit (1) (Kafka also has leader-change and snapshot
    records) have no coordinator epoch; -1 is returned for them. Newer key and value versions
    are read like version 0, as Kafka does.
    """
    key = record.key
    if key is None or len(key) < _CONTROL_KEY.size:
        raise InvalidRecordError("control record key shorter than 4 bytes")
    version, kind = _CONTROL_KEY.unpack_from(key)
    if version < 0:
        raise InvalidRecordError(f"negative control record key version {version}")
    if kind not in (CONTROL_ABORT, CONTROL_COMMIT):
        return kind, -1
    value = record.value
    if value is None or len(value) < _END_TXN_VALUE.size:
        raise InvalidRecordError("end transaction marker value shorter than 6 bytes")
    _, coordinator_epoch = _END_TXN_VALUE.unpack_from(value)
    return kind, coordinator_epoch
