"""Metadata (key 3), versions 0-12: brokers, cluster id, controller and topic partitions.

A single broker is the leader and the only replica of every partition; in cluster mode the
brokers, leaders, replicas and ISRs come from ZooKeeper (runtime/cluster_runtime.py). Topics a client names
that do not exist are created when auto.create.topics.enable and the request allow it (the
creation is synchronous, so the same response already describes the new topic). Topics can
be named by id from v12.

With an authorizer (server/authz.py), as Kafka: topics the principal may not DESCRIBE are left
out of an all-topics answer and answered TOPIC_AUTHORIZATION_FAILED when named (by name: the
topic's existence is not disclosed; by id: the id is given back); auto-creation needs CREATE on
the cluster or on the topic. `include_topic_authorized_operations` (v8+) and
`include_cluster_authorized_operations` (v8-10) report the operations the principal may
perform (every supported one without an authorizer).
"""

from __future__ import annotations

import uuid

from strom.cluster.local_metadata import TopicRecord
from strom.cluster.topic_names import INTERNAL_TOPICS, validate_topic_name
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from strom.protocol.messages.metadata_response import (
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from strom.runtime.errors import ApiError
from strom.security.acl import CLUSTER_NAME, AclOperation, ResourceType
from strom.server.authz import (
    AUTHORIZED_OPERATIONS_OMITTED,
    authorize_cluster,
    authorized_names,
    authorized_operations,
)
from strom.server.context import RequestContext
from strom.server.registry import handles

ZERO_UUID = uuid.UUID(int=0)


def describe_topic(ctx: RequestContext, record: TopicRecord, name: str) -> MetadataResponseTopic:
    broker = ctx.broker
    if broker.cluster is not None:
        return broker.cluster.describe_topic(record, name)
    node_id = broker.node.node_id
    partitions = []
    for p in range(record.num_partitions):
        # A partition whose log dir failed has no leader (as Kafka's controller leaves it
        # when its only replica is offline), nor one whose log is still being created.
        offline = broker.logs.is_offline(name, p)
        leaderless = offline or (name, p) in broker.logs.pending
        partitions.append(
            MetadataResponsePartition(
                error_code=ErrorCode.LEADER_NOT_AVAILABLE if leaderless else ErrorCode.NONE,
                partition_index=p,
                leader_id=-1 if leaderless else node_id,
                leader_epoch=broker.leader_epoch(name, p),
                replica_nodes=[node_id],
                isr_nodes=[node_id],
                offline_replicas=[node_id] if offline else [],
            )
        )
    return MetadataResponseTopic(
        error_code=ErrorCode.NONE,
        name=name,
        topic_id=record.topic_id,
        is_internal=name in INTERNAL_TOPICS,
        partitions=partitions,
        topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
    )


def _error_topic(
    name: str | None, code: ErrorCode, topic_id: uuid.UUID = ZERO_UUID
) -> MetadataResponseTopic:
    return MetadataResponseTopic(
        error_code=code,
        name=name,
        topic_id=topic_id,
        is_internal=False,
        partitions=[],
        topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
    )


@handles(3, 0, 12)
def handle_metadata(ctx: RequestContext, request: MetadataRequest) -> MetadataResponse:
    broker = ctx.broker
    topics: list[MetadataResponseTopic] = []
    # v0 has no null list: an empty one asks for every topic.
    all_topics = request.topics is None or (ctx.api_version == 0 and not request.topics)
    if all_topics:
        # Topics the principal may not describe are left out, without a word.
        names = sorted(broker.metadata.topics)
        allowed = authorized_names(
            ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names, log_denied=False
        )
        for name in names:
            existing = broker.metadata.get_topic(name)
            if name in allowed and existing is not None:
                topics.append(describe_topic(ctx, existing, name))
    else:
        assert request.topics is not None
        topics = _named_topics(ctx, request.topics, request)
    if ctx.api_version >= 8 and request.include_topic_authorized_operations:
        for topic in topics:
            if topic.error_code == ErrorCode.NONE and topic.name is not None:
                topic.topic_authorized_operations = authorized_operations(
                    ctx, ResourceType.TOPIC, topic.name
                )
    cluster_operations = AUTHORIZED_OPERATIONS_OMITTED
    if 8 <= ctx.api_version <= 10 and request.include_cluster_authorized_operations:
        cluster_operations = (
            authorized_operations(ctx, ResourceType.CLUSTER, CLUSTER_NAME)
            if authorize_cluster(ctx, AclOperation.DESCRIBE)
            else 0
        )
    # The endpoints of the listener the request came in on, as Kafka answers.
    nodes = (
        broker.cluster.nodes(ctx.listener)
        if broker.cluster is not None
        else [broker.node_for(ctx.listener)]
    )
    return MetadataResponse(
        brokers=[
            MetadataResponseBroker(
                node_id=node.node_id, host=node.host, port=node.port, rack=node.rack
            )
            for node in nodes
        ],
        cluster_id=broker.metadata.cluster_id,
        controller_id=broker.controller_id(),
        topics=topics,
        cluster_authorized_operations=cluster_operations,
    )


def _named_topics(
    ctx: RequestContext, wanted_topics: list[MetadataRequestTopic], request: MetadataRequest
) -> list[MetadataResponseTopic]:
    """Kafka's order of checks: DESCRIBE first (a topic the principal may not describe is
    TOPIC_AUTHORIZATION_FAILED, whether it exists or not), then existence; a missing topic is
    created when auto.create.topics.enable and the request allow it and the principal may
    CREATE it (on the cluster or the topic), else TOPIC_AUTHORIZATION_FAILED."""
    broker = ctx.broker
    # Named by id (v12): an id is not secret, so a refusal names it.
    by_id: dict[int, tuple[str, TopicRecord]] = {}
    for i, wanted in enumerate(wanted_topics):
        if wanted.name is None:
            found = broker.metadata.topic_by_id(wanted.topic_id)
            if found is not None:
                by_id[i] = (found[0], found[1])
    names = [w.name for w in wanted_topics if w.name is not None]
    names.extend(name for name, _ in by_id.values())
    allowed = authorized_names(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names)
    # v0 has no flag; there an unknown topic was always auto-created.
    allow_auto = request.allow_auto_topic_creation if ctx.api_version >= 4 else True
    auto_create = allow_auto and broker.config.auto_create_topics_enable
    may_create: set[str] | None = None
    topics: list[MetadataResponseTopic] = []
    for i, wanted in enumerate(wanted_topics):
        if wanted.name is None:
            if i not in by_id:
                topics.append(_error_topic(None, ErrorCode.UNKNOWN_TOPIC_ID, wanted.topic_id))
            elif by_id[i][0] not in allowed:
                topics.append(
                    _error_topic(None, ErrorCode.TOPIC_AUTHORIZATION_FAILED, wanted.topic_id)
                )
            else:
                topics.append(describe_topic(ctx, by_id[i][1], by_id[i][0]))
            continue
        name = wanted.name
        if name not in allowed:
            topics.append(_error_topic(name, ErrorCode.TOPIC_AUTHORIZATION_FAILED))
            continue
        record: TopicRecord | None = broker.metadata.get_topic(name)
        if record is None and validate_topic_name(name) is not None:
            topics.append(_error_topic(name, ErrorCode.INVALID_TOPIC_EXCEPTION))
            continue
        if record is None and auto_create:
            if may_create is None:
                may_create = _creatable(ctx, wanted_topics)
            if name not in may_create:
                refused = _error_topic(name, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
                refused.is_internal = name in INTERNAL_TOPICS
                topics.append(refused)
                continue
            try:
                record = broker.maybe_auto_create(name)
            except ApiError as exc:  # out of descriptors or disk space
                topics.append(_error_topic(name, exc.code))
                continue
        if record is None:
            topics.append(_error_topic(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
        else:
            topics.append(describe_topic(ctx, record, name))
    return topics


def _creatable(ctx: RequestContext, wanted_topics: list[MetadataRequestTopic]) -> set[str]:
    names = {w.name for w in wanted_topics if w.name is not None}
    if authorize_cluster(ctx, AclOperation.CREATE, log_denied=False):
        return names
    return authorized_names(ctx, AclOperation.CREATE, ResourceType.TOPIC, names)
