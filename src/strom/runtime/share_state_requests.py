"""The share-state requests one broker sends another (keys 83-87) and how their answers
read, for `SharePersister`: one share partition per request. Imported on the first request
to another broker, so a single broker never loads these message modules.

What a share partition keeps beyond Kafka's state (strom.coordinator.share.extension) travels
in Strom's tagged fields (tools/strom_fields.py): `StromExtension` of WriteShareGroupState's
partitions (null: the write leaves the extension as it is; empty: there is none) and of
ReadShareGroupState's answers, `StromDelayedRecords` of ReadShareGroupStateSummary's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from strom.coordinator.share.coordinator import Outcome, ShareState, StateKey, StateWrite
from strom.coordinator.share.extension import ShareExtension, TimerState
from strom.coordinator.share.partition import RecordState, StateBatch
from strom.protocol.errors import ErrorCode, ProtocolError
from strom.protocol.messages.delete_share_group_state_request import (
    DeleteShareGroupStateRequest,
    DeleteStateData,
)
from strom.protocol.messages.delete_share_group_state_request import (
    PartitionData as DeletePartition,
)
from strom.protocol.messages.initialize_share_group_state_request import (
    InitializeShareGroupStateRequest,
    InitializeStateData,
)
from strom.protocol.messages.initialize_share_group_state_request import (
    PartitionData as InitializePartition,
)
from strom.protocol.messages.read_share_group_state_request import (
    PartitionData as ReadPartition,
)
from strom.protocol.messages.read_share_group_state_request import (
    ReadShareGroupStateRequest,
    ReadStateData,
)
from strom.protocol.messages.read_share_group_state_summary_request import (
    PartitionData as SummaryPartition,
)
from strom.protocol.messages.read_share_group_state_summary_request import (
    ReadShareGroupStateSummaryRequest,
    ReadStateSummaryData,
)
from strom.protocol.messages.write_share_group_state_request import (
    PartitionData as WritePartition,
)
from strom.protocol.messages.write_share_group_state_request import (
    StateBatch as WireBatch,
)
from strom.protocol.messages.write_share_group_state_request import (
    WriteShareGroupStateRequest,
    WriteStateData,
)

__all__ = ["MAX_VERSIONS", "ShareStateRequest", "delete", "initialize", "read", "summary", "write"]

INITIALIZE, READ, WRITE, DELETE, SUMMARY = 83, 84, 85, 86, 87
MAX_VERSIONS = {INITIALIZE: 0, READ: 0, WRITE: 1, DELETE: 0, SUMMARY: 1}

# api key, request, how to read the answer
ShareStateRequest = tuple[int, Any, Callable[[Any], Outcome]]


def initialize(key: StateKey, state_epoch: int, start_offset: int) -> ShareStateRequest:
    group_id, topic_id, partition = key
    request = InitializeShareGroupStateRequest(
        group_id,
        [
            InitializeStateData(
                topic_id, [InitializePartition(partition, state_epoch, start_offset)]
            )
        ],
    )
    return INITIALIZE, request, _error_only


def read(key: StateKey, leader_epoch: int) -> ShareStateRequest:
    group_id, topic_id, partition = key
    request = ReadShareGroupStateRequest(
        group_id, [ReadStateData(topic_id, [ReadPartition(partition, leader_epoch)])]
    )
    return READ, request, _read_outcome


def write(key: StateKey, write: StateWrite) -> ShareStateRequest:
    group_id, topic_id, partition = key
    data = WritePartition(
        partition=partition,
        state_epoch=write.state_epoch,
        leader_epoch=write.leader_epoch,
        start_offset=write.start_offset,
        state_batches=[
            WireBatch(b.first_offset, b.last_offset, int(b.state), b.delivery_count)
            for b in write.batches
        ],
        delivery_complete_count=write.delivery_complete_count,
        strom_extension=encode_extension(write),
    )
    return (
        WRITE,
        WriteShareGroupStateRequest(group_id, [WriteStateData(topic_id, [data])]),
        _error_only,
    )


def delete(key: StateKey) -> ShareStateRequest:
    group_id, topic_id, partition = key
    request = DeleteShareGroupStateRequest(
        group_id, [DeleteStateData(topic_id, [DeletePartition(partition)])]
    )
    return DELETE, request, _error_only


def summary(key: StateKey) -> ShareStateRequest:
    group_id, topic_id, partition = key
    request = ReadShareGroupStateSummaryRequest(
        group_id, [ReadStateSummaryData(topic_id, [SummaryPartition(partition, 0)])]
    )
    return SUMMARY, request, _summary_outcome


# -- answers ---------------------------------------------------------------------------------


def encode_extension(write: StateWrite) -> bytes | None:
    """A write's `StromExtension`: None when it does not carry one, empty for none."""
    if not write.with_extension:
        return None
    extension = write.extension
    return b"" if extension is None or extension.empty else extension.encode()


def _code(value: int) -> ErrorCode:
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.UNKNOWN_SERVER_ERROR


def _error_only(response: Any) -> Outcome:
    (p,) = response.results[0].partitions
    return Outcome(_code(p.error_code), p.error_message)


def _read_outcome(response: Any) -> Outcome:
    (p,) = response.results[0].partitions
    if p.error_code:
        return Outcome(_code(p.error_code), p.error_message)
    try:
        data = p.strom_extension
        extension = ShareExtension.decode(data) if data else None
    except ProtocolError as exc:
        return Outcome(ErrorCode.UNKNOWN_SERVER_ERROR, f"malformed share state extension: {exc}")
    return Outcome(
        state=ShareState(
            start_offset=p.start_offset,
            state_epoch=p.state_epoch,
            extension=extension,
            batches=[
                StateBatch(
                    b.first_offset, b.last_offset, _record_state(b.delivery_state), b.delivery_count
                )
                for b in p.state_batches
            ],
        )
    )


def _summary_outcome(response: Any) -> Outcome:
    (p,) = response.results[0].partitions
    if p.error_code:
        return Outcome(_code(p.error_code), p.error_message)
    return Outcome(
        state=ShareState(
            start_offset=p.start_offset,
            state_epoch=p.state_epoch,
            leader_epoch=p.leader_epoch,
            delivery_complete_count=p.delivery_complete_count,
            # A summary carries only the count of the extension.
            extension=(
                ShareExtension(timer=TimerState(0, 0, -1, p.strom_delayed_records))
                if p.strom_delayed_records > 0
                else None
            ),
        )
    )


def _record_state(code: int) -> RecordState:
    try:
        return RecordState(code)
    except ValueError:
        return RecordState.AVAILABLE
