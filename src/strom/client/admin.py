"""Admin operations over a `Client`: topics, configs, partitions, offsets, the cluster.

Writes that Kafka's ZooKeeper-mode brokers take only on the controller (CreateTopics,
DeleteTopics, CreatePartitions) go to the controller named in Metadata; Strom takes them on
any broker, KRaft-mode Kafka forwards them. Broker configs are asked of the broker they belong
to, as Kafka's AdminClient does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from strom.client.client import Client, ClusterMetadata
from strom.client.errors import ClientError, KafkaError, check
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.create_partitions_request import (
    CreatePartitionsRequest,
    CreatePartitionsTopic,
)
from strom.protocol.messages.create_topics_request import (
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
)
from strom.protocol.messages.delete_records_request import (
    DeleteRecordsPartition,
    DeleteRecordsRequest,
    DeleteRecordsTopic,
)
from strom.protocol.messages.delete_topics_request import DeleteTopicsRequest, DeleteTopicState
from strom.protocol.messages.describe_cluster_request import DescribeClusterRequest
from strom.protocol.messages.describe_configs_request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)
from strom.protocol.messages.describe_log_dirs_request import (
    DescribableLogDirTopic,
    DescribeLogDirsRequest,
)
from strom.protocol.messages.incremental_alter_configs_request import (
    AlterableConfig,
    AlterConfigsResource,
    IncrementalAlterConfigsRequest,
)
from strom.protocol.messages.list_offsets_request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)

CREATE_TOPICS = 19
DELETE_TOPICS = 20
DELETE_RECORDS = 21
LIST_OFFSETS = 2
DESCRIBE_CONFIGS = 32
CREATE_PARTITIONS = 37
INCREMENTAL_ALTER_CONFIGS = 44
DESCRIBE_CLUSTER = 60
DESCRIBE_LOG_DIRS = 35

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
RESOURCE_GROUP = 32

_RESOURCE_NOUNS = {RESOURCE_TOPIC: "topic", RESOURCE_BROKER: "broker", RESOURCE_GROUP: "group"}

OP_SET = 0
OP_DELETE = 1

# ListOffsets' special timestamps
LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3

CONFIG_SOURCES = {
    0: "UNKNOWN",
    1: "DYNAMIC_TOPIC_CONFIG",
    2: "DYNAMIC_BROKER_CONFIG",
    3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
    4: "STATIC_BROKER_CONFIG",
    5: "DEFAULT_CONFIG",
    6: "DYNAMIC_BROKER_LOGGER_CONFIG",
    7: "CLIENT_METRICS_CONFIG",
    8: "GROUP_CONFIG",
}

_ZERO_UUID = uuid.UUID(int=0)

TopicPartition = tuple[str, int]


async def _controller_or_any(client: Client) -> int | None:
    metadata = await client.metadata([])
    controller = metadata.controller_id
    return controller if controller in metadata.brokers else None


# -- topics ---------------------------------------------------------------------------------


@dataclass(slots=True)
class CreatedTopic:
    name: str
    topic_id: uuid.UUID
    partitions: int
    replication_factor: int


async def create_topic(
    client: Client,
    name: str,
    *,
    partitions: int = -1,
    replication_factor: int = -1,
    configs: Mapping[str, str] | None = None,
    validate_only: bool = False,
    timeout_ms: int = 30000,
) -> CreatedTopic:
    """Create one topic; -1 partitions or replication factor take the broker's defaults."""
    node = await _controller_or_any(client)
    version = await client.version_for(CREATE_TOPICS, node)
    if version < 4 and (partitions < 0 or replication_factor < 0):
        raise KafkaError(
            ErrorCode.INVALID_REQUEST,
            f"topic {name!r}",
            "this broker needs --partitions and --replication-factor",
        )
    request = CreateTopicsRequest(
        topics=[
            CreatableTopic(
                name=name,
                num_partitions=partitions,
                replication_factor=replication_factor,
                configs=[CreatableTopicConfig(k, v) for k, v in (configs or {}).items()],
            )
        ],
        timeout_ms=timeout_ms,
        validate_only=validate_only,
    )
    response = await client.call(CREATE_TOPICS, request, node_id=node, version=version)
    result = response.topics[0]
    check(result.error_code, f"topic {name!r}", result.error_message)
    return CreatedTopic(
        name,
        result.topic_id if version >= 7 else _ZERO_UUID,
        result.num_partitions if version >= 5 else partitions,
        result.replication_factor if version >= 5 else replication_factor,
    )


async def delete_topics(
    client: Client, names: Iterable[str], *, timeout_ms: int = 30000
) -> dict[str, KafkaError | None]:
    """Delete topics; the result maps each name to None (deleted) or its error."""
    names = list(names)
    node = await _controller_or_any(client)
    version = await client.version_for(DELETE_TOPICS, node)
    request = DeleteTopicsRequest(
        topics=[DeleteTopicState(name=n, topic_id=_ZERO_UUID) for n in names],
        topic_names=names,
        timeout_ms=timeout_ms,
    )
    response = await client.call(DELETE_TOPICS, request, node_id=node, version=version)
    out: dict[str, KafkaError | None] = {}
    for r in response.responses:
        name = r.name or ""
        out[name] = (
            None
            if r.error_code == ErrorCode.NONE
            else KafkaError(r.error_code, f"topic {name!r}", r.error_message)
        )
    return out


async def create_partitions(
    client: Client, topic: str, total: int, *, validate_only: bool = False
) -> None:
    """Grow `topic` to `total` partitions."""
    node = await _controller_or_any(client)
    request = CreatePartitionsRequest(
        topics=[CreatePartitionsTopic(name=topic, count=total, assignments=None)],
        timeout_ms=30000,
        validate_only=validate_only,
    )
    response = await client.call(CREATE_PARTITIONS, request, node_id=node)
    result = response.results[0]
    check(result.error_code, f"topic {topic!r}", result.error_message)


async def delete_records(
    client: Client, offsets: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Move log start offsets up to `offsets` (-1: the high watermark); returns the new low
    watermarks."""
    by_leader: dict[int, dict[str, list[DeleteRecordsPartition]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for (topic, partition), offset in offsets.items():
        leader = await client.leader_for(topic, partition)
        by_leader[leader][topic].append(DeleteRecordsPartition(partition, offset))
    out: dict[TopicPartition, int] = {}
    for leader, topics in by_leader.items():
        request = DeleteRecordsRequest(
            topics=[DeleteRecordsTopic(t, parts) for t, parts in topics.items()],
            timeout_ms=30000,
        )
        response = await client.call(DELETE_RECORDS, request, node_id=leader)
        for t in response.topics:
            for p in t.partitions:
                check(p.error_code, f"partition {t.name}-{p.partition_index}")
                out[(t.name, p.partition_index)] = p.low_watermark
    return out


# -- configs --------------------------------------------------------------------------------


@dataclass(slots=True)
class ConfigEntry:
    name: str
    value: str | None
    source: str
    read_only: bool
    sensitive: bool
    synonyms: list[tuple[str, str | None, str]] = field(default_factory=list)
    documentation: str | None = None

    @property
    def is_default(self) -> bool:
        return self.source == "DEFAULT_CONFIG"


async def describe_configs(
    client: Client,
    resource_type: int,
    name: str,
    keys: Iterable[str] | None = None,
    *,
    synonyms: bool = False,
    documentation: bool = False,
) -> list[ConfigEntry]:
    node: int | None = None
    if resource_type == RESOURCE_BROKER and name:
        node = int(name)
    request = DescribeConfigsRequest(
        resources=[
            DescribeConfigsResource(
                resource_type, name, None if keys is None else sorted(set(keys))
            )
        ],
        include_synonyms=synonyms,
        include_documentation=documentation,
    )
    response = await client.call(DESCRIBE_CONFIGS, request, node_id=node)
    result = response.results[0]
    what = f"{_RESOURCE_NOUNS.get(resource_type, 'resource')} {name!r}"
    check(result.error_code, what, result.error_message)
    entries = []
    for c in result.configs:
        source = CONFIG_SOURCES.get(c.config_source, str(c.config_source))
        if c.is_default and c.config_source in (0, 5):
            source = "DEFAULT_CONFIG"
        entries.append(
            ConfigEntry(
                c.name,
                c.value,
                source,
                c.read_only,
                c.is_sensitive,
                [
                    (s.name, s.value, CONFIG_SOURCES.get(s.source, str(s.source)))
                    for s in c.synonyms
                ],
                c.documentation,
            )
        )
    return sorted(entries, key=lambda e: e.name)


async def alter_configs(
    client: Client,
    resource_type: int,
    name: str,
    set_: Mapping[str, str],
    delete: Iterable[str] = (),
    *,
    validate_only: bool = False,
) -> None:
    """IncrementalAlterConfigs: SET each of `set_`, DELETE (back to the default) each of
    `delete`."""
    node = int(name) if resource_type == RESOURCE_BROKER and name else None
    configs = [AlterableConfig(k, OP_SET, v) for k, v in set_.items()]
    configs += [AlterableConfig(k, OP_DELETE, None) for k in delete]
    request = IncrementalAlterConfigsRequest(
        resources=[AlterConfigsResource(resource_type, name, configs)],
        validate_only=validate_only,
    )
    response = await client.call(INCREMENTAL_ALTER_CONFIGS, request, node_id=node)
    result = response.responses[0]
    what = f"{_RESOURCE_NOUNS.get(resource_type, 'resource')} {name!r}"
    check(result.error_code, what, result.error_message)


# -- offsets --------------------------------------------------------------------------------


@dataclass(slots=True)
class OffsetAnswer:
    offset: int
    timestamp: int
    error_code: int = 0


async def list_offsets(
    client: Client,
    partitions: Iterable[TopicPartition],
    timestamp: int | Mapping[TopicPartition, int],
    *,
    read_committed: bool = False,
) -> dict[TopicPartition, OffsetAnswer]:
    """ListOffsets per partition, from each partition's leader. `timestamp` is LATEST,
    EARLIEST, MAX_TIMESTAMP, a time in ms, or one of those per partition. An offset of -1
    means no record at or after the time."""
    parts = list(partitions)
    by_leader: dict[int, list[TopicPartition]] = defaultdict(list)
    for tp in parts:
        by_leader[await client.leader_for(*tp)].append(tp)

    async def ask(leader: int, tps: list[TopicPartition]) -> dict[TopicPartition, OffsetAnswer]:
        topics: dict[str, list[ListOffsetsPartition]] = defaultdict(list)
        for topic, partition in tps:
            ts = timestamp if isinstance(timestamp, int) else timestamp[(topic, partition)]
            topics[topic].append(
                ListOffsetsPartition(partition, current_leader_epoch=-1, timestamp=ts)
            )
        request = ListOffsetsRequest(
            replica_id=-1,
            isolation_level=1 if read_committed else 0,
            topics=[ListOffsetsTopic(t, ps) for t, ps in topics.items()],
            timeout_ms=30000,
        )
        response = await client.call(LIST_OFFSETS, request, node_id=leader)
        answers = {}
        for t in response.topics:
            for p in t.partitions:
                answers[(t.name, p.partition_index)] = OffsetAnswer(
                    p.offset, p.timestamp, p.error_code
                )
        return answers

    results = await asyncio.gather(*(ask(leader, tps) for leader, tps in by_leader.items()))
    merged: dict[TopicPartition, OffsetAnswer] = {}
    for r in results:
        merged.update(r)
    for tp in parts:
        answer = merged.get(tp)
        if answer is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"partition {tp[0]}-{tp[1]}")
        check(answer.error_code, f"partition {tp[0]}-{tp[1]}")
    return merged


def topic_partitions(metadata: ClusterMetadata, topics: Iterable[str]) -> list[TopicPartition]:
    out: list[TopicPartition] = []
    for t in topics:
        info = metadata.topic(t)
        out.extend((t, p) for p in sorted(info.partitions))
    return out


# -- cluster --------------------------------------------------------------------------------


@dataclass(slots=True)
class ClusterInfo:
    cluster_id: str | None
    controller_id: int
    brokers: list[tuple[int, str, int, str | None]]
    api_versions: dict[int, dict[int, tuple[int, int]]]  # node -> api key -> range


async def describe_cluster(client: Client) -> ClusterInfo:
    metadata = await client.metadata([])
    conn = await client.any_connection()
    cluster_id, controller = metadata.cluster_id, metadata.controller_id
    brokers = [(b.node_id, b.host, b.port, b.rack) for b in metadata.brokers.values()]
    if DESCRIBE_CLUSTER in conn.versions:
        response = await client.call(DESCRIBE_CLUSTER, DescribeClusterRequest())
        check(response.error_code, "DescribeCluster", response.error_message)
        cluster_id, controller = response.cluster_id, response.controller_id
        brokers = [(b.broker_id, b.host, b.port, b.rack) for b in response.brokers]
    versions: dict[int, dict[int, tuple[int, int]]] = {}
    for node_id, *_ in brokers:
        try:
            versions[node_id] = dict((await client.connection(node_id)).versions)
        except ClientError:  # an unreachable broker shows without versions
            versions[node_id] = {}
    return ClusterInfo(cluster_id, controller, sorted(brokers), versions)


async def replica_sizes(
    client: Client, topic: str, partitions: Iterable[int], brokers: Iterable[int]
) -> dict[tuple[int, int], int]:
    """(partition, broker) -> bytes of that replica, from DescribeLogDirs on each broker
    (brokers that do not answer are left out)."""
    parts = sorted(partitions)
    request = DescribeLogDirsRequest(topics=[DescribableLogDirTopic(topic, parts)])

    async def ask(broker: int) -> dict[tuple[int, int], int]:
        try:
            response = await client.call(DESCRIBE_LOG_DIRS, request, node_id=broker)
        except ClientError:
            return {}
        sizes: dict[tuple[int, int], int] = {}
        for result in response.results:
            for t in result.topics:
                if t.name != topic:
                    continue
                for p in t.partitions:
                    key = (p.partition_index, broker)
                    sizes[key] = sizes.get(key, 0) + p.partition_size
        return sizes

    merged: dict[tuple[int, int], int] = {}
    for sizes in await asyncio.gather(*(ask(b) for b in sorted(set(brokers)))):
        merged.update(sizes)
    return merged
