"""DeleteTopics (key 20), versions 0-6: delete topics by name, or by topic id from v6.

Deletion is immediate: the topic leaves the metadata store, its partition directories are
removed, waiting fetches on it are woken and fetch sessions forget it, so the response already
reflects the deletion and the timeout is not used. An unknown name answers
UNKNOWN_TOPIC_OR_PARTITION, an unknown id UNKNOWN_TOPIC_ID; an entry naming both a name and an
id, neither, or a topic named twice answers INVALID_REQUEST. With delete.topic.enable=false
every entry answers TOPIC_DELETION_DISABLED (INVALID_REQUEST before v3, which lacks that code).
Internal topics can be deleted, as in Kafka (which guards them only by ACLs). With an
authorizer, a topic needs DELETE (TOPIC_AUTHORIZATION_FAILED), and one named by id also DESCRIBE
(else its name is not given back), as in Kafka.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.delete_topics_request import DeleteTopicsRequest
from strom.protocol.messages.delete_topics_response import (
    DeletableTopicResult,
    DeleteTopicsResponse,
)
from strom.runtime.errors import ApiError
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorized_names
from strom.server.context import RequestContext
from strom.server.registry import handles
from strom.server.throttle import THROTTLED_MESSAGE, MutationQuota

ZERO_UUID = uuid.UUID(int=0)


def _requested(
    ctx: RequestContext, request: DeleteTopicsRequest
) -> list[tuple[str | None, uuid.UUID]]:
    if ctx.api_version >= 6:
        return [(t.name, t.topic_id) for t in request.topics]
    return [(name, ZERO_UUID) for name in request.topic_names]


@handles(20, 0, 6)
def handle_delete_topics(
    ctx: RequestContext, request: DeleteTopicsRequest
) -> DeleteTopicsResponse | Awaitable[DeleteTopicsResponse]:
    broker = ctx.broker
    entries = _requested(ctx, request)
    results: list[DeletableTopicResult] = []

    def answer(
        name: str | None, topic_id: uuid.UUID, code: ErrorCode, message: str | None = None
    ) -> None:
        if code != ErrorCode.NONE and message is None:
            message = code.name
        results.append(
            DeletableTopicResult(
                name=name, topic_id=topic_id, error_code=code, error_message=message
            )
        )

    if not broker.config.delete_topic_enable:
        code = (
            ErrorCode.TOPIC_DELETION_DISABLED if ctx.api_version >= 3 else ErrorCode.INVALID_REQUEST
        )
        for name, topic_id in entries:
            answer(name, topic_id, code, "Topic deletion is disabled (delete.topic.enable=false).")
        return DeleteTopicsResponse(responses=results)

    # Resolve every entry to a topic name first, so that duplicates are found whichever way a
    # topic was named.
    names_seen: dict[str, int] = {}
    ids_seen: dict[uuid.UUID, int] = {}
    resolved: list[tuple[str | None, uuid.UUID, ErrorCode, str | None]] = []
    for name, topic_id in entries:
        has_id = topic_id != ZERO_UUID
        if name is not None and has_id:
            resolved.append(
                (
                    name,
                    topic_id,
                    ErrorCode.INVALID_REQUEST,
                    "A topic may be named by its name or by its id, not both.",
                )
            )
            continue
        if name is None and not has_id:
            resolved.append(
                (
                    None,
                    topic_id,
                    ErrorCode.INVALID_REQUEST,
                    "Neither a topic name nor a topic id was given.",
                )
            )
            continue
        if has_id:
            ids_seen[topic_id] = ids_seen.get(topic_id, 0) + 1
            found = broker.metadata.topic_by_id(topic_id)
            if found is None:
                resolved.append(
                    (
                        None,
                        topic_id,
                        ErrorCode.UNKNOWN_TOPIC_ID,
                        "This broker has no topic with this id.",
                    )
                )
                continue
            name = found.name
        assert name is not None
        names_seen[name] = names_seen.get(name, 0) + 1
        resolved.append((name, topic_id, ErrorCode.NONE, None))

    # DELETE on each topic; one named by id also needs DESCRIBE, or its name stays hidden.
    names = [r[0] for r in resolved if r[0] is not None and r[2] == ErrorCode.NONE]
    may_delete = authorized_names(ctx, AclOperation.DELETE, ResourceType.TOPIC, names)
    may_describe = authorized_names(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names)

    # controller_mutation_rate counts the partitions deleted (strict from v5, as Kafka).
    mutations = MutationQuota(ctx, strict_from=5)

    # A duplicated name or id gets one answer, as in Kafka.
    answered_ids: set[uuid.UUID] = set()
    answered_names: set[str] = set()
    for name, topic_id, code, message in resolved:
        if code != ErrorCode.NONE:
            answer(name, topic_id, code, message)
            continue
        assert name is not None
        if topic_id != ZERO_UUID and ids_seen[topic_id] > 1:
            if topic_id not in answered_ids:
                answered_ids.add(topic_id)
                answer(None, topic_id, ErrorCode.INVALID_REQUEST, "Duplicate topic id.")
            continue
        if names_seen[name] > 1:
            if name in answered_names:
                continue
            answered_names.add(name)
            answer(
                name,
                topic_id,
                ErrorCode.INVALID_REQUEST,
                "Duplicate topic name (or a topic named both by name and by id).",
            )
            continue
        if topic_id != ZERO_UUID and name not in may_describe:
            answer(None, topic_id, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
            continue
        if name not in may_delete:
            answer(name, topic_id, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
            continue
        record = broker.metadata.get_topic(name)
        if record is None:
            answer(
                name,
                topic_id,
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                "This broker has no topic of this name.",
            )
            continue
        if not mutations.take(record.num_partitions):
            answer(name, topic_id, ErrorCode.THROTTLING_QUOTA_EXCEEDED, THROTTLED_MESSAGE)
            continue
        try:
            broker.delete_topic(name)
        except ApiError as exc:
            answer(name, topic_id, exc.code, exc.message)
            continue
        broker.fetch_sessions.forget_topic(name)
        answer(name, record.topic_id if ctx.api_version >= 6 else topic_id, ErrorCode.NONE)
    mutations.finish()
    if broker.cluster is not None:
        return _finish_in_cluster(ctx, DeleteTopicsResponse(responses=results), request.timeout_ms)
    return DeleteTopicsResponse(responses=results)


async def _finish_in_cluster(
    ctx: RequestContext, response: DeleteTopicsResponse, timeout_ms: int
) -> DeleteTopicsResponse:
    """Cluster mode: wait for the deletion marks, then (up to the timeout) for the controller
    to have deleted the topics."""
    cluster = ctx.broker.cluster
    assert cluster is not None
    named = [r for r in response.responses if r.name is not None]
    await cluster.finish(
        named, timeout_ms, lambda name: ctx.broker.metadata.get_topic(name) is None
    )
    return response
