"""Follower fetchers: one asyncio task and one connection per leader broker.

`ReplicaFetcher` connects to its leader with plain asyncio streams and the project's framing,
learns the versions the leader handles (ApiVersions), then loops: truncate what needs it
(OffsetsForLeaderEpoch), fetch every ready partition in one Fetch request, apply the answer,
and again. The decisions are `FollowerSession`'s (follower.py); this module only moves bytes,
keeps time and backs off. One request is in flight at a time, like Kafka's fetcher threads.

A lost connection (or a request that times out after replica.socket.timeout.ms) delays every
partition by replica.fetch.backoff.ms, then the fetcher reconnects. Partitions can be added and
removed while it runs; a response is applied only to partitions still fetching at the offset
and epoch the request carried.

Timeouts use `asyncio.timeout`, never `asyncio.wait_for`: on Python 3.11 `wait_for` swallows a
cancellation that arrives as its inner await completes, and the fetcher's loop would run on
after `stop()` cancelled it (a broker's SIGTERM then hung in `stop()`). The connection itself
is broker_connection.py's.

`ReplicaFetcherManager` keeps one fetcher per leader and moves partitions between them when
their leader changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from strom.protocol.errors import ErrorCode, ProtocolError
from strom.quota.replication import ReplicationQuota
from strom.replication.broker_connection import BrokerConnection, connect_to_broker
from strom.replication.follower import FetcherConfig, FollowerSession, Key
from strom.replication.replica_state import MonotonicClock
from strom.security.client import ClientSecurity
from strom.storage.partition_log import PartitionLog

__all__ = [
    "LeaderEndpoint",
    "PartitionToFollow",
    "ReplicaFetcher",
    "ReplicaFetcherManager",
]

log = logging.getLogger("strom.replication")

FETCH = 1
OFFSETS_FOR_LEADER_EPOCH = 23
MIN_FETCH_VERSION = 4  # record batch v2
MIN_OFFSETS_FOR_LEADER_EPOCH_VERSION = 2  # the first with current_leader_epoch


class _MonotonicSystemClock:
    def monotonic_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class LeaderEndpoint:
    broker_id: int
    host: str
    port: int
    # The listener it is on, and how to connect there (TLS, SASL): not part of the
    # endpoint's identity.
    listener: str = field(default="", compare=False, hash=False)
    security: ClientSecurity | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class PartitionToFollow:
    log: PartitionLog
    leader_epoch: int
    topic_id: uuid.UUID | None = None  # default: the log's


class ReplicaFetcher:
    """Replicates every partition this broker follows from one leader."""

    def __init__(
        self,
        local_broker_id: int,
        leader: LeaderEndpoint,
        config: FetcherConfig | None = None,
        clock: MonotonicClock | None = None,
        on_progress: Callable[[Iterable[Key]], None] | None = None,
        quota: ReplicationQuota | None = None,
    ) -> None:
        self.leader = leader
        self.config = config or FetcherConfig()
        self.clock: MonotonicClock = clock or _MonotonicSystemClock()
        self.session = FollowerSession(local_broker_id, self.config, quota=quota)
        # Called (on the event loop) with the partitions whose log or high watermark changed,
        # e.g. to wake purgatories or report replication progress.
        self.on_progress = on_progress
        self.client_id = f"strom-replica-fetcher-{local_broker_id}-{leader.broker_id}"
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._connection: BrokerConnection | None = None
        self._versions: dict[int, tuple[int, int]] = {}

    # -- control ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._run(), name=self.client_id)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # Not only the cancellation: should one be lost (Python 3.11's asyncio.wait_for
            # turns a cancellation that meets its inner call failing into that call's error,
            # a failed round for the loop), the loop also ends once it is no longer `_task`.
            self._wakeup.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._disconnect()

    def add_partitions(self, partitions: dict[Key, PartitionToFollow]) -> None:
        for key, target in partitions.items():
            if (target.log.topic, target.log.partition) != key:
                raise ValueError(f"{key} does not match the log {target.log.name}")
            self.session.add(target.log, target.leader_epoch, target.topic_id)
        self._wakeup.set()

    def remove_partitions(self, keys: Iterable[Key]) -> None:
        self.session.remove(keys)
        self._wakeup.set()

    @property
    def partitions(self) -> list[Key]:
        return list(self.session.partitions)

    # -- the loop --------------------------------------------------------------------------

    @property
    def _stopping(self) -> bool:
        return self._task is not asyncio.current_task()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except (OSError, EOFError, ProtocolError, TimeoutError) as exc:
                if self._stopping:
                    break
                log.warning("fetcher for leader %d: %r", self.leader.broker_id, exc)
                await self._disconnect()
                self.session.delay_all(self.clock.monotonic_ms())
            except Exception:
                if self._stopping:
                    break
                log.exception("fetcher for leader %d failed a round", self.leader.broker_id)
                await self._disconnect()
                self.session.delay_all(self.clock.monotonic_ms(), ErrorCode.UNKNOWN_SERVER_ERROR)

    async def _step(self) -> None:
        session = self.session
        now = self.clock.monotonic_ms()
        if not session.partitions:
            await self._idle(None)
            return
        timeout_s = self.config.socket_timeout_ms / 1000.0
        connection = await self._connect(now)
        if connection is None:
            await self._idle(now + self.config.fetch_backoff_ms)
            return
        changed: list[Key] = []
        epochs_version = self._version(OFFSETS_FOR_LEADER_EPOCH)
        if epochs_version < MIN_OFFSETS_FOR_LEADER_EPOCH_VERSION:
            changed += session.truncate_without_epochs(now, all_partitions=True)
        else:
            changed += session.truncate_without_epochs(now)
            request = session.offsets_request(now)
            if request is not None:
                response = await connection.call(
                    OFFSETS_FOR_LEADER_EPOCH, epochs_version, request, timeout_s
                )
                changed += session.handle_offsets_response(
                    request, response, self.clock.monotonic_ms()
                )
        fetch_version = self._version(FETCH)
        if fetch_version < MIN_FETCH_VERSION:
            raise ProtocolError(f"leader {self.leader.broker_id} handles no Fetch version >= 4")
        prepared = session.fetch_request(fetch_version, self.clock.monotonic_ms())
        if prepared is not None:
            fetch, sent = prepared
            # The leader may hold the fetch for max_wait_ms: allow for it on top of the timeout.
            response = await connection.call(
                FETCH, sent.version, fetch, timeout_s + fetch.max_wait_ms / 1000.0
            )
            changed += session.handle_fetch_response(sent, response, self.clock.monotonic_ms())
        self._report(changed)
        if prepared is None and not session.offsets_request(self.clock.monotonic_ms()):
            await self._idle(session.next_ready_ms())

    def _report(self, changed: list[Key]) -> None:
        if changed and self.on_progress is not None:
            try:
                self.on_progress(list(dict.fromkeys(changed)))
            except Exception:
                log.exception("replication progress callback failed")

    async def _idle(self, until_ms: int | None) -> None:
        """Sleep until a partition becomes ready, or partitions are added or removed."""
        self._wakeup.clear()
        timeout = None
        if until_ms is not None:
            timeout = max(0.0, (until_ms - self.clock.monotonic_ms()) / 1000.0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()

    # -- connection ------------------------------------------------------------------------

    async def _connect(self, now_ms: int) -> BrokerConnection | None:
        if self._connection is not None:
            return self._connection
        if self.session.next_ready_ms() is not None and all(
            not p.ready(now_ms) for p in self.session.partitions.values()
        ):
            return None  # everything is backing off
        timeout_s = self.config.socket_timeout_ms / 1000.0
        connection, self._versions = await connect_to_broker(
            self.leader.host,
            self.leader.port,
            self.client_id,
            timeout_s,
            timeout_s,
            self.leader.security,
        )
        self._connection = connection
        log.info(
            "fetcher connected to leader %d at %s:%d",
            self.leader.broker_id,
            self.leader.host,
            self.leader.port,
        )
        return connection

    def _version(self, api_key: int) -> int:
        """The newest version of `api_key` both sides handle; -1 when none."""
        ours = {
            FETCH: self.config.fetch_max_version,
            OFFSETS_FOR_LEADER_EPOCH: self.config.offsets_for_leader_epoch_max_version,
        }[api_key]
        theirs = self._versions.get(api_key)
        if theirs is None:
            return -1
        version = min(ours, theirs[1])
        return version if version >= theirs[0] else -1

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()


class ReplicaFetcherManager:
    """One `ReplicaFetcher` per leader broker; partitions move when their leader changes."""

    def __init__(
        self,
        local_broker_id: int,
        config: FetcherConfig | None = None,
        clock: MonotonicClock | None = None,
        on_progress: Callable[[Iterable[Key]], None] | None = None,
        quota: ReplicationQuota | None = None,
    ) -> None:
        self.local_broker_id = local_broker_id
        self.config = config or FetcherConfig()
        self.clock = clock
        self.on_progress = on_progress
        # The broker's follower replication quota, shared by all its fetchers.
        self.quota = quota
        self.fetchers: dict[LeaderEndpoint, ReplicaFetcher] = {}

    def add_partitions(
        self, leader: LeaderEndpoint, partitions: dict[Key, PartitionToFollow]
    ) -> None:
        """Follow `partitions` from `leader` (taking them from any other fetcher first)."""
        for endpoint, other in self.fetchers.items():
            if endpoint != leader:
                other.remove_partitions(partitions)
        fetcher = self.fetchers.get(leader)
        if fetcher is None:
            fetcher = ReplicaFetcher(
                self.local_broker_id,
                leader,
                self.config,
                self.clock,
                self.on_progress,
                self.quota,
            )
            self.fetchers[leader] = fetcher
        fetcher.add_partitions(partitions)
        fetcher.start()

    def remove_partitions(self, keys: Iterable[Key]) -> None:
        doomed = list(keys)
        for fetcher in self.fetchers.values():
            fetcher.remove_partitions(doomed)

    async def shutdown_idle_fetchers(self) -> None:
        for endpoint, fetcher in list(self.fetchers.items()):
            if not fetcher.partitions:
                del self.fetchers[endpoint]
                await fetcher.stop()

    async def stop(self) -> None:
        fetchers, self.fetchers = list(self.fetchers.values()), {}
        for fetcher in fetchers:
            await fetcher.stop()
