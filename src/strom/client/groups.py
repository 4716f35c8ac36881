"""Consumer group administration: list, describe (members, assignments, lag), committed
offsets, seek (commit new offsets for an inactive group) and delete.

Group requests go to the group's coordinator. A group of the KIP-848 consumer protocol is
described with ConsumerGroupDescribe (its members have no classic assignment bytes), a share
group (KIP-932) with ShareGroupDescribe (its lag with DescribeShareGroupOffsets), a classic
group with DescribeGroups, decoding the consumer protocol's assignments.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from strom.client.admin import LATEST, TopicPartition, list_offsets
from strom.client.client import Client
from strom.client.errors import ClientError, KafkaError, check
from strom.protocol.errors import ErrorCode, ProtocolError
from strom.protocol.messages.alter_share_group_offsets_request import (
    AlterShareGroupOffsetsRequest,
    AlterShareGroupOffsetsRequestPartition,
    AlterShareGroupOffsetsRequestTopic,
)
from strom.protocol.messages.consumer_group_describe_request import ConsumerGroupDescribeRequest
from strom.protocol.messages.consumer_protocol_assignment import ConsumerProtocolAssignment
from strom.protocol.messages.delete_groups_request import DeleteGroupsRequest
from strom.protocol.messages.describe_groups_request import DescribeGroupsRequest
from strom.protocol.messages.describe_share_group_offsets_request import (
    DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsRequestGroup,
)
from strom.protocol.messages.list_groups_request import ListGroupsRequest
from strom.protocol.messages.offset_commit_request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from strom.protocol.messages.offset_fetch_request import (
    OffsetFetchRequest,
    OffsetFetchRequestGroup,
)
from strom.protocol.messages.share_group_describe_request import ShareGroupDescribeRequest
from strom.protocol.primitives import Reader

OFFSET_COMMIT = 8
OFFSET_FETCH = 9
DESCRIBE_GROUPS = 15
LIST_GROUPS = 16
DELETE_GROUPS = 42
CONSUMER_GROUP_DESCRIBE = 69
SHARE_GROUP_DESCRIBE = 77
DESCRIBE_SHARE_GROUP_OFFSETS = 90
ALTER_SHARE_GROUP_OFFSETS = 91


@dataclass(slots=True)
class GroupListing:
    group_id: str
    protocol_type: str
    state: str
    group_type: str
    coordinator: int


@dataclass(slots=True)
class GroupMember:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    assignment: list[TopicPartition] = field(default_factory=list)


@dataclass(slots=True)
class GroupDescription:
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    coordinator: int
    members: list[GroupMember]


@dataclass(slots=True)
class PartitionLag:
    """For a share group `committed` is the share-partition start offset (the first record
    not yet acknowledged or archived), as DescribeShareGroupOffsets answers it."""

    topic: str
    partition: int
    committed: int | None  # None: nothing committed (a share group: nothing consumed)
    log_end: int
    member_id: str | None
    reported_lag: int | None = None  # the broker's own figure (DescribeShareGroupOffsets v1)
    # A share group's records waiting for their delivery time (a Strom broker's figure).
    delayed: int | None = None

    @property
    def lag(self) -> int | None:
        if self.reported_lag is not None:
            return self.reported_lag
        return None if self.committed is None else max(0, self.log_end - self.committed)


async def list_groups(client: Client) -> list[GroupListing]:
    """Every group of every broker (each broker lists the groups it coordinates)."""
    metadata = await client.metadata([])

    async def ask(node: int) -> list[GroupListing]:
        response = await client.call(LIST_GROUPS, ListGroupsRequest(), node_id=node)
        check(response.error_code, f"ListGroups on broker {node}")
        return [
            GroupListing(g.group_id, g.protocol_type, g.group_state, g.group_type, node)
            for g in response.groups
        ]

    results = await asyncio.gather(*(ask(n) for n in sorted(metadata.brokers)))
    seen: dict[str, GroupListing] = {}
    for listings in results:
        for g in listings:
            seen.setdefault(g.group_id, g)
    return sorted(seen.values(), key=lambda g: g.group_id)


def decode_assignment(data: bytes | memoryview | None) -> list[TopicPartition]:
    """The partitions of a consumer protocol assignment (any version: the v0 prefix is what
    every later version starts with)."""
    if not data:
        return []
    reader = Reader(memoryview(data))
    try:
        reader.read_int16()
        assignment = ConsumerProtocolAssignment.read(reader, 0)
    except ProtocolError:
        return []
    return sorted((tp.topic, p) for tp in assignment.assigned_partitions for p in tp.partitions)


async def describe_group(client: Client, group_id: str) -> GroupDescription:
    coordinator = await client.find_coordinator(group_id)
    conn = await client.connection(coordinator)
    if CONSUMER_GROUP_DESCRIBE in conn.versions:
        response = await client.call(
            CONSUMER_GROUP_DESCRIBE,
            ConsumerGroupDescribeRequest(group_ids=[group_id]),
            node_id=coordinator,
        )
        g = response.groups[0]
        if g.error_code == ErrorCode.NONE:
            return GroupDescription(
                group_id,
                g.group_state,
                "consumer",
                g.assignor_name,
                coordinator,
                [
                    GroupMember(
                        m.member_id,
                        m.instance_id,
                        m.client_id,
                        m.client_host,
                        sorted(
                            (tp.topic_name, p)
                            for tp in m.assignment.topic_partitions
                            for p in tp.partitions
                        ),
                    )
                    for m in g.members
                ],
            )
        if g.error_code not in (ErrorCode.GROUP_ID_NOT_FOUND, ErrorCode.UNSUPPORTED_VERSION):
            check(g.error_code, f"group {group_id!r}", g.error_message)
    if SHARE_GROUP_DESCRIBE in conn.versions:
        shared = await _describe_share_group(client, group_id, coordinator)
        if shared is not None:
            return shared
    response = await client.call(
        DESCRIBE_GROUPS, DescribeGroupsRequest(groups=[group_id]), node_id=coordinator
    )
    d = response.groups[0]
    check(d.error_code, f"group {group_id!r}")
    consumer = d.protocol_type == "consumer"
    members = [
        GroupMember(
            m.member_id,
            m.group_instance_id,
            m.client_id,
            m.client_host,
            decode_assignment(m.member_assignment) if consumer else [],
        )
        for m in d.members
    ]
    return GroupDescription(
        group_id, d.group_state, d.protocol_type, d.protocol_data, coordinator, members
    )


async def _describe_share_group(
    client: Client, group_id: str, coordinator: int
) -> GroupDescription | None:
    """A share group (KIP-932) described, or None when the group is of another type."""
    response = await client.call(
        SHARE_GROUP_DESCRIBE, ShareGroupDescribeRequest(group_ids=[group_id]), node_id=coordinator
    )
    g = response.groups[0]
    if g.error_code in (ErrorCode.GROUP_ID_NOT_FOUND, ErrorCode.UNSUPPORTED_VERSION):
        return None
    check(g.error_code, f"share group {group_id!r}", g.error_message)
    return GroupDescription(
        group_id,
        g.group_state,
        "share",
        g.assignor_name,
        coordinator,
        [
            GroupMember(
                m.member_id,
                None,
                m.client_id,
                m.client_host,
                sorted(
                    (tp.topic_name, p)
                    for tp in m.assignment.topic_partitions
                    for p in tp.partitions
                ),
            )
            for m in g.members
        ],
    )


async def committed_offsets(
    client: Client, group_id: str, coordinator: int | None = None
) -> dict[TopicPartition, int]:
    """Every offset the group has committed."""
    if coordinator is None:
        coordinator = await client.find_coordinator(group_id)
    version = await client.version_for(OFFSET_FETCH, coordinator)
    request = OffsetFetchRequest(
        group_id=group_id,
        topics=None,
        groups=[OffsetFetchRequestGroup(group_id=group_id, topics=None)],
    )
    response = await client.call(OFFSET_FETCH, request, node_id=coordinator, version=version)
    if version >= 8:
        g = response.groups[0]
        check(g.error_code, f"offsets of group {group_id!r}")
        topics = g.topics
    else:
        if version >= 2:
            check(response.error_code, f"offsets of group {group_id!r}")
        topics = response.topics
    out = {}
    for t in topics:
        for p in t.partitions:
            check(p.error_code, f"offset of group {group_id!r} on {t.name}-{p.partition_index}")
            if p.committed_offset >= 0:
                out[(t.name, p.partition_index)] = p.committed_offset
    return out


async def group_lag(
    client: Client, group_id: str, description: GroupDescription | None = None
) -> list[PartitionLag]:
    """Per partition the group reads or has committed: committed offset, log end, lag and the
    member it is assigned to."""
    description = description or await describe_group(client, group_id)
    if description.protocol_type == "share":
        return await _share_group_lag(client, group_id, description)
    committed = await committed_offsets(client, group_id, description.coordinator)
    owner = {tp: m.member_id for m in description.members for tp in m.assignment}
    partitions = sorted(set(committed) | set(owner))
    if not partitions:
        return []
    await client.metadata(sorted({t for t, _ in partitions}))
    ends = await list_offsets(client, partitions, LATEST)
    return [
        PartitionLag(t, p, committed.get((t, p)), ends[(t, p)].offset, owner.get((t, p)))
        for t, p in partitions
    ]


async def share_group_offsets(
    client: Client, group_id: str, coordinator: int
) -> dict[TopicPartition, tuple[int, int | None, int | None]]:
    """Per partition the share group has state for: its start offset, from version 1 the
    broker's lag, and from a Strom broker the records waiting for their delivery time;
    partitions the group has not consumed yet are left out (start offset -1)."""
    request = DescribeShareGroupOffsetsRequest(
        groups=[DescribeShareGroupOffsetsRequestGroup(group_id=group_id, topics=None)]
    )
    version = await client.version_for(DESCRIBE_SHARE_GROUP_OFFSETS, coordinator)
    response = await client.call(
        DESCRIBE_SHARE_GROUP_OFFSETS, request, node_id=coordinator, version=version
    )
    (g,) = response.groups
    check(g.error_code, f"offsets of share group {group_id!r}", g.error_message)
    out: dict[TopicPartition, tuple[int, int | None, int | None]] = {}
    for t in g.topics:
        for p in t.partitions:
            check(p.error_code, f"share group {group_id!r} on {t.topic_name}", p.error_message)
            if p.start_offset >= 0:
                lag = p.lag if version >= 1 and p.lag >= 0 else None
                delayed = p.strom_delayed_records if p.strom_delayed_records >= 0 else None
                out[(t.topic_name, p.partition_index)] = (p.start_offset, lag, delayed)
    return out


async def _share_group_lag(
    client: Client, group_id: str, description: GroupDescription
) -> list[PartitionLag]:
    """A share group's lag per partition: the broker's figure where it gives one (version 1:
    records from the start offset to the high watermark not yet acknowledged or archived),
    else the log end offset minus the start offset, as Kafka's kafka-share-groups tool
    computes it from version 0."""
    conn = await client.connection(description.coordinator)
    if DESCRIBE_SHARE_GROUP_OFFSETS not in conn.versions:
        return []
    offsets = await share_group_offsets(client, group_id, description.coordinator)
    owner = {tp: m.member_id for m in description.members for tp in m.assignment}
    partitions = sorted(set(offsets) | set(owner))
    if not partitions:
        return []
    await client.metadata(sorted({t for t, _ in partitions}))
    ends = await list_offsets(client, partitions, LATEST)
    out = []
    for tp in partitions:
        start, lag, delayed = offsets.get(tp, (None, None, None))
        out.append(PartitionLag(tp[0], tp[1], start, ends[tp].offset, owner.get(tp), lag, delayed))
    return out


async def commit_offsets(
    client: Client, group_id: str, offsets: Mapping[TopicPartition, int]
) -> None:
    """Commit `offsets` for a group with no active members (what kafka-consumer-groups
    --reset-offsets does); an active group answers UNKNOWN_MEMBER_ID."""
    coordinator = await client.find_coordinator(group_id)
    topics: dict[str, list[OffsetCommitRequestPartition]] = defaultdict(list)
    for (topic, partition), offset in sorted(offsets.items()):
        topics[topic].append(
            OffsetCommitRequestPartition(
                partition_index=partition,
                committed_offset=offset,
                committed_leader_epoch=-1,
                committed_metadata="",
            )
        )
    request = OffsetCommitRequest(
        group_id=group_id,
        generation_id_or_member_epoch=-1,
        member_id="",
        group_instance_id=None,
        retention_time_ms=-1,
        topics=[OffsetCommitRequestTopic(t, ps) for t, ps in topics.items()],
    )
    response = await client.call(OFFSET_COMMIT, request, node_id=coordinator)
    for t in response.topics:
        for p in t.partitions:
            if p.error_code == ErrorCode.UNKNOWN_MEMBER_ID:
                raise KafkaError(
                    p.error_code,
                    f"group {group_id!r}",
                    "the group has active members; stop them first",
                )
            check(p.error_code, f"commit for group {group_id!r} on {t.name}-{p.partition_index}")


async def alter_share_group_offsets(
    client: Client, group_id: str, offsets: Mapping[TopicPartition, int]
) -> None:
    """Set a share group's start offsets (what kafka-share-groups --reset-offsets does); the
    group must have no members (else NON_EMPTY_GROUP)."""
    coordinator = await client.find_coordinator(group_id)
    topics: dict[str, list[AlterShareGroupOffsetsRequestPartition]] = defaultdict(list)
    for (topic, partition), offset in sorted(offsets.items()):
        topics[topic].append(AlterShareGroupOffsetsRequestPartition(partition, offset))
    request = AlterShareGroupOffsetsRequest(
        group_id=group_id,
        topics=[AlterShareGroupOffsetsRequestTopic(t, ps) for t, ps in topics.items()],
    )
    response = await client.call(ALTER_SHARE_GROUP_OFFSETS, request, node_id=coordinator)
    if response.error_code == ErrorCode.NON_EMPTY_GROUP:
        raise KafkaError(
            response.error_code,
            f"share group {group_id!r}",
            "the group has members; stop them first",
        )
    check(response.error_code, f"share group {group_id!r}", response.error_message)
    for t in response.responses:
        for p in t.partitions:
            check(
                p.error_code,
                f"share group {group_id!r} on {t.topic_name}-{p.partition_index}",
                p.error_message,
            )


async def delete_groups(client: Client, group_ids: Iterable[str]) -> dict[str, KafkaError | None]:
    out: dict[str, KafkaError | None] = {}
    for group_id in group_ids:
        try:
            coordinator = await client.find_coordinator(group_id)
        except KafkaError as exc:
            out[group_id] = exc
            continue
        response = await client.call(
            DELETE_GROUPS, DeleteGroupsRequest(groups_names=[group_id]), node_id=coordinator
        )
        r = response.results[0]
        out[group_id] = (
            None
            if r.error_code == ErrorCode.NONE
            else KafkaError(r.error_code, f"group {group_id!r}")
        )
    return out


def require_partitions(wanted: Iterable[TopicPartition], known: Iterable[TopicPartition]) -> None:
    missing = sorted(set(wanted) - set(known))
    if missing:
        raise ClientError("unknown partitions: " + ", ".join(f"{t}-{p}" for t, p in missing[:10]))
