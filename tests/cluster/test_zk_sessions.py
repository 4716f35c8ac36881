"""Sessions lost and expired, in process, against a real ZooKeeper.

A broker's client reaches ZooKeeper through a `TcpProxy`, so the test can cut it off while
ZooKeeper runs on, and expire its session from the server side meanwhile (a second client
attaching to the session and closing it): what a broker sees after a network partition or a
long pause that outlasted its session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from strom.cluster.zk import layout as L
from strom.cluster.zk.client import (
    BadVersionError,
    SessionState,
    ZkClient,
    ZkConnectionError,
)
from strom.cluster.zk.layout import BrokerRegistration, Endpoint, PartitionState, TopicPartition
from strom.cluster.zk.store import ControllerFence, ControllerMovedError, ZkClusterStore
from strom.cluster.zk_metadata import ZkMetadata

from .helpers import TestBroker, eventually
from .tcp_proxy import TcpProxy
from .zk_server import ZooKeeperServer

SESSION_MS = 2000


@dataclass
class Proxied:
    direct: str  # connect string with the test's chroot
    through_proxy: str  # the same chroot through `proxy`
    proxy: TcpProxy


@pytest.fixture
def proxied(zk_hosts: str) -> Iterator[Proxied]:
    address, chroot = zk_hosts.split("/", 1)
    proxy = TcpProxy(int(address.rsplit(":", 1)[1]))
    try:
        yield Proxied(zk_hosts, proxy.hosts("/" + chroot), proxy)
    finally:
        proxy.close()


def expire(hosts: str, client_id: tuple[int, bytes]) -> None:
    """Makes the server expire a session: attach to it with a second client and close it."""
    other = KazooClient(hosts=hosts, client_id=client_id)
    other.start(timeout=30)
    other.stop()
    other.close()


def registration(broker_id: int, port: int) -> BrokerRegistration:
    return BrokerRegistration(
        broker_id, (Endpoint("PLAINTEXT", "127.0.0.1", port),), timestamp_ms=int(time.time() * 1000)
    )


async def owner(client: ZkClient, path: str) -> int | None:
    stat = await client.exists(path)
    return None if stat is None else stat.ephemeral_owner


def test_close_while_zookeeper_is_unreachable(
    zk_server_factory: Callable[[], ZooKeeperServer],
) -> None:
    """Reads retry until ZooKeeper returns, each holding one of the client's threads; closing
    the client must still end the session's work at once (SIGTERM during an outage)."""
    server = zk_server_factory()

    async def scenario() -> None:
        client = ZkClient(server.hosts, session_timeout_ms=SESSION_MS)
        await client.start()
        await asyncio.to_thread(server.stop)
        await eventually(lambda: not client.connected, what="disconnected")
        reads = [asyncio.ensure_future(client.exists("/x")) for _ in range(8)]
        await asyncio.sleep(0.2)
        assert not any(r.done() for r in reads)  # waiting for ZooKeeper, as they should
        closing = asyncio.ensure_future(client.close())
        done, _ = await asyncio.wait({closing}, timeout=30)
        assert closing in done, "close() hung behind the blocked reads"
        results = await asyncio.gather(*reads, return_exceptions=True)
        assert all(isinstance(r, ZkConnectionError) for r in results), results

    asyncio.run(scenario())


def test_metadata_and_registration_after_the_session_expired(proxied: Proxied) -> None:
    """Cut off while the server expires its session and the cluster changes: back with a
    new session, the broker's registration is there again and the cache shows every change
    (partition state, new topic, a broker registered again with another endpoint); the
    watches keep working in the new session."""
    direct, proxy = proxied.direct, proxied.proxy

    async def scenario() -> None:
        admin = ZkClient(direct, session_timeout_ms=SESSION_MS)
        await admin.start()
        store = ZkClusterStore(admin)
        await store.ensure_persistent_paths()
        await admin.create(L.CONTROLLER_EPOCH, L.encode_controller_epoch(1))
        fence = ControllerFence(1, 0)
        broker2 = ZkClient(direct, session_timeout_ms=SESSION_MS)
        await broker2.start()
        await ZkClusterStore(broker2).register_broker(registration(2, 9002))

        client = ZkClient(proxied.through_proxy, session_timeout_ms=SESSION_MS)
        await client.start()
        states: list[SessionState] = []
        client.add_state_listener(states.append)
        metadata = ZkMetadata(client, 1)
        await metadata.start("AAAAAAAAAAAAAAAAAAAAAQ")
        await metadata.load()
        await metadata.register(registration(1, 9001))
        tp = TopicPartition("before", 0)
        try:
            await store.create_topic("before", {0: (1, 2)})
            first = await store.create_partition_state(tp, PartitionState(1, 0, (1, 2), 1), fence)
            await eventually(lambda: metadata.state("before", 0) == first, what="first state")
            await eventually(lambda: sorted(metadata.brokers) == [1, 2], what="two brokers")
            old_session = client.session_id
            client_id = client.client_id  # only known while connected
            assert client_id is not None

            # Cut off; meanwhile the server expires the session and the cluster moves on.
            proxy.cut()
            await eventually(lambda: SessionState.SUSPENDED in states, what="suspended")
            await asyncio.to_thread(expire, direct, client_id)
            assert await owner(admin, L.broker_path(1)) is None  # gone with the session
            moved = await store.update_partition_state(
                tp, PartitionState(2, 1, (2,), 1), first.version, fence
            )
            await store.create_topic("while-away", {0: (2,)})
            await store.mark_topic_for_deletion("before")  # only marked: still there
            await broker2.close()  # broker 2 comes back elsewhere, same id
            broker2 = ZkClient(direct, session_timeout_ms=SESSION_MS)
            await broker2.start()
            await ZkClusterStore(broker2).register_broker(registration(2, 9902))
            proxy.restore()

            await eventually(lambda: SessionState.NEW_SESSION in states, what="new session")
            assert SessionState.EXPIRED in states
            assert client.session_id != old_session
            assert await owner(admin, L.broker_path(1)) == client.session_id
            await eventually(lambda: metadata.state("before", 0) == moved, what="moved state")
            await eventually(lambda: "while-away" in metadata.topics, what="new topic")
            await eventually(
                lambda: (b := metadata.brokers.get(2)) is not None and b.endpoints[0].port == 9902,
                what="broker 2's new registration",
            )
            assert sorted(metadata.brokers) == [1, 2]
            # The watches live on in the new session.
            again = await store.update_partition_state(
                tp, PartitionState(1, 2, (1, 2), 1), moved.version, fence
            )
            await eventually(lambda: metadata.state("before", 0) == again, what="a later change")
            await store.delete_topic_znodes("while-away")
            await eventually(lambda: "while-away" not in metadata.topics, what="topic removed")
        finally:
            metadata.stop()
            await client.close()
            await broker2.close()
            await admin.close()

    asyncio.run(scenario())


def test_controller_cut_off_past_its_session_never_acts_again(proxied: Proxied) -> None:
    """A controller that cannot reach ZooKeeper for longer than its session: it steps down
    on its own after a session timeout, the other broker takes over with a higher epoch, and
    once back (with a new session) it registers again and stays a follower; its old fence
    writes nothing, and a partition leader's ISR write from before is refused by version."""
    direct, proxy = proxied.direct, proxied.proxy

    async def scenario() -> None:
        cut_off = await TestBroker(proxied.through_proxy, 1, session_timeout_ms=SESSION_MS).start()
        await eventually(lambda: cut_off.controller.is_active, what="broker 1 the controller")
        other = await TestBroker(direct, 2, session_timeout_ms=SESSION_MS).start()
        store = other.controller.store
        try:
            await store.create_topic("t", {0: (1, 2)})
            tp = TopicPartition("t", 0)
            await eventually(lambda: tp in cut_off.recorder.updates, what="a leader")
            before = cut_off.recorder.updates[tp]
            old_fence = await current_fence(other.client)
            assert old_fence.epoch == cut_off.controller.epoch
            old_session = cut_off.client.session_id
            client_id = cut_off.client.client_id  # only known while connected
            assert client_id is not None

            proxy.cut()
            # On its own, without hearing from ZooKeeper: a session timeout later it resigns.
            await eventually(lambda: not cut_off.controller.is_active, what="stepped down")
            await asyncio.to_thread(expire, direct, client_id)
            await eventually(lambda: other.controller.is_active, what="broker 2 takes over")
            new_epoch = other.controller.epoch
            assert new_epoch > old_fence.epoch
            await eventually(
                lambda: (u := other.recorder.updates.get(tp)) is not None and u.state.leader == 2,
                what="the partition moved to broker 2",
            )
            proxy.restore()

            await eventually(
                lambda: (
                    cut_off.client.session_id not in (None, old_session)
                    and cut_off.controller.active_controller_id == 2
                ),
                what="back with a new session, following broker 2",
            )
            for _ in range(100):
                if await owner(other.client, L.broker_path(1)) == cut_off.client.session_id:
                    break
                await asyncio.sleep(0.05)
            assert await owner(other.client, L.broker_path(1)) == cut_off.client.session_id
            await cut_off.controller.sync()
            assert not cut_off.controller.is_active
            assert other.controller.is_active and other.controller.epoch == new_epoch
            # The old controller's fence is stale, and the old leader's ISR write (from the
            # version it knew) loses its compare-and-set.
            with pytest.raises(ControllerMovedError):
                await cut_off.controller.store.update_partition_state(
                    tp, before.state, before.zk_version + 1, old_fence
                )
            with pytest.raises(BadVersionError):
                await cut_off.controller.store.update_partition_state(
                    tp, PartitionState(1, before.state.leader_epoch, (1,), 1), before.zk_version
                )
            current = await store.partition_state(tp)
            assert current is not None and current.state.leader == 2
        finally:
            await cut_off.stop()
            await other.stop()

    asyncio.run(scenario())


async def current_fence(client: ZkClient) -> ControllerFence:
    """The fence of the controller elected last (the epoch and its znode version)."""
    data, stat = await client.get(L.CONTROLLER_EPOCH)
    return ControllerFence(L.decode_controller_epoch(data), stat.version)
