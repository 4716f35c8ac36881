"""What the active controller does: take over, and react to znode changes and requests.

`failover` is Kafka's onControllerFailover: right after the election it puts /feature in
force (`controller_features.enable`), watches the znodes that announce changes, loads the
cluster into the controller's cache, repairs every partition and tells every broker the new
controller epoch. Each watch then only enqueues its handler on
the controller's event task:
- /brokers/ids: brokers that died, started or restarted (their partitions are elected again);
- /brokers/topics and each topic's znode: topics created, partitions added, reassignments
  started, replaced or cancelled;
- /admin/delete_topics: topics deleted (StopReplica with delete to their replicas);
- /isr_change_notification: ISRs changed by partition leaders (the cache is re-read);
- /log_dir_event_notification: a broker's log dir failed; it is asked (LeaderAndIsr) which of
  its replicas are offline, and their partitions are elected again without them;
- /admin/preferred_replica_election: preferred replica elections asked for;
- /config/changes and /admin/reassign_partitions: see `controller_tasks`.
`resync` runs all of them again after an error or a reconnect, and `controlled_shutdown`
answers a broker's ControlledShutdown. Decisions come from `controller_logic` and are written
through `controller_writes`. These are the controller's own steps kept apart from its election
(`controller`): they run on its event task, on its cache, and check that it is still the
controller (`ControllerHost._ctx is ctx`) before telling anyone what they did.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from strom.cluster.zk import controller_features as features
from strom.cluster.zk import controller_logic as logic
from strom.cluster.zk import controller_tasks as tasks
from strom.cluster.zk import controller_writes as writes
from strom.cluster.zk import layout as L
from strom.cluster.zk.client import NoNodeError
from strom.cluster.zk.context import ControllerContext
from strom.cluster.zk.controller_logic import PartitionView
from strom.cluster.zk.layout import TopicPartition
from strom.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from strom.cluster.zk.controller_host import ControllerHost

log = logging.getLogger("strom.controller")


async def failover(controller: ControllerHost, ctx: ControllerContext) -> None:
    """Becoming controller: feature versioning in force, watch, load the cluster, repair
    every partition."""
    await features.enable(controller, ctx)

    def on(
        name: str, fn: Callable[[ControllerHost, ControllerContext], Awaitable[object]]
    ) -> Callable[..., None]:
        def callback(*_: object) -> None:
            if controller._ctx is ctx:
                controller._enqueue(name, controller._active_handler(lambda c: fn(controller, c)))

        return callback

    for path, name, handler in (
        (L.BROKER_IDS, "brokers", _brokers_changed),
        (L.TOPICS, "topics", _topics_changed),
        (L.DELETE_TOPICS, "delete", _delete_topics),
        (L.ISR_CHANGE_NOTIFICATION, "isr", _isr_changed),
        (L.LOG_DIR_EVENT_NOTIFICATION, "log-dir", _log_dir_event),
        (L.CONFIG_CHANGES, "config", tasks.offline_partitions_after_config_change),
    ):
        ctx.watches.append(await controller.client.watch_children(path, on(name, handler)))
    preferred = on("preferred", _preferred_requested)
    ctx.watches.append(await controller.client.watch_data(L.PREFERRED_REPLICA_ELECTION, preferred))
    legacy = on("reassign", tasks.legacy_reassignment_requested)
    ctx.watches.append(await controller.client.watch_data(L.REASSIGN_PARTITIONS, legacy))
    # Load everything, then repair; the watch events queued meanwhile find nothing new.
    ctx.live = await controller.store.live_brokers()
    await writes.open_channels(controller, ctx, ctx.live)
    for topic in await controller.store.topics():
        await _load_topic(controller, ctx, topic)
    # The other brokers' offline replicas are learnt from their answers to the states sent
    # below; the local broker's are known at once.
    _note_local_offline(controller, ctx)
    await writes.reconcile(controller, ctx, ctx.partitions())
    await tasks.advance_reassignments(controller, ctx)  # resumes moves a predecessor began
    if controller._ctx is ctx:
        controller.listener.on_partition_states({tp: ctx.update(tp) for tp in ctx.states})
        # Every broker learns the new controller epoch.
        writes.send_states(controller, ctx, ctx.states)
        tasks.schedule_rebalance(controller, ctx, tasks.FIRST_IMBALANCE_CHECK_S)


# --- event handlers (active controller only) ----------------------------------------


async def resync(controller: ControllerHost, ctx: ControllerContext) -> None:
    """Looks at every watched znode again (after an error or a reconnect)."""
    await _brokers_changed(controller, ctx)
    await _topics_changed(controller, ctx)
    await _delete_topics(controller, ctx)
    await _isr_changed(controller, ctx)
    await _log_dir_event(controller, ctx)
    await _preferred_requested(controller, ctx)
    await tasks.legacy_reassignment_requested(controller, ctx)
    await tasks.advance_reassignments(controller, ctx)


async def _brokers_changed(controller: ControllerHost, ctx: ControllerContext) -> None:
    now = await controller.store.live_brokers()
    dead = set(ctx.live) - set(now)
    started = set(now) - set(ctx.live)
    # Same id, new registration: the broker restarted between two looks. It lost its
    # leaderships' in-memory state, so treat it as failed, then as started.
    bounced = {b for b in set(now) & set(ctx.live) if now[b] != ctx.live[b]}
    if not (dead or started or bounced):
        return
    log.info(
        "controller: brokers dead %s, started %s, bounced %s",
        sorted(dead),
        sorted(started),
        sorted(bounced),
    )
    ctx.shutting_down -= dead | bounced
    for broker_id in dead | started | bounced:
        ctx.offline_replicas.pop(broker_id, None)  # a restarted broker reports afresh
    if controller.channel is not None:
        for broker_id in dead | bounced:
            controller.channel.remove_broker(broker_id)
    touched = dead | started | bounced
    views = {tp: v for tp, v in ctx.partitions().items() if touched & set(v.replicas)}
    if bounced:
        ctx.live = {b: z for b, z in now.items() if b not in bounced}
        await writes.reconcile(controller, ctx, views)
    await writes.open_channels(controller, ctx, {b: now[b] for b in started | bounced})
    ctx.live = now
    await writes.reconcile(controller, ctx, views)
    # A (re)started broker hears the state of every partition it hosts (as Kafka's
    # onBrokerStartup), not only of those whose state changed.
    writes.send_states(
        controller,
        ctx,
        [tp for tp, v in views.items() if (started | bounced) & set(v.replicas)],
        started | bounced,
    )
    await tasks.advance_reassignments(controller, ctx)


async def _topics_changed(controller: ControllerHost, ctx: ControllerContext) -> None:
    current = set(await controller.store.topics())
    for topic in set(ctx.assignments) - current:  # deleted by someone else
        _forget_topic(controller, ctx, topic)
    for topic in sorted(current - set(ctx.assignments)):
        await _load_topic(controller, ctx, topic)
        await writes.reconcile(controller, ctx, ctx.partitions([topic]))


async def _load_topic(controller: ControllerHost, ctx: ControllerContext, topic: str) -> None:
    found = await controller.store.versioned_topic_assignment(topic)
    if found is None:
        return
    ctx.assignments[topic], ctx.assignment_versions[topic] = found
    assignment = found[0]
    for p in assignment.partitions:
        tp = TopicPartition(topic, p)
        versioned = await controller.store.partition_state(tp)
        if versioned is not None:
            ctx.states[tp] = versioned
    if topic not in ctx.topic_watches:

        def changed(data: bytes | None, stat: object) -> None:
            if controller._ctx is ctx and data is not None:
                controller._enqueue(
                    "partitions",
                    controller._active_handler(lambda c: _partitions_added(controller, c, topic)),
                )

        ctx.topic_watches[topic] = await controller.client.watch_data(L.topic_path(topic), changed)


async def _partitions_added(controller: ControllerHost, ctx: ControllerContext, topic: str) -> None:
    """The topic's assignment changed: partitions added, or reassignments started,
    replaced or cancelled."""
    old = ctx.assignments.get(topic)
    found = await controller.store.versioned_topic_assignment(topic)
    if old is None or found is None:
        return
    assignment, ctx.assignment_versions[topic] = found
    if assignment == old:
        return
    ctx.assignments[topic] = assignment
    added = {TopicPartition(topic, p) for p in set(assignment.partitions) - set(old.partitions)}
    views = {tp: v for tp, v in ctx.partitions([topic]).items() if tp in added}
    await writes.reconcile(controller, ctx, views)
    await tasks.advance_reassignments(controller, ctx)


def _forget_topic(controller: ControllerHost, ctx: ControllerContext, topic: str) -> None:
    ctx.assignments.pop(topic, None)
    ctx.assignment_versions.pop(topic, None)
    handle = ctx.topic_watches.pop(topic, None)
    if handle:
        handle.cancel()
    for tp in [tp for tp in ctx.states if tp.topic == topic]:
        del ctx.states[tp]


async def _delete_topics(controller: ControllerHost, ctx: ControllerContext) -> None:
    deleted: set[str] = set()
    for topic in await controller.store.topics_marked_for_deletion():
        if not controller.delete_topic_enable:
            log.warning("topic %s marked for deletion but delete.topic.enable=false", topic)
            with contextlib.suppress(NoNodeError):
                await controller.client.delete(L.delete_topic_path(topic))
            continue
        hosts: dict[int, list[TopicPartition]] = {}
        for tp, view in ctx.partitions([topic]).items():
            for broker_id in view.replicas:
                hosts.setdefault(broker_id, []).append(tp)
        _forget_topic(controller, ctx, topic)
        await controller.store.delete_topic_znodes(topic)
        deleted.add(topic)
        if controller.channel is not None and controller._ctx is ctx:
            controller.channel.send_stop_replica(ctx.fence.epoch, hosts, delete=True)
    if deleted and controller._ctx is ctx:
        controller.listener.on_topics_deleted(deleted)


async def _isr_changed(controller: ControllerHost, ctx: ControllerContext) -> None:
    children = await controller.client.children(L.ISR_CHANGE_NOTIFICATION)
    changed: set[TopicPartition] = set()
    for child in children:
        path = f"{L.ISR_CHANGE_NOTIFICATION}/{child}"
        found = await controller.client.get_or_none(path)
        if found is not None:
            try:
                changed |= L.decode_isr_change(found[0])
            except L.LayoutError as exc:
                log.error("ignoring %s: %s", path, exc)
    for tp in changed:
        if tp.topic in ctx.assignments:
            versioned = await controller.store.partition_state(tp)
            if versioned is not None:
                ctx.states[tp] = versioned
    # Deleted only after the states are read: a crash in between repeats the work.
    for child in children:
        with contextlib.suppress(NoNodeError):
            await controller.client.delete(f"{L.ISR_CHANGE_NOTIFICATION}/{child}")
    updates = {tp: ctx.update(tp) for tp in changed if tp in ctx.states}
    if updates and controller._ctx is ctx:
        controller.listener.on_partition_states(updates)
    if changed:
        await tasks.advance_reassignments(controller, ctx)  # new replicas may be in sync now


async def _log_dir_event(controller: ControllerHost, ctx: ControllerContext) -> None:
    """Brokers announced failed log dirs (Kafka's onBrokerLogDirFailure): every replica they
    host is sent its state again; a replica in a failed directory answers KAFKA_STORAGE_ERROR
    (`replicas_reported`). The local broker is asked directly."""
    children = await controller.client.children(L.LOG_DIR_EVENT_NOTIFICATION)
    brokers: set[int] = set()
    for child in children:
        path = f"{L.LOG_DIR_EVENT_NOTIFICATION}/{child}"
        found = await controller.client.get_or_none(path)
        if found is not None:
            try:
                brokers.add(L.decode_log_dir_event(found[0]))
            except L.LayoutError as exc:
                log.error("ignoring %s: %s", path, exc)
    if brokers:
        log.info("controller: handling log dir failures of brokers %s", sorted(brokers))
    for broker_id in sorted(brokers & set(ctx.live)):
        hosted = [tp for tp, v in ctx.partitions().items() if broker_id in v.replicas]
        if broker_id == controller.broker_id:
            offline = set(controller.listener.offline_replicas())
            await replicas_reported(controller, ctx, broker_id, offline, set(hosted) - offline)
        else:
            writes.send_states(controller, ctx, hosted, [broker_id])
    for child in children:
        with contextlib.suppress(NoNodeError):
            await controller.client.delete(f"{L.LOG_DIR_EVENT_NOTIFICATION}/{child}")


async def leader_and_isr_answered(
    controller: ControllerHost, ctx: ControllerContext, broker_id: int, response: Any
) -> None:
    """A LeaderAndIsr answer: which of the broker's replicas are offline (see
    `replicas_reported`); v5+ names topics by id."""
    names = {a.topic_id: topic for topic, a in ctx.assignments.items() if a.topic_id}
    offline: set[TopicPartition] = set()
    online: set[TopicPartition] = set()
    errors = [(e.topic_name, e) for e in response.partition_errors]
    for topic in response.topics:
        name = names.get(topic.topic_id)
        if name is not None:
            errors.extend((name, e) for e in topic.partition_errors)
    for name, error in errors:
        tp = TopicPartition(name, error.partition_index)
        if error.error_code == ErrorCode.KAFKA_STORAGE_ERROR:
            offline.add(tp)
        elif error.error_code == ErrorCode.NONE:
            online.add(tp)
    await replicas_reported(controller, ctx, broker_id, offline, online)


def _note_local_offline(controller: ControllerHost, ctx: ControllerContext) -> None:
    offline = set(controller.listener.offline_replicas())
    if offline:
        ctx.offline_replicas[controller.broker_id] = offline


async def replicas_reported(
    controller: ControllerHost,
    ctx: ControllerContext,
    broker_id: int,
    offline: set[TopicPartition],
    online: set[TopicPartition],
) -> None:
    """A broker answered LeaderAndIsr (Kafka's LeaderAndIsrResponseReceived): replicas that
    answered KAFKA_STORAGE_ERROR are offline, those that answered NONE online again. Newly
    offline ones lose their leaderships and ISR places (reconcile with them not live)."""
    if broker_id not in ctx.live:
        return
    before = ctx.offline_replicas.get(broker_id, set())
    now = (before - online) | offline
    if now:
        ctx.offline_replicas[broker_id] = now
    else:
        ctx.offline_replicas.pop(broker_id, None)
    new = now - before
    if not new:
        return
    log.info(
        "controller: replicas %s on broker %d are offline (failed log dir)",
        sorted(f"{tp.topic}-{tp.partition}" for tp in new),
        broker_id,
    )
    views = {tp: v for tp, v in ctx.partitions({tp.topic for tp in new}).items() if tp in new}
    await writes.reconcile(controller, ctx, views)


async def _preferred_requested(controller: ControllerHost, ctx: ControllerContext) -> None:
    found = await writes.read_admin_request(
        controller,
        L.PREFERRED_REPLICA_ELECTION,
        L.decode_preferred_replica_election,
        frozenset[TopicPartition](),
    )
    if found is None:
        return
    await writes.elect_preferred(controller, ctx, set(found[0]))
    with contextlib.suppress(NoNodeError):
        await controller.client.delete(L.PREFERRED_REPLICA_ELECTION)


async def controlled_shutdown(
    controller: ControllerHost, ctx: ControllerContext, broker_id: int
) -> set[TopicPartition]:
    if broker_id not in ctx.live:
        raise ValueError(f"broker {broker_id} is not registered")
    ctx.shutting_down.add(broker_id)
    views = {tp: v for tp, v in ctx.partitions().items() if broker_id in v.replicas}
    remaining: set[TopicPartition] = set()

    def decide(v: Mapping[TopicPartition, PartitionView]) -> writes.Changes:
        changes, still = logic.controlled_shutdown(
            v, set(ctx.live), ctx.shutting_down, ctx.fence.epoch
        )
        remaining.clear()
        remaining.update(still)
        return changes

    await writes.write(controller, ctx, views, decide)
    # Partitions whose write kept conflicting are still led by the broker too.
    return remaining | {
        tp for tp in views if (vs := ctx.states.get(tp)) and vs.state.leader == broker_id
    }
