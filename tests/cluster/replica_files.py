"""A replica's records as its segment files hold them, for comparing replicas after a stop.

Reads the `.log` files of a partition directory in base-offset order and decodes every batch:
(offset, partition leader epoch, value) per record, control batches included (their value is
the control record's). Only for stopped brokers: a running broker may be writing.
"""

from __future__ import annotations

from pathlib import Path

from strom.protocol.records.batch_header import iter_batch_headers
from strom.protocol.records.codec import decode_records

ReplicaRecord = tuple[int, int, bytes | None]  # (offset, partition leader epoch, value)


def replica_records(partition_dir: Path) -> list[ReplicaRecord]:
    records: list[ReplicaRecord] = []
    for segment in sorted(partition_dir.glob("*.log"), key=lambda f: int(f.stem)):
        data = segment.read_bytes()
        end = 0
        for position, header in iter_batch_headers(data):
            _, decoded = decode_records(memoryview(data)[position : position + header.size])
            records.extend((r.offset, header.partition_leader_epoch, r.value) for r in decoded)
            end = position + header.size
        assert end == len(data), f"{segment}: {len(data) - end} bytes past the last whole batch"
    return records
