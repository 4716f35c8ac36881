"""In-process brokers for the ZooKeeper tests: a client, a registration and a controller."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet

from kazoo.client import KazooClient  # type: ignore[import-untyped]

from strom.cluster.zk.client import ZkClient
from strom.cluster.zk.controller import ControllerListener, PartitionUpdate, ZkController
from strom.cluster.zk.layout import BrokerRegistration, Endpoint, TopicPartition


@contextlib.contextmanager
def kazoo_session(hosts: str) -> Iterator[KazooClient]:
    """A started kazoo client, stopped and closed on the way out."""
    client = KazooClient(hosts=hosts)
    client.start(timeout=30)
    try:
        yield client
    finally:
        client.stop()
        client.close()


async def eventually(
    condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition"
) -> None:
    """Waits (polling) until `condition()` holds; the generous deadline only catches hangs."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Recorder(ControllerListener):
    def __init__(self) -> None:
        self.updates: dict[TopicPartition, PartitionUpdate] = {}
        self.controllers: list[tuple[int | None, int]] = []
        self.deleted: set[str] = set()

    def on_partition_states(self, updates: Mapping[TopicPartition, PartitionUpdate]) -> None:
        self.updates.update(updates)

    def on_controller_change(self, controller_id: int | None, epoch: int) -> None:
        self.controllers.append((controller_id, epoch))

    def on_topics_deleted(self, topics: AbstractSet[str]) -> None:
        self.deleted |= set(topics)


class TestBroker:
    """One broker's ZooKeeper side, in process."""

    __test__ = False  # not a test class for pytest

    def __init__(self, hosts: str, broker_id: int, session_timeout_ms: int = 4000) -> None:
        self.hosts = hosts
        self.broker_id = broker_id
        self.client = ZkClient(hosts, session_timeout_ms=session_timeout_ms)
        self.recorder = Recorder()
        self.controller = ZkController(self.client, broker_id, listener=self.recorder)
        self.stopped = False

    async def start(self, register: bool = True) -> TestBroker:
        await self.client.start()
        if register:
            reg = BrokerRegistration(
                self.broker_id,
                (Endpoint("PLAINTEXT", "127.0.0.1", 9000 + self.broker_id),),
                timestamp_ms=int(time.time() * 1000),
            )
            await self.controller.store.ensure_persistent_paths()
            await self.controller.store.register_broker(reg)
        await self.controller.start()
        return self

    async def stop(self) -> None:
        """Closes the session: the broker's znodes vanish as if it had crashed."""
        self.stopped = True
        await self.controller.stop()
        await self.client.close()  # a no-op when already closed

    def expire_session(self) -> None:
        """Makes the server expire this broker's session: a second client attaches to the
        same session and closes it (the classic trick; kazoo's own test harness does it)."""
        client_id = self.client.client_id
        assert client_id is not None
        hosts = self.hosts
        other = KazooClient(hosts=hosts, client_id=client_id)
        other.start(timeout=30)
        other.stop()
        other.close()


async def start_brokers(hosts: str, ids: list[int], **kw: int) -> list[TestBroker]:
    brokers = [TestBroker(hosts, i, **kw) for i in ids]
    for b in brokers:
        await b.start()
    return brokers


async def stop_all(brokers: list[TestBroker]) -> None:
    for b in brokers:
        await b.stop()


def active(brokers: list[TestBroker]) -> list[TestBroker]:
    return [b for b in brokers if not b.stopped and b.controller.is_active]
