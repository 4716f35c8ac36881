"""Envelope (key 58), version 0: a request forwarded by another broker on a client's behalf.

A ZooKeeper-mode broker of Kafka 3.9 advertises it but takes it only while a KRaft migration
has enabled forwarding (zookeeper.metadata.migration.enable), on a privileged listener;
otherwise it closes the connection, as for a request it cannot parse. Strom has no KRaft
migration, so it always answers that way.
"""

from __future__ import annotations

from strom.protocol.messages.envelope_request import EnvelopeRequest
from strom.protocol.messages.envelope_response import EnvelopeResponse
from strom.server.context import RequestContext
from strom.server.registry import CloseConnection, handles


@handles(58, 0, 0)
def handle_envelope(ctx: RequestContext, request: EnvelopeRequest) -> EnvelopeResponse:
    raise CloseConnection(
        "Envelope request although forwarding is not enabled (no KRaft migration), "
        "closed as Kafka does"
    )
