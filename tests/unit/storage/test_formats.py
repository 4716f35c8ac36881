"""Our files against Kafka's layouts, byte for byte where Kafka defines them."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

from storage_helpers import append, open_log

from strom.storage.checkpoint import read_offsets, write_offsets
from strom.storage.log_config import LogConfig
from strom.storage.partition_metadata import kafka_uuid_string, parse_kafka_uuid


def test_index_entry_layout(tmp_path: Path) -> None:
    plog = open_log(tmp_path, LogConfig(index_interval_bytes=1))
    for i in range(4):
        append(plog, [b"v" * 10], timestamp=100 + i)
    plog.roll()
    append(plog, [b"w"], timestamp=200)
    plog.close()
    directory = tmp_path / "t-0"
    log_bytes = (directory / "00000000000000000000.log").read_bytes()
    positions = []
    pos = 0
    while pos < len(log_bytes):
        positions.append(pos)
        pos += struct.unpack_from(">i", log_bytes, pos + 8)[0] + 12
    # Entry (relative offset, position) for every batch after the first (interval 1 byte).
    index = (directory / "00000000000000000000.index").read_bytes()
    assert index == b"".join(struct.pack(">ii", i, positions[i]) for i in range(1, 4))
    timeindex = (directory / "00000000000000000000.timeindex").read_bytes()
    assert timeindex == b"".join(struct.pack(">qi", 100 + i, i) for i in range(1, 4))
    # The second segment: relative offsets against its own base (4); on close, the final
    # "largest timestamp" entry is written as Kafka does.
    assert (directory / "00000000000000000004.index").read_bytes() == b""
    assert (directory / "00000000000000000004.timeindex").read_bytes() == struct.pack(">qi", 200, 0)


def test_offset_checkpoint_format(tmp_path: Path) -> None:
    path = tmp_path / "recovery-point-offset-checkpoint"
    write_offsets(path, {("b-topic", 1): 42, ("a", 0): 7})
    assert path.read_text() == "0\n2\na 0 7\nb-topic 1 42\n"
    assert read_offsets(path) == {("a", 0): 7, ("b-topic", 1): 42}
    path.write_text("garbage")
    assert read_offsets(path) == {}


def test_kafka_uuid_strings() -> None:
    topic_id = uuid.UUID(bytes=bytes(range(16)))
    assert kafka_uuid_string(topic_id) == "AAECAwQFBgcICQoLDA0ODw"
    assert parse_kafka_uuid("AAECAwQFBgcICQoLDA0ODw") == topic_id
