"""Merge two sets of Kafka's JSON message specs into one, version by version.

Kafka 4.0 dropped the oldest versions of many APIs (KIP-896) and later releases added new
ones. Strom serves the versions Kafka 3.9 serves as well as the newer ones, so its codecs
are generated from a merge of the older spec set ("legacy", the versions Kafka 3.9 defines)
and the current one:

- an API's versions run from the lower of the two minimums to the higher of the two
  maximums;
- every version up to the legacy set's newest one is laid out exactly as the legacy spec
  lays it out (fields the current spec added to those versions, e.g. a field a removed
  early-access version never had, are left out of them);
- every newer version is laid out as the current spec lays it out.

A field both sets name is one field whose versions (and nullable and tagged versions) are
the legacy set's up to the legacy maximum and the current set's above it; the union must be
one contiguous range, which is checked. Fields the sets name differently for the same wire
slot are matched through RENAMED_FIELDS. Requests and responses are paired by API key, so an
API the current set renamed (key 74) is one API with the current name.

Coordinator records (`"type": "coordinator-key"` / `"coordinator-value"`) are turned back
into the data specs the generator knows, see `coordinator_record_as_data`.
"""

from __future__ import annotations

import copy
from typing import Any

MAXV = 0x7FFF

# Marks a field the legacy spec does not have. The generated dataclass declares such fields
# after the others, so that code building a message positionally keeps working while the
# wire order follows the spec.
APPENDED = "_strom_appended"

Range = tuple[int, int]
Spec = dict[str, Any]

# (current spec name, dotted field path in the current spec) -> the name the merged spec
# uses. Where a field was only renamed, Strom keeps the name its handlers already use.
RENAMED_FIELDS: dict[tuple[str, str], str] = {
    ("TxnOffsetCommitRequest", "GenerationIdOrMemberEpoch"): "GenerationId",
    ("VoteRequest", "Topics.Partitions.ReplicaEpoch"): "CandidateEpoch",
    ("VoteRequest", "Topics.Partitions.ReplicaId"): "CandidateId",
    ("VoteRequest", "Topics.Partitions.ReplicaDirectoryId"): "CandidateDirectoryId",
}

# (legacy spec name, dotted field path in the legacy spec) -> (name, type) in the current
# spec, for an API the current set renamed as a whole: the merged spec takes the current names.
ADOPTED_FIELDS: dict[tuple[str, str], tuple[str, str | None]] = {
    ("ListClientMetricsResourcesResponse", "ClientMetricsResources"): (
        "ConfigResources",
        "[]ConfigResource",
    ),
    ("ListClientMetricsResourcesResponse", "ClientMetricsResources.Name"): (
        "ResourceName",
        None,
    ),
}


def parse_range(text: object) -> Range | None:
    if text is None:
        return None
    s = str(text).strip()
    if s in ("", "none"):
        return None
    if s.endswith("+"):
        return (int(s[:-1]), MAXV)
    if "-" in s:
        lo, hi = s.split("-", 1)
        return (int(lo), int(hi))
    return (int(s), int(s))


def format_range(rng: Range) -> str:
    lo, hi = rng
    if hi == MAXV:
        return f"{lo}+"
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _clip(rng: Range | None, lo: int, hi: int) -> Range | None:
    if rng is None:
        return None
    a, b = max(rng[0], lo), min(rng[1], hi)
    return (a, b) if a <= b else None


def _join(old: Range | None, new: Range | None, where: str) -> Range | None:
    if old is None:
        return new
    if new is None:
        return old
    if old[1] + 1 != new[0]:
        raise ValueError(f"{where}: versions {old} and {new} do not join into one range")
    return (old[0], new[1])


def _field_versions(raw: dict[str, Any]) -> object:
    # As Kafka's generator: a field without "versions" exists in its taggedVersions.
    return raw.get("versions", raw.get("taggedVersions"))


class _Merger:
    def __init__(self, name: str, legacy_max: int) -> None:
        self.name = name
        self.legacy_max = legacy_max

    def piece(self, old: object, new: object, where: str) -> Range | None:
        return _join(
            _clip(parse_range(old), 0, self.legacy_max),
            _clip(parse_range(new), self.legacy_max + 1, MAXV),
            where,
        )

    def merge_field(
        self, old: dict[str, Any] | None, new: dict[str, Any] | None, where: str
    ) -> dict[str, Any] | None:
        base = copy.deepcopy(new if new is not None else old)
        assert base is not None
        o = old or {}
        n = new or {}
        versions = self.piece(_field_versions(o), _field_versions(n), where)
        if versions is None:
            return None
        if old is not None and new is not None:
            for key in ("type", "default", "mapKey"):
                if key == "type" and o.get(key) != n.get(key):
                    raise ValueError(f"{where}: type {o.get(key)} became {n.get(key)}")
                if key == "default" and str(o.get(key)) != str(n.get(key)):
                    raise ValueError(f"{where}: default {o.get(key)} became {n.get(key)}")
        base["versions"] = format_range(versions)
        for key in ("nullableVersions", "taggedVersions"):
            rng = self.piece(o.get(key), n.get(key), f"{where} {key}")
            if rng is None:
                base.pop(key, None)
            else:
                base[key] = format_range(rng)
        if "taggedVersions" in base:
            tags = {int(x["tag"]) for x in (o, n) if "tag" in x}
            if len(tags) != 1:
                raise ValueError(f"{where}: tags {tags} disagree")
            base["tag"] = tags.pop()
        else:
            base.pop("tag", None)
        if "fields" in o or "fields" in n:
            base["fields"] = self.merge_fields(o.get("fields", []), n.get("fields", []), where)
        return base

    def merge_fields(
        self, old: list[dict[str, Any]], new: list[dict[str, Any]], where: str
    ) -> list[dict[str, Any]]:
        old_by_name = {f["name"]: f for f in old}
        new_names = {f["name"] for f in new}
        out: list[dict[str, Any]] = []
        pending = [f for f in old]

        def flush_until(name: str | None) -> None:
            # Fields only the legacy spec names keep their place before the next shared one.
            while pending:
                head = pending[0]
                if name is not None and head["name"] == name:
                    pending.pop(0)
                    return
                if head["name"] in new_names:
                    if name is None:
                        pending.pop(0)
                        continue
                    return
                pending.pop(0)
                merged = self.merge_field(head, None, f"{where}.{head['name']}")
                if merged is not None:
                    out.append(merged)

        for f in new:
            shared = f["name"] in old_by_name
            if shared:
                flush_until(f["name"])
            merged = self.merge_field(
                old_by_name.get(f["name"]), f, f"{where}.{f['name']}".lstrip(".")
            )
            if merged is not None:
                if not shared:
                    merged[APPENDED] = True
                out.append(merged)
        flush_until(None)
        names = [f["name"] for f in out]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}{where}: fields out of order between the spec sets")
        return out


def _rename(fields: list[dict[str, Any]], table: dict[str, tuple[str, str | None]]) -> None:
    def walk(items: list[dict[str, Any]], prefix: str) -> None:
        for f in items:
            path = prefix + f["name"]
            if "fields" in f:
                walk(f["fields"], path + ".")
            target = table.get(path)
            if target is not None:
                f["name"] = target[0]
                if target[1] is not None:
                    f["type"] = target[1]

    walk(fields, "")


def merge_spec(legacy: Spec, current: Spec) -> Spec:
    """One spec with the legacy versions laid out as `legacy` and newer ones as `current`."""
    legacy = copy.deepcopy(legacy)
    current = copy.deepcopy(current)
    name = str(current["name"])
    _rename(
        current["fields"],
        {path: (new, None) for (spec, path), new in RENAMED_FIELDS.items() if spec == name},
    )
    _rename(
        legacy["fields"],
        {path: target for (spec, path), target in ADOPTED_FIELDS.items() if spec == legacy["name"]},
    )
    lv = parse_range(legacy["validVersions"])
    cv = parse_range(current["validVersions"])
    assert lv is not None and cv is not None, name
    if str(legacy.get("flexibleVersions")) != str(current.get("flexibleVersions")):
        raise ValueError(f"{name}: the spec sets disagree on flexibleVersions")
    merger = _Merger(name, lv[1])
    out = copy.deepcopy(current)
    out["validVersions"] = format_range((min(lv[0], cv[0]), max(lv[1], cv[1])))
    if "deprecatedVersions" in legacy:
        out["deprecatedVersions"] = legacy["deprecatedVersions"]
    out["fields"] = merger.merge_fields(legacy["fields"], current["fields"], "")
    old_common = {c["name"]: c for c in legacy.get("commonStructs") or []}
    new_common = {c["name"]: c for c in current.get("commonStructs") or []}
    commons = []
    for cname in [*new_common, *(c for c in old_common if c not in new_common)]:
        struct = copy.deepcopy(new_common.get(cname) or old_common[cname])
        struct["fields"] = merger.merge_fields(
            old_common.get(cname, {}).get("fields", []),
            new_common.get(cname, {}).get("fields", []),
            f"#{cname}",
        )
        commons.append(struct)
    if commons:
        out["commonStructs"] = commons
    return out


def _pair_key(spec: Spec) -> tuple[str, object]:
    kind = str(spec["type"])
    if kind in ("request", "response"):
        return (kind, int(spec["apiKey"]))
    return (kind, spec["name"])


def merge_spec_sets(legacy: dict[str, Spec], current: dict[str, Spec]) -> dict[str, Spec]:
    """Merge two sets keyed by file stem; the result is keyed by the current set's stems."""
    legacy_by_key = {_pair_key(s): s for s in legacy.values()}
    current_keys = {_pair_key(s) for s in current.values()}
    out: dict[str, Spec] = {}
    for stem, spec in current.items():
        old = legacy_by_key.get(_pair_key(spec))
        out[stem] = spec if old is None else merge_spec(old, spec)
    for stem, spec in legacy.items():
        if _pair_key(spec) not in current_keys:
            out[stem] = spec
    return out


def coordinator_record_as_data(spec: Spec) -> Spec:
    """A coordinator record schema as the data spec it used to be.

    On disk a record key starts with an int16 that is the record type (the schema's
    "apiKey"); older schemas spelled that as the key's version, and Strom's record codecs
    encode a key at the version equal to its record type. So a key schema's version 0 becomes
    version <apiKey>; values keep their versions.
    """
    kind = spec.get("type")
    if kind not in ("coordinator-key", "coordinator-value"):
        return spec
    out = copy.deepcopy(spec)
    out["type"] = "data"
    record_type = int(out.pop("apiKey"))
    if kind == "coordinator-key":
        if parse_range(out["validVersions"]) != (0, 0):
            raise ValueError(f"{spec['name']}: a key schema has only version 0")
        out["validVersions"] = str(record_type)

        def shift(fields: list[dict[str, Any]]) -> None:
            for f in fields:
                for key in ("versions", "nullableVersions", "taggedVersions"):
                    rng = parse_range(f.get(key))
                    if rng is not None:
                        lo = record_type if rng[0] == 0 else rng[0]
                        hi = rng[1] if rng[1] == MAXV else max(rng[1], record_type)
                        f[key] = format_range((lo, hi))
                shift(f.get("fields", []))

        shift(out["fields"])
    return out
