"""Strom's own fields in Kafka's messages (tools/strom_fields.py): tagged, 10000 up, declared
last, and invisible on the wire while at their defaults."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from strom.protocol.messages.write_share_group_state_request import (
    PartitionData,
    WriteShareGroupStateRequest,
    WriteStateData,
)
from strom.protocol.primitives import Reader

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from spec_merge import APPENDED  # noqa: E402
from strom_fields import STROM_FIELDS, STROM_MIN_TAG, add_strom_fields  # noqa: E402


def _spec(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "request",
        "fields": [
            {
                "name": "Topics",
                "type": "[]T",
                "versions": "0+",
                "fields": [
                    {
                        "name": "Partitions",
                        "type": "[]P",
                        "versions": "0+",
                        "fields": [{"name": "Partition", "type": "int32", "versions": "0+"}],
                    }
                ],
            }
        ],
    }


def test_fields_are_added_tagged_and_appended() -> None:
    specs = {"WriteShareGroupStateRequest": _spec("WriteShareGroupStateRequest")}
    out = add_strom_fields(specs)
    partitions = out["WriteShareGroupStateRequest"]["fields"][0]["fields"][0]["fields"]
    assert [f["name"] for f in partitions] == ["Partition", "StromExtension"]
    assert partitions[1][APPENDED] is True
    # The input is not changed; specs the set lacks are passed over.
    assert len(specs["WriteShareGroupStateRequest"]["fields"][0]["fields"][0]["fields"]) == 1
    assert add_strom_fields({"Other": _spec("Other")}) == {"Other": _spec("Other")}


def test_every_field_is_tagged_from_10000() -> None:
    for fields in STROM_FIELDS.values():
        for f in fields:
            assert f["tag"] >= STROM_MIN_TAG
            assert f["taggedVersions"] == f["versions"]


def test_a_clash_is_refused() -> None:
    spec = _spec("WriteShareGroupStateRequest")
    spec["fields"][0]["fields"][0]["fields"].append(
        {"name": "Other", "type": "int8", "versions": "0+", "taggedVersions": "0+", "tag": 10000}
    )
    with pytest.raises(ValueError, match="taken"):
        add_strom_fields({"W": spec})


def _request(extension: bytes | None) -> WriteShareGroupStateRequest:
    partition = PartitionData(partition=3, state_epoch=1, leader_epoch=2, start_offset=4)
    partition.strom_extension = extension
    return WriteShareGroupStateRequest("g", [WriteStateData(uuid.UUID(int=5), [partition])])


def test_absent_on_the_wire_at_its_default_and_skippable() -> None:
    plain = _request(None).encode(1)
    carried = _request(b"\x00\x00ext").encode(1)
    assert len(carried) > len(plain)
    assert WriteShareGroupStateRequest.decode(carried, 1).topics[0].partitions[0].strom_extension
    # A reader that knows no tag 10000 (Kafka's) skips it: the partition's tagged section
    # is the last thing before the topic's and the request's (empty) ones.
    reader = Reader(carried)
    reader.read_compact_string()
    assert reader.read_compact_array_length() == 1
    reader.read_uuid()
    assert reader.read_compact_array_length() == 1
    assert reader.read_int32() == 3
    reader.read_int32()
    reader.read_int32()
    reader.read_int64()
    reader.read_int32()  # v1: delivery-complete count
    assert reader.read_compact_array_length() == 0
    reader.skip_tagged_fields()
    reader.skip_tagged_fields()
    reader.skip_tagged_fields()
    assert reader.remaining == 0
