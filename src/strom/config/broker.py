"""The broker's configuration: where values come from, what they resolve to, how they are described.

Layers, lowest priority first: Kafka's default (or Strom's, where documented) < the properties file
< `STROM_*` environment variables < `--set key=value` overrides < dynamic cluster-wide defaults
< dynamic per-broker values (the last two set at run time through AlterConfigs and kept by the
metadata store). A `BrokerConfig` is immutable; a dynamic change builds a new one with
`with_dynamic`, so a request in flight never sees half an update.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from strom.config.broker_keys import (
    BROKER_DEFS,
    TIME_FAMILIES,
    config_type_of,
    family_of,
    has_no_effect,
    is_known_key,
    known_def,
    listener_base,
)
from strom.config.definitions import (
    ConfigDef,
    ConfigEntry,
    ConfigError,
    ConfigSource,
    ConfigSynonym,
    ConfigType,
    ConfigValue,
    format_value,
)
from strom.config.dynamic import validate_dynamic_key
from strom.config.listener_settings import ListenerSettings
from strom.config.listeners import Listener, parse_http_listeners
from strom.config.properties import load_properties
from strom.config.requirements import check_requirements

log = logging.getLogger("strom.config")

ENV_PREFIX = "STROM_"


def env_to_key(var: str) -> str | None:
    """STROM_LOG_DIRS -> log.dirs; `__` stands for `_` and `___` for `-` (as Kafka's images do)."""
    if not var.startswith(ENV_PREFIX) or len(var) == len(ENV_PREFIX):
        return None
    body = var[len(ENV_PREFIX) :].lower()
    return (
        body.replace("___", "\0")
        .replace("__", "\1")
        .replace("_", ".")
        .replace("\0", "-")
        .replace("\1", "_")
    )


def is_dynamic(name: str) -> bool:
    """Whether AlterConfigs may change this broker key at run time."""
    d = BROKER_DEFS.get(name)
    return d is not None and d.dynamic


def log_no_effect(names: Iterable[str], where: Mapping[str, str] | None = None) -> None:
    """One log line per key that was set but does nothing in Strom."""
    for name in sorted(set(names)):
        if has_no_effect(name):
            origin = f" (from {where[name]})" if where and name in where else ""
            log.info(
                "%s%s has no effect in Strom; it is accepted and stored as Kafka 3.9 does",
                name,
                origin,
            )


class BrokerConfig(ListenerSettings):
    """Resolved broker configuration with typed attributes for what the server reads."""

    # identity and network
    broker_id: int
    broker_rack: str | None
    zookeeper_connect: str | None
    http_listeners: list[Listener]
    socket_send_buffer_bytes: int
    socket_receive_buffer_bytes: int
    socket_request_max_bytes: int
    connections_max_idle_ms: int
    num_io_threads: int
    queued_max_requests: int
    message_max_bytes: int
    fetch_max_bytes: int
    max_incremental_fetch_session_cache_slots: int
    # storage
    log_dirs: list[Path]
    num_partitions: int
    default_replication_factor: int
    auto_create_topics_enable: bool
    delete_topic_enable: bool
    log_retention_ms: int  # resolved from ms/minutes/hours; -1 = unlimited
    log_roll_ms: int
    log_roll_jitter_ms: int
    log_flush_interval_ms: int
    log_retention_check_interval_ms: int
    log_flush_scheduler_interval_ms: int
    log_flush_offset_checkpoint_interval_ms: int
    log_flush_start_offset_checkpoint_interval_ms: int
    log_cleaner_enable: bool
    log_cleaner_backoff_ms: int
    # groups, offsets, transactions, replication
    group_initial_rebalance_delay_ms: int
    group_min_session_timeout_ms: int
    group_max_session_timeout_ms: int
    group_max_size: int
    offsets_topic_num_partitions: int
    offsets_topic_replication_factor: int
    offsets_topic_segment_bytes: int
    offsets_retention_minutes: int
    offsets_retention_check_interval_ms: int
    transaction_state_log_num_partitions: int
    transaction_state_log_replication_factor: int
    transactional_id_expiration_ms: int
    transaction_max_timeout_ms: int
    producer_id_expiration_ms: int
    replica_lag_time_max_ms: int
    # limits against hostile or broken clients
    queued_max_request_bytes: int  # -1: no limit
    max_connections: int
    max_connections_per_ip: int
    max_connection_creation_rate: int
    sasl_server_max_receive_size: int

    def __init__(
        self,
        static: Mapping[str, str] | None = None,
        origins: Mapping[str, str] | None = None,
        dynamic_broker: Mapping[str, str] | None = None,
        dynamic_default: Mapping[str, str] | None = None,
    ) -> None:
        self._static = dict(static or {})
        self._origins = dict(origins or {})
        self._dynamic_broker = dict(dynamic_broker or {})
        self._dynamic_default = dict(dynamic_default or {})
        self._values: dict[str, ConfigValue] = {}
        self._sources: dict[str, ConfigSource] = {}
        for name, d in BROKER_DEFS.items():
            self._values[name], self._sources[name] = self._resolve(d)
        self._check_other_keys()
        self._derive()

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        properties_path: Path | None,
        overrides: Mapping[str, str],
        env: Mapping[str, str] | None = None,
    ) -> BrokerConfig:
        """Reads the file, then `STROM_*` variables from `env`, then `overrides` (later wins).

        `env=None` reads no environment at all (the CLI passes `os.environ`), which keeps tests
        independent of the shell they run in.
        """
        static: dict[str, str] = {}
        origins: dict[str, str] = {}
        if properties_path is not None:
            for key, value in load_properties(properties_path).items():
                static[key], origins[key] = value, str(properties_path)
        for var, value in sorted((env or {}).items()):
            env_key = env_to_key(var)
            if env_key is not None:
                static[env_key], origins[env_key] = value, f"environment variable {var}"
        for key, value in overrides.items():
            static[key], origins[key] = value, "command line"
        unknown = sorted(k for k in static if not is_known_key(k))
        if unknown:
            log.warning(
                "ignoring unknown configuration keys: %s",
                ", ".join(f"{k} (from {origins[k]})" for k in unknown),
            )
        config = cls(static, origins)
        log_no_effect(static, origins)
        return config

    def with_dynamic(
        self,
        per_broker: Mapping[str, str] | None = None,
        cluster_default: Mapping[str, str] | None = None,
    ) -> BrokerConfig:
        """A copy with these dynamic values (each map replaces the current one; None keeps it).

        Raises ConfigError for a key that is not dynamically updatable or a bad value; the
        server answers those with INVALID_CONFIG. Names Kafka does not define are kept.
        """
        for layer in (per_broker or {}, cluster_default or {}):
            for key in layer:
                validate_dynamic_key(key)
        return BrokerConfig(
            self._static,
            self._origins,
            self._dynamic_broker if per_broker is None else per_broker,
            self._dynamic_default if cluster_default is None else cluster_default,
        )

    def _resolve(self, d: ConfigDef) -> tuple[ConfigValue, ConfigSource]:
        layers = (
            (self._dynamic_broker, ConfigSource.DYNAMIC_BROKER_CONFIG, "dynamic broker config"),
            (
                self._dynamic_default,
                ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
                "dynamic cluster-wide config",
            ),
            (self._static, ConfigSource.STATIC_BROKER_CONFIG, None),
        )
        for values, source, origin in layers:
            if d.name in values:
                return d.parse(values[d.name], origin or self._origins.get(d.name)), source
        return d.default, ConfigSource.DEFAULT_CONFIG

    def _check_other_keys(self) -> None:
        """Values of listener-level and dynamic-only keys parse as their definition says."""
        layers = (
            (self._dynamic_broker, "dynamic broker config"),
            (self._dynamic_default, "dynamic cluster-wide config"),
            (self._static, None),
        )
        for values, origin in layers:
            for key, raw in values.items():
                if key in BROKER_DEFS:
                    continue
                d = known_def(key)
                if d is not None:
                    d.parse(raw, origin or self._origins.get(key), name=key)

    def _error(self, key: str, reason: str) -> ConfigError:
        raw = self._layer_value(key)
        origin = self._origins.get(key)
        where = f" (from {origin})" if origin and key in self._static else ""
        return ConfigError(
            f"Invalid value {raw!r} for configuration {key}{where}: {reason}", key, raw
        )

    def _layer_value(self, key: str) -> str | None:
        for layer in (self._dynamic_broker, self._dynamic_default, self._static):
            if key in layer:
                return layer[key]
        return None

    def _derive(self) -> None:
        for name in (  # noqa: SIM905 - integer keys copied to attributes of the same name
            "socket.send.buffer.bytes socket.receive.buffer.bytes socket.request.max.bytes "
            "connections.max.idle.ms num.io.threads queued.max.requests message.max.bytes "
            "fetch.max.bytes max.incremental.fetch.session.cache.slots num.partitions "
            "default.replication.factor log.retention.check.interval.ms "
            "log.flush.scheduler.interval.ms log.flush.offset.checkpoint.interval.ms "
            "log.flush.start.offset.checkpoint.interval.ms log.cleaner.backoff.ms "
            "group.initial.rebalance.delay.ms group.min.session.timeout.ms "
            "group.max.session.timeout.ms group.max.size offsets.topic.num.partitions "
            "offsets.topic.replication.factor offsets.topic.segment.bytes "
            "offsets.retention.minutes offsets.retention.check.interval.ms "
            "transaction.state.log.num.partitions transaction.state.log.replication.factor "
            "transactional.id.expiration.ms transaction.max.timeout.ms "
            "producer.id.expiration.ms replica.lag.time.max.ms queued.max.request.bytes "
            "max.connections max.connections.per.ip max.connection.creation.rate "
            "sasl.server.max.receive.size"
        ).split():
            setattr(self, name.replace(".", "_"), self.get_int(name))
        for name in ("auto.create.topics.enable", "delete.topic.enable", "log.cleaner.enable"):
            setattr(self, name.replace(".", "_"), self.get_bool(name))
        self.broker_rack = self.get_str("broker.rack")
        self.zookeeper_connect = self.get_str("zookeeper.connect")
        self.broker_id = self._derive_broker_id()
        self.log_retention_ms = self.resolved_ms("log.retention.ms")
        self.log_roll_ms = self.resolved_ms("log.roll.ms")
        self.log_roll_jitter_ms = self.resolved_ms("log.roll.jitter.ms")
        self.log_flush_interval_ms = self.resolved_ms("log.flush.interval.ms")
        check_requirements(self)
        if self.get_int("log.cleaner.min.compaction.lag.ms") > self.get_int(
            "log.cleaner.max.compaction.lag.ms"
        ):
            raise self._error(
                "log.cleaner.min.compaction.lag.ms",
                "must not be greater than log.cleaner.max.compaction.lag.ms",
            )
        self.log_dirs = self._derive_log_dirs()
        self._derive_listeners()
        self._derive_plane_listeners()
        self.http_listeners = self._derive_http_listeners()
        self.max_connections_per_ip_overrides = self._derive_per_ip_overrides()

    def _derive_broker_id(self) -> int:
        broker_id = self.get_int("broker.id")
        node_id = self.get_int("node.id")
        explicit = self._sources["broker.id"] is not ConfigSource.DEFAULT_CONFIG
        if node_id >= 0 and not explicit:
            broker_id = node_id
        elif node_id >= 0 and node_id != broker_id:
            raise self._error("node.id", f"differs from broker.id {broker_id}; set one of them")
        if broker_id < 0:
            raise self._error("broker.id", "Strom does not generate broker ids; use 0 or more")
        return broker_id

    def _derive_log_dirs(self) -> list[Path]:
        key = "log.dirs" if self.get("log.dirs") is not None else "log.dir"
        value = self.get(key)
        items = value if isinstance(value, list) else str(value or "").split(",")
        dirs = [item.strip() for item in items]
        if not dirs or any(not d for d in dirs):
            raise self._error(key, "needs at least one directory and no empty entries")
        if len(set(dirs)) != len(dirs):
            raise self._error(key, "lists a directory more than once")
        return [Path(d).expanduser() for d in dirs]

    def _derive_http_listeners(self) -> list[Listener]:
        key = "strom.http.listeners"
        raw = self._layer_value(key)
        if not raw:
            return []
        try:
            out = parse_http_listeners(raw)
        except ValueError as exc:
            raise self._error(key, str(exc)) from None
        for endpoint in out:
            if endpoint.port and endpoint.port in {x.port for x in self.listeners}:
                raise self._error(key, f"port {endpoint.port} is also a Kafka listener's")
        return out

    # --- reading --------------------------------------------------------------------------

    @property
    def raw(self) -> dict[str, str]:
        """Every key set statically (file, environment, overrides), known or not, as written."""
        return dict(self._static)

    @property
    def dynamic_broker_configs(self) -> dict[str, str]:
        return dict(self._dynamic_broker)

    @property
    def dynamic_default_configs(self) -> dict[str, str]:
        return dict(self._dynamic_default)

    def get(self, name: str) -> ConfigValue:
        """The effective typed value of a defined broker key (None: unset with no default)."""
        if name not in self._values:
            raise KeyError(f"unknown broker configuration {name}")
        value = self._values[name]
        return list(value) if isinstance(value, list) else value

    def get_int(self, name: str) -> int:
        value = self.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} is not an integer (it is {value!r})")
        return value

    def get_bool(self, name: str) -> bool:
        value = self.get(name)
        if not isinstance(value, bool):
            raise TypeError(f"{name} is not a boolean (it is {value!r})")
        return value

    def get_float(self, name: str) -> float:
        value = self.get(name)
        if not isinstance(value, float):
            raise TypeError(f"{name} is not a double (it is {value!r})")
        return value

    def get_str(self, name: str) -> str | None:
        value = self.get(name)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} is not a string (it is {value!r})")
        return value

    def get_list(self, name: str) -> list[str] | None:
        value = self.get(name)
        if value is not None and not isinstance(value, list):
            raise TypeError(f"{name} is not a list (it is {value!r})")
        return value

    def origin(self, name: str) -> str | None:
        """Where a statically set key came from (a file, an environment variable, the command
        line)."""
        return self._origins.get(name)

    def source(self, name: str) -> ConfigSource:
        if name not in self._sources:
            raise KeyError(f"unknown broker configuration {name}")
        return self._sources[name]

    def resolved_ms(self, family_head: str) -> int:
        """A time setting with Kafka's precedence among its keys (e.g. ms > minutes > hours)."""
        for key, factor in TIME_FAMILIES[family_head]:
            value = self.get(key)
            if value is not None:
                millis = self.get_int(key) * factor
                # Kafka folds every negative retention into -1 ("unlimited").
                return -1 if family_head == "log.retention.ms" and millis < 0 else millis
        raise AssertionError(f"{family_head} has no default")  # the last member always has one

    # --- DescribeConfigs ------------------------------------------------------------------

    def tiers(self) -> list[tuple[Mapping[str, str], ConfigSource]]:
        """The set layers, highest priority first (without the defaults)."""
        return [
            (self._dynamic_broker, ConfigSource.DYNAMIC_BROKER_CONFIG),
            (self._dynamic_default, ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG),
            (self._static, ConfigSource.STATIC_BROKER_CONFIG),
        ]

    def synonyms_of(self, keys: Iterable[str], sensitive: bool) -> list[ConfigSynonym]:
        """Where `keys` are set, layer by layer (Kafka lists all keys of a layer, then the next),
        ending with their defaults."""
        keys = list(keys)
        out: list[ConfigSynonym] = []
        for values, source in self.tiers():
            for key in keys:
                if key in values:
                    out.append(ConfigSynonym(key, None if sensitive else values[key], source))
        for key in keys:
            d = BROKER_DEFS.get(key)
            if d is not None and d.default is not None:
                text = format_value(d.type, d.default)
                out.append(
                    ConfigSynonym(key, None if sensitive else text, ConfigSource.DEFAULT_CONFIG)
                )
        return out

    def _entry(self, name: str, per_broker: bool) -> ConfigEntry:
        """One key as DescribeConfigs gives it (Kafka's ConfigHelper.createBrokerConfigEntry)."""
        d = BROKER_DEFS.get(name)
        base = listener_base(name) if d is None else None
        if d is not None:
            related = family_of(name)
        elif base is not None and base != name:
            related = (name, base)
        else:
            related = (name,)
        ctype = config_type_of(name)
        # Kafka hides the value of a key whose type it cannot tell: it might be a password.
        sensitive = ctype in (ConfigType.PASSWORD, ConfigType.UNKNOWN)
        synonyms = self.synonyms_of(related, sensitive)
        if not per_broker:
            synonyms = [
                s for s in synonyms if s.source is ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG
            ]
        # Higher-priority relatives (log.retention.ms when describing log.retention.hours) are
        # not synonyms of this key; Kafka drops everything before the key's own first entry.
        while synonyms and synonyms[0].name != name:
            synonyms.pop(0)
        if sensitive:
            value = None
        elif not per_broker:
            value = self._dynamic_default.get(name)
        elif d is not None:
            value = format_value(d.type, self._values[name])
        else:
            value = self._layer_value(name)
        return ConfigEntry(
            name=name,
            value=value,
            # Kafka reports every key outside its list of dynamic keys as read-only, including
            # listener-level and dynamic-only keys that AlterConfigs does change.
            read_only=d is None or not d.dynamic,
            source=synonyms[0].source if synonyms else ConfigSource.DEFAULT_CONFIG,
            is_sensitive=sensitive,
            config_type=ctype,
            synonyms=synonyms,
            # Kafka documents only the keys it defines under that very name.
            documentation=None if d is None else d.documentation,
        )

    def describe(self, names: Iterable[str] | None = None) -> list[ConfigEntry]:
        """DescribeConfigs for this broker's resource: every key Kafka defines (its internal
        keys only when set) and every other key that is set, or the named ones of those; by
        name."""
        keys = {n for n, d in BROKER_DEFS.items() if not d.internal}
        for values, _ in self.tiers():
            keys.update(values)
        if names is not None:
            keys &= set(names)
        return [self._entry(n, per_broker=True) for n in sorted(keys)]

    def describe_default(self, names: Iterable[str] | None = None) -> list[ConfigEntry]:
        """DescribeConfigs for the cluster-default broker resource (empty name): only the keys
        set as dynamic cluster-wide defaults, as Kafka answers."""
        keys = set(self._dynamic_default)
        if names is not None:
            keys &= set(names)
        return [self._entry(n, per_broker=False) for n in sorted(keys)]
