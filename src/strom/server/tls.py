"""TLS on a connection: the listener's replaceable context, and one session per connection.

`TlsListener` holds the context new connections of an SSL or SASL_SSL listener are accepted
with. A dynamic change of the listener's key or trust store (AlterConfigs of
`listener.name.<l>.ssl.keystore.*` / `ssl.truststore.*`, or the same location set again after
the file changed) builds a new context; connections already open keep theirs. As in Kafka, the
new certificate must keep the distinguished name and subject alternative names of the old one
unless `ssl.allow.dn.changes` / `ssl.allow.san.changes` say otherwise.

`TlsSession` is the TLS state machine of one connection, on memory buffers: the network layer
feeds it the bytes read from the socket and writes out what it produces, so TLS runs on the
same asyncio transports (and the same receive and memory limits) as plaintext.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from strom.config import BrokerConfig, ConfigError
from strom.security.principal import ANONYMOUS, USER_TYPE, KafkaPrincipal, PrincipalMapper
from strom.security.tls_config import (
    TlsSettings,
    distinguished_name,
    load_keystore,
    principal_mapper,
    server_context,
    subject_alternative_names,
)

log = logging.getLogger("strom.tls")

# Plaintext handed to the TLS object per write (it makes records of at most 16 KiB).
_WRITE_PIECE = 256 * 1024


def _file_stamp(settings: TlsSettings) -> tuple[tuple[str, float, int], ...]:
    stamps = []
    for key in ("ssl.keystore.location", "ssl.truststore.location"):
        location = settings.text(key)
        if location is not None:
            try:
                st = os.stat(Path(location).expanduser())
                stamps.append((location, st.st_mtime, st.st_size))
            except OSError:
                stamps.append((location, -1.0, -1))
    return tuple(stamps)


class TlsListener:
    def __init__(self, config: BrokerConfig, listener: str) -> None:
        self.listener = listener
        self.settings = TlsSettings.of(config, listener)
        self.context = server_context(self.settings)
        self.mapper: PrincipalMapper = principal_mapper(self.settings)
        self._stamp = _file_stamp(self.settings)
        self._identity = self._identity_of(self.settings)
        self.client_auth = self.settings.text("ssl.client.auth") or "none"

    @staticmethod
    def _identity_of(settings: TlsSettings) -> tuple[str, list[str]] | None:
        keystore = load_keystore(settings)
        if keystore is None:
            return None
        cert = keystore.certificate
        return cert.subject.rfc4514_string(), subject_alternative_names(cert)

    def check(self, config: BrokerConfig) -> tuple[TlsSettings, ssl.SSLContext] | None:
        """The new settings and context when `config` changes this listener's TLS (None when
        nothing changed); raises ConfigError when they cannot be used."""
        settings = TlsSettings.of(config, self.listener)
        stamp = _file_stamp(settings)
        if settings == self.settings and stamp == self._stamp:
            return None
        context = server_context(settings)
        identity = self._identity_of(settings)
        if self._identity is not None and identity is not None:
            old_dn, old_sans = self._identity
            new_dn, new_sans = identity
            if new_dn != old_dn and not settings.values["ssl.allow.dn.changes"]:
                raise settings.error(
                    "ssl.keystore.location",
                    f"the new certificate's distinguished name {new_dn} differs from {old_dn} "
                    "(ssl.allow.dn.changes=false)",
                )
            if new_sans != old_sans and not settings.values["ssl.allow.san.changes"]:
                raise settings.error(
                    "ssl.keystore.location",
                    f"the new certificate's subject alternative names {new_sans} differ from "
                    f"{old_sans} (ssl.allow.san.changes=false)",
                )
        return settings, context

    def reconfigure(self, config: BrokerConfig) -> bool:
        """Takes up a changed key or trust store; True when the context was replaced."""
        try:
            changed = self.check(config)
        except ConfigError as exc:
            log.error("listener %s keeps its TLS context: %s", self.listener, exc)
            return False
        if changed is None:
            return False
        self.settings, self.context = changed
        self._stamp = _file_stamp(self.settings)
        self._identity = self._identity_of(self.settings)
        log.info("listener %s: TLS key and trust stores reloaded", self.listener)
        return True

    def session(self) -> TlsSession:
        return TlsSession(self.context, self.mapper)


class TlsError(Exception):
    """The peer broke TLS (a failed handshake, a bad record); the connection must close."""


class TlsSession:
    def __init__(self, context: ssl.SSLContext, mapper: PrincipalMapper) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._mapper = mapper
        self.established = False
        self.closed_by_peer = False

    def feed(self, data: memoryview) -> None:
        """Bytes read from the socket."""
        self._incoming.write(data)

    def handshake(self) -> bool:
        """Advances the handshake with what was fed; True once it is complete."""
        if self.established:
            return True
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLError as exc:
            raise TlsError(f"TLS handshake failed: {exc.reason or exc}") from None
        self.established = True
        return True

    def read_into(self, buffer: memoryview) -> int:
        """Decrypts into `buffer`; 0 when nothing is decryptable yet."""
        try:
            return int(self._obj.read(len(buffer), buffer))
        except ssl.SSLWantReadError:
            return 0
        except ssl.SSLZeroReturnError:
            self.closed_by_peer = True
            return 0
        except ssl.SSLError as exc:
            raise TlsError(f"TLS error: {exc.reason or exc}") from None

    @property
    def pending(self) -> bool:
        """Decrypted bytes or undecrypted records wait inside the session."""
        return self._obj.pending() > 0 or self._incoming.pending > 0

    def encrypt(self, chunks: Sequence[bytes | memoryview]) -> None:
        for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), _WRITE_PIECE):
                self._obj.write(view[start : start + _WRITE_PIECE])

    def take_output(self) -> bytes:
        """Encrypted bytes (handshake messages, records) to write to the socket."""
        return self._outgoing.read()

    def principal(self) -> KafkaPrincipal:
        """The client certificate's name through ssl.principal.mapping.rules, or ANONYMOUS."""
        der = self._obj.getpeercert(binary_form=True)
        if not der:
            return ANONYMOUS
        return KafkaPrincipal(USER_TYPE, self._mapper.name(distinguished_name(der)), "SSL")

    @property
    def version(self) -> str | None:
        return self._obj.version()

    @property
    def cipher(self) -> str | None:
        cipher = self._obj.cipher()
        return cipher[0] if cipher else None
