"""The client side of SASL, for a broker authenticating to another on a SASL inter-broker
listener: PLAIN and SCRAM with the JAAS entry's `username` and `password`, OAUTHBEARER with an
unsecured token made from its `unsecuredLoginStringClaim_sub` (as Kafka's default login
module makes one)."""

from __future__ import annotations

from strom.security.oauthbearer import client_response, unsecured_token
from strom.security.plain import client_message
from strom.security.scram import ScramClient


class SaslClientError(Exception):
    """The other broker refused this broker's credentials."""


class SaslClient:
    """`initial()` is the first token; `step(challenge)` the next one, None when done."""

    def __init__(self, mechanism: str, options: dict[str, str]) -> None:
        self.mechanism = mechanism
        self._options = options
        self._scram: ScramClient | None = None
        self._round = 0

    def initial(self) -> bytes:
        if self.mechanism == "PLAIN":
            return client_message(self._options["username"], self._options["password"])
        if self.mechanism == "OAUTHBEARER":
            token, _ = unsecured_token(self._options)
            return client_response(token)
        self._scram = ScramClient(
            self.mechanism, self._options["username"], self._options["password"]
        )
        return self._scram.first()

    def step(self, challenge: bytes) -> bytes | None:
        self._round += 1
        if self.mechanism == "PLAIN":
            return None
        if self.mechanism == "OAUTHBEARER":
            if challenge:
                raise SaslClientError(
                    f"OAUTHBEARER token refused: {challenge.decode(errors='replace')}"
                )
            return None
        assert self._scram is not None
        if self._round == 1:
            return self._scram.final(challenge)
        self._scram.verify(challenge)
        return None


def required_options(mechanism: str) -> tuple[str, ...]:
    if mechanism == "OAUTHBEARER":
        return ("unsecuredLoginStringClaim_sub",)
    return ("username", "password")
