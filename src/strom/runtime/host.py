"""What the runtimes see of the broker that hosts them.

The runtimes (coordinators on their internal topics, the replica manager, the cluster runtime)
are built by `strom.server.broker.Broker` and given the broker itself, but they know it only
through these protocols, so that `runtime/` never imports `server/`. The broker satisfies them
structurally; members that the runtimes only read are properties here, so that the broker's
plain attributes (and the runtimes' concrete types behind them) fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from strom.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from strom.clock import Clock
    from strom.cluster.local_metadata import LocalMetadata, TopicRecord
    from strom.cluster.zk_metadata import ZkMetadata
    from strom.config import BrokerConfig
    from strom.replication.fetcher import LeaderEndpoint
    from strom.runtime.purgatory import Purgatory
    from strom.storage.log_config import LogConfig
    from strom.storage.log_manager import LogManager
    from strom.storage.partition_log import PartitionLog

    # Single node: the JSON file in the data directory; cluster mode: the ZooKeeper cache.
    Metadata = LocalMetadata | ZkMetadata


@dataclass(frozen=True, slots=True)
class Node:
    """A broker as clients are told about it: the first data-plane listener it advertises."""

    node_id: int
    host: str
    port: int
    rack: str | None = None


class CoordinatorHandle(Protocol):
    """A coordinator runtime as replication sees it: its shards follow the leadership of its
    internal topic's partitions."""

    def become_leader(self, partition: int) -> None: ...

    def resign(self, partition: int) -> None: ...


class OffsetsCoordinator(CoordinatorHandle, Protocol):
    """The group coordinator, which also appends transaction markers to `__consumer_offsets`
    (its shards must see them in order with their own records)."""

    def write_marker(
        self,
        partition: int,
        producer_id: int,
        producer_epoch: int,
        coordinator_epoch: int,
        commit: bool,
    ) -> int | None: ...


class ReplicaView(Protocol):
    """What the coordinators ask of the replica manager in cluster mode."""

    def is_leader(self, topic: str, partition: int) -> bool: ...

    def check_produce(self, topic: str, partition: int, acks: int) -> ErrorCode: ...

    async def await_replicated(
        self, topic: str, partition: int, offset: int, timeout_ms: int
    ) -> ErrorCode: ...

    def endpoint(self, broker_id: int) -> LeaderEndpoint | None: ...


class ClusterView(Protocol):
    """What the coordinators ask of the cluster runtime (None on a single broker)."""

    @property
    def replicas(self) -> ReplicaView: ...

    @property
    def metadata(self) -> ZkMetadata: ...

    def create_internal_topic(
        self, name: str, num_partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> None: ...


class BrokerHost(Protocol):
    """The broker's services that every runtime uses."""

    @property
    def config(self) -> BrokerConfig: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def metadata(self) -> Metadata: ...

    @property
    def logs(self) -> LogManager: ...

    @property
    def fetch_purgatory(self) -> Purgatory: ...

    @property
    def produce_purgatory(self) -> Purgatory: ...

    @property
    def cluster(self) -> ClusterView | None: ...

    @property
    def groups(self) -> OffsetsCoordinator: ...

    def coordinator_for_topic(self, topic: str) -> CoordinatorHandle | None:
        """The coordinator runtime whose shards live on `topic`'s partitions, if any."""
        ...

    def partition_log(self, topic: str, partition: int) -> PartitionLog | None: ...

    def leader_epoch(self, topic: str, partition: int) -> int: ...

    def after_append(self, topic: str, partition: int) -> None: ...

    def log_config(self, topic: str) -> LogConfig: ...

    def create_internal_topic(
        self, name: str, num_partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> TopicRecord: ...


class ClusterHost(BrokerHost, Protocol):
    """What the cluster runtime needs beyond `BrokerHost`: the listeners it registers and the
    dynamic configs it applies from ZooKeeper."""

    @property
    def node(self) -> Node: ...

    def node_for(self, listener: str = "") -> Node: ...

    @property
    def bound_ports(self) -> dict[str, int]: ...

    def apply_dynamic_broker_configs(
        self, per_broker: dict[str, str], default: dict[str, str]
    ) -> None: ...
