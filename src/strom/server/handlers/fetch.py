"""Fetch (key 1), versions 0-17: read record batches, long-polling when there is too little.

Versions 0-3 cannot carry record batch v2: what they read is converted down to message format v0
(Fetch v0-1) or v1 (v2-3) as Kafka 3.x does (protocol/records/down_conversion.py), unless the
topic's message.downconversion.enable is false (UNSUPPORTED_VERSION for the partition). They
have no isolation level (read_uncommitted) and v0-2 a hard byte limit (a first batch above the
partition's max bytes is not returned); a read whose batches all convert to nothing answers
Kafka's 12-byte overflow entry, which counts as data for min_bytes (Kafka counts the bytes
read before the conversion). Versions below 10 get UNSUPPORTED_COMPRESSION_TYPE for
a topic with compression.type=zstd, as from Kafka.

Each partition is read from its fetch offset up to the high watermark, or with isolation_level
1 (read_committed) up to the last stable offset, with the aborted transactions overlapping the
records returned (from the segments' transaction indexes; the consumer drops their records).
Both isolation levels report the last stable offset; read_uncommitted gets a null
aborted-transactions list, as from Kafka. At most
partition_max_bytes each and max_bytes (capped by fetch.max.bytes) in all; the first partition
with data always returns at least one whole batch, so a batch larger than the limits still
makes progress (KIP-74). With fewer than min_bytes available the request waits in the fetch
purgatory until an append to one of its partitions brings enough, or max_wait_ms passes.
Incremental fetch sessions (KIP-227) from v7; topic ids instead of names from v13.
Cluster mode: only the leader serves consumers; follower fetches (replica_id >= 0) go to
server/follower_fetch.py. With an authorizer, a consumer needs READ on each topic and a
follower CLUSTER_ACTION (TOPIC_AUTHORIZATION_FAILED per partition otherwise, as from Kafka).
A consumer_byte_rate quota counts the records returned; a fetch that would go over it returns
none, with throttle_time_ms, and the connection is muted for that time (KIP-219).
Not done yet: preferred read replicas (rack awareness).
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.fetch_request import FetchRequest
from strom.protocol.messages.fetch_response import (
    AbortedTransaction,
    FetchableTopicResponse,
    FetchResponse,
    PartitionData,
)
from strom.protocol.records.down_conversion import down_convert, down_convert_magic
from strom.protocol.records.errors import RecordError
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize_cluster, authorized_names
from strom.server.broker import Broker
from strom.server.context import RequestContext
from strom.server.fetch_session import FINAL_EPOCH, INITIAL_EPOCH, FetchSession, SessionPartition
from strom.server.follower_fetch import follower_id, handle_follower_fetch
from strom.server.registry import handles
from strom.server.throttle import client_of, user_of
from strom.storage.errors import LogClosedError, NotCachedError
from strom.storage.partition_log import OffsetOutOfRangeError
from strom.storage.segment import SegmentClosedError

READ_COMMITTED = 1
ZERO_UUID = uuid.UUID(int=0)
NOTHING_DENIED: frozenset[str] = frozenset()


@dataclass(slots=True)
class _Target:
    """One partition this fetch reads, in response order."""

    topic: str
    topic_id: uuid.UUID
    partition: int
    fetch_offset: int
    max_bytes: int
    session_entry: SessionPartition | None = None
    unknown_topic_id: bool = False


def _targets_from_request(broker: Broker, request: FetchRequest, version: int) -> list[_Target]:
    targets: list[_Target] = []
    for topic in request.topics:
        name = topic.topic
        topic_id = topic.topic_id
        unknown_id = False
        if version >= 13:
            found = broker.metadata.topic_by_id(topic.topic_id)
            if found is None:
                name, unknown_id = "", True
            else:
                name = found[0]
        else:
            record = broker.metadata.get_topic(name)
            topic_id = record.topic_id if record is not None else ZERO_UUID
        for p in topic.partitions:
            targets.append(
                _Target(
                    name,
                    topic_id,
                    p.partition,
                    p.fetch_offset,
                    p.partition_max_bytes,
                    None,
                    unknown_id,
                )
            )
    return targets


def _update_session(
    broker: Broker, session: FetchSession, request: FetchRequest, version: int
) -> None:
    for target in _targets_from_request(broker, request, version):
        key = (target.topic, target.partition)
        entry = session.partitions.get(key)
        if entry is None:
            session.partitions[key] = SessionPartition(
                target.topic,
                target.topic_id,
                target.partition,
                target.fetch_offset,
                target.max_bytes,
            )
        else:
            entry.fetch_offset = target.fetch_offset
            entry.max_bytes = target.max_bytes
    for forgotten in request.forgotten_topics_data:
        name = forgotten.topic
        if version >= 13:
            found = broker.metadata.topic_by_id(forgotten.topic_id)
            name = found[0] if found is not None else ""
        for partition in forgotten.partitions:
            session.partitions.pop((name, partition), None)


def _session_targets(session: FetchSession) -> list[_Target]:
    return [
        _Target(e.topic, e.topic_id, e.partition, e.fetch_offset, e.max_bytes, e)
        for e in session.partitions.values()
    ]


class _FetchPlan:
    """A fetch request resolved to its partitions, readable again after a wait."""

    def __init__(
        self,
        ctx: RequestContext,
        request: FetchRequest,
        targets: list[_Target],
        session_id: int,
        incremental: bool,
        deny_all: bool = False,
    ) -> None:
        self.ctx = ctx
        self.broker = ctx.broker
        self.request = request
        self.targets = targets
        # The topics this consumer may not READ (TOPIC_AUTHORIZATION_FAILED, before anything
        # else is looked at, as Kafka answers).
        self.denied = NOTHING_DENIED
        if deny_all or self.broker.authorizer is not None:
            names = {t.topic for t in targets if not t.unknown_topic_id}
            allowed = (
                set()
                if deny_all
                else authorized_names(ctx, AclOperation.READ, ResourceType.TOPIC, names)
            )
            self.denied = frozenset(names - allowed)
        self.session_id = session_id
        self.incremental = incremental
        self.max_bytes = min(request.max_bytes, self.broker.config.fetch_max_bytes)
        if self.max_bytes <= 0:
            self.max_bytes = self.broker.config.fetch_max_bytes
        quota = self.broker.quotas.fetch
        if quota.enabled:
            # A consumer_byte_rate quota caps a fetch at what one window may carry, as Kafka.
            window = quota.max_value_in_window(user_of(ctx), client_of(ctx))
            if window is not None:
                self.max_bytes = max(1, min(self.max_bytes, int(window)))
        self.read_committed = request.isolation_level == READ_COMMITTED
        # Fetch v0-3: the records are converted down, CPU work in Python that goes to the
        # worker pool (with the read) rather than holding up the event loop in one piece.
        self.to_magic = down_convert_magic(ctx.api_version)
        self.converts = self.to_magic is not None
        self._size_at_read: dict[tuple[str, int], int] = {}
        self._stable_at_read: dict[tuple[str, int], int] = {}

    def keys(self) -> list[tuple[str, int]]:
        return [(t.topic, t.partition) for t in self.targets]

    def settle_charge(self, granted: int, read: int) -> None:
        """Keep of a grant what the read took (more than granted when one batch was larger):
        the context holds it until the dispatcher gives it back with the answer written."""
        self.broker.response_budget.give_back(granted - read)
        self.ctx.response_charge += read

    def release_charge(self) -> None:
        self.broker.response_budget.give_back(self.ctx.response_charge)
        self.ctx.response_charge = 0

    def read(
        self, nowait: bool = False, max_bytes: int | None = None
    ) -> tuple[list[tuple[_Target, PartitionData]], int, bool]:
        """Read every partition; returns (results, bytes read, whether an error occurred).

        `nowait` (on the event loop): raise NotCachedError as soon as a partition's data is not
        in the page cache; the caller then runs the whole read again in the worker pool.
        """
        results: list[tuple[_Target, PartitionData]] = []
        total = 0
        errors = False
        # `max_bytes`: what the response budget granted (while responses pile up for clients
        # that do not read them, fetches return less; at least one batch).
        max_bytes = self.max_bytes if max_bytes is None else min(self.max_bytes, max_bytes)
        for target in self.targets:
            data = self._read_one(target, total, max_bytes, nowait)
            if data.error_code != ErrorCode.NONE:
                errors = True
            records = data.records
            if records:
                total += len(records)
            results.append((target, data))
        return results, total, errors

    def _read_one(
        self, target: _Target, bytes_so_far: int, max_bytes: int, nowait: bool
    ) -> PartitionData:
        data = PartitionData(
            partition_index=target.partition,
            error_code=ErrorCode.NONE,
            high_watermark=-1,
            last_stable_offset=-1,
            log_start_offset=-1,
            aborted_transactions=[] if self.read_committed else None,
            preferred_read_replica=-1,
            records=b"",
        )
        if target.unknown_topic_id:
            data.error_code = ErrorCode.UNKNOWN_TOPIC_ID
            return data
        if target.topic in self.denied:
            data.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
            return data
        log = self.broker.partition_log(target.topic, target.partition)
        if log is None:
            data.error_code = self.broker.missing_log_error(target.topic, target.partition)
            return data
        cluster = self.broker.cluster
        if cluster is not None and not cluster.replicas.is_leader(target.topic, target.partition):
            data.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER  # consumers read from leaders
            return data
        version = self.ctx.api_version
        to_magic = self.to_magic
        if version < 10 and log.config.compression_type == "zstd":
            data.error_code = ErrorCode.UNSUPPORTED_COMPRESSION_TYPE
            return data
        if to_magic is not None and not log.config.message_downconversion_enable:
            data.error_code = ErrorCode.UNSUPPORTED_VERSION
            return data
        key = (target.topic, target.partition)
        self._size_at_read[key] = log.size_bytes
        high_watermark = log.high_watermark
        stable = log.last_stable_offset
        self._stable_at_read[key] = stable
        data.high_watermark = high_watermark
        data.last_stable_offset = stable
        data.log_start_offset = log.log_start_offset
        remaining = max_bytes - bytes_so_far
        limit = min(target.max_bytes, remaining)
        if limit <= 0 and bytes_so_far > 0:
            return data
        try:
            result = log.read(
                target.fetch_offset,
                max_bytes=max(limit, 0),
                max_offset=stable if self.read_committed else high_watermark,
                # v0-2 have a hard byte limit: no batch larger than it is returned. Nor is one
                # when the response budget is spent (max_bytes 0): then no records at all.
                min_one_batch=bytes_so_far == 0 and version >= 3 and max_bytes > 0,
                nowait=nowait,
            )
        except OffsetOutOfRangeError:
            data.error_code = ErrorCode.OFFSET_OUT_OF_RANGE
            return data
        except LogClosedError:  # its log dir went offline (or it was deleted) meanwhile
            data.error_code = self.broker.missing_log_error(target.topic, target.partition)
            return data
        except OSError as exc:
            if isinstance(exc, SegmentClosedError):
                return data  # swapped twice under the read: nothing this time, ask again
            # Out of descriptors, or the disk failed: this partition fails, the others are
            # answered.
            where = f"reading {target.topic}-{target.partition}"
            data.error_code = self.broker.storage_failure(where, exc, log).code
            return data
        if to_magic is not None:
            try:
                data.records = down_convert(result.records, to_magic, target.fetch_offset)
            except RecordError as exc:
                data.error_code = ErrorCode(exc.error_code)
            return data
        data.records = result.records
        if self.read_committed and result.records:
            data.aborted_transactions = [
                AbortedTransaction(producer_id=txn.producer_id, first_offset=txn.first_offset)
                for txn in log.collect_aborted_txns(target.fetch_offset, result.next_offset)
            ]
        return data

    def grown_by(self) -> int:
        """Bytes appended to this fetch's partitions since they were last read.

        For read_committed only once the last stable offset moved: bytes of a transaction
        still open are not readable yet (a marker append moves it and wakes the fetch).
        """
        grown = 0
        for key, size in self._size_at_read.items():
            log = self.broker.partition_log(*key)
            if log is None:
                return 1 << 30  # deleted: answer now with the error
            if self.read_committed and log.last_stable_offset <= self._stable_at_read[key]:
                continue
            grown += max(0, log.size_bytes - size)
        return grown

    def _over_quota(self, results: list[tuple[_Target, PartitionData]]) -> bool:
        """Count the records against consumer_byte_rate; True (and the throttle time set for
        the dispatcher) when that puts the client over its quota."""
        quota = self.broker.quotas.fetch
        user, client = user_of(self.ctx), client_of(self.ctx)
        size = _records_size(results)
        now_ms = self.broker.clock.now_ms()
        throttle = quota.record(user, client, size, now_ms)
        if throttle <= 0:
            return False
        quota.unrecord(user, client, size, now_ms)
        self.ctx.throttle_ms = max(self.ctx.throttle_ms, throttle)
        return True

    def respond(
        self, results: list[tuple[_Target, PartitionData]], error: ErrorCode = ErrorCode.NONE
    ) -> FetchResponse:
        quota = self.broker.quotas.fetch
        if quota.enabled and self._over_quota(results):
            # Throttled: nothing is returned (the bytes are not counted), the session is left
            # as it was, and the client waits the throttle time (KIP-219).
            return FetchResponse(error_code=error, session_id=self.session_id, responses=[])
        version = self.ctx.api_version
        topics: list[FetchableTopicResponse] = []
        by_topic: dict[tuple[str, uuid.UUID], FetchableTopicResponse] = {}
        metrics = self.broker.metrics
        for target, data in results:
            if data.records:
                metrics.fetched(target.topic, len(data.records))
            entry = target.session_entry
            if entry is not None:
                changed = entry.changed(
                    data.high_watermark, data.last_stable_offset, data.log_start_offset
                )
                entry.mark_sent(data.high_watermark, data.last_stable_offset, data.log_start_offset)
                if (
                    self.incremental
                    and not changed
                    and not data.records
                    and data.error_code == ErrorCode.NONE
                ):
                    continue
            key = (target.topic, target.topic_id)
            topic = by_topic.get(key)
            if topic is None:
                topic = FetchableTopicResponse(
                    topic=target.topic if version < 13 else "",
                    topic_id=target.topic_id,
                    partitions=[],
                )
                by_topic[key] = topic
                topics.append(topic)
            topic.partitions.append(data)
        return FetchResponse(error_code=error, session_id=self.session_id, responses=topics)


def _records_size(results: list[tuple[_Target, PartitionData]]) -> int:
    return sum(len(data.records) for _, data in results if data.records)


def _error_response(code: ErrorCode) -> FetchResponse:
    return FetchResponse(error_code=code, session_id=0, responses=[])


@handles(1, 0, 17)
def handle_fetch(
    ctx: RequestContext, request: FetchRequest
) -> FetchResponse | Awaitable[FetchResponse]:
    broker = ctx.broker
    version = ctx.api_version
    # A follower's fetch needs CLUSTER_ACTION; refused, it gets TOPIC_AUTHORIZATION_FAILED
    # for every partition, as from Kafka.
    follower_refused = False
    if follower_id(request, version) >= 0:
        if broker.authorizer is not None and not authorize_cluster(
            ctx, AclOperation.CLUSTER_ACTION
        ):
            follower_refused = True
        elif broker.cluster is not None:
            return handle_follower_fetch(ctx, request, broker.cluster.replicas)
    session_id = 0
    incremental = False
    if version < 7 or (request.session_id == 0 and request.session_epoch == FINAL_EPOCH):
        targets = _targets_from_request(broker, request, version)
    elif request.session_epoch == INITIAL_EPOCH:
        if request.session_id:
            broker.fetch_sessions.remove(request.session_id)
        session = broker.fetch_sessions.create()
        if session is None:
            targets = _targets_from_request(broker, request, version)
        else:
            _update_session(broker, session, request, version)
            session_id = session.session_id
            targets = _session_targets(session)
    elif request.session_epoch == FINAL_EPOCH:
        broker.fetch_sessions.remove(request.session_id)
        targets = _targets_from_request(broker, request, version)
    else:
        found = broker.fetch_sessions.get(request.session_id)
        if found is None:
            return _error_response(ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
        if found.next_epoch != request.session_epoch:
            return _error_response(ErrorCode.INVALID_FETCH_SESSION_EPOCH)
        found.next_epoch = found.next_epoch + 1 if found.next_epoch < 0x7FFFFFFF else 1
        _update_session(broker, found, request, version)
        session_id = found.session_id
        targets = _session_targets(found)
        incremental = True
    plan = _FetchPlan(ctx, request, targets, session_id, incremental, follower_refused)
    if plan.converts:
        return _read_from_disk(plan)
    try:
        results, total, errors = _read_now(plan)
    except NotCachedError:
        return _read_from_disk(plan)
    if errors or total >= request.min_bytes or request.max_wait_ms <= 0 or not targets:
        return plan.respond(results)
    return _long_poll(plan, total)


async def _read_from_disk(plan: _FetchPlan) -> FetchResponse:
    """A fetch whose data is not all in the page cache, or that converts it down: read it in
    the worker pool.

    The event loop first tries every read without blocking (RWF_NOWAIT), so a consumer that
    keeps up (its data still cached) costs no thread hop; one that reads old data waits for
    the disk in a worker while the loop serves everyone else.
    """
    request = plan.request
    results, total, errors = await _read_in_pool(plan)
    if errors or total >= request.min_bytes or request.max_wait_ms <= 0 or not plan.targets:
        return plan.respond(results)
    return await _long_poll(plan, total)


async def _long_poll(plan: _FetchPlan, already: int) -> FetchResponse:
    request = plan.request

    def enough() -> bool:
        return already + plan.grown_by() >= request.min_bytes

    # What was read before the wait is read again after it: it holds no budget meanwhile.
    plan.release_charge()
    await plan.broker.fetch_purgatory.wait(plan.keys(), enough, request.max_wait_ms)
    if not plan.converts:
        try:
            return plan.respond(_read_now(plan)[0])
        except NotCachedError:
            pass
    results, _, _ = await _read_in_pool(plan)
    return plan.respond(results)


_ReadResult = tuple[list[tuple[_Target, PartitionData]], int, bool]


def _read_now(plan: _FetchPlan) -> _ReadResult:
    """The read on the event loop (NotCachedError if it would block), charged to the response
    budget: granted before, what was read kept after."""
    budget = plan.broker.response_budget
    granted = budget.take(plan.max_bytes)
    try:
        result = plan.read(nowait=True, max_bytes=granted)
    except BaseException:
        budget.give_back(granted)
        raise
    plan.settle_charge(granted, result[1])
    return result


async def _read_in_pool(plan: _FetchPlan) -> _ReadResult:
    """The read in the worker pool, its grant taken on the event loop before it starts (so
    that fetches reading at once cannot each see the whole budget)."""
    budget = plan.broker.response_budget
    granted = budget.take(plan.max_bytes)
    loop = asyncio.get_running_loop()
    try:
        result = await loop.run_in_executor(
            plan.broker.io, functools.partial(plan.read, max_bytes=granted)
        )
    except BaseException:
        budget.give_back(granted)
        raise
    plan.settle_charge(granted, result[1])
    return result
