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

Strom's tagged fields (tools/strom_fields.py) carry a share partition's extension
(strom.coordinator.share.extension) in WriteShareGroupState and ReadShareGroupState, and its
count of delayed records in ReadShareGroupStateSummary; Kafka's brokers neither send nor
read them, so a write without one leaves the extension as it is.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from strom.coordinator.share.coordinator import Outcome, StateKey, StateWrite
from strom.coordinator.share.extension import ShareExtension
from strom.coordinator.share.partition import RecordState, StateBatch
from strom.protocol.errors import ErrorCode, ProtocolError
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
from strom.protocol.messages.write_share_group_state_request import (
    PartitionData as WritePartitionData,
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
from strom.runtime.share_coordinator_runtime import ShareCoordinatorRuntime
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


class _RequestPartition(Protocol):
    @property
    def partition(self) -> int: ...


P = TypeVar("P", bound=_RequestPartition)
P_co = TypeVar("P_co", bound=_RequestPartition, covariant=True)


class _RequestTopic(Protocol[P_co]):
    @property
    def topic_id(self) -> uuid.UUID: ...

    @property
    def partitions(self) -> Sequence[P_co]: ...


def _each_partition(
    ctx: RequestContext,
    group_id: str,
    topics: Sequence[_RequestTopic[P]],
    act: Callable[[StateKey, P], Answer],
) -> tuple[list[tuple[uuid.UUID, int]], list[Answer]]:
    """The (topic id, partition) of every partition a request names, and what `act` answers
    for it (CLUSTER_AUTHORIZATION_FAILED for all without CLUSTER_ACTION)."""
    allowed = _allowed(ctx)
    keys: list[tuple[uuid.UUID, int]] = []
    outcomes: list[Answer] = []
    for topic in topics:
        for p in topic.partitions:
            keys.append((topic.topic_id, p.partition))
            outcomes.append(
                act((group_id, topic.topic_id, p.partition), p) if allowed else _refused()
            )
    return keys, outcomes


def _rows(
    results: list[tuple[uuid.UUID, int, Outcome]], row: Callable[[int, Outcome], R]
) -> list[tuple[uuid.UUID, list[R]]]:
    """The partitions' answers grouped by topic, in the order the request named them."""
    return [
        (topic_id, [row(p, o) for p, o in rows]) for topic_id, rows in _by_topic(results).items()
    ]


@handles(83, 0, 0)
def handle_initialize_share_group_state(
    ctx: RequestContext, request: InitializeShareGroupStateRequest
) -> InitializeShareGroupStateResponse | Awaitable[InitializeShareGroupStateResponse]:
    runtime = ctx.broker.share_state
    keys, outcomes = _each_partition(
        ctx,
        request.group_id,
        request.topics,
        lambda key, p: runtime.initialize(key, p.state_epoch, p.start_offset),
    )

    def build(results: list[tuple[uuid.UUID, int, Outcome]]) -> InitializeShareGroupStateResponse:
        rows = _rows(results, lambda p, o: InitializePartitionResult(p, o.error, o.message))
        return InitializeShareGroupStateResponse([InitializeStateResult(t, r) for t, r in rows])

    return _answer(keys, outcomes, build)


@handles(84, 0, 0)
def handle_read_share_group_state(
    ctx: RequestContext, request: ReadShareGroupStateRequest
) -> ReadShareGroupStateResponse | Awaitable[ReadShareGroupStateResponse]:
    runtime = ctx.broker.share_state
    keys, outcomes = _each_partition(
        ctx, request.group_id, request.topics, lambda key, p: runtime.read(key, p.leader_epoch)
    )

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
            strom_extension=(o.state.extension.encode() if o.state.extension is not None else None),
        )

    def build(results: list[tuple[uuid.UUID, int, Outcome]]) -> ReadShareGroupStateResponse:
        return ReadShareGroupStateResponse([ReadStateResult(t, r) for t, r in _rows(results, row)])

    return _answer(keys, outcomes, build)


def _write(runtime: ShareCoordinatorRuntime, key: StateKey, p: WritePartitionData) -> Answer:
    if any(b.last_offset < b.first_offset for b in p.state_batches):
        return Outcome(ErrorCode.INVALID_REQUEST, "A state batch ends before it starts.")
    try:
        data = p.strom_extension
        extension = ShareExtension.decode(data) if data else None
    except ProtocolError as exc:
        return Outcome(ErrorCode.INVALID_REQUEST, f"Malformed Strom share state extension: {exc}")
    write = StateWrite(
        state_epoch=p.state_epoch,
        leader_epoch=p.leader_epoch,
        start_offset=p.start_offset,
        batches=[
            StateBatch(b.first_offset, b.last_offset, _state(b.delivery_state), b.delivery_count)
            for b in p.state_batches
        ],
        delivery_complete_count=p.delivery_complete_count,
        extension=extension,
        with_extension=p.strom_extension is not None,
    )
    return runtime.write_state(key, write)


@handles(85, 0, 1)
def handle_write_share_group_state(
    ctx: RequestContext, request: WriteShareGroupStateRequest
) -> WriteShareGroupStateResponse | Awaitable[WriteShareGroupStateResponse]:
    runtime = ctx.broker.share_state
    keys, outcomes = _each_partition(
        ctx, request.group_id, request.topics, lambda key, p: _write(runtime, key, p)
    )

    def build(results: list[tuple[uuid.UUID, int, Outcome]]) -> WriteShareGroupStateResponse:
        rows = _rows(results, lambda p, o: WritePartitionResult(p, o.error, o.message))
        return WriteShareGroupStateResponse([WriteStateResult(t, r) for t, r in rows])

    return _answer(keys, outcomes, build)


@handles(86, 0, 0)
def handle_delete_share_group_state(
    ctx: RequestContext, request: DeleteShareGroupStateRequest
) -> DeleteShareGroupStateResponse | Awaitable[DeleteShareGroupStateResponse]:
    runtime = ctx.broker.share_state
    keys, outcomes = _each_partition(
        ctx, request.group_id, request.topics, lambda key, _p: runtime.delete(key)
    )

    def build(results: list[tuple[uuid.UUID, int, Outcome]]) -> DeleteShareGroupStateResponse:
        rows = _rows(results, lambda p, o: DeletePartitionResult(p, o.error, o.message))
        return DeleteShareGroupStateResponse([DeleteStateResult(t, r) for t, r in rows])

    return _answer(keys, outcomes, build)


@handles(87, 0, 1)
def handle_read_share_group_state_summary(
    ctx: RequestContext, request: ReadShareGroupStateSummaryRequest
) -> ReadShareGroupStateSummaryResponse | Awaitable[ReadShareGroupStateSummaryResponse]:
    runtime = ctx.broker.share_state
    keys, outcomes = _each_partition(
        ctx, request.group_id, request.topics, lambda key, _p: runtime.summary(key)
    )

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
            strom_delayed_records=s.delayed_records,
        )

    def build(results: list[tuple[uuid.UUID, int, Outcome]]) -> ReadShareGroupStateSummaryResponse:
        rows = _rows(results, row)
        return ReadShareGroupStateSummaryResponse([ReadStateSummaryResult(t, r) for t, r in rows])

    return _answer(keys, outcomes, build)
