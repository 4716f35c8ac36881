"""The follower side of replication, without the network: what to ask the leader, and what to do
with its answers. `fetcher.py` carries the requests; this module decides.

A followed partition is in one of three states:
  TRUNCATING  it just started following this leader epoch (or the leader reported a divergence
              that needs another round): before fetching, ask the leader with
              OffsetsForLeaderEpoch where the latest epoch in our leader epoch cache ends, and
              truncate our log there (`decide_truncation`). A log without any epoch truncates
              to its high watermark instead, which the leader certainly has.
  FETCHING    fetch from our log end, as replica `local_broker_id`, with the leader epoch we
              were told (the leader fences a stale one) and, from Fetch v12, the epoch of our
              last batch (the leader answers with a diverging epoch instead of records when our
              log went a different way: truncate, then carry on).
  FAILED      the leader said we are fenced (its epoch is newer than the one we were given),
              or the log could not be written: wait until the partition is added again.
A partition may also be *delayed* until a time (replica.fetch.backoff.ms after an error).

Truncation (KIP-101, and KIP-279's rounds for leaders changing quickly): the leader answers
(epoch E, end offset O) for our latest epoch. When we know E as well, truncate to
min(O, our end of E, our log end) and fetch. When we do not (the leader's E is an epoch we never
saw, below ours), truncate to the end of our largest epoch below E and ask again. When the leader
knows no such epoch, truncate to our high watermark.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.fetch_request import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
    ReplicaState,
)
from strom.protocol.messages.fetch_response import FetchResponse, PartitionData
from strom.protocol.messages.offset_for_leader_epoch_request import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)
from strom.protocol.messages.offset_for_leader_epoch_response import OffsetForLeaderEpochResponse
from strom.protocol.records.errors import RecordError
from strom.quota.replication import ReplicationQuota
from strom.replication.follower_log import append_as_follower, truncate_fully_and_start_at
from strom.storage.errors import StorageError
from strom.storage.partition_log import PartitionLog

__all__ = [
    "FetchStatus",
    "FetcherConfig",
    "FollowerPartition",
    "FollowerSession",
    "TruncationDecision",
    "decide_truncation",
    "epoch_end_offset_in",
]

log = logging.getLogger("strom.replication")

UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1
ZERO_UUID = uuid.UUID(int=0)
FIRST_TOPIC_ID_FETCH_VERSION = 13
FIRST_REPLICA_STATE_FETCH_VERSION = 15
FIRST_LAST_FETCHED_EPOCH_VERSION = 12

Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class FetcherConfig:
    """Kafka's replica.* settings that shape a follower's requests."""

    fetch_wait_max_ms: int = 500  # replica.fetch.wait.max.ms
    fetch_min_bytes: int = 1  # replica.fetch.min.bytes
    fetch_max_bytes: int = 1_048_576  # replica.fetch.max.bytes (per partition)
    fetch_response_max_bytes: int = 10_485_760  # replica.fetch.response.max.bytes
    fetch_backoff_ms: int = 1_000  # replica.fetch.backoff.ms
    socket_timeout_ms: int = 30_000  # replica.socket.timeout.ms
    fetch_max_version: int = 17  # the newest Fetch version to use
    offsets_for_leader_epoch_max_version: int = 4


# -- truncation: pure decisions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TruncationDecision:
    offset: int  # truncate the log to this offset (a no-op when at or past its end)
    completed: bool  # False: ask the leader again with our (new) latest epoch


def epoch_end_offset_in(
    entries: Iterable[tuple[int, int]], epoch: int, log_end_offset: int
) -> tuple[int, int]:
    """(epoch, end offset) of `epoch` in a leader epoch table of (epoch, start offset) entries,
    as LeaderEpochCache.end_offset_for answers it: for the latest epoch the log end, for an
    older one the start of the next larger epoch, paired with the largest epoch <= the one
    asked (or the one asked when below them all); (-1, -1) when above every known epoch."""
    table = list(entries)
    if epoch == UNDEFINED_EPOCH or not table:
        return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
    if epoch == table[-1][0]:
        return epoch, log_end_offset
    floor: int | None = None
    for known, start in table:
        if known > epoch:
            return (epoch if floor is None else floor), start
        floor = known
    return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET


def decide_truncation(
    leader_epoch: int,
    leader_end_offset: int,
    local_end_offset_for: Callable[[int], tuple[int, int]],
    log_end_offset: int,
    high_watermark: int,
) -> TruncationDecision:
    """Where to truncate, given the leader's (epoch, end offset) for our latest epoch.

    `local_end_offset_for(epoch)` is our own log's lookup (PartitionLog.end_offset_for_epoch).
    """
    if leader_end_offset == UNDEFINED_EPOCH_OFFSET:
        # The leader does not know the epoch: only what was committed is certainly shared.
        return TruncationDecision(min(high_watermark, log_end_offset), True)
    if leader_epoch == UNDEFINED_EPOCH:
        return TruncationDecision(min(leader_end_offset, log_end_offset), True)
    local_epoch, local_end = local_end_offset_for(leader_epoch)
    if local_end == UNDEFINED_EPOCH_OFFSET:
        # We track no epoch at or below the leader's: its end offset is all we can go by.
        return TruncationDecision(min(leader_end_offset, log_end_offset), True)
    if local_epoch != leader_epoch:
        # The leader's epoch is one we never saw: cut back to the end of our largest epoch
        # below it, then ask again with what is then our latest epoch.
        return TruncationDecision(min(local_end, log_end_offset), False)
    return TruncationDecision(min(local_end, leader_end_offset, log_end_offset), True)


# -- per-partition state -----------------------------------------------------------------------


class FetchStatus(enum.Enum):
    TRUNCATING = "truncating"
    FETCHING = "fetching"
    FAILED = "failed"


@dataclass(slots=True)
class FollowerPartition:
    topic: str
    partition: int
    topic_id: uuid.UUID
    log: PartitionLog
    leader_epoch: int  # the current leader epoch we were told; sent as current_leader_epoch
    status: FetchStatus = FetchStatus.TRUNCATING
    delayed_until_ms: int | None = None
    last_error: ErrorCode = ErrorCode.NONE
    # How far the log was behind the leader's high watermark after the last fetch applied
    # (None: no fetch yet); 0 is in sync, for the replication quota.
    lag: int | None = None

    @property
    def in_sync(self) -> bool:
        return self.lag is not None and self.lag <= 0

    @property
    def key(self) -> Key:
        return self.topic, self.partition

    def ready(self, now_ms: int) -> bool:
        return self.delayed_until_ms is None or self.delayed_until_ms <= now_ms

    def delay(self, now_ms: int, backoff_ms: int, error: ErrorCode) -> None:
        self.delayed_until_ms = now_ms + backoff_ms
        self.last_error = error


@dataclass(frozen=True, slots=True)
class SentFetch:
    """What a Fetch request asked, to match the answer against the state when it arrives."""

    version: int
    offsets: dict[Key, tuple[int, int]]  # key -> (fetch offset, leader epoch) as sent


@dataclass(slots=True)
class FollowerSession:
    """Every partition this broker follows from one leader, and the requests they need."""

    local_broker_id: int
    config: FetcherConfig = field(default_factory=FetcherConfig)
    partitions: dict[Key, FollowerPartition] = field(default_factory=dict)
    # follower.replication.throttled.rate and the topics' throttled replicas: a throttled
    # partition that is not in sync is left out of the fetch while the rate is exceeded (and
    # tried again after replica.fetch.backoff.ms); the bytes fetched for throttled partitions
    # count towards the rate.
    quota: ReplicationQuota | None = None

    # -- membership ------------------------------------------------------------------------

    def add(
        self, log_: PartitionLog, leader_epoch: int, topic_id: uuid.UUID | None = None
    ) -> FollowerPartition:
        """Follow `log_`'s partition in `leader_epoch`. Re-adding with the same epoch keeps the
        current state (a failed partition stays failed); a new epoch starts over with truncation."""
        key = (log_.topic, log_.partition)
        current = self.partitions.get(key)
        if current is not None and current.leader_epoch == leader_epoch and current.log is log_:
            return current
        entry = FollowerPartition(
            log_.topic,
            log_.partition,
            topic_id if topic_id is not None else log_.topic_id,
            log_,
            leader_epoch,
        )
        self.partitions[key] = entry
        return entry

    def remove(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self.partitions.pop(key, None)

    def next_ready_ms(self) -> int | None:
        """When the earliest delayed partition becomes ready (None: none is delayed)."""
        times = [
            p.delayed_until_ms
            for p in self.partitions.values()
            if p.delayed_until_ms is not None and p.status is not FetchStatus.FAILED
        ]
        return min(times) if times else None

    def delay_all(self, now_ms: int, error: ErrorCode = ErrorCode.NETWORK_EXCEPTION) -> None:
        """The connection failed: every partition waits a backoff before the next attempt."""
        for entry in self.partitions.values():
            if entry.status is not FetchStatus.FAILED:
                entry.delay(now_ms, self.config.fetch_backoff_ms, error)

    # -- truncation ------------------------------------------------------------------------

    def truncate_without_epochs(self, now_ms: int, *, all_partitions: bool = False) -> list[Key]:
        """Partitions to truncate whose log has no leader epoch (with `all_partitions`: every
        one, for a leader without OffsetsForLeaderEpoch v2+): truncate to the high watermark,
        which the leader certainly has, and start fetching."""
        done = []
        for entry in self.partitions.values():
            if entry.status is not FetchStatus.TRUNCATING or not entry.ready(now_ms):
                continue
            if all_partitions or entry.log.leader_epoch_cache.latest_epoch == UNDEFINED_EPOCH:
                self._truncate(entry, entry.log.high_watermark, now_ms)
                entry.status = FetchStatus.FETCHING
                done.append(entry.key)
        return done

    def offsets_request(self, now_ms: int) -> OffsetForLeaderEpochRequest | None:
        """OffsetsForLeaderEpoch for every ready partition waiting to truncate (None: none)."""
        by_topic: dict[str, list[OffsetForLeaderPartition]] = {}
        for entry in self.partitions.values():
            if entry.status is not FetchStatus.TRUNCATING or not entry.ready(now_ms):
                continue
            latest = entry.log.leader_epoch_cache.latest_epoch
            if latest == UNDEFINED_EPOCH:
                continue  # truncate_without_epochs handles it
            by_topic.setdefault(entry.topic, []).append(
                OffsetForLeaderPartition(
                    partition=entry.partition,
                    current_leader_epoch=entry.leader_epoch,
                    leader_epoch=latest,
                )
            )
        if not by_topic:
            return None
        return OffsetForLeaderEpochRequest(
            replica_id=self.local_broker_id,
            topics=[OffsetForLeaderTopic(topic=t, partitions=ps) for t, ps in by_topic.items()],
        )

    def handle_offsets_response(
        self,
        request: OffsetForLeaderEpochRequest,
        response: OffsetForLeaderEpochResponse,
        now_ms: int,
    ) -> list[Key]:
        """Truncate as the leader's answers say; returns the partitions whose log changed."""
        asked: dict[Key, tuple[int, int]] = {
            (t.topic, p.partition): (p.current_leader_epoch, p.leader_epoch)
            for t in request.topics
            for p in t.partitions
        }
        changed: list[Key] = []
        for topic in response.topics:
            for answer in topic.partitions:
                key = (topic.topic, answer.partition)
                entry = self.partitions.get(key)
                sent = asked.get(key)
                if entry is None or sent is None or entry.status is not FetchStatus.TRUNCATING:
                    continue
                if entry.leader_epoch != sent[0]:
                    continue  # re-added with another epoch while the request was out
                error = ErrorCode(answer.error_code)
                if error != ErrorCode.NONE:
                    self._on_partition_error(entry, error, sent[0], now_ms)
                    continue
                plog = entry.log
                decision = decide_truncation(
                    answer.leader_epoch,
                    answer.end_offset,
                    plog.end_offset_for_epoch,
                    plog.log_end_offset,
                    plog.high_watermark,
                )
                if self._truncate(entry, decision.offset, now_ms):
                    changed.append(key)
                if decision.completed:
                    entry.status = FetchStatus.FETCHING
        return changed

    def _truncate(self, entry: FollowerPartition, offset: int, now_ms: int) -> bool:
        plog = entry.log
        if offset >= plog.log_end_offset:
            return False
        log.info(
            "%s: truncating from %d to %d (leader epoch %d)",
            plog.name,
            plog.log_end_offset,
            offset,
            entry.leader_epoch,
        )
        plog.truncate_to(offset, now_ms)
        return True

    # -- fetching --------------------------------------------------------------------------

    def fetch_request(
        self, leader_max_version: int, now_ms: int
    ) -> tuple[FetchRequest, SentFetch] | None:
        """A Fetch for every ready partition in FETCHING, at the newest version both sides know
        (at most 12 while a partition has no topic id). None: nothing to fetch now."""
        ready = [
            e
            for e in self.partitions.values()
            if e.status is FetchStatus.FETCHING and e.ready(now_ms)
        ]
        quota = self.quota
        if quota is not None:
            throttled = [
                e for e in ready if quota.should_throttle(e.topic, e.partition, e.in_sync, now_ms)
            ]
            for entry in throttled:
                entry.delayed_until_ms = now_ms + self.config.fetch_backoff_ms
            if throttled:
                quota.throttled_fetches += 1
                skipped = {e.key for e in throttled}
                ready = [e for e in ready if e.key not in skipped]
        if not ready:
            return None
        version = min(leader_max_version, self.config.fetch_max_version)
        if any(e.topic_id == ZERO_UUID for e in ready):
            version = min(version, FIRST_TOPIC_ID_FETCH_VERSION - 1)
        topics: dict[tuple[str, uuid.UUID], list[FetchPartition]] = {}
        offsets: dict[Key, tuple[int, int]] = {}
        for entry in ready:
            plog = entry.log
            fetch_offset = plog.log_end_offset
            latest = plog.leader_epoch_cache.latest_epoch
            topics.setdefault((entry.topic, entry.topic_id), []).append(
                FetchPartition(
                    partition=entry.partition,
                    current_leader_epoch=entry.leader_epoch,
                    fetch_offset=fetch_offset,
                    last_fetched_epoch=latest,
                    log_start_offset=plog.log_start_offset,
                    partition_max_bytes=self.config.fetch_max_bytes,
                )
            )
            offsets[entry.key] = (fetch_offset, entry.leader_epoch)
        request = FetchRequest(
            replica_id=self.local_broker_id,
            max_wait_ms=self.config.fetch_wait_max_ms,
            min_bytes=self.config.fetch_min_bytes,
            max_bytes=self.config.fetch_response_max_bytes,
            isolation_level=0,
            session_id=0,  # sessionless: every request lists every partition
            session_epoch=-1,
            topics=[
                FetchTopic(topic=t, topic_id=i, partitions=ps) for (t, i), ps in topics.items()
            ],
        )
        if version >= FIRST_REPLICA_STATE_FETCH_VERSION:
            # From v15 the follower identifies itself in a tagged field (KIP-903); the
            # broker epoch is unknown in ZooKeeper mode.
            request.replica_id = -1
            request.replica_state = ReplicaState(replica_id=self.local_broker_id, replica_epoch=-1)
        return request, SentFetch(version, offsets)

    def handle_fetch_response(
        self, sent: SentFetch, response: FetchResponse, now_ms: int
    ) -> list[Key]:
        """Apply a Fetch response; returns the partitions whose log or high watermark changed.

        A partition is processed only when it is still fetching at the offset and epoch the
        request carried (it may have been re-added, truncated or removed meanwhile).
        """
        if response.error_code != ErrorCode.NONE:
            error = ErrorCode(response.error_code)
            for key in sent.offsets:
                entry = self.partitions.get(key)
                if entry is not None:
                    entry.delay(now_ms, self.config.fetch_backoff_ms, error)
            return []
        by_id = {e.topic_id: e.topic for e in self.partitions.values()}
        changed: list[Key] = []
        for topic in response.responses:
            name = topic.topic
            if sent.version >= FIRST_TOPIC_ID_FETCH_VERSION:
                name = by_id.get(topic.topic_id, "")
            for data in topic.partitions:
                key = (name, data.partition_index)
                entry = self.partitions.get(key)
                asked = sent.offsets.get(key)
                if (
                    entry is None
                    or asked is None
                    or entry.status is not FetchStatus.FETCHING
                    or (entry.log.log_end_offset, entry.leader_epoch) != asked
                ):
                    continue
                if self._process_partition(entry, data, sent.version, now_ms):
                    changed.append(key)
                if (
                    self.quota is not None
                    and data.records
                    and self.quota.is_throttled(entry.topic, entry.partition)
                ):
                    self.quota.record(len(data.records), now_ms)
        return changed

    def _process_partition(
        self, entry: FollowerPartition, data: PartitionData, version: int, now_ms: int
    ) -> bool:
        error = ErrorCode(data.error_code)
        plog = entry.log
        if error == ErrorCode.OFFSET_OUT_OF_RANGE:
            return self._out_of_range(entry, data, now_ms)
        if error != ErrorCode.NONE:
            self._on_partition_error(entry, error, entry.leader_epoch, now_ms)
            return False
        diverging = data.diverging_epoch
        if version >= FIRST_LAST_FETCHED_EPOCH_VERSION and (
            diverging.epoch != UNDEFINED_EPOCH or diverging.end_offset != UNDEFINED_EPOCH_OFFSET
        ):
            # Records and watermarks are ignored: they follow from the next fetch, after the cut.
            decision = decide_truncation(
                diverging.epoch,
                diverging.end_offset,
                plog.end_offset_for_epoch,
                plog.log_end_offset,
                plog.high_watermark,
            )
            changed = self._truncate(entry, decision.offset, now_ms)
            if not decision.completed:
                entry.status = FetchStatus.TRUNCATING
            return changed
        appended = False
        if data.records:
            try:
                result = append_as_follower(plog, data.records, now_ms)
            except RecordError as exc:
                # A damaged or misplaced batch: skip this round, fetch it again later.
                log.error("%s: cannot append fetched records: %s", plog.name, exc)
                entry.delay(now_ms, self.config.fetch_backoff_ms, ErrorCode(exc.error_code))
                return False
            except (StorageError, OSError) as exc:
                log.error("%s: writing fetched records failed: %s", plog.name, exc)
                if isinstance(exc, OSError):
                    plog.report_io_error(exc)
                entry.status = FetchStatus.FAILED
                entry.last_error = ErrorCode.KAFKA_STORAGE_ERROR
                return False
            appended = result.batches > 0
        old_hw = plog.high_watermark
        # A follower's high watermark is the leader's, as far as our log reaches; it may move
        # back (a new leader that knows less), as in Kafka.
        if data.high_watermark >= 0:
            plog.update_high_watermark(min(data.high_watermark, plog.log_end_offset))
            entry.lag = max(0, data.high_watermark - plog.log_end_offset)
        leader_start = data.log_start_offset
        if 0 <= leader_start <= plog.high_watermark:
            plog.maybe_increment_log_start_offset(leader_start)
        entry.delayed_until_ms = None
        entry.last_error = ErrorCode.NONE
        return appended or plog.high_watermark != old_hw

    def _out_of_range(self, entry: FollowerPartition, data: PartitionData, now_ms: int) -> bool:
        plog = entry.log
        leader_start = data.log_start_offset
        if leader_start > plog.log_end_offset:
            # The leader deleted what we lack (retention): start our log where the leader's does.
            log.info(
                "%s: log end %d is below the leader's log start %d: starting over there",
                plog.name,
                plog.log_end_offset,
                leader_start,
            )
            truncate_fully_and_start_at(plog, leader_start, now_ms)
            return True
        # Our log end is past the leader's: let the epochs decide what to cut.
        entry.status = FetchStatus.TRUNCATING
        entry.delay(now_ms, self.config.fetch_backoff_ms, ErrorCode.OFFSET_OUT_OF_RANGE)
        return False

    def _on_partition_error(
        self, entry: FollowerPartition, error: ErrorCode, sent_epoch: int, now_ms: int
    ) -> None:
        if error == ErrorCode.FENCED_LEADER_EPOCH and sent_epoch == entry.leader_epoch:
            # Our epoch is older than the leader's: fetching again cannot help until the new
            # state reaches us and the partition is added with it.
            log.info("%s: fenced at leader epoch %d", entry.log.name, entry.leader_epoch)
            entry.status = FetchStatus.FAILED
            entry.last_error = error
            return
        # NOT_LEADER_OR_FOLLOWER, UNKNOWN_LEADER_EPOCH (the leader has not caught up with the
        # decision yet), UNKNOWN_TOPIC_OR_PARTITION / UNKNOWN_TOPIC_ID (being created or
        # deleted) and anything else: retry after a backoff.
        log.debug("%s: leader answered %s", entry.log.name, error.name)
        entry.delay(now_ms, self.config.fetch_backoff_ms, error)
