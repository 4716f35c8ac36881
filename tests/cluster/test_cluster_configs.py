"""Dynamic configs in a three-broker cluster: kept in ZooKeeper, applied by every broker.

- a cluster-wide dynamic default (IncrementalAlterConfigs on the BROKER resource with an
  empty name) is written to /config/brokers/<default>, every broker describes it as a
  DYNAMIC_DEFAULT_BROKER_CONFIG and acts on it (min.insync.replicas=3 makes acks=all answer
  NOT_ENOUGH_REPLICAS once a follower is gone), and a broker restarted later still has it;
- a per-broker value (resource named by the broker id, sent to that broker) reaches that
  broker only;
- a topic config change is visible to a DescribeConfigs on the broker that took it as soon
  as it answers, and on the others once their watches fire.

Nothing is timed: every wait polls a condition up to a generous deadline.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
)
from integration.kafka_wire import frame, request_header, roundtrip
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from strom.protocol.messages.incremental_alter_configs_request import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
)
from strom.protocol.messages.incremental_alter_configs_response import (
    IncrementalAlterConfigsResponse,
)

from .test_replicated_cluster import (
    NOT_ENOUGH_REPLICAS,
    Cluster,
    create_topic,
    full_isr,
    raw_produce_acks_all,
    wait_for,
)

pytestmark = pytest.mark.cluster

BROKER = 4  # config resource type
SET, DELETE = 0, 1  # incremental operations


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_hosts)
    with c.running():
        yield c


def set_config(
    admin: AdminClient, resource_type: Any, name: str, key: str, value: str | None
) -> None:
    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    resource = ConfigResource(
        resource_type, name, incremental_configs=[ConfigEntry(key, value, incremental_operation=op)]
    )
    for future in admin.incremental_alter_configs([resource], request_timeout=30).values():
        future.result(timeout=30)


def set_cluster_default(cluster: Cluster, key: str, value: str | None) -> None:
    """IncrementalAlterConfigs v0 on the BROKER resource named "" (Kafka's
    `kafka-configs --entity-default`; the Python clients insist on a broker id)."""
    operation = SET if value is not None else DELETE
    request = IncrementalAlterConfigsRequest(
        resources=[AlterConfigsResource(BROKER, "", [AlterableConfig(key, operation, value)])]
    )
    broker = next(b for b in cluster.brokers.values() if b.is_alive())
    with socket.create_connection((broker.host, broker.port), timeout=40) as sock:
        answer = roundtrip(sock, frame(request_header(44, 0, 7, "test") + request.encode(0)))
    (result,) = IncrementalAlterConfigsResponse.decode(answer[4:], 0).responses
    assert (result.error_code, result.error_message) == (0, None)


def broker_entry(cluster: Cluster, broker_id: int, key: str) -> Any:
    """The config entry `key` of broker `broker_id`, described by that broker itself."""
    admin = AdminClient({"bootstrap.servers": cluster.brokers[broker_id].bootstrap})
    resource = ConfigResource(ConfigResource.Type.BROKER, str(broker_id))
    result = admin.describe_configs([resource], request_timeout=30)[resource].result(timeout=30)
    return result[key]


def topic_entry(bootstrap: str, topic: str, key: str) -> Any:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return admin.describe_configs([resource], request_timeout=30)[resource].result(timeout=30)[key]


def test_cluster_default_reaches_every_broker_and_survives_a_restart(
    cluster: Cluster, zk: KazooClient
) -> None:
    create_topic(cluster, "strict", 1, 3)
    wait_for("an ISR of three", lambda: full_isr(cluster, "strict", 1))
    set_cluster_default(cluster, "min.insync.replicas", "3")

    data, _ = zk.get("/config/brokers/<default>")
    assert json.loads(data)["config"] == {"min.insync.replicas": "3"}
    for broker_id in cluster.brokers:
        wait_for(
            f"broker {broker_id} describing the dynamic default",
            lambda b=broker_id: broker_entry(cluster, b, "min.insync.replicas").value == "3",
        )
        entry = broker_entry(cluster, broker_id, "min.insync.replicas")
        assert entry.source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value

    # Acted on: with a follower gone the ISR is two, below the new default of three.
    leader_id = cluster.partitions("strict")[0].leader
    leader = cluster.brokers[leader_id]
    follower_id = next(i for i in cluster.brokers if i != leader_id)
    cluster.brokers[follower_id].kill9()
    wait_for("the ISR at two", lambda: full_isr(cluster, "strict", 1, size=2))
    assert raw_produce_acks_all(leader.host, leader.port, "strict") == NOT_ENOUGH_REPLICAS

    # Kept in ZooKeeper: the restarted broker reads it at start-up.
    cluster.brokers[follower_id].start().wait_ready()
    assert broker_entry(cluster, follower_id, "min.insync.replicas").value == "3"
    wait_for("the ISR back at three", lambda: full_isr(cluster, "strict", 1))
    assert raw_produce_acks_all(leader.host, leader.port, "strict") == 0

    # Deleting the key goes back to the static default everywhere.
    set_cluster_default(cluster, "min.insync.replicas", None)
    for broker_id in cluster.brokers:
        wait_for(
            f"broker {broker_id} back at the static default",
            lambda b=broker_id: broker_entry(cluster, b, "min.insync.replicas").value == "1",
        )


def test_per_broker_value_reaches_that_broker_only(cluster: Cluster, zk: KazooClient) -> None:
    # confluent-kafka sends a BROKER resource named by an id to that broker.
    set_config(cluster.admin(), ConfigResource.Type.BROKER, "2", "message.max.bytes", "200000")
    data, _ = zk.get("/config/brokers/2")
    assert json.loads(data)["config"] == {"message.max.bytes": "200000"}
    entry = broker_entry(cluster, 2, "message.max.bytes")
    assert (entry.value, entry.source) == ("200000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    for other in (1, 3):
        entry = broker_entry(cluster, other, "message.max.bytes")
        assert (entry.value, entry.source) == ("1048588", ConfigSource.DEFAULT_CONFIG.value)


def test_topic_config_change_reads_back_at_once_and_spreads(cluster: Cluster) -> None:
    create_topic(cluster, "tuned", 1, 3)
    one = AdminClient({"bootstrap.servers": cluster.brokers[1].bootstrap})
    set_config(one, ConfigResource.Type.TOPIC, "tuned", "retention.ms", "123456")
    # Answered once broker 1 applied it: no wait needed to read it back there.
    assert topic_entry(cluster.brokers[1].bootstrap, "tuned", "retention.ms").value == "123456"
    for broker_id in (2, 3):
        wait_for(
            f"broker {broker_id} seeing the topic config",
            lambda b=broker_id: (
                topic_entry(cluster.brokers[b].bootstrap, "tuned", "retention.ms").value == "123456"
            ),
        )


def test_kafka_keys_strom_ignores_go_through_zookeeper(cluster: Cluster, zk: KazooClient) -> None:
    """Keys Kafka 3.9 has but Strom does not act on are kept in ZooKeeper like any other:
    per-broker, cluster-wide and on topics, described back by every broker concerned."""
    key = "sasl.kerberos.min.time.before.relogin"
    set_config(cluster.admin(), ConfigResource.Type.BROKER, "2", key, "90000")
    data, _ = zk.get("/config/brokers/2")
    assert json.loads(data)["config"] == {key: "90000"}
    entry = broker_entry(cluster, 2, key)
    assert (entry.value, entry.source) == ("90000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert f"{key} has no effect in Strom" in cluster.brokers[2].log_text()

    cache = "remote.log.index.file.cache.total.size.bytes"
    set_cluster_default(cluster, cache, "4096")
    for broker_id in cluster.brokers:
        wait_for(
            f"broker {broker_id} describing {cache}",
            lambda b=broker_id: broker_entry(cluster, b, cache).value == "4096",
        )
        assert (
            broker_entry(cluster, broker_id, cache).source
            == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
        )

    create_topic(cluster, "old-format", 1, 3)
    one = AdminClient({"bootstrap.servers": cluster.brokers[1].bootstrap})
    set_config(one, ConfigResource.Type.TOPIC, "old-format", "message.format.version", "2.8")
    for broker_id in cluster.brokers:
        wait_for(
            f"broker {broker_id} seeing message.format.version",
            lambda b=broker_id: (
                topic_entry(
                    cluster.brokers[b].bootstrap, "old-format", "message.format.version"
                ).value
                == "2.8"
            ),
        )
