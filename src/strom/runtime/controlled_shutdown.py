"""Controlled shutdown (SIGTERM in cluster mode): the broker's leaderships move to other
in-sync replicas and it leaves the ISRs before it stops, so that clients and acks=all
producers are not left waiting on a broker that is going away.

The active controller decides (`controller_logic.controlled_shutdown`). A broker that is the
controller runs it in its own event queue; any other broker asks the controller with
ControlledShutdown (key 7), as Kafka's brokers do, and waits until its own cache shows the
decisions. When there is no controller to ask (being elected, unreachable), the broker writes
the controller's decisions itself, with compare-and-set and stamped with the controller
epoch, and announces them as ISR changes so that the controller re-reads them. Partitions
with no other in-sync replica remain; the attempt is repeated a few times.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

from strom.cluster.zk import controller_logic as logic
from strom.cluster.zk.layout import TopicPartition
from strom.protocol.errors import ErrorCode, ProtocolError
from strom.protocol.messages.controlled_shutdown_request import ControlledShutdownRequest
from strom.replication.broker_connection import connect_to_broker

if TYPE_CHECKING:
    from strom.cluster.zk.controller import ZkController
    from strom.cluster.zk_metadata import ZkMetadata
    from strom.runtime.controller_requests import ControllerRequests
    from strom.runtime.host import BrokerHost
    from strom.runtime.replica_manager import ReplicaManager

log = logging.getLogger("strom.cluster")

CONTROLLED_SHUTDOWN_ATTEMPTS = 3
CONTROLLED_SHUTDOWN = 7  # api key
CONTROLLED_SHUTDOWN_VERSION = 3
CONNECT_TIMEOUT_S = 10.0  # Kafka's socket.connection.setup.timeout.ms
ASK_TIMEOUT_S = 3.0  # per request to the controller (the whole shutdown has 10 s)


class LeavingBroker(Protocol):
    """The parts of the cluster runtime a controlled shutdown uses."""

    @property
    def broker(self) -> BrokerHost: ...

    @property
    def control(self) -> ControllerRequests: ...

    @property
    def controller(self) -> ZkController: ...

    @property
    def metadata(self) -> ZkMetadata: ...

    @property
    def replicas(self) -> ReplicaManager: ...


async def move_leaderships_away(runtime: LeavingBroker) -> None:
    """Hand this broker's leaderships over before it stops (retried while some remain): the
    active controller decides; the broker asks it with ControlledShutdown, or is it."""
    broker_id = runtime.broker.config.broker_id
    # Leaving: it follows nothing any more, so that a new leader does not take it back into
    # the ISR it is about to be removed from (what Kafka's StopReplica to it achieves).
    runtime.replicas.stop_following()
    for _ in range(CONTROLLED_SHUTDOWN_ATTEMPTS):
        if runtime.controller.is_active:
            remaining = await runtime.controller.controlled_shutdown(broker_id)
        else:
            asked = await _ask_controller(runtime, broker_id)
            # No controller to ask (being elected, unreachable): write its decisions.
            remaining = asked if asked is not None else await _via_zookeeper(runtime, broker_id)
        if not remaining:
            log.info("controlled shutdown: no partition is led here any more")
            return
        log.info("controlled shutdown: still leading %d partition(s)", len(remaining))
        await asyncio.sleep(0.2)


async def _ask_controller(runtime: LeavingBroker, broker_id: int) -> set[TopicPartition] | None:
    """ControlledShutdown (key 7) to the active controller, as Kafka's brokers do; the
    partitions still led here, or None when the controller could not answer."""
    controller_id = runtime.controller.active_controller_id
    endpoint = None if controller_id is None else runtime.replicas.endpoint(controller_id)
    if endpoint is None or controller_id == broker_id:
        return None
    # Short: an unresponsive controller must leave time for the fallback and the retries
    # within the whole shutdown's budget.
    timeout_s = min(
        runtime.broker.config.get_int("controller.socket.timeout.ms") / 1000, ASK_TIMEOUT_S
    )
    try:
        connection, versions = await connect_to_broker(
            endpoint.host,
            endpoint.port,
            f"broker-{broker_id}-shutdown",
            min(timeout_s, CONNECT_TIMEOUT_S),
            timeout_s,
            endpoint.security,
        )
        try:
            low, high = versions.get(CONTROLLED_SHUTDOWN, (0, -1))
            version = min(high, CONTROLLED_SHUTDOWN_VERSION)
            if version < max(low, 1):
                return None
            request = ControlledShutdownRequest(broker_id, runtime.control.broker_epoch)
            response = await connection.call(CONTROLLED_SHUTDOWN, version, request, timeout_s)
        finally:
            await connection.close()
    except (OSError, TimeoutError, ProtocolError) as exc:
        log.warning("controlled shutdown: controller %d unreachable (%r)", controller_id, exc)
        return None
    if response.error_code != ErrorCode.NONE:
        log.warning(
            "controlled shutdown: controller %d answered %s",
            controller_id,
            ErrorCode(response.error_code).name,
        )
        return None
    remaining = {
        TopicPartition(p.topic_name, p.partition_index) for p in response.remaining_partitions
    }
    log.info("controlled shutdown: the controller (broker %d) moved the leaderships", controller_id)
    # Its decisions reach this broker by LeaderAndIsr and the watches; wait for them, so
    # that the partitions are followers here before the listeners close.
    metadata = runtime.metadata
    await metadata.wait_until(
        lambda: all(
            vs.state.leader != broker_id
            or tp in remaining
            or len(metadata.replicas(tp.topic, tp.partition)) <= 1
            for tp, vs in metadata.states.items()
        ),
        timeout_s=5,
    )
    return remaining


async def _via_zookeeper(runtime: LeavingBroker, broker_id: int) -> set[TopicPartition]:
    """Not the controller: write the controller's own controlled-shutdown decisions with
    compare-and-set, stamped with the current controller epoch, then announce them as
    ISR changes so that the controller re-reads these states into its cache."""
    metadata = runtime.metadata
    views = metadata.partition_views(
        tp for tp in metadata.states if broker_id in metadata.replicas(tp.topic, tp.partition)
    )
    live = set(metadata.brokers)
    epoch = runtime.controller.epoch
    changes, remaining = logic.controlled_shutdown(views, live, {broker_id}, epoch)
    written, conflicts = await metadata.write_decisions(changes)
    # Changed meanwhile: look again on the next attempt.
    remaining |= {tp for tp, known in conflicts.items() if known.state.leader == broker_id}
    if written:
        # By version, not by content: the controller may rewrite a state right after.
        await metadata.wait_until(
            lambda: all(
                (vs := metadata.states.get(tp)) is None or vs.version >= version
                for tp, version in written.items()
            ),
            timeout_s=5,
        )
    return remaining
