"""TLS contexts from Kafka's `ssl.*` settings, for a listener (server side) or for a broker
connecting to another (client side).

Key stores: PEM (`ssl.keystore.type=PEM` with `ssl.keystore.key` and
`ssl.keystore.certificate.chain`, or a PEM file at `ssl.keystore.location` holding the key
and the chain) and PKCS12 (`ssl.keystore.location`, `ssl.keystore.password`; Kafka's default
type JKS is accepted for a file that is in fact PKCS12, as Java's keytool writes by default).
Trust stores the same way (`ssl.truststore.*`); without one, the system's authorities are
trusted. Keys may be encrypted (`ssl.key.password`).

Python's `ssl` loads a certificate chain only from files, so the key and chain are written to
a private temporary file for the moment of loading (the key encrypted with a random password)
and deleted straight after.
"""

from __future__ import annotations

import os
import secrets
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strom.config import BrokerConfig, ConfigError
from strom.security.principal import PrincipalMapper

if TYPE_CHECKING:
    from cryptography import x509

# `cryptography` is imported where it is used: a broker without TLS listeners does not pay for
# loading it at start-up.

_JKS_MAGIC = b"\xfe\xed\xfe\xed"
TLS_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
SSL_KEYS = (
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.key.password",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.cipher.suites",
    "ssl.endpoint.identification.algorithm",
    "ssl.principal.mapping.rules",
    "ssl.allow.dn.changes",
    "ssl.allow.san.changes",
)


@dataclass(frozen=True)
class TlsSettings:
    """The ssl.* values in force for one listener (listener.name.<l>.ssl.* wins)."""

    listener: str
    values: dict[str, Any]

    @classmethod
    def of(cls, config: BrokerConfig, listener: str) -> TlsSettings:
        return cls(listener, {key: config.listener_value(listener, key) for key in SSL_KEYS})

    def text(self, key: str) -> str | None:
        value = self.values[key]
        return None if value is None else str(value)

    def key_name(self, key: str) -> str:
        return f"listener.name.{self.listener.lower()}.{key}"

    def error(self, key: str, reason: str) -> ConfigError:
        return ConfigError(
            f"TLS settings of listener {self.listener}: {key} (or {self.key_name(key)}): {reason}",
            key,
        )


@dataclass(frozen=True)
class KeyStore:
    key: Any  # a cryptography private key
    chain: list[x509.Certificate]

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]


def load_keystore(settings: TlsSettings) -> KeyStore | None:
    """The private key and certificate chain, or None when no key store is configured."""
    kind = (settings.text("ssl.keystore.type") or "JKS").upper()
    location = settings.text("ssl.keystore.location")
    store_password = settings.text("ssl.keystore.password")
    key_password = settings.text("ssl.key.password")
    inline_key = settings.text("ssl.keystore.key")
    inline_chain = settings.text("ssl.keystore.certificate.chain")
    if inline_key is not None or inline_chain is not None:
        if kind != "PEM":
            raise settings.error(
                "ssl.keystore.key", "a key given in the configuration needs ssl.keystore.type=PEM"
            )
        if inline_key is None or inline_chain is None:
            raise settings.error(
                "ssl.keystore.key",
                "ssl.keystore.key and ssl.keystore.certificate.chain go together",
            )
        if location is not None:
            raise settings.error(
                "ssl.keystore.location", "set either the location or the PEM key and chain"
            )
        return _pem_keystore(
            settings, inline_key.encode(), inline_chain.encode(), key_password, "ssl.keystore.key"
        )
    if location is None:
        return None
    data = _read(settings, "ssl.keystore.location", location)
    if kind == "PEM":
        return _pem_keystore(settings, data, data, key_password, "ssl.keystore.location")
    return _pkcs12_keystore(settings, data, kind, store_password, key_password)


def _pem_keystore(
    settings: TlsSettings, key_pem: bytes, chain_pem: bytes, password: str | None, key: str
) -> KeyStore:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        private = serialization.load_pem_private_key(
            _pem_blocks(key_pem, "PRIVATE KEY"), password.encode() if password else None
        )
    except (ValueError, TypeError) as exc:
        raise settings.error(key, f"cannot read the private key ({exc})") from None
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise settings.error(key, f"cannot read the certificate chain ({exc})") from None
    return KeyStore(private, chain)


def _pem_blocks(data: bytes, label: str) -> bytes:
    """The first PEM block whose label ends with `label` (PRIVATE KEY, ENCRYPTED PRIVATE KEY,
    RSA PRIVATE KEY, EC PRIVATE KEY)."""
    lines = data.splitlines(keepends=True)
    out: list[bytes] = []
    inside = False
    for line in lines:
        text = line.strip()
        if text.startswith(b"-----BEGIN ") and text.endswith(label.encode() + b"-----"):
            inside = True
        if inside:
            out.append(line if line.endswith(b"\n") else line + b"\n")
            if text.startswith(b"-----END "):
                break
    return b"".join(out) or data


def _pkcs12_keystore(
    settings: TlsSettings,
    data: bytes,
    kind: str,
    store_password: str | None,
    key_password: str | None,
) -> KeyStore:
    from cryptography.hazmat.primitives.serialization import pkcs12

    _not_jks(settings, data, kind, "ssl.keystore.location")
    errors = []
    for password in dict.fromkeys([store_password, key_password]):
        try:
            private, cert, extra = pkcs12.load_key_and_certificates(
                data, password.encode() if password else None
            )
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if private is None or cert is None:
            raise settings.error(
                "ssl.keystore.location", "the PKCS12 store holds no private key and certificate"
            )
        return KeyStore(private, [cert, *extra])
    raise settings.error(
        "ssl.keystore.password", f"cannot open the PKCS12 key store ({'; '.join(errors)})"
    )


def load_truststore(settings: TlsSettings) -> list[x509.Certificate] | None:
    """The trusted certificates, or None (trust the system's authorities)."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    kind = (settings.text("ssl.truststore.type") or "JKS").upper()
    inline = settings.text("ssl.truststore.certificates")
    location = settings.text("ssl.truststore.location")
    if inline is not None:
        if kind != "PEM":
            raise settings.error("ssl.truststore.certificates", "needs ssl.truststore.type=PEM")
        return _pem_certificates(settings, inline.encode(), "ssl.truststore.certificates")
    if location is None:
        return None
    data = _read(settings, "ssl.truststore.location", location)
    if kind == "PEM":
        return _pem_certificates(settings, data, "ssl.truststore.location")
    _not_jks(settings, data, kind, "ssl.truststore.location")
    password = settings.text("ssl.truststore.password")
    try:
        store = pkcs12.load_pkcs12(data, password.encode() if password else None)
    except ValueError as exc:
        raise settings.error(
            "ssl.truststore.password", f"cannot open the PKCS12 trust store ({exc})"
        ) from None
    certs = [c.certificate for c in store.additional_certs]
    if store.cert is not None:
        certs.insert(0, store.cert.certificate)
    if not certs:
        raise settings.error("ssl.truststore.location", "the trust store holds no certificate")
    return certs


def _pem_certificates(settings: TlsSettings, data: bytes, key: str) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise settings.error(key, f"cannot read the certificates ({exc})") from None


def _read(settings: TlsSettings, key: str, location: str) -> bytes:
    try:
        return Path(location).expanduser().read_bytes()
    except OSError as exc:
        raise settings.error(key, f"cannot read {location}: {exc.strerror or exc}") from None


def _not_jks(settings: TlsSettings, data: bytes, kind: str, key: str) -> None:
    if data.startswith(_JKS_MAGIC):
        raise settings.error(
            key,
            f"a JKS store cannot be read here; convert it to PKCS12 (keytool -importkeystore "
            f"-srcstoretype JKS -deststoretype PKCS12) and set the type to PKCS12 (was {kind})",
        )


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """The context a TLS listener accepts connections with."""
    keystore = load_keystore(settings)
    if keystore is None:
        raise settings.error(
            "ssl.keystore.location",
            "a TLS listener needs a key store (ssl.keystore.location, or ssl.keystore.type=PEM "
            "with ssl.keystore.key and ssl.keystore.certificate.chain)",
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _versions_and_ciphers(context, settings)
    _load_chain(context, keystore, settings)
    mode = settings.text("ssl.client.auth") or "none"
    context.verify_mode = {
        "required": ssl.CERT_REQUIRED,
        "requested": ssl.CERT_OPTIONAL,
        "none": ssl.CERT_NONE,
    }[mode]
    if mode != "none":
        _trust(context, settings)
    return context


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """The context a broker connects to another broker's TLS listener with."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _versions_and_ciphers(context, settings)
    context.check_hostname = (settings.text("ssl.endpoint.identification.algorithm") or "") != ""
    context.verify_mode = ssl.CERT_REQUIRED
    _trust(context, settings)
    keystore = load_keystore(settings)
    if keystore is not None:
        _load_chain(context, keystore, settings)
    return context


def _trust(context: ssl.SSLContext, settings: TlsSettings) -> None:
    from cryptography.hazmat.primitives import serialization

    trusted = load_truststore(settings)
    if trusted is None:
        context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return
    pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in trusted)
    context.load_verify_locations(cadata=pem)


def _versions_and_ciphers(context: ssl.SSLContext, settings: TlsSettings) -> None:
    enabled = settings.values["ssl.enabled.protocols"] or ["TLSv1.2", "TLSv1.3"]
    versions = sorted(TLS_VERSIONS[v] for v in enabled)
    try:
        context.minimum_version = versions[0]
        context.maximum_version = versions[-1]
    except (ValueError, ssl.SSLError) as exc:
        raise settings.error("ssl.enabled.protocols", str(exc)) from None
    suites = settings.values["ssl.cipher.suites"]
    if suites:
        names = [openssl_cipher_name(s) for s in suites]
        tls12 = [n for n in names if n is not None]
        if not tls12:
            return  # only TLS 1.3 suites named: Python cannot restrict those
        try:
            context.set_ciphers(":".join(tls12))
        except ssl.SSLError:
            raise settings.error(
                "ssl.cipher.suites", f"none of {', '.join(suites)} is available"
            ) from None
        known = {c["name"] for c in context.get_ciphers()}
        missing = [
            s for s, n in zip(suites, names, strict=True) if n is not None and n not in known
        ]
        if missing:
            raise settings.error("ssl.cipher.suites", f"unknown cipher suites {', '.join(missing)}")


def openssl_cipher_name(name: str) -> str | None:
    """OpenSSL's name for a TLS 1.2 cipher suite given by its IANA name (as Java and Kafka
    name them), None for a TLS 1.3 suite; other names are taken to be OpenSSL's already."""
    if not name.startswith("TLS_"):
        return name
    if "_WITH_" not in name:
        return None  # TLS 1.3: TLS_AES_128_GCM_SHA256 and friends
    exchange, _, cipher = name[4:].partition("_WITH_")
    prefix = "" if exchange == "RSA" else exchange.replace("_", "-") + "-"
    parts = cipher.split("_")
    if parts[:1] == ["AES"] and len(parts) >= 4:
        bits, mode, digest = parts[1], parts[2], parts[3]
        if mode == "GCM":
            return f"{prefix}AES{bits}-GCM-{digest}"
        if mode == "CBC":
            return f"{prefix}AES{bits}-{'SHA' if digest == 'SHA' else digest}"
    if cipher == "CHACHA20_POLY1305_SHA256":
        return f"{prefix}CHACHA20-POLY1305"
    return name


def _load_chain(context: ssl.SSLContext, keystore: KeyStore, settings: TlsSettings) -> None:
    from cryptography.hazmat.primitives import serialization

    password = secrets.token_hex(16)
    key_pem = keystore.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode()),
    )
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in keystore.chain)
    fd, path = tempfile.mkstemp(prefix="strom-tls-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(chain_pem + key_pem)
        context.load_cert_chain(path, password=password)
    except ssl.SSLError as exc:
        raise settings.error(
            "ssl.keystore.location", f"the key does not fit the certificate ({exc})"
        ) from None
    finally:
        os.unlink(path)


def distinguished_name(certificate_der: bytes) -> str:
    """The subject of a certificate in RFC 2253 form, most specific attribute first."""
    from cryptography import x509

    return x509.load_der_x509_certificate(certificate_der).subject.rfc4514_string()


def subject_alternative_names(certificate: x509.Certificate) -> list[str]:
    from cryptography import x509

    try:
        ext = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return sorted(str(n.value) for n in ext.value)


def principal_mapper(settings: TlsSettings) -> PrincipalMapper:
    try:
        return PrincipalMapper(settings.text("ssl.principal.mapping.rules"))
    except ValueError as exc:
        raise settings.error("ssl.principal.mapping.rules", str(exc)) from None
