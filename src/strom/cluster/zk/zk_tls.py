"""TLS to ZooKeeper with Kafka's `zookeeper.ssl.*` settings (ZooKeeper's secureClientPort).

`zookeeper.ssl.client.enable=true` turns it on. The key and trust stores are read as the
listeners' are (security/tls_config.py): PEM or PKCS12 files (`zookeeper.ssl.keystore.type`,
`zookeeper.ssl.truststore.type`; JKS is taken for a file that is in fact PKCS12), a PEM key
encrypted with `zookeeper.ssl.keystore.password`; without a trust store the system's
authorities are trusted. `zookeeper.ssl.enabled.protocols` (else `zookeeper.ssl.protocol`)
and `zookeeper.ssl.cipher.suites` bound the handshake, and ZooKeeper's certificate must name
the host connected to unless `zookeeper.ssl.endpoint.identification.algorithm` is empty.
Kafka's `zookeeper.clientCnxnSocket` (Netty, which the Java client needs for TLS) has no
meaning here. Certificate revocation (`zookeeper.ssl.crl.enable`, `zookeeper.ssl.ocsp.enable`)
is not checked.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from strom.config import BrokerConfig, ConfigError
from strom.security.tls_config import SSL_KEYS, TLS_VERSIONS, TlsSettings, client_context

# ssl.* key of the listener settings -> the zookeeper.ssl.* key that gives it
_FROM_ZOOKEEPER = {
    "ssl.keystore.type": "zookeeper.ssl.keystore.type",
    "ssl.keystore.location": "zookeeper.ssl.keystore.location",
    "ssl.keystore.password": "zookeeper.ssl.keystore.password",
    # ZooKeeper's PEM key stores are encrypted with the store's password.
    "ssl.key.password": "zookeeper.ssl.keystore.password",
    "ssl.truststore.type": "zookeeper.ssl.truststore.type",
    "ssl.truststore.location": "zookeeper.ssl.truststore.location",
    "ssl.truststore.password": "zookeeper.ssl.truststore.password",
    "ssl.enabled.protocols": "zookeeper.ssl.enabled.protocols",
    "ssl.cipher.suites": "zookeeper.ssl.cipher.suites",
    "ssl.endpoint.identification.algorithm": "zookeeper.ssl.endpoint.identification.algorithm",
}


@dataclass(frozen=True)
class ZooKeeperTlsSettings(TlsSettings):
    """The listener TLS settings' shape, filled from zookeeper.ssl.*; errors name those keys."""

    def key_name(self, key: str) -> str:
        return _FROM_ZOOKEEPER.get(key, key)

    def error(self, key: str, reason: str) -> ConfigError:
        name = self.key_name(key)
        return ConfigError(f"TLS to ZooKeeper: {name}: {reason}", name)


def zookeeper_tls_context(config: BrokerConfig) -> ssl.SSLContext | None:
    """The context to connect to ZooKeeper with, or None for plaintext; ConfigError when a
    store cannot be read."""
    if not config.get("zookeeper.ssl.client.enable"):
        return None
    values = dict.fromkeys(SSL_KEYS)
    for key, source in _FROM_ZOOKEEPER.items():
        values[key] = config.get(source)
    protocols = values["ssl.enabled.protocols"] or [config.get("zookeeper.ssl.protocol")]
    values["ssl.enabled.protocols"] = protocols
    unknown = [str(v) for v in protocols if v not in TLS_VERSIONS]
    if unknown:
        raise ConfigError(
            f"TLS to ZooKeeper: unknown TLS protocol versions {', '.join(unknown)} (known: "
            f"{', '.join(TLS_VERSIONS)})",
            "zookeeper.ssl.enabled.protocols",
        )
    return client_context(ZooKeeperTlsSettings("zookeeper", values))
