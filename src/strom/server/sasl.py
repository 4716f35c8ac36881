"""SASL on a listener: its settings, rebuilt when its dynamic configs change (a JAAS entry's
users, the OAUTHBEARER validator), and a fresh authenticator (`security/authenticator.py`)
for each connection."""

from __future__ import annotations

import logging
import secrets
import time

from strom.config import BrokerConfig, ConfigError
from strom.security.authenticator import SaslAuthenticator, ScramLookup
from strom.security.sasl_config import SaslListenerSettings, sasl_settings

log = logging.getLogger("strom.sasl")


def _now_ms() -> int:
    return int(time.time() * 1000)


class SaslListener:
    def __init__(self, config: BrokerConfig, listener: str, scram_lookup: ScramLookup) -> None:
        self.listener = listener
        self.protocol = config.listener_protocols[listener]
        self.settings: SaslListenerSettings = sasl_settings(config, listener)
        self._lookup = scram_lookup
        # Salts of made-up SCRAM credentials for unknown users derive from it.
        self._secret = secrets.token_bytes(32)

    def authenticator(self) -> SaslAuthenticator:
        return SaslAuthenticator(self.settings, self._lookup, _now_ms, self.protocol, self._secret)

    def check(self, config: BrokerConfig) -> SaslListenerSettings:
        return sasl_settings(config, self.listener)

    def reconfigure(self, config: BrokerConfig) -> None:
        try:
            self.settings = sasl_settings(config, self.listener)
        except ConfigError as exc:
            log.error("listener %s keeps its SASL settings: %s", self.listener, exc)
