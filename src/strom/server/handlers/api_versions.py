"""ApiVersions (key 18), versions 0-4: the API keys and versions this broker handles.

Derived from the handler index (handler_index.py, held to the handlers by a test), so nothing
unhandled is advertised. A request whose own
version is too new gets a v0 response with UNSUPPORTED_VERSION (see dispatch), which tells the
client which versions to fall back to. Not done: supported/finalized features (KRaft only).
"""

from __future__ import annotations

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.api_versions_request import ApiVersionsRequest
from strom.protocol.messages.api_versions_response import ApiVersion, ApiVersionsResponse
from strom.server.context import RequestContext
from strom.server.handler_index import HANDLER_INDEX
from strom.server.registry import handles


def supported_api_versions(error_code: ErrorCode = ErrorCode.NONE) -> ApiVersionsResponse:
    return ApiVersionsResponse(
        error_code=error_code,
        api_keys=[
            ApiVersion(api_key=key, min_version=low, max_version=high)
            for key, (_, low, high) in sorted(HANDLER_INDEX.items())
        ],
    )


@handles(18, 0, 4)
def handle_api_versions(ctx: RequestContext, request: ApiVersionsRequest) -> ApiVersionsResponse:
    return supported_api_versions()
