"""A cluster-mode broker without ZooKeeper, for unit tests of ReplicaManager and follower
fetches: its metadata cache is filled as its watches would fill it (topic "rep", one partition,
replicas 1, 2, 3; this broker is 1), and its ReplicaManager acts on that as `strom serve`'s
would. The ZooKeeper client is never connected: a test that makes the broker write to
ZooKeeper (an ISR change) does not belong here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from strom.cluster.local_metadata import TopicRecord
from strom.cluster.zk.client import ZkClient
from strom.cluster.zk.layout import PartitionState, TopicAssignment, TopicPartition
from strom.cluster.zk.store import VersionedState
from strom.cluster.zk_metadata import ZkMetadata
from strom.config import BrokerConfig
from strom.protocol.messages.fetch_request import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
    ReplicaState,
)
from strom.protocol.messages.fetch_response import FetchResponse, PartitionData
from strom.protocol.records.batch_header import iter_batch_headers
from strom.protocol.records.codec import Record, build_batch
from strom.protocol.records.validation import validate_batches
from strom.runtime.cluster_runtime import ClusterRuntime
from strom.runtime.replica_manager import ReplicaManager
from strom.server.broker import Broker
from strom.server.context import RequestContext
from strom.server.follower_fetch import handle_follower_fetch
from strom.storage.partition_log import PartitionLog

TOPIC = "rep"
TOPIC_ID = uuid.UUID("0badc0de-0000-4000-8000-000000000001")
TP = TopicPartition(TOPIC, 0)
EPOCH = 5


@dataclass
class Leader:
    broker: Broker
    runtime: ClusterRuntime

    @property
    def log(self) -> PartitionLog:
        plog = self.broker.logs.get(TOPIC, 0)
        assert plog is not None
        return plog

    @property
    def replicas(self) -> ReplicaManager:
        return self.runtime.replicas

    @property
    def metadata(self) -> ZkMetadata:
        return self.runtime.metadata

    def set_state(
        self, leader: int, epoch: int, isr: tuple[int, ...] = (1, 2, 3), version: int = 0
    ) -> None:
        """The controller writes a new partition state; the cache hears of it."""
        known = self.metadata.states[TP]
        self.metadata.states[TP] = VersionedState(
            PartitionState(leader, epoch, isr, 1), version or known.version + 1
        )
        self.replicas.apply(TP)

    def append(self, count: int, epoch: int = EPOCH) -> int:
        """One batch of `count` records appended as the leader in `epoch`; its last offset."""
        now = int(time.time() * 1000)
        records = [Record(i, now, None, f"v{i}".encode()) for i in range(count)]
        data = bytearray(build_batch(records))
        self.log.append_as_leader(data, validate_batches(data), epoch, now)
        self.runtime.replicas.after_append(TOPIC, 0)
        return self.log.log_end_offset - 1

    def fetch(
        self, replica: int, offset: int, epoch: int = EPOCH, version: int = 17, **kw: int
    ) -> PartitionData:
        response = asyncio.run(self.fetch_async(replica, offset, epoch, version, **kw))
        ((partition,),) = [t.partitions for t in response.responses]
        return partition

    async def fetch_async(
        self,
        replica: int,
        offset: int,
        epoch: int = EPOCH,
        version: int = 17,
        last_fetched_epoch: int = -1,
        max_wait_ms: int = 0,
        topic_id: uuid.UUID = TOPIC_ID,
    ) -> FetchResponse:
        request = FetchRequest(
            replica_id=replica if version < 15 else -1,
            replica_state=ReplicaState(replica_id=replica if version >= 15 else -1),
            max_wait_ms=max_wait_ms,
            min_bytes=1,
            topics=[
                FetchTopic(
                    topic=TOPIC,
                    topic_id=topic_id,
                    partitions=[
                        FetchPartition(
                            partition=0,
                            current_leader_epoch=epoch,
                            fetch_offset=offset,
                            last_fetched_epoch=last_fetched_epoch,
                            log_start_offset=0,
                            partition_max_bytes=1 << 20,
                        )
                    ],
                )
            ],
        )
        ctx = RequestContext(self.broker, 1, version, 1, "replica", "127.0.0.1:1", bytearray())
        return await handle_follower_fetch(ctx, request, self.runtime.replicas)


def open_leader(tmp_path: Path, leader: int = 1) -> Leader:
    config = BrokerConfig.load(
        None,
        {
            "log.dirs": str(tmp_path / "data"),
            "broker.id": "1",
            "zookeeper.connect": "127.0.0.1:1",  # never connected
        },
    )
    metadata = ZkMetadata(ZkClient("127.0.0.1:1"), 1)
    # What the watches would have read: the topic, its assignment and its partition state.
    metadata._topics[TOPIC] = TopicRecord(TOPIC_ID, 1, 3)
    metadata._by_id[TOPIC_ID] = TOPIC
    metadata.assignments[TOPIC] = TopicAssignment({0: (1, 2, 3)}, TOPIC_ID)
    metadata.states[TP] = VersionedState(PartitionState(leader, EPOCH, (1, 2, 3), 1), 3)
    broker = Broker.open_cluster(config, metadata)
    runtime = ClusterRuntime(broker, metadata.client, metadata)
    broker.cluster = runtime
    runtime.replicas.apply(TP)
    return Leader(broker, runtime)


def close(lead: Leader) -> None:
    lead.broker.logs.close()
    lead.broker.io.shutdown(wait=True)


def offsets(data: PartitionData) -> list[int]:
    return [h.base_offset for _, h in iter_batch_headers(bytes(data.records))]
