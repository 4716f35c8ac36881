"""Controller election and partition leadership against a real ZooKeeper."""

from __future__ import annotations

import asyncio

from strom.cluster.zk import layout as L
from strom.cluster.zk.client import ZkClient
from strom.cluster.zk.controller_logic import BrokerInfo, assign_added_partitions, assign_replicas
from strom.cluster.zk.layout import NO_LEADER, TopicPartition
from strom.cluster.zk.store import VersionedState, ZkClusterStore

from .helpers import TestBroker, active, eventually, start_brokers, stop_all


async def _epoch(client: ZkClient) -> int:
    data, _ = await client.get(L.CONTROLLER_EPOCH)
    return L.decode_controller_epoch(data)


def test_exactly_one_controller_and_failover_on_session_close(zk_hosts: str) -> None:
    async def scenario() -> None:
        brokers = await start_brokers(zk_hosts, [1, 2, 3])
        try:
            await eventually(lambda: len(active(brokers)) == 1, what="a controller")
            first = active(brokers)[0]
            await asyncio.sleep(0.5)  # give a second winner every chance to appear
            assert active(brokers) == [first]
            assert first.controller.epoch == 1
            others = [b for b in brokers if b is not first]
            await eventually(
                lambda: all(b.controller.active_controller_id == first.broker_id for b in others),
                what="everyone knows the controller",
            )
            # Kill its session (the controller object itself is not told to stop): the
            # ephemeral /controller vanishes, and the old controller steps down at once.
            await first.client.close()
            assert not first.controller.is_active
            first.stopped = True
            await eventually(lambda: len(active(brokers)) == 1, what="a new controller")
            second = active(brokers)[0]
            assert second is not first and second.controller.epoch == 2
            assert not first.controller.is_active
            assert await _epoch(second.client) == 2
        finally:
            await stop_all(brokers)

    asyncio.run(scenario())


def test_expired_session_steps_down_and_a_higher_epoch_takes_over(zk_hosts: str) -> None:
    async def scenario() -> None:
        brokers = await start_brokers(zk_hosts, [1, 2])
        try:
            await eventually(lambda: len(active(brokers)) == 1, what="a controller")
            first = active(brokers)[0]
            epoch = first.controller.epoch
            await asyncio.to_thread(first.expire_session)
            await eventually(lambda: not first.controller.is_active, what="step down")
            await eventually(lambda: len(active(brokers)) == 1, what="a new controller")
            assert active(brokers)[0].controller.epoch > epoch
        finally:
            await stop_all(brokers)

    asyncio.run(scenario())


async def _create_topic(store: ZkClusterStore, topic: str, partitions: int, rf: int) -> None:
    ids = await store.broker_ids()
    replicas = assign_replicas([BrokerInfo(i) for i in ids], partitions, rf, start_index=0)
    await store.create_topic(topic, replicas)


async def _states(store: ZkClusterStore, topic: str, n: int) -> dict[int, VersionedState | None]:
    return {p: await store.partition_state(TopicPartition(topic, p)) for p in range(n)}


def test_leaders_elected_and_moved_when_a_broker_dies(zk_hosts: str) -> None:
    async def scenario() -> None:
        brokers = await start_brokers(zk_hosts, [1, 2, 3])
        by_id = {b.broker_id: b for b in brokers}
        store = brokers[0].controller.store
        try:
            await eventually(lambda: len(active(brokers)) == 1, what="a controller")
            controller = active(brokers)[0]
            await _create_topic(store, "orders", 3, 3)
            await eventually(lambda: len(controller.recorder.updates) == 3, what="initial leaders")
            states = await _states(store, "orders", 3)
            for p, vs in states.items():
                assert vs is not None
                replicas = controller.recorder.updates[TopicPartition("orders", p)].replicas
                assert vs.state.leader == replicas[0] and vs.state.leader_epoch == 0
                assert set(vs.state.isr) == {1, 2, 3}
                assert vs.state.controller_epoch == controller.controller.epoch
            # Kill a broker that is not the controller and leads a partition.
            victim = next(
                by_id[vs.state.leader]
                for vs in states.values()
                if vs is not None and vs.state.leader != controller.broker_id
            )
            await victim.stop()
            survivors = [b for b in brokers if b is not victim]

            def moved() -> bool:
                ups = controller.recorder.updates
                return all(
                    u.state.leader != victim.broker_id and victim.broker_id not in u.state.isr
                    for u in ups.values()
                )

            await eventually(moved, what="leaders moved off the dead broker")
            after = await _states(store, "orders", 3)
            for p in range(3):
                before_vs, after_vs = states[p], after[p]
                assert before_vs is not None and after_vs is not None
                assert after_vs.state.leader in {b.broker_id for b in survivors}
                assert after_vs.state.leader_epoch == before_vs.state.leader_epoch + 1
                assert victim.broker_id not in after_vs.state.isr
            # The victim returns: it is not in any ISR, so nothing changes for the leaders.
            back = await TestBroker(zk_hosts, victim.broker_id).start()
            brokers.append(back)
            await controller.controller.sync()
            await asyncio.sleep(0.3)
            await controller.controller.sync()
            assert await _states(store, "orders", 3) == after
        finally:
            await stop_all(brokers)

    asyncio.run(scenario())


def test_last_isr_member_dies_partition_goes_offline_then_recovers(zk_hosts: str) -> None:
    async def scenario() -> None:
        brokers = await start_brokers(zk_hosts, [1, 2])
        store = brokers[0].controller.store
        try:
            await eventually(lambda: len(active(brokers)) == 1, what="a controller")
            controller = active(brokers)[0]
            other = next(b for b in brokers if b is not controller)
            # A single-replica partition on the non-controller broker.
            await store.create_topic("solo", {0: (other.broker_id,)})
            tp = TopicPartition("solo", 0)
            await eventually(lambda: tp in controller.recorder.updates, what="leader")
            await other.stop()
            await eventually(
                lambda: controller.recorder.updates[tp].state.leader == NO_LEADER,
                what="offline",
            )
            offline = controller.recorder.updates[tp].state
            assert offline.isr == (other.broker_id,)  # kept: it holds every committed record
            back = await TestBroker(zk_hosts, other.broker_id).start()
            brokers.append(back)
            await eventually(
                lambda: controller.recorder.updates[tp].state.leader == other.broker_id,
                what="back online",
            )
            assert controller.recorder.updates[tp].state.leader_epoch == offline.leader_epoch + 1
        finally:
            await stop_all(brokers)

    asyncio.run(scenario())


def test_controller_failover_keeps_partition_states(zk_hosts: str) -> None:
    async def scenario() -> None:
        brokers = await start_brokers(zk_hosts, [1, 2, 3])
        store = brokers[0].controller.store
        try:
            await eventually(lambda: len(active(brokers)) == 1, what="a controller")
            first = active(brokers)[0]
            await _create_topic(store, "events", 6, 2)
            await eventually(lambda: len(first.recorder.updates) == 6, what="leaders")
            await first.stop()
            await eventually(lambda: len(active(brokers)) == 1, what="new controller")
            second = active(brokers)[0]
            await eventually(lambda: len(second.recorder.updates) == 6, what="snapshot")
            # Partitions led by the old controller moved; every state carries a live leader.
            live = {b.broker_id for b in brokers if not b.stopped}
            for update in second.recorder.updates.values():
                assert update.state.leader in live
                assert first.broker_id not in update.state.isr
        finally:
            await stop_all(brokers)

    asyncio.run(scenario())


def test_controlled_shutdown_and_preferred_election(zk_hosts: str) -> None:
    async def scenario() -> None:
        brokers = await start_brokers(zk_hosts, [1, 2, 3])
        store = brokers[0].controller.store
        try:
            await eventually(lambda: len(active(brokers)) == 1, what="a controller")
            controller = active(brokers)[0]
            leaving = next(b for b in brokers if b is not controller)
            await _create_topic(store, "jobs", 6, 3)
            await eventually(lambda: len(controller.recorder.updates) == 6, what="leaders")
            remaining = await controller.controller.controlled_shutdown(leaving.broker_id)
            assert remaining == set()
            for update in controller.recorder.updates.values():
                assert update.state.leader != leaving.broker_id
                assert leaving.broker_id not in update.state.isr
            await leaving.stop()
            # The broker comes back and (in a real cluster) catches up and rejoins the ISRs;
            # here a leader puts it back with its own compare-and-set.
            back = await TestBroker(zk_hosts, leaving.broker_id).start()
            brokers.append(back)
            await controller.controller.sync()
            for tp in list(controller.recorder.updates):
                vs = await store.partition_state(tp)
                assert vs is not None
                grown = L.PartitionState(
                    vs.state.leader,
                    vs.state.leader_epoch,
                    (*vs.state.isr, leaving.broker_id),
                    vs.state.controller_epoch,
                )
                await store.update_partition_state(tp, grown, vs.version)
            await store.notify_isr_change(controller.recorder.updates)
            await eventually(
                lambda: all(
                    leaving.broker_id in u.state.isr for u in controller.recorder.updates.values()
                ),
                what="ISR change notification handled",
            )
            # An admin asks for a preferred replica election through ZooKeeper.
            await store.request_preferred_election(controller.recorder.updates)

            def preferred() -> bool:
                return all(
                    u.state.leader == u.replicas[0] for u in controller.recorder.updates.values()
                )

            await eventually(preferred, what="preferred leaders")
            await controller.controller.sync()
            assert await controller.client.exists(L.PREFERRED_REPLICA_ELECTION) is None
        finally:
            await stop_all(brokers)

    asyncio.run(scenario())


def test_topic_deletion_and_added_partitions(zk_hosts: str) -> None:
    async def scenario() -> None:
        brokers = await start_brokers(zk_hosts, [1, 2])
        store = brokers[0].controller.store
        try:
            await eventually(lambda: len(active(brokers)) == 1, what="a controller")
            controller = active(brokers)[0]
            await _create_topic(store, "grow", 2, 2)
            await eventually(lambda: len(controller.recorder.updates) == 2, what="leaders")
            assignment = await store.topic_assignment("grow")
            assert assignment is not None
            added = assign_added_partitions(
                [BrokerInfo(1), BrokerInfo(2)], assignment.partitions, 4
            )
            grown = L.TopicAssignment({**assignment.partitions, **added}, assignment.topic_id)
            await store.set_topic_assignment("grow", grown)
            await eventually(lambda: len(controller.recorder.updates) == 4, what="new partitions")
            await store.mark_topic_for_deletion("grow")
            await eventually(lambda: "grow" in controller.recorder.deleted, what="deleted")
            assert await store.topics() == []
            assert await store.topics_marked_for_deletion() == []
        finally:
            await stop_all(brokers)

    asyncio.run(scenario())


def test_controller_write_conflicting_with_a_leader_isr_change_is_redone(zk_hosts: str) -> None:
    async def scenario() -> None:
        brokers = await start_brokers(zk_hosts, [1, 2, 3])
        store = brokers[0].controller.store
        try:
            await eventually(lambda: len(active(brokers)) == 1, what="a controller")
            controller = active(brokers)[0]
            followers = [b for b in brokers if b is not controller]
            # Partition led by the controller's broker, followed by the two others.
            replicas = (controller.broker_id, *(b.broker_id for b in followers))
            await store.create_topic("cas", {0: replicas})
            tp = TopicPartition("cas", 0)
            await eventually(lambda: tp in controller.recorder.updates, what="leader")
            # The leader drops the first follower from the ISR behind the controller's back
            # (no notification), so the controller's cached znode version is stale.
            vs = await store.partition_state(tp)
            assert vs is not None
            shrunk = L.PartitionState(
                vs.state.leader,
                vs.state.leader_epoch,
                tuple(r for r in vs.state.isr if r != followers[0].broker_id),
                vs.state.controller_epoch,
            )
            await store.update_partition_state(tp, shrunk, vs.version)
            # The second follower dies: the controller's first write loses the CAS, it
            # re-reads, and decides again from the leader's ISR.
            await followers[1].stop()
            await eventually(
                lambda: controller.recorder.updates[tp].state.isr == (controller.broker_id,),
                what="ISR shrunk from the fresh state",
            )
            final = await store.partition_state(tp)
            assert final is not None
            assert final.state.leader == controller.broker_id
            assert final.state.leader_epoch == shrunk.leader_epoch + 1
            assert final.version == vs.version + 2
        finally:
            await stop_all(brokers)

    asyncio.run(scenario())


def test_stale_controller_is_fenced_and_runs_again(zk_hosts: str) -> None:
    async def scenario() -> None:
        brokers = await start_brokers(zk_hosts, [1])
        store = brokers[0].controller.store
        controller = brokers[0]
        try:
            await eventually(lambda: controller.controller.is_active, what="a controller")
            assert controller.controller.epoch == 1
            # Someone else bumps the epoch (as a newer controller would): the next write by
            # this controller fails its fence, it resigns and runs for election again.
            await controller.client.set(L.CONTROLLER_EPOCH, L.encode_controller_epoch(7))
            await store.create_topic("fenced", {0: (1,)})
            await eventually(
                lambda: controller.controller.is_active and controller.controller.epoch == 8,
                what="re-elected with a newer epoch",
            )
            tp = TopicPartition("fenced", 0)
            await eventually(lambda: tp in controller.recorder.updates, what="leader")
            assert controller.recorder.updates[tp].state.controller_epoch == 8
        finally:
            await stop_all(brokers)

    asyncio.run(scenario())
