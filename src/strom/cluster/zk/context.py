"""What the active controller knows (its cache) and what it tells the local broker."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from strom.cluster.ids import kafka_uuid_str
from strom.cluster.zk.client import WatchHandle
from strom.cluster.zk.controller_logic import PartitionView
from strom.cluster.zk.layout import PartitionState, TopicAssignment, TopicPartition
from strom.cluster.zk.store import ControllerFence, VersionedState


class NotControllerError(Exception):
    """The operation needs the active controller and this broker is not it."""


class StaleBrokerEpochError(Exception):
    """A broker's request named another registration than the one the controller knows."""


@dataclass(frozen=True, slots=True)
class PartitionUpdate:
    """A partition's state as written by the controller, with what a broker needs to act on
    it (Kafka's LeaderAndIsr partition state)."""

    tp: TopicPartition
    topic_id: str | None  # Kafka's base64 text of the topic id
    replicas: tuple[int, ...]
    state: PartitionState
    zk_version: int  # the leader needs it for its own ISR compare-and-set


class ControllerListener:
    """Hooks through which the local broker hears the controller. Override what you need;
    every hook runs on the event loop and must not block."""

    def on_partition_states(self, updates: Mapping[TopicPartition, PartitionUpdate]) -> None:
        """New partition states (on election, a full snapshot)."""

    def on_controller_change(self, controller_id: int | None, epoch: int) -> None:
        """The active controller changed (None: none known right now)."""

    def on_topics_deleted(self, topics: AbstractSet[str]) -> None:
        """Topics whose znodes the controller removed: replicas delete their logs."""

    def offline_replicas(self) -> AbstractSet[TopicPartition]:
        """The local broker's partitions whose log dir failed (what the other brokers answer
        LeaderAndIsr with KAFKA_STORAGE_ERROR for)."""
        return frozenset()


@dataclass
class ControllerContext:
    """The active controller's cache; thrown away when it resigns. Only the controller's
    event task reads or changes it."""

    fence: ControllerFence
    live: dict[int, int] = field(default_factory=dict)  # broker id -> registration czxid
    shutting_down: set[int] = field(default_factory=set)
    assignments: dict[str, TopicAssignment] = field(default_factory=dict)
    assignment_versions: dict[str, int] = field(default_factory=dict)  # topic znode versions
    states: dict[TopicPartition, VersionedState] = field(default_factory=dict)
    watches: list[WatchHandle] = field(default_factory=list)
    topic_watches: dict[str, WatchHandle] = field(default_factory=dict)
    # Replicas in failed log dirs, per broker (Kafka's replicasOnOfflineDirs): learnt from
    # KAFKA_STORAGE_ERROR answers to LeaderAndIsr, forgotten when the broker restarts or dies.
    offline_replicas: dict[int, set[TopicPartition]] = field(default_factory=dict)

    def live_ids(self) -> set[int]:
        # Brokers shutting down lead nothing new (as Kafka's liveBrokerIds).
        return set(self.live) - self.shutting_down

    def live_ids_for(self, tp: TopicPartition) -> set[int]:
        """The brokers whose replica of `tp` can lead or be in sync: live, not shutting down,
        and not holding it in a failed log dir."""
        return {b for b in self.live_ids() if tp not in self.offline_replicas.get(b, ())}

    def partitions(
        self, topics: Iterable[str] | None = None
    ) -> dict[TopicPartition, PartitionView]:
        out: dict[TopicPartition, PartitionView] = {}
        for topic in self.assignments if topics is None else topics:
            assignment = self.assignments.get(topic)
            if assignment is None:
                continue
            for p, replicas in assignment.partitions.items():
                tp = TopicPartition(topic, p)
                versioned = self.states.get(tp)
                out[tp] = PartitionView(replicas, versioned.state if versioned else None)
        return out

    def update(self, tp: TopicPartition) -> PartitionUpdate:
        vs = self.states[tp]
        assignment = self.assignments.get(tp.topic)
        replicas = assignment.partitions.get(tp.partition, ()) if assignment else ()
        topic_id = assignment.topic_id if assignment else None
        text_id = kafka_uuid_str(topic_id) if topic_id else None
        return PartitionUpdate(tp, text_id, replicas, vs.state, vs.version)
