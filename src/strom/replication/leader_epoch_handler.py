"""The leader's side of leader epochs: OffsetsForLeaderEpoch (key 23) and Fetch's diverging epoch.

Pure functions over a `LocalEpochs` view of one partition (its current leader epoch, whether this
broker leads it, and the log's leader-epoch lookup); the server's handler resolves topics and
partitions and calls them.

OffsetsForLeaderEpoch, per requested partition (Kafka answers the same way):
  * current_leader_epoch (v2+; v0-1 do not have it) is checked first: older than ours FENCED_LEADER_EPOCH, newer
    UNKNOWN_LEADER_EPOCH, -1 not checked;
  * only the leader answers (NOT_LEADER_OR_FOLLOWER otherwise), for followers and consumers
    alike;
  * the answer is the log's (epoch, end offset) for the requested epoch: for our latest epoch the
    log end; for an older one the start of the next larger epoch, paired with the largest epoch
    we know at or below the requested one; (-1, -1) with error NONE when the requested epoch
    is above every epoch we know or we know none.

Fetch v12+ from a follower carries last_fetched_epoch: the epoch of the last batch the follower
has. When our log ends that epoch earlier than the follower's fetch offset, or does not have the
epoch at all, the follower diverged: the answer carries `diverging_epoch` (the epoch and end
offset computed as above) and no records, and the follower truncates before fetching again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.offset_for_leader_epoch_request import OffsetForLeaderEpochRequest
from strom.protocol.messages.offset_for_leader_epoch_response import (
    EpochEndOffset,
    OffsetForLeaderEpochResponse,
    OffsetForLeaderTopicResult,
)

__all__ = [
    "MAX_VERSION",
    "MIN_VERSION",
    "DivergenceCheck",
    "LocalEpochs",
    "diverging_epoch",
    "epoch_end_offset",
    "handle_offsets_for_leader_epoch",
]

MIN_VERSION = 0  # v0-1 carry no current_leader_epoch (never fenced); v0 answers no epoch
MAX_VERSION = 4
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


@dataclass(frozen=True, slots=True)
class LocalEpochs:
    """What this broker knows of a partition's epochs.

    `end_offset_for(epoch)` is `PartitionLog.end_offset_for_epoch`: (epoch, end offset), or
    (-1, -1) when unknown.
    """

    leader_epoch: int
    is_leader: bool
    end_offset_for: Callable[[int], tuple[int, int]]


def _check_epoch(local: LocalEpochs, current_leader_epoch: int, require_leader: bool) -> ErrorCode:
    if current_leader_epoch != UNDEFINED_EPOCH:
        if current_leader_epoch < local.leader_epoch:
            return ErrorCode.FENCED_LEADER_EPOCH
        if current_leader_epoch > local.leader_epoch:
            return ErrorCode.UNKNOWN_LEADER_EPOCH
    if require_leader and not local.is_leader:
        return ErrorCode.NOT_LEADER_OR_FOLLOWER
    return ErrorCode.NONE


def epoch_end_offset(
    local: LocalEpochs | None,
    current_leader_epoch: int,
    requested_epoch: int,
    *,
    require_leader: bool = True,
) -> tuple[ErrorCode, int, int]:
    """(error, epoch, end offset) for one partition; `local` None: we do not host it."""
    if local is None:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
    error = _check_epoch(local, current_leader_epoch, require_leader)
    if error != ErrorCode.NONE:
        return error, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
    epoch, end_offset = local.end_offset_for(requested_epoch)
    return ErrorCode.NONE, epoch, end_offset


def handle_offsets_for_leader_epoch(
    request: OffsetForLeaderEpochRequest,
    resolve: Callable[[str, int], LocalEpochs | None],
) -> OffsetForLeaderEpochResponse:
    """Answer a whole request; `resolve(topic, partition)` is None for partitions not hosted
    here (the handler may prefer NOT_LEADER_OR_FOLLOWER for a topic it knows of: Kafka answers
    UNKNOWN_TOPIC_OR_PARTITION only when the metadata does not have the partition)."""
    topics: list[OffsetForLeaderTopicResult] = []
    for topic in request.topics:
        results: list[EpochEndOffset] = []
        for p in topic.partitions:
            error, epoch, end_offset = epoch_end_offset(
                resolve(topic.topic, p.partition), p.current_leader_epoch, p.leader_epoch
            )
            results.append(
                EpochEndOffset(
                    error_code=error,
                    partition=p.partition,
                    leader_epoch=epoch,
                    end_offset=end_offset,
                )
            )
        topics.append(OffsetForLeaderTopicResult(topic=topic.topic, partitions=results))
    return OffsetForLeaderEpochResponse(throttle_time_ms=0, topics=topics)


@dataclass(frozen=True, slots=True)
class DivergenceCheck:
    """The outcome of `diverging_epoch`: an error to answer, or a divergence (epoch, end offset)
    to put in the response instead of records, or neither (read and record the fetch)."""

    error: ErrorCode = ErrorCode.NONE
    diverging: tuple[int, int] | None = None


def diverging_epoch(
    local: LocalEpochs,
    current_leader_epoch: int,
    last_fetched_epoch: int,
    fetch_offset: int,
    log_start_offset: int,
) -> DivergenceCheck:
    """The leader's check of a v12+ fetch that carries `last_fetched_epoch` (>= 0).

    Epoch errors first; OFFSET_OUT_OF_RANGE when the epoch's end cannot be determined or the
    fetch offset is below the log start; then a divergence when our log ends the follower's
    last epoch before its fetch offset (or only knows a smaller epoch). When `diverging` is
    set the leader must not record the fetch as the follower's log end offset.
    """
    if last_fetched_epoch < 0:
        return DivergenceCheck()
    error, epoch, end_offset = epoch_end_offset(
        local, current_leader_epoch, last_fetched_epoch, require_leader=False
    )
    if error != ErrorCode.NONE:
        return DivergenceCheck(error=error)
    if epoch == UNDEFINED_EPOCH or end_offset == UNDEFINED_EPOCH_OFFSET:
        return DivergenceCheck(error=ErrorCode.OFFSET_OUT_OF_RANGE)
    if fetch_offset < log_start_offset:
        return DivergenceCheck(error=ErrorCode.OFFSET_OUT_OF_RANGE)
    if epoch < last_fetched_epoch or end_offset < fetch_offset:
        return DivergenceCheck(diverging=(epoch, end_offset))
    return DivergenceCheck()
