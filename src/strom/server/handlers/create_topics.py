"""CreateTopics (key 19), versions 0-7: create topics, or only check that they could be.

Each topic gets its own error code and message. -1 partitions or replication factor take the
broker defaults (num.partitions, default.replication.factor); a replication factor above the
number of live brokers has no brokers to live on (INVALID_REPLICATION_FACTOR). A manual
assignment requires both to be -1 (INVALID_REQUEST otherwise) and must name partitions 0..n-1
once each, with the same number of replicas each, only live brokers and no broker twice
(INVALID_REPLICA_ASSIGNMENT). Configs are validated as topic overrides (INVALID_CONFIG). A name
that is illegal, or that differs from an existing topic only by '.' versus '_', answers
INVALID_TOPIC_EXCEPTION; an existing one TOPIC_ALREADY_EXISTS; a name given twice in one request
INVALID_REQUEST. validate_only (v1+) runs every check and creates nothing. On a single broker the
answer waits until every log is made (in the worker pool, server/log_creation.py; the timeout is
not used); in cluster mode it waits (up to the timeout) until the new partitions have leaders. From v5 a success carries the partition count,
replication factor and the topic's described configuration; from v7 the new topic id (zero
when only validating). With an authorizer, as Kafka: each topic needs CREATE on the cluster
or on the topic (TOPIC_AUTHORIZATION_FAILED); a created topic's configuration, partition count,
replication factor and id are returned only to a principal that may DESCRIBE_CONFIGS it
(topic_config_error_code TOPIC_AUTHORIZATION_FAILED otherwise). A controller_mutation_rate quota
counts the partitions created: from v6 a topic that finds it exhausted is refused
(THROTTLING_QUOTA_EXCEEDED), before it is only throttled. Not done: create-topic policies.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable

from strom.cluster.local_metadata import TopicRecord
from strom.cluster.topic_names import has_collision_chars, validate_topic_name
from strom.config import ConfigError, log_config_for, log_no_effect_topic_keys
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.create_topics_request import CreatableTopic, CreateTopicsRequest
from strom.protocol.messages.create_topics_response import (
    CreatableTopicConfigs,
    CreatableTopicResult,
    CreateTopicsResponse,
)
from strom.runtime.errors import ApiError
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize_cluster, authorized_names
from strom.server.context import RequestContext
from strom.server.handlers.create_partitions import check_replicas
from strom.server.handlers.describe_configs import topic_config_entries
from strom.server.log_creation import create_pending_logs
from strom.server.registry import handles
from strom.server.throttle import THROTTLED_MESSAGE, MutationQuota

ZERO_UUID = uuid.UUID(int=0)
UNSET = -1


def _check_name(ctx: RequestContext, name: str) -> None:
    problem = validate_topic_name(name)
    if problem is not None:
        raise ApiError(ErrorCode.INVALID_TOPIC_EXCEPTION, problem)
    metadata = ctx.broker.metadata
    if metadata.get_topic(name) is not None:
        raise ApiError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
    if has_collision_chars(name):
        unified = name.replace(".", "_")
        for existing in metadata.topics:
            if existing.replace(".", "_") == unified:
                raise ApiError(
                    ErrorCode.INVALID_TOPIC_EXCEPTION,
                    f"Topic '{name}' collides with existing topic '{existing}' ('.' and '_' "
                    "are the same in metric names).",
                )


def _manual_assignment(ctx: RequestContext, topic: CreatableTopic) -> tuple[int, int]:
    """Checks a manual assignment; returns its partition count and replication factor."""
    if topic.replication_factor != UNSET:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "A manual partition assignment requires replication_factor -1.",
        )
    if topic.num_partitions != UNSET:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "A manual partition assignment requires num_partitions -1.",
        )
    seen: set[int] = set()
    replication_factor: int | None = None
    for assignment in topic.assignments:
        index = assignment.partition_index
        if index in seen:
            raise ApiError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"Partition {index} is assigned more than once.",
            )
        seen.add(index)
        check_replicas(ctx, assignment.broker_ids, f"partition {index}")
        count = len(assignment.broker_ids)
        if replication_factor is not None and count != replication_factor:
            raise ApiError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"Partition {index} has {count} replica(s) but earlier partitions have "
                f"{replication_factor}; all partitions need the same number.",
            )
        replication_factor = count
    if seen != set(range(len(seen))):
        raise ApiError(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "The assigned partitions must be numbered 0, 1, 2, ... without gaps.",
        )
    assert replication_factor is not None
    return len(seen), replication_factor


def _create(
    ctx: RequestContext,
    topic: CreatableTopic,
    validate_only: bool,
    result: CreatableTopicResult,
    mutations: MutationQuota,
) -> TopicRecord | None:
    """Check and record the topic; returns its record when its logs are still to be made
    (a single broker makes them off the event loop: server/log_creation.py)."""
    broker = ctx.broker
    _check_name(ctx, topic.name)
    num_partitions, replication_factor = topic.num_partitions, topic.replication_factor
    if topic.assignments:
        num_partitions, replication_factor = _manual_assignment(ctx, topic)
    else:
        if replication_factor < UNSET or replication_factor == 0:
            raise ApiError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0, or -1 for the broker default.",
            )
        if num_partitions < UNSET or num_partitions == 0:
            raise ApiError(
                ErrorCode.INVALID_PARTITIONS,
                "Number of partitions must be larger than 0, or -1 for the broker default.",
            )
    configs = {c.name: c.value for c in topic.configs}
    nulls = sorted(name for name, value in configs.items() if value is None)
    if nulls:
        raise ApiError(
            ErrorCode.INVALID_CONFIG,
            f"Null value not supported for topic configs: {','.join(nulls)}",
        )
    given = {k: v for k, v in configs.items() if v is not None}
    num_partitions, replication_factor, normalized = broker.validate_new_topic(
        topic.name, num_partitions, replication_factor, given
    )
    try:
        log_config_for(normalized, broker.config)  # rules across keys and broker defaults
    except ConfigError as exc:
        raise ApiError(ErrorCode.INVALID_CONFIG, str(exc)) from exc
    topic_id = ZERO_UUID
    if not validate_only and not mutations.take(num_partitions):
        raise ApiError(ErrorCode.THROTTLING_QUOTA_EXCEEDED, THROTTLED_MESSAGE)
    pending = None
    if not validate_only:
        manual = {a.partition_index: tuple(a.broker_ids) for a in topic.assignments}
        record = broker.create_topic(
            topic.name,
            num_partitions,
            replication_factor,
            normalized,
            manual or None,
            logs_later=True,
        )
        log_no_effect_topic_keys(topic.name, normalized)
        topic_id = record.topic_id
        if broker.cluster is None:
            pending = record
    result.topic_id = topic_id
    result.num_partitions = num_partitions
    result.replication_factor = replication_factor
    result.topic_config_error_code = ErrorCode.NONE
    result.configs = [
        CreatableTopicConfigs(
            name=entry.name,
            value=None if entry.is_sensitive else entry.value,
            read_only=entry.read_only,
            config_source=int(entry.source),
            is_sensitive=entry.is_sensitive,
        )
        for entry in topic_config_entries(ctx, normalized)
    ]
    return pending


@handles(19, 0, 7)
def handle_create_topics(
    ctx: RequestContext, request: CreateTopicsRequest
) -> CreateTopicsResponse | Awaitable[CreateTopicsResponse]:
    counts = Counter(topic.name for topic in request.topics)
    if authorize_cluster(ctx, AclOperation.CREATE, log_denied=False):
        may_create = set(counts)
    else:
        may_create = authorized_names(ctx, AclOperation.CREATE, ResourceType.TOPIC, counts)
    may_describe = authorized_names(
        ctx, AclOperation.DESCRIBE_CONFIGS, ResourceType.TOPIC, counts, log_denied=False
    )
    results: list[CreatableTopicResult] = []
    later: list[tuple[CreatableTopicResult, TopicRecord]] = []
    answered: set[str] = set()
    mutations = MutationQuota(ctx, strict_from=6)
    for topic in request.topics:
        if topic.name in answered:
            continue  # a duplicated name gets one answer, as in Kafka
        answered.add(topic.name)
        result = CreatableTopicResult(
            name=topic.name, error_code=ErrorCode.NONE, error_message=None
        )
        results.append(result)
        try:
            if counts[topic.name] > 1:
                raise ApiError(ErrorCode.INVALID_REQUEST, "Duplicate topic name.")
            if topic.name not in may_create:
                raise ApiError(ErrorCode.TOPIC_AUTHORIZATION_FAILED, "Authorization failed.")
            pending = _create(ctx, topic, request.validate_only, result, mutations)
            if pending is not None:
                later.append((result, pending))
            if topic.name not in may_describe:
                result.topic_config_error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                result.configs, result.num_partitions, result.replication_factor = [], -1, -1
                result.topic_id = ZERO_UUID
        except ApiError as exc:
            result.error_code = exc.code
            result.error_message = exc.message or exc.code.name
    mutations.finish()
    response = CreateTopicsResponse(topics=results)
    cluster = ctx.broker.cluster
    if cluster is not None and not request.validate_only:
        return _finish_in_cluster(ctx, response, request.timeout_ms)
    if later:
        return _make_logs(ctx, response, later)
    return response


async def _make_logs(
    ctx: RequestContext,
    response: CreateTopicsResponse,
    later: list[tuple[CreatableTopicResult, TopicRecord]],
) -> CreateTopicsResponse:
    """A single broker: make the recorded topics' logs, off the event loop, then answer."""
    for result, record in later:
        try:
            await create_pending_logs(ctx.broker, result.name, record)
        except ApiError as exc:
            failed = CreatableTopicResult(
                name=result.name,
                error_code=exc.code,
                error_message=exc.message or exc.code.name,
            )
            response.topics[response.topics.index(result)] = failed
    return response


async def _finish_in_cluster(
    ctx: RequestContext, response: CreateTopicsResponse, timeout_ms: int
) -> CreateTopicsResponse:
    """Cluster mode: the topics were written to ZooKeeper in the background; wait for the
    writes and for the leaders, then answer with the topic ids."""
    cluster = ctx.broker.cluster
    assert cluster is not None
    await cluster.finish(response.topics, timeout_ms, cluster.topic_ready)
    for result in response.topics:
        record = ctx.broker.metadata.get_topic(result.name)
        if (
            result.error_code == ErrorCode.NONE
            and result.topic_config_error_code == ErrorCode.NONE
            and record is not None
        ):
            result.topic_id = record.topic_id
    return response
