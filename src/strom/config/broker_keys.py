"""The broker configuration table: every key Kafka 3.9's broker defines, and Kafka's rules.

The rows live in one module per area (broker_cluster_keys, broker_network_keys,
broker_security_keys, broker_log_keys, broker_coordinator_keys, and broker_strom_keys for
Strom's own `strom.` keys); each row has Kafka's type,
default, validator and update mode. Defaults are Kafka's unless the row's doc says why Strom
differs; `unused=True` marks keys Strom accepts, stores and describes but does not act on.

Besides its defined keys Kafka takes, as Strom does:
- `listener.name.<listener>.<key>`: `<key>` for one listener only (`listener_base`);
- the dynamic-only keys (`DYNAMIC_ONLY`), which AlterConfigs sets but no properties file does;
- any other name as a "custom" config, kept and described (its type UNKNOWN, its value hidden).
"""

from __future__ import annotations

import re

from strom.config.broker_cluster_keys import BROKER_CLUSTER_DEFS
from strom.config.broker_coordinator_keys import BROKER_COORDINATOR_DEFS
from strom.config.broker_log_keys import BROKER_LOG_DEFS, HOUR_MS
from strom.config.broker_network_keys import BROKER_NETWORK_DEFS, DYNAMIC_ONLY_DEFS
from strom.config.broker_newer_keys import BROKER_NEWER_DEFS
from strom.config.broker_security_keys import BROKER_SECURITY_DEFS
from strom.config.broker_strom_keys import STROM_BROKER_DEFS
from strom.config.definitions import ConfigDef, ConfigType, UpdateMode, names

BROKER_DEFS: dict[str, ConfigDef] = names(
    [
        *BROKER_CLUSTER_DEFS,
        *BROKER_NETWORK_DEFS,
        *BROKER_SECURITY_DEFS,
        *BROKER_LOG_DEFS,
        *BROKER_COORDINATOR_DEFS,
        *BROKER_NEWER_DEFS,
        *STROM_BROKER_DEFS,
    ]
)
DYNAMIC_ONLY: dict[str, ConfigDef] = names(DYNAMIC_ONLY_DEFS)

# Families whose first member wins over the others (Kafka: ms > minutes > hours), with the factor
# that turns each member into milliseconds.
TIME_FAMILIES: dict[str, tuple[tuple[str, int], ...]] = {
    "log.retention.ms": (
        ("log.retention.ms", 1),
        ("log.retention.minutes", 60_000),
        ("log.retention.hours", HOUR_MS),
    ),
    "log.roll.ms": (("log.roll.ms", 1), ("log.roll.hours", HOUR_MS)),
    "log.roll.jitter.ms": (("log.roll.jitter.ms", 1), ("log.roll.jitter.hours", HOUR_MS)),
    "log.flush.interval.ms": (
        ("log.flush.interval.ms", 1),
        ("log.flush.scheduler.interval.ms", 1),
    ),
}


def family_of(name: str) -> tuple[str, ...]:
    """All broker keys that stand for the same setting as `name`, highest priority first."""
    for members in TIME_FAMILIES.values():
        keys = tuple(k for k, _ in members)
        if name in keys:
            return keys
    return (name,)


# Kafka keys read by its plugins rather than defined by the broker (the ACL authorizer reads
# them: server/authz.py); known, so a properties file holding them loads without a warning.
PLUGIN_KEYS: frozenset[str] = frozenset({"super.users", "allow.everyone.if.no.acl.found"})


# --- listener-level keys ------------------------------------------------------------------------

_LISTENER_KEY = re.compile(r"listener\.name\.[^.]*\.(.*)")
# SASL keys that a listener sets per mechanism: listener.name.<l>.<mechanism>.<key>.
LISTENER_MECHANISM_KEYS: tuple[str, ...] = (
    "sasl.jaas.config",
    "sasl.login.callback.handler.class",
    "sasl.login.class",
    "sasl.server.callback.handler.class",
    "connections.max.reauth.ms",
    "sasl.oauthbearer.jwks.endpoint.url",
    "sasl.oauthbearer.expected.audience",
    "sasl.oauthbearer.expected.issuer",
    "sasl.oauthbearer.sub.claim.name",
    "sasl.oauthbearer.scope.claim.name",
    "sasl.oauthbearer.clock.skew.seconds",
)


def listener_base(name: str) -> str | None:
    """The key a `listener.name.<listener>.` key sets for one listener (None: not such a key)."""
    m = _LISTENER_KEY.fullmatch(name)
    if m is None:
        return None
    base = m[1]
    return next((k for k in LISTENER_MECHANISM_KEYS if base.endswith(k)), base)


def known_def(name: str) -> ConfigDef | None:
    """The definition that governs `name`: its own, or its base key's for a listener-level key."""
    d = BROKER_DEFS.get(name) or DYNAMIC_ONLY.get(name)
    if d is None:
        base = listener_base(name)
        if base is not None:
            d = BROKER_DEFS.get(base) or DYNAMIC_ONLY.get(base)
    return d


def is_known_key(name: str) -> bool:
    """Whether Kafka 3.9 knows `name` as a broker key (so a file holding it loads quietly)."""
    return known_def(name) is not None or name in PLUGIN_KEYS


def has_no_effect(name: str) -> bool:
    """Whether `name` is a Kafka key that Strom accepts but does not act on."""
    d = known_def(name)
    return d is not None and d.unused


def config_type_of(name: str) -> ConfigType:
    """A broker key's type as DescribeConfigs reports it: its own, its base key's for a
    listener-level key, UNKNOWN for a custom one (which Kafka then treats as sensitive)."""
    d = BROKER_DEFS.get(name) or DYNAMIC_ONLY.get(name)
    if d is None:
        base = listener_base(name)
        d = None if base is None else BROKER_DEFS.get(base) or DYNAMIC_ONLY.get(base)
    return ConfigType.UNKNOWN if d is None else d.type


# --- Kafka's rules for changing broker keys at run time (DynamicBrokerConfig) -------------------

# TLS key material: changed at run time only per listener, under listener.name.<l>.
LISTENER_ONLY_DYNAMIC: frozenset[str] = frozenset(
    """
    ssl.keystore.type ssl.keystore.location ssl.keystore.password ssl.key.password
    ssl.truststore.type ssl.truststore.location ssl.truststore.password
    ssl.keystore.certificate.chain ssl.keystore.key ssl.truststore.certificates
    """.split()  # noqa: SIM905 - a word list is easier to scan than quoted strings
)
# Listener-level keys that may still be set for the whole cluster.
CLUSTER_LEVEL_LISTENER_KEYS: frozenset[str] = frozenset(
    {"max.connections", "max.connection.creation.rate", "num.network.threads"}
)
# Dynamically settable passwords; Kafka stores them encrypted with password.encoder.secret.
DYNAMIC_PASSWORD_KEYS: tuple[str, ...] = tuple(
    sorted(n for n, d in BROKER_DEFS.items() if d.dynamic and d.type is ConfigType.PASSWORD)
)
# Thread pools that Kafka resizes at run time, by at most a factor of two at a time.
THREAD_POOL_KEYS: tuple[str, ...] = (
    "num.io.threads",
    "num.replica.fetchers",
    "num.recovery.threads.per.data.dir",
    "background.threads",
)


def is_password_key(name: str) -> bool:
    return any(name.endswith(k) for k in DYNAMIC_PASSWORD_KEYS)


def is_per_broker_key(name: str) -> bool:
    """Whether a dynamic key may only be set on a broker's own resource, not cluster-wide."""
    d = BROKER_DEFS.get(name)
    if d is not None:
        return d.mode is UpdateMode.PER_BROKER
    base = listener_base(name)
    return base is not None and base not in CLUSTER_LEVEL_LISTENER_KEYS
