"""The active controller's part in feature versioning (Kafka 3.9's ZooKeeper-mode controller).

On taking over (`enable`, before anything else, as Kafka's onControllerFailover) it makes sure
/feature is in force: absent, it is created with every feature this broker supports at its
highest level (a new cluster, or one of brokers older than feature versioning); disabled, it is
enabled with nothing finalized (the levels a disabled node lists were never in force); enabled,
it is left as it is. Brokers that start before any controller create a missing /feature the
same way, so no broker serves with no levels known.

`update` decides an UpdateFeatures request on the controller's event task (`features.
plan_updates` against the current /feature and the features every live broker registered) and
writes the new levels with a compare-and-set fenced by the controller epoch. Unlike Kafka
3.9's ZooKeeper controller, which wrote whatever a v1 request's validate_only said, nothing is
written for validate_only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from strom.cluster.features import (
    SUPPORTED_FEATURES,
    FeatureUpdate,
    UpdatePlan,
    VersionRange,
    plan_updates,
    supported_from_registration,
)
from strom.cluster.zk.client import BadVersionError, ZkError
from strom.cluster.zk.context import ControllerContext
from strom.cluster.zk.feature_znode import ENABLED, FEATURE, FeatureZNode
from strom.cluster.zk.layout import LayoutError

if TYPE_CHECKING:
    from strom.cluster.zk.controller_host import ControllerHost

log = logging.getLogger("strom.controller")

# Compare-and-set rounds before giving up on a /feature that keeps changing underneath.
_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class FeatureOutcome:
    plan: UpdatePlan
    epoch: int | None  # the epoch written; None when nothing was written


async def enable(controller: ControllerHost, ctx: ControllerContext) -> None:
    store = controller.store
    for _ in range(_ATTEMPTS):
        try:
            found = await store.feature_znode()
        except LayoutError as exc:
            # Left for UpdateFeatures to overwrite; the brokers run with no levels meanwhile.
            log.error("controller: %s", exc)
            return
        if found is None:
            await store.ensure_feature_znode()
            continue
        node, version = found
        if node.enabled:
            return
        if node.features:
            log.warning(
                "controller: %s is disabled yet lists features %s; enabling it with none",
                FEATURE,
                dict(node.features),
            )
        try:
            await store.set_feature_znode(FeatureZNode(ENABLED, {}), version, ctx.fence)
        except BadVersionError:
            continue
        log.info("controller: feature versioning enabled (%s was disabled)", FEATURE)
        return
    log.warning("controller: %s kept changing; left as it is", FEATURE)


async def update(
    controller: ControllerHost,
    ctx: ControllerContext,
    updates: Sequence[FeatureUpdate],
    validate_only: bool,
) -> FeatureOutcome:
    """Decides and (unless `validate_only`) writes an UpdateFeatures request. ZkError when
    ZooKeeper fails or /feature keeps changing; ControllerMovedError when another controller
    was elected."""
    store = controller.store
    for _ in range(_ATTEMPTS):
        existing, version = await _current(controller)
        brokers = await _registered(controller)
        plan = plan_updates(updates, existing, SUPPORTED_FEATURES, brokers)
        if validate_only or not plan.changes(existing):
            return FeatureOutcome(plan, None)
        node = FeatureZNode(ENABLED, plan.target)
        if version is None:
            if not await store.create_feature_znode(node):
                continue
            epoch = 0
        else:
            try:
                epoch = await store.set_feature_znode(node, version, ctx.fence)
            except BadVersionError:
                continue
        log.info("controller: finalized features %s (epoch %d)", plan.target, epoch)
        return FeatureOutcome(plan, epoch)
    raise ZkError(f"{FEATURE} kept changing while the update was decided")


async def _current(controller: ControllerHost) -> tuple[dict[str, int], int | None]:
    """The levels in force and the znode's version (None: absent). An unreadable or
    disabled node has none in force, as the brokers read it."""
    client = controller.client
    found = await client.get_or_none(FEATURE)
    if found is None:
        return {}, None
    data, stat = found
    try:
        node = FeatureZNode.from_json(data)
    except LayoutError as exc:
        log.error("controller: %s; an update replaces it", exc)
        return {}, stat.version
    return node.in_force(), stat.version


async def _registered(controller: ControllerHost) -> list[dict[str, VersionRange]]:
    """What every registered broker (shutting-down ones too) supports, read from /brokers/ids
    now rather than from the controller's cache, so a broker that just registered counts."""
    out: list[dict[str, VersionRange]] = []
    for broker_id in await controller.store.broker_ids():
        try:
            found = await controller.store.broker(broker_id)
        except LayoutError as exc:
            log.warning("controller: broker %d's registration unreadable: %s", broker_id, exc)
            out.append({})
            continue
        if found is not None:
            out.append(supported_from_registration(found[0].features))
    return out
