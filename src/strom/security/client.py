"""How this broker connects to the others: the security protocol of the listener it reaches
them on, with a TLS context built from that listener's `ssl.*` settings (its trust store checks
the other broker's certificate, its key store is this broker's client certificate) and, on
SASL listeners, the credentials of `sasl.mechanism.inter.broker.protocol`."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from strom.config import BrokerConfig, ConfigError
from strom.security.sasl_client import SaslClient, required_options
from strom.security.sasl_config import sasl_settings
from strom.security.tls_config import TlsSettings, client_context


@dataclass(frozen=True)
class ClientSecurity:
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
