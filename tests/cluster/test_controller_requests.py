"""The broker-side fencing of the controller's requests, against a real ZooKeeper.

In process: real controllers (`TestBroker`) are elected in ZooKeeper, and the fencing of
`ControllerRequests` (the part of a broker that takes LeaderAndIsr and StopReplica) is asked
about requests with every kind of epoch: the listener, the controller id and epoch as ZooKeeper
has them (a new controller is believed once ZooKeeper confirms it; older epochs are refused
after a newer one was seen), and the broker epoch (the czxid of the broker's registration,
which changes when it registers again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from kazoo.client import KazooClient  # type: ignore[import-untyped]

from strom.cluster.zk import layout as L
from strom.cluster.zk.client import ZkClient, ZkError
from strom.config import BrokerConfig
from strom.protocol.errors import ErrorCode
from strom.runtime.controller_requests import ControllerRequests

from .helpers import TestBroker, eventually

BROKER_ID = 7
PEER = "127.0.0.1:1"


def expire_session(hosts: str, client: ZkClient) -> None:
    """The server expires `client`'s session: another client attaches to it and closes it."""
    assert client.client_id is not None
    other = KazooClient(hosts=hosts, client_id=client.client_id)
    other.start(timeout=30)
    other.stop()
    other.close()


async def eventually_async(condition: Callable[[], Awaitable[bool]]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        try:
            if await condition():
                return
        except ZkError:  # reconnecting
            pass
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_controller_and_broker_epochs_are_fenced(zk_hosts: str) -> None:
    async def scenario() -> None:
        config = BrokerConfig.load(
            None,
            {
                "broker.id": str(BROKER_ID),
                "zookeeper.connect": zk_hosts,
                "listeners": "PLAINTEXT://127.0.0.1:0,CONTROL_PLANE://127.0.0.1:0",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROL_PLANE:PLAINTEXT",
                "control.plane.listener.name": "CONTROL_PLANE",
            },
        )
        first = await TestBroker(zk_hosts, 1).start()
        second: TestBroker | None = None
        client = ZkClient(zk_hosts, session_timeout_ms=4000)
        await client.start()
        try:
            await eventually(lambda: first.controller.is_active, what="broker 1 elected")
            path = L.broker_path(BROKER_ID)
            await client.register_ephemeral(path, b'{"version":5,"endpoints":[]}')
            runtime: Any = SimpleNamespace(broker=SimpleNamespace(config=config), client=client)
            fence = ControllerRequests(runtime)
            await fence.refresh_broker_epoch()
            stat = await client.exists(path)
            assert stat is not None
            epoch = stat.czxid
            assert fence.broker_epoch == epoch

            async def check(controller_id: int, controller_epoch: int, broker_epoch: int) -> int:
                return await fence.check(
                    "CONTROL_PLANE", PEER, controller_id, controller_epoch, broker_epoch
                )

            assert await check(1, 1, epoch) == ErrorCode.NONE
            assert (fence.controller_id, fence.controller_epoch) == (1, 1)
            assert await check(1, 0, epoch) == ErrorCode.STALE_CONTROLLER_EPOCH
            assert await check(1, 2, epoch) == ErrorCode.STALE_CONTROLLER_EPOCH  # not in ZK
            assert await check(2, 1, epoch) == ErrorCode.STALE_CONTROLLER_EPOCH  # not broker 2
            assert await check(1, 1, epoch - 1) == ErrorCode.STALE_BROKER_EPOCH
            assert await check(1, 1, epoch + 1) == ErrorCode.STALE_BROKER_EPOCH
            assert await check(1, 1, -1) == ErrorCode.NONE  # not given: as Kafka
            refused = await fence.check("PLAINTEXT", PEER, 1, 1, epoch)
            assert refused == ErrorCode.CLUSTER_AUTHORIZATION_FAILED

            # A new controller: believed once ZooKeeper shows it; the old one is stale since.
            await first.stop()
            second = await TestBroker(zk_hosts, 2).start()
            await eventually(lambda: second is not None and second.controller.is_active)
            assert await check(2, 2, epoch) == ErrorCode.NONE
            assert await check(1, 1, epoch) == ErrorCode.STALE_CONTROLLER_EPOCH

            # The session expires; the client registers the broker again in its new session,
            # with a new czxid: the old broker epoch is stale from then on.
            expire_session(zk_hosts, client)

            async def registered_again() -> bool:
                found = await client.exists(path)
                return found is not None and found.czxid > epoch

            await eventually_async(registered_again)
            fresh = await client.exists(path)
            assert fresh is not None
            assert await check(2, 2, epoch) == ErrorCode.STALE_BROKER_EPOCH
            assert await check(2, 2, fresh.czxid) == ErrorCode.NONE
        finally:
            await client.close()
            await first.stop()
            if second is not None:
                await second.stop()

    asyncio.run(scenario())
