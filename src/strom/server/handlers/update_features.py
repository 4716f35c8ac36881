"""UpdateFeatures (key 57), versions 0-1: finalize cluster-wide feature levels (KIP-584), as
Kafka 3.9's ZooKeeper-mode brokers answer it.

Needs ALTER on the cluster (CLUSTER_AUTHORIZATION_FAILED). In a cluster only the active
controller decides (NOT_CONTROLLER elsewhere, as Kafka's ZooKeeper mode: clients send it to
the controller Metadata names); it writes /feature and answers once this broker's cache has
the new epoch, within the request's timeout (else FEATURE_UPDATE_FAILED for the updates that
were valid; the write may still land, as in Kafka). A single broker is its own controller and
keeps the levels in its metadata file. Each update is checked with Kafka's rules
(`cluster.features.plan_updates`): invalid ones answer INVALID_REQUEST with Kafka's message
and change nothing, the valid ones are applied together. v0's AllowDowngrade is a safe
downgrade; v1's UpgradeType UNSAFE_DOWNGRADE is refused unless it deletes the feature, as the
ZooKeeper controller has no lossy downgrades.

Difference from Kafka 3.9: v1's validate_only is honoured (the ZooKeeper controller ignored it
and wrote the update).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence

from strom.cluster.features import (
    SUPPORTED_FEATURES,
    FeatureResult,
    FeatureUpdate,
    plan_updates,
)
from strom.cluster.local_metadata import LocalMetadata
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.update_features_request import UpdateFeaturesRequest
from strom.protocol.messages.update_features_response import (
    UpdatableFeatureResult,
    UpdateFeaturesResponse,
)
from strom.security.acl import AclOperation
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles

log = logging.getLogger("strom.features")

UPDATE_FAILED = "Unable to update finalized features due to an unexpected server error."
# A top-level refusal carries the error's standard message, as Kafka's ApiError(error).
_MESSAGES = {
    ErrorCode.CLUSTER_AUTHORIZATION_FAILED: "Cluster authorization failed.",
    ErrorCode.NOT_CONTROLLER: "This is not the correct controller for this cluster.",
}


@handles(57, 0, 1)
def handle_update_features(
    ctx: RequestContext, request: UpdateFeaturesRequest
) -> UpdateFeaturesResponse | Awaitable[UpdateFeaturesResponse]:
    if not authorize_cluster(ctx, AclOperation.ALTER):
        return _refused(ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    updates = [
        FeatureUpdate.from_request(
            u.feature, u.max_version_level, u.allow_downgrade, u.upgrade_type, ctx.api_version
        )
        for u in request.feature_updates
    ]
    validate_only = ctx.api_version >= 1 and request.validate_only
    cluster = ctx.broker.cluster
    if cluster is None:
        metadata = ctx.broker.metadata
        assert isinstance(metadata, LocalMetadata)
        return _on_single_broker(metadata, updates, validate_only)
    if not cluster.controller.is_active:
        return _refused(ErrorCode.NOT_CONTROLLER)

    # Cluster mode only: a single broker never imports the ZooKeeper code.
    from strom.cluster.zk.context import NotControllerError

    async def decide() -> UpdateFeaturesResponse:
        timeout_s = max(request.timeout_ms, 0) / 1000
        try:
            outcome = await cluster.controller.update_features(updates, validate_only)
        except NotControllerError:
            return _refused(ErrorCode.NOT_CONTROLLER)
        except Exception as exc:
            log.warning("feature update %s failed: %r", updates, exc)
            return _answer(
                [FeatureResult(u.feature, ErrorCode.NONE) for u in _distinct(updates)],
                failed=True,
            )
        results = outcome.plan.results
        epoch = outcome.epoch
        if epoch is None:
            return _answer(results)
        metadata = cluster.metadata
        reached = await metadata.wait_until(
            lambda: metadata.finalized_features.epoch >= epoch, timeout_s
        )
        return _answer(results, failed=not reached)

    return decide()


def _on_single_broker(
    metadata: LocalMetadata, updates: list[FeatureUpdate], validate_only: bool
) -> UpdateFeaturesResponse:
    existing = metadata.finalized_features.levels
    plan = plan_updates(updates, existing, SUPPORTED_FEATURES, [SUPPORTED_FEATURES])
    if validate_only or not plan.changes(existing):
        return _answer(plan.results)
    try:
        written = metadata.set_finalized_features(plan.target)
    except OSError as exc:
        log.error("finalized features not written: %r", exc)
        return _answer(plan.results, failed=True)
    log.info("finalized features %s (epoch %d)", dict(written.levels), written.epoch)
    return _answer(plan.results)


def _distinct(updates: Sequence[FeatureUpdate]) -> list[FeatureUpdate]:
    seen: dict[str, FeatureUpdate] = {}
    for u in updates:
        seen.setdefault(u.feature, u)
    return list(seen.values())


def _answer(results: Sequence[FeatureResult], failed: bool = False) -> UpdateFeaturesResponse:
    """Top-level NONE with a result per feature; `failed`: the valid updates were not
    (known to be) applied, FEATURE_UPDATE_FAILED for them, as Kafka's controller answers when
    its write or its wait fails."""
    out: list[UpdatableFeatureResult] = []
    for r in results:
        code, message = r.error_code, r.error_message
        if failed and code == ErrorCode.NONE:
            code, message = ErrorCode.FEATURE_UPDATE_FAILED, UPDATE_FAILED
        out.append(
            UpdatableFeatureResult(feature=r.feature, error_code=code, error_message=message)
        )
    return UpdateFeaturesResponse(error_code=ErrorCode.NONE, error_message=None, results=out)


def _refused(code: ErrorCode) -> UpdateFeaturesResponse:
    return UpdateFeaturesResponse(error_code=code, error_message=_MESSAGES[code], results=[])
