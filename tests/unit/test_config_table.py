"""The configuration tables against Kafka 3.9: every key it knows, its type, update mode, default
and validation, and Kafka's rules for broker keys changed at run time."""

from __future__ import annotations

import logging

import pytest
from kafka39_configs import kafka_39_configs

from strom.config import (
    BROKER_DEFS,
    TOPIC_DEFS,
    BrokerConfig,
    ConfigError,
    ConfigSource,
    ConfigType,
    InvalidConfigurationError,
    check_password_storage,
    check_thread_pools,
    describe_topic_configs,
    validate_dynamic_broker_configs,
    validate_topic_configs,
)
from strom.config.broker_keys import DYNAMIC_ONLY, listener_base
from strom.config.broker_newer_keys import BROKER_NEWER_DEFS, NEWER_TOPIC_KEYS
from strom.config.definitions import UpdateMode, format_value, parse_value

KAFKA = kafka_39_configs()
TYPES = {
    "boolean": ConfigType.BOOLEAN,
    "string": ConfigType.STRING,
    "int": ConfigType.INT,
    "short": ConfigType.SHORT,
    "long": ConfigType.LONG,
    "double": ConfigType.DOUBLE,
    "list": ConfigType.LIST,
    "class": ConfigType.CLASS,
    "password": ConfigType.PASSWORD,
}
# Defaults Strom changes on purpose (each key's documentation says why).
STROM_DEFAULTS = {
    "broker.id": "0",
    "listeners": "PLAINTEXT://127.0.0.1:9092",
    "log.dir": "./strom-data",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "group.coordinator.rebalance.protocols": "classic,consumer",
    # Limits against hostile clients, on by default (Kafka leaves them unlimited).
    "max.connections": "10000",
    "max.connections.per.ip": "1000",
    "max.connection.creation.rate": "1000",
    "queued.max.request.bytes": "209715200",
    # Kafka's defaults where Java offers TLS 1.3.
    "ssl.protocol": "TLSv1.3",
    "ssl.enabled.protocols": "TLSv1.2,TLSv1.3",
}


def kafka_default_text(ctype: ConfigType, text: str) -> str | None:
    if text == "null":
        return None
    if text == '""':
        return ""
    if ctype is ConfigType.DOUBLE:
        return format_value(ctype, float(text))
    return text


def test_every_kafka_39_key_is_in_the_tables_and_no_other() -> None:
    broker = {name for name, _, mode, _ in KAFKA if mode != "topic"}
    topic = {name for name, _, mode, _ in KAFKA if mode == "topic"}
    assert len(broker) == 328 and len(topic) == 36
    strom_own = {name for name in BROKER_DEFS if name.startswith("strom.")}
    newer = {d.name for d in BROKER_NEWER_DEFS}  # Kafka 4.x keys Strom acts on
    assert set(BROKER_DEFS) - strom_own - newer == broker
    strom_topic = {name for name in TOPIC_DEFS if name.startswith("strom.")}
    assert set(TOPIC_DEFS) - strom_topic - NEWER_TOPIC_KEYS == topic
    assert set(DYNAMIC_ONLY) == {
        "leader.replication.throttled.rate",
        "follower.replication.throttled.rate",
        "replica.alter.log.dirs.io.max.bytes.per.second",
    }


@pytest.mark.parametrize(("name", "ctype", "mode", "default"), KAFKA, ids=[r[0] for r in KAFKA])
def test_type_mode_and_default_are_kafkas(name: str, ctype: str, mode: str, default: str) -> None:
    d = TOPIC_DEFS[name] if mode == "topic" else BROKER_DEFS[name]
    assert d.type is TYPES[ctype]
    if mode == "internal":
        assert d.internal and d.mode is UpdateMode.READ_ONLY
    elif mode != "topic":
        assert not d.internal
        assert d.mode.value == mode
    expected = STROM_DEFAULTS.get(name) or kafka_default_text(d.type, default)
    assert format_value(d.type, d.default) == expected
    assert d.doc.strip(), name


@pytest.mark.parametrize("d", [*BROKER_DEFS.values(), *TOPIC_DEFS.values()], ids=lambda d: d.name)
def test_defaults_parse_back_to_themselves(d: object) -> None:
    from strom.config.definitions import ConfigDef

    assert isinstance(d, ConfigDef)
    text = format_value(d.type, d.default)
    if text is None:
        return
    assert d.parse(text) == d.default


def test_unused_keys_say_so_in_their_documentation() -> None:
    d = BROKER_DEFS["sasl.kerberos.min.time.before.relogin"]
    assert d.unused and "does not act on it" in d.documentation
    assert not BROKER_DEFS["log.retention.ms"].unused
    assert "does not act" not in BROKER_DEFS["log.retention.ms"].documentation


# --- values Kafka refuses, with Kafka's messages ------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "num.io.threads",
            "eight",
            "Invalid value eight for configuration num.io.threads: Not a number of type INT",
        ),
        (
            "num.io.threads",
            "0",
            "Invalid value 0 for configuration num.io.threads: Value must be at least 1",
        ),
        ("offsets.topic.replication.factor", "40000", "Not a number of type SHORT"),
        ("log.retention.bytes", "1.5", "Not a number of type LONG"),
        ("sasl.kerberos.ticket.renew.jitter", "much", "Not a number of type DOUBLE"),
        (
            "log.cleaner.min.cleanable.ratio",
            "1.5",
            "Invalid value 1.5 for configuration log.cleaner.min.cleanable.ratio: Value must be no more than 1",
        ),
        ("remote.log.manager.task.retry.jitter", "0.75", "Value must be no more than 0.5"),
        ("auto.create.topics.enable", "yes", "Expected value to be either true or false"),
        (
            "compression.type",
            "brotli",
            "String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer",
        ),
        ("compression.gzip.level", "0", "Value must be between 1 and 9 or equal to -1"),
        ("compression.zstd.level", "23", "Value must be no more than 22"),
        (
            "log.cleanup.policy",
            "compact,",
            "Invalid value  for configuration log.cleanup.policy: String must be one of: compact, delete",
        ),
        (
            "process.roles",
            "broker,voter",
            "Invalid value voter for configuration process.roles: String must be one of: broker, controller",
        ),
        ("ssl.client.auth", "REQUIRED", "String must be one of: required, requested, none"),
        (
            "group.consumer.migration.policy",
            "sideways",
            "String must be one of (case insensitive): bidirectional, upgrade, downgrade, disabled",
        ),
        (
            "security.inter.broker.protocol",
            "TLS",
            "String must be one of: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL",
        ),
        ("inter.broker.protocol.version", "3.10", "Version 3.10 is not a valid version"),
        ("log.message.format.version", "4.0", "Version 4.0 is not a valid version"),
        ("remote.log.storage.manager.class.name", "", "String must be non-empty"),
        ("remote.log.manager.copier.thread.pool.size", "0", "Value can be -1 or greater than 0"),
        ("principal.builder.class", "not a class", "Class not a class could not be found."),
        ("controller.quorum.voters", "1@host", "Failed to parse host name from entry 1@host"),
        (
            "controller.quorum.voters",
            "host:9093",
            "Each entry should be in the form `{id}@{host}:{port}`",
        ),
        ("group.share.max.size", "5", "Value must be at least 10"),
    ],
)
def test_broker_values_kafka_refuses(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        BROKER_DEFS[key].parse(value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "parsed"),
    [
        ("auto.create.topics.enable", " TRUE ", True),
        ("num.partitions", "+3", 3),
        ("log.cleaner.min.cleanable.ratio", "5e-1", 0.5),
        ("log.cleanup.policy", " compact , delete ", ["compact", "delete"]),
        ("log.cleanup.policy", "compact,compact", ["compact", "compact"]),  # Kafka 3.9 allows it
        ("ssl.client.auth", "required", "required"),
        ("group.consumer.migration.policy", "UPGRADE", "UPGRADE"),
        ("inter.broker.protocol.version", "2.8", "2.8"),
        ("inter.broker.protocol.version", "0.10.2.1", "0.10.2.1"),
        ("log.message.format.version", "3.0-IV1", "3.0-IV1"),
        ("principal.builder.class", "com.example.Builder$Inner", "com.example.Builder$Inner"),
        ("controller.quorum.voters", "1@a:9093,2@[::1]:9093", ["1@a:9093", "2@[::1]:9093"]),
        ("remote.log.manager.copier.thread.pool.size", "-1", -1),
        ("ssl.keystore.password", " secret ", "secret"),
    ],
)
def test_broker_values_kafka_takes(key: str, value: str, parsed: object) -> None:
    assert BROKER_DEFS[key].parse(value) == parsed


@pytest.mark.parametrize(
    ("configs", "error", "message"),
    [
        (
            {"retention.mss": "1"},
            InvalidConfigurationError,
            "Unknown topic config name: retention.mss",
        ),
        ({"message.format.version": "0.7"}, ConfigError, "Version 0.7 is not a valid version"),
        (
            {"leader.replication.throttled.replicas": "0:1,x"},
            ConfigError,
            "must be the literal '*' or a list of replicas",
        ),
        (
            {"remote.log.delete.on.disable": "true"},
            InvalidConfigurationError,
            "under Zookeeper's mode",
        ),
        (
            {"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"},
            InvalidConfigurationError,
            "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)",
        ),
    ],
)
def test_topic_values_kafka_refuses(
    configs: dict[str, str], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        validate_topic_configs(configs)
    assert message in str(info.value)


def test_deprecated_and_no_effect_topic_keys_are_taken_and_described() -> None:
    configs = {
        "message.format.version": "2.8",
        "message.downconversion.enable": "false",
        "leader.replication.throttled.replicas": "0:1, 1:2",
        "follower.replication.throttled.replicas": "*",
        "local.retention.ms": "1000",
        "remote.storage.enable": "false",
    }
    stored = validate_topic_configs(configs)
    assert stored["leader.replication.throttled.replicas"] == "0:1,1:2"
    broker = BrokerConfig.load(None, {"log.message.format.version": "2.1"})
    entries = {e.name: e for e in describe_topic_configs(stored, broker)}
    fmt = entries["message.format.version"]
    assert (fmt.value, fmt.source) == ("2.8", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert [(s.name, s.value, s.source) for s in fmt.synonyms] == [
        ("message.format.version", "2.8", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        ("log.message.format.version", "2.1", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.message.format.version", "3.0-IV1", ConfigSource.DEFAULT_CONFIG),
    ]
    inherited = describe_topic_configs({}, broker, ["message.format.version"])[0]
    assert (inherited.value, inherited.source) == ("2.1", ConfigSource.STATIC_BROKER_CONFIG)


# --- describing the broker ----------------------------------------------------------------------


def test_internal_keys_are_described_only_when_set() -> None:
    plain = {e.name for e in BrokerConfig.load(None, {}).describe()}
    assert "producer.id.expiration.check.interval.ms" not in plain
    assert "sasl.kerberos.min.time.before.relogin" in plain
    c = BrokerConfig.load(None, {"producer.id.expiration.check.interval.ms": "1000"})
    (entry,) = c.describe(["producer.id.expiration.check.interval.ms"])
    assert (entry.value, entry.source) == ("1000", ConfigSource.STATIC_BROKER_CONFIG)


def test_custom_listener_and_dynamic_only_keys_are_described_as_kafka_does() -> None:
    c = BrokerConfig.load(
        None,
        {
            "my.plugin.setting": "x",
            "listener.name.external.ssl.keystore.location": "/k.jks",
            "listener.name.external.ssl.keystore.password": "pw",
        },
    ).with_dynamic({"leader.replication.throttled.rate": "1000"})
    entries = {e.name: e for e in c.describe()}
    custom = entries["my.plugin.setting"]
    assert (custom.value, custom.is_sensitive, custom.config_type) == (
        None,
        True,
        ConfigType.UNKNOWN,
    )
    assert custom.read_only and custom.documentation is None
    loc = entries["listener.name.external.ssl.keystore.location"]
    assert (loc.value, loc.config_type, loc.is_sensitive) == ("/k.jks", ConfigType.STRING, False)
    assert [(s.name, s.source) for s in loc.synonyms] == [
        ("listener.name.external.ssl.keystore.location", ConfigSource.STATIC_BROKER_CONFIG)
    ]
    pw = entries["listener.name.external.ssl.keystore.password"]
    assert pw.is_sensitive and pw.value is None and pw.config_type is ConfigType.PASSWORD
    assert all(s.value is None for s in pw.synonyms)
    rate = entries["leader.replication.throttled.rate"]
    assert (rate.value, rate.source, rate.config_type) == (
        "1000",
        ConfigSource.DYNAMIC_BROKER_CONFIG,
        ConfigType.LONG,
    )
    assert rate.read_only  # Kafka lists dynamic-only keys as read-only
    assert "follower.replication.throttled.rate" not in entries


def test_listener_base_names() -> None:
    assert listener_base("listener.name.ext.ssl.keystore.location") == "ssl.keystore.location"
    assert listener_base("listener.name.ext.plain.sasl.jaas.config") == "sasl.jaas.config"
    assert listener_base("ssl.keystore.location") is None


def test_describe_default_resource_keeps_only_cluster_default_synonyms() -> None:
    c = BrokerConfig.load(None, {"log.retention.ms": "5"}).with_dynamic(
        {"log.retention.ms": "7"}, {"log.retention.ms": "6", "some.custom": "z"}
    )
    entries = {e.name: e for e in c.describe_default()}
    assert set(entries) == {"log.retention.ms", "some.custom"}
    ms = entries["log.retention.ms"]
    assert ms.value == "6"
    assert [(s.value, s.source) for s in ms.synonyms] == [
        ("6", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
    ]


# --- changing broker keys at run time ------------------------------------------------------------


@pytest.mark.parametrize(
    ("configs", "per_broker", "message"),
    [
        (
            {"log.dirs": "/x", "broker.rack": "r"},
            True,
            "Cannot update these configs dynamically: Set(log.dirs, broker.rack)",
        ),
        (
            {"ssl.keystore.location": "/k"},
            True,
            "These security configs can be dynamically updated only per-listener using the listener prefix: Set(ssl.keystore.location)",
        ),
        (
            {"sasl.kerberos.min.time.before.relogin": "5000"},
            False,
            "Cannot update these configs at default cluster level, broker id must be specified: Set(sasl.kerberos.min.time.before.relogin)",
        ),
        (
            {"listener.name.ext.ssl.keystore.location": "/k"},
            False,
            "broker id must be specified: Set(listener.name.ext.ssl.keystore.location)",
        ),
        (
            {"listener.name.ext.ssl.keystore.type": "JKS", "num.io.threads": "x"},
            True,
            "Invalid value x for configuration num.io.threads",
        ),
        (
            {"listener.name.ext.max.connections": "-1"},
            False,
            "Invalid value -1 for configuration max.connections: Value must be at least 0",
        ),
        (
            {"advertised.listeners": "PLAINTEXT://h:1"},
            True,
            "Strom reads advertised.listeners only at start-up",
        ),
    ],
)
def test_dynamic_refusals(configs: dict[str, str], per_broker: bool, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_dynamic_broker_configs(configs, per_broker)
    assert message in str(info.value)


def test_dynamic_acceptances() -> None:
    taken = validate_dynamic_broker_configs(
        {
            "sasl.kerberos.min.time.before.relogin": " 5000",
            "log.message.downconversion.enable": "FALSE",
            "listener.name.ext.ssl.keystore.location": " /k.jks",
            "listener.name.ext.max.connections": "10",
            "some.custom.key": " anything ",
            "remote.log.index.file.cache.total.size.bytes": "1000",
            "follower.replication.throttled.rate": "10",
        },
        per_broker=True,
    )
    assert taken["sasl.kerberos.min.time.before.relogin"] == "5000"
    assert taken["log.message.downconversion.enable"] == "false"
    assert taken["listener.name.ext.ssl.keystore.location"] == " /k.jks"  # stored as given
    assert taken["some.custom.key"] == " anything "
    cluster = validate_dynamic_broker_configs(
        {"listener.name.ext.max.connections": "10", "log.retention.ms": "5"}, per_broker=False
    )
    assert cluster == {"listener.name.ext.max.connections": "10", "log.retention.ms": "5"}


def test_passwords_need_a_broker_and_the_encoder_secret() -> None:
    pw = {"listener.name.ext.ssl.key.password": "s", "sasl.jaas.config": "x required;"}
    check_password_storage(pw, per_broker=True, encoder_secret_set=True)
    with pytest.raises(ConfigError, match=r"^Password encoder secret not configured$"):
        check_password_storage(pw, per_broker=True, encoder_secret_set=False)
    with pytest.raises(ConfigError, match=r"^Password config can be defined only at broker level$"):
        check_password_storage(pw, per_broker=False, encoder_secret_set=True)
    check_password_storage({"log.retention.ms": "1"}, per_broker=False, encoder_secret_set=False)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("3", "value should be at least half the current value 8"),
        ("17", "value should not be greater than double the current value 8"),
    ],
)
def test_thread_pools_change_by_at_most_a_factor_of_two(value: str, reason: str) -> None:
    current = BrokerConfig.load(None, {})
    with pytest.raises(ConfigError) as info:
        check_thread_pools(current, current.with_dynamic({"num.io.threads": value}))
    assert str(info.value) == (
        "Invalid value org.apache.kafka.common.config.ConfigException: Dynamic thread count "
        f"update validation failed for num.io.threads={value}, {reason} for configuration "
        "Invalid dynamic configuration"
    )
    check_thread_pools(current, current.with_dynamic({"num.io.threads": "16"}))
    check_thread_pools(current, current.with_dynamic({"num.io.threads": "4"}))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0", "Log cleaner threads should be at least 1"),
        ("3", "Log cleaner threads cannot be increased to more than double the current value 1"),
    ],
)
def test_log_cleaner_threads_change_as_kafka_allows(value: str, reason: str) -> None:
    current = BrokerConfig.load(None, {})
    with pytest.raises(ConfigError) as info:
        check_thread_pools(current, current.with_dynamic({"log.cleaner.threads": value}))
    assert str(info.value) == (
        f"Invalid value org.apache.kafka.common.config.ConfigException: {reason} for "
        "configuration Invalid dynamic configuration"
    )
    check_thread_pools(current, current.with_dynamic({"log.cleaner.threads": "2"}))


# --- start-up -----------------------------------------------------------------------------------


def test_kafka_keys_strom_ignores_are_logged_as_no_effect_not_unknown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="strom.config"):
        c = BrokerConfig.load(
            None,
            {
                "sasl.kerberos.min.time.before.relogin": "120000",
                "remote.log.storage.system.enable": "false",
                "listener.name.ext.ssl.keymanager.algorithm": "SunX509",
                "super.users": "User:admin",
                "no.such.kafka.key": "1",
            },
        )
    assert c.get("sasl.kerberos.min.time.before.relogin") == 120000
    unknown = [r for r in caplog.records if "unknown" in r.getMessage()]
    assert len(unknown) == 1 and "no.such.kafka.key" in unknown[0].getMessage()
    assert unknown[0].levelno == logging.WARNING
    for key in (
        "sasl.kerberos.min.time.before.relogin",
        "remote.log.storage.system.enable",
        "listener.name.ext.ssl.keymanager.algorithm",
    ):
        lines = [r for r in caplog.records if r.getMessage().startswith(key)]
        assert len(lines) == 1, key
        assert "has no effect in Strom" in lines[0].getMessage()
        assert key not in unknown[0].getMessage()
    # Read by the ACL authorizer: known, and no line about it.
    assert not [r for r in caplog.records if r.getMessage().startswith("super.users")]


def test_bad_value_of_a_no_effect_key_stops_start_up_as_in_kafka() -> None:
    with pytest.raises(ConfigError, match=r"sasl\.kerberos\.ticket\.renew\.jitter: Not a number"):
        BrokerConfig.load(None, {"sasl.kerberos.ticket.renew.jitter": "lots"})
    with pytest.raises(ConfigError, match=r"listener\.name\.ext\.ssl\.client\.auth"):
        BrokerConfig.load(None, {"listener.name.ext.ssl.client.auth": "always"})


def test_parse_value_java_edge_cases() -> None:
    assert parse_value("k", ConfigType.LIST, "a,,b") == ["a", "", "b"]
    assert parse_value("k", ConfigType.LIST, "  ") == []
    assert parse_value("k", ConfigType.DOUBLE, "1.5d") == 1.5
    with pytest.raises(ConfigError, match="Not a number of type LONG"):
        parse_value("k", ConfigType.LONG, "9223372036854775808")


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        ({"log.roll.ms": "0"}, "log.roll.ms must be greater than or equal to 1"),
        ({"log.roll.hours": "1", "log.roll.jitter.ms": "-5"}, "log.roll.jitter.ms must be"),
        ({"log.retention.minutes": "0"}, "log.retention.ms must be unlimited (-1) or, greater"),
        ({"replica.fetch.wait.max.ms": "40000"}, "replica.socket.timeout.ms should always be"),
        (
            {"replica.lag.time.max.ms": "100"},
            "replica.fetch.wait.max.ms should always be less than or equal to",
        ),
        ({"queued.max.request.bytes": "10"}, "queued.max.request.bytes must be larger or equal"),
        ({"max.connections.per.ip": "0"}, "max.connections.per.ip can be set to zero only if"),
        ({"log.cleaner.threads": "200"}, "log.cleaner.dedupe.buffer.size must be at least 1MB"),
        ({"broker.id": "1001"}, "broker.id must be greater than or equal to -1 and not greater"),
        (
            {"connection.failed.authentication.delay.ms": "700000"},
            "connection.failed.authentication.delay.ms=700000 should always be less than "
            "connections.max.idle.ms=600000",
        ),
    ],
)
def test_kafka_cross_key_requirements(configs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        BrokerConfig.load(None, configs)
    assert str(info.value).startswith(f"requirement failed: {message}")
    assert "from command line" in str(info.value)


def test_cross_key_requirements_hold_for_dynamic_values_too() -> None:
    c = BrokerConfig.load(None, {})
    with pytest.raises(ConfigError) as info:
        c.with_dynamic({"log.roll.ms": "0"})
    assert str(info.value) == "requirement failed: log.roll.ms must be greater than or equal to 1"
    assert BrokerConfig.load(None, {"broker.id": "1001", "broker.id.generation.enable": "false"})
    assert BrokerConfig.load(
        None, {"max.connections.per.ip": "0", "max.connections.per.ip.overrides": "h:5"}
    )
