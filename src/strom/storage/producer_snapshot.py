"""Producer state snapshot files: `<20-digit offset>.snapshot` beside the segments.

Kafka's ProducerSnapshot format, version 1 (so Kafka reads ours and we read Kafka's), big
endian:

     0  version          int16   1
     2  crc              uint32  CRC-32C of every byte from offset 6 to the end
     6  entry count      int32
    10  entries, 46 bytes each:
          producer_id int64, epoch int16, last_sequence int32 (-1: none),
          last_offset int64 (-1: no batch remembered), offset_delta int32 (last offset - first
          offset of that batch, also last - first sequence), timestamp int64 (the producer's
          last timestamp), coordinator_epoch int32, current_txn_first_offset int64 (-1: no
          open transaction)

A snapshot at offset N describes the state after every batch below N. Files are written to
`<name>.tmp` and renamed into place, so a crash never leaves a torn snapshot (recovery.py
unlinks a leftover `.tmp`); a file that fails its checks raises CorruptSnapshotError.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from crc32c import crc32c

from strom.storage.checkpoint import write_atomically
from strom.storage.file_cache import read_file

SNAPSHOT_SUFFIX = ".snapshot"
SNAPSHOT_FILE = re.compile(r"^(\d{20})\.snapshot$")
SNAPSHOT_VERSION = 1
_PREFIX = struct.Struct(">hIi")  # version, crc, entry count
_ENTRY = struct.Struct(">qhiqiqiq")
_CRC_FROM = 6  # the CRC covers everything after the version and itself
assert _ENTRY.size == 46


class CorruptSnapshotError(Exception):
    pass


class SnapshotRow(NamedTuple):
    producer_id: int
    epoch: int
    last_sequence: int
    last_offset: int
    offset_delta: int
    timestamp: int
    coordinator_epoch: int
    current_txn_first_offset: int


def snapshot_path(directory: Path, offset: int) -> Path:
    return directory / f"{offset:020d}{SNAPSHOT_SUFFIX}"


def write_snapshot(path: Path, rows: Sequence[SnapshotRow], sync: bool) -> None:
    data = bytearray(_PREFIX.pack(SNAPSHOT_VERSION, 0, len(rows)))
    for row in rows:
        data += _ENTRY.pack(*row)
    struct.pack_into(">I", data, 2, crc32c(memoryview(data)[_CRC_FROM:]))
    write_atomically(path, bytes(data), sync=sync)


def read_snapshot(path: Path) -> list[SnapshotRow]:
    data = read_file(path)
    if len(data) < _PREFIX.size:
        raise CorruptSnapshotError(f"{path}: {len(data)} bytes is too short for a snapshot")
    version, crc, count = _PREFIX.unpack_from(data)
    if version != SNAPSHOT_VERSION:
        raise CorruptSnapshotError(f"{path}: unknown snapshot version {version}")
    if crc32c(memoryview(data)[_CRC_FROM:]) != crc:
        raise CorruptSnapshotError(f"{path}: CRC mismatch")
    if count < 0 or _PREFIX.size + count * _ENTRY.size != len(data):
        raise CorruptSnapshotError(f"{path}: {count} entries do not fill {len(data)} bytes")
    return [
        SnapshotRow._make(_ENTRY.unpack_from(data, _PREFIX.size + i * _ENTRY.size))
        for i in range(count)
    ]
