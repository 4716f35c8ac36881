"""UpdateFeatures (key 57) and the features of ApiVersions (key 18) on a single broker, which
is its own controller and keeps the finalized levels in its metadata file; what the levels
switch on (group.version: ConsumerGroupHeartbeat and ConsumerGroupDescribe; share.version:
the share-group APIs). The cluster paths are in tests/cluster/test_cluster_features.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from strom.cluster.features import FeatureIncompatibilityError
from strom.cluster.local_metadata import FILE_NAME
from strom.config import BrokerConfig
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.alter_share_group_offsets_request import (
    AlterShareGroupOffsetsRequest,
)
from strom.protocol.messages.api_versions_request import ApiVersionsRequest
from strom.protocol.messages.consumer_group_describe_request import ConsumerGroupDescribeRequest
from strom.protocol.messages.consumer_group_heartbeat_request import (
    ConsumerGroupHeartbeatRequest,
)
from strom.protocol.messages.delete_share_group_offsets_request import (
    DeleteShareGroupOffsetsRequest,
)
from strom.protocol.messages.describe_share_group_offsets_request import (
    DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsRequestGroup,
)
from strom.protocol.messages.share_acknowledge_request import ShareAcknowledgeRequest
from strom.protocol.messages.share_fetch_request import ShareFetchRequest
from strom.protocol.messages.share_group_describe_request import ShareGroupDescribeRequest
from strom.protocol.messages.share_group_heartbeat_request import ShareGroupHeartbeatRequest
from strom.protocol.messages.update_features_request import (
    FeatureUpdateKey,
    UpdateFeaturesRequest,
)
from strom.protocol.messages.update_features_response import UpdateFeaturesResponse
from strom.security.principal import KafkaPrincipal
from strom.server.broker import Broker
from strom.server.context import RequestContext
from strom.server.handlers.api_versions import handle_api_versions
from strom.server.handlers.consumer_group_heartbeat import handle_consumer_group_heartbeat
from strom.server.handlers.group_admin import handle_consumer_group_describe
from strom.server.handlers.share_fetch import handle_share_acknowledge, handle_share_fetch
from strom.server.handlers.share_group import (
    handle_share_group_describe,
    handle_share_group_heartbeat,
)
from strom.server.handlers.share_group_offsets import (
    handle_alter_share_group_offsets,
    handle_delete_share_group_offsets,
    handle_describe_share_group_offsets,
)
from strom.server.handlers.update_features import handle_update_features

GROUP, SHARE = "group.version", "share.version"


def open_broker(data: Path, **extra: str) -> Broker:
    return Broker.open(BrokerConfig.load(None, {"log.dirs": str(data), **extra}))


def close(b: Broker) -> None:
    b.txns.close()
    b.groups.close()
    b.share_state.close()
    b.logs.close()
    b.io.shutdown(wait=True)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = open_broker(tmp_path / "data")
    yield b
    close(b)


def ctx(broker: Broker, api_key: int, version: int, user: str = "ANONYMOUS") -> RequestContext:
    return RequestContext(
        broker,
        api_key,
        version,
        1,
        "test",
        "127.0.0.1:1",
        bytearray(),
        principal=KafkaPrincipal("User", user),
    )


async def answer(result: Any) -> Any:
    return await result if isinstance(result, Awaitable) else result


def now(result: Any) -> Any:
    """A handler's answer that never waits (UpdateFeatures and ApiVersions on one broker)."""
    assert not isinstance(result, Awaitable)
    return result


def update(
    broker: Broker, version: int, *keys: FeatureUpdateKey, validate_only: bool = False
) -> UpdateFeaturesResponse:
    request = UpdateFeaturesRequest(feature_updates=list(keys), validate_only=validate_only)
    response = now(handle_update_features(ctx(broker, 57, version), request))
    assert isinstance(response, UpdateFeaturesResponse)
    return response


def results(response: UpdateFeaturesResponse) -> dict[str, int]:
    assert response.error_code == ErrorCode.NONE
    return {r.feature: r.error_code for r in response.results}


def features(
    broker: Broker, version: int = 4
) -> tuple[dict[str, tuple[int, int]], dict[str, int], int]:
    r = handle_api_versions(ctx(broker, 18, version), ApiVersionsRequest())
    return (
        {f.name: (f.min_version, f.max_version) for f in r.supported_features},
        {
            f.name: f.max_version_level
            for f in r.finalized_features
            if f.min_version_level == f.max_version_level
        },
        r.finalized_features_epoch,
    )


def test_api_versions_reports_features(broker: Broker) -> None:
    assert features(broker, 4) == ({GROUP: (0, 1), SHARE: (0, 1)}, {GROUP: 1, SHARE: 1}, 0)
    # Below v4 a supported feature whose lowest level is 0 is left out (KAFKA-17492).
    assert features(broker, 3) == ({}, {GROUP: 1, SHARE: 1}, 0)


def test_update_features_on_a_single_broker(broker: Broker, tmp_path: Path) -> None:
    # v1: a safe downgrade to 0 deletes the finalized feature; the epoch moves on.
    downgrade = FeatureUpdateKey(feature=GROUP, max_version_level=0, upgrade_type=2)
    assert results(update(broker, 1, downgrade)) == {GROUP: ErrorCode.NONE}
    assert features(broker)[1:] == ({SHARE: 1}, 1)
    # validate_only checks without writing.
    up = FeatureUpdateKey(feature=GROUP, max_version_level=1, upgrade_type=1)
    assert results(update(broker, 1, up, validate_only=True)) == {GROUP: ErrorCode.NONE}
    assert features(broker)[1:] == ({SHARE: 1}, 1)
    # Invalid entries answer INVALID_REQUEST with Kafka's message; the valid one is applied.
    response = update(
        broker,
        1,
        up,
        FeatureUpdateKey(feature="transaction.version", max_version_level=2, upgrade_type=1),
        FeatureUpdateKey(feature=SHARE, max_version_level=1, upgrade_type=1),
    )
    assert results(response) == {
        GROUP: ErrorCode.NONE,
        "transaction.version": ErrorCode.INVALID_REQUEST,
        SHARE: ErrorCode.INVALID_REQUEST,
    }
    by_name = {r.feature: r.error_message for r in response.results}
    assert by_name[SHARE] == (
        "Can not upgrade a finalized feature from existing versionLevel:1 to the same value."
    )
    assert by_name[GROUP] is None
    assert features(broker)[1:] == ({GROUP: 1, SHARE: 1}, 2)
    # v0: AllowDowngrade is a safe downgrade; without it a lower level is refused.
    v0 = FeatureUpdateKey(feature=SHARE, max_version_level=0, allow_downgrade=False)
    assert results(update(broker, 0, v0)) == {SHARE: ErrorCode.INVALID_REQUEST}
    v0.allow_downgrade = True
    assert results(update(broker, 0, v0)) == {SHARE: ErrorCode.NONE}
    assert features(broker)[1:] == ({GROUP: 1}, 3)
    doc = json.loads((tmp_path / "data" / FILE_NAME).read_text())
    assert doc["features"] == {"epoch": 3, "finalized": {GROUP: 1}}


def test_levels_survive_a_restart(tmp_path: Path) -> None:
    b = open_broker(tmp_path / "data")
    try:
        update(b, 1, FeatureUpdateKey(feature=SHARE, max_version_level=0, upgrade_type=3))
    finally:
        close(b)
    b = open_broker(tmp_path / "data")
    try:
        assert features(b)[1:] == ({GROUP: 1}, 1)
    finally:
        close(b)


def test_cluster_authorization(tmp_path: Path) -> None:
    b = open_broker(
        tmp_path / "data",
        **{
            "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
            "super.users": "User:admin",
        },
    )
    try:
        key = FeatureUpdateKey(feature=GROUP, max_version_level=0, upgrade_type=2)
        request = UpdateFeaturesRequest(feature_updates=[key])
        denied = now(handle_update_features(ctx(b, 57, 1, "alice"), request))
        assert denied.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        assert denied.error_message == "Cluster authorization failed."
        assert denied.results == []
        assert features(b)[1:] == ({GROUP: 1, SHARE: 1}, 0)
        allowed = now(handle_update_features(ctx(b, 57, 1, "admin"), request))
        assert results(allowed) == {GROUP: ErrorCode.NONE}
    finally:
        close(b)


def test_a_file_finalizing_unsupported_levels_stops_the_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    close(open_broker(data))
    path = data / FILE_NAME
    doc = json.loads(path.read_text())
    doc["features"] = {"epoch": 7, "finalized": {GROUP: 1, "streams.version": 1}}
    path.write_text(json.dumps(doc))
    with pytest.raises(FeatureIncompatibilityError, match=r"streams\.version"):
        open_broker(data)


def test_group_version_switches_the_consumer_protocol(broker: Broker) -> None:
    async def heartbeat() -> int:
        request = ConsumerGroupHeartbeatRequest(
            group_id="g",
            member_id=str(uuid.uuid4()),
            subscribed_topic_names=["t"],
            rebalance_timeout_ms=30000,
            topic_partitions=[],
        )
        return int(
            (await answer(handle_consumer_group_heartbeat(ctx(broker, 68, 1), request))).error_code
        )

    async def describe() -> list[int]:
        request = ConsumerGroupDescribeRequest(group_ids=["g", "h"])
        response = await answer(handle_consumer_group_describe(ctx(broker, 69, 0), request))
        return [g.error_code for g in response.groups]

    async def run() -> None:
        assert await heartbeat() == ErrorCode.NONE
        assert await describe() != [ErrorCode.UNSUPPORTED_VERSION] * 2
        update(broker, 1, FeatureUpdateKey(feature=GROUP, max_version_level=0, upgrade_type=2))
        assert await heartbeat() == ErrorCode.UNSUPPORTED_VERSION
        assert await describe() == [ErrorCode.UNSUPPORTED_VERSION] * 2
        update(broker, 1, FeatureUpdateKey(feature=GROUP, max_version_level=1, upgrade_type=1))
        assert await heartbeat() == ErrorCode.NONE

    asyncio.run(run())


def test_share_version_switches_share_groups(broker: Broker) -> None:
    member = str(uuid.uuid4())
    requests: dict[str, tuple[Callable[[RequestContext, Any], Any], int, int, Any]] = {
        "heartbeat": (
            handle_share_group_heartbeat,
            76,
            1,
            ShareGroupHeartbeatRequest(
                group_id="s", member_id=member, member_epoch=0, subscribed_topic_names=["t"]
            ),
        ),
        "describe": (
            handle_share_group_describe,
            77,
            1,
            ShareGroupDescribeRequest(group_ids=["s"]),
        ),
        "fetch": (
            handle_share_fetch,
            78,
            1,
            ShareFetchRequest(group_id="s", member_id=member, share_session_epoch=-1),
        ),
        "acknowledge": (
            handle_share_acknowledge,
            79,
            1,
            ShareAcknowledgeRequest(group_id="s", member_id=member, share_session_epoch=-1),
        ),
        "describe offsets": (
            handle_describe_share_group_offsets,
            90,
            1,
            DescribeShareGroupOffsetsRequest(
                groups=[DescribeShareGroupOffsetsRequestGroup(group_id="s")]
            ),
        ),
        "alter offsets": (
            handle_alter_share_group_offsets,
            91,
            0,
            AlterShareGroupOffsetsRequest(group_id="s"),
        ),
        "delete offsets": (
            handle_delete_share_group_offsets,
            92,
            0,
            DeleteShareGroupOffsetsRequest(group_id="s"),
        ),
    }

    async def codes() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for name, (handler, key, version, request) in requests.items():
            response = await answer(handler(ctx(broker, key, version), request))
            groups = getattr(response, "groups", None)
            out[name] = (
                [g.error_code for g in groups] if groups is not None else [response.error_code]
            )
        return out

    async def run() -> None:
        before = await codes()
        assert all(c != [ErrorCode.UNSUPPORTED_VERSION] for c in before.values()), before
        update(broker, 1, FeatureUpdateKey(feature=SHARE, max_version_level=0, upgrade_type=2))
        assert await codes() == {name: [ErrorCode.UNSUPPORTED_VERSION] for name in requests}

    asyncio.run(run())
