"""Metadata (key 3), versions 0-12: brokers, cluster id, controller and topic partitions.

A single broker is the leader and the only replica of every partition; in cluster mode the
brokers, leaders, replicas and ISRs come from ZooKeeper (runtime/cluster_runtime.py). Topics a client names
that do not exist are created when auto.create.topics.enable and the request allow it (the
creation is synchronous, so the same response already describes the new topic). Topics can
be named by id from v12. Not done: authorized operations (no ACLs yet; always -2147483648).
"""

from __future__ import annotations

import uuid

from strom.cluster.local_metadata import TopicRecord
from strom.cluster.topic_names import INTERNAL_TOPICS, validate_topic_name
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.metadata_request import MetadataRequest
from strom.protocol.messages.metadata_response import (
    MetadataResponse,
    MetadataResponseBroker,
    MetadataResponsePartition,
    MetadataResponseTopic,
)
from strom.runtime.errors import ApiError
from strom.server.context import RequestContext
from strom.server.registry import handles

AUTHORIZED_OPERATIONS_OMITTED = -2147483648
ZERO_UUID = uuid.UUID(int=0)


def describe_topic(ctx: RequestContext, record: TopicRecord, name: str) -> MetadataResponseTopic:
    broker = ctx.broker
    if broker.cluster is not None:
        return broker.cluster.describe_topic(record, name)
    node_id = broker.node.node_id
    partitions = []
    for p in range(record.num_partitions):
        # A partition whose log dir failed has no leader (as Kafka's controller leaves it
        # when its only replica is offline).
        offline = broker.logs.is_offline(name, p)
        partitions.append(
            MetadataResponsePartition(
                error_code=ErrorCode.LEADER_NOT_AVAILABLE if offline else ErrorCode.NONE,
                partition_index=p,
                leader_id=-1 if offline else node_id,
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
    if request.topics is None:
        for name, existing in sorted(broker.metadata.topics.items()):
            topics.append(describe_topic(ctx, existing, name))
    else:
        # v0 has no flag; there an unknown topic was always auto-created.
        allow_auto = request.allow_auto_topic_creation if ctx.api_version >= 4 else True
        for wanted in request.topics:
            if wanted.name is None:
                found = broker.metadata.topic_by_id(wanted.topic_id)
                if found is None:
                    topics.append(_error_topic(None, ErrorCode.UNKNOWN_TOPIC_ID, wanted.topic_id))
                else:
                    topics.append(describe_topic(ctx, found[1], found[0]))
                continue
            name = wanted.name
            record: TopicRecord | None = broker.metadata.get_topic(name)
            if record is None and validate_topic_name(name) is not None:
                topics.append(_error_topic(name, ErrorCode.INVALID_TOPIC_EXCEPTION))
                continue
            if record is None and allow_auto:
                try:
                    record = broker.maybe_auto_create(name)
                except ApiError as exc:  # out of descriptors or disk space
                    topics.append(_error_topic(name, exc.code))
                    continue
            if record is None:
                topics.append(_error_topic(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
            else:
                topics.append(describe_topic(ctx, record, name))
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
        cluster_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
    )
