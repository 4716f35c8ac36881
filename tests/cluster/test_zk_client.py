"""ZkClient and ZkClusterStore against a real ZooKeeper."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from strom.cluster.zk import layout as L
from strom.cluster.zk.client import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    Op,
    SessionState,
    TransactionFailed,
    ZkClient,
    ZkConnectionError,
)
from strom.cluster.zk.layout import BrokerRegistration, Endpoint, PartitionState, TopicPartition
from strom.cluster.zk.store import (
    ControllerFence,
    ControllerMovedError,
    TopicExistsError,
    ZkClusterStore,
)

from .helpers import TestBroker, eventually
from .zk_server import ZooKeeperServer


def test_crud_cas_ephemeral_sequential(zk_hosts: str) -> None:
    async def scenario() -> None:
        client = ZkClient(zk_hosts, session_timeout_ms=4000)
        await client.start()
        try:
            await client.create("/a/b", b"one", make_parents=True)
            data, stat = await client.get("/a/b")
            assert (data, stat.version) == (b"one", 0)
            stat = await client.set("/a/b", b"two", stat.version)
            assert stat.version == 1
            with pytest.raises(BadVersionError):
                await client.set("/a/b", b"stale", 0)
            with pytest.raises(NodeExistsError):
                await client.create("/a/b")
            with pytest.raises(NoNodeError):
                await client.get("/nope")
            assert await client.get_or_none("/nope") is None
            path = await client.create("/a/seq_", b"", sequential=True)
            assert path.startswith("/a/seq_") and len(path) == len("/a/seq_") + 10
            await client.create("/a/eph", b"x", ephemeral=True)
            eph = await client.exists("/a/eph")
            assert eph is not None and eph.ephemeral_owner == client.session_id
            assert await client.children("/a") == sorted(["b", "eph", path.rsplit("/", 1)[1]])
            with pytest.raises(TransactionFailed) as failed:
                await client.transaction([Op.check("/a/b", 1), Op.set("/a/b", b"x", 0)])
            assert failed.value.index == 1 and isinstance(failed.value.cause, BadVersionError)
            assert (await client.get("/a/b"))[0] == b"two"  # nothing applied
            await client.transaction([Op.check("/a/b", 1), Op.set("/a/b", b"three", 1)])
            assert (await client.get("/a/b"))[0] == b"three"
            fired: list[int] = []
            data, stat = await client.get("/a/b", watch=lambda: fired.append(1))
            await client.set("/a/b", b"four", stat.version)
            await eventually(lambda: fired == [1], what="one-shot watch")
        finally:
            await client.close()

    asyncio.run(scenario())


def test_watches_run_on_the_loop_thread(zk_hosts: str) -> None:
    async def scenario() -> None:
        client = ZkClient(zk_hosts, session_timeout_ms=4000)
        await client.start()
        loop_thread = threading.get_ident()
        seen: list[list[str]] = []
        data_seen: list[bytes | None] = []
        threads: set[int] = set()
        try:
            await client.ensure_path("/w")

            def on_children(children: list[str]) -> None:
                threads.add(threading.get_ident())
                seen.append(children)

            def on_data(data: bytes | None, stat: object) -> None:
                threads.add(threading.get_ident())
                data_seen.append(data)

            handle = await client.watch_children("/w", on_children)
            await client.watch_data("/w/x", on_data)
            await client.create("/w/x", b"1")
            await client.set("/w/x", b"2")
            await eventually(lambda: ["x"] in seen, what="children watch")
            await eventually(lambda: data_seen[-1:] == [b"2"], what="data watch")
            assert data_seen[0] is None  # first call: the znode did not exist yet
            assert threads == {loop_thread}
            handle.cancel()
            await client.create("/w/y")
            # A later change is still delivered to a live watch, never to the cancelled one.
            later: list[list[str]] = []
            await client.watch_children("/w", later.append)
            await client.create("/w/z")
            await eventually(lambda: any("z" in c for c in later), what="second watch")
            assert all("y" not in c and "z" not in c for c in seen)
        finally:
            await client.close()

    asyncio.run(scenario())


def test_store_fencing_and_partition_state_cas(zk_hosts: str) -> None:
    async def scenario() -> None:
        client = ZkClient(zk_hosts, session_timeout_ms=4000)
        await client.start()
        store = ZkClusterStore(client)
        try:
            await store.ensure_persistent_paths()
            await client.create(L.CONTROLLER_EPOCH, L.encode_controller_epoch(1))
            fence = ControllerFence(1, 0)
            tp = TopicPartition("t", 0)
            first = PartitionState(1, 0, (1, 2), 1)
            created = await store.create_partition_state(tp, first, fence)
            assert created.version == 0
            # A leader shrinking its ISR (no fence) wins the race ...
            shrunk = PartitionState(1, 0, (1,), 1)
            await store.update_partition_state(tp, shrunk, 0)
            # ... so the controller's write with the version it read loses it.
            with pytest.raises(BadVersionError):
                await store.update_partition_state(tp, PartitionState(2, 1, (2,), 1), 0, fence)
            current = await store.partition_state(tp)
            assert current is not None and current.state == shrunk and current.version == 1
            # A new controller bumps the epoch: the old fence no longer writes anything.
            await client.set(L.CONTROLLER_EPOCH, L.encode_controller_epoch(2), 0)
            with pytest.raises(ControllerMovedError):
                await store.update_partition_state(tp, PartitionState(2, 1, (1,), 1), 1, fence)
            assert (await store.partition_state(tp)) == current
        finally:
            await client.close()

    asyncio.run(scenario())


def test_store_topics_cluster_id_and_producer_ids(zk_hosts: str) -> None:
    async def scenario() -> None:
        a = ZkClient(zk_hosts, session_timeout_ms=4000)
        b = ZkClient(zk_hosts, session_timeout_ms=4000)
        await a.start()
        await b.start()
        sa, sb = ZkClusterStore(a), ZkClusterStore(b)
        try:
            await sa.ensure_persistent_paths()
            assert await sa.get_or_create_cluster_id("AAAAAAAAAAAAAAAAAAAAAQ") == (
                "AAAAAAAAAAAAAAAAAAAAAQ"
            )
            assert await sb.get_or_create_cluster_id("BBBBBBBBBBBBBBBBBBBBBQ") == (
                "AAAAAAAAAAAAAAAAAAAAAQ"
            )
            created = await sa.create_topic("orders", {0: (1, 2), 1: (2, 1)}, {"retention.ms": "5"})
            with pytest.raises(TopicExistsError):
                await sb.create_topic("orders", {0: (1,)})
            assert await sb.topic_assignment("orders") == created
            assert await sb.topic_config("orders") == {"retention.ms": "5"}
            blocks = await asyncio.gather(
                *(s.allocate_producer_id_block(i) for i, s in enumerate([sa, sb, sa, sb]))
            )
            starts = sorted(block.block_start for block in blocks)
            assert starts == [0, 1000, 2000, 3000]
            await sa.mark_topic_for_deletion("orders")
            assert await sb.topics_marked_for_deletion() == ["orders"]
            await sb.delete_topic_znodes("orders")
            assert await sa.topics() == [] and await sa.topics_marked_for_deletion() == []
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())


def test_broker_registration_conflict_and_session_expiry(zk_hosts: str) -> None:
    async def scenario() -> None:
        broker = await TestBroker(zk_hosts, 1).start(register=True)
        other = ZkClient(zk_hosts, session_timeout_ms=4000)
        await other.start()
        states: list[SessionState] = []
        broker.client.add_state_listener(states.append)
        try:
            reg = BrokerRegistration(1, (Endpoint("PLAINTEXT", "h", 1),))
            with pytest.raises(NodeExistsError):  # broker id 1 is taken by a live session
                await ZkClusterStore(other).register_broker(reg)
            old_session = broker.client.session_id
            await asyncio.to_thread(broker.expire_session)
            await eventually(lambda: SessionState.NEW_SESSION in states, what="new session")
            assert SessionState.EXPIRED in states
            assert broker.client.session_id != old_session
            stat = await other.exists(L.broker_path(1))
            assert stat is not None and stat.ephemeral_owner == broker.client.session_id
        finally:
            await other.close()
            await broker.stop()

    asyncio.run(scenario())


def test_connect_timeout_is_a_clear_error() -> None:
    async def scenario() -> None:
        from .zk_server import free_port

        client = ZkClient(f"127.0.0.1:{free_port()}", connection_timeout_ms=500)
        with pytest.raises(ZkConnectionError, match="could not connect"):
            await client.start()

    asyncio.run(scenario())


def test_zookeeper_restart_keeps_or_restores_registrations(
    zk_server_factory: Callable[[], ZooKeeperServer],
) -> None:
    server = zk_server_factory()

    async def scenario() -> None:
        brokers = [
            await TestBroker(server.hosts, i, session_timeout_ms=2000).start() for i in (1, 2)
        ]
        states: list[SessionState] = []
        brokers[0].client.add_state_listener(states.append)
        try:
            await eventually(
                lambda: any(b.controller.is_active for b in brokers), what="controller"
            )
            await asyncio.to_thread(server.stop)
            await eventually(lambda: SessionState.SUSPENDED in states, what="suspended")
            await asyncio.sleep(3)  # longer than the session timeout
            # Nobody may act as controller once the session may have expired.
            assert not any(b.controller.is_active for b in brokers)
            await asyncio.to_thread(server.start)
            await eventually(lambda: all(b.client.connected for b in brokers), what="reconnect")
            checker = ZkClient(server.hosts, session_timeout_ms=2000)
            await checker.start()
            try:

                async def registered() -> bool:
                    for b in brokers:
                        stat = await checker.exists(L.broker_path(b.broker_id))
                        if stat is None or stat.ephemeral_owner != b.client.session_id:
                            return False
                    return True

                for _ in range(600):
                    if await registered():
                        break
                    await asyncio.sleep(0.1)
                assert await registered()
            finally:
                await checker.close()
            await eventually(
                lambda: sum(b.controller.is_active for b in brokers) == 1, what="one controller"
            )
        finally:
            for b in brokers:
                await b.stop()

    asyncio.run(scenario())
