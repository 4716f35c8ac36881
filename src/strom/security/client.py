"""How this broker connects to the others: the security protocol of the listener it reaches
them on, with a TLS context built from that listener's `ssl.*` settings (its trust store checks
the other broker's certificate, its key store is this broker's client certificate) and, on
SASL listeners, the credentials of `sasl.mechanism.inter.broker.protocol`."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from strom.config import BrokerConfig
from strom.security.tls_config import TlsSettings, client_context


@dataclass(frozen=True)
class ClientSecurity:
    protocol: str  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    ssl_context: ssl.SSLContext | None = None

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
        out[name] = ClientSecurity(protocol, context)
    return out
