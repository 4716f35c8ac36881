"""CreatePartitions (key 37), versions 0-3: raise a topic's partition count.

The new partitions are created at once (empty logs), so the timeout is not used. A count that
is not larger than the current one answers INVALID_PARTITIONS. Manual assignments, when given,
must list one replica set per new partition, each naming only existing brokers (this broker),
without repeats and with the topic's replication factor; anything else answers
INVALID_REPLICA_ASSIGNMENT. A topic named twice answers INVALID_REQUEST; an unknown topic
UNKNOWN_TOPIC_OR_PARTITION; a topic with a partition reassignment in progress (cluster mode)
REASSIGNMENT_IN_PROGRESS, as Kafka. validate_only runs every check and changes nothing. A topic
needs ALTER on it (TOPIC_AUTHORIZATION_FAILED). A controller_mutation_rate quota counts the
partitions added (strict from v3: THROTTLING_QUOTA_EXCEEDED).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.create_partitions_request import (
    CreatePartitionsRequest,
    CreatePartitionsTopic,
)
from strom.protocol.messages.create_partitions_response import (
    CreatePartitionsResponse,
    CreatePartitionsTopicResult,
)
from strom.runtime.errors import ApiError
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorized_names
from strom.server.context import RequestContext
from strom.server.registry import handles
from strom.server.throttle import THROTTLED_MESSAGE, MutationQuota


def check_replicas(ctx: RequestContext, broker_ids: list[int], partition_label: str) -> None:
    """One partition's manual replica list: non-empty, known brokers, no repeats."""
    if not broker_ids:
        raise ApiError(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            f"The replica list for {partition_label} is empty.",
        )
    known = set(ctx.broker.live_broker_ids())
    for broker_id in broker_ids:
        if broker_id not in known:
            raise ApiError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"The replica list for {partition_label} names broker {broker_id}, "
                "which is not a registered broker.",
            )
    if len(set(broker_ids)) != len(broker_ids):
        raise ApiError(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            f"The replica list for {partition_label} names a broker more than once.",
        )


def _validate(ctx: RequestContext, topic: CreatePartitionsTopic) -> None:
    record = ctx.broker.metadata.get_topic(topic.name)
    if record is None:
        raise ApiError(
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{topic.name}' does not exist."
        )
    cluster = ctx.broker.cluster
    placed = cluster.metadata.assignments.get(topic.name) if cluster else None
    if placed is not None and (placed.adding_replicas or placed.removing_replicas):
        raise ApiError(
            ErrorCode.REASSIGNMENT_IN_PROGRESS,
            f"A partition reassignment is in progress for topic '{topic.name}'.",
        )
    current = record.num_partitions
    if topic.count < current:
        raise ApiError(
            ErrorCode.INVALID_PARTITIONS,
            f"Topic '{topic.name}' has {current} partition(s); {topic.count} would not be an "
            "increase.",
        )
    if topic.count == current:
        raise ApiError(
            ErrorCode.INVALID_PARTITIONS,
            f"Topic '{topic.name}' already has {current} partition(s).",
        )
    if topic.assignments is None:
        return
    additional = topic.count - current
    if len(topic.assignments) != additional:
        raise ApiError(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            f"{additional} partition(s) would be added, but {len(topic.assignments)} "
            "assignment(s) were given.",
        )
    for offset, assignment in enumerate(topic.assignments):
        label = f"new partition {current + offset}"
        check_replicas(ctx, assignment.broker_ids, label)
        if len(assignment.broker_ids) != record.replication_factor:
            raise ApiError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"The replica list for {label} has {len(assignment.broker_ids)} replica(s), "
                f"but the topic's partitions have {record.replication_factor}.",
            )


@handles(37, 0, 3)
def handle_create_partitions(
    ctx: RequestContext, request: CreatePartitionsRequest
) -> CreatePartitionsResponse | Awaitable[CreatePartitionsResponse]:
    counts = Counter(topic.name for topic in request.topics)
    may_alter = authorized_names(ctx, AclOperation.ALTER, ResourceType.TOPIC, counts)
    results: list[CreatePartitionsTopicResult] = []
    answered: set[str] = set()
    mutations = MutationQuota(ctx, strict_from=3)
    for topic in request.topics:
        if topic.name in answered:
            continue  # a duplicated name gets one answer, as in Kafka
        answered.add(topic.name)
        result = CreatePartitionsTopicResult(
            name=topic.name, error_code=ErrorCode.NONE, error_message=None
        )
        results.append(result)
        try:
            if counts[topic.name] > 1:
                raise ApiError(ErrorCode.INVALID_REQUEST, "Duplicate topic name.")
            if topic.name not in may_alter:
                raise ApiError(
                    ErrorCode.TOPIC_AUTHORIZATION_FAILED, "The topic authorization is failed."
                )
            _validate(ctx, topic)
            if not request.validate_only:
                record = ctx.broker.metadata.get_topic(topic.name)
                added = topic.count - (record.num_partitions if record is not None else 0)
                if not mutations.take(max(added, 0)):
                    raise ApiError(ErrorCode.THROTTLING_QUOTA_EXCEEDED, THROTTLED_MESSAGE)
                ctx.broker.add_partitions(topic.name, topic.count)
        except ApiError as exc:
            result.error_code = exc.code
            result.error_message = exc.message or exc.code.name
    mutations.finish()
    if ctx.broker.cluster is not None and not request.validate_only:
        return _finish_in_cluster(ctx, CreatePartitionsResponse(results=results), request)
    return CreatePartitionsResponse(results=results)


async def _finish_in_cluster(
    ctx: RequestContext, response: CreatePartitionsResponse, request: CreatePartitionsRequest
) -> CreatePartitionsResponse:
    """Cluster mode: wait for the assignment writes, then (up to the timeout) for the cache
    to show the new partition counts."""
    cluster = ctx.broker.cluster
    assert cluster is not None
    wanted = {t.name: t.count for t in request.topics}

    def grown(name: str) -> bool:
        record = ctx.broker.metadata.get_topic(name)
        return record is not None and record.num_partitions >= wanted.get(name, 0)

    await cluster.finish(response.results, request.timeout_ms, grown)
    return response
