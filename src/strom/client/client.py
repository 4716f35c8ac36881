"""`Client`: connections to a cluster's brokers, its metadata, and where to send what.

It bootstraps from a list of addresses (the first that answers), learns the brokers from
Metadata, and keeps one connection per broker id. Requests for a partition go to its leader,
group requests to the group's coordinator (FindCoordinator). Everything is async; one client
is used by one event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from strom.client.connection import Connection, open_connection, split_address
from strom.client.errors import BrokerUnreachableError, ClientError, KafkaError, check
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from strom.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic

METADATA = 3
FIND_COORDINATOR = 10

COORDINATOR_GROUP = 0
COORDINATOR_TRANSACTION = 1

_ZERO_UUID = uuid.UUID(int=0)


@dataclass(slots=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(slots=True)
class PartitionInfo:
    partition: int
    leader: int
    leader_epoch: int
    replicas: list[int]
    isr: list[int]
    offline: list[int]
    error_code: int = 0


@dataclass(slots=True)
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    internal: bool
    partitions: dict[int, PartitionInfo] = field(default_factory=dict)
    error_code: int = 0


@dataclass(slots=True)
class ClusterMetadata:
    cluster_id: str | None
    controller_id: int
    brokers: dict[int, BrokerInfo]
    topics: dict[str, TopicInfo]

    def topic(self, name: str) -> TopicInfo:
        """The topic, or a `KafkaError` (UNKNOWN_TOPIC_OR_PARTITION, ...)."""
        info = self.topics.get(name)
        if info is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"topic {name!r}")
        check(info.error_code, f"topic {name!r}")
        return info


class Client:
    """Use as `async with Client("host:port") as client: ...`."""

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *,
        client_id: str = "strom-cli",
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 30.0,
    ) -> None:
        addresses = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)
        self.bootstrap = [split_address(a) for a in addresses if a.strip()]
        if not self.bootstrap:
            raise ClientError("no bootstrap server given")
        self.client_id = client_id
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self._bootstrap_conn: Connection | None = None
        self._conns: dict[int, Connection] = {}
        # One connection attempt per broker at a time: concurrent callers wait for it.
        self._opening: dict[int, asyncio.Future[Connection]] = {}
        self.metadata_cache: ClusterMetadata | None = None

    async def __aenter__(self) -> Client:
        await self.any_connection()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        conns = list(self._conns.values())
        if self._bootstrap_conn is not None:
            conns.append(self._bootstrap_conn)
        self._conns.clear()
        self._bootstrap_conn = None
        for conn in conns:
            await conn.close()

    # -- connections ------------------------------------------------------------------------

    async def _open(self, host: str, port: int) -> Connection:
        return await open_connection(
            host,
            port,
            self.client_id,
            connect_timeout_s=self.connect_timeout_s,
            request_timeout_s=self.request_timeout_s,
        )

    async def any_connection(self) -> Connection:
        """A connection to some broker: an open one, else the first bootstrap address that
        answers."""
        for conn in [self._bootstrap_conn, *self._conns.values()]:
            if conn is not None and not conn.closed:
                return conn
        reasons = []
        for host, port in self.bootstrap:
            try:
                self._bootstrap_conn = await self._open(host, port)
                return self._bootstrap_conn
            except BrokerUnreachableError as exc:
                reasons.append(str(exc))
        raise BrokerUnreachableError("; ".join(reasons))

    async def connection(self, node_id: int) -> Connection:
        conn = self._conns.get(node_id)
        if conn is not None and not conn.closed:
            return conn
        opening = self._opening.get(node_id)
        if opening is not None:
            return await asyncio.shield(opening)
        future: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self._opening[node_id] = future
        try:
            conn = await self._connect_to(node_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(conn)
            return conn
        finally:
            del self._opening[node_id]

    async def _connect_to(self, node_id: int) -> Connection:
        metadata = self.metadata_cache or await self.metadata([])
        broker = metadata.brokers.get(node_id)
        if broker is None:
            metadata = await self.metadata([])
            broker = metadata.brokers.get(node_id)
        if broker is None:
            raise BrokerUnreachableError(f"broker {node_id} is not in the cluster's metadata")
        conn = await self._open(broker.host, broker.port)
        self._conns[node_id] = conn
        return conn

    async def call(
        self,
        api_key: int,
        message: Any,
        *,
        node_id: int | None = None,
        version: int | None = None,
        timeout_s: float | None = None,
        expect_response: bool = True,
    ) -> Any:
        """Send to a broker (any one when `node_id` is None) and return the response."""
        conn = await (self.any_connection() if node_id is None else self.connection(node_id))
        return await conn.request(
            api_key,
            message,
            version,
            timeout_s=timeout_s if timeout_s is not None else self.request_timeout_s,
            expect_response=expect_response,
        )

    async def version_for(self, api_key: int, node_id: int | None = None) -> int:
        conn = await (self.any_connection() if node_id is None else self.connection(node_id))
        return conn.version_for(api_key)

    # -- metadata ---------------------------------------------------------------------------

    async def metadata(
        self, topics: Iterable[str] | None = None, *, allow_auto_create: bool = False
    ) -> ClusterMetadata:
        """Metadata for `topics` (None: every topic; []: brokers only)."""
        conn = await self.any_connection()
        version = conn.version_for(METADATA)
        request_topics = (
            None
            if topics is None
            else [MetadataRequestTopic(topic_id=_ZERO_UUID, name=t) for t in topics]
        )
        if request_topics is None and version == 0:
            request_topics = []  # v0 asks for every topic with an empty list
        response = await conn.request(
            METADATA,
            MetadataRequest(topics=request_topics, allow_auto_topic_creation=allow_auto_create),
            version,
            timeout_s=self.request_timeout_s,
        )
        result = ClusterMetadata(
            cluster_id=response.cluster_id,
            controller_id=response.controller_id,
            brokers={
                b.node_id: BrokerInfo(b.node_id, b.host, b.port, b.rack) for b in response.brokers
            },
            topics={},
        )
        for t in response.topics:
            if t.name is None:
                continue
            info = TopicInfo(t.name, t.topic_id, t.is_internal, error_code=t.error_code)
            for p in t.partitions:
                info.partitions[p.partition_index] = PartitionInfo(
                    p.partition_index,
                    p.leader_id,
                    p.leader_epoch,
                    list(p.replica_nodes),
                    list(p.isr_nodes),
                    list(p.offline_replicas),
                    p.error_code,
                )
            result.topics[t.name] = info
        self.metadata_cache = result
        return result

    async def leader_for(self, topic: str, partition: int, *, refresh: bool = False) -> int:
        metadata = self.metadata_cache
        if refresh or metadata is None or topic not in metadata.topics:
            metadata = await self.metadata([topic])
        info = metadata.topic(topic)
        part = info.partitions.get(partition)
        if part is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"partition {topic}-{partition}")
        if part.leader < 0:
            raise KafkaError(ErrorCode.LEADER_NOT_AVAILABLE, f"partition {topic}-{partition}")
        return part.leader

    async def find_coordinator(self, key: str, key_type: int = COORDINATOR_GROUP) -> int:
        """The node id of the group's (or transactional id's) coordinator."""
        conn = await self.any_connection()
        version = conn.version_for(FIND_COORDINATOR)
        request = FindCoordinatorRequest(key=key, key_type=key_type, coordinator_keys=[key])
        response = await conn.request(
            FIND_COORDINATOR, request, version, timeout_s=self.request_timeout_s
        )
        if version >= 4:
            entry = response.coordinators[0]
            check(entry.error_code, f"coordinator of {key!r}", entry.error_message)
            node, host, port = entry.node_id, entry.host, entry.port
        else:
            check(response.error_code, f"coordinator of {key!r}", response.error_message)
            node, host, port = response.node_id, response.host, response.port
        cache = self.metadata_cache
        if cache is not None and node not in cache.brokers:
            cache.brokers[node] = BrokerInfo(node, host, port)
        if cache is None:
            await self.metadata([])
            assert self.metadata_cache is not None
            self.metadata_cache.brokers.setdefault(node, BrokerInfo(node, host, port))
        return int(node)
