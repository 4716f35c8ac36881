"""The share-state RPCs (KIP-932): InitializeShareGroupState (83) v0, ReadShareGroupState (84)
v0, WriteShareGroupState (85) v0-1, DeleteShareGroupState (86) v0 and
ReadShareGroupStateSummary (87) v0-1, answered by the share coordinator.

Brokers send them to each other: a share partition's leader reads and writes its state, a
group coordinator initializes, deletes and summarizes it (`runtime/share_persister.py`). Each
partition of a request goes to the share coordinator shard of its key
(`ShareCoordinatorRuntime`, the code a broker's own share partitions call), and the answer
waits until the ISR of the `__share_group_state` partition has the write: NOT_COORDINATOR where
another broker leads that partition, COORDINATOR_NOT_AVAILABLE when the write cannot be
replicated in time. As in Kafka they need CLUSTER_ACTION on the cluster
(CLUSTER_AUTHORIZATION_FAILED for every partition otherwise), and ApiVersions lists them on
every listener, as Kafka's brokers do ("listeners": ["broker"]).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from strom.coordinator.share.coordinator import Outcome, StateKey, StateWrite
from strom.coordinator.share.partition import RecordState, StateBatch
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.delete_share_group_state_request import (
    DeleteShareGroupStateRequest,
)
from strom.protocol.messages.delete_share_group_state_response import (
    DeleteShareGroupStateResponse,
    DeleteStateResult,
)
from strom.protocol.messages.delete_share_group_state_response import (
    PartitionResult as DeletePartitionResult,
)
from strom.protocol.messages.initialize_share_group_state_request import (
    InitializeShareGroupStateRequest,
)
from strom.protocol.messages.initialize_share_group_state_response import (
    InitializeShareGroupStateResponse,
    InitializeStateResult,
)
from strom.protocol.messages.initialize_share_group_state_response import (
    PartitionResult as InitializePartitionResult,
)
from strom.protocol.messages.read_share_group_state_request import ReadShareGroupStateRequest
from strom.protocol.messages.read_share_group_state_response import (
    PartitionResult as ReadPartitionResult,
)
from strom.protocol.messages.read_share_group_state_response import (
    ReadShareGroupStateResponse,
    ReadStateResult,
)
from strom.protocol.messages.read_share_group_state_response import (
    StateBatch as ReadBatch,
)
from strom.protocol.messages.read_share_group_state_summary_request import (
    ReadShareGroupStateSummaryRequest,
)
from strom.protocol.messages.read_share_group_state_summary_response import (
    PartitionResult as SummaryPartitionResult,
)
from strom.protocol.messages.read_share_group_state_summary_response import (
    ReadShareGroupStateSummaryResponse,
    ReadStateSummaryResult,
)
from strom.protocol.messages.write_share_group_state_request import WriteShareGroupStateRequest
from strom.protocol.messages.write_share_group_state_response import (
    PartitionResult as WritePartitionResult,
)
from strom.protocol.messages.write_share_group_state_response import (
    WriteShareGroupStateResponse,
    WriteStateResult,
)
from strom.runtime.coordinator_runtime import gather
from strom.security.acl import AclOperation
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles

R = TypeVar("R")
Answer = Outcome | Awaitable[Outcome]


def _answer(
    keys: list[tuple[uuid.UUID, int]],
    outcomes: list[Answer],
    build: Callable[[list[tuple[uuid.UUID, int, Outcome]]], R],
) -> R | Awaitable[R]:
    """The response once every partition's outcome is in."""
    done = gather(outcomes)

    def finish(results: list[Outcome]) -> R:
        return build([(t, p, o) for (t, p), o in zip(keys, results, strict=True)])

    if isinstance(done, Awaitable):
        waiting = done

        async def later() -> R:
            return finish(await waiting)

        return later()
    return finish(done)


def _by_topic(
    results: list[tuple[uuid.UUID, int, Outcome]],
) -> dict[uuid.UUID, list[tuple[int, Outcome]]]:
    out: dict[uuid.UUID, list[tuple[int, Outcome]]] = {}
    for topic_id, partition, outcome in results:
        out.setdefault(topic_id, []).append((partition, outcome))
    return out


def _allowed(ctx: RequestContext) -> bool:
    return authorize_cluster(ctx, AclOperation.CLUSTER_ACTION)


def _refused() -> Outcome:
    return Outcome(ErrorCode.CLUSTER_AUTHORIZATION_FAILED)


def _state(code: int) -> RecordState:
    try:
        return RecordState(code)
    except ValueError:
        return RecordState.AVAILABLE


@handles(83, 0, 0)
def handle_initialize_share_group_state(
    ctx: RequestContext, request: InitializeShareGroupStateRequest
) -> InitializeShareGroupStateResponse | Awaitable[InitializeShareGroupStateResponse]:
    allowed = _allowed(ctx)
    runtime = ctx.broker.share_state
    keys: list[tuple[uuid.UUID, int]] = []
    outcomes: list[Answer] = []
    for topic in request.topics:
        for p in topic.partitions:
            key: StateKey = (request.group_id, topic.topic_id, p.partition)
            keys.append((topic.topic_id, p.partition))
            outcomes.append(
                runtime.initialize(key, p.state_epoch, p.start_offset) if allowed else _refused()
            )

    def build(results: list[tuple[uuid.UUID, int, Outcome]]) -> InitializeShareGroupStateResponse:
        return InitializeShareGroupStateResponse(
            [
                InitializeStateResult(
                    topic_id,
                    [InitializePartitionResult(p, o.error, o.message) for p, o in rows],
                )
                for topic_id, rows in _by_topic(results).items()
            ]
        )

    return _answer(keys, outcomes, build)


@handles(84, 0, 0)
def handle_read_share_group_state(
    ctx: RequestContext, request: ReadShareGroupStateRequest
) -> ReadShareGroupStateResponse | Awaitable[ReadShareGroupStateResponse]:
    allowed = _allowed(ctx)
    runtime = ctx.broker.share_state
    keys: list[tuple[uuid.UUID, int]] = []
    outcomes: list[Answer] = []
    for topic in request.topics:
        for p in topic.partitions:
            key: StateKey = (request.group_id, topic.topic_id, p.partition)
            keys.append((topic.topic_id, p.partition))
            outcomes.append(runtime.read(key, p.leader_epoch) if allowed else _refused())

    def row(partition: int, o: Outcome) -> ReadPartitionResult:
        if o.error != ErrorCode.NONE or o.state is None:
            return ReadPartitionResult(partition, o.error, o.message, 0, -1, [])
        return ReadPartitionResult(
            partition,
            ErrorCode.NONE,
            None,
            o.state.state_epoch,
            o.state.start_offset,
            [
                ReadBatch(b.first_offset, b.last_offset, int(b.state), b.delivery_count)
                for b in o.state.batches
            ],
        )

    def build(results: list[tuple[uuid.UUID, int, Outcome]]) -> ReadShareGroupStateResponse:
        return ReadShareGroupStateResponse(
            [
                ReadStateResult(topic_id, [row(p, o) for p, o in rows])
                for topic_id, rows in _by_topic(results).items()
            ]
        )

    return _answer(keys, outcomes, build)


@handles(85, 0, 1)
def handle_write_share_group_state(
    ctx: RequestContext, request: WriteShareGroupStateRequest
) -> WriteShareGroupStateResponse | Awaitable[WriteShareGroupStateResponse]:
    allowed = _allowed(ctx)
    runtime = ctx.broker.share_state
    keys: list[tuple[uuid.UUID, int]] = []
    outcomes: list[Answer] = []
    for topic in request.topics:
        for p in topic.partitions:
            key: StateKey = (request.group_id, topic.topic_id, p.partition)
            keys.append((topic.topic_id, p.partition))
            if not allowed:
                outcomes.append(_refused())
                continue
            bad = [b for b in p.state_batches if b.last_offset < b.first_offset]
            if bad:
                outcomes.append(
                    Outcome(ErrorCode.INVALID_REQUEST, "A state batch ends before it starts.")
                )
                continue
            write = StateWrite(
                state_epoch=p.state_epoch,
                leader_epoch=p.leader_epoch,
                start_offset=p.start_offset,
                batches=[
                    StateBatch(
                        b.first_offset, b.last_offset, _state(b.delivery_state), b.delivery_count
                    )
                    for b in p.state_batches
                ],
                delivery_complete_count=p.delivery_complete_count,
            )
            outcomes.append(runtime.write_state(key, write))

    def build(results: list[tuple[uuid.UUID, int, Outcome]]) -> WriteShareGroupStateResponse:
        return WriteShareGroupStateResponse(
            [
                WriteStateResult(
                    topic_id, [WritePartitionResult(p, o.error, o.message) for p, o in rows]
                )
                for topic_id, rows in _by_topic(results).items()
            ]
        )

    return _answer(keys, outcomes, build)


@handles(86, 0, 0)
def handle_delete_share_group_state(
    ctx: RequestContext, request: DeleteShareGroupStateRequest
) -> DeleteShareGroupStateResponse | Awaitable[DeleteShareGroupStateResponse]:
    allowed = _allowed(ctx)
    runtime = ctx.broker.share_state
    keys: list[tuple[uuid.UUID, int]] = []
    outcomes: list[Answer] = []
    for topic in request.topics:
        for p in topic.partitions:
            key: StateKey = (request.group_id, topic.topic_id, p.partition)
            keys.append((topic.topic_id, p.partition))
            outcomes.append(runtime.delete(key) if allowed else _refused())

    def build(results: list[tuple[uuid.UUID, int, Outcome]]) -> DeleteShareGroupStateResponse:
        return DeleteShareGroupStateResponse(
            [
                DeleteStateResult(
                    topic_id, [DeletePartitionResult(p, o.error, o.message) for p, o in rows]
                )
                for topic_id, rows in _by_topic(results).items()
            ]
        )

    return _answer(keys, outcomes, build)


@handles(87, 0, 1)
def handle_read_share_group_state_summary(
    ctx: RequestContext, request: ReadShareGroupStateSummaryRequest
) -> ReadShareGroupStateSummaryResponse | Awaitable[ReadShareGroupStateSummaryResponse]:
    allowed = _allowed(ctx)
    runtime = ctx.broker.share_state
    keys: list[tuple[uuid.UUID, int]] = []
    outcomes: list[Answer] = []
    for topic in request.topics:
        for p in topic.partitions:
            key: StateKey = (request.group_id, topic.topic_id, p.partition)
            keys.append((topic.topic_id, p.partition))
            outcomes.append(runtime.summary(key) if allowed else _refused())

    def row(partition: int, o: Outcome) -> SummaryPartitionResult:
        if o.error != ErrorCode.NONE or o.state is None:
            return SummaryPartitionResult(partition, o.error, o.message, 0, -1, 0, -1)
        s = o.state
        return SummaryPartitionResult(
            partition=partition,
            error_code=ErrorCode.NONE,
            error_message=None,
            state_epoch=s.state_epoch,
            start_offset=s.start_offset,
            leader_epoch=s.leader_epoch,
            delivery_complete_count=s.delivery_complete_count,
        )

    def build(
        results: list[tuple[uuid.UUID, int, Outcome]],
    ) -> ReadShareGroupStateSummaryResponse:
        return ReadShareGroupStateSummaryResponse(
            [
                ReadStateSummaryResult(topic_id, [row(p, o) for p, o in rows])
                for topic_id, rows in _by_topic(results).items()
            ]
        )

    return _answer(keys, outcomes, build)
