"""Feature versioning (KIP-584) on a single `strom serve`: kafka-python's describe_features
(ApiVersions v3+) and update_features (UpdateFeatures, sent to the controller Metadata names:
the broker itself), what the levels switch on for real clients (group.version 0: librdkafka's
KIP-848 consumer stops with Kafka's fatal error while classic groups go on; back at 1 it
consumes), the levels across a restart, and the answers on the wire at every version."""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import confluent_kafka as ck
import kafka.errors as kerr
import pytest
from kafka.admin import KafkaAdminClient

from strom.protocol.errors import ErrorCode
from strom.protocol.framing import decode_response, encode_request
from strom.protocol.messages.api_versions_request import ApiVersionsRequest
from strom.protocol.messages.update_features_request import (
    FeatureUpdateKey,
    UpdateFeaturesRequest,
)

from .broker_process import BrokerProcess
from .clients import DEADLINE_S
from .conftest import BrokerFactory
from .kafka_wire import recv_frame

pytestmark = pytest.mark.integration

GROUP, SHARE = "group.version", "share.version"


def on_wire(broker: BrokerProcess, api_key: int, version: int, message: Any) -> Any:
    frame = b"".join(bytes(c) for c in encode_request(api_key, version, 7, "wire", message))
    with socket.create_connection((broker.host, broker.port), timeout=DEADLINE_S) as sock:
        sock.sendall(frame)
        correlation_id, response = decode_response(api_key, version, recv_frame(sock))
    assert correlation_id == 7
    return response


def admin(broker: BrokerProcess) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)


def produce(broker: BrokerProcess, topic: str, n: int) -> None:
    producer = ck.Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(n):
        producer.produce(topic, value=str(i).encode())
    assert producer.flush(DEADLINE_S) == 0


def consume(broker: BrokerProcess, topic: str, conf: dict[str, str], n: int) -> list[Any]:
    """Up to `n` records through a group member; stops at the first error (returned)."""
    consumer = ck.Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            **conf,
        }
    )
    got: list[Any] = []
    try:
        consumer.subscribe([topic])
        end = time.monotonic() + DEADLINE_S
        while len(got) < n and time.monotonic() < end:
            m = consumer.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                got.append(m.error())
                break
            got.append(m.value())
    finally:
        consumer.close()
    return got


def test_describe_and_update_features_with_kafka_python(
    broker_factory: BrokerFactory, topic: str
) -> None:
    b = broker_factory(**{"group.initial.rebalance.delay.ms": 0})
    a = admin(b)
    try:
        assert a.describe_features() == {
            GROUP: {"supported": (0, 1), "finalized": (1, 1), "finalized_epoch": 0},
            SHARE: {"supported": (0, 1), "finalized": (1, 1), "finalized_epoch": 0},
        }
        produce(b, topic, 5)
        assert consume(b, topic, {"group.protocol": "consumer"}, 5) == [
            b"0",
            b"1",
            b"2",
            b"3",
            b"4",
        ]

        # group.version 0: no KIP-848 consumer protocol, as Kafka 4.x.
        assert a.update_features({GROUP: ("SAFE_DOWNGRADE", 0)}) == {GROUP: "OK"}
        described = a.describe_features()
        assert described[GROUP] == {"supported": (0, 1)}
        assert described[SHARE]["finalized_epoch"] == 1
        (error,) = consume(b, topic, {"group.protocol": "consumer"}, 5)
        assert error.code() == ck.KafkaError._FATAL
        assert (
            "ConsumerGroupHeartbeat fatal error: Broker: API version not supported" in error.str()
        )
        assert len(consume(b, topic, {}, 5)) == 5  # classic groups are not concerned

        # Refusals come per feature with Kafka's messages.
        refused = a.update_features({GROUP: 2, "transaction.version": 2, SHARE: 1})
        assert refused[GROUP].startswith("[Error 42] InvalidRequestError")
        assert "supported maxVersion:1" in refused[GROUP]
        assert "provided feature is not supported" in refused["transaction.version"]
        assert "to the same value" in refused[SHARE]
        # validate_only (v1) checks and writes nothing.
        assert a.update_features({GROUP: 1}, validate_only=True) == {GROUP: "OK"}
        assert "finalized" not in a.describe_features()[GROUP]

        assert a.update_features({GROUP: 1}) == {GROUP: "OK"}
        assert consume(b, topic, {"group.protocol": "consumer"}, 5) == [
            b"0",
            b"1",
            b"2",
            b"3",
            b"4",
        ]
        assert a.update_features({SHARE: ("UNSAFE_DOWNGRADE", 0)}) == {SHARE: "OK"}
    finally:
        a.close()

    b.restart()
    b.wait_ready()
    a = admin(b)
    try:
        assert a.describe_features() == {
            GROUP: {"supported": (0, 1), "finalized": (1, 1), "finalized_epoch": 3},
            SHARE: {"supported": (0, 1)},
        }
    finally:
        a.close()


def test_features_on_the_wire(broker: BrokerProcess) -> None:
    # ApiVersions: v4 lists the supported features whose lowest level is 0, v3 must not.
    for version, supported in ((4, {GROUP: (0, 1), SHARE: (0, 1)}), (3, {})):
        r = on_wire(broker, 18, version, ApiVersionsRequest("wire", "1"))
        assert {f.name: (f.min_version, f.max_version) for f in r.supported_features} == supported
        assert {
            (f.name, f.min_version_level, f.max_version_level) for f in r.finalized_features
        } == {
            (GROUP, 1, 1),
            (SHARE, 1, 1),
        }
        assert r.finalized_features_epoch == 0 and not r.zk_migration_ready
    assert (
        next(
            k for k in on_wire(broker, 18, 4, ApiVersionsRequest()).api_keys if k.api_key == 57
        ).max_version
        == 1
    )

    # UpdateFeatures v0: AllowDowngrade is the only downgrade there is.
    v0 = UpdateFeaturesRequest(
        feature_updates=[
            FeatureUpdateKey(feature=SHARE, max_version_level=0, allow_downgrade=False)
        ]
    )
    r = on_wire(broker, 57, 0, v0)
    assert (r.error_code, [(x.feature, x.error_code) for x in r.results]) == (
        0,
        [(SHARE, ErrorCode.INVALID_REQUEST)],
    )
    v0.feature_updates[0].allow_downgrade = True
    assert [x.error_code for x in on_wire(broker, 57, 0, v0).results] == [0]
    # v1: an unknown upgrade type, deleting what is not finalized, validate_only.
    v1 = UpdateFeaturesRequest(
        feature_updates=[
            FeatureUpdateKey(feature=GROUP, max_version_level=1, upgrade_type=9),
            FeatureUpdateKey(feature=SHARE, max_version_level=0, upgrade_type=2),
            FeatureUpdateKey(feature="", max_version_level=1, upgrade_type=1),
        ],
        validate_only=True,
    )
    r = on_wire(broker, 57, 1, v1)
    assert [(x.feature, x.error_code, x.error_message) for x in r.results] == [
        (GROUP, ErrorCode.INVALID_REQUEST, "Received unknown upgrade type."),
        (SHARE, ErrorCode.INVALID_REQUEST, "Can not delete non-existing finalized feature."),
        ("", ErrorCode.INVALID_REQUEST, "Feature name can not be empty."),
    ]
    r = on_wire(broker, 18, 4, ApiVersionsRequest())
    assert ([f.name for f in r.finalized_features], r.finalized_features_epoch) == ([GROUP], 1)


def test_update_features_needs_alter_on_the_cluster(broker_factory: BrokerFactory) -> None:
    b = broker_factory(
        **{
            "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
            "super.users": "User:admin",
        }
    )
    a = admin(b)
    try:
        with pytest.raises(kerr.ClusterAuthorizationFailedError):
            a.update_features({GROUP: ("SAFE_DOWNGRADE", 0)})
        # Describing needs nothing: it is ApiVersions.
        assert a.describe_features()[GROUP]["finalized"] == (1, 1)
    finally:
        a.close()
