"""ReplicaManager (server/replica_manager.py) acting on partition states as the controller
writes them: leader and follower transitions, the leader epoch stamped in the log, acks=all
waiting for the ISR, stale states ignored, a partition no longer assigned here deleted.

A real cluster-mode broker on a temporary directory, without ZooKeeper (see
cluster_broker_helpers.py); followers are played by Fetch requests to its follower-fetch path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_broker_helpers import EPOCH, TOPIC, Leader, close, open_leader

from strom.cluster.zk.layout import BrokerRegistration, Endpoint, TopicAssignment
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.produce_response import (
    PartitionProduceResponse,
    ProduceResponse,
    TopicProduceResponse,
)
from strom.replication.fetcher import LeaderEndpoint

KEY = (TOPIC, 0)


@pytest.fixture
def leader(tmp_path: Path) -> Iterator[Leader]:
    lead = open_leader(tmp_path)
    yield lead
    close(lead)


def register(lead: Leader, broker_id: int, port: int) -> None:
    lead.metadata.brokers[broker_id] = BrokerRegistration(
        broker_id, (Endpoint("PLAINTEXT", "127.0.0.1", port),)
    )


def test_the_leader_stamps_its_epoch_at_the_log_end(leader: Leader) -> None:
    assert leader.replicas.is_leader(TOPIC, 0)
    assert leader.replicas.leader_epoch(TOPIC, 0) == EPOCH
    assert leader.log.end_offset_for_epoch(EPOCH) == (EPOCH, 0)
    leader.append(3)
    # A newer epoch for the same leader starts where the log ends now.
    leader.set_state(1, EPOCH + 2)
    assert leader.log.end_offset_for_epoch(EPOCH) == (EPOCH, 3)
    assert leader.log.end_offset_for_epoch(EPOCH + 2) == (EPOCH + 2, 3)
    # A stale state (an older epoch arriving late) changes nothing.
    leader.set_state(2, EPOCH + 1)
    assert leader.replicas.is_leader(TOPIC, 0)
    assert leader.replicas.leader_epoch(TOPIC, 0) == EPOCH + 2


def test_acks_all_waits_for_every_replica_in_the_isr(leader: Leader) -> None:
    async def scenario() -> None:
        assert leader.replicas.check_produce(TOPIC, 0, -1) == ErrorCode.NONE
        last = leader.append(4)
        partition = PartitionProduceResponse(index=0)
        response = ProduceResponse([TopicProduceResponse(TOPIC, [partition])])
        waiting = asyncio.create_task(
            leader.replicas.await_acks_all(30_000, response, [(partition, leader.log, last)])
        )
        await leader.fetch_async(2, last + 1)
        await asyncio.sleep(0.05)
        assert not waiting.done()  # replica 3 is in the ISR and has nothing yet
        await leader.fetch_async(3, last + 1)
        done, _ = await asyncio.wait({waiting}, timeout=10)
        assert done, "acks=all did not complete once the ISR had the records"
        assert partition.error_code == ErrorCode.NONE
        assert leader.log.high_watermark == last + 1

    asyncio.run(scenario())


def test_min_insync_replicas_is_checked_before_the_append(leader: Leader) -> None:
    leader.set_state(1, EPOCH, isr=(1,))
    leader.replicas.states[KEY].set_min_insync_replicas(2)
    assert leader.replicas.check_produce(TOPIC, 0, -1) == ErrorCode.NOT_ENOUGH_REPLICAS
    assert leader.replicas.check_produce(TOPIC, 0, 1) == ErrorCode.NONE


def test_leadership_moves_away_and_back(leader: Leader) -> None:
    async def scenario() -> None:
        register(leader, 2, 1)  # nobody listens there: the fetcher only backs off
        last = leader.append(2)
        partition = PartitionProduceResponse(index=0)
        response = ProduceResponse([TopicProduceResponse(TOPIC, [partition])])
        waiting = asyncio.create_task(
            leader.replicas.await_acks_all(30_000, response, [(partition, leader.log, last)])
        )
        await asyncio.sleep(0.05)
        leader.set_state(2, EPOCH + 1)
        done, _ = await asyncio.wait({waiting}, timeout=10)
        assert done, "a waiting acks=all produce did not hear that leadership moved"
        assert partition.error_code == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert not leader.replicas.is_leader(TOPIC, 0)
        assert leader.replicas.check_produce(TOPIC, 0, 1) == ErrorCode.NOT_LEADER_OR_FOLLOWER
        assert leader.replicas.following[KEY] == LeaderEndpoint(2, "127.0.0.1", 1)
        fetcher = leader.replicas.fetchers.fetchers[LeaderEndpoint(2, "127.0.0.1", 1)]
        assert fetcher.partitions == [KEY]
        # Back to this broker with a newer epoch: no longer fetched, epoch stamped.
        leader.set_state(1, EPOCH + 2)
        assert leader.replicas.is_leader(TOPIC, 0)
        assert KEY not in leader.replicas.following
        assert fetcher.partitions == []
        assert leader.log.end_offset_for_epoch(EPOCH + 2) == (EPOCH + 2, 2)
        await leader.replicas.fetchers.stop()

    asyncio.run(scenario())


def test_a_follower_waits_for_its_leader_to_register(leader: Leader) -> None:
    async def scenario() -> None:
        leader.set_state(3, EPOCH + 1)  # broker 3 is not registered (yet)
        assert KEY not in leader.replicas.following
        register(leader, 3, 1)
        leader.replicas.brokers_changed()
        assert leader.replicas.following[KEY] == LeaderEndpoint(3, "127.0.0.1", 1)
        await leader.replicas.fetchers.stop()

    asyncio.run(scenario())


def test_a_broker_in_controlled_shutdown_follows_nothing(leader: Leader) -> None:
    async def scenario() -> None:
        register(leader, 2, 1)
        leader.set_state(2, EPOCH + 1)
        fetcher = leader.replicas.fetchers.fetchers[LeaderEndpoint(2, "127.0.0.1", 1)]
        assert fetcher.partitions == [KEY]
        leader.replicas.stop_following()
        assert fetcher.partitions == [] and KEY not in leader.replicas.following
        # A later decision (a new leader epoch, a leader registering) starts nothing either:
        # a leader that got fetches from it would take it back into the ISR.
        leader.set_state(2, EPOCH + 2)
        leader.replicas.brokers_changed()
        assert KEY not in leader.replicas.following
        assert all(not f.partitions for f in leader.replicas.fetchers.fetchers.values())
        await leader.replicas.fetchers.stop()

    asyncio.run(scenario())


def test_a_partition_no_longer_assigned_here_is_deleted(leader: Leader) -> None:
    leader.append(1)
    directory = leader.log.directory
    assert directory.exists()
    topic_id = leader.metadata.assignments[TOPIC].topic_id
    leader.metadata.assignments[TOPIC] = TopicAssignment({0: (2, 3, 4)}, topic_id)
    leader.set_state(2, EPOCH + 1, isr=(2, 3, 4))
    assert KEY not in leader.replicas.states
    assert leader.broker.logs.get(TOPIC, 0) is None
    assert not directory.exists()
    assert leader.replicas.check_produce(TOPIC, 0, 1) == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert KEY not in set(leader.broker.logs.partitions())
