"""SaslHandshake (key 17, v0-1) and SaslAuthenticate (key 36, v0-2) outside authentication.

While a client authenticates on a SASL listener, these requests never reach the dispatcher:
the connection's authenticator (`security/authenticator.py`) answers them. They arrive here
only on listeners without SASL, or on an authenticated connection that cannot re-authenticate,
and are answered ILLEGAL_SASL_STATE as Kafka does.
"""

from __future__ import annotations

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.sasl_authenticate_request import SaslAuthenticateRequest
from strom.protocol.messages.sasl_authenticate_response import SaslAuthenticateResponse
from strom.protocol.messages.sasl_handshake_request import SaslHandshakeRequest
from strom.protocol.messages.sasl_handshake_response import SaslHandshakeResponse
from strom.server.context import RequestContext
from strom.server.registry import handles


@handles(17, 0, 1)
def handle_sasl_handshake(
    ctx: RequestContext, request: SaslHandshakeRequest
) -> SaslHandshakeResponse:
    return SaslHandshakeResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE, mechanisms=[])


@handles(36, 0, 2)
def handle_sasl_authenticate(
    ctx: RequestContext, request: SaslAuthenticateRequest
) -> SaslAuthenticateResponse:
    return SaslAuthenticateResponse(
        error_code=ErrorCode.ILLEGAL_SASL_STATE,
        error_message="SaslAuthenticate request received after successful authentication",
    )
