"""Topic configuration: validating overrides, resolving a topic's LogConfig, describing it.

A topic's effective value for a key is its own override if it has one, else the first of the
key's broker synonyms that has a value (dynamic per-broker > dynamic cluster default > static;
and within a family ms > minutes > hours), converted to the topic key's unit, else Kafka's default.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from strom.config.broker import BrokerConfig
from strom.config.definitions import (
    LONG_MAX,
    ConfigDef,
    ConfigEntry,
    ConfigError,
    ConfigSource,
    ConfigSynonym,
    ConfigValue,
    InvalidConfigurationError,
    format_value,
)
from strom.config.topic_keys import SYNONYM_FACTORS, TOPIC_DEFS
from strom.storage.log_config import LogConfig

log = logging.getLogger("strom.config")


def validate_topic_configs(configs: Mapping[str, str | None]) -> dict[str, str]:
    """Checks topic overrides (CreateTopics, AlterConfigs) and returns them in canonical form.

    Raises InvalidConfigurationError for an unknown key or a missing value and ConfigError for a
    bad value, with Kafka's messages; the server answers INVALID_CONFIG.
    """
    for key in configs:
        if key not in TOPIC_DEFS:
            raise InvalidConfigurationError(f"Unknown topic config name: {key}", key)
    missing = [key for key, raw in configs.items() if raw is None]
    if missing:
        raise InvalidConfigurationError(
            f"Null value not supported for topic configs: {','.join(missing)}", missing[0]
        )
    out: dict[str, str] = {}
    parsed: dict[str, ConfigValue] = {}
    for key, raw in configs.items():
        assert raw is not None
        d = TOPIC_DEFS[key]
        parsed[key] = d.parse(raw)
        # Canonical text: "compact, delete" -> "compact,delete", " TRUE" -> "true".
        out[key] = raw if d.sensitive else (format_value(d.type, parsed[key]) or "")
    min_lag = parsed.get("min.compaction.lag.ms", TOPIC_DEFS["min.compaction.lag.ms"].default)
    max_lag = parsed.get("max.compaction.lag.ms", TOPIC_DEFS["max.compaction.lag.ms"].default)
    if isinstance(min_lag, int) and isinstance(max_lag, int):
        check_compaction_lags(min_lag, max_lag)
    if parsed.get("remote.log.delete.on.disable") is True or parsed.get("remote.log.copy.disable"):
        # Kafka's ZooKeeper-mode rule; Strom's cluster is ZooKeeper-coordinated.
        raise InvalidConfigurationError(
            "It is invalid to set `remote.log.delete.on.disable` or `remote.log.copy.disable` "
            "under Zookeeper's mode."
        )
    if parsed.get("remote.storage.enable") is True:
        raise ConfigError(
            "Tiered Storage functionality is disabled in the broker. Topic cannot be configured "
            "with remote log storage.",
            "remote.storage.enable",
            "true",
        )
    return out


def log_no_effect_topic_keys(topic: str, configs: Iterable[str]) -> None:
    """One log line per key set on `topic` that does nothing in Strom."""
    for name in sorted(set(configs)):
        d = TOPIC_DEFS.get(name)
        if d is not None and d.unused:
            log.info(
                "topic %s: %s has no effect in Strom; it is accepted and stored as Kafka 3.9 does",
                topic,
                name,
            )


def check_compaction_lags(min_lag: int, max_lag: int) -> None:
    if min_lag > max_lag:
        raise InvalidConfigurationError(
            f"conflict topic config setting min.compaction.lag.ms ({min_lag}) > "
            f"max.compaction.lag.ms ({max_lag})",
            "min.compaction.lag.ms",
            str(min_lag),
        )


def _broker_value(d: ConfigDef, broker: BrokerConfig) -> tuple[ConfigValue, str | None]:
    """The first broker synonym with a value, in the topic key's unit, and that synonym's name."""
    for syn in d.synonyms:
        try:
            value = broker.get(syn)
        except KeyError:  # a synonym Strom does not define; nothing to inherit
            continue
        if value is None:
            continue
        factor = SYNONYM_FACTORS.get(syn)
        if factor is not None and isinstance(value, int):
            value = value * factor
        if d.name == "retention.ms" and isinstance(value, int) and value < 0:
            value = -1  # every negative broker retention means "unlimited"
        return value, syn
    return None, None


def effective_topic_value(
    name: str, topic_overrides: Mapping[str, str], broker: BrokerConfig
) -> tuple[ConfigValue, ConfigSource]:
    """A topic key's value and where it came from (for DescribeConfigs' `config_source`)."""
    d = TOPIC_DEFS[name]
    if name in topic_overrides:
        return d.parse(
            topic_overrides[name], f"topic config {name}"
        ), ConfigSource.DYNAMIC_TOPIC_CONFIG
    value, syn = _broker_value(d, broker)
    if syn is not None:
        return value, broker.source(syn)
    return d.default, ConfigSource.DEFAULT_CONFIG


def _values(topic_overrides: Mapping[str, str], broker: BrokerConfig) -> dict[str, ConfigValue]:
    values = {n: effective_topic_value(n, topic_overrides, broker)[0] for n in TOPIC_DEFS}
    # The deprecated single bound fills in whichever directional bound was left at its default.
    difference = values["message.timestamp.difference.max.ms"]
    for key in ("message.timestamp.before.max.ms", "message.timestamp.after.max.ms"):
        if values[key] == LONG_MAX and isinstance(difference, int):
            values[key] = difference
    return values


def _int(values: Mapping[str, ConfigValue], key: str) -> int:
    value = values[key]
    assert isinstance(value, int) and not isinstance(value, bool), (key, value)
    return value


def _bool(values: Mapping[str, ConfigValue], key: str) -> bool:
    value = values[key]
    assert isinstance(value, bool), (key, value)
    return value


def log_config_for(topic_overrides: Mapping[str, str], broker: BrokerConfig) -> LogConfig:
    """The storage layer's settings for a topic with these overrides on this broker."""
    v = _values(topic_overrides, broker)
    policy = v["cleanup.policy"]
    ratio = v["min.cleanable.dirty.ratio"]
    min_lag, max_lag = _int(v, "min.compaction.lag.ms"), _int(v, "max.compaction.lag.ms")
    check_compaction_lags(min_lag, max_lag)
    return LogConfig(
        segment_bytes=_int(v, "segment.bytes"),
        segment_ms=_int(v, "segment.ms"),
        segment_jitter_ms=_int(v, "segment.jitter.ms"),
        segment_index_bytes=_int(v, "segment.index.bytes"),
        index_interval_bytes=_int(v, "index.interval.bytes"),
        retention_ms=_int(v, "retention.ms"),
        retention_bytes=_int(v, "retention.bytes"),
        cleanup_policy=frozenset(policy if isinstance(policy, list) else []),
        delete_retention_ms=_int(v, "delete.retention.ms"),
        min_cleanable_dirty_ratio=float(ratio) if isinstance(ratio, int | float) else 0.5,
        min_compaction_lag_ms=min_lag,
        max_compaction_lag_ms=max_lag,
        file_delete_delay_ms=_int(v, "file.delete.delay.ms"),
        flush_messages=_int(v, "flush.messages"),
        flush_ms=_int(v, "flush.ms"),
        max_message_bytes=_int(v, "max.message.bytes"),
        message_timestamp_type=str(v["message.timestamp.type"]),
        message_timestamp_before_max_ms=_int(v, "message.timestamp.before.max.ms"),
        message_timestamp_after_max_ms=_int(v, "message.timestamp.after.max.ms"),
        min_insync_replicas=_int(v, "min.insync.replicas"),
        unclean_leader_election_enable=_bool(v, "unclean.leader.election.enable"),
        compression_type=str(v["compression.type"]),
        compression_gzip_level=_int(v, "compression.gzip.level"),
        compression_lz4_level=_int(v, "compression.lz4.level"),
        compression_zstd_level=_int(v, "compression.zstd.level"),
        message_downconversion_enable=_bool(v, "message.downconversion.enable"),
        preallocate=_bool(v, "preallocate"),
    )


def describe_topic_configs(
    topic_overrides: Mapping[str, str],
    broker: BrokerConfig,
    names: Iterable[str] | None = None,
) -> list[ConfigEntry]:
    """DescribeConfigs for a topic: every topic key (or the ones named that exist), by name.

    Synonyms: the topic override (DYNAMIC_TOPIC_CONFIG), then the broker synonyms that are set,
    layer by layer, then their defaults. Unlike Kafka, a lower-priority broker synonym is listed
    even when the first one is unset (Kafka drops it, and then reports DEFAULT_CONFIG for a value
    that came from e.g. log.retention.hours).
    """
    values = _values(topic_overrides, broker)
    wanted = sorted(TOPIC_DEFS) if names is None else sorted(set(names) & set(TOPIC_DEFS))
    out: list[ConfigEntry] = []
    for name in wanted:
        d = TOPIC_DEFS[name]
        text = None if d.sensitive else format_value(d.type, values[name])
        synonyms: list[ConfigSynonym] = []
        if name in topic_overrides:
            synonyms.append(ConfigSynonym(name, text, ConfigSource.DYNAMIC_TOPIC_CONFIG))
        synonyms.extend(broker.synonyms_of(d.synonyms, d.sensitive))
        out.append(
            ConfigEntry(
                name=name,
                value=text,
                read_only=False,
                source=synonyms[0].source if synonyms else ConfigSource.DEFAULT_CONFIG,
                is_sensitive=d.sensitive,
                config_type=d.type,
                synonyms=synonyms,
                documentation=d.documentation,
            )
        )
    return out
