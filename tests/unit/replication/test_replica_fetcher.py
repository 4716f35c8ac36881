"""The real ReplicaFetcher against a tiny in-test Kafka-protocol server that serves a leader log.

The server speaks the wire protocol with the project's framing and generated messages: it
answers ApiVersions (advertising the Fetch version under test), OffsetsForLeaderEpoch and Fetch
(through LeaderSim, which reads the leader's PartitionLog and tracks the follower's progress).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from replication_helpers import TOPIC, LeaderSim, append_batches, epochs, log_bytes, open_log

from strom.protocol.errors import ErrorCode
from strom.protocol.framing import decode_request, encode_response, parse_request
from strom.protocol.messages.api_versions_response import ApiVersion, ApiVersionsResponse
from strom.replication.fetcher import (
    LeaderEndpoint,
    PartitionToFollow,
    ReplicaFetcher,
    ReplicaFetcherManager,
)
from strom.replication.follower import FetcherConfig
from strom.storage.partition_log import PartitionLog

FAST = FetcherConfig(fetch_wait_max_ms=50, fetch_backoff_ms=20, socket_timeout_ms=5_000)


class LeaderServer:
    def __init__(self, sim: LeaderSim, fetch_max_version: int = 17) -> None:
        self.sim = sim
        self.fetch_max_version = fetch_max_version
        self.requests: list[tuple[int, int]] = []  # (api key, version)
        self.drop_after: int | None = None  # close the connection after this many requests
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                (size,) = struct.unpack(">i", await reader.readexactly(4))
                parsed = parse_request(await reader.readexactly(size))
                request = decode_request(parsed)
                self.requests.append((parsed.api_key, parsed.api_version))
                if self.drop_after is not None and len(self.requests) > self.drop_after:
                    self.drop_after = None
                    return  # connection lost mid-request
                response = await self._answer(parsed.api_key, parsed.api_version, request)
                writer.write(
                    b"".join(
                        encode_response(
                            parsed.api_key, parsed.api_version, parsed.correlation_id, response
                        )
                    )
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, api_key: int, version: int, request: Any) -> Any:
        if api_key == 18:
            return ApiVersionsResponse(
                api_keys=[
                    ApiVersion(api_key=1, min_version=4, max_version=self.fetch_max_version),
                    ApiVersion(api_key=18, min_version=0, max_version=4),
                    ApiVersion(api_key=23, min_version=2, max_version=4),
                ]
            )
        if api_key == 23:
            return self.sim.answer_offsets(request)
        assert api_key == 1
        response = self.sim.answer_fetch(request, version)
        if not any(p.records for t in response.responses for p in t.partitions):
            await asyncio.sleep(min(request.max_wait_ms, 20) / 1000)  # a short long-poll
        return response


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def in_sync(leader: PartitionLog, follower: PartitionLog) -> bool:
    end = leader.log_end_offset
    return follower.log_end_offset == end == leader.high_watermark == follower.high_watermark


def run(
    tmp_path: Path,
    scenario: Callable[[LeaderServer, PartitionLog, ReplicaFetcher], Awaitable[None]],
    fetch_max_version: int = 17,
    prepare: Callable[[PartitionLog, PartitionLog], int] | None = None,
) -> None:
    leader_log, follower_log = open_log(tmp_path / "leader"), open_log(tmp_path / "follower")
    epoch = prepare(leader_log, follower_log) if prepare is not None else 1

    async def main() -> None:
        sim = LeaderSim(leader_log, epoch=epoch)
        server = LeaderServer(sim, fetch_max_version)
        await server.start()
        progress: list[object] = []
        fetcher = ReplicaFetcher(
            1, LeaderEndpoint(0, "127.0.0.1", server.port), FAST, on_progress=progress.append
        )
        fetcher.add_partitions({(TOPIC, 0): PartitionToFollow(follower_log, epoch)})
        fetcher.start()
        try:
            await scenario(server, follower_log, fetcher)
            assert progress  # the callback heard of the changes
        finally:
            await fetcher.stop()
            await server.close()

    asyncio.run(main())


@pytest.mark.parametrize("version", [17, 14, 12, 11])
def test_fetcher_replicates_until_byte_identical(tmp_path: Path, version: int) -> None:
    async def scenario(
        server: LeaderServer, follower: PartitionLog, fetcher: ReplicaFetcher
    ) -> None:
        sim = server.sim
        for n in range(5):
            sim.append([f"a{n}-{i}".encode() for i in range(4)])
        await wait_until(lambda: in_sync(sim.log, follower))
        # Appends while the follower is fetching keep flowing.
        for n in range(20):
            sim.append([f"b{n}".encode() * 30])
            await asyncio.sleep(0.002)
        await wait_until(lambda: in_sync(sim.log, follower))
        assert log_bytes(follower) == log_bytes(sim.log)
        assert epochs(follower) == epochs(sim.log)
        assert sim.state.isr == (0, 1)
        assert set(sim.fetch_replica_ids) == {1}  # replica_id, or ReplicaState from v15
        assert {v for k, v in server.requests if k == 1} == {version}
        assert server.connections == 1

    run(tmp_path, scenario, version)


def test_fetcher_truncates_divergent_log_then_catches_up(tmp_path: Path) -> None:
    def prepare(leader: PartitionLog, follower: PartitionLog) -> int:
        append_batches(leader, 0, 3)
        append_batches(follower, 0, 3)
        append_batches(follower, 1, 4)  # written as leader of epoch 1, never replicated
        append_batches(leader, 2, 2)  # the leader of epoch 2 went its own way
        return 3

    async def scenario(
        server: LeaderServer, follower: PartitionLog, fetcher: ReplicaFetcher
    ) -> None:
        sim = server.sim
        sim.append([b"after"])
        await wait_until(lambda: in_sync(sim.log, follower))
        assert log_bytes(follower) == log_bytes(sim.log)
        assert epochs(follower) == [(0, 0), (2, 9), (3, 15)]
        assert (23, 4) in server.requests  # truncation asked the leader first

    run(tmp_path, scenario, prepare=prepare)


def test_fetcher_survives_connection_loss_and_errors(tmp_path: Path) -> None:
    async def scenario(
        server: LeaderServer, follower: PartitionLog, fetcher: ReplicaFetcher
    ) -> None:
        sim = server.sim
        sim.append([b"one"])
        await wait_until(lambda: in_sync(sim.log, follower))
        server.drop_after = len(server.requests)  # the next request loses the connection
        sim.errors = [ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.UNKNOWN_LEADER_EPOCH]
        sim.append([b"two"])
        await wait_until(lambda: in_sync(sim.log, follower))
        assert server.connections == 2
        assert log_bytes(follower) == log_bytes(sim.log)

    run(tmp_path, scenario)


def test_fetcher_partition_changes_while_running(tmp_path: Path) -> None:
    async def scenario(
        server: LeaderServer, follower: PartitionLog, fetcher: ReplicaFetcher
    ) -> None:
        sim = server.sim
        sim.append([b"x"])
        await wait_until(lambda: in_sync(sim.log, follower))
        fetcher.remove_partitions([(TOPIC, 0)])
        await asyncio.sleep(0.05)
        sim.append([b"y"])
        await asyncio.sleep(0.1)
        assert follower.log_end_offset == 1  # no longer fetched
        # The leader moves to a new epoch; the partition is added back with it.
        sim.become_leader(2)
        fetcher.add_partitions({(TOPIC, 0): PartitionToFollow(follower, 2)})
        sim.append([b"z"])
        await wait_until(lambda: in_sync(sim.log, follower))
        assert epochs(follower) == epochs(sim.log) == [(1, 0), (2, 2)]

    run(tmp_path, scenario)


def test_manager_keeps_one_fetcher_per_leader(tmp_path: Path) -> None:
    async def main() -> None:
        leader_log = open_log(tmp_path / "leader")
        follower = open_log(tmp_path / "follower")
        sim = LeaderSim(leader_log, epoch=1)
        server = LeaderServer(sim)
        await server.start()
        manager = ReplicaFetcherManager(1, FAST)
        endpoint = LeaderEndpoint(0, "127.0.0.1", server.port)
        try:
            manager.add_partitions(endpoint, {(TOPIC, 0): PartitionToFollow(follower, 1)})
            sim.append([b"m"])
            await wait_until(lambda: in_sync(sim.log, follower))
            other = LeaderEndpoint(5, "127.0.0.1", 1)  # unreachable: only backs off
            manager.add_partitions(other, {(TOPIC, 0): PartitionToFollow(follower, 2)})
            assert manager.fetchers[endpoint].partitions == []
            await manager.shutdown_idle_fetchers()
            assert list(manager.fetchers) == [other]
        finally:
            await manager.stop()
            await server.close()

    asyncio.run(main())


def test_stop_is_not_lost_when_the_fetcher_wakes_at_the_same_time(tmp_path: Path) -> None:
    """A fetcher backing off (an unreachable leader) is woken by a partition change, and stopped
    before it runs again. On Python 3.11 `asyncio.wait_for` swallows a cancellation that meets
    its inner await completing: the fetcher ran on and `stop()` (a broker's SIGTERM) hung."""

    async def main() -> None:
        follower = open_log(tmp_path / "follower")
        slow_backoff = FetcherConfig(fetch_backoff_ms=60_000, socket_timeout_ms=5_000)
        fetcher = ReplicaFetcher(1, LeaderEndpoint(5, "127.0.0.1", 1), slow_backoff)
        fetcher.add_partitions({(TOPIC, 0): PartitionToFollow(follower, 1)})
        fetcher.start()
        entry = fetcher.session.partitions[(TOPIC, 0)]
        await wait_until(lambda: entry.last_error == ErrorCode.NETWORK_EXCEPTION)
        await asyncio.sleep(0.05)  # idle now, until the backoff ends or a wakeup
        fetcher.remove_partitions([(TOPIC, 0)])  # the wakeup ...
        await asyncio.sleep(0)  # ... has ended the fetcher's wait, which has not resumed yet
        stopping = asyncio.create_task(fetcher.stop())
        done, _ = await asyncio.wait({stopping}, timeout=10)  # (asyncio.wait cancels nothing)
        if not done:
            stopping.cancel()  # cancels the fetcher once more, for the cleanup
            await asyncio.wait({stopping})
            raise AssertionError("stop() hung: the fetcher ran on after its cancellation")

    asyncio.run(main())


def test_stop_ends_a_fetcher_whatever_it_was_doing(tmp_path: Path) -> None:
    """stop() towards a leader that refuses connections, at every point of the fetcher's
    connect-and-back-off cycle. On Python 3.11, a cancellation that arrives just as
    `asyncio.wait_for`'s inner call fails is turned into that call's error (here
    ConnectionRefusedError); the fetcher must still stop instead of retrying forever (a
    broker stuck in its SIGTERM shutdown is then killed and leaves its registration behind)."""

    async def main() -> None:
        follower = open_log(tmp_path / "follower")
        refused = LeaderEndpoint(0, "127.0.0.1", 1)
        config = FetcherConfig(fetch_wait_max_ms=50, fetch_backoff_ms=1, socket_timeout_ms=5_000)
        for delay in range(60):
            fetcher = ReplicaFetcher(1, refused, config)
            fetcher.add_partitions({(TOPIC, 0): PartitionToFollow(follower, 1)})
            fetcher.start()
            for _ in range(delay):  # a different point of the cycle each time
                await asyncio.sleep(0)
            stopping = asyncio.ensure_future(fetcher.stop())
            done, _ = await asyncio.wait({stopping}, timeout=10)
            assert stopping in done, f"stop() hung (after {delay} loop iterations)"
            assert not fetcher.running

    asyncio.run(main())
