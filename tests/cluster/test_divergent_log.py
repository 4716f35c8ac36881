"""A leader with records no follower has is cut off; it comes back and truncates them.

Three `strom serve` brokers and a private ZooKeeper whose tick allows 8 s sessions, so the
followers can be paused (SIGSTOP) for a moment without losing their sessions. An RF=3
partition (min.insync.replicas=2) led by a broker that is not the controller, with a
replica.lag.time.max.ms long enough that the ISR cannot shrink during the pause:

1. records committed with acks=all (every replica has them), from confluent-kafka and from an
   idempotent producer on the wire;
2. both followers paused; the leader takes an idempotent batch with acks=1 that only it has
   (the divergent suffix), then is killed with kill -9; the followers resume;
3. the controller elects one of the followers (both in the ISR) with a new leader epoch, which
   takes more records with acks=all, the idempotent producer's lost sequences among them;
4. the old leader restarts: as a follower of the new epoch it truncates the divergent suffix
   (OffsetsForLeaderEpoch) and rejoins the ISR;
5. a preferred election (confluent AdminClient.elect_leaders) moves leadership back to it, and
   it takes the idempotent producer's next sequence (its producer state was cut back with the
   log).

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
from integration.broker_process import BrokerProcess
from integration.kafka_wire import parse_produce_v3, produce_request_v3, roundtrip
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from strom.protocol.records.codec import Record, build_batch

from .helpers import kazoo_session
from .replica_files import replica_records
from .test_cluster_failover import active_controller, create_assigned, partition0
from .test_replicated_cluster import Cluster, full_isr, produce_some, wait_for
from .zk_server import ZooKeeperServer, zookeeper_available

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TOPIC = "div"
NOT_LEADER_OR_FOLLOWER = 6
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
def session_timeout_ms() -> int:
    """zookeeper.session.timeout.ms of the brokers; a test may parametrize it."""
    return SESSION_TIMEOUT_MS


@pytest.fixture
def cluster(
    zk_server: ZooKeeperServer, tmp_path: Path, session_timeout_ms: int
) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_server.hosts)
    for broker in c.brokers.values():
        broker.sets["zookeeper.session.timeout.ms"] = str(session_timeout_ms)
        broker.sets["replica.lag.time.max.ms"] = "60000"
        broker.sets["replica.fetch.wait.max.ms"] = str(FETCH_WAIT_MS)
    with c.running():
        yield c


@pytest.fixture
def zk(zk_server: ZooKeeperServer) -> Iterator[KazooClient]:
    with kazoo_session(zk_server.hosts) as client:
        yield client


PRODUCER_ID = 4242  # an idempotent producer of the test's own, on the wire


def produce_raw(
    broker: BrokerProcess,
    acks: int,
    values: list[bytes],
    sequence: int,
    producer_id: int = PRODUCER_ID,
    timeout_ms: int = 30000,
) -> tuple[int, int]:
    """One idempotent batch (`producer_id`, epoch 0, first sequence `sequence`) straight to
    `broker`: (error code, base offset)."""
    now = int(time.time() * 1000)
    records = [Record(i, now, None, v) for i, v in enumerate(values)]
    batch = build_batch(records, producer_id=producer_id, producer_epoch=0, base_sequence=sequence)
    request = produce_request_v3(TOPIC, 0, batch, acks=acks, timeout_ms=timeout_ms)
    with socket.create_connection(
        (broker.host, broker.port), timeout=timeout_ms / 1000 + 10
    ) as sock:
        payload = roundtrip(sock, request)
    _, (result,) = parse_produce_v3(payload)
    return result.error_code, result.base_offset


def tagged(tag: str, count: int) -> list[bytes]:
    return [f"{tag}-{n}".encode() for n in range(count)]


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
    assert partition0(cluster, TOPIC).leader == old_leader
    leader = cluster.brokers[old_leader]
    expected: list[bytes] = []

    # 1. Committed on every replica: offsets 0-99 from confluent-kafka, 100-109 from the raw
    # idempotent producer (sequences 0-9).
    acked: list[int] = []
    first = producer(cluster.bootstrap())
    produce_some(first, TOPIC, range(0, 100), acked)
    assert first.flush(30) == 0
    assert sorted(acked) == list(range(100))
    expected += [str(n).encode() for n in range(100)]
    assert produce_raw(leader, -1, tagged("committed", 10), 0) == (0, 100)
    expected += tagged("committed", 10)
    assert full_isr(cluster, TOPIC, 1)

    # 2. The divergent suffix, offsets 110-139 (sequences 10-39): only the leader has it.
    for i in followers:
        os.kill(cluster.brokers[i].pid, signal.SIGSTOP)
    try:
        time.sleep(5 * FETCH_WAIT_MS / 1000)  # a precondition, see the module docstring
        assert produce_raw(leader, 1, tagged("divergent", 30), 10) == (0, 110)
        leader.kill9()
    finally:
        for i in followers:
            os.kill(cluster.brokers[i].pid, signal.SIGCONT)

    # 3. A follower takes over with a newer epoch and takes acks=all writes: the idempotent
    # producer's sequences 10-19 again (its state there ends at 9), then confluent-kafka's.
    new_leader = wait_for(
        "a follower elected",
        lambda: (
            (p := partition0(cluster, TOPIC, exclude={old_leader}))
            and p.leader in followers
            and p.leader
        ),
    )
    assert produce_raw(cluster.brokers[new_leader], -1, tagged("retried", 10), 10) == (0, 110)
    expected += tagged("retried", 10)
    second = producer(cluster.bootstrap(exclude={old_leader}))
    produce_some(second, TOPIC, range(100, 200), acked)
    assert second.flush(60) == 0
    assert sorted(acked) == list(range(200))
    expected += [str(n).encode() for n in range(100, 200)]

    # 4. The old leader returns, truncates and rejoins the ISR.
    leader.start().wait_ready()
    wait_for("the old leader back in the ISR", lambda: full_isr(cluster, TOPIC, 1))
    assert f"{TOPIC}-0: truncating from 140 to 110" in leader.log_text_since_last_start()

    # 5. Leadership back to the old leader (the preferred replica).
    admin = cluster.admin()
    tp = ck.TopicPartition(TOPIC, 0)
    result = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=30)
    assert result[tp] is None, f"election failed: {result[tp]}"
    wait_for(
        "the old leader leading again",
        lambda: partition0(cluster, TOPIC).leader == old_leader,
    )
    # Its producer state went back with the log: sequence 20 follows 19, not 39.
    assert produce_raw(leader, -1, tagged("after", 10), 20) == (0, 220)
    expected += tagged("after", 10)

    end = high_watermark(leader.bootstrap)
    assert end == len(expected) == 230
    records = read_partition(leader.bootstrap, end)
    assert records == list(enumerate(expected))

    # The three replicas agree record for record, epochs included.
    for broker in cluster.brokers.values():
        assert broker.stop() == 0, broker.log_tail()
    copies = {i: replica_records(b.partition_dir(TOPIC, 0)) for i, b in cluster.brokers.items()}
    assert [(o, v) for o, _, v in copies[old_leader]] == records
    for i, copy in copies.items():
        assert copy == copies[old_leader], f"broker {i}'s replica differs"
    epochs = [e for _, e, _ in copies[old_leader]]
    assert epochs[109] < epochs[110] < epochs[220], "each leader stamps its own epoch"


@pytest.mark.parametrize("session_timeout_ms", [4000])
def test_a_paused_leader_returns_as_a_zombie_and_is_fenced(
    cluster: Cluster, zk: KazooClient
) -> None:
    """A leader paused (SIGSTOP) past its ZooKeeper session is replaced; resumed, it still
    believes it leads. It must not acknowledge acks=all (its old followers follow the new
    leader), whatever it took with acks=1 is cut when it learns, and it rejoins as a follower."""
    controller = wait_for("a controller", lambda: active_controller(zk))
    zombie_id = next(i for i in (1, 2, 3) if i != controller)
    other = next(i for i in (1, 2, 3) if i not in (zombie_id, controller))
    create_assigned(cluster, TOPIC, [zombie_id, other, controller])
    zombie = cluster.brokers[zombie_id]
    acked: list[int] = []
    first = producer(cluster.bootstrap())
    produce_some(first, TOPIC, range(0, 100), acked)
    assert first.flush(30) == 0

    os.kill(zombie.pid, signal.SIGSTOP)
    try:
        wait_for(
            "a new leader while the old one is paused",
            lambda: partition0(cluster, TOPIC, exclude={zombie_id}).leader in (other, controller),
        )
        second = producer(cluster.bootstrap(exclude={zombie_id}))
        produce_some(second, TOPIC, range(100, 200), acked)
        assert second.flush(60) == 0
    finally:
        os.kill(zombie.pid, signal.SIGCONT)
    # At once, before it may have heard of the new leader.
    code_all, _ = produce_raw(zombie, -1, tagged("zombie-all", 5), 0, 7001, timeout_ms=10000)
    assert code_all != 0, "a replaced leader acknowledged acks=all"
    code_one, _ = produce_raw(zombie, 1, tagged("zombie-one", 5), 0, 7002)
    assert code_one in (0, NOT_LEADER_OR_FOLLOWER)

    wait_for("the old leader back in the ISR", lambda: full_isr(cluster, TOPIC, 1))
    assert sorted(acked) == list(range(200))
    end = high_watermark(cluster.bootstrap())
    assert end == 200
    records = read_partition(cluster.bootstrap(), end)
    assert records == [(n, str(n).encode()) for n in range(200)]
    for broker in cluster.brokers.values():
        assert broker.stop() == 0, broker.log_tail()
    copies = {i: replica_records(b.partition_dir(TOPIC, 0)) for i, b in cluster.brokers.items()}
    for i, copy in copies.items():
        assert [(o, v) for o, _, v in copy] == records, f"broker {i}'s replica differs"
