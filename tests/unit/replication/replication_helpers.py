"""Shared helpers for the replication tests: logs, and a leader that answers follower requests
from its PartitionLog with the project's generated messages (no network)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from strom.clock import ManualClock
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.fetch_request import FetchRequest
from strom.protocol.messages.fetch_response import (
    EpochEndOffset,
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from strom.protocol.messages.offset_for_leader_epoch_request import OffsetForLeaderEpochRequest
from strom.protocol.messages.offset_for_leader_epoch_response import OffsetForLeaderEpochResponse
from strom.protocol.records.codec import Record, build_batch
from strom.protocol.records.validation import validate_batches
from strom.replication.leader_epoch_handler import (
    LocalEpochs,
    diverging_epoch,
    handle_offsets_for_leader_epoch,
)
from strom.replication.replica_state import HighWatermarkMoved, PartitionStateUpdate, ReplicaState
from strom.storage.log_config import LogConfig
from strom.storage.partition_log import OffsetOutOfRangeError, PartitionLog

TOPIC = "t"
TOPIC_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")
SMALL = LogConfig(segment_bytes=600, index_interval_bytes=100, retention_ms=-1)


def open_log(
    directory: Path, config: LogConfig = SMALL, topic_id: uuid.UUID = TOPIC_ID
) -> PartitionLog:
    return PartitionLog.open(
        directory / f"{TOPIC}-0",
        TOPIC,
        0,
        topic_id,
        config,
        None,
        True,
        high_watermark=0,
        now_ms=0,
    )


def append(
    plog: PartitionLog,
    epoch: int,
    values: Sequence[bytes],
    *,
    producer_id: int = -1,
    base_sequence: int = 0,
) -> None:
    """Append one client batch of `values` as the leader in `epoch`."""
    records = [Record(i, 1_000 + i, b"k", v) for i, v in enumerate(values)]
    data = bytearray(
        build_batch(
            records,
            producer_id=producer_id,
            producer_epoch=0 if producer_id >= 0 else -1,
            base_sequence=base_sequence if producer_id >= 0 else -1,
        )
    )
    plog.append_as_leader(data, validate_batches(data), epoch, 10_000)


def append_batches(plog: PartitionLog, epoch: int, count: int, size: int = 3) -> None:
    for n in range(count):
        append(plog, epoch, [f"e{epoch}-{n}-{i}".encode() for i in range(size)])


def log_bytes(plog: PartitionLog) -> bytes:
    """Every batch of the log, back to back (segment boundaries do not matter)."""
    return b"".join(segment.read(0, segment.size) for segment in plog.segments)


def epochs(plog: PartitionLog) -> list[tuple[int, int]]:
    return plog.leader_epoch_cache.entries()


@dataclass
class LeaderSim:
    """A leader broker for one partition: answers Fetch and OffsetsForLeaderEpoch from its log
    and tracks its followers with a ReplicaState (the high watermark follows their fetches)."""

    log: PartitionLog
    broker_id: int = 0
    followers: tuple[int, ...] = (1,)
    epoch: int = 0
    clock: ManualClock = field(default_factory=ManualClock)
    state: ReplicaState = field(init=False)
    fetch_replica_ids: list[int] = field(default_factory=list)
    errors: list[ErrorCode] = field(default_factory=list)  # answered once each, in order

    def __post_init__(self) -> None:
        self.state = ReplicaState(self.broker_id, self.clock)
        self.become_leader(self.epoch)

    def become_leader(
        self, epoch: int, version: int | None = None, isr: tuple[int, ...] | None = None
    ) -> None:
        """Lead in `epoch` with every replica in the ISR, or with `isr` (the ISR changes this
        leader then proposes are never committed)."""
        self.epoch = epoch
        replicas = (self.broker_id, *self.followers)
        update = PartitionStateUpdate(
            self.broker_id,
            epoch,
            replicas if isr is None else isr,
            replicas,
            epoch if version is None else version,
        )
        result = self.state.become_leader(update, self.log.log_end_offset, self.log.high_watermark)
        if result.new_leader_epoch:
            self.log.leader_epoch_cache.assign(epoch, self.log.log_end_offset)

    def local(self) -> LocalEpochs:
        return LocalEpochs(
            self.state.leader_epoch, self.state.is_leader, self.log.end_offset_for_epoch
        )

    def append(self, values: Sequence[bytes]) -> None:
        append(self.log, self.epoch, values)
        self._apply(self.state.on_local_append(self.log.log_end_offset))

    def _apply(self, events: Sequence[object]) -> None:
        for event in events:
            if isinstance(event, HighWatermarkMoved):
                self.log.update_high_watermark(event.new)

    def answer_offsets(self, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse:
        return handle_offsets_for_leader_epoch(
            request, lambda t, p: self.local() if (t, p) == (TOPIC, 0) else None
        )

    def answer_fetch(self, request: FetchRequest, version: int) -> FetchResponse:
        replica_id = request.replica_state.replica_id if version >= 15 else request.replica_id
        self.fetch_replica_ids.append(replica_id)
        topics = []
        for topic in request.topics:
            name = (
                topic.topic
                if version < 13
                else (TOPIC if topic.topic_id == self.log.topic_id else "")
            )
            partitions = [self._answer(name, p, replica_id, version) for p in topic.partitions]
            topics.append(
                FetchableTopicResponse(
                    topic=topic.topic if version < 13 else "",
                    topic_id=topic.topic_id,
                    partitions=partitions,
                )
            )
        return FetchResponse(error_code=0, session_id=0, responses=topics)

    def _answer(self, name: str, p: object, replica_id: int, version: int) -> PartitionData:
        from strom.protocol.messages.fetch_request import FetchPartition

        assert isinstance(p, FetchPartition)
        plog = self.log
        data = PartitionData(
            partition_index=p.partition,
            high_watermark=plog.high_watermark,
            last_stable_offset=plog.last_stable_offset,
            log_start_offset=plog.log_start_offset,
            records=b"",
        )
        if (name, p.partition) != (TOPIC, 0):
            data.error_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            return data
        if self.errors:
            data.error_code = self.errors.pop(0)
            return data
        error = self.state.check_follower_fetch(replica_id, p.current_leader_epoch)
        if error != ErrorCode.NONE:
            data.error_code = error
            return data
        if version >= 12:
            check = diverging_epoch(
                self.local(),
                p.current_leader_epoch,
                p.last_fetched_epoch,
                p.fetch_offset,
                plog.log_start_offset,
            )
            if check.error != ErrorCode.NONE:
                data.error_code = check.error
                return data
            if check.diverging is not None:
                data.diverging_epoch = EpochEndOffset(*check.diverging)
                return data
        end = plog.log_end_offset
        try:
            result = plog.read(p.fetch_offset, p.partition_max_bytes, end, True)
        except OffsetOutOfRangeError:
            data.error_code = ErrorCode.OFFSET_OUT_OF_RANGE
            return data
        self._apply(
            self.state.update_follower_fetch_state(
                replica_id, p.fetch_offset, p.log_start_offset, end
            )
        )
        data.high_watermark = plog.high_watermark
        data.last_stable_offset = plog.last_stable_offset
        data.records = result.records
        return data
