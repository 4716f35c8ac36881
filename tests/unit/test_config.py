"""Broker and topic configuration: parsing, precedence, synonyms, describe, properties files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strom.config import (
    BROKER_DEFS,
    TOPIC_DEFS,
    BrokerConfig,
    ConfigError,
    ConfigSource,
    ConfigType,
    Listener,
    describe_topic_configs,
    dump_properties,
    env_to_key,
    is_dynamic,
    load_properties,
    log_config_for,
    parse_properties,
    validate_dynamic_broker_configs,
    validate_topic_configs,
)
from strom.config.definitions import LONG_MAX, format_value
from strom.storage.log_config import LogConfig


def load(**overrides: str) -> BrokerConfig:
    return BrokerConfig.load(None, {k.replace("_", "."): v for k, v in overrides.items()})


# --- defaults -----------------------------------------------------------------------------------


def test_defaults_match_kafka_except_documented_differences() -> None:
    c = BrokerConfig.load(None, {})
    assert c.broker_id == 0
    assert c.listeners == [Listener("PLAINTEXT", "127.0.0.1", 9092)]
    assert c.advertised_listeners == c.listeners
    assert c.log_dirs == [Path("./strom-data")]
    assert c.num_partitions == 1
    assert c.default_replication_factor == 1
    assert c.auto_create_topics_enable is True
    assert c.delete_topic_enable is True
    assert c.message_max_bytes == 1048588
    assert c.socket_request_max_bytes == 104857600
    assert c.connections_max_idle_ms == 600000
    assert c.num_io_threads == 8
    assert c.log_retention_ms == 7 * 24 * 3600 * 1000
    assert c.log_retention_check_interval_ms == 300000
    assert c.log_flush_scheduler_interval_ms == LONG_MAX
    assert c.log_flush_offset_checkpoint_interval_ms == 60000
    assert c.log_cleaner_enable is True
    assert c.log_cleaner_backoff_ms == 15000
    assert c.group_initial_rebalance_delay_ms == 3000
    assert c.fetch_max_bytes == 57671680
    assert c.max_incremental_fetch_session_cache_slots == 1000
    assert c.offsets_topic_num_partitions == 50
    assert c.offsets_retention_minutes == 10080
    assert c.get("zookeeper.connect") is None
    assert c.source("num.partitions") is ConfigSource.DEFAULT_CONFIG


def test_default_log_config_equals_storage_defaults() -> None:
    # LogConfig's own defaults are Kafka's; a topic without overrides must resolve to them.
    assert log_config_for({}, BrokerConfig.load(None, {})) == LogConfig()


def test_every_table_default_passes_its_own_validator() -> None:
    for table in (BROKER_DEFS, TOPIC_DEFS):
        for d in table.values():
            if d.default is not None and d.validator is not None:
                d.validator.validate(d.name, d.default)


def test_every_topic_synonym_is_a_defined_broker_key() -> None:
    for d in TOPIC_DEFS.values():
        for syn in d.synonyms:
            assert syn in BROKER_DEFS, (d.name, syn)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("num.partitions", "abc", "Not a number of type INT"),
        ("num.partitions", "0", "at least 1"),
        ("num.partitions", "1_000", "Not a number of type INT"),
        ("num.partitions", "99999999999", "Not a number of type INT"),
        ("auto.create.topics.enable", "yes", "true or false"),
        ("log.cleanup.policy", "shred", "String must be one of: compact, delete"),
        ("log.message.timestamp.type", "Now", "CreateTime"),
        ("log.cleaner.min.cleanable.ratio", "1.5", "no more than 1"),
        ("compression.type", "brotli", "one of"),
        ("log.segment.bytes", "13", "Value must be at least 14"),
        ("listeners", "localhost:9092", "NAME://host:port"),
        ("listeners", "PLAINTEXT://:99999", "out of range"),
        ("listeners", "CLIENTS://:9093", "no security protocol defined for listener CLIENTS"),
        ("log.retention.ms", "0", "must be unlimited (-1) or, greater than or equal to 1"),
        ("broker.id", "-1", "does not generate"),
    ],
)
def test_config_error_names_key_value_and_reason(key: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        BrokerConfig.load(None, {key: value})
    message = str(info.value)
    assert key in message
    assert value in message
    assert reason in message
    assert info.value.key == key


def test_config_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "server.properties"
    path.write_text("num.partitions = many\n")
    with pytest.raises(
        ConfigError, match=r"num.partitions: Not a number of type INT .*server.properties"
    ):
        BrokerConfig.load(path, {})


def test_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.properties"
    with pytest.raises(ConfigError, match=r"nope\.properties"):
        BrokerConfig.load(missing, {})


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=str(tmp_path)):
        BrokerConfig.load(tmp_path, {})  # a directory


def test_unknown_keys_warn_and_known_kafka_keys_do_not(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="strom.config"):
        c = BrokerConfig.load(
            None,
            {"log.retenshun.ms": "5", "process.roles": "broker", "ssl.keystore.location": "/x"},
        )
    warnings = [r.getMessage() for r in caplog.records if r.name == "strom.config"]
    assert len(warnings) == 1
    assert "log.retenshun.ms" in warnings[0]
    assert "process.roles" not in warnings[0]
    assert c.raw["process.roles"] == "broker"


# --- precedence ---------------------------------------------------------------------------------


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "server.properties"
    path.write_text("num.partitions=2\nnum.io.threads=3\nmessage.max.bytes=100\n")
    env = {"STROM_NUM_IO_THREADS": "4", "STROM_MESSAGE_MAX_BYTES": "200", "HOME": "/root"}
    c = BrokerConfig.load(path, {"message.max.bytes": "300"}, env)
    assert (c.num_partitions, c.num_io_threads, c.message_max_bytes) == (2, 4, 300)
    assert c.source("num.partitions") is ConfigSource.STATIC_BROKER_CONFIG
    assert c.raw == {"num.partitions": "2", "num.io.threads": "4", "message.max.bytes": "300"}


def test_env_names() -> None:
    assert env_to_key("STROM_LOG_DIRS") == "log.dirs"
    assert env_to_key("STROM_SOME__UNDERSCORE") == "some_underscore"
    assert env_to_key("STROM_A___B") == "a-b"
    assert env_to_key("PATH") is None
    assert env_to_key("STROM_") is None


def test_env_none_reads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STROM_NUM_PARTITIONS", "7")
    assert BrokerConfig.load(None, {}).num_partitions == 1


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"log.retention.hours": "1"}, 3_600_000),
        ({"log.retention.hours": "1", "log.retention.minutes": "2"}, 120_000),
        ({"log.retention.hours": "1", "log.retention.minutes": "2", "log.retention.ms": "5"}, 5),
        ({"log.retention.ms": "-1"}, -1),
        ({"log.retention.hours": "-1"}, -1),
        ({"log.retention.minutes": "-7"}, -1),
    ],
)
def test_retention_precedence(settings: dict[str, str], expected: int) -> None:
    c = BrokerConfig.load(None, settings)
    assert c.log_retention_ms == expected
    assert log_config_for({}, c).retention_ms == expected


def test_roll_and_flush_families() -> None:
    c = load(log_roll_hours="2", log_roll_jitter_hours="1", log_flush_scheduler_interval_ms="77")
    lc = log_config_for({}, c)
    assert (lc.segment_ms, lc.segment_jitter_ms, lc.flush_ms) == (7_200_000, 3_600_000, 77)
    c = load(log_roll_hours="2", log_roll_ms="10", log_flush_interval_ms="5")
    lc = log_config_for({}, c)
    assert (lc.segment_ms, lc.flush_ms) == (10, 5)


def test_log_dir_and_log_dirs() -> None:
    assert load(log_dir="/a").log_dirs == [Path("/a")]
    c = BrokerConfig.load(None, {"log.dir": "/a", "log.dirs": "/b, /c"})
    assert c.log_dirs == [Path("/b"), Path("/c")]
    with pytest.raises(ConfigError, match="more than once"):
        BrokerConfig.load(None, {"log.dirs": "/b,/b"})


def test_node_id_and_broker_id() -> None:
    assert BrokerConfig.load(None, {"node.id": "3"}).broker_id == 3
    assert BrokerConfig.load(None, {"node.id": "3", "broker.id": "3"}).broker_id == 3
    with pytest.raises(ConfigError, match=r"node\.id"):
        BrokerConfig.load(None, {"node.id": "3", "broker.id": "4"})


def test_listeners_and_advertised() -> None:
    c = BrokerConfig.load(
        None,
        {
            "listeners": "plaintext://[::1]:9092,INTERNAL://0.0.0.0:0",
            "listener.security.protocol.map": "INTERNAL:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "advertised.listeners": "PLAINTEXT://kafka.example:19092",
        },
    )
    assert c.listeners == [Listener("PLAINTEXT", "::1", 9092), Listener("INTERNAL", "0.0.0.0", 0)]
    assert str(c.listeners[0]) == "PLAINTEXT://[::1]:9092"
    assert c.advertised_listeners == [Listener("PLAINTEXT", "kafka.example", 19092)]
    with pytest.raises(ConfigError, match="not among the listeners"):
        BrokerConfig.load(None, {"advertised.listeners": "OTHER://x:1"})


_CONTROL_PLANE = {
    "zookeeper.connect": "zk:2181",
    "listeners": "CONTROL_PLANE://127.0.0.1:9093,PLAINTEXT://127.0.0.1:9092",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROL_PLANE:PLAINTEXT",
    "control.plane.listener.name": "control_plane",
}


def test_control_plane_listener() -> None:
    plain = BrokerConfig.load(None, {})
    assert plain.control_plane_listener_name is None
    assert plain.inter_broker_listener_name == "PLAINTEXT"
    c = BrokerConfig.load(None, _CONTROL_PLANE)
    assert c.control_plane_listener_name == "CONTROL_PLANE"
    # Listed first, it is still neither the inter-broker nor the clients' listener.
    assert c.inter_broker_listener_name == "PLAINTEXT"
    assert [x.name for x in c.data_plane_listeners] == ["PLAINTEXT"]
    assert [x.name for x in c.advertised_data_plane_listeners] == ["PLAINTEXT"]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"zookeeper.connect": None}, "only a cluster"),
        ({"control.plane.listener.name": "OTHER"}, "must be one of the listeners"),
        ({"listener.security.protocol.map": "PLAINTEXT:PLAINTEXT"}, "listener.security.protocol"),
        ({"inter.broker.listener.name": "CONTROL_PLANE"}, "must differ from inter.broker"),
        (
            {"advertised.listeners": "PLAINTEXT://kafka.example:9092"},
            "must be a listener named in advertised.listeners",
        ),
        (
            {
                "listeners": "CONTROL_PLANE://127.0.0.1:9093",
                "listener.security.protocol.map": "CONTROL_PLANE:PLAINTEXT",
            },
            "needs another listener",
        ),
    ],
)
def test_control_plane_listener_errors(changes: dict[str, str | None], reason: str) -> None:
    settings = {**_CONTROL_PLANE, **changes}
    with pytest.raises(ConfigError, match=r"control\.plane\.listener\.name") as info:
        BrokerConfig.load(None, {k: v for k, v in settings.items() if v is not None})
    assert reason in str(info.value)


def test_inter_broker_listener_must_be_a_listener() -> None:
    with pytest.raises(ConfigError, match=r"inter\.broker\.listener\.name"):
        BrokerConfig.load(None, {"inter.broker.listener.name": "INTERNAL"})


def test_wildcard_listener_advertises_the_host_name() -> None:
    c = BrokerConfig.load(None, {"listeners": "PLAINTEXT://:9092"})
    assert c.listeners[0].host == ""
    assert c.advertised_listeners[0].host not in ("", "0.0.0.0")


def test_typed_getters() -> None:
    c = BrokerConfig.load(None, {})
    assert c.get_int("num.partitions") == 1
    assert c.get_bool("log.preallocate") is False
    assert c.get_float("log.cleaner.min.cleanable.ratio") == 0.5
    assert c.get_list("log.cleanup.policy") == ["delete"]
    assert c.get_str("log.message.timestamp.type") == "CreateTime"
    with pytest.raises(TypeError):
        c.get_int("log.preallocate")
    with pytest.raises(KeyError):
        c.get("no.such.key")


# --- dynamic broker configs ---------------------------------------------------------------------


def test_with_dynamic_layers() -> None:
    base = load(log_retention_ms="1000", message_max_bytes="500")
    c = base.with_dynamic({"log.retention.ms": "2000"}, {"message.max.bytes": "600"})
    assert c.log_retention_ms == 2000
    assert c.message_max_bytes == 600
    assert c.source("log.retention.ms") is ConfigSource.DYNAMIC_BROKER_CONFIG
    assert c.source("message.max.bytes") is ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG
    assert base.log_retention_ms == 1000  # immutable
    assert log_config_for({}, c).max_message_bytes == 600
    # None keeps a layer, {} clears it
    assert c.with_dynamic({}).message_max_bytes == 600
    assert c.with_dynamic(None, {}).message_max_bytes == 500


def test_dynamic_rejections() -> None:
    c = BrokerConfig.load(None, {})
    assert is_dynamic("log.retention.ms") and not is_dynamic("log.dirs")
    assert not is_dynamic("nope")
    with pytest.raises(
        ConfigError, match=r"Cannot update these configs dynamically: Set\(log\.dirs\)"
    ):
        c.with_dynamic({"log.dirs": "/x"})
    # A name Kafka does not define is a custom config: kept, as Kafka's ZooKeeper-mode broker does.
    assert c.with_dynamic({"nope": "1"}).dynamic_broker_configs == {"nope": "1"}
    with pytest.raises(ConfigError, match=r"Invalid value x for configuration log.retention.ms"):
        c.with_dynamic({"log.retention.ms": "x"})
    assert validate_dynamic_broker_configs({"log.cleanup.policy": "compact , delete"}) == {
        "log.cleanup.policy": "compact,delete"
    }


# --- describe -----------------------------------------------------------------------------------


def test_broker_describe_entries() -> None:
    c = load(log_retention_hours="24").with_dynamic({"log.retention.ms": "5000"})
    entries = {e.name: e for e in c.describe()}
    assert set(entries) == {n for n, d in BROKER_DEFS.items() if not d.internal}
    ms = entries["log.retention.ms"]
    assert ms.value == "5000"
    assert ms.source is ConfigSource.DYNAMIC_BROKER_CONFIG
    assert not ms.read_only
    assert ms.config_type is ConfigType.LONG
    assert [(s.name, s.value, s.source) for s in ms.synonyms] == [
        ("log.retention.ms", "5000", ConfigSource.DYNAMIC_BROKER_CONFIG),
        ("log.retention.hours", "24", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.retention.hours", "168", ConfigSource.DEFAULT_CONFIG),
    ]
    hours = entries["log.retention.hours"]
    assert hours.read_only
    assert [s.source for s in hours.synonyms] == [
        ConfigSource.STATIC_BROKER_CONFIG,
        ConfigSource.DEFAULT_CONFIG,
    ]
    assert entries["log.dirs"].value is None
    assert entries["log.dirs"].source is ConfigSource.DEFAULT_CONFIG
    assert entries["log.cleaner.min.cleanable.ratio"].value == "0.5"
    assert entries["log.cleaner.io.max.bytes.per.second"].value == "1.7976931348623157E308"
    assert all(e.documentation for e in entries.values())


def test_sensitive_values_are_never_described() -> None:
    c = BrokerConfig.load(None, {"ssl.keystore.password": "hunter2"})
    (entry,) = c.describe(["ssl.keystore.password"])
    assert entry.is_sensitive and entry.value is None
    assert entry.config_type is ConfigType.PASSWORD
    assert all(s.value is None for s in entry.synonyms)
    assert entry.source is ConfigSource.STATIC_BROKER_CONFIG


def test_describe_default_resource_lists_only_dynamic_defaults() -> None:
    c = BrokerConfig.load(None, {}).with_dynamic({"num.io.threads": "2"}, {"log.retention.ms": "9"})
    entries = c.describe_default()
    assert [(e.name, e.value) for e in entries] == [("log.retention.ms", "9")]
    assert entries[0].source is ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG


def test_describe_selected_names_ignores_unknown() -> None:
    c = BrokerConfig.load(None, {})
    assert [e.name for e in c.describe(["num.partitions", "bogus"])] == ["num.partitions"]


# --- topic configs ------------------------------------------------------------------------------


def test_validate_topic_configs_normalizes() -> None:
    assert validate_topic_configs(
        {"cleanup.policy": " compact, delete", "preallocate": "TRUE", "segment.bytes": "14"}
    ) == {"cleanup.policy": "compact,delete", "preallocate": "true", "segment.bytes": "14"}


@pytest.mark.parametrize(
    ("configs", "match"),
    [
        ({"retention.mss": "1"}, "Unknown topic config name: retention.mss"),
        ({"retention.ms": None}, "Null value not supported for topic configs: retention.ms"),
        (
            {"retention.ms": "-2"},
            "Invalid value -2 for configuration retention.ms: Value must be at least -1",
        ),
        (
            {"segment.bytes": "13"},
            "Invalid value 13 for configuration segment.bytes: Value must be at least 14",
        ),
        ({"min.insync.replicas": "0"}, "min.insync.replicas"),
        ({"remote.storage.enable": "true"}, "Tiered Storage functionality is disabled"),
        ({"remote.log.copy.disable": "true"}, "under Zookeeper's mode"),
        ({"message.format.version": "0.7"}, "Version 0.7 is not a valid version"),
        ({"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"}, "max.compaction.lag.ms"),
        ({"message.timestamp.type": "createtime"}, "CreateTime"),
    ],
)
def test_validate_topic_configs_rejects(configs: dict[str, str | None], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        validate_topic_configs(configs)


def test_deprecated_topic_keys_accepted() -> None:
    assert validate_topic_configs(
        {"message.downconversion.enable": "false", "message.timestamp.difference.max.ms": "10"}
    )
    lc = log_config_for({"message.timestamp.difference.max.ms": "10"}, BrokerConfig.load(None, {}))
    assert lc.message_timestamp_before_max_ms == 10
    assert lc.message_timestamp_after_max_ms == 10
    lc = log_config_for(
        {"message.timestamp.difference.max.ms": "10", "message.timestamp.after.max.ms": "3"},
        BrokerConfig.load(None, {}),
    )
    assert (lc.message_timestamp_before_max_ms, lc.message_timestamp_after_max_ms) == (10, 3)


def test_topic_override_beats_broker_synonym_beats_default() -> None:
    c = load(log_segment_bytes="2097152", log_cleanup_policy="compact")
    lc = log_config_for({"segment.bytes": "1024"}, c)
    assert lc.segment_bytes == 1024
    assert lc.cleanup_policy == frozenset({"compact"})
    assert lc.compact and not lc.delete
    assert lc.index_interval_bytes == 4096
    assert log_config_for({}, c).segment_bytes == 2097152


def test_all_log_config_fields_follow_their_broker_synonyms() -> None:
    c = BrokerConfig.load(
        None,
        {
            "log.index.size.max.bytes": "4096",
            "log.index.interval.bytes": "100",
            "log.retention.bytes": "5000",
            "log.cleaner.delete.retention.ms": "11",
            "log.cleaner.min.cleanable.ratio": "0.25",
            "log.cleaner.min.compaction.lag.ms": "12",
            "log.cleaner.max.compaction.lag.ms": "13",
            "log.segment.delete.delay.ms": "14",
            "log.flush.interval.messages": "15",
            "message.max.bytes": "16",
            "log.message.timestamp.type": "LogAppendTime",
            "log.message.timestamp.before.max.ms": "17",
            "log.message.timestamp.after.max.ms": "18",
            "min.insync.replicas": "2",
            "unclean.leader.election.enable": "true",
            "compression.type": "zstd",
            "log.preallocate": "true",
        },
    )
    assert log_config_for({}, c) == LogConfig(
        segment_index_bytes=4096,
        index_interval_bytes=100,
        retention_bytes=5000,
        delete_retention_ms=11,
        min_cleanable_dirty_ratio=0.25,
        min_compaction_lag_ms=12,
        max_compaction_lag_ms=13,
        file_delete_delay_ms=14,
        flush_messages=15,
        max_message_bytes=16,
        message_timestamp_type="LogAppendTime",
        message_timestamp_before_max_ms=17,
        message_timestamp_after_max_ms=18,
        min_insync_replicas=2,
        unclean_leader_election_enable=True,
        compression_type="zstd",
        preallocate=True,
    )


def test_describe_topic_configs_sources_and_synonyms() -> None:
    c = load(log_retention_hours="24", log_segment_bytes="2097152").with_dynamic(
        None, {"log.cleanup.policy": "compact"}
    )
    entries = {e.name: e for e in describe_topic_configs({"segment.bytes": "100"}, c)}
    assert set(entries) == set(TOPIC_DEFS)
    seg = entries["segment.bytes"]
    assert (seg.value, seg.source, seg.read_only) == (
        "100",
        ConfigSource.DYNAMIC_TOPIC_CONFIG,
        False,
    )
    assert [(s.name, s.value, s.source) for s in seg.synonyms] == [
        ("segment.bytes", "100", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        ("log.segment.bytes", "2097152", ConfigSource.STATIC_BROKER_CONFIG),
        ("log.segment.bytes", "1073741824", ConfigSource.DEFAULT_CONFIG),
    ]
    ret = entries["retention.ms"]
    assert (ret.value, ret.source) == ("86400000", ConfigSource.STATIC_BROKER_CONFIG)
    pol = entries["cleanup.policy"]
    assert (pol.value, pol.source) == ("compact", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)
    down = entries["message.downconversion.enable"]
    assert (down.value, down.source) == ("true", ConfigSource.DEFAULT_CONFIG)
    assert [(s.name, s.value, s.source) for s in down.synonyms] == [
        ("log.message.downconversion.enable", "true", ConfigSource.DEFAULT_CONFIG)
    ]
    throttled = entries["follower.replication.throttled.replicas"]
    assert (throttled.value, throttled.source, throttled.synonyms) == (
        "",
        ConfigSource.DEFAULT_CONFIG,
        [],
    )
    assert entries["min.cleanable.dirty.ratio"].config_type is ConfigType.DOUBLE


def test_describe_topic_configs_selected_names() -> None:
    c = BrokerConfig.load(None, {})
    names = [e.name for e in describe_topic_configs({}, c, ["retention.ms", "nope"])]
    assert names == ["retention.ms"]


def test_format_value_like_java() -> None:
    assert format_value(ConfigType.DOUBLE, 0.5) == "0.5"
    assert format_value(ConfigType.DOUBLE, 1.0) == "1.0"
    assert format_value(ConfigType.DOUBLE, 1e-5) == "1.0E-5"
    assert format_value(ConfigType.DOUBLE, 12345678.0) == "1.2345678E7"
    assert format_value(ConfigType.BOOLEAN, True) == "true"
    assert format_value(ConfigType.LIST, ["a", "b"]) == "a,b"
    assert format_value(ConfigType.LONG, None) is None


# --- properties files ---------------------------------------------------------------------------


def test_properties_syntax() -> None:
    text = (
        "# comment\n"
        "! also a comment\n"
        "\n"
        "   \t\n"
        "a=1\n"
        "b: 2\n"
        "c 3\n"
        "  d   =   4  \n"
        "e=\n"
        "f\n"
        "g = x = y\n"
        "long = one, \\\n"
        "       two, \\\n"
        "       three\n"
        "esc\\ key\\=x = tab\\there\\nnl\\u0041\\\\\n"
        "colon\\:key: v\n"
        "# trailing comment \\\n"
        "after=comment\n"
        "h=1\n"
        "h=2\n"
    )
    assert parse_properties(text) == {
        "a": "1",
        "b": "2",
        "c": "3",
        "d": "4  ",
        "e": "",
        "f": "",
        "g": "x = y",
        "long": "one, two, three",
        "esc key=x": "tab\there\nnlA\\",
        "colon:key": "v",
        "after": "comment",
        "h": "2",
    }


def test_properties_line_endings_and_surrogates() -> None:
    assert parse_properties("a=1\r\nb=2\rc=3") == {"a": "1", "b": "2", "c": "3"}
    assert parse_properties("k=\\uD83D\\uDE00") == {"k": "\U0001f600"}
    assert parse_properties("k=v\\") == {"k": "v"}


def test_properties_bad_unicode_escape() -> None:
    with pytest.raises(ConfigError, match="uXXXX"):
        parse_properties("k=\\u12G4")


def test_properties_latin1_file(tmp_path: Path) -> None:
    path = tmp_path / "x.properties"
    path.write_bytes("name=caf\xe9\n".encode("latin-1"))
    assert load_properties(path) == {"name": "caf\xe9"}


def test_example_server_properties_loads() -> None:
    path = Path(__file__).resolve().parents[2] / "config" / "server.properties"
    c = BrokerConfig.load(path, {})
    assert c.listeners == [Listener("PLAINTEXT", "127.0.0.1", 9092)]


_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"]),
    max_size=30,
)


@pytest.mark.property
@given(st.dictionaries(_text.filter(bool), _text, max_size=8))
def test_properties_round_trip(values: dict[str, str]) -> None:
    assert parse_properties(dump_properties(values)) == values
