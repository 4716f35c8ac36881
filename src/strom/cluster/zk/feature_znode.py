"""`/feature`: the cluster's finalized features (KIP-584), in Kafka's FeatureZNode format.

    {"features":{"group.version":{"max_version_level":1}},"version":2,"status":1}

`status` 1 is enabled (the levels are in force), 0 disabled (Kafka's controller writes that
when inter.broker.protocol.version is below 2.7: the levels are ignored). Version 1 also has a
`min_version_level` per feature (Kafka writes it with inter.broker.protocol.version below 3.3);
both versions are read, version 2 is written. A level below 1 is refused, as by Kafka: a
feature at level 0 is written by leaving it out. The znode's data version is the finalized
features' epoch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from strom.cluster.features import METADATA_VERSION
from strom.cluster.zk.layout import LayoutError

FEATURE = "/feature"
ENABLED = 1
DISABLED = 0
_VERSIONS = (1, 2)


@dataclass(frozen=True, slots=True)
class FeatureZNode:
    status: int = ENABLED
    features: Mapping[str, int] = field(default_factory=dict)
    version: int = 2

    @property
    def enabled(self) -> bool:
        return self.status == ENABLED

    def in_force(self) -> dict[str, int]:
        """The levels a ZooKeeper-mode broker runs at: none while disabled, and never
        `metadata.version` (which only KRaft reads; a migration may have left it here)."""
        if not self.enabled:
            return {}
        return {k: v for k, v in self.features.items() if k != METADATA_VERSION}

    def to_json(self) -> bytes:
        if self.version == 1:
            features: dict[str, dict[str, int]] = {
                k: {"max_version_level": v, "min_version_level": v}
                for k, v in sorted(self.features.items())
            }
        else:
            features = {k: {"max_version_level": v} for k, v in sorted(self.features.items())}
        doc = {"features": features, "version": self.version, "status": self.status}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> FeatureZNode:
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise LayoutError(f"{FEATURE}: not JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise LayoutError(f"{FEATURE}: not a JSON object")
        version = doc.get("version")
        if version not in _VERSIONS or isinstance(version, bool):
            raise LayoutError(f"{FEATURE}: unsupported version {version!r}")
        status = doc.get("status")
        if status not in (ENABLED, DISABLED) or isinstance(status, bool):
            raise LayoutError(f"{FEATURE}: malformed status {status!r}")
        raw = doc.get("features")
        if not isinstance(raw, dict):
            raise LayoutError(f"{FEATURE}: the features map is absent")
        return cls(
            status, {name: _level(name, entry, version) for name, entry in raw.items()}, version
        )


def _level(name: str, entry: Any, version: int) -> int:
    if not isinstance(entry, dict):
        raise LayoutError(f"{FEATURE}: feature {name!r} is not an object")
    high = entry.get("max_version_level")
    if not isinstance(high, int) or isinstance(high, bool):
        raise LayoutError(f"{FEATURE}: max_version_level of {name!r} is absent")
    if version == 1:
        low = entry.get("min_version_level")
        if not isinstance(low, int) or isinstance(low, bool) or low < 1 or high < low:
            raise LayoutError(f"{FEATURE}: bad min_version_level of {name!r}")
    if high < 1:
        raise LayoutError(f"{FEATURE}: max_version_level of {name!r} must be at least 1")
    return high
