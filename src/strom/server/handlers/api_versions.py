"""ApiVersions (key 18), versions 0-4: the API keys and versions this broker handles, and from
v3 its supported and the cluster's finalized features (KIP-584).

Derived from the handler index (handler_index.py, held to the handlers by a test), so nothing
unhandled is advertised. A request whose own version is too new gets a v0 response with
UNSUPPORTED_VERSION (see dispatch), which tells the client which versions to fall back to.

Features as Kafka's brokers report them: the supported ranges of `cluster.features`, except
below v4 those whose lowest level is 0 (older clients cannot read a 0 there, KAFKA-17492); the
finalized levels other than 0, each as its own min and max; the finalized epoch (-1 while none
are known); zk_migration_ready is always false (there is no KRaft migration).
"""

from __future__ import annotations

from strom.cluster.features import SUPPORTED_FEATURES
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.api_versions_request import ApiVersionsRequest
from strom.protocol.messages.api_versions_response import (
    ApiVersion,
    ApiVersionsResponse,
    FinalizedFeatureKey,
    SupportedFeatureKey,
)
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
    response = supported_api_versions()
    finalized = ctx.broker.metadata.finalized_features
    response.supported_features = [
        SupportedFeatureKey(name=name, min_version=r.min_version, max_version=r.max_version)
        for name, r in sorted(SUPPORTED_FEATURES.items())
        if ctx.api_version >= 4 or r.min_version > 0
    ]
    response.finalized_features = [
        FinalizedFeatureKey(name=name, max_version_level=level, min_version_level=level)
        for name, level in sorted(finalized.levels.items())
        if level != 0
    ]
    response.finalized_features_epoch = finalized.epoch
    return response
