"""Consumer groups with real clients: membership changes, assignors, max.poll.interval.ms, broker
restarts, static membership and KIP-848 (issue #3).

Every member commits after processing (at-least-once); records are identified by
(topic, partition, offset). Nothing is timed: waits are loops with generous deadlines.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator

import kafka.admin as kpa
import pytest

from .broker_process import BrokerProcess
from .clients import create_topic, kp_produce, make_recs, wait_until
from .conftest import BrokerFactory
from .group_helpers import (
    GROUP_BROKER_SETS,
    GROUP_DEADLINE_S,
    TP,
    AioMember,
    CkMember,
    KpMember,
    Member,
    MemberSet,
    ProcMember,
    Producer,
    Seen,
    all_tps,
    ck_committed,
    ck_describe,
    high_watermarks,
    wait_consumed,
    wait_exclusive_ownership,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    f = BrokerFactory(tmp_path_factory.mktemp("groups"))
    try:
        yield f(GROUP_BROKER_SETS)
    finally:
        f.stop_all()


@pytest.fixture
def members() -> Iterator[MemberSet]:
    ms = MemberSet()
    try:
        yield ms
    finally:
        ms.close()


def gid() -> str:
    return f"g-{uuid.uuid4().hex[:10]}"


def test_members_join_leave_and_die_without_losing_records(
    group_broker: BrokerProcess, topic: str, members: MemberSet
) -> None:
    """Three members of three clients split 12 partitions; a fourth joins; one closes; one is
    killed -9 (its session times out). A producer writes throughout; every record is processed
    at least once and each partition has exactly one owner whenever the group is stable."""
    b = group_broker.bootstrap
    create_topic(b, topic, 12)
    everything = all_tps(topic, 12)
    g = gid()
    prod = members.producer(Producer(b, topic))

    # aiokafka only has roundrobin by default: everyone asks for it
    ck_rr = {"partition.assignment.strategy": "roundrobin"}
    kp_rr = {"partition_assignment_strategy": [_kp_assignor("roundrobin")]}
    a = members.add(CkMember("ck-a", b, g, [topic], conf=ck_rr))
    k = members.add(KpMember("kp-b", b, g, [topic], conf=kp_rr))
    o = members.add(AioMember("aio-c", b, g, [topic]))
    own = wait_exclusive_ownership([a, k, o], everything, "three members to split 12 partitions")
    assert all(len(t) == 4 for t in own.values()), f"roundrobin should give 4 each: {own}"
    desc = ck_describe(b, g)
    assert desc.partition_assignor == "roundrobin"
    assert len(desc.members) == 3

    killed = members.add(
        ProcMember(
            "ck-proc",
            b,
            g,
            [topic],
            conf={**ck_rr, "session.timeout.ms": 3000},
        )
    )
    wait_exclusive_ownership([a, k, o, killed], everything, "a fourth member to get a share")

    wait_until(lambda: killed.snapshot()[2], "the subprocess member to process records")

    k.stop()  # kafka-python closes: LeaveGroup
    wait_exclusive_ownership([a, o, killed], everything, "the group to rebalance after a leave")

    killed.kill9()  # no LeaveGroup: the broker must expire its session
    wait_exclusive_ownership([a, o], everything, "the killed member's session to expire")

    delivered = prod.stop()
    assert len(delivered) > 100, "the producer should have written records throughout"
    wait_consumed([a, k, o, killed], delivered, "every produced record to reach the group")


# ------------------------------------------------------------------------ client-side assignors


def _kp_assignor(name: str) -> object:
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

    return {
        "range": RangePartitionAssignor,
        "roundrobin": RoundRobinPartitionAssignor,
        "sticky": StickyPartitionAssignor,
        "cooperative-sticky": CooperativeStickyAssignor,
    }[name]


_aio_classes = itertools.count()


def _aio_assignor(name: str) -> object:
    from aiokafka.coordinator.assignors.range import RangePartitionAssignor
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

    base = {
        "range": RangePartitionAssignor,
        "roundrobin": RoundRobinPartitionAssignor,
        "sticky": StickyPartitionAssignor,
    }[name]
    # aiokafka's assignors are classes used as such: the sticky one keeps the member's previous
    # assignment in class attributes. A subclass per member keeps members in one process apart.
    return type(f"{base.__name__}{next(_aio_classes)}", (base,), {})


@pytest.mark.parametrize("strategy", ["range", "roundrobin"])
def test_eager_assignors_across_three_clients(
    group_broker: BrokerProcess,
    new_topic: Callable[[str], str],
    members: MemberSet,
    strategy: str,
) -> None:
    """confluent-kafka, kafka-python and aiokafka members agree on `strategy`; the broker picks
    it, the leader's assignment reaches everyone, and it has the strategy's shape."""
    b = group_broker.bootstrap
    t1, t2 = new_topic("a"), new_topic("b")
    create_topic(b, t1, 5)
    create_topic(b, t2, 4)
    everything = all_tps(t1, 5) | all_tps(t2, 4)
    g = gid()
    sent = kp_produce_spread(b, [t1, t2], 60)
    ms = [
        members.add(
            CkMember("ck", b, g, [t1, t2], conf={"partition.assignment.strategy": strategy})
        ),
        members.add(
            KpMember(
                "kp",
                b,
                g,
                [t1, t2],
                conf={"partition_assignment_strategy": [_kp_assignor(strategy)]},
            )
        ),
        members.add(
            AioMember(
                "aio",
                b,
                g,
                [t1, t2],
                conf={"partition_assignment_strategy": [_aio_assignor(strategy)]},
            )
        ),
    ]
    own = wait_exclusive_ownership(
        ms, everything, f"three members to share 9 partitions ({strategy})"
    )
    desc = ck_describe(b, g)
    assert desc.partition_assignor == strategy
    described = {
        m.client_id: {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions}
        for m in desc.members
    }
    assert described == {n: set(t) for n, t in own.items()}, "DescribeGroups assignments"
    counts = sorted(len(t) for t in own.values())
    if strategy == "range":
        for t, n in ((t1, 5), (t2, 4)):
            per = sorted(sorted(p for tt, p in tps if tt == t) for tps in own.values())
            assert sorted(len(x) for x in per) == sorted([n // 3 + (i < n % 3) for i in range(3)])
            for ps in per:
                assert ps == list(range(ps[0], ps[0] + len(ps))), f"range gives runs: {per}"
    else:
        assert counts == [3, 3, 3], f"roundrobin balances 9 partitions over 3: {own}"
    wait_consumed(ms, sent, f"all records consumed by the {strategy} group")


@pytest.mark.parametrize("client", ["kafka-python", "aiokafka"])
def test_sticky_assignor_keeps_partitions_when_a_member_leaves(
    group_broker: BrokerProcess, topic: str, members: MemberSet, client: str
) -> None:
    """The (eager) sticky assignor of kafka-python and of aiokafka: the survivors keep what they
    owned and take over the leaver's partitions. The two clients are not mixed in one group:
    kafka-python 3.0.12 prefixes its sticky user data with a version (Java's StickyAssignor and
    aiokafka do not), so each fails to parse the other's previous assignment and stickiness
    is lost, a client incompatibility that has nothing to do with the broker."""
    b = group_broker.bootstrap
    create_topic(b, topic, 9)
    everything = all_tps(topic, 9)
    g = gid()
    sent = kp_produce_spread(b, [topic], 45)
    cls: type[Member] = KpMember if client == "kafka-python" else AioMember
    assignor = _kp_assignor if client == "kafka-python" else _aio_assignor
    m1, m2, m3 = (
        members.add(
            cls(n, b, g, [topic], conf={"partition_assignment_strategy": [assignor("sticky")]})
        )
        for n in ("m1", "m2", "m3")
    )
    before = wait_exclusive_ownership([m1, m2, m3], everything, "three sticky members")
    assert sorted(len(t) for t in before.values()) == [3, 3, 3]
    m3.stop()
    after = wait_exclusive_ownership([m1, m2], everything, "two sticky members after a leave")
    assert before["m1"] <= after["m1"] and before["m2"] <= after["m2"], (
        f"sticky: survivors keep their partitions: before {before}, after {after}"
    )
    assert ck_describe(b, g).partition_assignor == "sticky"
    wait_consumed([m1, m2, m3], sent, "all records consumed by the sticky group")


def test_cooperative_sticky_moves_only_what_it_must(
    group_broker: BrokerProcess, topic: str, members: MemberSet
) -> None:
    """confluent-kafka and kafka-python with cooperative-sticky (KIP-429): when members join,
    the existing members only lose partitions (never all of them: no stop-the-world), and the
    group converges to a balanced, exclusive assignment."""
    b = group_broker.bootstrap
    create_topic(b, topic, 8)
    everything = all_tps(topic, 8)
    g = gid()
    sent = kp_produce_spread(b, [topic], 80)
    ck_coop = {"partition.assignment.strategy": "cooperative-sticky"}
    kp_coop = {"partition_assignment_strategy": [_kp_assignor("cooperative-sticky")]}
    c1 = members.add(CkMember("ck1", b, g, [topic], conf=ck_coop))
    wait_exclusive_ownership([c1], everything, "the first member to own everything")
    k1 = members.add(KpMember("kp1", b, g, [topic], conf=kp_coop))
    two = wait_exclusive_ownership([c1, k1], everything, "two cooperative members")
    assert sorted(len(t) for t in two.values()) == [4, 4]
    c2 = members.add(CkMember("ck2", b, g, [topic], conf=ck_coop))
    three = wait_exclusive_ownership([c1, k1, c2], everything, "three cooperative members")
    assert sorted(len(t) for t in three.values()) == [2, 3, 3]
    assert three["ck1"] <= two["ck1"] and three["kp1"] <= two["kp1"], (
        f"cooperative: existing members only give partitions up: {two} -> {three}"
    )
    assert ck_describe(b, g).partition_assignor == "cooperative-sticky"
    wait_consumed([c1, k1, c2], sent, "all records consumed by the cooperative group")


# ------------------------------------------------------------------------ max.poll.interval.ms


@pytest.mark.parametrize("idle_client", ["confluent", "kafka-python"])
def test_member_that_stops_polling_loses_its_partitions(
    group_broker: BrokerProcess, topic: str, members: MemberSet, idle_client: str
) -> None:
    """A member that stops calling poll for longer than max.poll.interval.ms leaves the group;
    the other member takes all partitions; once it polls again it rejoins."""
    b = group_broker.bootstrap
    create_topic(b, topic, 6)
    everything = all_tps(topic, 6)
    g = gid()
    idle: Member
    if idle_client == "confluent":
        idle = CkMember(
            "idle",
            b,
            g,
            [topic],
            conf={"max.poll.interval.ms": 3000, "session.timeout.ms": 3000},
        )
        busy: Member = KpMember("busy", b, g, [topic])
    else:
        idle = KpMember(
            "idle",
            b,
            g,
            [topic],
            conf={"max_poll_interval_ms": 3000, "session_timeout_ms": 3000},
        )
        busy = AioMember("busy", b, g, [topic])
    members.add(idle)
    members.add(busy)
    wait_exclusive_ownership([idle, busy], everything, "two members to share 6 partitions")
    idle.pause_event.set()
    wait_until(
        lambda: busy.snapshot()[0] == everything,
        "the polling member to take every partition after max.poll.interval.ms",
        GROUP_DEADLINE_S,
    )
    desc = ck_describe(b, g)
    assert [m.client_id for m in desc.members] == ["busy"], "the idle member left the group"
    idle.pause_event.clear()
    wait_exclusive_ownership([idle, busy], everything, "the idle member to rejoin once it polls")


def kp_produce_spread(bootstrap: str, topics: list[str], per_topic: int) -> set[Seen]:
    """Produce keyed records to each topic with kafka-python; return what was written."""
    out: set[Seen] = set()
    for t in topics:
        for d in kp_produce(bootstrap, t, make_recs(per_topic, prefix=t)):
            out.add((t, d.partition, d.offset))
    return out


# ----------------------------------------------------------------------------- broker restarts


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_group_resumes_from_committed_offsets_after_broker_restart(
    broker_factory: BrokerFactory, topic: str, members: MemberSet, how: str
) -> None:
    """A confluent-kafka and a kafka-python member consume while a producer writes; the broker
    is stopped (SIGTERM or kill -9) and restarted on the same data. Every commit the broker
    acknowledged before the stop survives; nothing before those offsets is delivered again;
    every record is consumed; and a fresh aiokafka member starts exactly at the committed
    offsets."""
    br = broker_factory(GROUP_BROKER_SETS)
    b = br.bootstrap
    create_topic(b, topic, 4)
    everything = all_tps(topic, 4)
    g = gid()
    prod = members.producer(Producer(b, topic, per_burst=10, pause_s=0.05))
    c = members.add(CkMember("ck", b, g, [topic]))
    k = members.add(KpMember("kp", b, g, [topic]))
    ms = [c, k]
    wait_exclusive_ownership(ms, everything, "two members to share 4 partitions")
    wait_until(
        lambda: all(len(m.snapshot()[3]) >= 2 for m in ms),
        "both members to have commits acknowledged before the restart",
        GROUP_DEADLINE_S,
    )

    if how == "sigterm":
        code = br.stop()
        assert code == 0, f"SIGTERM should be a clean shutdown, exit code {code}"
    else:
        br.kill9()
    acked: dict[TP, int] = {}
    marks: dict[str, int] = {}
    for m in ms:
        _, _, seen, committed = m.snapshot()
        marks[m.name] = len(seen)
        for tp, off in committed.items():
            acked[tp] = max(acked.get(tp, -1), off)
    br.restart()

    after_restart = ck_committed(b, g, everything)
    lost = {
        tp: (off, after_restart.get(tp))
        for tp, off in acked.items()
        if after_restart.get(tp, -1) < off
    }
    assert not lost, f"acknowledged commits lost across the restart (acked, now): {lost}"

    wait_until(
        lambda: sum(len(m.snapshot()[2]) for m in ms) > sum(marks.values()) + 50,
        "the group to consume again after the restart",
        GROUP_DEADLINE_S,
    )
    delivered = prod.stop()
    wait_consumed(ms, delivered, "every produced record to reach the group")
    for m in ms:
        again = [
            (t, p, o) for t, p, o in m.snapshot()[2][marks[m.name] :] if o < acked.get((t, p), 0)
        ]
        assert not again, f"{m.name} got records before the committed offsets again: {again[:10]}"

    for m in ms:
        m.stop()
    hwm = high_watermarks(b, everything)
    assert ck_committed(b, g, everything) == hwm, "the group committed everything it consumed"
    extra = kp_produce_spread(b, [topic], 20)
    fresh = members.add(AioMember("aio-fresh", b, g, [topic]))
    wait_consumed([fresh], extra, "a fresh member to read the records after the commits")
    early = [(t, p, o) for t, p, o in fresh.snapshot()[2] if o < hwm[(t, p)]]
    assert not early, f"a fresh member must start at the committed offsets: {early[:10]}"


# ------------------------------------------------------------------------- KIP-848 (consumer)

KIP848 = {"group.protocol": "consumer"}


@pytest.mark.parametrize("remote_assignor", [None, "range"])
def test_kip848_consumer_protocol_members_share_and_move_partitions(
    group_broker: BrokerProcess,
    topic: str,
    members: MemberSet,
    remote_assignor: str | None,
) -> None:
    """confluent-kafka with group.protocol=consumer (ConsumerGroupHeartbeat): members share a
    6-partition topic, a joiner only takes partitions (incremental, nobody loses everything),
    a leaver's partitions move; ConsumerGroupDescribe through the AdminClient shows the group;
    kafka-python produces and reads the committed offsets."""
    from confluent_kafka import ConsumerGroupType

    b = group_broker.bootstrap
    create_topic(b, topic, 6)
    everything = all_tps(topic, 6)
    g = gid()
    sent = kp_produce_spread(b, [topic], 120)
    conf = dict(KIP848)
    if remote_assignor is not None:
        conf["group.remote.assignor"] = remote_assignor
    c1 = members.add(CkMember("c1", b, g, [topic], conf=conf))
    c2 = members.add(CkMember("c2", b, g, [topic], conf=conf))
    two = wait_exclusive_ownership([c1, c2], everything, "two KIP-848 members to share 6")
    assert sorted(len(t) for t in two.values()) == [3, 3]
    c3 = members.add(CkMember("c3", b, g, [topic], conf=conf))
    three = wait_exclusive_ownership([c1, c2, c3], everything, "a third KIP-848 member")
    assert sorted(len(t) for t in three.values()) == [2, 2, 2]
    if remote_assignor is None:  # the uniform assignor is sticky: members only give up some
        assert three["c1"] <= two["c1"] and three["c2"] <= two["c2"], f"{two} -> {three}"

    desc = ck_describe(b, g)
    assert desc.type == ConsumerGroupType.CONSUMER
    assert desc.partition_assignor == (remote_assignor or "uniform")
    assert {m.client_id for m in desc.members} == {"c1", "c2", "c3"}
    described = {
        m.client_id: {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions}
        for m in desc.members
    }
    assert described == {n: set(t) for n, t in three.items()}

    c2.stop()
    after = wait_exclusive_ownership([c1, c3], everything, "the leaver's partitions to move")
    if remote_assignor is None:
        assert three["c1"] <= after["c1"] and three["c3"] <= after["c3"], f"{three} -> {after}"
    else:  # range is not sticky, but each member owns one run of partitions
        for tps in after.values():
            ps = sorted(p for _, p in tps)
            assert ps == list(range(ps[0], ps[0] + 3)), f"range gives runs of 3: {after}"
    wait_consumed([c1, c2, c3], sent, "every record consumed by the KIP-848 group")

    for m in (c1, c3):
        m.stop()
    hwm = high_watermarks(b, everything)
    admin = kpa.KafkaAdminClient(bootstrap_servers=b, request_timeout_ms=20_000)
    try:
        offs = admin.list_group_offsets(g)[g]
    finally:
        admin.close()
    assert {(tp.topic, tp.partition): om.offset for tp, om in offs.items()} == hwm


# ------------------------------------------------------------------------- static membership


def test_static_member_restarted_within_session_gets_its_partitions_back(
    group_broker: BrokerProcess, topic: str, members: MemberSet
) -> None:
    """group.instance.id (KIP-345): a confluent-kafka and an aiokafka static member; each is
    closed (static members send no LeaveGroup) and replaced within its session timeout by a
    new consumer with the same instance id, which gets the same partitions while the other
    member sees no rebalance (no assignment or revocation callback)."""
    b = group_broker.bootstrap
    create_topic(b, topic, 6)
    everything = all_tps(topic, 6)
    g = gid()
    sent = kp_produce_spread(b, [topic], 60)
    static_ck = {"group.instance.id": "inst-ck", "session.timeout.ms": 20_000}
    static_aio = {"group_instance_id": "inst-aio", "session_timeout_ms": 20_000}
    a = members.add(CkMember("ck", b, g, [topic], conf=static_ck))
    o = members.add(AioMember("aio", b, g, [topic], conf=static_aio))
    own = wait_exclusive_ownership([a, o], everything, "two static members")
    desc = ck_describe(b, g)
    ids = {m.group_instance_id: m.member_id for m in desc.members}
    assert set(ids) == {"inst-ck", "inst-aio"}

    def counters(m: Member) -> tuple[int, int]:
        with m.lock:
            return m.assigned_calls, m.revoked_calls

    seen = [a, o]
    for old, conf, cls in ((a, static_ck, CkMember), (o, static_aio, AioMember)):
        other = o if old is a else a
        before = counters(other)
        old.stop()
        new = members.add(cls(old.name, b, g, [topic], conf=conf))
        seen.append(new)
        wait_until(
            lambda new=new, old=old: new.snapshot()[0] == own[old.name],
            f"the restarted static member {old.name} to get {sorted(own[old.name])} back",
            GROUP_DEADLINE_S,
        )
        assert other.snapshot()[0] == own[other.name]
        assert counters(other) == before, (
            f"{other.name} saw a rebalance when a static member came back: {before} -> "
            f"{counters(other)}"
        )
        if old is a:
            a = new  # type: ignore[assignment]
        else:
            o = new  # type: ignore[assignment]
        desc = ck_describe(b, g)
        now = {m.group_instance_id: m.member_id for m in desc.members}
        assert set(now) == {"inst-ck", "inst-aio"}, f"still two members: {now}"
    wait_consumed(seen, sent, "every record consumed by the static group")
