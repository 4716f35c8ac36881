"""What the group and transaction coordinator runtimes have in common.

Each coordinates the keys (group ids, transactional ids) placed on the partitions of one
internal topic, with one I/O-free shard per partition that this broker leads. The shared part:
placement, creating the topic on first use, loading a shard by replaying its partition (at
start-up, or in cluster mode when this broker becomes the partition's leader), dropping it when
another broker leads, routing a key to its shard, and one timer per shard at its next deadline.

Cluster mode: a shard applies its records at once (it is I/O-free), but nothing it decided is
told to anyone before the internal partition's high watermark has passed the shard's last
write, like Kafka's coordinators appending with acks=all. Every answer of a shard through
`run`, `run_waiting` or `answer_when_committed` (and OffsetFetch) waits for that, so a client
is not told of a write that a failover could lose (the admin reads, DescribeGroups and the
like, do not wait); the wait fails after the runtime's write timeout or when leadership moves,
with Kafka's coordinator error mapping (`coordinator_error`). The shard's state is not reverted
when a write fails: it stays equal to the leader's log (uncommitted tail included), which
either becomes committed later or is truncated when another broker leads, and then the shard
is dropped and rebuilt from the new leader's log. Until then every answer of the shard keeps
waiting for the
tail (and times out while the ISR cannot take it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from strom.protocol.errors import ErrorCode
from strom.runtime.errors import ApiError
from strom.runtime.internal_topic import ShardTimers

if TYPE_CHECKING:
    from strom.runtime.host import BrokerHost


class Shard(Protocol):
    def next_deadline_ms(self) -> int | None: ...

    def unload(self) -> None: ...


ShardT = TypeVar("ShardT", bound=Shard)
T = TypeVar("T")
R = TypeVar("R")

# What a coordinator answers when its write to the internal topic failed (Kafka's group and
# transaction coordinators map the append's error the same way): the client looks for the
# coordinator again, or retries.
_COORDINATOR_ERRORS = {
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.REQUEST_TIMED_OUT: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_LEADER_OR_FOLLOWER: ErrorCode.NOT_COORDINATOR,
    ErrorCode.KAFKA_STORAGE_ERROR: ErrorCode.NOT_COORDINATOR,
    ErrorCode.MESSAGE_TOO_LARGE: ErrorCode.UNKNOWN_SERVER_ERROR,
    ErrorCode.RECORD_LIST_TOO_LARGE: ErrorCode.UNKNOWN_SERVER_ERROR,
}


def coordinator_error(code: ErrorCode) -> ErrorCode:
    """The coordinator's answer for a failed append to its internal partition."""
    return _COORDINATOR_ERRORS.get(code, code)


def then(answer: T | Awaitable[T], finish: Callable[[T], R]) -> R | Awaitable[R]:
    """Apply `finish` to an answer now, or once it is ready when it has to wait."""
    if isinstance(answer, Awaitable):
        waiting = answer

        async def later() -> R:
            return finish(await waiting)

        return later()
    return finish(answer)


def gather(answers: Sequence[T | Awaitable[T]]) -> list[T] | Awaitable[list[T]]:
    """Several answers as one: a list now, or a list once all that wait are ready."""
    if not any(isinstance(a, Awaitable) for a in answers):
        return list(answers)  # type: ignore[arg-type]

    async def later() -> list[T]:
        return [await a if isinstance(a, Awaitable) else a for a in answers]

    return later()


def java_string_hash(text: str) -> int:
    """Java's String.hashCode (over UTF-16 code units), as a signed 32-bit int."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(key: str, partitions: int) -> int:
    """Kafka's placement of a group (or transactional id) on its internal topic."""
    h = java_string_hash(key)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


class CoordinatorRuntime(Generic[ShardT]):
    TOPIC: ClassVar[str]
    PARTITIONS_KEY: ClassVar[str]  # the broker config giving the topic's partition count
    REPLICATION_KEY: ClassVar[str]  # ... and its replication factor
    KEYS: ClassVar[str]  # what a shard coordinates, for log lines ("groups")
    WRITE_TIMEOUT_KEY: ClassVar[str]  # how long an answer waits for the ISR (cluster mode)
    log: ClassVar[logging.Logger]

    def __init__(self, broker: BrokerHost) -> None:
        self.broker = broker
        self.shards: dict[int, ShardT] = {}
        self._timers = ShardTimers(broker.clock, self._fire)
        # Cluster mode: the partition's log end after the shard's last append; answers wait
        # until the high watermark reaches it.
        self.last_written: dict[int, int] = {}

    # -- what each runtime defines ----------------------------------------------------------

    def _new_shard(self, partition: int) -> ShardT:
        raise NotImplementedError

    def _replay_log(self, partition: int, shard: ShardT) -> int:
        """Replay the partition into the shard; returns how many records it replayed."""
        raise NotImplementedError

    def _topic_configs(self, clustered: bool) -> dict[str, str]:
        raise NotImplementedError

    def _fire(self, partition: int) -> None:
        raise NotImplementedError

    def _loaded(self, partition: int) -> None:
        """Called once a shard is loaded and in place (hook)."""

    def _dropping(self, partition: int) -> None:
        """Called before a shard is dropped (hook)."""

    # -- placement --------------------------------------------------------------------------

    @property
    def num_partitions(self) -> int:
        record = self.broker.metadata.get_topic(self.TOPIC)
        if record is not None:
            return record.num_partitions
        return self.broker.config.get_int(self.PARTITIONS_KEY)

    def partition_for(self, key: str) -> int:
        return partition_for(key, self.num_partitions)

    # -- loading and leadership -------------------------------------------------------------

    def load(self) -> None:
        """Replay every existing partition of the topic into a fresh shard (single broker)."""
        record = self.broker.metadata.get_topic(self.TOPIC)
        if record is None:
            return
        loaded = 0
        for partition in range(record.num_partitions):
            shard = self._new_shard(partition)
            loaded += self._replay_log(partition, shard)
            self.shards[partition] = shard
        self.log.info("loaded %d record(s) from %s", loaded, self.TOPIC)
        for partition in self.shards:
            self._loaded(partition)

    def become_leader(self, partition: int) -> None:
        """Cluster mode: this broker now leads the partition, so it coordinates its keys;
        load the shard from the partition (a no-op when it is loaded already)."""
        if partition in self.shards:
            return
        shard = self._new_shard(partition)
        loaded = self._replay_log(partition, shard)
        self.shards[partition] = shard
        partition_log = self.broker.partition_log(self.TOPIC, partition)
        if partition_log is not None:
            # What the old leader wrote beyond the high watermark was replayed too: answers
            # wait until this leader has committed it.
            self.last_written[partition] = partition_log.log_end_offset
        self.log.info(
            "coordinating the %s of %s-%d (%d record(s) loaded)",
            self.KEYS,
            self.TOPIC,
            partition,
            loaded,
        )
        self._loaded(partition)
        self._schedule(partition)

    def resign(self, partition: int) -> None:
        """Cluster mode: another broker leads the partition now; drop the shard (its waiting
        requests are answered NOT_COORDINATOR)."""
        self._timers.schedule(partition, None)
        self._dropping(partition)
        self.last_written.pop(partition, None)
        shard = self.shards.pop(partition, None)
        if shard is not None:
            shard.unload()
            self.log.info(
                "no longer coordinating the %s of %s-%d", self.KEYS, self.TOPIC, partition
            )

    def ensure_topic(self) -> None:
        """Create the topic the first time a key needs it."""
        if self.broker.metadata.get_topic(self.TOPIC) is not None:
            return
        cfg = self.broker.config
        replication_factor = cfg.get_int(self.REPLICATION_KEY)
        cluster = self.broker.cluster
        if cluster is not None:
            # The shards come with the partitions' leaderships (`become_leader`).
            cluster.create_internal_topic(
                self.TOPIC,
                cfg.get_int(self.PARTITIONS_KEY),
                replication_factor,
                self._topic_configs(clustered=True),
            )
            return
        self.broker.create_internal_topic(
            self.TOPIC,
            cfg.get_int(self.PARTITIONS_KEY),
            min(replication_factor, 1),
            self._topic_configs(clustered=False),
        )
        for partition in range(self.num_partitions):
            self.shards[partition] = self._new_shard(partition)
            self._schedule(partition)

    def shard_for(self, key: str) -> tuple[int, ShardT]:
        if self.broker.metadata.get_topic(self.TOPIC) is None:
            self.ensure_topic()
            if self.broker.cluster is not None:
                raise ApiError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        partition = self.partition_for(key)
        shard = self.shards.get(partition)
        if shard is None:
            if self.broker.cluster is not None:
                # Cluster mode: the partition's leader coordinates the key.
                raise ApiError(ErrorCode.NOT_COORDINATOR)
            raise ApiError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        return partition, shard

    # -- answering after the ISR has the writes (cluster mode) ------------------------------

    def appended(self, partition: int, log_end_offset: int) -> None:
        """Note an append of the shard (its records or a transaction marker)."""
        if self.broker.cluster is not None:
            self.last_written[partition] = log_end_offset

    def uncommitted(self, partition: int) -> bool:
        """Whether the shard has written beyond the high watermark (always False on a single
        broker, where an append is committed at once)."""
        cluster = self.broker.cluster
        end = self.last_written.get(partition)
        if cluster is None or end is None:
            return False
        partition_log = self.broker.partition_log(self.TOPIC, partition)
        return partition_log is None or partition_log.high_watermark < end

    async def await_committed(self, partition: int) -> ErrorCode:
        """Wait until everything the shard wrote so far is replicated to the ISR; NONE or the
        coordinator error to answer instead."""
        cluster = self.broker.cluster
        end = self.last_written.get(partition)
        if cluster is None or end is None:
            return ErrorCode.NONE
        timeout_ms = self.broker.config.get_int(self.WRITE_TIMEOUT_KEY)
        code = await cluster.replicas.await_replicated(self.TOPIC, partition, end, timeout_ms)
        return coordinator_error(code)

    def answer_when_committed(
        self, partition: int, result: T, on_error: Callable[[ErrorCode], T]
    ) -> T | Awaitable[T]:
        """`result` now when the shard has nothing uncommitted; otherwise once it has, or
        `on_error(code)` when that fails."""
        if not self.uncommitted(partition):
            return result

        async def later() -> T:
            code = await self.await_committed(partition)
            return result if code == ErrorCode.NONE else on_error(code)

        return later()

    def run(
        self,
        key: str,
        call: Callable[[ShardT], tuple[T, Any]],
        on_error: Callable[[ErrorCode], T],
    ) -> T | Awaitable[T]:
        """Run one handler on the key's shard, persist and replay its records (`write`), and
        answer once they are committed; `on_error(code)` answers a failure."""
        try:
            partition, shard = self.shard_for(key)
            result, records = call(shard)
            self.write(partition, records)
        except ApiError as exc:
            return on_error(exc.code)
        return self.answer_when_committed(partition, result, on_error)

    def run_waiting(
        self,
        key: str,
        call: Callable[[ShardT, Callable[[T], None]], Any],
        on_error: Callable[[ErrorCode], T],
    ) -> T | Awaitable[T]:
        """Run a handler that answers through a callback (JoinGroup, SyncGroup): the answer
        goes out once it is given and what the shard wrote until then is committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def respond(response: T) -> None:
            if not future.done():
                future.set_result(response)

        try:
            partition, shard = self.shard_for(key)
            self.write(partition, call(shard, respond))
        except ApiError as exc:
            return on_error(exc.code)

        async def answer() -> T:
            response = await future
            if not self.uncommitted(partition):
                return response
            code = await self.await_committed(partition)
            return response if code == ErrorCode.NONE else on_error(code)

        return answer()

    def write(self, partition: int, records: Any) -> None:
        """Append the shard's records (a list of the runtime's record type) and replay them."""
        raise NotImplementedError

    # -- timers and shutdown ----------------------------------------------------------------

    def _schedule(self, partition: int) -> None:
        shard = self.shards.get(partition)
        self._timers.schedule(partition, shard.next_deadline_ms() if shard is not None else None)

    def close(self) -> None:
        self._timers.clear()
        for partition in list(self.shards):
            self._dropping(partition)
        for shard in self.shards.values():
            shard.unload()
