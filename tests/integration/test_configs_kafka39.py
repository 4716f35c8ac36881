"""Kafka 3.9's configuration names through real admin clients: deprecated keys and keys for
features Strom does not have are accepted on topics and brokers, stored, described back with
their source, and kept across a restart; bad values, read-only keys and cluster-wide per-broker
keys are refused with Kafka's errors and messages."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import confluent_kafka as ck
import kafka.admin as kpa
import pytest
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    ResourceType,
)

from strom.protocol.messages.alter_configs_request import (
    AlterableConfig,
    AlterConfigsRequest,
    AlterConfigsResource,
)
from strom.protocol.messages.alter_configs_response import AlterConfigsResponse
from strom.protocol.messages.describe_configs_request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)
from strom.protocol.messages.describe_configs_response import DescribeConfigsResponse

from .broker_process import BrokerProcess
from .clients import DEADLINE_S, ck_admin, create_topic
from .conftest import BrokerFactory
from .kafka_wire import frame, request_header, roundtrip

pytestmark = pytest.mark.integration


@pytest.fixture
def broker39(broker_factory: BrokerFactory) -> BrokerProcess:
    """A broker started with Kafka keys Strom does not act on, as a copied server.properties
    would carry them."""
    return broker_factory(
        {
            "sasl.kerberos.kinit.cmd": "/opt/krb/kinit",
            "ssl.keystore.password": "static-secret",
            "log.message.format.version": "2.8",
        }
    )


@pytest.fixture
def admin(broker39: BrokerProcess) -> Any:
    return ck_admin(broker39.bootstrap)


@pytest.fixture
def kp_admin(broker39: BrokerProcess) -> Iterator[kpa.KafkaAdminClient]:
    a = kpa.KafkaAdminClient(bootstrap_servers=broker39.bootstrap, request_timeout_ms=20_000)
    yield a
    a.close()


def ck_error(fut: Any) -> ck.KafkaError | None:
    try:
        fut.result(timeout=DEADLINE_S)
    except ck.KafkaException as e:
        err: ck.KafkaError = e.args[0]
        return err
    return None


def describe(admin: Any, rtype: ResourceType, name: str) -> dict[str, ConfigEntry]:
    res = ConfigResource(rtype, name)
    return dict(admin.describe_configs([res], request_timeout=DEADLINE_S)[res].result(DEADLINE_S))


def incremental(
    admin: Any, rtype: ResourceType, name: str, ops: list[tuple[str, str | None, Any]]
) -> ck.KafkaError | None:
    res = ConfigResource(
        rtype,
        name,
        incremental_configs=[ConfigEntry(k, v, incremental_operation=op) for k, v, op in ops],
    )
    return ck_error(admin.incremental_alter_configs([res])[res])


SET, DELETE, APPEND = AlterConfigOpType.SET, AlterConfigOpType.DELETE, AlterConfigOpType.APPEND
BROKER = 4  # config resource type
INVALID_CONFIG = 40
DYNAMIC_DEFAULT_BROKER_CONFIG = ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value


# ================================================================================ topics


def test_deprecated_topic_keys_alter_describe_and_restart(
    admin: Any, broker39: BrokerProcess, topic: str
) -> None:
    create_topic(broker39.bootstrap, topic, 1)
    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        set_config={
            "message.format.version": "2.8-IV1",
            "message.downconversion.enable": "false",
            "leader.replication.throttled.replicas": "*",
            "local.retention.ms": "60000",
        },
    )
    assert ck_error(admin.alter_configs([res])[res]) is None
    err = incremental(
        admin,
        ResourceType.TOPIC,
        topic,
        [("follower.replication.throttled.replicas", "0:0", APPEND)],
    )
    assert err is None

    def check() -> None:
        e = describe(admin, ResourceType.TOPIC, topic)
        for key, value in (
            ("message.format.version", "2.8-IV1"),
            ("message.downconversion.enable", "false"),
            ("leader.replication.throttled.replicas", "*"),
            ("follower.replication.throttled.replicas", "0:0"),
            ("local.retention.ms", "60000"),
        ):
            assert e[key].value == value, key
            assert e[key].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, key
        # Not overridden: inherited from the broker's static log.message.format.version.
        assert e["remote.storage.enable"].value == "false"
        assert e["remote.storage.enable"].is_default

    check()
    log = broker39.log_text()
    assert f"topic {topic}: message.format.version has no effect in Strom" in log
    broker39.restart()
    check()


def test_topic_key_inherits_deprecated_broker_key(
    admin: Any, broker39: BrokerProcess, topic: str
) -> None:
    create_topic(broker39.bootstrap, topic, 1)
    e = describe(admin, ResourceType.TOPIC, topic)["message.format.version"]
    assert e.value == "2.8"
    assert e.source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert "log.message.format.version" in e.synonyms


def test_kafka_python_topic_alter_and_describe(
    kp_admin: kpa.KafkaAdminClient, broker39: BrokerProcess, topic: str
) -> None:
    """kafka-python checks the names against DescribeConfigs first, then sends the legacy
    AlterConfigs (incremental=False) or IncrementalAlterConfigs."""
    create_topic(broker39.bootstrap, topic, 1)
    legacy = kp_admin.alter_configs(
        [kpa.ConfigResource("TOPIC", topic, {"message.format.version": "0.10.2"})],
        incremental=False,
    )
    assert legacy == {"topic": {topic: "OK"}}
    newer = kp_admin.alter_configs(
        [kpa.ConfigResource("TOPIC", topic, {"message.downconversion.enable": "false"})],
        incremental=True,
    )
    assert newer == {"topic": {topic: "OK"}}
    got = kp_admin.describe_configs([kpa.ConfigResource("TOPIC", topic)], config_filter="all")
    entries = got["topic"][topic]
    for key, value in (
        ("message.format.version", "0.10.2"),
        ("message.downconversion.enable", "false"),
    ):
        assert entries[key]["value"] == value
        assert entries[key]["config_source"] == "DYNAMIC_TOPIC_CONFIG"


def test_bad_topic_value_answers_kafkas_error_and_message(
    admin: Any, broker39: BrokerProcess, topic: str
) -> None:
    create_topic(broker39.bootstrap, topic, 1)
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"message.format.version": "0.7"})
    err = ck_error(admin.alter_configs([res])[res])
    assert err is not None and err.code() == ck.KafkaError.INVALID_CONFIG
    assert err.str() == (
        f"Invalid config value for resource ConfigResource(type=TOPIC, name='{topic}'): "
        "Invalid value 0.7 for configuration message.format.version: Version 0.7 is not a "
        "valid version"
    )
    err = incremental(admin, ResourceType.TOPIC, topic, [("retention.mss", "1", SET)])
    assert err is not None and err.code() == ck.KafkaError.INVALID_CONFIG
    assert err.str() == "Unknown topic config name: retention.mss"


# ================================================================================ broker


def test_no_effect_broker_keys_per_broker_describe_and_restart(
    admin: Any, broker39: BrokerProcess
) -> None:
    node = "0"
    err = incremental(
        admin,
        ResourceType.BROKER,
        node,
        [
            ("sasl.kerberos.min.time.before.relogin", "120000", SET),
            ("listener.name.plaintext.ssl.keystore.location", "/etc/k.jks", SET),
            ("leader.replication.throttled.rate", "1048576", SET),
        ],
    )
    assert err is None

    def check() -> None:
        e = describe(admin, ResourceType.BROKER, node)
        relogin = e["sasl.kerberos.min.time.before.relogin"]
        assert relogin.value == "120000"
        assert relogin.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        assert not relogin.is_read_only
        kinit = e["sasl.kerberos.kinit.cmd"]
        assert (kinit.value, kinit.source) == (
            "/opt/krb/kinit",
            ConfigSource.STATIC_BROKER_CONFIG.value,
        )
        prefixed = e["listener.name.plaintext.ssl.keystore.location"]
        assert prefixed.value == "/etc/k.jks"
        assert prefixed.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        assert e["leader.replication.throttled.rate"].value == "1048576"
        secret = e["ssl.keystore.password"]
        assert secret.is_sensitive and secret.value is None
        assert secret.source == ConfigSource.STATIC_BROKER_CONFIG.value

    check()
    assert "sasl.kerberos.min.time.before.relogin has no effect in Strom" in broker39.log_text()
    broker39.restart()
    check()


def wire(broker: BrokerProcess, api_key: int, version: int, request: Any, response: Any) -> Any:
    """One request on the wire: for the cluster-default broker resource (named ""), which the
    Python clients do not let one name (they insist on a broker id)."""
    with socket.create_connection((broker.host, broker.port), timeout=DEADLINE_S) as sock:
        payload = request_header(api_key, version, 7, "test") + request.encode(version)
        answer = roundtrip(sock, frame(payload))
    return response.decode(answer[4:], version)


def alter_cluster_default(broker: BrokerProcess, configs: dict[str, str]) -> tuple[int, str | None]:
    request = AlterConfigsRequest(
        resources=[
            AlterConfigsResource(BROKER, "", [AlterableConfig(k, v) for k, v in configs.items()])
        ]
    )
    (result,) = wire(broker, 33, 1, request, AlterConfigsResponse).responses
    return result.error_code, result.error_message


def describe_cluster_default(broker: BrokerProcess) -> dict[str, Any]:
    request = DescribeConfigsRequest(
        resources=[DescribeConfigsResource(BROKER, "", None)], include_synonyms=True
    )
    (result,) = wire(broker, 32, 3, request, DescribeConfigsResponse).results
    assert result.error_code == 0
    return {c.name: c for c in result.configs}


def test_cluster_default_of_no_effect_keys(admin: Any, broker39: BrokerProcess) -> None:
    """AlterConfigs on the cluster-default resource takes cluster-wide keys Strom does not act
    on, DescribeConfigs of that resource lists them (synonyms of that level only), the broker's
    own resource inherits them, and they survive a restart."""
    assert alter_cluster_default(
        broker39,
        {
            "log.message.downconversion.enable": "false",
            "remote.log.index.file.cache.total.size.bytes": "2048",
        },
    ) == (0, None)
    default = describe_cluster_default(broker39)
    assert set(default) == {
        "log.message.downconversion.enable",
        "remote.log.index.file.cache.total.size.bytes",
    }
    down = default["log.message.downconversion.enable"]
    assert (down.value, down.config_source) == ("false", DYNAMIC_DEFAULT_BROKER_CONFIG)
    assert [(s.name, s.source) for s in down.synonyms] == [
        ("log.message.downconversion.enable", DYNAMIC_DEFAULT_BROKER_CONFIG)
    ]
    own = describe(admin, ResourceType.BROKER, "0")["log.message.downconversion.enable"]
    assert (own.value, own.source) == ("false", DYNAMIC_DEFAULT_BROKER_CONFIG)
    assert not own.is_read_only
    broker39.restart()
    again = describe_cluster_default(broker39)
    assert again["remote.log.index.file.cache.total.size.bytes"].value == "2048"
    code, message = alter_cluster_default(broker39, {"sasl.kerberos.min.time.before.relogin": "1"})
    assert (code, message) == (
        INVALID_CONFIG,
        "Invalid config value for resource ConfigResource(type=BROKER, name=''): Cannot update "
        "these configs at default cluster level, broker id must be specified: "
        "Set(sasl.kerberos.min.time.before.relogin)",
    )


def test_kafka_python_broker_keys(kp_admin: kpa.KafkaAdminClient, broker39: BrokerProcess) -> None:
    """kafka-python checks names against DescribeConfigs' dynamic keys, then alters them."""
    for incremental_api, value in ((True, "90000"), (False, "100000")):
        result = kp_admin.alter_configs(
            [kpa.ConfigResource("BROKER", "0", {"sasl.kerberos.min.time.before.relogin": value})],
            incremental=incremental_api,
        )
        assert result == {"broker": {"0": "OK"}}
        got = kp_admin.describe_configs([kpa.ConfigResource("BROKER", "0")], config_filter="all")
        entry = got["broker"]["0"]["sasl.kerberos.min.time.before.relogin"]
        assert entry["value"] == value
        assert entry["config_source"] == "DYNAMIC_BROKER_CONFIG"
    got = kp_admin.describe_configs([kpa.ConfigResource("BROKER", "0")], config_filter="all")
    assert got["broker"]["0"]["log.message.format.version"]["value"] == "2.8"


@pytest.mark.parametrize(
    ("name", "key", "value", "message"),
    [
        ("0", "log.dirs", "/elsewhere", "Cannot update these configs dynamically: Set(log.dirs)"),
        (
            "0",
            "ssl.keystore.location",
            "/k.jks",
            "These security configs can be dynamically updated only per-listener using the "
            "listener prefix: Set(ssl.keystore.location)",
        ),
        (
            "0",
            "listener.name.plaintext.ssl.key.password",
            "pw",
            "Password encoder secret not configured",
        ),
        (
            "0",
            "sasl.kerberos.ticket.renew.jitter",
            "high",
            "Invalid value high for configuration sasl.kerberos.ticket.renew.jitter: Not a "
            "number of type DOUBLE",
        ),
    ],
)
def test_broker_refusals_answer_kafkas_error_and_message(
    admin: Any, broker39: BrokerProcess, name: str, key: str, value: str, message: str
) -> None:
    err = incremental(admin, ResourceType.BROKER, name, [(key, value, SET)])
    assert err is not None and err.code() == ck.KafkaError.INVALID_CONFIG
    assert err.str() == (
        f"Invalid config value for resource ConfigResource(type=BROKER, name='{name}'): {message}"
    )


def test_custom_broker_key_is_kept_and_hidden(admin: Any, broker39: BrokerProcess) -> None:
    """A name Kafka does not define is stored as a custom config and described with its value
    hidden, as Kafka's ZooKeeper-mode broker does."""
    assert incremental(admin, ResourceType.BROKER, "0", [("my.plugin.key", "v", SET)]) is None
    e = describe(admin, ResourceType.BROKER, "0")["my.plugin.key"]
    assert e.value is None and e.is_sensitive
    assert incremental(admin, ResourceType.BROKER, "0", [("my.plugin.key", None, DELETE)]) is None
    assert "my.plugin.key" not in describe(admin, ResourceType.BROKER, "0")


def test_dynamic_password_is_stored_encrypted_and_never_described(
    broker_factory: BrokerFactory,
) -> None:
    """With password.encoder.secret set, a listener-level password set at run time is accepted,
    kept encrypted in the metadata file (Kafka's format), never described in clear, and
    decrypted again after a restart."""
    b = broker_factory({"password.encoder.secret": "encoder-secret"})
    admin = ck_admin(b.bootstrap)
    key = "listener.name.plaintext.ssl.key.password"
    assert incremental(admin, ResourceType.BROKER, "0", [(key, "hunter2", SET)]) is None
    stored = (b.data_dir / "strom-metadata.json").read_text()
    assert "hunter2" not in stored and "encryptedPassword:" in stored
    for attempt in range(2):
        entry = describe(admin, ResourceType.BROKER, "0")[key]
        assert entry.is_sensitive and entry.value is None, attempt
        assert entry.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        assert all(s.value is None for s in entry.synonyms.values())
        if attempt == 0:
            b.restart()
            admin = ck_admin(b.bootstrap)
    assert "could not be decoded" not in b.log_text()
