"""Kafka's checks across broker keys, made when a configuration is built (at start-up and for
every dynamic change), with Kafka's messages ("requirement failed: ...").

A key the file or the command line set is named after the message with its value and origin,
so a start-up error says where to look; a dynamic change gets Kafka's message alone.
"""

from __future__ import annotations

from typing import Protocol

from strom.config.broker_keys import family_of
from strom.config.definitions import ConfigError, ConfigSource


class CheckedConfig(Protocol):
    """What the checks read of a `strom.config.broker.BrokerConfig` being built (which calls
    them, so they see it through this protocol rather than importing it)."""

    log_retention_ms: int
    log_roll_ms: int
    log_roll_jitter_ms: int

    @property
    def raw(self) -> dict[str, str]: ...

    def get_int(self, name: str) -> int: ...

    def get_bool(self, name: str) -> bool: ...

    def get_str(self, name: str) -> str | None: ...

    def origin(self, name: str) -> str | None: ...

    def source(self, name: str) -> ConfigSource: ...


def _require(config: CheckedConfig, ok: bool, keys: tuple[str, ...], message: str) -> None:
    """Kafka's cross-key checks (KafkaConfig.validateValues) with their messages; the keys
    involved that were set in the file or on the command line are named after it."""
    if ok:
        return
    static = config.raw
    named = [
        name
        for key in keys
        for name in family_of(key)
        if name in static and config.source(name) is ConfigSource.STATIC_BROKER_CONFIG
    ]
    where = ", ".join(f"{n}={static[n]} from {config.origin(n) or 'the start'}" for n in named)
    raise ConfigError(f"requirement failed: {message}" + (f" ({where})" if where else ""), keys[0])


def check_requirements(config: CheckedConfig) -> None:
    """Kafka's checks across keys (KafkaConfig.validateValues), with its messages."""
    _require(
        config,
        config.log_roll_ms >= 1,
        ("log.roll.ms",),
        "log.roll.ms must be greater than or equal to 1",
    )
    _require(
        config,
        config.log_roll_jitter_ms >= 0,
        ("log.roll.jitter.ms",),
        "log.roll.jitter.ms must be greater than or equal to 0",
    )
    _require(
        config,
        config.log_retention_ms != 0,
        ("log.retention.ms",),
        "log.retention.ms must be unlimited (-1) or, greater than or equal to 1",
    )
    threads = config.get_int("log.cleaner.threads")
    _require(
        config,
        threads == 0 or config.get_int("log.cleaner.dedupe.buffer.size") // threads > 1 << 20,
        ("log.cleaner.dedupe.buffer.size", "log.cleaner.threads"),
        "log.cleaner.dedupe.buffer.size must be at least 1MB per cleaner thread.",
    )
    fetch_wait = config.get_int("replica.fetch.wait.max.ms")
    _require(
        config,
        fetch_wait <= config.get_int("replica.socket.timeout.ms"),
        ("replica.fetch.wait.max.ms", "replica.socket.timeout.ms"),
        "replica.socket.timeout.ms should always be at least replica.fetch.wait.max.ms to "
        "prevent unnecessary socket timeouts",
    )
    _require(
        config,
        fetch_wait <= config.get_int("replica.lag.time.max.ms"),
        ("replica.fetch.wait.max.ms", "replica.lag.time.max.ms"),
        "replica.fetch.wait.max.ms should always be less than or equal to "
        "replica.lag.time.max.ms to prevent frequent changes in ISR",
    )
    queued = config.get_int("queued.max.request.bytes")
    _require(
        config,
        queued <= 0 or queued >= config.get_int("socket.request.max.bytes"),
        ("queued.max.request.bytes", "socket.request.max.bytes"),
        "queued.max.request.bytes must be larger or equal to socket.request.max.bytes",
    )
    _require(
        config,
        config.get_int("max.connections.per.ip") != 0
        or bool(config.get_str("max.connections.per.ip.overrides")),
        ("max.connections.per.ip",),
        "max.connections.per.ip can be set to zero only if max.connections.per.ip.overrides "
        "property is set.",
    )
    idle, delay = (
        config.get_int("connections.max.idle.ms"),
        config.get_int("connection.failed.authentication.delay.ms"),
    )
    _require(
        config,
        idle < 0 or delay < idle,
        ("connection.failed.authentication.delay.ms", "connections.max.idle.ms"),
        f"connection.failed.authentication.delay.ms={delay} should always be less than "
        f"connections.max.idle.ms={idle} to prevent failed authentication responses from "
        "timing out",
    )
    if config.get_bool("broker.id.generation.enable"):
        _require(
            config,
            config.get_int("broker.id") <= config.get_int("reserved.broker.max.id"),
            ("broker.id", "reserved.broker.max.id"),
            "broker.id must be greater than or equal to -1 and not greater than "
            "reserved.broker.max.id",
        )
    for item in (config.raw.get("super.users") or "").split(";"):
        principal_type, sep, _ = item.strip().partition(":")
        if item.strip() and not (sep and principal_type):
            raise ConfigError(
                "super.users: expected a string in format principalType:principalName but "
                f"got {item.strip()}",
                "super.users",
            )
