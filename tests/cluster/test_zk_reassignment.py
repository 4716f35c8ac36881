"""The controller's reassignment rule against a real ZooKeeper (in-process controllers, no
broker processes): a move written to the legacy /admin/reassign_partitions znode is recorded
in the topic's assignment, then completed by the controller that takes over after the first
one stepped down (its broker stays registered), once a leader's ISR change (written as a
partition leader does it, with a notification) shows every target replica in sync."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from strom.cluster.zk import layout as L
from strom.cluster.zk.layout import PartitionState, TopicAssignment, TopicPartition
from strom.cluster.zk.store import ZkClusterStore

from .helpers import active, eventually, start_brokers, stop_all

TP = TopicPartition("moving", 0)


async def _assignment(store: ZkClusterStore) -> TopicAssignment | None:
    return await store.topic_assignment("moving")


def test_legacy_znode_move_survives_failover_and_completes(zk_hosts: str) -> None:
    async def scenario() -> None:
        brokers = await start_brokers(zk_hosts, [1, 2, 3])
        store = brokers[0].controller.store
        try:
            await eventually(lambda: len(active(brokers)) == 1, what="a controller")
            await store.create_topic("moving", {0: (1, 2)})

            async def initialised() -> bool:
                vs = await store.partition_state(TP)
                return vs is not None and vs.state.isr == (1, 2)

            await _until(initialised, "the partition's first state")

            legacy = L.encode_reassignment({TP: [2, 3]})
            await brokers[0].client.create(L.REASSIGN_PARTITIONS, legacy)
            found: list[TopicAssignment | None] = [None]

            async def recorded() -> bool:
                found[0] = await _assignment(store)
                gone = await brokers[0].client.exists(L.REASSIGN_PARTITIONS) is None
                return gone and found[0] is not None and bool(found[0].adding_replicas)

            await _until(recorded, "the move recorded in the topic's assignment")
            assert found[0] == TopicAssignment(
                {0: (2, 3, 1)}, found[0].topic_id, {0: (3,)}, {0: (1,)}
            )

            # The controller steps down mid-move; its successor loads the move from ZooKeeper.
            old = active(brokers)[0]
            await old.controller.stop()
            await eventually(
                lambda: len(active(brokers)) == 1 and active(brokers)[0] is not old,
                what="a new controller",
            )

            # Leader 1 adds broker 3 to the ISR, as a partition leader does.
            current = await store.partition_state(TP)
            assert current is not None and current.state.leader == 1
            expanded = PartitionState(
                1, current.state.leader_epoch, (1, 2, 3), current.state.controller_epoch
            )
            await store.update_partition_state(TP, expanded, current.version)
            await store.notify_isr_change([TP])

            async def completed() -> bool:
                found[0] = await _assignment(store)
                return found[0] is not None and found[0].partitions == {0: (2, 3)}

            await _until(completed, "the move completed")
            assert found[0] is not None
            assert not found[0].adding_replicas and not found[0].removing_replicas
            final = await store.partition_state(TP)
            assert final is not None
            # The leader moved off the removed replica; the ISR is the target's.
            assert final.state.leader == 2 and final.state.isr == (2, 3)
            assert final.state.leader_epoch > expanded.leader_epoch
        finally:
            await stop_all(brokers)

    asyncio.run(scenario())


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
