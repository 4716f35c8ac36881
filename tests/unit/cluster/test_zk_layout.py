"""Znode payload codecs: round trips and data as Kafka's ZooKeeper mode writes it."""

from __future__ import annotations

import json
import uuid

import pytest

from strom.cluster.zk import layout as L
from strom.cluster.zk.layout import (
    BrokerRegistration,
    ControllerRegistration,
    Endpoint,
    EntityConfig,
    LayoutError,
    PartitionState,
    ProducerIdBlock,
    TopicAssignment,
    TopicPartition,
)


def test_paths() -> None:
    tp = TopicPartition("orders", 3)
    assert L.broker_path(2) == "/brokers/ids/2"
    assert L.partition_state_path(tp) == "/brokers/topics/orders/partitions/3/state"
    assert L.topic_config_path("orders") == "/config/topics/orders"
    assert L.broker_config_path(None) == "/config/brokers/<default>"
    assert L.broker_config_path(7) == "/config/brokers/7"
    assert L.consumer_offset_path("g", "orders", 3) == "/consumers/g/offsets/orders/3"
    # Kafka puts the group id into the path as it is: a "/" makes it deeper.
    assert L.consumer_offset_path("a/b", "orders", 0) == "/consumers/a/b/offsets/orders/0"
    assert L.delete_topic_path("x") == "/admin/delete_topics/x"


def test_decodes_what_kafka_writes() -> None:
    # Captured from Kafka 3.x clusters running in ZooKeeper mode.
    broker = BrokerRegistration.from_json(
        3,
        b'{"features":{},"listener_security_protocol_map":{"INTERNAL":"PLAINTEXT",'
        b'"EXTERNAL":"SSL"},"endpoints":["INTERNAL://kafka3:29092","EXTERNAL://kafka3:9092"],'
        b'"jmx_port":-1,"port":29092,"host":"kafka3","version":5,"timestamp":"1731163180710"}',
    )
    assert broker.endpoints == (
        Endpoint("INTERNAL", "kafka3", 29092, "PLAINTEXT"),
        Endpoint("EXTERNAL", "kafka3", 9092, "SSL"),
    )
    assert broker.rack is None and broker.timestamp_ms == 1731163180710
    controller = ControllerRegistration.from_json(
        b'{"version":2,"brokerid":2,"timestamp":"1723447688383","kraftControllerEpoch":-1}'
    )
    assert controller == ControllerRegistration(2, 1723447688383, -1)
    topic = TopicAssignment.from_json(
        "test",
        b'{"removing_replicas":{},"partitions":{"0":[0],"1":[1,0]},'
        b'"topic_id":"ZOLr9CLNQjSW70hyIHx6BQ","adding_replicas":{},"version":3}',
    )
    assert topic.partitions == {0: (0,), 1: (1, 0)}
    assert topic.topic_id is not None
    state = PartitionState.from_json(
        b'{"controller_epoch":1,"leader":1,"version":1,"leader_epoch":0,"isr":[1,2]}'
    )
    assert state == PartitionState(1, 0, (1, 2), 1)
    assert L.decode_cluster_id(b'{"version":"1","id":"Sfr7YvlkRHSHrmSrwq9mug"}') == (
        "Sfr7YvlkRHSHrmSrwq9mug"
    )
    block = ProducerIdBlock.from_json(
        b'{"version":1,"broker":0,"block_start":"1000","block_end":"1999"}'
    )
    assert block == ProducerIdBlock(0, 1000, 1999)


def test_encodings_match_kafka_field_types() -> None:
    reg = BrokerRegistration(
        1,
        (Endpoint("SSL", "::1", 9093, "SSL"), Endpoint("PLAINTEXT", "h", 9092)),
        rack="r1",
        timestamp_ms=5,
    )
    doc = json.loads(reg.to_json())
    assert doc["version"] == 5 and doc["timestamp"] == "5" and doc["rack"] == "r1"
    assert doc["endpoints"] == ["SSL://[::1]:9093", "PLAINTEXT://h:9092"]
    assert (doc["host"], doc["port"]) == ("h", 9092)  # the first PLAINTEXT endpoint
    assert BrokerRegistration.from_json(1, reg.to_json()) == reg
    only_ssl = json.loads(BrokerRegistration(1, (Endpoint("S", "h", 1, "SSL"),)).to_json())
    assert (only_ssl["host"], only_ssl["port"]) == (None, -1)
    assert json.loads(ControllerRegistration(4, 9).to_json()) == {
        "version": 2,
        "brokerid": 4,
        "timestamp": "9",
        "kraftControllerEpoch": -1,
    }
    assert json.loads(L.encode_cluster_id("x")) == {"version": "1", "id": "x"}
    assert L.encode_controller_epoch(12) == b"12" and L.decode_controller_epoch(b"12") == 12
    assert json.loads(ProducerIdBlock(2, 0, 999).to_json())["block_end"] == "999"


def test_round_trips() -> None:
    tid = uuid.UUID(int=12345)
    topic = TopicAssignment({0: (1, 2), 1: (2, 3)}, tid, adding_replicas={1: (3,)})
    assert TopicAssignment.from_json("t", topic.to_json()) == topic
    state = PartitionState(-1, 7, (3,), 2, leader_recovery_state=L.RECOVERING)
    assert PartitionState.from_json(state.to_json()) == state
    assert "leader_recovery_state" not in json.loads(PartitionState(1, 0, (1,), 1).to_json())
    config = EntityConfig({"retention.ms": "100"})
    assert EntityConfig.from_json(config.to_json()) == config
    assert EntityConfig.from_json(b"") == EntityConfig({})
    tps = {TopicPartition("a", 1), TopicPartition("b", 0)}
    assert L.decode_isr_change(L.encode_isr_change(tps)) == tps
    assert L.decode_preferred_replica_election(L.encode_preferred_replica_election(tps)) == tps
    moves = {TopicPartition("a", 1): (3, 2)}
    assert L.decode_reassignment(L.encode_reassignment(moves)) == moves
    change = L.ConfigChangeNotification("topics/a")
    assert L.ConfigChangeNotification.from_json(change.to_json()) == change


def test_producer_id_blocks_follow_each_other() -> None:
    first = ProducerIdBlock.next_after(None, 1)
    assert (first.block_start, first.block_end) == (0, 999)
    second = ProducerIdBlock.next_after(first, 2)
    assert (second.broker, second.block_start, second.block_end) == (2, 1000, 1999)
    with pytest.raises(LayoutError):
        ProducerIdBlock.next_after(ProducerIdBlock(0, 0, (1 << 63) - 10), 0)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[1]",
        b'{"leader":"x","leader_epoch":0,"isr":[],"controller_epoch":0}',
        b'{"leader":1,"leader_epoch":0,"isr":[true],"controller_epoch":0}',
        b'{"leader":1,"leader_epoch":0,"controller_epoch":0}',
        b"\xff\xfe",
    ],
)
def test_malformed_partition_state_is_a_layout_error(data: bytes) -> None:
    with pytest.raises(LayoutError):
        PartitionState.from_json(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"version":5,"endpoints":"x"}',
        b'{"version":5,"endpoints":["nohostport"]}',
        b'{"version":0}',
        b'{"version":5,"endpoints":["P://h:port"]}',
    ],
)
def test_malformed_broker_registration_is_a_layout_error(data: bytes) -> None:
    with pytest.raises(LayoutError):
        BrokerRegistration.from_json(1, data)


def test_malformed_topic_assignment_is_a_layout_error() -> None:
    for data in (b'{"partitions":{"x":[1]}}', b'{"partitions":[1]}', b'{"topic_id":"bad"}'):
        with pytest.raises(LayoutError):
            TopicAssignment.from_json("t", data)


@pytest.mark.parametrize(
    "group",
    [
        "",
        "a//b",
        "/a",
        "a/",
        ".",
        "..",
        "a/../b",
        "nul\x00",
        "tab\t",
        "\x85",
        "\ue000",
        "\U0001f600",
    ],
)
def test_consumer_offset_paths_zookeeper_refuses(group: str) -> None:
    with pytest.raises(LayoutError):
        L.consumer_offset_path(group, "t", 0)


def test_consumer_offset_payload() -> None:
    assert L.encode_consumer_offset(42) == b"42"
    assert L.decode_consumer_offset(b"42", "p") == 42
    assert L.decode_consumer_offset(b"-1", "p") == -1
    for bad in (b"", None, b"x", b"\xff"):
        with pytest.raises(LayoutError):
            L.decode_consumer_offset(bad, "p")
    # Names ZooKeeper accepts: dots inside a name, unicode below the reserved ranges.
    assert L.consumer_offset_path("a.b..c", "t", 0).startswith("/consumers/a.b..c/")
    assert L.consumer_offset_path("gr\u00fcn", "t", 0)
