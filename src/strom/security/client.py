"""How this broker connects to the others: the security protocol of the listener it reaches
them on, with a TLS context built from that listener's `ssl.*` settings (its trust store checks
the other broker's certificate, its key store is this broker's client certificate) and, on
SASL listeners, the credentials of `sasl.mechanism.inter.broker.protocol`."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field

from strom.config import BrokerConfig, ConfigError
from strom.security.sasl_client import SaslClient, required_options
from strom.security.sasl_config import sasl_settings
from strom.security.tls_config import TlsSettings, client_context

log = logging.getLogger("strom.security")


@dataclass(eq=False)
class ClientSecurity:
    """One per inter-broker listener, shared by everything that connects there (fetchers'
    endpoints, the controller channel, the inter-broker client): a dynamic change of the
    listener's key or trust store or JAAS entry is taken over in place (`take`), so each new
    connection uses the settings in force, as Kafka's reconfigurable channel builders do."""

    protocol: str  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    ssl_context: ssl.SSLContext | None = None
    # SASL_*: sasl.mechanism.inter.broker.protocol and the options of its JAAS entry.
    sasl_mechanism: str | None = None
    sasl_options: dict[str, str] = field(default_factory=dict)

    def sasl_client(self) -> SaslClient | None:
        if self.sasl_mechanism is None:
            return None
        return SaslClient(self.sasl_mechanism, self.sasl_options)

    @property
    def uses_tls(self) -> bool:
        return self.ssl_context is not None

    def take(self, other: ClientSecurity) -> None:
        self.protocol = other.protocol
        self.ssl_context = other.ssl_context
        self.sasl_mechanism = other.sasl_mechanism
        self.sasl_options = other.sasl_options


PLAINTEXT_CLIENT = ClientSecurity("PLAINTEXT")


def inter_broker_security(config: BrokerConfig) -> dict[str, ClientSecurity]:
    """Listener name -> how to connect to another broker's endpoint of that listener, for the
    listeners brokers reach each other on (inter-broker and control plane)."""
    out: dict[str, ClientSecurity] = {}
    for name in (config.inter_broker_listener_name, config.control_plane_listener_name):
        if name is None or name in out:
            continue
        protocol = config.listener_protocols.get(name, "PLAINTEXT")
        context = None
        if protocol in ("SSL", "SASL_SSL"):
            context = client_context(TlsSettings.of(config, name))
        mechanism = None
        options: dict[str, str] = {}
        if protocol.startswith("SASL_"):
            mechanism, options = _inter_broker_sasl(config, name)
        out[name] = ClientSecurity(protocol, context, mechanism, options)
    return out


class InterBrokerSecurityReload:
    """Keeps the inter-broker `ClientSecurity` objects in step with dynamic configs (a broker's
    reconfigurable): `check` refuses a change they cannot use, `reconfigure` reads the key and
    trust stores and JAAS entry again and takes them over in place."""

    def __init__(self, current: dict[str, ClientSecurity]) -> None:
        self.current = current

    def check(self, config: BrokerConfig) -> None:
        inter_broker_security(config)

    def reconfigure(self, config: BrokerConfig) -> None:
        try:
            fresh = inter_broker_security(config)
        except ConfigError as exc:
            log.error("connections to other brokers keep their security settings: %s", exc)
            return
        for name, security in fresh.items():
            old = self.current.get(name)
            if old is None:
                self.current[name] = security
            else:
                old.take(security)


def _inter_broker_sasl(config: BrokerConfig, listener: str) -> tuple[str, dict[str, str]]:
    settings = sasl_settings(config, listener)
    mechanism = (config.get_str("sasl.mechanism.inter.broker.protocol") or "").upper()
    key = "sasl.mechanism.inter.broker.protocol"
    if mechanism not in settings.mechanisms:
        raise ConfigError(
            f"{key}={mechanism} is not among the mechanisms of the inter-broker listener "
            f"{listener} ({', '.join(settings.mechanisms)})",
            key,
        )
    options = settings.jaas.get(mechanism, {})
    missing = [o for o in required_options(mechanism) if not options.get(o)]
    if missing:
        raise ConfigError(
            f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config needs "
            f"{' and '.join(missing)}: what this broker presents to the others",
            "sasl.jaas.config",
        )
    return mechanism, dict(options)
