"""The controller's requests to the brokers (Kafka's ControllerChannelManager, ZooKeeper mode).

After the active controller writes partition states to ZooKeeper it tells the brokers hosting
those partitions at once with LeaderAndIsr, and tells the brokers of a deleted topic to drop
their replicas with StopReplica (delete). Each broker still watches the state znodes, so a
request that is lost (a broker unreachable for a while, a full queue, a controller that
resigns mid-way) only delays what the watch delivers anyway; the requests make leadership
changes reach the brokers without waiting for the watches' round trips.

Per broker there is one connection and one ordered queue, served by one task (Kafka's
RequestSendThread): the head of the queue is sent, its response awaited, and only then the
next one, so a broker sees the controller's decisions in the order they were made. A failed
send is retried on a new connection after a backoff until it succeeds or the broker goes away
(`remove_broker`: dead or restarted, whose pending requests are then meaningless). The queue is
bounded: when it is full the oldest request is dropped (the watch covers for it).

The target endpoint is the listener named by control.plane.listener.name when the broker
registered one, else the inter-broker listener (as Kafka). The version of each API is the
newest both sides handle, learnt with ApiVersions on every new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from strom.cluster.ids import parse_kafka_uuid
from strom.cluster.zk.context import PartitionUpdate
from strom.cluster.zk.layout import BrokerRegistration, Endpoint, TopicPartition
from strom.protocol.errors import ErrorCode, ProtocolError
from strom.protocol.messages.leader_and_isr_request import (
    LeaderAndIsrLiveLeader,
    LeaderAndIsrPartitionState,
    LeaderAndIsrRequest,
    LeaderAndIsrTopicState,
)
from strom.protocol.messages.stop_replica_request import (
    StopReplicaPartitionState,
    StopReplicaRequest,
    StopReplicaTopicState,
    StopReplicaTopicV1,
)
from strom.protocol.primitives import ZERO_UUID
from strom.replication.broker_connection import BrokerConnection, connect_to_broker
from strom.security.client import ClientSecurity

__all__ = [
    "ChannelConfig",
    "ControllerChannelManager",
    "controller_endpoint",
    "leader_and_isr_request",
    "stop_replica_request",
]

log = logging.getLogger("strom.controller")

LEADER_AND_ISR = 4
STOP_REPLICA = 5
# The newest versions Kafka's ZooKeeper-mode controller sends (3.4+: the KRaft-controller flag,
# always false here).
LEADER_AND_ISR_MAX_VERSION = 7
STOP_REPLICA_MAX_VERSION = 4
# Kafka's leader epoch for a StopReplica that deletes the partition (LeaderAndIsr.EpochDuringDelete).
EPOCH_DURING_DELETE = -2


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    control_plane_listener_name: str | None
    inter_broker_listener_name: str
    # Kafka's controller.socket.timeout.ms.
    request_timeout_ms: int = 30_000
    # Kafka's socket.connection.setup.timeout.ms default: a broker that does not accept (a
    # dead host) is retried soon rather than after a whole request timeout.
    connect_timeout_ms: int = 10_000
    reconnect_backoff_ms: int = 500
    max_queued_requests: int = 1000
    # listener name -> how to connect to it (TLS, SASL); absent: plaintext
    security: Mapping[str, ClientSecurity] = field(default_factory=dict)


def controller_endpoint(registration: BrokerRegistration, config: ChannelConfig) -> Endpoint | None:
    """Where the controller reaches a broker: its control-plane listener, else the
    inter-broker one; None when it registered neither."""
    for name in (config.control_plane_listener_name, config.inter_broker_listener_name):
        if name is None:
            continue
        found = next((e for e in registration.endpoints if e.listener_name == name), None)
        if found is not None:
            return found
    return None


def leader_and_isr_request(
    controller_id: int,
    controller_epoch: int,
    broker_epoch: int,
    updates: Iterable[PartitionUpdate],
    leaders: Mapping[int, Endpoint],
) -> LeaderAndIsrRequest:
    """A LeaderAndIsr request for these partitions, grouped by topic. The partition epoch is
    the version of the state znode; `leaders` are the endpoints of the live leaders."""
    topics: dict[str, LeaderAndIsrTopicState] = {}
    leader_ids: set[int] = set()
    for update in sorted(updates, key=lambda u: (u.tp.topic, u.tp.partition)):
        topic = topics.get(update.tp.topic)
        if topic is None:
            topic_id = parse_kafka_uuid(update.topic_id) if update.topic_id else ZERO_UUID
            topic = topics[update.tp.topic] = LeaderAndIsrTopicState(update.tp.topic, topic_id)
        state = update.state
        topic.partition_states.append(
            LeaderAndIsrPartitionState(
                topic_name=update.tp.topic,  # read by v0-1 only
                partition_index=update.tp.partition,
                controller_epoch=state.controller_epoch,
                leader=state.leader,
                leader_epoch=state.leader_epoch,
                isr=list(state.isr),
                partition_epoch=update.zk_version,
                replicas=list(update.replicas),
                leader_recovery_state=state.leader_recovery_state,
            )
        )
        leader_ids.add(state.leader)
    flat = [p for t in topics.values() for p in t.partition_states]
    return LeaderAndIsrRequest(
        controller_id=controller_id,
        controller_epoch=controller_epoch,
        broker_epoch=broker_epoch,
        ungrouped_partition_states=flat,
        topic_states=list(topics.values()),
        live_leaders=[
            LeaderAndIsrLiveLeader(b, leaders[b].host, leaders[b].port)
            for b in sorted(leader_ids)
            if b in leaders
        ],
    )


def stop_replica_request(
    controller_id: int,
    controller_epoch: int,
    broker_epoch: int,
    partitions: Iterable[TopicPartition],
    delete: bool,
) -> StopReplicaRequest:
    by_topic: dict[str, list[int]] = defaultdict(list)
    for tp in partitions:
        by_topic[tp.topic].append(tp.partition)
    epoch = EPOCH_DURING_DELETE if delete else -1
    return StopReplicaRequest(
        controller_id=controller_id,
        controller_epoch=controller_epoch,
        broker_epoch=broker_epoch,
        delete_partitions=delete,  # v0-2
        topic_states=[
            StopReplicaTopicState(
                topic,
                [StopReplicaPartitionState(p, epoch, delete) for p in sorted(parts)],
            )
            for topic, parts in sorted(by_topic.items())
        ],
    )


def _same(request: Any, version: int) -> Any:
    return request


def _versioned_stop_replica(request: StopReplicaRequest, version: int) -> StopReplicaRequest:
    """Before v3 a StopReplica lists partitions by topic without per-partition states."""
    if version < 3:
        request.topics = [
            StopReplicaTopicV1(t.topic_name, [p.partition_index for p in t.partition_states])
            for t in request.topic_states
        ]
    return request


# (broker id, api key, response): how the controller hears the brokers' answers.
OnResponse = Callable[[int, int, Any], None]


@dataclass(slots=True)
class _Queued:
    api_key: int
    what: str
    make: Callable[[int], Any]  # version -> request


class _BrokerChannel:
    """One target broker: its connection, its queue and the task that drains it."""

    def __init__(
        self,
        controller_id: int,
        broker_id: int,
        broker_epoch: int,
        endpoint: Endpoint,
        config: ChannelConfig,
        on_response: OnResponse | None = None,
    ) -> None:
        self.broker_id = broker_id
        self.broker_epoch = broker_epoch
        self.endpoint = endpoint
        self.config = config
        self.on_response = on_response
        self.client_id = f"strom-controller-{controller_id}-to-{broker_id}"
        self.queue: deque[_Queued] = deque()
        self.sent = 0
        self._wakeup = asyncio.Event()
        self._connection: BrokerConnection | None = None
        self._versions: dict[int, tuple[int, int]] = {}
        self._task = asyncio.create_task(self._run(), name=self.client_id)

    def enqueue(self, item: _Queued) -> None:
        if len(self.queue) >= self.config.max_queued_requests:
            dropped = self.queue.popleft()
            log.warning(
                "controller: queue to broker %d is full; dropped %s (its watches cover it)",
                self.broker_id,
                dropped.what,
            )
        self.queue.append(item)
        self._wakeup.set()

    async def _run(self) -> None:
        failures = 0  # in a row
        while True:
            if not self.queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            item = self.queue[0]
            try:
                response = await self._send(item)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, EOFError, ProtocolError) as exc:
                was_connected = self._connection is not None
                await self._disconnect()
                failures += 1
                if was_connected and failures == 1:
                    # A connection that had worked (closed while idle, say): try a new one at
                    # once; only repeated failures back off.
                    continue
                if failures <= 2:
                    log.warning(
                        "controller: %s to broker %d at %s:%d failed (%r); retrying",
                        item.what,
                        self.broker_id,
                        self.endpoint.host,
                        self.endpoint.port,
                        exc,
                    )
                await asyncio.sleep(self.config.reconnect_backoff_ms / 1000)
                continue
            except Exception:
                # Anything else (a response that cannot be decoded, say) must not end the
                # channel: the request is dropped (the watches still carry its states).
                log.exception("controller: %s to broker %d failed", item.what, self.broker_id)
                await self._disconnect()
                response = None
            failures = 0
            if self.queue and self.queue[0] is item:
                self.queue.popleft()
            if response is not None:
                self.sent += 1
                _log_errors(self.broker_id, item.what, response)
                if self.on_response is not None:
                    self.on_response(self.broker_id, item.api_key, response)

    async def _send(self, item: _Queued) -> Any:
        timeout_s = self.config.request_timeout_ms / 1000
        connection = await self._connect(timeout_s)
        theirs = self._versions.get(item.api_key)
        ours = (
            LEADER_AND_ISR_MAX_VERSION
            if item.api_key == LEADER_AND_ISR
            else STOP_REPLICA_MAX_VERSION
        )
        if theirs is None or min(ours, theirs[1]) < theirs[0]:
            log.warning(
                "controller: broker %d handles no usable version of api key %d; %s dropped",
                self.broker_id,
                item.api_key,
                item.what,
            )
            return None
        version = min(ours, theirs[1])
        return await connection.call(item.api_key, version, item.make(version), timeout_s)

    async def _connect(self, timeout_s: float) -> BrokerConnection:
        if self._connection is not None:
            return self._connection
        connection, self._versions = await connect_to_broker(
            self.endpoint.host,
            self.endpoint.port,
            self.client_id,
            min(timeout_s, self.config.connect_timeout_ms / 1000),
            timeout_s,
            self.config.security.get(self.endpoint.listener_name),
        )
        self._connection = connection
        log.info(
            "controller: connected to broker %d at %s:%d (listener %s)",
            self.broker_id,
            self.endpoint.host,
            self.endpoint.port,
            self.endpoint.listener_name,
        )
        return connection

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        await self._disconnect()


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error {code}"


def _log_errors(broker_id: int, what: str, response: Any) -> None:
    if response.error_code != ErrorCode.NONE:
        log.warning(
            "controller: broker %d refused %s: %s",
            broker_id,
            what,
            _error_name(response.error_code),
        )
        return
    errors = list(getattr(response, "partition_errors", []))
    for topic in getattr(response, "topics", []):
        errors.extend(topic.partition_errors)
    failed = [e for e in errors if e.error_code != ErrorCode.NONE]
    if failed:
        log.info(
            "controller: broker %d answered %s with %d partition error(s), e.g. %s",
            broker_id,
            what,
            len(failed),
            _error_name(failed[0].error_code),
        )


class ControllerChannelManager:
    """The active controller's channels to the other live brokers. Only the controller's
    event task calls it; the channels run on their own tasks."""

    def __init__(self, controller_id: int, config: ChannelConfig) -> None:
        self.controller_id = controller_id
        self.config = config
        self.channels: dict[int, _BrokerChannel] = {}
        self._leaders: dict[int, Endpoint] = {}
        # Set by the controller: every answer a broker gives (LeaderAndIsr's partition errors
        # tell it which replicas are in failed log dirs).
        self.on_response: OnResponse | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def add_broker(self, broker_id: int, registration: BrokerRegistration, epoch: int) -> None:
        """Start a channel to a live broker (replacing any older one: a restarted broker)."""
        self.remove_broker(broker_id)
        inter = next(
            (
                e
                for e in registration.endpoints
                if e.listener_name == self.config.inter_broker_listener_name
            ),
            None,
        )
        if inter is not None:
            self._leaders[broker_id] = inter
        if broker_id == self.controller_id:
            return  # the local broker hears the controller directly
        endpoint = controller_endpoint(registration, self.config)
        if endpoint is None:
            log.warning(
                "controller: broker %d registered neither listener %s nor %s; it only learns "
                "from its ZooKeeper watches",
                broker_id,
                self.config.control_plane_listener_name,
                self.config.inter_broker_listener_name,
            )
            return
        self.channels[broker_id] = _BrokerChannel(
            self.controller_id, broker_id, epoch, endpoint, self.config, self.on_response
        )

    def remove_broker(self, broker_id: int) -> None:
        self._leaders.pop(broker_id, None)
        channel = self.channels.pop(broker_id, None)
        if channel is not None:
            task = asyncio.ensure_future(channel.stop())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def clear(self) -> None:
        for broker_id in list(self.channels):
            self.remove_broker(broker_id)
        self._leaders.clear()

    async def close(self) -> None:
        self.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def send_leader_and_isr(
        self,
        controller_epoch: int,
        updates: Mapping[TopicPartition, PartitionUpdate],
        brokers: Iterable[int] | None = None,
    ) -> None:
        """LeaderAndIsr to every broker (or those in `brokers`) hosting some of `updates`, each
        with only its own partitions."""
        wanted = None if brokers is None else set(brokers)
        for broker_id, channel in self.channels.items():
            if wanted is not None and broker_id not in wanted:
                continue
            mine = [u for u in updates.values() if broker_id in u.replicas]
            if not mine:
                continue
            request = leader_and_isr_request(
                self.controller_id, controller_epoch, channel.broker_epoch, mine, self._leaders
            )
            what = f"LeaderAndIsr ({len(mine)} partition(s), controller epoch {controller_epoch})"
            channel.enqueue(_Queued(LEADER_AND_ISR, what, functools.partial(_same, request)))

    def send_stop_replica(
        self,
        controller_epoch: int,
        partitions_by_broker: Mapping[int, Iterable[TopicPartition]],
        delete: bool,
    ) -> None:
        for broker_id, partitions in partitions_by_broker.items():
            channel = self.channels.get(broker_id)
            parts = list(partitions)
            if channel is None or not parts:
                continue
            make = functools.partial(
                _versioned_stop_replica,
                stop_replica_request(
                    self.controller_id, controller_epoch, channel.broker_epoch, parts, delete
                ),
            )
            what = f"StopReplica ({len(parts)} partition(s), delete={delete})"
            channel.enqueue(_Queued(STOP_REPLICA, what, make))
