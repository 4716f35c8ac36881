"""How the active controller writes its decisions: compare-and-set, fencing, and telling.

Every decision of `controller_logic` (and of `reassignment`) reaches ZooKeeper through `write`:
the new partition states are written with compare-and-set against the versions in the
controller's cache, fenced by its controller epoch (see `store`). A partition whose version
conflicts (its leader changed the ISR meanwhile) is re-read and decided again; one written by a
newer controller epoch means this controller was replaced (`ControllerMovedError`). What was
written goes to the local broker (`ControllerListener`) and, as LeaderAndIsr, to the brokers
hosting the partitions (`ControllerChannelManager`).

`reconcile` (offline elections, Kafka's OnlinePartition transitions) and `elect_preferred`
(preferred replica elections) are the two decisions written from several places.

Like the rest of the controller these run on its event task, on its cache.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypeVar

from strom.cluster.zk import controller_logic as logic
from strom.cluster.zk import layout as L
from strom.cluster.zk.client import BadVersionError, NodeExistsError
from strom.cluster.zk.context import ControllerContext
from strom.cluster.zk.controller_logic import PartitionView
from strom.cluster.zk.layout import PartitionState, TopicPartition
from strom.cluster.zk.store import ControllerMovedError, VersionedState

if TYPE_CHECKING:
    from strom.cluster.zk.controller_host import ControllerHost

log = logging.getLogger("strom.controller")
T = TypeVar("T")

# How often a write that lost a compare-and-set is re-read and decided again before giving up
# until the next event (a partition leader changing its ISR in a tight loop).
MAX_CAS_ATTEMPTS = 10

Changes = dict[TopicPartition, PartitionState]
Decide = Callable[[Mapping[TopicPartition, PartitionView]], Changes]


async def reconcile(
    controller: ControllerHost,
    ctx: ControllerContext,
    views: Mapping[TopicPartition, PartitionView],
) -> dict[TopicPartition, VersionedState]:
    """Writes `controller_logic.reconcile` for these partitions."""
    unclean_topics: set[str] = set()

    async def prepare(v: Mapping[TopicPartition, PartitionView]) -> None:
        # Only topics with no live in-sync replica left need their config read.
        topics: set[str] = set()
        for live, group in by_liveness(ctx, v):
            topics |= logic.topics_needing_unclean_check(group, live)
        for topic in sorted(topics):
            configs = await controller.store.topic_config(topic)
            value = configs.get("unclean.leader.election.enable")
            if (value.lower() == "true") if value is not None else controller.unclean_default:
                unclean_topics.add(topic)

    def decide(v: Mapping[TopicPartition, PartitionView]) -> Changes:
        out: Changes = {}
        for live, group in by_liveness(ctx, v):
            out.update(logic.reconcile(group, live, ctx.fence.epoch, unclean_topics.__contains__))
        return out

    return await write(controller, ctx, views, decide, prepare)


async def elect_preferred(
    controller: ControllerHost, ctx: ControllerContext, wanted: set[TopicPartition] | None
) -> dict[TopicPartition, PartitionState]:
    """Preferred replica election for `wanted` (all partitions when None); returns the states
    written."""
    views = {tp: v for tp, v in ctx.partitions().items() if wanted is None or tp in wanted}

    def decide(v: Mapping[TopicPartition, PartitionView]) -> Changes:
        out: Changes = {}
        for live, group in by_liveness(ctx, v):
            out.update(logic.preferred_elections(group, live, ctx.fence.epoch))
        return out

    written = await write(controller, ctx, views, decide)
    return {tp: vs.state for tp, vs in written.items()}


def by_liveness(
    ctx: ControllerContext, views: Mapping[TopicPartition, PartitionView]
) -> list[tuple[set[int], dict[TopicPartition, PartitionView]]]:
    """The partitions grouped by which brokers count as live for them: all of them together
    unless some replicas are in failed log dirs (those partitions then get their own set)."""
    if not ctx.offline_replicas:
        return [(ctx.live_ids(), dict(views))]
    groups: dict[frozenset[int], dict[TopicPartition, PartitionView]] = {}
    for tp, view in views.items():
        groups.setdefault(frozenset(ctx.live_ids_for(tp)), {})[tp] = view
    return [(set(live), group) for live, group in groups.items()]


async def write(
    controller: ControllerHost,
    ctx: ControllerContext,
    views: Mapping[TopicPartition, PartitionView],
    decide: Decide,
    prepare: Callable[[Mapping[TopicPartition, PartitionView]], Awaitable[None]] | None = None,
) -> dict[TopicPartition, VersionedState]:
    """Decides and writes with compare-and-set; conflicting partitions are re-read and
    decided again. Notifies the listener of what was written."""
    store = controller.store
    written: dict[TopicPartition, VersionedState] = {}
    pending = dict(views)
    for _ in range(MAX_CAS_ATTEMPTS):
        if not pending:
            break
        if prepare is not None:
            await prepare(pending)
        changes = decide(pending)
        retry: set[TopicPartition] = set()
        for tp, new in changes.items():
            if controller._ctx is not ctx:
                raise ControllerMovedError("resigned while writing")
            current = ctx.states.get(tp)
            try:
                if current is None:
                    vs = await store.create_partition_state(tp, new, ctx.fence)
                else:
                    vs = await store.update_partition_state(tp, new, current.version, ctx.fence)
            except (BadVersionError, NodeExistsError):
                fresh = await store.partition_state(tp)
                if fresh is not None:
                    if logic.is_fenced(fresh.state, ctx.fence.epoch):
                        raise ControllerMovedError(
                            f"{tp} was written by controller epoch {fresh.state.controller_epoch}"
                        ) from None
                    ctx.states[tp] = fresh
                retry.add(tp)
                continue
            if current is not None and new.leader >= 0 and new.leader != current.state.leader:
                controller.leader_elections += 1
            ctx.states[tp] = vs
            written[tp] = vs
        pending = {
            tp: v for tp, v in ctx.partitions({tp.topic for tp in retry}).items() if tp in retry
        }
    if pending:
        log.warning("controller: gave up on %s after repeated conflicts", sorted(pending))
    if written and controller._ctx is ctx:
        controller.listener.on_partition_states({tp: ctx.update(tp) for tp in written})
        send_states(controller, ctx, written)
    return written


# --- requests to the other brokers ----------------------------------------------------------


async def open_channels(
    controller: ControllerHost, ctx: ControllerContext, brokers: Mapping[int, int]
) -> None:
    """Channels to these live brokers, at the endpoints their registrations name."""
    channel = controller.channel
    if channel is None:
        return
    for broker_id in sorted(brokers):
        try:
            found = await controller.store.broker(broker_id)
        except L.LayoutError as exc:
            log.error("controller: no requests to broker %d: %s", broker_id, exc)
            continue
        if found is not None and controller._ctx is ctx:  # else gone: the watch says so next
            registration, stat = found
            channel.add_broker(broker_id, registration, stat.czxid)


def send_states(
    controller: ControllerHost,
    ctx: ControllerContext,
    partitions: Iterable[TopicPartition],
    brokers: Iterable[int] | None = None,
) -> None:
    """LeaderAndIsr with the cached states of `partitions` to the brokers hosting them."""
    if controller.channel is None or controller._ctx is not ctx:
        return
    updates = {tp: ctx.update(tp) for tp in partitions if tp in ctx.states}
    if updates:
        controller.channel.send_leader_and_isr(ctx.fence.epoch, updates, brokers)


async def read_admin_request(
    controller: ControllerHost, path: str, decode: Callable[[bytes], T], unreadable: T
) -> tuple[T, int] | None:
    """The decoded content of an /admin request znode (what Kafka's tools write there) and
    its version; None when there is none, `unreadable` (logged) when it cannot be decoded."""
    found = await controller.client.get_or_none(path)
    if found is None:
        return None
    data, stat = found
    try:
        return decode(data), stat.version
    except L.LayoutError as exc:
        log.error("ignoring %s: %s", path, exc)
        return unreadable, stat.version
