"""A leader with records no follower has is cut off; it comes back and truncates them.

Three `strom serve` brokers and a private ZooKeeper whose tick allows 8 s sessions, so the
followers can be paused (SIGSTOP) for a moment without losing their sessions. An RF=3
partition (min.insync.replicas=2) led by a broker that is not the controller, with a
replica.lag.time.max.ms long enough that the ISR cannot shrink during the pause:

1. records committed with acks=all (every replica has them);
2. both followers paused; the leader takes a batch with acks=1 that only it has (the divergent
   suffix), then is killed with kill -9; the followers resume;
3. the controller elects one of the followers (both in the ISR) with a new leader epoch, which
   takes more records with acks=all;
4. the old leader restarts: as a follower of the new epoch it truncates the divergent suffix
   (OffsetsForLeaderEpoch) and rejoins the ISR;
5. a preferred election (confluent AdminClient.elect_leaders) moves leadership back to it.

Read through it, the partition holds exactly the acks=all records, in order at consecutive
offsets, and none of the acks=1 ones; after a clean stop the three replicas' segment files hold
the same records at the same offsets with the same leader epochs.

Nothing is timed: every wait polls a condition up to a generous deadline. One pause is a
precondition rather than a check: after SIGSTOP the test waits a few follower fetch waits
(replica.fetch.wait.max.ms=100) so that no fetch is parked at the leader when the acks=1 batch
arrives (a parked fetch would carry the batch into a paused follower's socket buffer).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka as ck
import pytest
from confluent_kafka import ElectionType
from integration.kafka_wire import (
    RawRecord,
    parse_produce_v3,
    produce_request_v3,
    record_batch,
    roundtrip,
)
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from .replica_files import replica_records
from .test_cluster_failover import active_controller, create_assigned, partition0
from .test_replicated_cluster import Cluster, full_isr, produce_some, wait_for
from .zk_server import ZooKeeperServer, zookeeper_available

pytestmark = pytest.mark.cluster

TOPIC = "div"
SESSION_TIMEOUT_MS = 8000
FETCH_WAIT_MS = 100


@pytest.fixture
def zk_server(tmp_path: Path) -> Iterator[ZooKeeperServer]:
    reason = zookeeper_available()
    if reason:
        pytest.skip(reason)
    # A 400 ms tick lets sessions last up to 8 s (20 ticks).
    server = ZooKeeperServer(tmp_path / "zk", tick_ms=400)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster(zk_server: ZooKeeperServer, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_server.hosts)
    for broker in c.brokers.values():
        broker.sets["zookeeper.session.timeout.ms"] = str(SESSION_TIMEOUT_MS)
        broker.sets["replica.lag.time.max.ms"] = "60000"
        broker.sets["replica.fetch.wait.max.ms"] = str(FETCH_WAIT_MS)
    try:
        c.start()
        yield c
    finally:
        for broker in c.brokers.values():
            if broker.is_alive():  # a paused broker must run to stop
                os.kill(broker.pid, signal.SIGCONT)
        c.stop()


@pytest.fixture
def zk(zk_server: ZooKeeperServer) -> Iterator[KazooClient]:
    client = KazooClient(hosts=zk_server.hosts)
    client.start(timeout=30)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def produce_acks_1(host: str, port: int, values: list[bytes]) -> tuple[int, int]:
    """One batch with acks=1 straight to `host:port`: (error code, base offset)."""
    batch = record_batch([RawRecord(None, v) for v in values])
    with socket.create_connection((host, port), timeout=10) as sock:
        payload = roundtrip(sock, produce_request_v3(TOPIC, 0, batch, acks=1))
    _, (result,) = parse_produce_v3(payload)
    return result.error_code, result.base_offset


def read_partition(bootstrap: str, end: int) -> list[tuple[int, bytes]]:
    """(offset, value) of partition 0 from offset 0 up to `end` (the high watermark)."""
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "div-verify",
            "enable.auto.commit": False,
        }
    )
    got: list[tuple[int, bytes]] = []
    try:
        consumer.assign([ck.TopicPartition(TOPIC, 0, 0)])
        deadline = time.monotonic() + 60
        while not got or got[-1][0] + 1 < end:
            assert time.monotonic() < deadline, f"read only {len(got)} records of {end}"
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append((msg.offset(), bytes(msg.value())))
    finally:
        consumer.close()
    return got


def high_watermark(bootstrap: str) -> int:
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "div-verify"})
    try:
        _, high = consumer.get_watermark_offsets(ck.TopicPartition(TOPIC, 0), timeout=30)
        return int(high)
    finally:
        consumer.close()


def producer(bootstrap: str) -> ck.Producer:
    return ck.Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 60000,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )


def test_old_leader_truncates_its_divergent_suffix(cluster: Cluster, zk: KazooClient) -> None:
    controller = wait_for("a controller", lambda: active_controller(zk))
    old_leader = next(i for i in (1, 2, 3) if i != controller)
    other = next(i for i in (1, 2, 3) if i not in (old_leader, controller))
    followers = [other, controller]
    create_assigned(cluster, TOPIC, [old_leader, other, controller])
    before = partition0(cluster, TOPIC)
    assert before.leader == old_leader

    # 1. Committed on every replica.
    acked: list[int] = []
    first = producer(cluster.bootstrap())
    produce_some(first, TOPIC, range(0, 100), acked)
    assert first.flush(30) == 0
    assert sorted(acked) == list(range(100))
    assert full_isr(cluster, TOPIC, 1)

    # 2. The divergent suffix: only the leader has it.
    leader = cluster.brokers[old_leader]
    for i in followers:
        os.kill(cluster.brokers[i].pid, signal.SIGSTOP)
    try:
        time.sleep(5 * FETCH_WAIT_MS / 1000)  # a precondition, see the module docstring
        divergent = [f"divergent-{n}".encode() for n in range(30)]
        assert produce_acks_1(leader.host, leader.port, divergent) == (0, 100)
        leader.kill9()
    finally:
        for i in followers:
            os.kill(cluster.brokers[i].pid, signal.SIGCONT)

    # 3. A follower takes over with a newer epoch and takes acks=all writes.
    elected = wait_for(
        "a follower elected",
        lambda: (p := partition0(cluster, TOPIC, exclude={old_leader})) and p.leader in followers,
    )
    assert elected
    second = producer(cluster.bootstrap(exclude={old_leader}))
    produce_some(second, TOPIC, range(100, 200), acked)
    assert second.flush(60) == 0
    assert sorted(acked) == list(range(200))

    # 4. The old leader returns, truncates and rejoins the ISR.
    leader.start().wait_ready()
    wait_for("the old leader back in the ISR", lambda: full_isr(cluster, TOPIC, 1))
    assert f"{TOPIC}-0: truncating from 130 to 100" in leader.log_text_since_last_start()

    # 5. Leadership back to the old leader (the preferred replica).
    admin = cluster.admin()
    tp = ck.TopicPartition(TOPIC, 0)
    result = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=30)
    assert result[tp] is None, f"election failed: {result[tp]}"
    wait_for(
        "the old leader leading again",
        lambda: partition0(cluster, TOPIC).leader == old_leader,
    )
    end = high_watermark(leader.bootstrap)
    assert end == 200
    records = read_partition(leader.bootstrap, end)
    assert records == [(n, str(n).encode()) for n in range(200)]

    # The three replicas agree record for record, epochs included.
    for broker in cluster.brokers.values():
        assert broker.stop() == 0, broker.log_tail()
    copies = {i: replica_records(b.partition_dir(TOPIC, 0)) for i, b in cluster.brokers.items()}
    assert [(o, v) for o, _, v in copies[old_leader]] == records
    for i, copy in copies.items():
        assert copy == copies[old_leader], f"broker {i}'s replica differs"
    epochs = [e for _, e, _ in copies[old_leader]]
    assert epochs[99] < epochs[100], "the records after the failover carry a newer epoch"
