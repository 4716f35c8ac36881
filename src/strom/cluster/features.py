"""Feature versioning (KIP-584) as Kafka's ZooKeeper-mode brokers and controller have it.

A *supported* feature is a name with the range of levels a broker can run at; each broker
advertises its own (ApiVersions v3+, and its /brokers/ids registration in a cluster). A
*finalized* feature is the level the whole cluster runs at, chosen with UpdateFeatures and
kept in one place (the /feature znode in a cluster, the metadata file on a single broker),
with an epoch that grows with every change. A feature that is not finalized runs at level 0.

What Strom supports, and why exactly these (a level is only advertised where Strom behaves as
Kafka does at it):

- `group.version` 0-1. Level 1 is the KIP-848 consumer group protocol, which Strom's group
  coordinator has; at level 0 ConsumerGroupHeartbeat and ConsumerGroupDescribe answer
  UNSUPPORTED_VERSION, as Kafka 4.x's brokers do.
- `share.version` 0-1. Level 1 is share groups (KIP-932) as Kafka 4.1/4.2 have them; at level 0
  the share-group APIs answer UNSUPPORTED_VERSION. Level 2 (dead-letter queues, KIP-1191) is
  not done.

Not supported, so never finalized here: `transaction.version` (level 1 writes flexible
`__transaction_state` records and level 2 is KIP-890 part 2, EndTxn v5 bumping the epoch of
every transaction, neither of which Strom does; a client reading no level stays at 0),
`metadata.version` and `kraft.version` (KRaft only; Kafka's ZooKeeper-mode brokers never
report them), `eligible.leader.replicas.version` (KIP-966) and `streams.version` (KIP-1071).
Kafka 3.9's ZooKeeper-mode brokers support no feature at all; Strom serves these two protocols
beyond Kafka 3.9, so it advertises them.

`plan_updates` is the controller's validation of an UpdateFeatures request (Kafka 3.9's
KafkaController.validateFeatureUpdate): pure, so the single broker and the cluster
controller share it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from strom.protocol.errors import ErrorCode

GROUP_VERSION = "group.version"
SHARE_VERSION = "share.version"
# Reported by KRaft only; Kafka's ZooKeeper-mode brokers drop it from what they finalize.
METADATA_VERSION = "metadata.version"


class VersionRange(NamedTuple):
    min_version: int
    max_version: int

    def covers(self, level: int) -> bool:
        return self.min_version <= level <= self.max_version


SUPPORTED_FEATURES: Mapping[str, VersionRange] = MappingProxyType(
    {
        GROUP_VERSION: VersionRange(0, 1),
        SHARE_VERSION: VersionRange(0, 1),
    }
)


class FeatureIncompatibilityError(Exception):
    """The cluster's finalized features include a feature or level this broker does not
    support: as Kafka's brokers, it must not run."""


@dataclass(frozen=True, slots=True)
class FinalizedFeatures:
    """The cluster-wide feature levels and their epoch (-1: unknown, as when the /feature
    znode is absent or disabled)."""

    levels: Mapping[str, int] = field(default_factory=dict)
    epoch: int = -1

    def level(self, name: str) -> int:
        return self.levels.get(name, 0)


def default_finalized(supported: Mapping[str, VersionRange] = SUPPORTED_FEATURES) -> dict[str, int]:
    """What a cluster starts with when nothing is finalized yet (no /feature znode, a new or
    older metadata file): every supported feature at its highest level, as Kafka's controller
    writes on its first start. Levels of 0 are not written (0 is the absence of a level)."""
    return {name: r.max_version for name, r in supported.items() if r.max_version > 0}


def incompatibilities(
    supported: Mapping[str, VersionRange], finalized: Mapping[str, int]
) -> dict[str, str]:
    """The finalized features `supported` cannot run at, with why (Kafka's
    BrokerFeatures.incompatibleFeatures)."""
    out: dict[str, str] = {}
    for name, level in finalized.items():
        versions = supported.get(name)
        if versions is None:
            out[name] = "unsupported feature"
        elif not versions.covers(level):
            out[name] = (
                f"level {level} is not in the supported range "
                f"{versions.min_version}-{versions.max_version}"
            )
    return out


def check_compatible(supported: Mapping[str, VersionRange], finalized: Mapping[str, int]) -> None:
    problems = incompatibilities(supported, finalized)
    if problems:
        listed = ", ".join(f"{name} ({why})" for name, why in sorted(problems.items()))
        raise FeatureIncompatibilityError(
            f"the cluster's finalized features are incompatible with this broker: {listed}"
        )


# --- registrations ----------------------------------------------------------------------------


def registration_features(supported: Mapping[str, VersionRange]) -> dict[str, dict[str, int]]:
    """The "features" of a /brokers/ids/<id> registration (version 5), as Kafka writes them."""
    return {
        name: {"min_version": r.min_version, "max_version": r.max_version}
        for name, r in sorted(supported.items())
    }


def supported_from_registration(features: Mapping[str, Any]) -> dict[str, VersionRange]:
    """The supported features of another broker's registration; entries that are not two
    non-negative levels with min <= max are left out (that broker supports no such feature)."""
    out: dict[str, VersionRange] = {}
    for name, entry in features.items():
        if not isinstance(entry, Mapping):
            continue
        low, high = entry.get("min_version"), entry.get("max_version")
        if (
            isinstance(low, int)
            and isinstance(high, int)
            and not isinstance(low, bool)
            and not isinstance(high, bool)
            and 0 <= low <= high
        ):
            out[name] = VersionRange(low, high)
    return out


# --- UpdateFeatures -------------------------------------------------------------------------


class UpgradeType(enum.IntEnum):
    """UpdateFeatures v1's UpgradeType; v0's AllowDowngrade maps to UPGRADE/SAFE_DOWNGRADE."""

    UNKNOWN = 0
    UPGRADE = 1
    SAFE_DOWNGRADE = 2
    UNSAFE_DOWNGRADE = 3


@dataclass(frozen=True, slots=True)
class FeatureUpdate:
    feature: str
    level: int
    upgrade_type: UpgradeType

    @property
    def is_delete(self) -> bool:
        """A level below 1 with a downgrade type removes the finalized feature."""
        return self.level < 1 and self.upgrade_type != UpgradeType.UPGRADE

    @classmethod
    def from_request(
        cls, feature: str, level: int, allow_downgrade: bool, upgrade_type: int, version: int
    ) -> FeatureUpdate:
        if version == 0:
            kind = UpgradeType.SAFE_DOWNGRADE if allow_downgrade else UpgradeType.UPGRADE
        else:
            try:
                kind = UpgradeType(upgrade_type)
            except ValueError:
                kind = UpgradeType.UNKNOWN
        return cls(feature, level, kind)


@dataclass(frozen=True, slots=True)
class FeatureResult:
    feature: str
    error_code: ErrorCode
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class UpdatePlan:
    """The finalized levels after the valid updates (the invalid ones change nothing) and one
    result per feature named, in the request's order."""

    target: dict[str, int]
    results: list[FeatureResult]

    def changes(self, existing: Mapping[str, int]) -> bool:
        return self.target != dict(existing)


def plan_updates(
    updates: Iterable[FeatureUpdate],
    existing: Mapping[str, int],
    supported: Mapping[str, VersionRange],
    brokers: Iterable[Mapping[str, VersionRange]],
) -> UpdatePlan:
    """Kafka 3.9's ZooKeeper controller rules: every invalid update is INVALID_REQUEST with
    Kafka's message and leaves its feature as it was; the valid ones are applied together.
    `supported` is the deciding broker's own range, `brokers` the ranges every live broker
    registered (a level none of them may lack). A feature named twice is decided once, by
    its first entry, as Kafka reads the request."""
    targets = dict(existing)
    live = list(brokers)
    results: list[FeatureResult] = []
    seen: set[str] = set()
    for update in updates:
        if update.feature in seen:
            continue
        seen.add(update.feature)
        problem = _problem(update, existing.get(update.feature), supported, live)
        if problem is not None:
            results.append(FeatureResult(update.feature, ErrorCode.INVALID_REQUEST, problem))
            continue
        if update.is_delete:
            targets.pop(update.feature, None)
        else:
            targets[update.feature] = update.level
        results.append(FeatureResult(update.feature, ErrorCode.NONE))
    return UpdatePlan(targets, results)


def _problem(
    update: FeatureUpdate,
    existing: int | None,
    supported: Mapping[str, VersionRange],
    brokers: list[Mapping[str, VersionRange]],
) -> str | None:
    level = update.level
    kind = update.upgrade_type
    if not update.feature:
        return "Feature name can not be empty."
    if kind == UpgradeType.UNKNOWN:
        return "Received unknown upgrade type."
    if update.is_delete:
        return None if existing is not None else "Can not delete non-existing finalized feature."
    if level < 1:
        return (
            f"Can not provide versionLevel: {level} less than 1 without setting the SAFE "
            "downgradeType in the request."
        )
    if existing is not None:
        if level == existing:
            verb = "downgrade" if kind == UpgradeType.SAFE_DOWNGRADE else "upgrade"
            return (
                f"Can not {verb} a finalized feature from existing versionLevel:{existing} to "
                "the same value."
            )
        if level < existing and kind != UpgradeType.SAFE_DOWNGRADE:
            # UNSAFE_DOWNGRADE too: the ZooKeeper controller knows no lossy downgrades.
            return (
                f"Can not downgrade finalized feature from existing versionLevel:{existing} to "
                f"provided versionLevel:{level} without setting the downgradeType to SAFE in "
                "the request."
            )
        if level > existing and kind != UpgradeType.UPGRADE:
            return (
                "When the downgradeType is set to SAFE in the request, the provided "
                f"versionLevel:{level} can not be greater than existing versionLevel:{existing}."
            )
    versions = supported.get(update.feature)
    if versions is None:
        return (
            "Could not apply finalized feature update because the provided feature is not "
            "supported."
        )
    if level < versions.min_version:
        return (
            f"Could not apply finalized feature update because the provided versionLevel:{level} "
            f"is lower than the supported minVersion:{versions.min_version}."
        )
    if level > versions.max_version:
        # Kafka answers this case with the message above, which names the wrong bound.
        return (
            f"Could not apply finalized feature update because the provided versionLevel:{level} "
            f"is higher than the supported maxVersion:{versions.max_version}."
        )
    if any(incompatibilities(broker, {update.feature: level}) for broker in brokers):
        return (
            "Could not apply finalized feature update because brokers were found to have "
            "incompatible versions for the feature."
        )
    return None


# --- what the levels switch on --------------------------------------------------------------


def consumer_protocol_enabled(features: FinalizedFeatures) -> bool:
    """The KIP-848 consumer group protocol (ConsumerGroupHeartbeat, ConsumerGroupDescribe)."""
    return features.level(GROUP_VERSION) >= 1


def share_groups_enabled(features: FinalizedFeatures) -> bool:
    """Share groups (KIP-932): their heartbeat, describe, fetch, acknowledge and offset APIs."""
    return features.level(SHARE_VERSION) >= 1
