"""Strom's own fields in Kafka's messages: tagged fields with tags from 10000 up.

A flexible message version may carry tagged fields its spec does not name; Kafka's readers
skip a tag they do not know (its size precedes it), and a tagged field equal to its default
is not written at all. So a field added here costs nothing on the wire between Strom and
Kafka, and carries what only Strom brokers exchange between themselves (issue #16: what a
share partition keeps beyond Kafka's share state) or tell Strom's tools.

Each entry names a spec (its "name"), the dotted path of the struct the fields go into
(field names as the spec spells them), and the fields in the spec's own JSON form. They are
added after the specs are merged, marked as appended (declared last in the dataclass, so
positional construction is unchanged), and must be tagged in every version they exist in.
"""

from __future__ import annotations

import copy
from typing import Any

from spec_merge import APPENDED

__all__ = ["STROM_FIELDS", "STROM_MIN_TAG", "add_strom_fields"]

Spec = dict[str, Any]

STROM_MIN_TAG = 10000

# The extension of a share partition's state: strom.coordinator.share.extension's value
# encoding (without a record around it). Null: not carried (a Kafka broker, or a write that
# leaves it as it is); empty: none.
_EXTENSION = {
    "name": "StromExtension",
    "type": "bytes",
    "versions": "0+",
    "taggedVersions": "0+",
    "tag": 10000,
    "nullableVersions": "0+",
    "default": "null",
}
# Records of the share partition waiting for their delivery time (-1: unknown).
_DELAYED = {
    "name": "StromDelayedRecords",
    "type": "int64",
    "versions": "0+",
    "taggedVersions": "0+",
    "tag": 10001,
    "default": "-1",
}

STROM_FIELDS: dict[tuple[str, str], list[Spec]] = {
    ("WriteShareGroupStateRequest", "Topics.Partitions"): [_EXTENSION],
    ("ReadShareGroupStateResponse", "Results.Partitions"): [_EXTENSION],
    ("ReadShareGroupStateSummaryResponse", "Results.Partitions"): [_DELAYED],
    ("DescribeShareGroupOffsetsResponse", "Groups.Topics.Partitions"): [_DELAYED],
}


def add_strom_fields(specs: dict[str, Spec]) -> dict[str, Spec]:
    """`specs` (keyed by file stem) with Strom's fields added; specs not in the set are
    passed over (an older spec set may lack an API)."""
    by_name = {spec["name"]: stem for stem, spec in specs.items()}
    out = dict(specs)
    for (name, path), fields in STROM_FIELDS.items():
        stem = by_name.get(name)
        if stem is None:
            continue
        spec = out[stem] = copy.deepcopy(out[stem])
        struct = _struct(spec, path)
        taken = {f.get("tag") for f in struct if "tag" in f}
        names = {f["name"] for f in struct}
        for raw in fields:
            tag = raw.get("tag")
            if not isinstance(tag, int) or tag < STROM_MIN_TAG or "taggedVersions" not in raw:
                raise ValueError(f"{name}.{path}.{raw['name']}: Strom fields are tagged, 10000+")
            if tag in taken or raw["name"] in names:
                raise ValueError(f"{name}.{path}: {raw['name']} (tag {tag}) is taken")
            struct.append({**copy.deepcopy(raw), APPENDED: True})
    return out


def _struct(spec: Spec, path: str) -> list[Spec]:
    fields: list[Spec] = spec["fields"]
    for part in path.split("."):
        found = next((f for f in fields if f["name"] == part), None)
        if found is None or "fields" not in found:
            raise ValueError(f"{spec['name']}: no struct {path}")
        fields = found["fields"]
    return fields
