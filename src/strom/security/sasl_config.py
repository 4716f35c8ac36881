"""What a SASL listener offers, read from Kafka's settings as Kafka's broker reads them.

For listener `l` and mechanism `m` (lower case), a setting `key` is looked up as
`listener.name.<l>.<m>.<key>`, then `listener.name.<l>.<key>`, then `key`:
- `sasl.enabled.mechanisms`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER;
- `sasl.jaas.config` (only with the listener and mechanism prefix, as Kafka): PLAIN's
  `user_<name>="<password>"` are the users; `username`/`password` (PLAIN, SCRAM) and
  `unsecuredLoginStringClaim_sub` (OAUTHBEARER) are what this broker presents to others when
  the inter-broker listener is SASL;
- `sasl.server.callback.handler.class` for OAUTHBEARER chooses JWKS validation;
- `connections.max.reauth.ms`, `connection.failed.authentication.delay.ms`,
  `sasl.server.max.receive.size`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from strom.config import BrokerConfig, ConfigError
from strom.security.jaas import JaasEntry, JaasError, parse_jaas
from strom.security.oauthbearer import (
    VALIDATOR_CLASSES,
    JwksValidator,
    UnsecuredValidator,
    Validator,
)
from strom.security.scram import MECHANISMS as SCRAM_MECHANISMS

SUPPORTED = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "OAUTHBEARER": "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule",
}


@dataclass
class SaslListenerSettings:
    listener: str
    mechanisms: list[str]
    # mechanism -> the options of its JAAS entry ({} when it has none)
    jaas: dict[str, dict[str, str]] = field(default_factory=dict)
    plain_users: dict[str, str] = field(default_factory=dict)
    oauth_validator: Validator | None = None
    reauth_ms: dict[str, int] = field(default_factory=dict)
    failed_delay_ms: int = 100
    max_receive_bytes: int = 524288


def _jaas(config: BrokerConfig, listener: str, mechanism: str) -> JaasEntry | None:
    key = f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config"
    raw = config.mechanism_value(listener, mechanism, "sasl.jaas.config", prefixed_only=True)
    if raw is None:
        return None
    try:
        entries = parse_jaas(str(raw))
    except JaasError as exc:
        raise ConfigError(f"Invalid value for configuration {key}: {exc}", key) from None
    if len(entries) != 1:
        raise ConfigError(f"{key}: must contain exactly one login module", key)
    return entries[0]


def sasl_settings(config: BrokerConfig, listener: str) -> SaslListenerSettings:
    """The settings of one SASL listener; raises ConfigError for what Kafka would refuse or
    Strom cannot do."""
    mechanisms = [
        m.strip().upper()
        for m in (config.listener_value(listener, "sasl.enabled.mechanisms") or [])  # type: ignore[union-attr]
        if m.strip()
    ]
    key = f"listener.name.{listener.lower()}.sasl.enabled.mechanisms"
    if not mechanisms:
        raise ConfigError(f"{key} (or sasl.enabled.mechanisms): no SASL mechanism enabled", key)
    unknown = [m for m in mechanisms if m not in SUPPORTED]
    if unknown:
        raise ConfigError(
            f"sasl.enabled.mechanisms of listener {listener}: {', '.join(unknown)} not available "
            f"(Strom offers {', '.join(SUPPORTED)}; Kafka's default GSSAPI needs Kerberos)",
            key,
        )
    settings = SaslListenerSettings(listener, mechanisms)
    for mechanism in mechanisms:
        entry = _jaas(config, listener, mechanism)
        if entry is not None and entry.login_module != LOGIN_MODULES[mechanism]:
            raise ConfigError(
                f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config: "
                f"{mechanism} needs {LOGIN_MODULES[mechanism]}, not {entry.login_module}",
                "sasl.jaas.config",
            )
        options = dict(entry.options) if entry is not None else {}
        settings.jaas[mechanism] = options
        reauth = config.mechanism_value(listener, mechanism, "connections.max.reauth.ms")
        settings.reauth_ms[mechanism] = int(reauth) if isinstance(reauth, int) else 0
        if mechanism == "PLAIN":
            if entry is None:
                raise ConfigError(
                    f"listener.name.{listener.lower()}.plain.sasl.jaas.config is needed for "
                    'PLAIN: PlainLoginModule with user_<name>="<password>" entries',
                    "sasl.jaas.config",
                )
            settings.plain_users = {
                k.removeprefix("user_"): v for k, v in options.items() if k.startswith("user_")
            }
        elif mechanism == "OAUTHBEARER":
            settings.oauth_validator = _oauth_validator(config, listener, options)
        else:
            assert mechanism in SCRAM_MECHANISMS
    delay = config.get_int("connection.failed.authentication.delay.ms")
    settings.failed_delay_ms = delay
    settings.max_receive_bytes = config.get_int("sasl.server.max.receive.size")
    return settings


def _oauth_validator(config: BrokerConfig, listener: str, options: dict[str, str]) -> Validator:
    def value(key: str) -> object:
        return config.mechanism_value(listener, "OAUTHBEARER", key)

    handler = value("sasl.server.callback.handler.class")
    if handler is None:
        try:
            return UnsecuredValidator.from_options(options)
        except ValueError as exc:
            raise ConfigError(f"OAUTHBEARER of listener {listener}: {exc}") from None
    if str(handler) not in VALIDATOR_CLASSES:
        raise ConfigError(
            f"sasl.server.callback.handler.class of listener {listener}: {handler} is not "
            f"available (Strom offers {VALIDATOR_CLASSES[0]})",
            "sasl.server.callback.handler.class",
        )
    url = value("sasl.oauthbearer.jwks.endpoint.url")
    if url is None:
        raise ConfigError(
            f"OAUTHBEARER of listener {listener} validates with a JWKS: set "
            "sasl.oauthbearer.jwks.endpoint.url",
            "sasl.oauthbearer.jwks.endpoint.url",
        )
    audience = value("sasl.oauthbearer.expected.audience")
    issuer = value("sasl.oauthbearer.expected.issuer")
    try:
        return JwksValidator(
            str(url),
            tuple(audience) if isinstance(audience, list) else (),
            str(issuer) if issuer is not None else None,
            str(value("sasl.oauthbearer.sub.claim.name") or "sub"),
            str(value("sasl.oauthbearer.scope.claim.name") or "scope"),
            int(value("sasl.oauthbearer.clock.skew.seconds") or 0),  # type: ignore[call-overload]
        )
    except ValueError as exc:
        raise ConfigError(str(exc), "sasl.oauthbearer.jwks.endpoint.url") from None
