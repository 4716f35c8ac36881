"""`ZkMetadata`, the broker-side cache of the cluster's znodes, against a real ZooKeeper.

In process: two caches (brokers 1 and 2) on one chroot, driven through their own writes and
through a controller that elects leaders, checking what the caches and their listeners see.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from strom.cluster.errors import ProducerIdsUnavailableError
from strom.cluster.zk import layout as L
from strom.cluster.zk.client import NodeExistsError, ZkClient
from strom.cluster.zk.layout import BrokerRegistration, Endpoint, TopicPartition
from strom.cluster.zk_metadata import MetadataListener, ZkMetadata

from .helpers import TestBroker, eventually


class Heard:
    """What a cache's listener was told."""

    def __init__(self) -> None:
        self.partitions: list[TopicPartition] = []
        self.topic_configs: list[str] = []
        self.broker_configs = 0
        self.brokers = 0

    def listener(self) -> MetadataListener:
        def broker_configs() -> None:
            self.broker_configs += 1

        def brokers() -> None:
            self.brokers += 1

        return MetadataListener(
            on_partition=self.partitions.append,
            on_topic_config=self.topic_configs.append,
            on_broker_configs=broker_configs,
            on_brokers=brokers,
        )


def registration(broker_id: int) -> BrokerRegistration:
    return BrokerRegistration(
        broker_id,
        (Endpoint("PLAINTEXT", "127.0.0.1", 9000 + broker_id),),
        timestamp_ms=int(time.time() * 1000),
    )


async def open_cache(hosts: str, broker_id: int) -> tuple[ZkMetadata, Heard]:
    client = ZkClient(hosts, session_timeout_ms=4000)
    await client.start()
    metadata = ZkMetadata(client, broker_id)
    heard = Heard()
    metadata.listener = heard.listener()
    await metadata.start("test-cluster-id")
    await metadata.load()
    await metadata.register(registration(broker_id), wait_ms=0)
    return metadata, heard


async def close_cache(metadata: ZkMetadata) -> None:
    metadata.stop()
    await metadata.client.close()


def test_topics_states_and_configs_reach_every_cache(zk_hosts: str) -> None:
    async def scenario() -> None:
        one, heard_one = await open_cache(zk_hosts, 1)
        two, heard_two = await open_cache(zk_hosts, 2)
        controller = await TestBroker(zk_hosts, 99).start(register=False)
        try:
            await eventually(lambda: set(one.brokers) == {1, 2} == set(two.brokers))
            assert one.cluster_id == two.cluster_id == "test-cluster-id"

            await one.create_topic("orders", 2, 2, {"retention.ms": "1000"})
            tp = TopicPartition("orders", 0)
            await eventually(
                lambda: all(m.state("orders", 0) is not None for m in (one, two)),
                what="partition states in both caches (the controller elected leaders)",
            )
            for cache in (one, two):
                record = cache.get_topic("orders")
                assert record is not None
                assert (record.num_partitions, record.replication_factor) == (2, 2)
                assert record.configs == {"retention.ms": "1000"}
                assert set(cache.replicas("orders", 0)) == {1, 2}
                state = cache.state("orders", 0)
                assert state is not None and state.state.leader in (1, 2)
                lookup = cache.topic_by_id(record.topic_id)
                assert lookup is not None and lookup.name == "orders"
            assert tp in heard_one.partitions and tp in heard_two.partitions

            # A topic config change: read back by the writer when the write returns.
            await one.set_topic_configs("orders", {"retention.ms": "2000"})
            assert one.configs["orders"] == {"retention.ms": "2000"}
            await eventually(lambda: two.configs.get("orders") == {"retention.ms": "2000"})
            await eventually(lambda: "orders" in heard_two.topic_configs)
            notifications = await one.client.children(L.CONFIG_CHANGES)
            assert notifications, "a change notification is written for Kafka's tools"
        finally:
            await controller.stop()
            await close_cache(one)
            await close_cache(two)

    asyncio.run(scenario())


def test_dynamic_broker_configs_reach_the_brokers_they_name(zk_hosts: str) -> None:
    async def scenario() -> None:
        one, heard_one = await open_cache(zk_hosts, 1)
        two, heard_two = await open_cache(zk_hosts, 2)
        try:
            await one.set_dynamic_broker_configs(None, {"min.insync.replicas": "2"})
            assert one.dynamic_configs_for(None) == {"min.insync.replicas": "2"}
            await eventually(lambda: two.dynamic_configs_for(None) == {"min.insync.replicas": "2"})
            assert heard_one.broker_configs >= 1
            await eventually(lambda: heard_two.broker_configs >= 1)

            # Broker 2's own values, written through broker 1: only broker 2 applies them.
            before = heard_one.broker_configs
            await one.set_dynamic_broker_configs(2, {"message.max.bytes": "5000"})
            await eventually(lambda: two.dynamic_configs_for(2) == {"message.max.bytes": "5000"})
            assert one.dynamic_configs_for(1) == {}
            assert heard_one.broker_configs == before

            # Replacing the set with an empty one clears it.
            await one.set_dynamic_broker_configs(None, {})
            await eventually(lambda: two.dynamic_configs_for(None) == {})
        finally:
            await close_cache(one)
            await close_cache(two)

    asyncio.run(scenario())


def test_producer_id_blocks_are_claimed_ahead_and_never_shared(zk_hosts: str) -> None:
    async def scenario() -> None:
        one, _ = await open_cache(zk_hosts, 1)
        two, _ = await open_cache(zk_hosts, 2)
        try:
            # Every block claimed, by either broker, is a fresh one: never shared.
            claimed: list[int] = []

            def claim(cache: ZkMetadata) -> bool:
                try:
                    claimed.append(cache.reserve_producer_ids(1000))
                except ProducerIdsUnavailableError:
                    return False  # both blocks used up before the refill arrived: retriable
                return True

            for _ in range(4):
                for cache in (one, two):
                    await eventually(lambda c=cache: claim(c), what="a producer id block")
            assert len(set(claimed)) == len(claimed) == 8
            assert all(first % 1000 == 0 for first in claimed)
            # Used up faster than refilled: retriable until the refill lands, then served.
            with pytest.raises(ProducerIdsUnavailableError):
                while True:
                    claimed.append(one.reserve_producer_ids(1000))
            await eventually(lambda: claim(one), what="a block after a refill")
            assert len(set(claimed)) == len(claimed)
        finally:
            await close_cache(one)
            await close_cache(two)

    asyncio.run(scenario())


def test_registration_waits_for_an_older_session_of_the_same_id(zk_hosts: str) -> None:
    async def scenario() -> None:
        old = ZkClient(zk_hosts, session_timeout_ms=4000)
        await old.start()
        await old.create(
            L.broker_path(3), registration(3).to_json(), ephemeral=True, make_parents=True
        )
        client = ZkClient(zk_hosts, session_timeout_ms=4000)
        await client.start()
        metadata = ZkMetadata(client, 3)
        await metadata.start("test-cluster-id")
        try:
            with pytest.raises(NodeExistsError):
                await metadata.register(registration(3), wait_ms=0)
            # The old session ends while the new one waits: registration then goes through.
            waiting = asyncio.ensure_future(metadata.register(registration(3), wait_ms=30_000))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            await old.close()
            await waiting
            _, stat = await client.get(L.broker_path(3))
            assert stat.ephemeral_owner == client.session_id
        finally:
            metadata.stop()
            await client.close()
            await old.close()

    asyncio.run(scenario())
