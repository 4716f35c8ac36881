"""Group administration with real admin clients (confluent-kafka's AdminClient, kafka-python's
KafkaAdminClient): ListGroups, DescribeGroups, DeleteGroups, OffsetDelete, committed offsets
(list, alter, reset, lag), and group errors as clients see them (issue #3)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import confluent_kafka as ck
import kafka
import kafka.admin as kpa
import kafka.errors
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    ConsumerGroupType,
    TopicPartition,
)

from .broker_process import BrokerProcess
from .clients import DEADLINE_S, ck_admin, create_topic, kp_produce, make_recs, wait_until
from .conftest import BrokerFactory
from .group_helpers import (
    GROUP_BROKER_SETS,
    GROUP_DEADLINE_S,
    TP,
    AioMember,
    CkMember,
    KpMember,
    MemberSet,
    all_tps,
    ck_committed,
    ck_describe,
    high_watermarks,
    wait_consumed,
    wait_exclusive_ownership,
)

pytestmark = pytest.mark.integration

OFFSET_NONE = -1001  # confluent-kafka's OFFSET_INVALID: no committed offset


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    f = BrokerFactory(tmp_path_factory.mktemp("groups-admin"))
    try:
        yield f({**GROUP_BROKER_SETS, "group.max.session.timeout.ms": 30000})
    finally:
        f.stop_all()


@pytest.fixture
def members() -> Iterator[MemberSet]:
    ms = MemberSet()
    try:
        yield ms
    finally:
        ms.close()


@pytest.fixture
def kp_admin(group_broker: BrokerProcess) -> Iterator[kpa.KafkaAdminClient]:
    a = kpa.KafkaAdminClient(bootstrap_servers=group_broker.bootstrap, request_timeout_ms=20_000)
    try:
        yield a
    finally:
        a.close()


def gid(prefix: str = "g") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ck_error_code(fut: Any) -> int | None:
    """The KafkaError code a confluent admin future fails with (None on success)."""
    try:
        fut.result(timeout=DEADLINE_S)
    except ck.KafkaException as e:
        return int(e.args[0].code())
    return None


def commit_offsets(bootstrap: str, group: str, offsets: dict[TP, int]) -> None:
    """Commit through confluent's AdminClient.alter_consumer_group_offsets (the group must have
    no members); raises on any error."""
    req = ConsumerGroupTopicPartitions(
        group, [TopicPartition(t, p, off) for (t, p), off in offsets.items()]
    )
    admin = ck_admin(bootstrap)  # keep the client alive until its futures resolve
    res = admin.alter_consumer_group_offsets([req], request_timeout=DEADLINE_S)
    out = res[group].result(timeout=DEADLINE_S)
    errs = [tp for tp in out.topic_partitions if tp.error is not None]
    assert not errs, f"alter_consumer_group_offsets errors: {errs}"


def kp_committed(admin: kpa.KafkaAdminClient, group: str) -> dict[TP, int]:
    offs = admin.list_group_offsets(group)[group]
    return {(tp.topic, tp.partition): om.offset for tp, om in offs.items()}


def aio_committed(bootstrap: str, group: str) -> dict[TP, int]:
    """Committed offsets through aiokafka's AIOKafkaAdminClient.list_consumer_group_offsets."""

    async def run() -> dict[TP, int]:
        a = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
        await a.start()
        try:
            offs = await a.list_consumer_group_offsets(group)
        finally:
            await a.close()
        return {(tp.topic, tp.partition): om.offset for tp, om in offs.items()}

    return asyncio.run(run())


def ck_list_groups(bootstrap: str, **kw: Any) -> dict[str, Any]:
    admin = ck_admin(bootstrap)
    res = admin.list_consumer_groups(request_timeout=DEADLINE_S, **kw)
    out = res.result(timeout=DEADLINE_S)
    assert not out.errors, f"list_consumer_groups errors: {out.errors}"
    return {g.group_id: g for g in out.valid}


# ------------------------------------------------------------------------- list and describe


def test_list_and_describe_groups(
    group_broker: BrokerProcess, topic: str, members: MemberSet, kp_admin: kpa.KafkaAdminClient
) -> None:
    """ListGroups (with state and type filters) and DescribeGroups / ConsumerGroupDescribe
    through both admin clients: an active classic group, an empty group with only committed
    offsets, and an active consumer-protocol (KIP-848) group."""
    b = group_broker.bootstrap
    create_topic(b, topic, 4)
    everything = all_tps(topic, 4)
    active, empty, k848 = gid("active"), gid("empty"), gid("k848")
    c = members.add(CkMember("ck", b, active, [topic]))
    k = members.add(KpMember("kp", b, active, [topic]))
    own = wait_exclusive_ownership([c, k], everything, "the active group to be stable")
    commit_offsets(b, empty, {(topic, 0): 1})
    n = members.add(CkMember("ck848", b, k848, [topic], conf={"group.protocol": "consumer"}))
    wait_exclusive_ownership([n], everything, "the KIP-848 member to own the topic")

    listed = ck_list_groups(b)
    assert {active, empty, k848} <= set(listed), f"confluent listing: {sorted(listed)}"
    assert listed[active].state == ConsumerGroupState.STABLE
    assert listed[empty].state == ConsumerGroupState.EMPTY
    assert listed[active].type == ConsumerGroupType.CLASSIC
    assert listed[k848].type == ConsumerGroupType.CONSUMER
    stable = ck_list_groups(b, states={ConsumerGroupState.STABLE})
    assert active in stable and empty not in stable
    consumer_type = ck_list_groups(b, types={ConsumerGroupType.CONSUMER})
    assert k848 in consumer_type and active not in consumer_type

    kp_listed = {g["group_id"]: g for g in kp_admin.list_groups()}
    assert {active, empty, k848} <= set(kp_listed), f"kafka-python listing: {sorted(kp_listed)}"
    assert kp_listed[active]["protocol_type"] == "consumer"

    desc = ck_describe(b, active)
    assert desc.state == ConsumerGroupState.STABLE
    assert desc.type == ConsumerGroupType.CLASSIC
    assert not desc.is_simple_consumer_group
    by_client = {
        m.client_id: {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions}
        for m in desc.members
    }
    assert by_client == {n_: set(t) for n_, t in own.items()}

    kp_desc = kp_admin.describe_groups([active])[active]
    assert kp_desc["group_state"] == "Stable"
    assert kp_desc["protocol_type"] == "consumer"
    kp_members = {m["client_id"]: m for m in kp_desc["members"]}
    assert set(kp_members) == {"ck", "kp"}
    for name, m in kp_members.items():
        assignment = m["member_assignment"]
        got = {(t, p) for t, parts in _kp_assigned_partitions(assignment) for p in parts}
        assert got == set(own[name]), f"kafka-python describe of {name}: {assignment!r}"

    desc848 = ck_describe(b, k848)  # ConsumerGroupDescribe
    assert desc848.type == ConsumerGroupType.CONSUMER
    assert desc848.state == ConsumerGroupState.STABLE
    assert [m.client_id for m in desc848.members] == ["ck848"]
    assert {
        (tp.topic, tp.partition) for tp in desc848.members[0].assignment.topic_partitions
    } == everything

    empty_desc = ck_describe(b, empty)
    assert empty_desc.state == ConsumerGroupState.EMPTY and not empty_desc.members
    nobody = gid("nobody")  # DescribeGroups v0-5 describe an unknown group as Dead, no error
    assert ck_describe(b, nobody).state == ConsumerGroupState.DEAD
    assert kp_admin.describe_groups([nobody])[nobody]["group_state"] == "Dead"


def _kp_assigned_partitions(assignment: Any) -> list[tuple[str, list[int]]]:
    """kafka-python decodes a member's assignment into a ConsumerProtocolAssignment or a dict."""
    if isinstance(assignment, dict):
        return [(t["topic"], list(t["partitions"])) for t in assignment["assigned_partitions"]]
    return [(t, list(ps)) for t, ps in assignment.assignment]


# --------------------------------------------------------------------------------- deletion


def test_delete_groups(
    group_broker: BrokerProcess, topic: str, members: MemberSet, kp_admin: kpa.KafkaAdminClient
) -> None:
    """DeleteGroups: NON_EMPTY_GROUP while members are active, GROUP_ID_NOT_FOUND for an
    unknown group, success once the group is empty, after which its offsets are gone."""
    b = group_broker.bootstrap
    create_topic(b, topic, 2)
    everything = all_tps(topic, 2)
    g1, g2, unknown = gid(), gid(), gid("nobody")
    sent = {(topic, d.partition, d.offset) for d in kp_produce(b, topic, make_recs(10))}
    m1 = members.add(CkMember("ck", b, g1, [topic]))
    m2 = members.add(AioMember("aio", b, g2, [topic]))
    wait_exclusive_ownership([m1], everything, "g1 to be stable")
    wait_exclusive_ownership([m2], everything, "g2 to be stable")
    wait_consumed([m1], sent, "g1 to consume")
    wait_consumed([m2], sent, "g2 to consume")

    admin = ck_admin(b)
    futs = admin.delete_consumer_groups([g1, unknown], request_timeout=DEADLINE_S)
    assert ck_error_code(futs[g1]) == ck.KafkaError.NON_EMPTY_GROUP
    assert ck_error_code(futs[unknown]) == ck.KafkaError.GROUP_ID_NOT_FOUND
    res = kp_admin.delete_groups([g2])
    assert res[g2] == "NonEmptyGroupError", res

    m1.stop()
    m2.stop()
    hwm = high_watermarks(b, everything)
    wait_until(lambda: ck_committed(b, g1, everything) == hwm, "g1's final commits")
    futs = admin.delete_consumer_groups([g1], request_timeout=DEADLINE_S)
    assert ck_error_code(futs[g1]) is None
    assert kp_admin.delete_groups([g2]) == {g2: "OK"}
    listed = ck_list_groups(b)
    assert g1 not in listed and g2 not in listed
    assert ck_committed(b, g1, everything) == dict.fromkeys(everything, OFFSET_NONE)
    assert kp_committed(kp_admin, g2) == {}
    again = admin.delete_consumer_groups([g1], request_timeout=DEADLINE_S)
    assert ck_error_code(again[g1]) == ck.KafkaError.GROUP_ID_NOT_FOUND


def test_delete_committed_offsets(
    group_broker: BrokerProcess, topic: str, members: MemberSet, kp_admin: kpa.KafkaAdminClient
) -> None:
    """OffsetDelete through kafka-python's delete_group_offsets (confluent-kafka 2.16's Python
    AdminClient has no delete_consumer_group_offsets): removes only the named partitions'
    offsets of an empty group (read back by confluent-kafka and kafka-python); refused per
    partition with GROUP_SUBSCRIBED_TO_TOPIC while an active member subscribes to the topic;
    GROUP_ID_NOT_FOUND for an unknown group."""
    b = group_broker.bootstrap
    create_topic(b, topic, 4)
    everything = all_tps(topic, 4)
    g = gid()
    commit_offsets(b, g, {tp: 5 + tp[1] for tp in everything})

    res = kp_admin.delete_group_offsets(
        g, [kafka.TopicPartition(topic, 0), kafka.TopicPartition(topic, 1)]
    )
    assert set(res.values()) == {kafka.errors.NoError}, res
    res = kp_admin.delete_group_offsets(g, [kafka.TopicPartition(topic, 2)])
    assert set(res.values()) == {kafka.errors.NoError}, res
    assert ck_committed(b, g, everything) == {
        (topic, 0): OFFSET_NONE,
        (topic, 1): OFFSET_NONE,
        (topic, 2): OFFSET_NONE,
        (topic, 3): 8,
    }
    assert kp_committed(kp_admin, g) == {(topic, 3): 8}

    kp_produce(b, topic, make_recs(20))
    m = members.add(AioMember("aio", b, g, [topic]))
    wait_exclusive_ownership([m], everything, "a member to join the group")
    res = kp_admin.delete_group_offsets(g, [kafka.TopicPartition(topic, 3)])
    assert res == {kafka.TopicPartition(topic, 3): kafka.errors.GroupSubscribedToTopicError}, res

    with pytest.raises(kafka.errors.GroupIdNotFoundError):
        kp_admin.delete_group_offsets(gid("nobody"), [kafka.TopicPartition(topic, 0)])


# ------------------------------------------------------------------- alter, reset and lag


def test_alter_reset_offsets_and_compute_lag(
    group_broker: BrokerProcess, topic: str, members: MemberSet, kp_admin: kpa.KafkaAdminClient
) -> None:
    """Committed offsets set by confluent's alter_consumer_group_offsets and kafka-python's
    alter_group_offsets / reset_group_offsets are read back by confluent's, kafka-python's and
    aiokafka's list offsets;
    lag (high watermark - committed) is what was left; a member resumes from the altered
    offsets; altering an active group's offsets is refused with UNKNOWN_MEMBER_ID."""
    b = group_broker.bootstrap
    create_topic(b, topic, 3)
    everything = all_tps(topic, 3)
    g = gid()
    for p in range(3):
        kp_produce(b, topic, make_recs(10, prefix=f"p{p}", partition=p))
    hwm = high_watermarks(b, everything)
    assert hwm == dict.fromkeys(everything, 10)

    commit_offsets(b, g, {(topic, 0): 2, (topic, 1): 4})
    res = kp_admin.alter_group_offsets(
        g, {kafka.TopicPartition(topic, 2): kafka.OffsetAndMetadata(7, "kp", -1)}
    )
    assert all(err is kafka.errors.NoError for err in res.values()), res
    expected = {(topic, 0): 2, (topic, 1): 4, (topic, 2): 7}
    assert ck_committed(b, g, everything) == expected
    assert kp_committed(kp_admin, g) == expected
    assert aio_committed(b, g) == expected
    lag = {tp: hwm[tp] - off for tp, off in kp_committed(kp_admin, g).items()}
    assert lag == {(topic, 0): 8, (topic, 1): 6, (topic, 2): 3}
    assert sum(lag.values()) == 17

    reset = getattr(kp_admin, "reset_group_offsets", None)
    if reset is not None:  # kafka-python 3: resolve an OffsetSpec and commit it
        from kafka.admin import OffsetSpec

        reset(g, {kafka.TopicPartition(topic, 1): OffsetSpec.EARLIEST})
        expected[(topic, 1)] = 0
        assert ck_committed(b, g, everything) == expected

    m = members.add(CkMember("ck", b, g, [topic]))
    want = {(topic, p, o) for (_, p), start in expected.items() for o in range(start, 10)}
    got = wait_consumed([m], want, "a member to consume from the altered offsets")
    early = {(t, p, o) for t, p, o in got if o < expected[(t, p)]}
    assert not early, f"records before the altered offsets were delivered: {sorted(early)}"
    wait_until(lambda: ck_committed(b, g, everything) == hwm, "the member to commit up to the end")
    assert {tp: hwm[tp] - off for tp, off in kp_committed(kp_admin, g).items()} == dict.fromkeys(
        everything, 0
    ), "no lag once consumed"

    req = ConsumerGroupTopicPartitions(g, [TopicPartition(topic, 0, 1)])
    admin = ck_admin(b)
    out = admin.alter_consumer_group_offsets([req], request_timeout=DEADLINE_S)[g]
    code = ck_error_code(out)
    if code is None:  # confluent reports partition errors inside the result
        codes = [tp.error.code() for tp in out.result().topic_partitions if tp.error]
        assert codes == [ck.KafkaError.UNKNOWN_MEMBER_ID], codes
    else:
        assert code == ck.KafkaError.UNKNOWN_MEMBER_ID


# -------------------------------------------------------------------------- client errors


@pytest.mark.parametrize("session_ms", [500, 40_000])
def test_session_timeout_outside_the_brokers_range_is_refused(
    group_broker: BrokerProcess, topic: str, session_ms: int
) -> None:
    """JoinGroup with a session timeout below group.min.session.timeout.ms (1000) or above
    group.max.session.timeout.ms (30000) fails with INVALID_SESSION_TIMEOUT, reported by
    confluent-kafka as a consumer error and raised by kafka-python."""
    b = group_broker.bootstrap
    create_topic(b, topic, 1)
    c = ck.Consumer(
        {
            "bootstrap.servers": b,
            "group.id": gid(),
            "session.timeout.ms": session_ms,
            "heartbeat.interval.ms": 100,
            "max.poll.interval.ms": max(session_ms, 10_000),
        }
    )
    errors: list[ck.KafkaError] = []
    try:
        c.subscribe([topic])

        def ck_error() -> bool:
            m = c.poll(0.2)
            if m is not None and m.error() is not None:
                errors.append(m.error())
            return any(e.code() == ck.KafkaError.INVALID_SESSION_TIMEOUT for e in errors)

        wait_until(ck_error, "confluent-kafka to report INVALID_SESSION_TIMEOUT", GROUP_DEADLINE_S)
    finally:
        c.close()

    k = kafka.KafkaConsumer(
        bootstrap_servers=b,
        group_id=gid(),
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=100,
        request_timeout_ms=max(session_ms + 5000, 20_000),
        max_poll_interval_ms=max(session_ms, 10_000),
    )
    try:
        k.subscribe([topic])
        seen: list[BaseException] = []

        def kp_error() -> bool:
            try:
                k.poll(timeout_ms=200)
            except kafka.errors.KafkaError as e:
                seen.append(e)
            return any(isinstance(e, kafka.errors.InvalidSessionTimeoutError) for e in seen)

        wait_until(kp_error, "kafka-python to raise InvalidSessionTimeoutError", GROUP_DEADLINE_S)
    finally:
        k.close()
