"""The group and offset APIs at the oldest versions Kafka 3.9 answers (issue #10), on the wire
and with clients pinned to old brokers: raw ListOffsets v0, OffsetCommit v0-2, OffsetFetch
v0-1 and a JoinGroup v0/v1 group through a rebalance; kafka-python with api_version (0, 8, 1)
to (0, 10, 1); confluent-kafka with api.version.request=false and an old
broker.version.fallback; OffsetCommit to topics and partitions that do not exist."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import confluent_kafka as ck
import kafka
import kafka.errors
import pytest
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KpTP

from . import kafka_wire_v0 as w
from .broker_process import BrokerProcess
from .clients import DEADLINE_S, ck_conf, create_topic, kp_produce, make_recs, wait_until
from .conftest import BrokerFactory
from .group_helpers import (
    GROUP_BROKER_SETS,
    CkMember,
    KpMember,
    MemberSet,
    all_tps,
    wait_consumed,
    wait_exclusive_ownership,
)
from .kafka_wire import api_versions_request, connect, parse_api_versions_v0, roundtrip

pytestmark = pytest.mark.integration

OFFSET_NONE = -1001  # confluent-kafka: no committed offset


@pytest.fixture(scope="module")
def old_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    f = BrokerFactory(tmp_path_factory.mktemp("old-versions"))
    try:
        yield f(GROUP_BROKER_SETS)
    finally:
        f.stop_all()


def sock(b: BrokerProcess) -> socket.socket:
    return connect(b.host, b.port)


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def advertised(b: BrokerProcess) -> dict[int, tuple[int, int]]:
    with sock(b) as s:
        return parse_api_versions_v0(roundtrip(s, api_versions_request())).api_keys


def needs_old_fetch(b: BrokerProcess, fetch_version: int, produce_version: int) -> None:
    """Consuming through an old client needs Fetch (and its producer Produce) at versions that
    carry message format v0/v1 (issue #10, item 1, done separately): skip until advertised."""
    keys = advertised(b)
    if keys[1][0] > fetch_version or keys[0][0] > produce_version:
        pytest.skip(
            f"waits for Fetch v{fetch_version} and Produce v{produce_version} "
            f"(advertised: Fetch {keys[1]}, Produce {keys[0]})"
        )


# -- ListOffsets v0 ----------------------------------------------------------------------------


def test_list_offsets_v0_on_the_wire(broker_factory: BrokerFactory) -> None:
    b = broker_factory(GROUP_BROKER_SETS)
    topic = name("lo0")
    # Small segments: every few records start a new one.
    create_topic(b.bootstrap, topic, 1, {"segment.bytes": "1024"})
    before = int(time.time() * 1000) - 1
    recs = make_recs(40, size=200)
    kp_produce(b.bootstrap, topic, recs, batch_size=0, linger_ms=0)
    with sock(b) as s:
        latest = w.parse_list_offsets_v0(w.call(s, w.list_offsets_v0(topic, [(0, -1, 1000)])))[
            (topic, 0)
        ]
        earliest = w.parse_list_offsets_v0(w.call(s, w.list_offsets_v0(topic, [(0, -2, 1000)])))
        older = w.parse_list_offsets_v0(w.call(s, w.list_offsets_v0(topic, [(0, before, 10)])))
        two = w.parse_list_offsets_v0(w.call(s, w.list_offsets_v0(topic, [(0, -1, 2)])))
        wrong = w.parse_list_offsets_v0(
            w.call(s, w.list_offsets_v0(topic, [(0, -3, 1), (7, -1, 1)]))
        )
    error, offsets = latest
    assert error == 0
    # The log end first, then every segment's base offset, newest first, down to 0.
    assert offsets[0] == 40 and offsets[-1] == 0
    assert len(offsets) > 3 and offsets == sorted(offsets, reverse=True)
    assert earliest[(topic, 0)] == (0, [0])
    # Every segment file was modified after `before`: no offset is that old.
    assert older[(topic, 0)] == (0, [])
    assert two[(topic, 0)] == (0, offsets[:2])
    assert wrong[(topic, 0)][0] == 35  # UNSUPPORTED_VERSION: v0 knows only -1 and -2
    assert wrong[(topic, 7)][0] == w.ERR_UNKNOWN_TOPIC_OR_PARTITION


@pytest.mark.parametrize("api_version", [(0, 8, 2), (0, 9), (0, 10, 0)])
def test_kafka_python_old_brokers_list_offsets_v0(
    old_broker: BrokerProcess, api_version: tuple[int, ...]
) -> None:
    topic = name("kplo")
    create_topic(old_broker.bootstrap, topic, 2)
    kp_produce(old_broker.bootstrap, topic, make_recs(7, partition=0))
    c = kafka.KafkaConsumer(
        bootstrap_servers=old_broker.bootstrap, api_version=api_version, enable_auto_commit=False
    )
    try:
        tps = [KpTP(topic, 0), KpTP(topic, 1)]
        assert c.end_offsets(tps) == {tps[0]: 7, tps[1]: 0}
        assert c.beginning_offsets(tps) == {tps[0]: 0, tps[1]: 0}
    finally:
        c.close()


# -- OffsetCommit / OffsetFetch v0-2 -------------------------------------------------------------


def test_offset_commit_v0_to_v2_on_the_wire(old_broker: BrokerProcess) -> None:
    topic, group = name("oc"), name("g")
    create_topic(old_broker.bootstrap, topic, 2)
    tp0, tp1, missing, nope = (topic, 0), (topic, 1), (topic, 2), ("nope-" + topic, 0)
    with sock(old_broker) as s:
        codes = w.parse_offset_commit(
            w.call(
                s, w.offset_commit(0, group, {tp0: 11, tp1: 12, missing: 1, nope: 1}, metadata="x")
            )
        )
        assert codes == {
            tp0: 0,
            tp1: 0,
            missing: w.ERR_UNKNOWN_TOPIC_OR_PARTITION,
            nope: w.ERR_UNKNOWN_TOPIC_OR_PARTITION,
        }
        # v0 keeps only the offset (ZooKeeper did), and v1 does not see it.
        v0 = w.parse_offset_fetch(w.call(s, w.offset_fetch(0, group, [tp0, tp1, missing, nope])))
        assert v0 == {tp0: (11, "", 0), tp1: (12, "", 0), missing: (-1, "", 0), nope: (-1, "", 0)}
        v1 = w.parse_offset_fetch(w.call(s, w.offset_fetch(1, group, [tp0])))
        assert v1[tp0][0] == -1
        # v1 with its commit timestamp, v2 with its retention: the coordinator's offsets.
        assert w.parse_offset_commit(
            w.call(s, w.offset_commit(1, group, {tp0: 21}, metadata="m1", commit_timestamp=5))
        ) == {tp0: 0}
        assert w.parse_offset_fetch(w.call(s, w.offset_fetch(1, group, [tp0]))) == {
            tp0: (21, "m1", 0)
        }
        assert w.parse_offset_commit(
            w.call(s, w.offset_commit(2, group, {tp1: 22, nope: 3}, retention_ms=60_000))
        ) == {tp1: 0, nope: w.ERR_UNKNOWN_TOPIC_OR_PARTITION}
        assert w.parse_offset_fetch(w.call(s, w.offset_fetch(1, group, [tp1])))[tp1][0] == 22
        # ... which v0 does not see either.
        assert w.parse_offset_fetch(w.call(s, w.offset_fetch(0, group, [tp0, tp1]))) == {
            tp0: (11, "", 0),
            tp1: (12, "", 0),
        }
        # Only unknown partitions: answered without asking the coordinator anything.
        assert w.parse_offset_commit(w.call(s, w.offset_commit(2, "", {nope: 3}))) == {
            nope: w.ERR_UNKNOWN_TOPIC_OR_PARTITION
        }


def test_offsets_v0_survive_a_restart(broker_factory: BrokerFactory) -> None:
    b = broker_factory(GROUP_BROKER_SETS)
    topic, group = name("ocr"), name("g")
    create_topic(b.bootstrap, topic, 1)
    with sock(b) as s:
        codes = w.parse_offset_commit(w.call(s, w.offset_commit(0, group, {(topic, 0): 77})))
    assert codes == {(topic, 0): 0}
    b.stop()
    b.start()
    b.wait_ready()
    with sock(b) as s:
        got = w.parse_offset_fetch(w.call(s, w.offset_fetch(0, group, [(topic, 0)])))
    assert got == {(topic, 0): (77, "", 0)}


@pytest.mark.parametrize(
    ("api_version", "kept_apart"),
    [((0, 8, 1), True), ((0, 8, 2), False), ((0, 9), False), ((0, 10, 1), False)],
)
def test_kafka_python_old_brokers_commit_and_fetch(
    old_broker: BrokerProcess, api_version: tuple[int, ...], kept_apart: bool
) -> None:
    """(0, 8, 1) commits through OffsetCommit/OffsetFetch v0, (0, 8, 2) v1, later ones v2/v1."""
    topic, group = name("kpoc"), name("g")
    create_topic(old_broker.bootstrap, topic, 1)
    tp = KpTP(topic, 0)
    c = kafka.KafkaConsumer(
        bootstrap_servers=old_broker.bootstrap,
        api_version=api_version,
        group_id=group,
        enable_auto_commit=False,
    )
    try:
        c.assign([tp])
        c.commit({tp: OffsetAndMetadata(5, "meta", -1)})
        assert c.committed(tp) == 5
        c.commit({tp: OffsetAndMetadata(9, "", -1)})
        assert c.committed(tp) == 9
    finally:
        c.close()
    # A current client reads the group coordinator's offsets: v0 commits are not among them.
    modern = kafka.KafkaConsumer(
        bootstrap_servers=old_broker.bootstrap, group_id=group, enable_auto_commit=False
    )
    try:
        assert modern.committed(tp) == (None if kept_apart else 9)
    finally:
        modern.close()


# -- JoinGroup v0 / v1: a group through rebalances -------------------------------------------------


@pytest.mark.parametrize("join_version", [0, 1])
def test_join_group_old_versions_end_to_end(old_broker: BrokerProcess, join_version: int) -> None:
    topic, group = name("jg"), name("g")
    create_topic(old_broker.bootstrap, topic, 4)
    with sock(old_broker) as a, sock(old_broker) as b:
        err, _node, host, port = w.parse_find_coordinator_v0(
            w.call(a, w.find_coordinator_v0(group))
        )
        assert (err, host, port) == (0, old_broker.host, old_broker.port)

        # A alone: generation 1, A leads and takes every partition.
        first = w.parse_join_group(w.call(a, w.join_group(join_version, group, "", [topic])))
        assert first.error == 0 and first.generation == 1 and first.protocol == "range"
        assert first.leader == first.member_id and set(first.members) == {first.member_id}
        a_id = first.member_id
        everything = {topic: [0, 1, 2, 3]}
        err, assigned = w.parse_sync_group_v0(
            w.call(a, w.sync_group_v0(group, 1, a_id, {a_id: w.assignment(everything)}))
        )
        assert (err, assigned) == (0, everything)
        assert w.parse_error_only(w.call(a, w.heartbeat_v0(group, 1, a_id))) == 0
        assert w.parse_offset_commit(
            w.call(a, w.offset_commit(2, group, {(topic, 0): 3}, generation=1, member_id=a_id))
        ) == {(topic, 0): 0}

        # B joins: its JoinGroup waits until A rejoins, which A learns from its heartbeat.
        b.sendall(w.join_group(join_version, group, "", [topic]))
        rebalancing = wait_until(
            lambda: (
                w.parse_error_only(w.call(a, w.heartbeat_v0(group, 1, a_id)))
                == w.ERR_REBALANCE_IN_PROGRESS
            ),
            "A's heartbeat to report the rebalance",
        )
        assert rebalancing
        second = w.parse_join_group(w.call(a, w.join_group(join_version, group, a_id, [topic])))
        joined_b = w.parse_join_group(w.answer(b))
        b_id = joined_b.member_id
        assert second.error == 0 and joined_b.error == 0
        assert second.generation == joined_b.generation == 2
        assert second.leader == a_id and set(second.members) == {a_id, b_id}
        assert joined_b.members == {}  # only the leader gets the members

        mine, theirs = {topic: [0, 1]}, {topic: [2, 3]}
        plan = {a_id: w.assignment(mine), b_id: w.assignment(theirs)}
        assert w.parse_sync_group_v0(w.call(a, w.sync_group_v0(group, 2, a_id, plan))) == (0, mine)
        assert w.parse_sync_group_v0(w.call(b, w.sync_group_v0(group, 2, b_id))) == (0, theirs)

        # Commits are checked against the generation.
        stale = w.offset_commit(2, group, {(topic, 0): 4}, generation=1, member_id=a_id)
        assert w.parse_offset_commit(w.call(a, stale)) == {(topic, 0): w.ERR_ILLEGAL_GENERATION}
        fresh = w.offset_commit(2, group, {(topic, 2): 8}, generation=2, member_id=b_id)
        assert w.parse_offset_commit(w.call(b, fresh)) == {(topic, 2): 0}
        committed = w.parse_offset_fetch(
            w.call(a, w.offset_fetch(1, group, [(topic, 0), (topic, 2)]))
        )
        assert committed[(topic, 0)][0] == 3 and committed[(topic, 2)][0] == 8

        # B leaves; A rejoins alone in generation 3.
        assert w.parse_error_only(w.call(b, w.leave_group_v0(group, b_id))) == 0
        assert w.parse_error_only(w.call(a, w.heartbeat_v0(group, 2, a_id))) == (
            w.ERR_REBALANCE_IN_PROGRESS
        )
        third = w.parse_join_group(w.call(a, w.join_group(join_version, group, a_id, [topic])))
        assert third.error == 0 and third.generation == 3 and set(third.members) == {a_id}
        assert w.parse_error_only(w.call(b, w.heartbeat_v0(group, 3, b_id))) == (
            w.ERR_UNKNOWN_MEMBER_ID
        )


# -- clients pinned to old brokers, consuming in a group --------------------------------------------


@pytest.mark.parametrize("api_version", [(0, 9), (0, 10, 0), (0, 10, 1)])
def test_kafka_python_old_brokers_consume_in_a_group(
    old_broker: BrokerProcess, api_version: tuple[int, ...]
) -> None:
    needs_old_fetch(old_broker, fetch_version=1, produce_version=1)
    topic, group = name("kpg"), name("g")
    create_topic(old_broker.bootstrap, topic, 4)
    kp_produce(old_broker.bootstrap, topic, make_recs(40))
    ms = MemberSet()
    try:
        members = [
            ms.add(
                KpMember(
                    f"m{i}", old_broker.bootstrap, group, [topic], conf={"api_version": api_version}
                )
            )
            for i in range(2)
        ]
        wait_exclusive_ownership(members, all_tps(topic, 4), "two old members sharing 4 partitions")
        expected = {(topic, p, o) for p in range(4) for o in range(_count(old_broker, topic, p))}
        wait_consumed(members, expected, "every record consumed")
    finally:
        ms.close()


def test_confluent_kafka_old_fallback_consumes_in_a_group(old_broker: BrokerProcess) -> None:
    """librdkafka falling back to Kafka 0.9.0 (its only fallback with groups; 0.10 and later
    make it ask ApiVersions anyway): JoinGroup/SyncGroup/Heartbeat/LeaveGroup v0, OffsetCommit
    v2, OffsetFetch v1, ListOffsets v0, Fetch and Produce v0-1."""
    fallback = "0.9.0"
    needs_old_fetch(old_broker, fetch_version=1, produce_version=1)
    topic, group = name("ckg"), name("g")
    create_topic(old_broker.bootstrap, topic, 4)
    kp_produce(old_broker.bootstrap, topic, make_recs(40))
    conf = {"api.version.request": False, "broker.version.fallback": fallback}
    ms = MemberSet()
    try:
        members = [
            ms.add(CkMember(f"m{i}", old_broker.bootstrap, group, [topic], conf=conf))
            for i in range(2)
        ]
        wait_exclusive_ownership(members, all_tps(topic, 4), "two old members sharing 4 partitions")
        expected = {(topic, p, o) for p in range(4) for o in range(_count(old_broker, topic, p))}
        wait_consumed(members, expected, "every record consumed")
    finally:
        ms.close()
    committed = _ck_committed(old_broker, group, topic, 4, conf)
    assert committed == {p: _count(old_broker, topic, p) for p in range(4)}


def _count(b: BrokerProcess, topic: str, partition: int) -> int:
    c = ck.Consumer(ck_conf(b.bootstrap, **{"group.id": "strom-it-hwm"}))
    try:
        return int(
            c.get_watermark_offsets(ck.TopicPartition(topic, partition), timeout=DEADLINE_S)[1]
        )
    finally:
        c.close()


def _ck_committed(
    b: BrokerProcess, group: str, topic: str, partitions: int, conf: dict[str, Any]
) -> dict[int, int]:
    c = ck.Consumer(ck_conf(b.bootstrap, **{"group.id": group, **conf}))
    try:
        got = c.committed(
            [ck.TopicPartition(topic, p) for p in range(partitions)], timeout=DEADLINE_S
        )
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


@pytest.mark.parametrize("fallback", ["0.8.2", "0.9.0"])
def test_confluent_kafka_old_fallback_commits(old_broker: BrokerProcess, fallback: str) -> None:
    """Manual commits and reads of committed offsets through OffsetCommit v1 (0.8.2) or v2
    (0.9.0) and OffsetFetch v1, the earliest/latest offsets through ListOffsets v0."""
    topic, group = name("ckc"), name("g")
    create_topic(old_broker.bootstrap, topic, 2)
    kp_produce(old_broker.bootstrap, topic, make_recs(5, partition=1))
    conf = {"api.version.request": False, "broker.version.fallback": fallback}
    c = ck.Consumer(
        ck_conf(old_broker.bootstrap, **{"group.id": group, "enable.auto.commit": False, **conf})
    )
    try:
        assert c.get_watermark_offsets(ck.TopicPartition(topic, 1), timeout=DEADLINE_S) == (0, 5)
        done = c.commit(offsets=[ck.TopicPartition(topic, 0, 3)], asynchronous=False)
        assert [(tp.partition, tp.offset, tp.error) for tp in done] == [(0, 3, None)]
        got = c.committed(
            [ck.TopicPartition(topic, 0), ck.TopicPartition(topic, 1)], timeout=DEADLINE_S
        )
        assert [(tp.partition, tp.offset) for tp in got] == [(0, 3), (1, OFFSET_NONE)]
        # A commit naming a topic that does not exist fails for that topic; the rest is stored.
        with pytest.raises(ck.KafkaException) as failed:
            c.commit(
                offsets=[ck.TopicPartition(topic, 1, 4), ck.TopicPartition("nope-" + topic, 0, 1)],
                asynchronous=False,
            )
        assert failed.value.args[0].code() == ck.KafkaError.UNKNOWN_TOPIC_OR_PART
        got = c.committed([ck.TopicPartition(topic, 1)], timeout=DEADLINE_S)
        assert got[0].offset == 4
    finally:
        c.close()


def test_txn_offset_commit_to_unknown_topic(old_broker: BrokerProcess) -> None:
    """TxnOffsetCommit answers UNKNOWN_TOPIC_OR_PARTITION for a topic that does not exist, as
    OffsetCommit does: confluent-kafka fails the transaction's offsets with it."""
    topic, group = name("txo"), name("g")
    create_topic(old_broker.bootstrap, topic, 1)
    consumer = ck.Consumer(ck_conf(old_broker.bootstrap, **{"group.id": group}))
    producer = ck.Producer(ck_conf(old_broker.bootstrap, **{"transactional.id": name("tx")}))
    try:
        producer.init_transactions(DEADLINE_S)
        producer.begin_transaction()
        offsets = [ck.TopicPartition(topic, 0, 1), ck.TopicPartition("nope-" + topic, 0, 5)]
        with pytest.raises(ck.KafkaException) as failed:
            producer.send_offsets_to_transaction(
                offsets, consumer.consumer_group_metadata(), DEADLINE_S
            )
        error = failed.value.args[0]
        assert error.code() == ck.KafkaError.UNKNOWN_TOPIC_OR_PART and error.txn_requires_abort()
        producer.abort_transaction(DEADLINE_S)
    finally:
        consumer.close()


# -- admin APIs at their oldest versions ------------------------------------------------------------


def test_kafka_python_admin_old_brokers(old_broker: BrokerProcess) -> None:
    """kafka-python pinned to 0.10.1 creates and deletes topics with CreateTopics and
    DeleteTopics v0, to 0.10.2 validates with CreateTopics v1, to 0.11 describes configs with
    DescribeConfigs v0 (is_default tells kafka-python which values are modified)."""
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

    first, second, third = name("a0"), name("a1"), name("a2")
    admin = kafka.KafkaAdminClient(bootstrap_servers=old_broker.bootstrap, api_version=(0, 10, 1))
    try:
        created = admin.create_topics(
            [NewTopic(first, 2, 1, topic_configs={"retention.ms": "1234"})]
        )
        assert created["topics"] == [{"name": first, "error_code": 0}]
        with pytest.raises(kafka.errors.TopicAlreadyExistsError):
            admin.create_topics([NewTopic(first, 2, 1)])
    finally:
        admin.close()

    admin = kafka.KafkaAdminClient(bootstrap_servers=old_broker.bootstrap, api_version=(0, 10, 2))
    try:
        checked = admin.create_topics([NewTopic(second, 1, 1)], validate_only=True)
        assert checked["topics"] == [{"name": second, "error_code": 0, "error_message": None}]
        assert second not in admin.list_topics()
    finally:
        admin.close()

    admin = kafka.KafkaAdminClient(bootstrap_servers=old_broker.bootstrap, api_version=(0, 11))
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC, first, ["retention.ms", "cleanup.policy"]
        )
        modified = admin.describe_configs([resource])
        assert set(modified["topic"][first]) == {"retention.ms"}
        assert modified["topic"][first]["retention.ms"]["value"] == "1234"
        everything = admin.describe_configs([resource], config_filter="all")
        configs = everything["topic"][first]
        assert configs["retention.ms"]["is_default"] is False
        assert configs["cleanup.policy"] == {
            "value": "delete",
            "read_only": False,
            "is_default": True,
            "is_sensitive": False,
            "config_source": "DEFAULT_CONFIG",
        }
    finally:
        admin.close()

    admin = kafka.KafkaAdminClient(bootstrap_servers=old_broker.bootstrap, api_version=(0, 10, 1))
    try:
        with pytest.raises(kafka.errors.UnknownTopicOrPartitionError):
            admin.delete_topics([third])
        assert admin.delete_topics([first])["topics"] == [{"name": first, "error_code": 0}]
        assert first not in admin.list_topics()
    finally:
        admin.close()


def test_offset_for_leader_epoch_v0_v1_on_the_wire(old_broker: BrokerProcess) -> None:
    topic = name("ofle")
    create_topic(old_broker.bootstrap, topic, 1)
    kp_produce(old_broker.bootstrap, topic, make_recs(6, partition=0))
    tp = (topic, 0)
    with sock(old_broker) as s:
        v0 = w.parse_offset_for_leader_epoch(
            0, w.call(s, w.offset_for_leader_epoch(0, topic, [(0, 0), (3, 0)]))
        )
        v1 = w.parse_offset_for_leader_epoch(
            1, w.call(s, w.offset_for_leader_epoch(1, topic, [(0, 0)]))
        )
        ahead = w.parse_offset_for_leader_epoch(
            1, w.call(s, w.offset_for_leader_epoch(1, topic, [(0, 5)]))
        )
    # A single broker leads at epoch 0: its end is the log end; v0 has no epoch in the answer.
    assert v0 == {tp: (0, None, 6), (topic, 3): (w.ERR_UNKNOWN_TOPIC_OR_PARTITION, None, -1)}
    # v1 answers the epoch too; an epoch above every known one is (-1, -1) without an error.
    assert v1 == {tp: (0, 0, 6)}
    assert ahead == {tp: (0, -1, -1)}
