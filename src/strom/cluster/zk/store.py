"""Typed reads and writes of the cluster's znodes (`layout`) through a `ZkClient`.

Used by the controller and, later, by every broker (registration, ISR updates by partition
leaders, topic creation by admin requests, producer id blocks).

Fencing: a controller's writes are transactions that also check the version of
/controller_epoch it saw when it was elected (`ControllerFence`). If another controller was
elected since, the check fails and nothing is written (`ControllerMovedError`), so a controller
that lost its session but has not noticed yet cannot overwrite its successor's decisions.
This is Kafka's ZooKeeper fencing (KIP-380's epoch zkVersion check).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from strom.cluster.features import default_finalized
from strom.cluster.ids import random_kafka_uuid
from strom.cluster.zk import layout as L
from strom.cluster.zk.client import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    Op,
    Stat,
    TransactionFailed,
    ZkClient,
    ZkError,
)
from strom.cluster.zk.feature_znode import ENABLED, FEATURE, FeatureZNode
from strom.cluster.zk.layout import (
    BrokerRegistration,
    PartitionState,
    ProducerIdBlock,
    TopicAssignment,
    TopicPartition,
)

log = logging.getLogger("strom.cluster")


class ControllerMovedError(ZkError):
    """/controller_epoch changed: another controller was elected; this one must resign."""


class TopicExistsError(ZkError):
    pass


@dataclass(frozen=True, slots=True)
class ControllerFence:
    epoch: int
    epoch_zk_version: int  # version of /controller_epoch after this controller's election


@dataclass(frozen=True, slots=True)
class VersionedState:
    state: PartitionState
    version: int  # znode data version: the compare-and-set token for the next write


class ZkClusterStore:
    def __init__(self, client: ZkClient) -> None:
        self.client = client

    async def ensure_persistent_paths(self) -> None:
        for path in L.PERSISTENT_PATHS:
            await self.client.ensure_path(path)

    # --- cluster id ----------------------------------------------------------------------

    async def get_or_create_cluster_id(self, proposed: str) -> str:
        """The cluster id; the first broker to start stores `proposed`."""
        found = await self.client.get_or_none(L.CLUSTER_ID)
        if found is None:
            try:
                await self.client.create(
                    L.CLUSTER_ID, L.encode_cluster_id(proposed), make_parents=True
                )
                return proposed
            except NodeExistsError:
                found = await self.client.get(L.CLUSTER_ID)
        return L.decode_cluster_id(found[0])

    # --- brokers -------------------------------------------------------------------------

    async def register_broker(self, registration: BrokerRegistration) -> None:
        """Ephemeral /brokers/ids/<id>, re-created in every new session. NodeExistsError if a
        live broker already uses the id."""
        await self.client.register_ephemeral(
            L.broker_path(registration.broker_id), registration.to_json()
        )

    async def broker_ids(self) -> list[int]:
        return sorted(int(c) for c in await self.client.children(L.BROKER_IDS) if c.isdigit())

    async def live_brokers(self) -> dict[int, int]:
        """Registered broker ids with the czxid of their registration: a broker that
        restarted between two looks has the same id but a new czxid (Kafka's broker epoch)."""
        live: dict[int, int] = {}
        for broker_id in await self.broker_ids():
            stat = await self.client.exists(L.broker_path(broker_id))
            if stat is not None:
                live[broker_id] = stat.czxid
        return live

    async def broker(self, broker_id: int) -> tuple[BrokerRegistration, Stat] | None:
        found = await self.client.get_or_none(L.broker_path(broker_id))
        if found is None:
            return None
        return BrokerRegistration.from_json(broker_id, found[0]), found[1]

    # --- topics --------------------------------------------------------------------------

    async def topics(self) -> list[str]:
        return await self.client.children(L.TOPICS)

    async def topic_assignment(self, topic: str) -> TopicAssignment | None:
        found = await self.client.get_or_none(L.topic_path(topic))
        return None if found is None else TopicAssignment.from_json(topic, found[0])

    async def create_topic(
        self,
        topic: str,
        replicas: Mapping[int, tuple[int, ...]],
        configs: Mapping[str, str] | None = None,
        topic_id: uuid.UUID | None = None,
    ) -> TopicAssignment:
        """Writes the config and the assignment of a new topic in one transaction; the
        controller sees the new child of /brokers/topics and elects leaders."""
        assignment = TopicAssignment(dict(replicas), topic_id or random_kafka_uuid())
        config = L.EntityConfig(dict(configs or {})).to_json()
        config_path = L.topic_config_path(topic)
        for attempt in (1, 2):
            ops = [Op.create(L.topic_path(topic), assignment.to_json())]
            # A config znode may survive from a half-deleted topic of the same name: replace it.
            if await self.client.exists(config_path) is not None:
                ops.insert(0, Op.set(config_path, config))
            else:
                ops.insert(0, Op.create(config_path, config))
            try:
                await self.client.transaction(ops)
                break
            except TransactionFailed as exc:
                if not isinstance(exc.cause, NodeExistsError):
                    raise exc.cause from None
                if exc.index == len(ops) - 1:
                    raise TopicExistsError(f"topic {topic!r} already exists") from None
                # The config znode appeared meanwhile: another broker creating the same
                # topic (two brokers creating __consumer_offsets at once), or a leftover.
                if attempt == 2 or await self.client.exists(L.topic_path(topic)) is not None:
                    raise TopicExistsError(f"topic {topic!r} already exists") from None
        return assignment

    async def set_topic_assignment(
        self, topic: str, assignment: TopicAssignment, expected_version: int = -1
    ) -> int:
        """Rewrite the assignment (partitions added, reassignments started or cancelled); the
        controller watches the topic. Returns the new znode version."""
        stat = await self.client.set(L.topic_path(topic), assignment.to_json(), expected_version)
        return stat.version

    async def versioned_topic_assignment(self, topic: str) -> tuple[TopicAssignment, int] | None:
        """The assignment with its znode version (the compare-and-set token)."""
        found = await self.client.get_or_none(L.topic_path(topic))
        if found is None:
            return None
        return TopicAssignment.from_json(topic, found[0]), found[1].version

    async def set_topic_assignment_fenced(
        self,
        topic: str,
        assignment: TopicAssignment,
        expected_version: int,
        fence: ControllerFence,
    ) -> int:
        """The controller's rewrite of an assignment (a completed reassignment)."""
        op = Op.set(L.topic_path(topic), assignment.to_json(), expected_version)
        await self._fenced([op], fence)
        return expected_version + 1

    async def topic_config(self, topic: str) -> dict[str, str]:
        found = await self.client.get_or_none(L.topic_config_path(topic))
        return dict(L.EntityConfig.from_json(found[0] if found else None).config)

    async def mark_topic_for_deletion(self, topic: str) -> None:
        with contextlib.suppress(NodeExistsError):
            await self.client.create(L.delete_topic_path(topic), make_parents=True)

    async def topics_marked_for_deletion(self) -> list[str]:
        return await self.client.children(L.DELETE_TOPICS)

    async def delete_topic_znodes(self, topic: str) -> None:
        """Removes a deleted topic's assignment, partition states, config and deletion mark
        (in that order: a crash in between leaves the mark, so the deletion is resumed)."""
        for path in (L.topic_path(topic), L.topic_config_path(topic), L.delete_topic_path(topic)):
            with contextlib.suppress(NoNodeError):
                await self.client.delete(path, recursive=True)

    # --- partition states ----------------------------------------------------------------

    async def partition_state(self, tp: TopicPartition) -> VersionedState | None:
        path = L.partition_state_path(tp)
        found = await self.client.get_or_none(path)
        if found is None:
            return None
        return VersionedState(PartitionState.from_json(found[0], path), found[1].version)

    async def create_partition_state(
        self, tp: TopicPartition, state: PartitionState, fence: ControllerFence
    ) -> VersionedState:
        """First state of a new partition. NodeExistsError if it already has one."""
        await self.client.ensure_path(L.partition_path(tp))
        await self._fenced([Op.create(L.partition_state_path(tp), state.to_json())], fence)
        return VersionedState(state, 0)

    async def update_partition_state(
        self,
        tp: TopicPartition,
        state: PartitionState,
        expected_version: int,
        fence: ControllerFence | None = None,
    ) -> VersionedState:
        """Compare-and-set of a partition state. BadVersionError when it changed since
        `expected_version` (re-read and decide again). The controller passes its fence; a
        partition leader changing its ISR passes none."""
        path = L.partition_state_path(tp)
        if fence is None:
            stat = await self.client.set(path, state.to_json(), expected_version)
            return VersionedState(state, stat.version)
        await self._fenced([Op.set(path, state.to_json(), expected_version)], fence)
        return VersionedState(state, expected_version + 1)

    async def notify_isr_change(self, partitions: Iterable[TopicPartition]) -> str:
        """A leader tells the controller that it changed these ISRs (so metadata is
        refreshed everywhere): a sequential /isr_change_notification/isr_change_<n>."""
        return await self.client.create(
            f"{L.ISR_CHANGE_NOTIFICATION}/{L.ISR_CHANGE_PREFIX}",
            L.encode_isr_change(partitions),
            sequential=True,
            make_parents=True,
        )

    async def notify_log_dir_failure(self, broker_id: int) -> str:
        """A broker tells the controller that one of its log dirs failed (Kafka's
        propagateLogDirEvent): a sequential /log_dir_event_notification/log_dir_event_<n>."""
        return await self.client.create(
            f"{L.LOG_DIR_EVENT_NOTIFICATION}/{L.LOG_DIR_EVENT_PREFIX}",
            L.encode_log_dir_event(broker_id),
            sequential=True,
            make_parents=True,
        )

    async def request_preferred_election(self, partitions: Iterable[TopicPartition]) -> None:
        """The admin path to a preferred replica election (what kafka-preferred-replica-election
        writes); NodeExistsError while a previous request is pending."""
        await self.client.create(
            L.PREFERRED_REPLICA_ELECTION,
            L.encode_preferred_replica_election(partitions),
            make_parents=True,
        )

    # --- producer ids --------------------------------------------------------------------

    async def allocate_producer_id_block(self, broker_id: int) -> ProducerIdBlock:
        """Claims the next block of producer ids for this broker (compare-and-set loop: two
        brokers claiming at once get different blocks)."""
        await self.client.ensure_path(L.PRODUCER_ID_BLOCK)
        while True:
            data, stat = await self.client.get(L.PRODUCER_ID_BLOCK)
            previous = ProducerIdBlock.from_json(data) if data else None
            block = ProducerIdBlock.next_after(previous, broker_id)
            try:
                await self.client.set(L.PRODUCER_ID_BLOCK, block.to_json(), stat.version)
                return block
            except BadVersionError:
                continue

    # --- finalized features ---------------------------------------------------------------

    async def feature_znode(self) -> tuple[FeatureZNode, int] | None:
        """/feature with its data version (the features' epoch); None when absent.
        LayoutError when it cannot be read."""
        found = await self.client.get_or_none(FEATURE)
        if found is None:
            return None
        return FeatureZNode.from_json(found[0]), found[1].version

    async def create_feature_znode(self, node: FeatureZNode) -> bool:
        """Creates /feature unless it exists; True when this call created it."""
        try:
            await self.client.create(FEATURE, node.to_json())
        except NodeExistsError:
            return False
        return True

    async def ensure_feature_znode(self) -> bool:
        """A missing /feature is created with every supported feature at its highest level
        (what Kafka's controller writes for a new cluster); True when this call created it."""
        created = await self.create_feature_znode(FeatureZNode(ENABLED, default_finalized()))
        if created:
            log.info("created %s with the finalized features %s", FEATURE, default_finalized())
        return created

    async def set_feature_znode(
        self, node: FeatureZNode, expected_version: int, fence: ControllerFence
    ) -> int:
        """The controller's compare-and-set of /feature; returns the new data version.
        BadVersionError when it changed since `expected_version`."""
        await self._fenced([Op.set(FEATURE, node.to_json(), expected_version)], fence)
        return expected_version + 1

    # --- offsets of OffsetCommit v0 -------------------------------------------------------

    async def consumer_offset(self, group: str, topic: str, partition: int) -> int | None:
        path = L.consumer_offset_path(group, topic, partition)
        found = await self.client.get_or_none(path)
        return None if found is None else L.decode_consumer_offset(found[0], path)

    async def set_consumer_offset(
        self, group: str, topic: str, partition: int, offset: int
    ) -> None:
        """Sets the znode, creating it and its parents when missing (Kafka's
        setOrCreateConsumerOffset)."""
        path = L.consumer_offset_path(group, topic, partition)
        data = L.encode_consumer_offset(offset)
        try:
            await self.client.set(path, data)
        except NoNodeError:
            try:
                await self.client.create(path, data, make_parents=True)
            except NodeExistsError:  # created by another broker meanwhile: last writer wins
                await self.client.set(path, data)

    # --- plumbing ------------------------------------------------------------------------

    async def _fenced(self, ops: list[Op], fence: ControllerFence) -> None:
        try:
            await self.client.transaction(
                [Op.check(L.CONTROLLER_EPOCH, fence.epoch_zk_version), *ops]
            )
        except TransactionFailed as exc:
            if exc.index == 0:
                raise ControllerMovedError(
                    f"controller epoch {fence.epoch} is stale: /controller_epoch changed"
                ) from None
            raise exc.cause from None
