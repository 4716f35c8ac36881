"""Admin operations through confluent-kafka's AdminClient, kafka-python's KafkaAdminClient and
aiokafka's AIOKafkaAdminClient."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import confluent_kafka as ck
import kafka
import kafka.admin as kpa
import kafka.errors
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin import NewPartitions as AioNewPartitions
from aiokafka.admin import NewTopic as AioNewTopic
from aiokafka.admin.config_resource import ConfigResource as AioConfigResource
from aiokafka.admin.config_resource import ConfigResourceType as AioConfigResourceType
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from .broker_process import BrokerProcess
from .clients import (
    DEADLINE_S,
    ConsumeError,
    Rec,
    ck_admin,
    ck_consume,
    ck_produce,
    ck_produce_one_error,
    create_topic,
    kp_consume,
    list_topic_names,
    make_recs,
    topic_partition_count,
    wait_until,
)
from .conftest import BrokerFactory

pytestmark = pytest.mark.integration


def ck_error_code(fut: Any) -> int | None:
    """The KafkaError code a confluent admin future fails with (None on success)."""
    try:
        fut.result(timeout=DEADLINE_S)
    except ck.KafkaException as e:
        return int(e.args[0].code())
    return None


@pytest.fixture(scope="module")
def admin_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the module, with one static override so config sources can be checked."""
    f = BrokerFactory(tmp_path_factory.mktemp("admin"))
    try:
        yield f({"num.partitions": 2})
    finally:
        f.stop_all()


@pytest.fixture
def admin(admin_broker: BrokerProcess) -> Any:
    return ck_admin(admin_broker.bootstrap)


@pytest.fixture
def kp_admin(admin_broker: BrokerProcess) -> Iterator[kpa.KafkaAdminClient]:
    a = kpa.KafkaAdminClient(bootstrap_servers=admin_broker.bootstrap, request_timeout_ms=20_000)
    yield a
    a.close()


def broker_id(admin: Any) -> int:
    md = admin.list_topics(timeout=DEADLINE_S)
    assert len(md.brokers) == 1, md.brokers
    return int(next(iter(md.brokers)))


def describe(admin: Any, rtype: ResourceType, name: str) -> dict[str, ConfigEntry]:
    res = ConfigResource(rtype, name)
    return dict(admin.describe_configs([res], request_timeout=DEADLINE_S)[res].result(DEADLINE_S))


# ================================================================================ topics


def test_create_topic_with_partitions_and_configs(
    admin: Any, admin_broker: BrokerProcess, topic: str
) -> None:
    fut = admin.create_topics(
        [NewTopic(topic, num_partitions=5, replication_factor=1, config={"retention.ms": "123456"})]
    )
    assert ck_error_code(fut[topic]) is None
    wait_until(lambda: topic_partition_count(admin_broker.bootstrap, topic) == 5, "5 partitions")
    entries = describe(admin, ResourceType.TOPIC, topic)
    assert entries["retention.ms"].value == "123456"
    assert entries["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not entries["retention.ms"].is_default


def test_create_topic_default_partitions_from_broker(
    admin: Any, admin_broker: BrokerProcess, topic: str
) -> None:
    """num_partitions=-1 (CreateTopics v4+) takes the broker's num.partitions (2 here)."""
    fut = admin.create_topics([NewTopic(topic)])
    assert ck_error_code(fut[topic]) is None
    wait_until(lambda: topic_partition_count(admin_broker.bootstrap, topic) == 2, "2 partitions")


def test_create_topic_validate_only_creates_nothing(
    admin: Any, admin_broker: BrokerProcess, topic: str
) -> None:
    fut = admin.create_topics([NewTopic(topic, 3, 1)], validate_only=True)
    assert ck_error_code(fut[topic]) is None
    assert topic not in list_topic_names(admin_broker.bootstrap)
    assert not admin_broker.partition_dir(topic, 0).exists()


def test_create_duplicate_topic(admin: Any, topic: str, admin_broker: BrokerProcess) -> None:
    create_topic(admin_broker.bootstrap, topic, 1)
    fut = admin.create_topics([NewTopic(topic, 1, 1)])
    assert ck_error_code(fut[topic]) == ck.KafkaError.TOPIC_ALREADY_EXISTS


@pytest.mark.parametrize("name", ["bad name!", "..", "a" * 250, "slash/topic"])
def test_create_invalid_topic_name(admin: Any, admin_broker: BrokerProcess, name: str) -> None:
    fut = admin.create_topics([NewTopic(name, 1, 1)])
    assert ck_error_code(fut[name]) == ck.KafkaError.TOPIC_EXCEPTION  # INVALID_TOPIC_EXCEPTION = 17
    assert name not in list_topic_names(admin_broker.bootstrap)


@pytest.mark.parametrize(
    "config",
    [{"retention.ms": "abc"}, {"no.such.config": "1"}, {"cleanup.policy": "shred"}],
    ids=["bad-value", "unknown-key", "bad-enum"],
)
def test_create_topic_bad_config(
    admin: Any, admin_broker: BrokerProcess, topic: str, config: dict[str, str]
) -> None:
    fut = admin.create_topics([NewTopic(topic, 1, 1, config=config)])
    assert ck_error_code(fut[topic]) == ck.KafkaError.INVALID_CONFIG
    assert topic not in list_topic_names(admin_broker.bootstrap)


def test_create_topic_bad_partition_count(admin: Any, topic: str) -> None:
    fut = admin.create_topics([NewTopic(topic, 0, 1)])
    assert ck_error_code(fut[topic]) == ck.KafkaError.INVALID_PARTITIONS


def test_delete_topic(admin: Any, admin_broker: BrokerProcess, topic: str) -> None:
    b = admin_broker.bootstrap
    create_topic(b, topic, 2)
    ck_produce(b, topic, make_recs(5, partition=1))
    assert ck_error_code(admin.delete_topics([topic])[topic]) is None
    wait_until(lambda: topic not in list_topic_names(b), f"{topic} gone from metadata")
    # Deleting it again: unknown.
    assert ck_error_code(admin.delete_topics([topic])[topic]) == ck.KafkaError.UNKNOWN_TOPIC_OR_PART
    # Its directories go (possibly after a delay, renamed to <topic>-<p>.<uuid>-delete first).
    wait_until(
        lambda: (
            not admin_broker.partition_dir(topic, 0).exists()
            and not admin_broker.partition_dir(topic, 1).exists()
        ),
        "partition directories removed or renamed",
    )


def test_delete_then_recreate_starts_empty(
    admin: Any, admin_broker: BrokerProcess, topic: str
) -> None:
    b = admin_broker.bootstrap
    create_topic(b, topic, 1)
    ck_produce(b, topic, make_recs(5, partition=0))
    assert ck_error_code(admin.delete_topics([topic])[topic]) is None
    wait_until(lambda: topic not in list_topic_names(b), f"{topic} gone")
    create_topic(b, topic, 1)
    ck_produce(b, topic, [Rec(b"new", b"life", partition=0)])
    got = ck_consume(b, topic, count=1)
    assert [(g.offset, g.value) for g in got] == [(0, b"life")]


def test_create_partitions(admin: Any, admin_broker: BrokerProcess, topic: str) -> None:
    b = admin_broker.bootstrap
    create_topic(b, topic, 1)
    assert ck_error_code(admin.create_partitions([NewPartitions(topic, 4)])[topic]) is None
    wait_until(lambda: topic_partition_count(b, topic) == 4, "4 partitions")
    ck_produce(b, topic, make_recs(3, partition=3))
    assert len(ck_consume(b, topic, [3], count=3)) == 3
    for lower in (2, 4):
        code = ck_error_code(admin.create_partitions([NewPartitions(topic, lower)])[topic])
        assert code == ck.KafkaError.INVALID_PARTITIONS, f"total {lower}: {code}"
    assert topic_partition_count(b, topic) == 4


def test_create_partitions_unknown_topic(admin: Any, topic: str) -> None:
    code = ck_error_code(admin.create_partitions([NewPartitions(topic, 3)])[topic])
    assert code == ck.KafkaError.UNKNOWN_TOPIC_OR_PART


# ================================================================================ configs


def test_describe_topic_configs_defaults_and_overrides(
    admin: Any, admin_broker: BrokerProcess, topic: str
) -> None:
    create_topic(
        admin_broker.bootstrap, topic, 1, {"cleanup.policy": "compact", "segment.bytes": "1048576"}
    )
    e = describe(admin, ResourceType.TOPIC, topic)
    for name in (
        "cleanup.policy",
        "segment.bytes",
        "retention.ms",
        "max.message.bytes",
        "min.insync.replicas",
    ):
        assert name in e, f"{name} missing from DescribeConfigs"
    assert (e["cleanup.policy"].value, e["cleanup.policy"].source) == (
        "compact",
        ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
    )
    assert e["segment.bytes"].value == "1048576"
    assert e["retention.ms"].value == str(7 * 24 * 3600 * 1000)
    assert e["retention.ms"].is_default
    assert e["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert e["message.timestamp.type"].value == "CreateTime"


def test_describe_topic_config_inherits_static_broker_override(
    broker_factory: BrokerFactory, new_topic: Any
) -> None:
    """A topic without an override reports the broker's log.* setting, with a static source."""
    b = broker_factory({"log.retention.ms": 3_600_000})
    t = new_topic()
    create_topic(b.bootstrap, t, 1)
    e = describe(ck_admin(b.bootstrap), ResourceType.TOPIC, t)
    assert e["retention.ms"].value == "3600000"
    assert e["retention.ms"].source == ConfigSource.STATIC_BROKER_CONFIG.value


def test_describe_unknown_topic_configs(admin: Any, topic: str) -> None:
    res = ConfigResource(ResourceType.TOPIC, topic)
    code = ck_error_code(admin.describe_configs([res])[res])
    assert code == ck.KafkaError.UNKNOWN_TOPIC_OR_PART


def test_describe_broker_configs(admin: Any, admin_broker: BrokerProcess) -> None:
    e = describe(admin, ResourceType.BROKER, str(broker_id(admin)))
    assert e["num.partitions"].value == "2"
    assert e["num.partitions"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert e["log.dirs"].value == str(admin_broker.data_dir)
    assert e["auto.create.topics.enable"].value == "true"
    assert e["message.max.bytes"].value == str(1024 * 1024 + 12)
    assert e["message.max.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert e["log.retention.hours"].value == "168"


def test_describe_configs_named_keys_only(
    admin: Any, admin_broker: BrokerProcess, topic: str
) -> None:
    """kafka-python asks for named keys; the answer holds those and no others."""
    create_topic(admin_broker.bootstrap, topic, 1)
    a = kpa.KafkaAdminClient(bootstrap_servers=admin_broker.bootstrap)
    try:
        res = a.describe_configs(
            [kpa.ConfigResource("TOPIC", topic, ["retention.ms", "cleanup.policy"])],
            config_filter="all",
        )
    finally:
        a.close()
    assert set(res["topic"][topic]) == {"retention.ms", "cleanup.policy"}


def test_alter_configs_replaces_whole_set(
    admin: Any, admin_broker: BrokerProcess, topic: str
) -> None:
    """AlterConfigs (non-incremental) sets exactly the given keys; omitted overrides revert."""
    create_topic(
        admin_broker.bootstrap, topic, 1, {"retention.ms": "1000000", "segment.ms": "2000000"}
    )
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"cleanup.policy": "compact"})
    fut = admin.alter_configs([res])
    assert ck_error_code(fut[res]) is None
    e = describe(admin, ResourceType.TOPIC, topic)
    assert e["cleanup.policy"].value == "compact"
    assert e["retention.ms"].is_default, "AlterConfigs must reset omitted topic overrides"
    assert e["segment.ms"].is_default


def test_alter_configs_validate_only_and_bad_value(
    admin: Any, admin_broker: BrokerProcess, topic: str
) -> None:
    create_topic(admin_broker.bootstrap, topic, 1)
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "5000"})
    assert ck_error_code(admin.alter_configs([res], validate_only=True)[res]) is None
    assert describe(admin, ResourceType.TOPIC, topic)["retention.ms"].is_default
    bad = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "soon"})
    assert ck_error_code(admin.alter_configs([bad])[bad]) == ck.KafkaError.INVALID_CONFIG


def test_incremental_alter_configs_topic(
    admin: Any, admin_broker: BrokerProcess, topic: str
) -> None:
    create_topic(admin_broker.bootstrap, topic, 1, {"segment.ms": "2000000"})
    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "7777777", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("segment.ms", None, incremental_operation=AlterConfigOpType.DELETE),
            ConfigEntry(
                "cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND
            ),
        ],
    )
    assert ck_error_code(admin.incremental_alter_configs([res])[res]) is None
    e = describe(admin, ResourceType.TOPIC, topic)
    assert e["retention.ms"].value == "7777777"
    assert e["segment.ms"].is_default
    assert set(e["cleanup.policy"].value.split(",")) == {"delete", "compact"}
    # SUBTRACT takes it out again.
    res2 = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(
                "cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT
            )
        ],
    )
    assert ck_error_code(admin.incremental_alter_configs([res2])[res2]) is None
    assert describe(admin, ResourceType.TOPIC, topic)["cleanup.policy"].value == "compact"


def test_incremental_alter_configs_bad_value(
    admin: Any, admin_broker: BrokerProcess, topic: str
) -> None:
    create_topic(admin_broker.bootstrap, topic, 1)
    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(
                "min.cleanable.dirty.ratio", "7", incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    assert (
        ck_error_code(admin.incremental_alter_configs([res])[res]) == ck.KafkaError.INVALID_CONFIG
    )


def test_incremental_alter_broker_config(broker_factory: BrokerFactory) -> None:
    """A dynamic broker default (log.retention.ms) set on the broker resource is described back
    with source DYNAMIC_BROKER_CONFIG; a read-only one (log.dirs) is refused."""
    b = broker_factory()
    a = ck_admin(b.bootstrap)
    node = str(broker_id(a))
    res = ConfigResource(
        ResourceType.BROKER,
        node,
        incremental_configs=[
            ConfigEntry("log.retention.ms", "4000000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    assert ck_error_code(a.incremental_alter_configs([res])[res]) is None
    e = describe(a, ResourceType.BROKER, node)
    assert e["log.retention.ms"].value == "4000000"
    assert e["log.retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    ro = ConfigResource(
        ResourceType.BROKER,
        node,
        incremental_configs=[
            ConfigEntry("log.dirs", "/tmp/elsewhere", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    assert ck_error_code(a.incremental_alter_configs([ro])[ro]) is not None


def test_topic_config_change_takes_effect(
    admin: Any, admin_broker: BrokerProcess, topic: str
) -> None:
    """max.message.bytes altered on a live topic is enforced on the next produce."""
    b = admin_broker.bootstrap
    create_topic(b, topic, 1)
    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    assert ck_error_code(admin.incremental_alter_configs([res])[res]) is None
    err = ck_produce_one_error(b, topic, Rec(b"k", b"v" * 5000), retries=0)
    assert err is not None and err.code() == ck.KafkaError.MSG_SIZE_TOO_LARGE, err


# ================================================================================ cluster


def test_describe_cluster_confluent(admin: Any, admin_broker: BrokerProcess) -> None:
    r = admin.describe_cluster(request_timeout=DEADLINE_S).result(DEADLINE_S)
    assert r.cluster_id
    assert len(r.nodes) == 1
    node = r.nodes[0]
    assert (node.host, node.port) == (admin_broker.host, admin_broker.port)
    assert r.controller is not None and r.controller.id == node.id
    # The cluster id is the same one Metadata reports, and stable across a restart.
    assert admin.list_topics(timeout=DEADLINE_S).cluster_id == r.cluster_id


def test_describe_cluster_kafka_python(
    kp_admin: kpa.KafkaAdminClient, admin_broker: BrokerProcess
) -> None:
    r = kp_admin.describe_cluster()
    assert r["cluster_id"]
    assert len(r["brokers"]) == 1
    assert r["controller_id"] == r["brokers"][0]["broker_id"]
    assert r["brokers"][0]["port"] == admin_broker.port


def test_cluster_id_stable_across_restart(broker_factory: BrokerFactory) -> None:
    b = broker_factory()
    before = ck_admin(b.bootstrap).list_topics(timeout=DEADLINE_S).cluster_id
    b.restart()
    after = ck_admin(b.bootstrap).list_topics(timeout=DEADLINE_S).cluster_id
    assert before and before == after


# ================================================================================ offsets


def _produce_timestamped(bootstrap: str, topic: str) -> list[int]:
    """10 records; timestamps increase by 1 s except offset 5, which carries the maximum."""
    base = 1_700_000_000_000
    ts = [base + i * 1000 for i in range(10)]
    ts[5] = base + 100_000
    ck_produce(
        bootstrap,
        topic,
        [Rec(f"k{i}".encode(), b"v", timestamp=t, partition=0) for i, t in enumerate(ts)],
    )
    return ts


def test_list_offsets_confluent(admin: Any, admin_broker: BrokerProcess, topic: str) -> None:
    b = admin_broker.bootstrap
    create_topic(b, topic, 1)
    ts = _produce_timestamped(b, topic)
    tp = ck.TopicPartition(topic, 0)

    def lo(spec: OffsetSpec) -> Any:
        return admin.list_offsets({tp: spec}, request_timeout=DEADLINE_S)[tp].result(DEADLINE_S)

    assert lo(OffsetSpec.earliest()).offset == 0
    assert lo(OffsetSpec.latest()).offset == 10
    assert lo(OffsetSpec.for_timestamp(ts[3])).offset == 3
    assert lo(OffsetSpec.for_timestamp(ts[3] - 1)).offset == 3
    # The first offset whose timestamp >= t: offset 5's max timestamp is above t, so 5 wins.
    assert lo(OffsetSpec.for_timestamp(ts[6] + 1)).offset == 5
    assert lo(OffsetSpec.for_timestamp(ts[5] + 1)).offset == -1  # none that late
    mx = lo(OffsetSpec.max_timestamp())
    assert (mx.offset, mx.timestamp) == (5, ts[5])


def test_list_offsets_kafka_python(
    kp_admin: kpa.KafkaAdminClient, admin_broker: BrokerProcess, topic: str
) -> None:
    b = admin_broker.bootstrap
    create_topic(b, topic, 1)
    ts = _produce_timestamped(b, topic)
    tp = kafka.TopicPartition(topic, 0)
    r = kp_admin.list_partition_offsets({tp: kpa.OffsetSpec.EARLIEST})
    assert r[tp].offset == 0
    r = kp_admin.list_partition_offsets({tp: kpa.OffsetSpec.LATEST})
    assert r[tp].offset == 10
    r = kp_admin.list_partition_offsets({tp: ts[2]})
    assert r[tp].offset == 2
    r = kp_admin.list_partition_offsets({tp: kpa.OffsetSpec.MAX_TIMESTAMP})
    assert (r[tp].offset, r[tp].timestamp) == (5, ts[5])


def test_list_offsets_consumer_apis(admin_broker: BrokerProcess, topic: str) -> None:
    """The consumer-side ListOffsets paths: librdkafka watermarks/offsets_for_times, kafka-python
    beginning/end_offsets and offsets_for_times."""
    b = admin_broker.bootstrap
    create_topic(b, topic, 1)
    ts = _produce_timestamped(b, topic)
    c = ck.Consumer(
        {"bootstrap.servers": b, "group.id": "strom-it-lo", "enable.auto.commit": False}
    )
    try:
        assert c.get_watermark_offsets(ck.TopicPartition(topic, 0), timeout=DEADLINE_S) == (0, 10)
        r = c.offsets_for_times([ck.TopicPartition(topic, 0, ts[3])], timeout=DEADLINE_S)
        assert r[0].offset == 3
        # The first offset whose timestamp is >= ts[7] is 5 (it carries the maximum).
        r = c.offsets_for_times([ck.TopicPartition(topic, 0, ts[7])], timeout=DEADLINE_S)
        assert r[0].offset == 5
    finally:
        c.close()
    k = kafka.KafkaConsumer(bootstrap_servers=b, group_id=None, enable_auto_commit=False)
    try:
        tp = kafka.TopicPartition(topic, 0)
        assert k.beginning_offsets([tp]) == {tp: 0}
        assert k.end_offsets([tp]) == {tp: 10}
        assert k.offsets_for_times({tp: ts[4]})[tp].offset == 4
    finally:
        k.close()


def test_list_offsets_unknown_partition(
    admin: Any, admin_broker: BrokerProcess, topic: str
) -> None:
    create_topic(admin_broker.bootstrap, topic, 1)
    tp = ck.TopicPartition(topic, 7)
    code = ck_error_code(admin.list_offsets({tp: OffsetSpec.latest()})[tp])
    # librdkafka may refuse locally from metadata (_NOENT) before asking the broker.
    assert code in (
        ck.KafkaError.UNKNOWN_TOPIC_OR_PART,
        ck.KafkaError._UNKNOWN_PARTITION,
        ck.KafkaError._NOENT,
    ), code


# ================================================================================ delete records


def test_delete_records(admin: Any, admin_broker: BrokerProcess, topic: str) -> None:
    b = admin_broker.bootstrap
    create_topic(b, topic, 1)
    ck_produce(b, topic, make_recs(10, partition=0))
    tp = ck.TopicPartition(topic, 0, 4)
    r = admin.delete_records([tp], request_timeout=DEADLINE_S)[tp].result(DEADLINE_S)
    assert r.low_watermark == 4
    tp0 = ck.TopicPartition(topic, 0)
    earliest = admin.list_offsets({tp0: OffsetSpec.earliest()})[tp0].result(DEADLINE_S)
    assert earliest.offset == 4
    # Reading from the start now begins at 4.
    got = ck_consume(b, topic, count=6)
    assert [g.offset for g in got] == list(range(4, 10))
    # Reading below the log start with auto.offset.reset=earliest resets to it.
    got = ck_consume(b, topic, {0: 1}, count=6, **{"auto.offset.reset": "earliest"})
    assert [g.offset for g in got] == list(range(4, 10))
    # With auto.offset.reset=error the consumer reports the out-of-range offset.
    with pytest.raises(ConsumeError) as ei:
        ck_consume(b, topic, {0: 1}, count=1, **{"auto.offset.reset": "error"})
    assert ei.value.error.code() in (
        ck.KafkaError._AUTO_OFFSET_RESET,
        ck.KafkaError.OFFSET_OUT_OF_RANGE,
    )
    with pytest.raises(ConsumeError) as ei2:
        kp_consume(b, topic, {0: 1}, count=1, auto_offset_reset="none")
    assert isinstance(
        ei2.value.error, kafka.errors.OffsetOutOfRangeError | kafka.errors.NoOffsetForPartitionError
    )
    # HW (-1) deletes everything; beyond the high watermark is OFFSET_OUT_OF_RANGE.
    beyond = ck.TopicPartition(topic, 0, 11)
    assert (
        ck_error_code(admin.delete_records([beyond])[beyond]) == ck.KafkaError.OFFSET_OUT_OF_RANGE
    )
    to_hw = ck.TopicPartition(topic, 0, ck.OFFSET_END)
    assert admin.delete_records([to_hw])[to_hw].result(DEADLINE_S).low_watermark == 10


def test_delete_records_aiokafka(admin_broker: BrokerProcess, topic: str) -> None:
    from aiokafka.admin import RecordsToDelete
    from aiokafka.structs import TopicPartition as AioTP

    b = admin_broker.bootstrap
    create_topic(b, topic, 1)
    ck_produce(b, topic, make_recs(5, partition=0))

    async def run() -> Any:
        a = AIOKafkaAdminClient(bootstrap_servers=b)
        await a.start()
        try:
            return await a.delete_records({AioTP(topic, 0): RecordsToDelete(before_offset=3)})
        finally:
            await a.close()

    r = asyncio.run(run())
    assert list(r.values()) == [3]


# ================================================================================ log dirs


def test_describe_log_dirs_kafka_python(
    kp_admin: kpa.KafkaAdminClient, admin_broker: BrokerProcess, topic: str
) -> None:
    b = admin_broker.bootstrap
    create_topic(b, topic, 1)
    ck_produce(b, topic, make_recs(20, size=100, partition=0))
    per_broker = kp_admin.describe_log_dirs()
    assert len(per_broker) == 1
    dirs = per_broker[0]["log_dirs"]
    [d] = [d for d in dirs if d["log_dir"] == str(admin_broker.data_dir)]
    assert d["error_code"] == 0
    [t] = [t for t in d["topics"] if t["name"] == topic]
    [p] = t["partitions"]
    assert p["partition_index"] == 0
    assert p["partition_size"] >= 20 * 100


# ================================================================================ kafka-python / aiokafka admin


def test_kafka_python_topic_lifecycle(
    kp_admin: kpa.KafkaAdminClient, admin_broker: BrokerProcess, topic: str
) -> None:
    kp_admin.create_topics({topic: {"num_partitions": 3, "configs": {"retention.ms": "999999"}}})
    wait_until(lambda: topic_partition_count(admin_broker.bootstrap, topic) == 3, "3 partitions")
    with pytest.raises(kafka.errors.TopicAlreadyExistsError):
        kp_admin.create_topics({topic: {"num_partitions": 1}})
    with pytest.raises(kafka.errors.InvalidTopicError):
        kp_admin.create_topics({"no good": {"num_partitions": 1}})
    cfg = kp_admin.describe_configs([kpa.ConfigResource("TOPIC", topic)], config_filter="all")
    assert cfg["topic"][topic]["retention.ms"]["value"] == "999999"
    kp_admin.alter_configs(
        [kpa.ConfigResource("TOPIC", topic, {"retention.ms": "888888"})], incremental=True
    )
    cfg = kp_admin.describe_configs([kpa.ConfigResource("TOPIC", topic)], config_filter="all")
    assert cfg["topic"][topic]["retention.ms"]["value"] == "888888"
    kp_admin.create_partitions({topic: 5})
    wait_until(lambda: topic_partition_count(admin_broker.bootstrap, topic) == 5, "5 partitions")
    with pytest.raises(kafka.errors.InvalidPartitionsError):
        kp_admin.create_partitions({topic: 2})
    kp_admin.delete_topics([topic])
    wait_until(lambda: topic not in kp_admin.list_topics(), f"{topic} deleted")
    with pytest.raises(kafka.errors.UnknownTopicOrPartitionError):
        kp_admin.delete_topics([topic])


def test_aiokafka_admin(admin_broker: BrokerProcess, topic: str) -> None:
    b = admin_broker.bootstrap

    async def run() -> None:
        a = AIOKafkaAdminClient(bootstrap_servers=b, request_timeout_ms=20_000)
        await a.start()
        try:
            await a.create_topics(
                [AioNewTopic(topic, 2, 1, topic_configs={"retention.ms": "555555"})]
            )
            assert topic in await a.list_topics()
            cfgs = await a.describe_configs([AioConfigResource(AioConfigResourceType.TOPIC, topic)])
            entries = {c[0]: c[1] for r in cfgs for res in r.resources for c in res[4]}
            assert entries["retention.ms"] == "555555"
            cluster = await a.describe_cluster()
            assert cluster["cluster_id"] and len(cluster["brokers"]) == 1
            await a.create_partitions({topic: AioNewPartitions(total_count=3)})
            await a.delete_topics([topic])
        finally:
            await a.close()

    asyncio.run(run())
    wait_until(lambda: topic not in list_topic_names(b), f"{topic} deleted")
