"""The broker side of share groups: share partitions, share sessions, reads for ShareFetch.

Each (group, topic, partition) that a share consumer fetches from this broker (its leader)
has one `SharePartition` here (strom.coordinator.share.partition), created on first fetch at
the offset `share.auto.offset.reset` names (latest by default: the high watermark). Locks
expire lazily: every fetch or acknowledgement first releases the records whose lock has
passed, so an idle partition needs no timer.

Share sessions (KIP-932) are keyed by (group id, member id): epoch 0 opens one (replacing the
member's earlier one, whose records stay acquired by the member), each later request must
carry the next epoch, -1 closes it and releases what the member still holds.
The cache holds at most group.share.max.groups x group.share.max.size sessions (2000 by
default), the bound Kafka 4.0 derived from these keys (later versions name it
group.share.max.share.sessions, which Kafka 3.9's configuration, and so Strom's, does not
have); a new session past the bound evicts the least recently used one that has been idle for
a lock duration, else it is refused with SHARE_SESSION_LIMIT_REACHED. When the last session of
a group closes, the group's share partitions are dropped here (loaded again on next use), so a
group coordinator's AlterShareGroupOffsets or DeleteShareGroupOffsets on the empty group is
seen.

Loading and persisting a share partition's state is `SharePartitionStore`'s (with the share
coordinator, on this broker or another). Kafka writes the state on acknowledgements, on
releases (a session closed, a member gone) and on lock expiry, not on acquisition; so does
Strom. Each write carries every in-flight record, the acquired ones as Available with their
delivery counts already incremented.

Issue #16's features (filters, delayed delivery, retry backoff, dead-letter copies) are
`ShareQueues`' (strom.runtime.share_queues): a read marks the records it passes and acquires
due records first; acknowledgements and releases re-arm the share partition's wake-up.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from strom.config.group import duration_ms
from strom.coordinator.share.partition import (
    AcknowledgeType,
    AcquiredRange,
    RecordState,
    SharePartition,
    StateBatch,
)
from strom.protocol.errors import ErrorCode
from strom.protocol.records.batch_header import iter_batch_headers
from strom.runtime.host import BrokerHost
from strom.runtime.share_partition_store import SharePartitionStore
from strom.runtime.share_queues import ShareQueues
from strom.storage.errors import NotCachedError, OffsetOutOfRangeError
from strom.storage.txn_index import AbortedTxn

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from strom.runtime.share_coordinator_runtime import ShareCoordinatorRuntime
    from strom.runtime.share_persister import SharePersister
    from strom.storage.partition_log import PartitionLog

__all__ = ["SessionKey", "ShareRead", "ShareRuntime", "ShareSession", "TopicPartitionKey"]

TopicPartitionKey = tuple[uuid.UUID, str, int]  # topic id, topic name, partition
SessionKey = tuple[str, str]  # group id, member id
FINAL_EPOCH = -1
INITIAL_EPOCH = 0


@dataclass
class ShareSession:
    group_id: str
    member_id: str
    epoch: int = 1  # the epoch the next request must carry
    partitions: dict[tuple[uuid.UUID, int], TopicPartitionKey] = field(default_factory=dict)
    last_used: float = 0.0
    # The connection that opened the session (0: none known). When it closes, the session
    # goes and the member's records are released, as Kafka 4.1+ does.
    connection_id: int = 0

    def next_epoch(self) -> None:
        self.epoch = self.epoch + 1 if self.epoch < 0x7FFFFFFF else 1


@dataclass
class ShareRead:
    """What one partition gave a ShareFetch."""

    error: ErrorCode = ErrorCode.NONE
    records: bytes = b""
    acquired: list[AcquiredRange] = field(default_factory=list)


class ShareHost(BrokerHost, Protocol):
    """The broker as share partitions see it: `BrokerHost`, the share coordinator and the
    persister that reaches the share coordinators."""

    @property
    def share_state(self) -> ShareCoordinatorRuntime: ...

    @property
    def share_persister(self) -> SharePersister: ...

    # What dead-letter copies need (strom.runtime.dead_letter_runtime).
    @property
    def io(self) -> Executor: ...

    def create_topic(
        self,
        name: str,
        num_partitions: int = -1,
        replication_factor: int = -1,
        configs: dict[str, str] | None = None,
    ) -> object: ...

    def next_producer_id(self) -> int: ...

    async def produce_internal(
        self, topic: str, partition: int, batch: bytes, timeout_ms: int
    ) -> ErrorCode: ...


class ShareRuntime:
    def __init__(self, broker: ShareHost) -> None:
        self.broker = broker
        self.queues = ShareQueues(self)
        self.store = SharePartitionStore(
            broker,
            broker.share_persister,
            self._new_partition,
            self._initial_offset,
            self.queues,
        )
        self.partitions = self.store.partitions
        self.sessions: OrderedDict[SessionKey, ShareSession] = OrderedDict()
        # connection id -> the sessions opened on it; an entry whose session was replaced by
        # one opened on another connection is ignored when its connection closes.
        self._by_connection: dict[int, set[SessionKey]] = {}
        self._resuming: set[asyncio.Future[None]] = set()

    # -- settings ------------------------------------------------------------------------

    def _int(self, name: str, default: int) -> int:
        try:
            return self.broker.config.get_int(name)
        except (KeyError, AttributeError, ValueError):
            return default

    @property
    def lock_duration_ms(self) -> int:
        return self._int("group.share.record.lock.duration.ms", 30_000)

    @property
    def max_sessions(self) -> int:
        return self._int("group.share.max.groups", 10) * self._int("group.share.max.size", 200)

    def now_ms(self) -> int:
        return self.broker.clock.now_ms()

    # -- sessions ------------------------------------------------------------------------

    def open_session(
        self, group_id: str, member_id: str, connection_id: int = 0
    ) -> ShareSession | None:
        """A new session (replacing the member's previous one); None when the cache is full.

        The records the member holds stay acquired by it, as in Kafka: a client opens a new
        session after a session error without having lost what it was given, and
        acknowledges those records in the new one (or their locks expire)."""
        key = (group_id, member_id)
        self.sessions.pop(key, None)
        if len(self.sessions) >= self.max_sessions:
            idle_before = time.monotonic() - self.lock_duration_ms / 1000.0
            victim = next(iter(self.sessions.values()), None)
            if victim is None or victim.last_used > idle_before:
                return None
            del self.sessions[(victim.group_id, victim.member_id)]
            self.release_session(victim)
        session = ShareSession(
            group_id, member_id, last_used=time.monotonic(), connection_id=connection_id
        )
        self.sessions[key] = session
        if connection_id:
            self._by_connection.setdefault(connection_id, set()).add(key)
        return session

    def session(self, group_id: str, member_id: str) -> ShareSession | None:
        session = self.sessions.get((group_id, member_id))
        if session is not None:
            session.last_used = time.monotonic()
            self.sessions.move_to_end((group_id, member_id))
        return session

    def close_session(self, session: ShareSession) -> None:
        self.sessions.pop((session.group_id, session.member_id), None)
        self.release_session(session)

    def release_session(self, session: ShareSession) -> None:
        group_id = session.group_id
        for key in session.partitions.values():
            sp = self.partitions.get((group_id, key[1], key[2]))
            if sp is not None and sp.release_member(session.member_id, self.now_ms()):
                self.store.persist_in_background(group_id, key)
            if sp is not None:
                self.queues.after_change(group_id, key[1], key[2], sp)
        self._notify(session.partitions.values())
        if not any(g == group_id for g, _ in self.sessions):
            self.store.drop_group(group_id)

    def connection_closed(self, connection_id: int) -> None:
        """A client connection went away: the sessions it opened (and not replaced since on
        another connection) are closed, so their members' records go back to the group at
        once instead of when their acquisition locks expire."""
        for key in self._by_connection.pop(connection_id, ()):
            session = self.sessions.get(key)
            if session is not None and session.connection_id == connection_id:
                self.close_session(session)

    def release_member(self, group_id: str, member_id: str) -> None:
        """The member left its group or was removed: its records go back to the others."""
        session = self.sessions.pop((group_id, member_id), None)
        if session is not None:
            self.release_session(session)

    # -- share partitions ----------------------------------------------------------------

    def prepare(self, group_id: str, keys: Iterable[TopicPartitionKey]) -> Awaitable[None] | None:
        """Load the share partitions a request names (None: nothing has to wait)."""
        return self.store.prepare(group_id, keys)

    def share_partition(
        self, group_id: str, key: TopicPartitionKey, log: PartitionLog
    ) -> tuple[SharePartition | None, ErrorCode]:
        """The loaded share partition with its expired locks released, or None and the
        error to report."""
        sp, error = self.store.get(group_id, key)
        if sp is None:
            return None, error
        sp.lock_duration_ms = self.lock_duration_for(group_id)  # the group's, as altered
        self.queues.configure(group_id, sp)
        if sp.expire_locks(self.now_ms()):
            # Backoffs and given-up records of expired locks survive a restart.
            self.store.persist_in_background(group_id, key)
        if sp.start_offset < log.log_start_offset:
            sp.reset_start(log.log_start_offset)  # retention deleted what was not delivered
        return sp, ErrorCode.NONE

    def _new_partition(
        self, group_id: str, start: int, batches: list[StateBatch]
    ) -> SharePartition:
        return SharePartition(
            start,
            max_in_flight=self._int("group.share.partition.max.record.locks", 200),
            max_delivery_count=self._int("group.share.delivery.count.limit", 5),
            lock_duration_ms=self.lock_duration_for(group_id),
            batches=batches,
        )

    def _initial_offset(self, group_id: str, log: PartitionLog) -> int:
        reset = self.group_setting(group_id, "share.auto.offset.reset", "latest")
        if reset == "earliest":
            return log.log_start_offset
        back = duration_ms(reset)
        if back is not None:
            found = log.offset_for_timestamp(self.now_ms() - back)
            return found[0] if found is not None else log.high_watermark
        return log.high_watermark

    def lock_duration_for(self, group_id: str) -> int:
        value = self.group_setting(group_id, "share.record.lock.duration.ms", "")
        return int(value) if value.isdigit() else self.lock_duration_ms

    def group_setting(self, group_id: str, name: str, default: str) -> str:
        """A share.* group config (IncrementalAlterConfigs on the GROUP resource)."""
        getter = getattr(self.broker.metadata, "group_configs", None)
        if getter is None:
            return default
        configs = getter(group_id) or {}
        return str(configs.get(name, default))

    # -- durability ----------------------------------------------------------------------

    def persist(
        self, group_id: str, key: TopicPartitionKey, token: bytes = b""
    ) -> ErrorCode | Awaitable[ErrorCode]:
        """Write the share partition's state to its share coordinator; the answer comes once
        it is committed. `token` names the timer files a clean stop is about to checkpoint."""
        return self.store.persist(group_id, key, token)

    def persist_soon(self, group_id: str, topic: str, partition: int) -> None:
        """Persist in the background (a change no request waits for)."""
        log = self.broker.partition_log(topic, partition)
        if log is not None:
            self.store.persist_in_background(group_id, (log.topic_id, topic, partition))

    def load_soon(self, group_id: str, topic: str, partition: int) -> None:
        """Load a share partition that has work of its own (dead-letter copies to write)
        without waiting for a consumer."""
        log = self.broker.partition_log(topic, partition)
        if log is None:
            return
        waiting = self.store.prepare(group_id, [(log.topic_id, topic, partition)])
        if waiting is not None:
            future = asyncio.ensure_future(waiting)
            self._resuming.add(future)
            future.add_done_callback(self._resuming.discard)

    def resume(self) -> None:
        """After start-up: load the share partitions whose state held by this broker's share
        coordinator has dead-letter copies to write."""
        for shard in list(self.broker.share_state.shards.values()):
            for (group_id, topic_id, partition), state in list(shard.states.items()):
                ext = state.extension
                pending = any(b.state == RecordState.ARCHIVING for b in state.batches) or (
                    ext is not None
                    and (
                        ext.copier.in_flight is not None
                        or any(b.state == RecordState.ARCHIVING for b in ext.due)
                    )
                )
                found = self.broker.metadata.topic_by_id(topic_id) if pending else None
                if found is not None:
                    self.load_soon(group_id, found.name, partition)

    async def close(self) -> None:
        """Checkpoint the timer indexes (after persisting their state) and stop the copies."""
        for future in self._resuming:
            future.cancel()
        await self.queues.close()

    def notify(self, topic: str, partition: int) -> None:
        self.broker.fetch_purgatory.notify((topic, partition))

    # -- acknowledgements ----------------------------------------------------------------

    def acknowledge(
        self,
        group_id: str,
        member_id: str,
        key: TopicPartitionKey,
        batches: list[tuple[int, int, list[int]]],
    ) -> ErrorCode:
        """Apply a partition's acknowledgement batches in order; the first error stops them.

        A batch carries one type for the whole range, or one per offset."""
        _, topic, partition = key
        log = self.broker.partition_log(topic, partition)
        if log is None:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        sp, error = self.share_partition(group_id, key, log)
        if sp is None:
            return error if error != ErrorCode.NONE else ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        now = self.now_ms()
        previous_last = -1
        for first, last, types in batches:
            if first > last or first <= previous_last or not types:
                return ErrorCode.INVALID_REQUEST
            if len(types) not in (1, last - first + 1):
                return ErrorCode.INVALID_REQUEST
            if any(t not in AcknowledgeType._value2member_map_ for t in types):
                return ErrorCode.INVALID_REQUEST
            previous_last = last
            for lo, hi, ack in _runs(first, last, types):
                error = sp.acknowledge(member_id, lo, hi, ack, now)
                if error != ErrorCode.NONE:
                    self.queues.after_change(group_id, topic, partition, sp)
                    return error
        self._notify([key])
        self.queues.after_change(group_id, topic, partition, sp)
        return ErrorCode.NONE

    # -- fetching ------------------------------------------------------------------------

    def read(
        self,
        group_id: str,
        member_id: str,
        key: TopicPartitionKey,
        max_records: int,
        max_bytes: int,
        nowait: bool,
    ) -> ShareRead:
        """Acquire records of one partition for `member_id` and the batches that hold them:
        due records first (delayed records whose time has come after the start offset passed
        them), then the window's. Raises NotCachedError when `nowait` and the data is not in
        the page cache (the caller retries in the worker pool)."""
        _, topic, partition = key
        log = self.broker.partition_log(topic, partition)
        if log is None:
            return ShareRead(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        cluster = self.broker.cluster
        if cluster is not None and not cluster.replicas.is_leader(topic, partition):
            return ShareRead(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        sp, error = self.share_partition(group_id, key, log)
        if sp is None:
            return ShareRead(error)
        if not self.queues.ready(group_id, topic, partition):
            return ShareRead()  # its delay index is being rebuilt
        now = self.now_ms()
        sp.pull_due(now)
        read_committed = self.group_setting(group_id, "share.isolation.level", "") == (
            "read_committed"
        )
        limit = log.last_stable_offset if read_committed else log.high_watermark
        max_records = max(max_records, 1)
        chunks, acquired = self.queues.read_due(
            member_id, sp, log, max_records, max_bytes, limit, nowait
        )
        left = max_records - sum(r.last_offset - r.first_offset + 1 for r in acquired)
        if left > 0:
            budget = max(max_bytes - sum(len(c) for c in chunks.values()), 1)
            try:
                more, got = self._read_window(
                    group_id, member_id, sp, log, left, budget, limit, read_committed, nowait
                )
            except NotCachedError:
                if not acquired:
                    raise
                more, got = {}, []  # what is acquired goes now; the rest next time
            chunks.update(more)
            acquired += got
        self.queues.after_change(group_id, topic, partition, sp)
        if not acquired:
            return ShareRead()
        return ShareRead(records=b"".join(chunks[b] for b in sorted(chunks)), acquired=acquired)

    def _read_window(
        self,
        group_id: str,
        member_id: str,
        sp: SharePartition,
        log: PartitionLog,
        max_records: int,
        max_bytes: int,
        limit: int,
        read_committed: bool,
        nowait: bool,
    ) -> tuple[dict[int, bytes], list[AcquiredRange]]:
        """Reads whole batches from the first record of the window that can be delivered (an
        Available one in flight, else the end offset); the client keeps the records of its
        acquired ranges only, so batches are sent as stored. New records are marked from their
        contents (filtered out, delayed) when the group or the records ask for it."""
        now = self.now_ms()
        start = sp.first_available(now)
        if start is None:
            start = sp.end_offset
        if start >= limit or (sp.first_available(now) is None and sp.in_flight >= sp.max_in_flight):
            return {}, []
        try:
            result = log.read(start, max(max_bytes, 1), limit, True, nowait=nowait)
        except OffsetOutOfRangeError:
            sp.reset_start(log.log_start_offset)
            return {}, []
        data = result.records
        if not data:
            if result.next_offset > sp.end_offset:
                sp.skip_to(result.next_offset)
            return {}, []
        aborted = log.collect_aborted_txns(start, result.next_offset) if read_committed else []
        batches = []
        for pos, h in iter_batch_headers(data):
            first, last = h.base_offset, h.base_offset + h.last_offset_delta
            if read_committed and h.is_transactional and _aborted(aborted, h.producer_id, first):
                continue  # an aborted transaction's records: never delivered
            batches.append((first, last, pos, h.batch_length + 12))
        # Skipped batches become archived gaps once a later batch is acquired (the abort
        # marker after them always is one).
        if not batches:
            return {}, []
        marks = self.queues.marks(
            group_id, log.topic, data, batches, sp.end_offset, self.queues.settings(group_id)
        )
        through = batches[-1][1]
        acquired = sp.acquire(
            member_id,
            now,
            max_records,
            [(base, last) for base, last, _, _ in batches if last >= sp.end_offset],
            through=through,
            marks=marks,
        )
        chunks: dict[int, bytes] = {}
        for base, last, pos, size in batches:
            if any(r.first_offset <= last and base <= r.last_offset for r in acquired):
                chunks[base] = bytes(data[pos : pos + size])
        return chunks, acquired

    def readable(self, group_id: str, key: TopicPartitionKey) -> bool:
        """Whether a fetch of this partition could acquire something now."""
        _, topic, partition = key
        log = self.broker.partition_log(topic, partition)
        if log is None:
            return True  # an error to report
        sp = self.partitions.get((group_id, topic, partition))
        if sp is None or not self.queues.ready(group_id, topic, partition):
            return False
        now = self.now_ms()
        sp.expire_locks(now)
        sp.pull_due(now)
        if sp.first_available(now) is not None or sp.due_offsets(now, 1):
            return True
        read_committed = self.group_setting(group_id, "share.isolation.level", "") == (
            "read_committed"
        )
        limit = log.last_stable_offset if read_committed else log.high_watermark
        return sp.end_offset < limit and sp.in_flight < sp.max_in_flight

    def _notify(self, keys: Iterable[TopicPartitionKey]) -> None:
        purgatory = self.broker.fetch_purgatory
        for _, topic, partition in keys:
            purgatory.notify((topic, partition))


def _aborted(aborted: list[AbortedTxn], producer_id: int, offset: int) -> bool:
    return any(
        t.producer_id == producer_id and t.first_offset <= offset <= t.last_offset for t in aborted
    )


def _runs(first: int, last: int, types: list[int]) -> Iterator[tuple[int, int, int]]:
    """(first, last, type) runs of one acknowledgement batch."""
    if len(types) == 1:
        yield first, last, types[0]
        return
    run_start = first
    for i in range(1, len(types) + 1):
        if i == len(types) or types[i] != types[i - 1]:
            yield run_start, first + i - 1, types[i - 1]
            run_start = first + i
