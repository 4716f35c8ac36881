"""Cluster mode, broker side of the controller's requests: LeaderAndIsr, UpdateMetadata and
StopReplica.

Fencing, in this order (the first failing check answers for the whole request):
- With control.plane.listener.name set, the requests are taken on that listener only; on any
  other listener they answer CLUSTER_AUTHORIZATION_FAILED. (Kafka takes them on any listener
  and refuses them only through an authorizer's ClusterAction check, which the handlers make
  before this one when `authorizer.class.name` is set; without an authorizer the listener is
  the boundary. The controller never sends them elsewhere when the target registered a
  control-plane endpoint.)
- The controller epoch: an epoch older than the newest one this broker has seen answers
  STALE_CONTROLLER_EPOCH, as Kafka. A controller id or epoch not seen before is believed only
  if ZooKeeper says so (/controller and /controller_epoch, read once per new controller), so
  a client that invents an epoch cannot move leaders either; a mismatch answers
  STALE_CONTROLLER_EPOCH too.
- The broker epoch (v2+; -1 means "not given", as Kafka): it must be the czxid of this
  broker's current /brokers/ids registration, else STALE_BROKER_EPOCH (a request meant for
  an earlier incarnation of this broker). The czxid is read again after every new ZooKeeper
  session (which registers the broker again) and whenever a request names another one.

LeaderAndIsr then puts each partition state into the metadata cache, exactly as the watch of
its state znode would (the partition epoch is the znode version), and hands it to
`ReplicaManager.apply`. Both paths are idempotent: whichever arrives second finds nothing
newer to do. Per partition: NONE (applied, or already known); STALE_CONTROLLER_EPOCH for a
partition epoch older than the one already known (as Kafka answers a stale leader epoch);
UNKNOWN_TOPIC_OR_PARTITION when this broker is not among the replicas; INCONSISTENT_TOPIC_ID
(v5+) when the topic id differs from the one this broker knows; KAFKA_STORAGE_ERROR when the
partition's log dir is offline (how the controller learns which replicas a failed log dir took).

UpdateMetadata puts each partition state into the metadata cache only (the replicas' roles
change by LeaderAndIsr, as in Kafka), for every partition it names, hosted here or not, of a
topic the cache knows; newer partition epochs only. A state whose leader is -2 (Kafka's mark
of a topic being deleted) is left to the topic watch, and the live brokers it lists are not
read (registrations come from the /brokers/ids watches). Strom's controller does not send it
(every broker's cache follows ZooKeeper); a controller that does is fenced and applied.

StopReplica removes the replica (and its log when asked to delete) only after ZooKeeper
confirms that this broker no longer hosts the partition (the topic is gone, or the broker is
not in its assignment): a forged request must not delete data. A partition ZooKeeper still
places here answers STALE_CONTROLLER_EPOCH and is left alone.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Protocol

from strom.cluster.zk import layout as L
from strom.cluster.zk.client import SessionState, ZkError
from strom.cluster.zk.layout import ControllerRegistration, PartitionState, TopicPartition
from strom.cluster.zk.store import VersionedState
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.leader_and_isr_request import (
    LeaderAndIsrPartitionState,
    LeaderAndIsrRequest,
)
from strom.protocol.messages.stop_replica_request import StopReplicaRequest
from strom.protocol.messages.update_metadata_request import (
    UpdateMetadataPartitionState,
    UpdateMetadataRequest,
)
from strom.protocol.primitives import ZERO_UUID

if TYPE_CHECKING:
    from strom.cluster.zk.client import ZkClient
    from strom.cluster.zk_metadata import ZkMetadata
    from strom.runtime.host import BrokerHost
    from strom.runtime.replica_manager import ReplicaManager

log = logging.getLogger("strom.cluster")

NO_BROKER_EPOCH = -1
LEADER_DURING_DELETE = -2


class ClusterSession(Protocol):
    """The parts of the cluster runtime the controller's requests act on."""

    @property
    def broker(self) -> BrokerHost: ...

    @property
    def client(self) -> ZkClient: ...

    @property
    def metadata(self) -> ZkMetadata: ...

    @property
    def replicas(self) -> ReplicaManager: ...


class ControllerRequests:
    """Fencing state and apply paths for the controller's requests to this broker."""

    def __init__(self, runtime: ClusterSession) -> None:
        self.runtime = runtime
        self.broker_id = runtime.broker.config.broker_id
        # The newest controller this broker has confirmed in ZooKeeper.
        self.controller_id = -1
        self.controller_epoch = 0
        # The czxid of this broker's registration znode (Kafka's broker epoch). A new session
        # registers again (a new czxid): the value is then read again before it is trusted.
        self.broker_epoch = NO_BROKER_EPOCH
        self._broker_epoch_current = False
        runtime.client.add_state_listener(self._on_session)

    def _on_session(self, state: SessionState) -> None:
        if state in (SessionState.NEW_SESSION, SessionState.EXPIRED, SessionState.CLOSED):
            self._broker_epoch_current = False

    async def refresh_broker_epoch(self) -> None:
        stat = await self.runtime.client.exists(L.broker_path(self.broker_id))
        self.broker_epoch = stat.czxid if stat is not None else NO_BROKER_EPOCH
        self._broker_epoch_current = stat is not None

    # --- fencing --------------------------------------------------------------------------

    async def check(
        self,
        listener: str | None,
        peer: str,
        controller_id: int,
        controller_epoch: int,
        broker_epoch: int,
    ) -> ErrorCode:
        """NONE, or the error that refuses a request that came from `peer` on `listener`."""
        control_plane = self.runtime.broker.config.control_plane_listener_name
        if control_plane is not None and listener and listener != control_plane:
            log.warning(
                "refused controller request from %s on listener %s (only %s takes them)",
                peer,
                listener,
                control_plane,
            )
            return ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        code = await self._check_controller(controller_id, controller_epoch)
        if code != ErrorCode.NONE:
            log.warning(
                "refused request of controller %d (epoch %d) from %s: %s (current epoch %d)",
                controller_id,
                controller_epoch,
                peer,
                code.name,
                self.controller_epoch,
            )
            return code
        return await self._check_broker_epoch(broker_epoch)

    async def _check_controller(self, controller_id: int, epoch: int) -> ErrorCode:
        if epoch < self.controller_epoch:
            return ErrorCode.STALE_CONTROLLER_EPOCH
        if epoch == self.controller_epoch and controller_id == self.controller_id:
            return ErrorCode.NONE
        client = self.runtime.client
        try:
            epoch_found = await client.get_or_none(L.CONTROLLER_EPOCH)
            controller_found = await client.get_or_none(L.CONTROLLER)
        except ZkError as exc:
            log.warning("cannot confirm controller %d in ZooKeeper: %r", controller_id, exc)
            return ErrorCode.STALE_CONTROLLER_EPOCH
        try:
            zk_epoch = L.decode_controller_epoch(epoch_found[0]) if epoch_found else 0
            zk_id = (
                ControllerRegistration.from_json(controller_found[0]).broker_id
                if controller_found
                else -1
            )
        except L.LayoutError as exc:
            log.error("unreadable controller znodes: %s", exc)
            return ErrorCode.STALE_CONTROLLER_EPOCH
        # Another request may have confirmed a newer controller during the reads above: the
        # confirmed epoch only ever moves forward.
        if zk_epoch > self.controller_epoch:
            self.controller_epoch, self.controller_id = zk_epoch, zk_id
        if epoch != zk_epoch or controller_id != zk_id or epoch < self.controller_epoch:
            return ErrorCode.STALE_CONTROLLER_EPOCH
        return ErrorCode.NONE

    async def _check_broker_epoch(self, broker_epoch: int) -> ErrorCode:
        if broker_epoch == NO_BROKER_EPOCH:
            return ErrorCode.NONE
        if broker_epoch == self.broker_epoch and self._broker_epoch_current:
            return ErrorCode.NONE
        # Re-registered in a new ZooKeeper session since we last looked?
        try:
            await self.refresh_broker_epoch()
        except ZkError as exc:
            log.warning("cannot read this broker's registration: %r", exc)
        if broker_epoch != self.broker_epoch or not self._broker_epoch_current:
            log.warning(
                "refused controller request for broker epoch %d (this broker's is %d)",
                broker_epoch,
                self.broker_epoch,
            )
            return ErrorCode.STALE_BROKER_EPOCH
        return ErrorCode.NONE

    # --- LeaderAndIsr ---------------------------------------------------------------------

    def apply_leader_and_isr(
        self, listener: str | None, request: LeaderAndIsrRequest, version: int
    ) -> dict[tuple[str, int], ErrorCode]:
        """Applies every partition state; returns the error code of each partition."""
        out: dict[tuple[str, int], ErrorCode] = {}
        if version <= 1:
            for p in request.ungrouped_partition_states:
                out[(p.topic_name, p.partition_index)] = self._apply_one(p.topic_name, None, p)
        else:
            for topic in request.topic_states:
                topic_id = topic.topic_id if version >= 5 and topic.topic_id != ZERO_UUID else None
                for p in topic.partition_states:
                    out[(topic.topic_name, p.partition_index)] = self._apply_one(
                        topic.topic_name, topic_id, p
                    )
        log.info(
            "LeaderAndIsr from controller %d (epoch %d) on listener %s: %d partition(s), "
            "%d applied or known",
            request.controller_id,
            request.controller_epoch,
            listener or "?",
            len(out),
            sum(1 for code in out.values() if code == ErrorCode.NONE),
        )
        return out

    def _apply_one(
        self, topic: str, topic_id: uuid.UUID | None, p: LeaderAndIsrPartitionState
    ) -> ErrorCode:
        metadata = self.runtime.metadata
        tp = TopicPartition(topic, p.partition_index)
        if self.broker_id not in p.replicas:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        record = metadata.get_topic(topic)
        if topic_id is not None and record is not None and record.topic_id != topic_id:
            return ErrorCode.INCONSISTENT_TOPIC_ID
        state = PartitionState(
            leader=p.leader,
            leader_epoch=p.leader_epoch,
            isr=tuple(p.isr),
            controller_epoch=p.controller_epoch,
            leader_recovery_state=p.leader_recovery_state,
        )
        known = metadata.states.get(tp)
        if self.runtime.broker.logs.is_offline(topic, p.partition_index):
            # Its log dir failed: the controller learns from this answer that the replica is
            # offline (Kafka's LeaderAndIsr response after a log dir event).
            if known is None or known.version < p.partition_epoch:
                metadata.put_state(tp, VersionedState(state, p.partition_epoch))
            return ErrorCode.KAFKA_STORAGE_ERROR
        if known is not None and known.version >= p.partition_epoch:
            if known.version == p.partition_epoch and known.state == state:
                return ErrorCode.NONE  # the watch was first
            return ErrorCode.STALE_CONTROLLER_EPOCH
        metadata.put_state(tp, VersionedState(state, p.partition_epoch))
        # Without the topic's assignment in the cache yet, this only primes the cache: the
        # assignment's watch applies it when it arrives.
        self.runtime.replicas.apply(tp)
        return ErrorCode.NONE

    # --- UpdateMetadata ------------------------------------------------------------------

    def apply_update_metadata(self, request: UpdateMetadataRequest, version: int) -> int:
        """Puts the request's partition states into the cache; returns how many were newer."""
        states: list[UpdateMetadataPartitionState] = list(request.ungrouped_partition_states)
        if version >= 5:  # grouped by topic, the topic name left out of each state
            for t in request.topic_states:
                for p in t.partition_states:
                    p.topic_name = t.topic_name
                    states.append(p)
        metadata = self.runtime.metadata
        applied = 0
        for p in states:
            if p.leader == LEADER_DURING_DELETE or metadata.get_topic(p.topic_name) is None:
                continue
            tp = TopicPartition(p.topic_name, p.partition_index)
            known = metadata.states.get(tp)
            if known is not None and known.version >= p.zk_version:
                continue
            state = PartitionState(
                leader=p.leader,
                leader_epoch=p.leader_epoch,
                isr=tuple(p.isr),
                controller_epoch=p.controller_epoch,
                leader_recovery_state=known.state.leader_recovery_state if known else 0,
            )
            # The cache only, as Kafka: the replicas' roles change by LeaderAndIsr (or the
            # state's watch, which applies a state of the same version again).
            metadata.put_state(tp, VersionedState(state, p.zk_version))
            applied += 1
        log.info(
            "UpdateMetadata from controller %d (epoch %d): %d partition state(s), %d newer",
            request.controller_id,
            request.controller_epoch,
            len(states),
            applied,
        )
        return applied

    # --- StopReplica ----------------------------------------------------------------------

    async def stop_replicas(
        self, listener: str | None, request: StopReplicaRequest, version: int
    ) -> dict[tuple[str, int], ErrorCode]:
        wanted: list[tuple[str, int, bool]] = []
        if version == 0:
            wanted = [
                (p.topic_name, p.partition_index, request.delete_partitions)
                for p in request.ungrouped_partitions
            ]
        elif version <= 2:
            wanted = [
                (t.name, p, request.delete_partitions)
                for t in request.topics
                for p in t.partition_indexes
            ]
        else:
            wanted = [
                (t.topic_name, p.partition_index, p.delete_partition)
                for t in request.topic_states
                for p in t.partition_states
            ]
        out: dict[tuple[str, int], ErrorCode] = {}
        store = self.runtime.metadata.store
        assignments: dict[str, L.TopicAssignment | Exception | None] = {}
        for topic, partition, delete in wanted:
            if topic not in assignments:
                try:
                    assignments[topic] = await store.topic_assignment(topic)
                except (ZkError, L.LayoutError) as exc:
                    log.warning("StopReplica: cannot read topic %s: %r", topic, exc)
                    assignments[topic] = exc
            assignment = assignments[topic]
            if isinstance(assignment, Exception):
                out[(topic, partition)] = ErrorCode.UNKNOWN_SERVER_ERROR
                continue
            if isinstance(assignment, L.TopicAssignment) and self.broker_id in (
                assignment.partitions.get(partition, ())
            ):
                out[(topic, partition)] = ErrorCode.STALE_CONTROLLER_EPOCH
                continue
            self.runtime.replicas.stop_replica((topic, partition), delete)
            out[(topic, partition)] = ErrorCode.NONE
        log.info(
            "StopReplica from controller %d (epoch %d) on listener %s: %d partition(s)",
            request.controller_id,
            request.controller_epoch,
            listener or "?",
            len(out),
        )
        return out
