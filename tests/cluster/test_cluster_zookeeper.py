"""ZooKeeper's own failure and return, and sessions expiring (three `strom serve` processes).

The brokers reach ZooKeeper through a `TcpProxy` (tcp_proxy.py), so a test can make it
unreachable without stopping it; ZooKeeper itself is a private server the test can stop and
start again on the same port and data directory.

- ZooKeeper stopped briefly: acks=all (min.insync.replicas=2, full ISR) and a consumer group
  keep working while it is down; it comes back with the brokers' sessions intact, and a leader
  killed afterwards still fails over (the controller works) with no acknowledged record lost.
- ZooKeeper stopped for longer than the session timeout (and unreachable until the restarted
  server has expired the brokers' sessions): admin writes meanwhile (CreateTopics,
  AlterPartitionReassignments) answer REQUEST_TIMED_OUT; every broker opens a new session, registers
  again, exactly one controller is elected, every broker's Metadata lists all brokers and
  leaders, produce and consume work, and a later leader kill fails over.
- The controller's own session expires (SIGSTOP for longer than the session timeout, as in a
  long GC pause): another broker becomes controller with a higher epoch and leads its
  partitions; after SIGCONT the paused broker does not act as controller again, registers
  with a new session and rejoins the ISR of its partitions; no acknowledged record is lost.

Nothing is timed: every wait polls a condition up to a generous deadline. (Two sleeps are
part of the scenarios: ZooKeeper down for longer than a session timeout, a broker paused.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from integration.broker_process import BrokerProcess
from integration.kafka_wire import frame, request_header, roundtrip
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from strom.cluster.zk.layout import BrokerRegistration, Endpoint
from strom.protocol.messages.alter_partition_reassignments_request import (
    AlterPartitionReassignmentsRequest,
    ReassignablePartition,
    ReassignableTopic,
)
from strom.protocol.messages.alter_partition_reassignments_response import (
    AlterPartitionReassignmentsResponse,
)

from .tcp_proxy import TcpProxy
from .test_cluster_failover import active_controller
from .test_replicated_cluster import Cluster, full_isr, wait_for
from .zk_server import ZooKeeperServer

pytestmark = pytest.mark.cluster

# The test ZooKeeper's tick (200 ms) caps sessions at 20 ticks.
SESSION_TIMEOUT_MS = 4000
# ZooKeeper down briefly: a restarted server gives the sessions it restores a full timeout
# from its own start, so the brokers' sessions survive when they reconnect within it. Under a
# heavy load that took a broker more than 4 s; this many leaves a wide margin (the server's
# cap is raised to match).
BRIEF_SESSION_TIMEOUT_MS = 10_000
LAG_MAX_MS = 2000
IDS = (1, 2, 3)
REQUEST_TIMED_OUT = 7


class Setup:
    def __init__(
        self,
        server: ZooKeeperServer,
        proxy: TcpProxy,
        chroot: str,
        root: Path,
        session_timeout_ms: int = SESSION_TIMEOUT_MS,
    ):
        self.server = server
        self.proxy = proxy
        self.chroot = chroot
        self.cluster = Cluster(root, proxy.hosts(chroot))
        for broker in self.cluster.brokers.values():
            broker.sets["zookeeper.session.timeout.ms"] = str(session_timeout_ms)
            broker.sets["replica.lag.time.max.ms"] = str(LAG_MAX_MS)
        # The test's own view of ZooKeeper, never through the proxy.
        self.zk = KazooClient(hosts=server.hosts + chroot)


@pytest.fixture
def setup(
    zk_server_factory: Callable[..., ZooKeeperServer],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Setup]:
    """The cluster behind a proxy; the brokers' session timeout is SESSION_TIMEOUT_MS unless a
    test parametrizes this fixture (indirect) with another."""
    session_timeout_ms: int = getattr(request, "param", SESSION_TIMEOUT_MS)
    server = zk_server_factory(max_session_timeout_ms=max(session_timeout_ms, SESSION_TIMEOUT_MS))
    chroot = f"/strom-{uuid.uuid4().hex[:12]}"
    boot = KazooClient(hosts=server.hosts)
    boot.start(timeout=30)
    try:
        boot.ensure_path(chroot)
    finally:
        boot.stop()
        boot.close()
    proxy = TcpProxy(server.port)
    s = Setup(server, proxy, chroot, tmp_path, session_timeout_ms)
    try:
        s.zk.start(timeout=30)
        s.cluster.start()
        # Ready (listening) is not started: wait until every broker knows the controller, or
        # an admin client asking too early may wait for one in vain.
        wait_for(
            "every broker naming the controller",
            lambda: (c := active_controller(s.zk)) and metadata_names(s.cluster, c),
        )
        yield s
    except BaseException:
        print(s.cluster.log_tails())
        raise
    finally:
        for broker in s.cluster.brokers.values():
            if broker.is_alive():  # a paused broker must run to stop
                os.kill(broker.pid, signal.SIGCONT)
        proxy.restore()
        if s.server.process is None:
            s.server.start()
        s.cluster.stop()
        s.zk.stop()
        s.zk.close()
        proxy.close()


# --- what ZooKeeper says ----------------------------------------------------------------


def registrations(zk: KazooClient) -> dict[int, int]:
    """Registered broker ids with the session that owns each registration."""
    out: dict[int, int] = {}
    for child in zk.get_children("/brokers/ids"):
        stat = zk.exists(f"/brokers/ids/{child}")
        if stat is not None:
            out[int(child)] = stat.ephemeralOwner
    return out


def controller_epoch(zk: KazooClient) -> int:
    data, _ = zk.get("/controller_epoch")
    return int(data)


def partition_state(zk: KazooClient, topic: str, partition: int) -> dict[str, Any]:
    data, _ = zk.get(f"/brokers/topics/{topic}/partitions/{partition}/state")
    state: dict[str, Any] = json.loads(data)
    return state


# --- what the brokers say ---------------------------------------------------------------


def acting_controllers(cluster: Cluster) -> list[int]:
    """Brokers whose log's last word on the controller role is that they took it."""
    acting = []
    for broker_id, broker in cluster.brokers.items():
        if not broker.is_alive():
            continue
        text = broker.log_text_since_last_start()
        last = None
        for m in re.finditer(r"broker \d+ (is the controller|resigns as controller)", text):
            last = m.group(1)
        if last == "is the controller":
            acting.append(broker_id)
    return acting


def metadata_names(cluster: Cluster, controller: int) -> bool:
    for broker in cluster.brokers.values():
        md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=5)
        if sorted(md.brokers) != list(IDS) or md.controller_id != controller:
            return False
    return True


def metadata_complete(cluster: Cluster, topic: str, partitions: int, controller: int) -> bool:
    """Every broker lists all brokers, names `controller`, and a live leader per partition."""
    for broker in cluster.brokers.values():
        md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=5)
        if sorted(md.brokers) != list(IDS) or md.controller_id != controller:
            return False
        found = md.topics.get(topic)
        if found is None or found.error is not None or len(found.partitions) != partitions:
            return False
        if any(p.leader not in IDS for p in found.partitions.values()):
            return False
    return True


def leader_of(cluster: Cluster, topic: str, partition: int, exclude: set[int] | None = None) -> Any:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap(exclude)})
    return admin.list_topics(topic, timeout=5).topics[topic].partitions[partition]


# --- producing and reading back ---------------------------------------------------------


def idempotent_producer(bootstrap: str) -> ck.Producer:
    return ck.Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 60000,
            # A paused leader answers nothing: give up on requests in flight to it sooner
            # than the default 60 s and retry them with the new leader (the same sequence
            # numbers, so nothing is written twice).
            "socket.timeout.ms": 5000,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )


def produce(
    producer: ck.Producer, topic: str, partition: int, values: range, acked: list[int]
) -> None:
    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            acked.append(int(msg.value()))

    for v in values:
        while True:
            try:
                producer.produce(topic, str(v).encode(), partition=partition, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)


def read_partition(bootstrap: str, topic: str, partition: int, expected: int) -> list[int]:
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    got: list[int] = []
    try:
        consumer.assign([ck.TopicPartition(topic, partition, 0)])
        end = time.monotonic() + 60
        while len(got) < expected and time.monotonic() < end:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            got.append(int(msg.value()))
    finally:
        consumer.close()
    return got


def check_read_back(cluster: Cluster, topic: str, partition: int, acked: list[int]) -> None:
    got = read_partition(cluster.bootstrap(), topic, partition, len(acked))
    assert got == sorted(got), "records out of order"
    assert len(got) == len(set(got)), "a record was read twice"
    assert set(acked) <= set(got), f"lost {sorted(set(acked) - set(got))[:10]}"


def create(cluster: Cluster, name: str, assignment: list[list[int]]) -> None:
    admin = cluster.admin()
    topic = NewTopic(
        name,
        num_partitions=len(assignment),
        replica_assignment=assignment,
        config={"min.insync.replicas": "2"},
    )
    admin.create_topics([topic], request_timeout=30)[name].result(timeout=30)
    wait_for("a full ISR", lambda: full_isr(cluster, name, len(assignment)))


def reassign_raw(broker: BrokerProcess, topic: str, partition: int, replicas: list[int]) -> int:
    """AlterPartitionReassignments v0 (flexible: header v2) to one broker; the partition's
    error code."""
    request = AlterPartitionReassignmentsRequest(
        timeout_ms=30000,
        topics=[ReassignableTopic(topic, [ReassignablePartition(partition, replicas)])],
    )
    payload = request_header(45, 0, 9, "test") + b"\x00" + request.encode(0)
    with socket.create_connection((broker.host, broker.port), timeout=60) as sock:
        answer = roundtrip(sock, frame(payload))
    # Response header v1: correlation id, then an empty tagged-field section.
    response = AlterPartitionReassignmentsResponse.decode(answer[5:], 0)
    (result,) = response.responses
    (partition_result,) = result.partitions
    return partition_result.error_code


def fail_over_leader(cluster: Cluster, topic: str, producer: ck.Producer, acked: list[int]) -> None:
    """kill -9 the leader of partition 0 while producing; a new leader from the ISR takes it."""
    # A full ISR first: with replica.lag.time.max.ms at 2 s, a follower slowed down by a busy
    # machine may just have left it (and rejoins once caught up).
    before = wait_for(
        "a full ISR before the failover",
        lambda: (p := leader_of(cluster, topic, 0)) and len(p.isrs) == 3 and p,
    )
    start = max(acked) + 1
    produce(producer, topic, 0, range(start, start + 200), acked)
    cluster.brokers[before.leader].kill9()
    produce(producer, topic, 0, range(start + 200, start + 400), acked)
    assert producer.flush(60) == 0, "the producer did not finish after the leader failover"
    new = wait_for(
        "a new leader",
        lambda: (p := leader_of(cluster, topic, 0)) and p.leader not in (-1, before.leader) and p,
    )
    assert new.leader in before.isrs
    assert len(acked) == start + 400, f"only {len(acked)} records acknowledged"


# --- the scenarios ----------------------------------------------------------------------


@pytest.mark.parametrize("setup", [BRIEF_SESSION_TIMEOUT_MS], indirect=True, ids=["session-10s"])
def test_zookeeper_down_briefly(setup: Setup) -> None:
    cluster, zk, server = setup.cluster, setup.zk, setup.server
    wait_for("a controller", lambda: active_controller(zk))
    create(cluster, "zkdown", [[1, 2, 3]])
    sessions = registrations(zk)
    assert sorted(sessions) == list(IDS)
    producer = idempotent_producer(cluster.bootstrap())
    consumer = ck.Consumer(
        {
            "bootstrap.servers": cluster.bootstrap(),
            "group.id": "zkdown-group",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    acked: list[int] = []
    consumed: list[int] = []

    def consume_until(count: int) -> bool:
        end = time.monotonic() + 60
        while len(consumed) < count and time.monotonic() < end:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                consumed.append(int(msg.value()))
        return len(consumed) >= count

    try:
        consumer.subscribe(["zkdown"])
        produce(producer, "zkdown", 0, range(0, 200), acked)
        assert producer.flush(30) == 0
        assert consume_until(200)
        consumer.commit(asynchronous=False)

        server.stop()
        # ZooKeeper is down: the leader and the ISR need nothing from it.
        produce(producer, "zkdown", 0, range(200, 400), acked)
        assert producer.flush(30) == 0, "acks=all stopped while ZooKeeper was down"
        assert len(acked) == 400
        assert consume_until(400), "the consumer stopped while ZooKeeper was down"
        committed = consumer.commit(asynchronous=False)
        assert committed is not None and committed[0].offset == 400
        assert leader_of(cluster, "zkdown", 0).leader in IDS
        server.start()
    finally:
        consumer.close()
    assert consumed == list(range(400))

    # Every broker reconnected within the restarted server's session timeout: the same
    # sessions, nothing re-registered.
    wait_for("ZooKeeper readable again", lambda: registrations(zk) or True)
    assert registrations(zk) == sessions
    wait_for("a controller", lambda: active_controller(zk))
    # The controller works again: a leader killed now fails over.
    fail_over_leader(cluster, "zkdown", producer, acked)
    check_read_back(cluster, "zkdown", 0, acked)

    # SIGTERM while ZooKeeper is down: a clean exit all the same (not killed by the harness).
    # Its session could not be closed, so its registration outlives it until the restarted
    # server expires the session; a restart meanwhile waits for that, then registers.
    leaving = next(i for i, b in cluster.brokers.items() if b.is_alive())
    broker = cluster.brokers[leaving]
    lost = broker.log_text_since_last_start().count("Zookeeper connection lost")
    server.stop()
    wait_for(
        "the broker noticing",
        lambda: broker.log_text_since_last_start().count("Zookeeper connection lost") > lost,
    )
    assert broker.stop() == 0 and not broker.stuck
    assert "controlled shutdown skipped: ZooKeeper is unreachable" in (
        broker.log_text_since_last_start()
    )
    server.start()
    broker.start().wait_ready()
    wait_for(
        "registered with a new session",
        lambda: (s := registrations(zk).get(leaving)) is not None and s != sessions[leaving],
    )


def test_zookeeper_down_longer_than_the_session_timeout(setup: Setup) -> None:
    cluster, zk, server, proxy = setup.cluster, setup.zk, setup.server, setup.proxy
    wait_for("a controller", lambda: active_controller(zk))
    create(cluster, "expire", [[1, 2, 3], [2, 3, 1]])
    old_sessions = registrations(zk)
    old_epoch = controller_epoch(zk)
    producer = idempotent_producer(cluster.bootstrap())
    acked: list[int] = []
    produce(producer, "expire", 0, range(0, 200), acked)
    assert producer.flush(30) == 0

    proxy.cut()
    produce(producer, "expire", 0, range(200, 400), acked)
    assert producer.flush(30) == 0, "acks=all stopped while ZooKeeper was unreachable"
    # An admin write cannot be done: answered once a connection timeout has passed.
    admin = cluster.admin()
    futures = admin.create_topics([NewTopic("late", 1, 3)], request_timeout=60)
    with pytest.raises(ck.KafkaException) as raised:
        futures["late"].result(timeout=60)
    assert raised.value.args[0].code() == ck.KafkaError.REQUEST_TIMED_OUT
    # So is a reassignment (its current replicas as the target: harmless if ever applied).
    # On the wire to one broker: a client would first look for the controller, which the
    # brokers' metadata may not name while ZooKeeper is away.
    replicas = list(cluster.partitions("expire")[1].replicas)
    assert reassign_raw(cluster.brokers[1], "expire", 1, replicas) == REQUEST_TIMED_OUT
    server.stop()
    time.sleep(SESSION_TIMEOUT_MS / 1000 + 1)  # down for longer than a session timeout
    server.start()
    # The restarted server restores the brokers' sessions, then expires them: the brokers
    # still cannot reach it. Their ephemeral znodes go with them.
    wait_for(
        "the brokers' sessions expired",
        lambda: not registrations(zk) and not zk.exists("/controller"),
    )
    proxy.restore()

    def reregistered() -> bool:
        now = registrations(zk)
        return sorted(now) == list(IDS) and not set(now.values()) & set(old_sessions.values())

    wait_for("every broker registered with a new session", reregistered)
    controller = wait_for("a new controller", lambda: active_controller(zk))
    assert controller_epoch(zk) > old_epoch
    wait_for(
        "every broker's Metadata complete",
        lambda: metadata_complete(cluster, "expire", 2, controller),
    )
    wait_for("one broker acting as controller", lambda: acting_controllers(cluster) == [controller])
    wait_for("a full ISR again", lambda: full_isr(cluster, "expire", 2))
    assert active_controller(zk) == controller

    produce(producer, "expire", 0, range(400, 600), acked)
    assert producer.flush(30) == 0
    fail_over_leader(cluster, "expire", producer, acked)
    check_read_back(cluster, "expire", 0, acked)


def test_controller_session_expires_during_a_long_pause(setup: Setup) -> None:
    cluster, zk = setup.cluster, setup.zk
    paused = wait_for("a controller", lambda: active_controller(zk))
    a, b = (i for i in IDS if i != paused)
    # The paused broker leads partition 0 and follows on partition 1.
    create(cluster, "gc", [[paused, a, b], [a, paused, b]])
    old_session = registrations(zk)[paused]
    old_epoch = controller_epoch(zk)
    old_p0 = partition_state(zk, "gc", 0)
    assert old_p0["leader"] == paused
    producer = idempotent_producer(cluster.bootstrap())
    acked: dict[int, list[int]] = {0: [], 1: []}
    for p in (0, 1):
        produce(producer, "gc", p, range(0, 200), acked[p])
    assert producer.flush(30) == 0

    broker = cluster.brokers[paused]
    os.kill(broker.pid, signal.SIGSTOP)
    try:
        new_controller = wait_for(
            "the paused broker's session expired and another controller",
            lambda: (
                paused not in registrations(zk)
                and (c := active_controller(zk)) not in (None, paused)
                and c
            ),
        )
        new_epoch = controller_epoch(zk)
        assert new_epoch > old_epoch
        wait_for(
            "partition 0 led elsewhere",
            lambda: leader_of(cluster, "gc", 0, exclude={paused}).leader in (a, b),
        )
        for p in (0, 1):
            produce(producer, "gc", p, range(200, 400), acked[p])
        assert producer.flush(60) == 0, "acks=all did not go on without the paused broker"
    finally:
        os.kill(broker.pid, signal.SIGCONT)

    wait_for(
        "the paused broker registered with a new session",
        lambda: (s := registrations(zk).get(paused)) is not None and s != old_session,
    )
    wait_for("it rejoins both ISRs", lambda: full_isr(cluster, "gc", 2))
    wait_for(
        "its Metadata names the new controller",
        lambda: (
            AdminClient({"bootstrap.servers": broker.bootstrap})
            .list_topics(timeout=5)
            .controller_id
            == new_controller
        ),
    )
    # It never acted as controller again: no new election, the role stays where it went.
    assert active_controller(zk) == new_controller
    assert controller_epoch(zk) == new_epoch
    assert acting_controllers(cluster) == [new_controller]
    text = broker.log_text_since_last_start()
    assert f"broker {paused} resigns as controller" in text
    assert text.count(f"broker {paused} is the controller") == 1
    # Partition 0 moved on with a newer leader epoch, written by the new controller's epoch.
    p0 = partition_state(zk, "gc", 0)
    assert p0["leader_epoch"] > old_p0["leader_epoch"]
    assert p0["controller_epoch"] >= new_epoch

    for p in (0, 1):
        produce(producer, "gc", p, range(400, 500), acked[p])
    assert producer.flush(60) == 0
    for p in (0, 1):
        assert len(acked[p]) == 500
        check_read_back(cluster, "gc", p, acked[p])

    # A clean stop after all this closes its session: the registration is gone at once, and
    # a restart registers without waiting for an older session to expire.
    assert broker.stop() == 0 and not broker.stuck
    assert zk.exists(f"/brokers/ids/{paused}") is None
    broker.start().wait_ready()
    wait_for("registered again", lambda: paused in registrations(zk))
    assert "still registered by an older ZooKeeper session" not in (
        broker.log_text_since_last_start()
    )


def test_sigterm_while_starting_closes_the_session(setup: Setup) -> None:
    """A broker stopped while it is still starting (here: waiting for its id, held by
    another session, to be free) exits cleanly and leaves nothing in ZooKeeper."""
    cluster, zk = setup.cluster, setup.zk
    holder = KazooClient(hosts=setup.server.hosts + setup.chroot)
    holder.start(timeout=30)
    try:
        taken = BrokerRegistration(4, (Endpoint("PLAINTEXT", "127.0.0.1", 1),))
        holder.create("/brokers/ids/4", taken.to_json(), ephemeral=True)
        late = BrokerProcess(
            cluster.brokers[1].workdir.parent / "broker4",
            {**cluster.brokers[1].sets, "broker.id": 4},
            name="broker4",
        )
        late.start().wait_ready()  # listening; registering waits for /brokers/ids/4
        try:
            wait_for(
                "waiting for the older registration",
                lambda: (
                    "still registered by an older ZooKeeper session"
                    in late.log_text_since_last_start()
                ),
            )
            sessions = set(registrations(zk).values())
            assert late.stop() == 0 and not late.stuck
        finally:
            late.kill9()
        assert "stop requested during start-up" in late.log_text_since_last_start()
        # The holder still owns /brokers/ids/4; nothing else changed.
        stat = zk.exists("/brokers/ids/4")
        assert stat is not None and stat.ephemeralOwner == holder.client_id[0]
        assert set(registrations(zk).values()) == sessions
    finally:
        holder.stop()
        holder.close()
