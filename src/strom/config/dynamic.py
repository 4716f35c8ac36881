"""Kafka's rules for broker configs changed at run time (AlterConfigs on a BROKER resource).

In the order Kafka's DynamicBrokerConfig applies them, with its messages:
1. a read-only key is refused ("Cannot update these configs dynamically: Set(...)");
2. TLS key material only changes per listener, under `listener.name.<listener>.`;
3. values are parsed and validated (a listener-level value as its base key);
4. per-broker keys are refused on the cluster-default resource;
5. thread pools change by at most a factor of two at a time;
6. a password is stored only for one broker, and only with password.encoder.secret set.
Names Kafka does not define are taken as custom configs, stored and described, as Kafka's
ZooKeeper-mode brokers do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Protocol

from strom.config.broker_keys import (
    BROKER_DEFS,
    DYNAMIC_ONLY,
    LISTENER_ONLY_DYNAMIC,
    THREAD_POOL_KEYS,
    is_password_key,
    is_per_broker_key,
    listener_base,
)
from strom.config.definitions import ConfigDef, ConfigError, ConfigValue, format_value
from strom.config.password_encoder import decode, encode

log = logging.getLogger("strom.config")

# Keys Kafka changes at run time that Strom reads only at start-up (its listeners are bound once).
RESTART_ONLY: frozenset[str] = frozenset(
    {"listeners", "advertised.listeners", "listener.security.protocol.map"}
)


def scala_set(names: Iterable[str]) -> str:
    """How Kafka's messages print a set of names."""
    return "Set(" + ", ".join(names) + ")"


def dynamic_def(name: str) -> ConfigDef | None:
    """The definition a dynamic value of `name` is parsed with (None: a custom config)."""
    d = BROKER_DEFS.get(name) or DYNAMIC_ONLY.get(name)
    if d is not None:
        return d
    base = listener_base(name)
    if base is None:
        return None
    d = BROKER_DEFS.get(base) or DYNAMIC_ONLY.get(base)
    # Kafka checks a listener-level value only when its base key is itself dynamic.
    return d if d is not None and d.dynamic else None


def validate_dynamic_key(name: str) -> None:
    d = BROKER_DEFS.get(name)
    if d is not None and not d.dynamic:
        raise ConfigError(f"Cannot update these configs dynamically: {scala_set([name])}", name)


def validate_dynamic_broker_configs(
    configs: Mapping[str, str | None], per_broker: bool = True
) -> dict[str, str]:
    """Checks an AlterConfigs request's values for a broker (`per_broker`) or the cluster
    default; returns them as they are stored (defined keys in canonical form)."""
    present = [k for k, v in configs.items() if v is not None]
    for key, raw in configs.items():
        if raw is None:
            raise ConfigError(f"Null value not supported for broker config {key}", key)
    read_only = [k for k in present if k in BROKER_DEFS and not BROKER_DEFS[k].dynamic]
    if read_only:
        raise ConfigError(f"Cannot update these configs dynamically: {scala_set(read_only)}")
    bare = [k for k in present if k in LISTENER_ONLY_DYNAMIC]
    if bare:
        raise ConfigError(
            "These security configs can be dynamically updated only per-listener using the "
            f"listener prefix: {scala_set(bare)}"
        )
    out: dict[str, str] = {}
    for key in present:
        raw = configs[key]
        assert raw is not None
        d = dynamic_def(key)
        if d is None:
            out[key] = raw
            continue
        parsed = d.parse(raw)
        canonical = d.name == key and not d.sensitive
        out[key] = (format_value(d.type, parsed) or "") if canonical else raw
    if not per_broker:
        per_broker_only = [k for k in present if is_per_broker_key(k)]
        if per_broker_only:
            raise ConfigError(
                "Cannot update these configs at default cluster level, broker id must be "
                f"specified: {scala_set(per_broker_only)}"
            )
    fixed = sorted(k for k in present if k in RESTART_ONLY)
    if fixed:
        raise ConfigError(
            f"Strom reads {', '.join(fixed)} only at start-up; set it in the properties file "
            "and restart"
        )
    return out


def check_password_storage(
    configs: Mapping[str, str], per_broker: bool, encoder_secret_set: bool
) -> None:
    """Kafka stores dynamic passwords encrypted, for one broker only; without
    password.encoder.secret it refuses to store them (checked when a change is made, not when
    it is only validated)."""
    for name in configs:
        if not is_password_key(name):
            continue
        if not per_broker:
            raise ConfigError("Password config can be defined only at broker level", name)
        if not encoder_secret_set:
            raise ConfigError("Password encoder secret not configured", name)


class IntConfig(Protocol):
    def get_int(self, name: str) -> int: ...


class EncoderConfig(Protocol):
    def get(self, name: str) -> ConfigValue: ...


def encode_passwords(configs: Mapping[str, str], config: EncoderConfig) -> dict[str, str]:
    """The form in which dynamic configs are stored: passwords encrypted with
    password.encoder.secret (check_password_storage has made sure it is set)."""
    out = dict(configs)
    secret = config.get("password.encoder.secret")
    for name, value in configs.items():
        if is_password_key(name):
            if not isinstance(secret, str):
                raise ConfigError("Password encoder secret not configured", name)
            key_factory = config.get("password.encoder.keyfactory.algorithm")
            out[name] = encode(
                value,
                secret,
                key_factory=key_factory if isinstance(key_factory, str) else None,
                cipher=str(config.get("password.encoder.cipher.algorithm")),
                key_length=int(str(config.get("password.encoder.key.length"))),
                iterations=int(str(config.get("password.encoder.iterations"))),
            )
    return out


def decode_passwords(configs: Mapping[str, str], config: EncoderConfig) -> dict[str, str]:
    """Stored dynamic configs with their passwords decrypted (with password.encoder.secret, or
    password.encoder.old.secret after a change of secret); a password that decrypts with
    neither is left out with an error line, as Kafka does."""
    out = dict(configs)
    secrets = [
        s
        for s in (config.get("password.encoder.secret"), config.get("password.encoder.old.secret"))
        if isinstance(s, str)
    ]
    for name, value in configs.items():
        if not is_password_key(name):
            continue
        del out[name]
        for secret in secrets:
            try:
                out[name] = decode(value, secret)
                break
            except ConfigError:
                continue
        else:
            log.error("Dynamic password config %s could not be decoded, ignoring.", name)
    return out


def check_thread_pools(current: IntConfig, updated: IntConfig) -> None:
    """Kafka resizes a thread pool to at least half and at most double its current size (the
    log cleaner's threads too, with the cleaner's own messages)."""
    for key in THREAD_POOL_KEYS:
        old, new = current.get_int(key), updated.get_int(key)
        if new == old:
            continue
        failed = f"Dynamic thread count update validation failed for {key}={new}"
        if new <= 0:
            _refuse(key, f"{failed}, value should be at least 1")
        elif new < old // 2:
            _refuse(key, f"{failed}, value should be at least half the current value {old}")
        elif new > old * 2:
            _refuse(
                key, f"{failed}, value should not be greater than double the current value {old}"
            )
    key = "log.cleaner.threads"
    old, new = current.get_int(key), updated.get_int(key)
    if new != old:
        if new < 1:
            _refuse(key, "Log cleaner threads should be at least 1")
        elif new < old // 2:
            _refuse(
                key,
                f"Log cleaner threads cannot be reduced to less than half the current value {old}",
            )
        elif new > old * 2:
            _refuse(
                key,
                f"Log cleaner threads cannot be increased to more than double the "
                f"current value {old}",
            )


def _refuse(key: str, reason: str) -> None:
    # Kafka wraps the reason in a second ConfigException built from (name, value), which is
    # where this message's odd shape comes from.
    raise ConfigError(
        f"Invalid value org.apache.kafka.common.config.ConfigException: {reason} for "
        "configuration Invalid dynamic configuration",
        key,
    )
