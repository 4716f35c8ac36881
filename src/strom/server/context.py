"""What a handler knows about the request it is answering."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from strom.security.principal import ANONYMOUS, KafkaPrincipal

if TYPE_CHECKING:
    from strom.server.broker import Broker


@dataclass(slots=True)
class RequestContext:
    broker: Broker
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    peer: str
    # The whole request frame; Produce appends record batches straight out of it.
    frame: bytearray
    # The listener the connection came in on ("" when not known, e.g. in unit tests).
    listener: str = ""
    # Who sent it: the TLS certificate's or SASL's principal, else User:ANONYMOUS. The
    # authorizer decides on it.
    principal: KafkaPrincipal = ANONYMOUS
    # Bytes of the response budget a fetch took; given back once its answer is written.
    response_charge: int = 0
    # Which client connection sent it (0: none, e.g. a broker-internal request); share
    # sessions are tied to it.
    connection_id: int = 0
    # Set by a handler that counted bandwidth against a client quota (server/throttle.py).
    throttle_ms: int = 0
