"""`ZkClusterStore` against a real ZooKeeper: the races its writes must survive."""

from __future__ import annotations

import asyncio

import pytest

from strom.cluster.zk import layout as L
from strom.cluster.zk.client import Stat, ZkClient
from strom.cluster.zk.store import TopicExistsError, ZkClusterStore


class LateSeeingClient(ZkClient):
    """Answers one `exists` of `path` as if the znode were not there yet: the check a broker
    made just before another broker's write landed."""

    def __init__(self, hosts: str, path: str) -> None:
        super().__init__(hosts, session_timeout_ms=4000)
        self.path = path
        self.fooled = False

    async def exists(self, path: str) -> Stat | None:
        if path == self.path and not self.fooled:
            self.fooled = True
            return None
        return await super().exists(path)


def test_two_brokers_creating_the_same_topic_one_wins_one_hears_it_exists(
    zk_hosts: str,
) -> None:
    async def scenario() -> None:
        winner_client = ZkClient(zk_hosts, session_timeout_ms=4000)
        loser_client = LateSeeingClient(zk_hosts, L.topic_config_path("__consumer_offsets"))
        await winner_client.start()
        await loser_client.start()
        try:
            winner, loser = ZkClusterStore(winner_client), ZkClusterStore(loser_client)
            await winner.ensure_persistent_paths()
            created = await winner.create_topic("__consumer_offsets", {0: (1,)}, {"a": "1"})
            # The loser checked for the config znode before the winner wrote it: its create
            # of the config fails, which means the topic exists, not a ZooKeeper failure.
            with pytest.raises(TopicExistsError):
                await loser.create_topic("__consumer_offsets", {0: (2,)}, {"a": "2"})
            assert loser_client.fooled
            found = await loser.topic_assignment("__consumer_offsets")
            assert found is not None and found.topic_id == created.topic_id
            assert await loser.topic_config("__consumer_offsets") == {"a": "1"}
        finally:
            await winner_client.close()
            await loser_client.close()

    asyncio.run(scenario())


def test_a_leftover_config_znode_is_replaced(zk_hosts: str) -> None:
    async def scenario() -> None:
        client = LateSeeingClient(zk_hosts, L.topic_config_path("orders"))
        await client.start()
        try:
            store = ZkClusterStore(client)
            await store.ensure_persistent_paths()
            # What a topic deletion cut short leaves: the config without the topic.
            await client.create(
                L.topic_config_path("orders"),
                L.EntityConfig({"old": "x"}).to_json(),
                make_parents=True,
            )
            await store.create_topic("orders", {0: (1,)}, {"retention.ms": "5"})
            assert await store.topic_config("orders") == {"retention.ms": "5"}
            assert await store.topic_assignment("orders") is not None
        finally:
            await client.close()

    asyncio.run(scenario())
