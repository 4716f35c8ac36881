"""Feature versioning (KIP-584): what Strom supports, the controller's rules for
UpdateFeatures (Kafka 3.9's ZooKeeper controller: KafkaController.validateFeatureUpdate), and
the /feature znode in Kafka's FeatureZNode format."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strom.cluster.features import (
    GROUP_VERSION,
    SHARE_VERSION,
    SUPPORTED_FEATURES,
    FeatureIncompatibilityError,
    FeatureUpdate,
    FinalizedFeatures,
    UpdatePlan,
    UpgradeType,
    VersionRange,
    check_compatible,
    consumer_protocol_enabled,
    default_finalized,
    incompatibilities,
    plan_updates,
    registration_features,
    share_groups_enabled,
    supported_from_registration,
)
from strom.cluster.zk.feature_znode import DISABLED, ENABLED, FeatureZNode
from strom.cluster.zk.layout import LayoutError
from strom.protocol.errors import ErrorCode

UP, SAFE, UNSAFE, UNKNOWN = (
    UpgradeType.UPGRADE,
    UpgradeType.SAFE_DOWNGRADE,
    UpgradeType.UNSAFE_DOWNGRADE,
    UpgradeType.UNKNOWN,
)


def test_what_strom_supports() -> None:
    # group.version 1 is KIP-848 and share.version 1 KIP-932, both served; nothing of
    # transaction.version (KIP-890), metadata.version or kraft.version (KRaft).
    assert dict(SUPPORTED_FEATURES) == {
        GROUP_VERSION: VersionRange(0, 1),
        SHARE_VERSION: VersionRange(0, 1),
    }
    assert default_finalized() == {GROUP_VERSION: 1, SHARE_VERSION: 1}
    assert default_finalized({"x": VersionRange(0, 0), "y": VersionRange(1, 3)}) == {"y": 3}


def test_levels_switch_protocols() -> None:
    on = FinalizedFeatures({GROUP_VERSION: 1, SHARE_VERSION: 1}, 3)
    assert consumer_protocol_enabled(on) and share_groups_enabled(on)
    off = FinalizedFeatures({}, 4)
    assert not consumer_protocol_enabled(off) and not share_groups_enabled(off)
    assert off.level(GROUP_VERSION) == 0


def test_update_from_request_versions() -> None:
    assert FeatureUpdate.from_request("f", 1, False, 7, 0).upgrade_type == UP
    assert FeatureUpdate.from_request("f", 1, True, 1, 0).upgrade_type == SAFE
    assert FeatureUpdate.from_request("f", 1, True, 1, 1).upgrade_type == UP
    assert FeatureUpdate.from_request("f", 1, False, 3, 1).upgrade_type == UNSAFE
    assert FeatureUpdate.from_request("f", 1, False, 9, 1).upgrade_type == UNKNOWN
    assert FeatureUpdate("f", 0, SAFE).is_delete and FeatureUpdate("f", -1, UNSAFE).is_delete
    assert not FeatureUpdate("f", 0, UP).is_delete


def plan(
    updates: list[FeatureUpdate],
    existing: dict[str, int],
    brokers: Sequence[Mapping[str, VersionRange]] = (),
) -> UpdatePlan:
    return plan_updates(updates, existing, SUPPORTED_FEATURES, brokers)


def only(updates: list[FeatureUpdate], existing: dict[str, int]) -> tuple[ErrorCode, str | None]:
    (result,) = plan(updates, existing).results
    return result.error_code, result.error_message


def test_invalid_updates_answer_invalid_request_with_kafkas_messages() -> None:
    g = GROUP_VERSION
    cases = [
        (FeatureUpdate("", 1, UP), {}, "Feature name can not be empty."),
        (FeatureUpdate(g, 1, UNKNOWN), {}, "Received unknown upgrade type."),
        (FeatureUpdate(g, 0, SAFE), {}, "Can not delete non-existing finalized feature."),
        (
            FeatureUpdate(g, 0, UP),
            {g: 1},
            "Can not provide versionLevel: 0 less than 1 without setting the SAFE "
            "downgradeType in the request.",
        ),
        (
            FeatureUpdate(g, 1, UP),
            {g: 1},
            "Can not upgrade a finalized feature from existing versionLevel:1 to the same value.",
        ),
        (
            FeatureUpdate(g, 1, SAFE),
            {g: 1},
            "Can not downgrade a finalized feature from existing versionLevel:1 to the same value.",
        ),
        (
            FeatureUpdate(g, 1, UP),
            {g: 2},
            "Can not downgrade finalized feature from existing versionLevel:2 to provided "
            "versionLevel:1 without setting the downgradeType to SAFE in the request.",
        ),
        (
            FeatureUpdate(g, 1, UNSAFE),
            {g: 2},
            "Can not downgrade finalized feature from existing versionLevel:2 to provided "
            "versionLevel:1 without setting the downgradeType to SAFE in the request.",
        ),
        (
            FeatureUpdate(g, 3, SAFE),
            {g: 2},
            "When the downgradeType is set to SAFE in the request, the provided "
            "versionLevel:3 can not be greater than existing versionLevel:2.",
        ),
        (
            FeatureUpdate("transaction.version", 2, UP),
            {},
            "Could not apply finalized feature update because the provided feature is not "
            "supported.",
        ),
        (
            FeatureUpdate("metadata.version", 21, UP),
            {},
            "Could not apply finalized feature update because the provided feature is not "
            "supported.",
        ),
        (
            FeatureUpdate(g, 2, UP),
            {g: 1},
            "Could not apply finalized feature update because the provided versionLevel:2 is "
            "higher than the supported maxVersion:1.",
        ),
    ]
    for update, existing, message in cases:
        assert only([update], existing) == (ErrorCode.INVALID_REQUEST, message), update
        assert plan([update], existing).target == existing


def test_below_the_supported_minimum() -> None:
    supported = {"f": VersionRange(2, 4)}
    result = plan_updates([FeatureUpdate("f", 1, UP)], {}, supported, []).results[0]
    assert result.error_message == (
        "Could not apply finalized feature update because the provided versionLevel:1 is "
        "lower than the supported minVersion:2."
    )


def test_valid_updates_are_applied_together() -> None:
    g, s = GROUP_VERSION, SHARE_VERSION
    # Finalize, safe downgrade by deletion (SAFE or UNSAFE with a level below 1).
    assert plan([FeatureUpdate(g, 1, UP)], {}).target == {g: 1}
    assert plan([FeatureUpdate(g, 0, SAFE)], {g: 1, s: 1}).target == {s: 1}
    assert plan([FeatureUpdate(s, -1, UNSAFE)], {g: 1, s: 1}).target == {g: 1}
    # One valid, one invalid: the valid one goes through, each has its result, in order.
    mixed = plan([FeatureUpdate(s, 0, SAFE), FeatureUpdate("nope", 1, UP)], {g: 1, s: 1})
    assert mixed.target == {g: 1}
    assert [(r.feature, r.error_code) for r in mixed.results] == [
        (s, ErrorCode.NONE),
        ("nope", ErrorCode.INVALID_REQUEST),
    ]
    assert mixed.changes({g: 1, s: 1}) and not mixed.changes({g: 1})
    # A feature named twice is decided by its first entry, once.
    twice = plan([FeatureUpdate(g, 1, UP), FeatureUpdate(g, 0, SAFE)], {})
    assert twice.target == {g: 1} and len(twice.results) == 1


def test_every_live_broker_must_support_the_level() -> None:
    old_broker: dict[str, VersionRange] = {}  # registered before feature versioning
    narrow = {GROUP_VERSION: VersionRange(0, 0)}
    for brokers in ([SUPPORTED_FEATURES, old_broker], [narrow]):
        result = plan([FeatureUpdate(GROUP_VERSION, 1, UP)], {}, brokers).results[0]
        assert result.error_code == ErrorCode.INVALID_REQUEST
        assert result.error_message == (
            "Could not apply finalized feature update because brokers were found to have "
            "incompatible versions for the feature."
        )
    # Deleting needs no broker's support.
    deleted = plan([FeatureUpdate(GROUP_VERSION, 0, SAFE)], {GROUP_VERSION: 1}, [old_broker])
    assert deleted.target == {}


@given(
    existing=st.dictionaries(
        st.sampled_from([GROUP_VERSION, SHARE_VERSION, "x"]), st.integers(1, 3)
    ),
    updates=st.lists(
        st.builds(
            FeatureUpdate,
            st.sampled_from([GROUP_VERSION, SHARE_VERSION, "x", ""]),
            st.integers(-2, 3),
            st.sampled_from(list(UpgradeType)),
        ),
        max_size=4,
    ),
)
def test_a_plan_changes_only_what_it_accepted(
    existing: dict[str, int], updates: list[FeatureUpdate]
) -> None:
    result = plan(updates, existing, [SUPPORTED_FEATURES])
    accepted = {r.feature for r in result.results if r.error_code == ErrorCode.NONE}
    assert {r.feature for r in result.results} == {u.feature for u in updates}
    for name in set(existing) | set(result.target):
        if name not in accepted:
            assert result.target.get(name) == existing.get(name)
    # Whatever is newly finalized is within what is supported.
    for name in accepted:
        if name in result.target:
            assert SUPPORTED_FEATURES[name].covers(result.target[name])


def test_incompatibilities() -> None:
    assert incompatibilities(SUPPORTED_FEATURES, {GROUP_VERSION: 1}) == {}
    assert set(incompatibilities(SUPPORTED_FEATURES, {GROUP_VERSION: 2, "x": 1})) == {
        GROUP_VERSION,
        "x",
    }
    check_compatible(SUPPORTED_FEATURES, default_finalized())
    with pytest.raises(FeatureIncompatibilityError, match=r"share\.version"):
        check_compatible(SUPPORTED_FEATURES, {SHARE_VERSION: 2})


def test_registration_features_round_trip() -> None:
    written = registration_features(SUPPORTED_FEATURES)
    assert written == {
        GROUP_VERSION: {"min_version": 0, "max_version": 1},
        SHARE_VERSION: {"min_version": 0, "max_version": 1},
    }
    assert supported_from_registration(json.loads(json.dumps(written))) == SUPPORTED_FEATURES
    junk = {"a": 1, "b": {"min_version": 2, "max_version": 1}, "c": {"min_version": True}}
    assert supported_from_registration(junk) == {}


def test_feature_znode_format() -> None:
    node = FeatureZNode(ENABLED, {GROUP_VERSION: 1, SHARE_VERSION: 1})
    assert json.loads(node.to_json()) == {
        "features": {
            "group.version": {"max_version_level": 1},
            "share.version": {"max_version_level": 1},
        },
        "version": 2,
        "status": 1,
    }
    assert FeatureZNode.from_json(node.to_json()) == node
    # Kafka before 3.3 wrote version 1 with min levels; a KRaft migration may leave
    # metadata.version, which a ZooKeeper-mode broker never runs at.
    v1 = b'{"version":1,"status":1,"features":{"group.version":{"min_version_level":1,"max_version_level":1},"metadata.version":{"min_version_level":1,"max_version_level":21}}}'
    read = FeatureZNode.from_json(v1)
    assert read.version == 1 and read.in_force() == {GROUP_VERSION: 1}
    assert FeatureZNode.from_json(read.to_json()) == read
    disabled = FeatureZNode.from_json(
        b'{"version":2,"status":0,"features":{"x":{"max_version_level":2}}}'
    )
    assert disabled.status == DISABLED and disabled.in_force() == {}
    # Kafka 3.9's ZooKeeper brokers write an empty map.
    assert FeatureZNode.from_json(b'{"features":{},"version":2,"status":1}').in_force() == {}


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"version":3,"status":1,"features":{}}',
        b'{"version":2,"status":2,"features":{}}',
        b'{"version":2,"features":{}}',
        b'{"version":2,"status":1}',
        b'{"version":2,"status":1,"features":{"f":{"max_version_level":0}}}',
        b'{"version":2,"status":1,"features":{"f":{}}}',
        b'{"version":1,"status":1,"features":{"f":{"max_version_level":1}}}',
        b'{"version":1,"status":1,"features":{"f":{"min_version_level":2,"max_version_level":1}}}',
    ],
)
def test_feature_znode_refuses_malformed_data(data: bytes) -> None:
    with pytest.raises(LayoutError):
        FeatureZNode.from_json(data)
