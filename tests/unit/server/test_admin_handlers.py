"""The admin handlers, called directly on a real broker in a temporary data directory."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strom.config import BrokerConfig, ConfigSource
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.alter_configs_request import (
    AlterableConfig,
    AlterConfigsRequest,
    AlterConfigsResource,
)
from strom.protocol.messages.create_partitions_request import (
    CreatePartitionsAssignment,
    CreatePartitionsRequest,
    CreatePartitionsTopic,
)
from strom.protocol.messages.create_topics_request import (
    CreatableReplicaAssignment,
    CreatableTopic,
    CreatableTopicConfig,
    CreateTopicsRequest,
)
from strom.protocol.messages.delete_records_request import (
    DeleteRecordsPartition,
    DeleteRecordsRequest,
    DeleteRecordsTopic,
)
from strom.protocol.messages.delete_topics_request import DeleteTopicsRequest, DeleteTopicState
from strom.protocol.messages.describe_cluster_request import DescribeClusterRequest
from strom.protocol.messages.describe_configs_request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)
from strom.protocol.messages.describe_log_dirs_request import (
    DescribableLogDirTopic,
    DescribeLogDirsRequest,
)
from strom.protocol.messages.incremental_alter_configs_request import (
    AlterableConfig as IncrementalConfig,
)
from strom.protocol.messages.incremental_alter_configs_request import (
    AlterConfigsResource as IncrementalResource,
)
from strom.protocol.messages.incremental_alter_configs_request import (
    IncrementalAlterConfigsRequest,
)
from strom.protocol.records.codec import Record, build_batch
from strom.protocol.records.validation import validate_batches
from strom.server.broker import Broker
from strom.server.context import RequestContext
from strom.server.handlers.alter_configs import handle_alter_configs
from strom.server.handlers.create_partitions import handle_create_partitions
from strom.server.handlers.create_topics import handle_create_topics
from strom.server.handlers.delete_records import handle_delete_records
from strom.server.handlers.delete_topics import handle_delete_topics
from strom.server.handlers.describe_cluster import handle_describe_cluster
from strom.server.handlers.describe_configs import handle_describe_configs
from strom.server.handlers.describe_log_dirs import handle_describe_log_dirs
from strom.server.handlers.incremental_alter_configs import handle_incremental_alter_configs
from strom.server.registry import HANDLERS

TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
ZERO_UUID = uuid.UUID(int=0)


def open_broker(data: Path, **settings: str) -> Broker:
    return Broker.open(BrokerConfig.load(None, {"log.dirs": str(data), **settings}))


def shut(broker: Broker) -> None:
    broker.logs.close()
    broker.io.shutdown(wait=True)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = open_broker(tmp_path / "data")
    yield b
    shut(b)


def ctx(broker: Broker, api_key: int, version: int) -> RequestContext:
    return RequestContext(broker, api_key, version, 1, "test", "127.0.0.1:1", bytearray())


def new_topic(
    name: str,
    partitions: int = 1,
    rf: int = 1,
    configs: dict[str, str | None] | None = None,
    assignments: list[list[int]] | None = None,
) -> CreatableTopic:
    return CreatableTopic(
        name=name,
        num_partitions=partitions,
        replication_factor=rf,
        assignments=[
            CreatableReplicaAssignment(partition_index=i, broker_ids=ids)
            for i, ids in enumerate(assignments or [])
        ],
        configs=[CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()],
    )


def create(
    broker: Broker, *topics: CreatableTopic, validate_only: bool = False, version: int = 7
) -> Any:
    request = CreateTopicsRequest(topics=list(topics), timeout_ms=1000, validate_only=validate_only)
    response = handle_create_topics(ctx(broker, 19, version), request)
    if inspect.iscoroutine(response):  # a single broker makes the logs in its worker pool
        return asyncio.run(response)
    return response


def codes(results: list[Any]) -> dict[str | None, int]:
    return {r.name: r.error_code for r in results}


def append(broker: Broker, topic: str, partition: int, count: int) -> None:
    log = broker.partition_log(topic, partition)
    assert log is not None
    start = log.log_end_offset
    buf = bytearray(
        build_batch([Record(start + i, 1_000 + i, None, b"v%d" % i) for i in range(count)])
    )
    log.append_as_leader(buf, validate_batches(buf), 0, 2_000)
    log.update_high_watermark(log.log_end_offset)


# --- registry ------------------------------------------------------------------------------


def test_versions_registered() -> None:
    expected = {19: (0, 7), 20: (0, 6), 21: (0, 2), 32: (0, 4), 33: (0, 2), 34: (0, 2), 35: (0, 4),
                37: (0, 3), 44: (0, 1), 60: (0, 1)}  # fmt: skip
    for key, (low, high) in expected.items():
        assert (HANDLERS[key].min_version, HANDLERS[key].max_version) == (low, high)


# --- CreateTopics --------------------------------------------------------------------------


def test_create_topic_exists_on_disk_and_describes_itself(broker: Broker, tmp_path: Path) -> None:
    response = create(broker, new_topic("orders", 3, 1, {"retention.ms": "1000"}))
    [result] = response.topics
    assert result.error_code == ErrorCode.NONE
    record = broker.metadata.get_topic("orders")
    assert record is not None and record.num_partitions == 3
    assert result.topic_id == record.topic_id != ZERO_UUID
    assert (result.num_partitions, result.replication_factor) == (3, 1)
    for p in range(3):
        assert (tmp_path / "data" / f"orders-{p}").is_dir()
    configs = {c.name: c for c in result.configs}
    assert configs["retention.ms"].value == "1000"
    assert configs["retention.ms"].config_source == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert configs["segment.bytes"].config_source == ConfigSource.DEFAULT_CONFIG
    assert not configs["cleanup.policy"].read_only


def test_create_defaults_come_from_the_broker(tmp_path: Path) -> None:
    b = open_broker(tmp_path / "d", **{"num.partitions": "4"})
    try:
        [result] = create(b, new_topic("t", -1, -1)).topics
        assert result.error_code == ErrorCode.NONE
        assert (result.num_partitions, result.replication_factor) == (4, 1)
        record = b.metadata.get_topic("t")
        assert record is not None and record.num_partitions == 4
    finally:
        shut(b)


def test_create_validate_only_creates_nothing(broker: Broker, tmp_path: Path) -> None:
    [result] = create(broker, new_topic("dry", 2), validate_only=True).topics
    assert result.error_code == ErrorCode.NONE
    assert result.num_partitions == 2
    assert result.topic_id == ZERO_UUID
    assert broker.metadata.get_topic("dry") is None
    assert not (tmp_path / "data" / "dry-0").exists()
    # Errors are still found when only validating.
    [bad] = create(broker, new_topic("dry", 0), validate_only=True).topics
    assert bad.error_code == ErrorCode.INVALID_PARTITIONS


def test_create_errors_per_topic(broker: Broker) -> None:
    create(broker, new_topic("taken"))
    create(broker, new_topic("a.b"))
    response = create(
        broker,
        new_topic("taken"),
        new_topic("bad/name"),
        new_topic("a_b"),
        new_topic("zero", 0),
        new_topic("neg", -2),
        new_topic("rf0", 1, 0),
        new_topic("rf2", 1, 2),
        new_topic("badcfg", 1, 1, {"retention.ms": "soon"}),
        new_topic("unknowncfg", 1, 1, {"no.such.key": "1"}),
        new_topic("nullcfg", 1, 1, {"retention.ms": None}),
        new_topic("fine"),
    )
    assert codes(response.topics) == {
        "taken": ErrorCode.TOPIC_ALREADY_EXISTS,
        "bad/name": ErrorCode.INVALID_TOPIC_EXCEPTION,
        "a_b": ErrorCode.INVALID_TOPIC_EXCEPTION,
        "zero": ErrorCode.INVALID_PARTITIONS,
        "neg": ErrorCode.INVALID_PARTITIONS,
        "rf0": ErrorCode.INVALID_REPLICATION_FACTOR,
        "rf2": ErrorCode.INVALID_REPLICATION_FACTOR,
        "badcfg": ErrorCode.INVALID_CONFIG,
        "unknowncfg": ErrorCode.INVALID_CONFIG,
        "nullcfg": ErrorCode.INVALID_CONFIG,
        "fine": ErrorCode.NONE,
    }
    for result in response.topics:
        if result.error_code != ErrorCode.NONE:
            assert result.error_message
            assert broker.metadata.get_topic(result.name) is None or result.name in ("taken",)
    assert set(broker.metadata.topics) == {"taken", "a.b", "fine"}


def test_create_duplicate_names_in_one_request(broker: Broker) -> None:
    response = create(broker, new_topic("twice"), new_topic("twice", 2), new_topic("once"))
    assert [(r.name, r.error_code) for r in response.topics] == [
        ("twice", ErrorCode.INVALID_REQUEST),
        ("once", ErrorCode.NONE),
    ]
    assert broker.metadata.get_topic("twice") is None


def test_create_manual_assignments(broker: Broker) -> None:
    node = broker.node.node_id
    response = create(
        broker,
        new_topic("manual", -1, -1, assignments=[[node], [node]]),
        new_topic("unknown-broker", -1, -1, assignments=[[node + 5]]),
        new_topic("repeat-broker", -1, -1, assignments=[[node, node]]),
        new_topic("empty", -1, -1, assignments=[[]]),
        new_topic("with-count", 2, -1, assignments=[[node]]),
        new_topic("with-rf", -1, 1, assignments=[[node]]),
    )
    assert codes(response.topics) == {
        "manual": ErrorCode.NONE,
        "unknown-broker": ErrorCode.INVALID_REPLICA_ASSIGNMENT,
        "repeat-broker": ErrorCode.INVALID_REPLICA_ASSIGNMENT,
        "empty": ErrorCode.INVALID_REPLICA_ASSIGNMENT,
        "with-count": ErrorCode.INVALID_REQUEST,
        "with-rf": ErrorCode.INVALID_REQUEST,
    }
    record = broker.metadata.get_topic("manual")
    assert record is not None and record.num_partitions == 2
    gap = CreatableTopic(
        name="gap",
        num_partitions=-1,
        replication_factor=-1,
        assignments=[CreatableReplicaAssignment(partition_index=1, broker_ids=[node])],
    )
    [result] = create(broker, gap).topics
    assert result.error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT


def test_created_topic_configs_survive_a_restart(tmp_path: Path) -> None:
    b = open_broker(tmp_path / "d")
    create(b, new_topic("kept", 2, 1, {"cleanup.policy": "compact", "segment.bytes": "1000000"}))
    shut(b)
    b = open_broker(tmp_path / "d")
    try:
        record = b.metadata.get_topic("kept")
        assert record is not None and record.num_partitions == 2
        assert record.configs == {"cleanup.policy": "compact", "segment.bytes": "1000000"}
        assert b.log_config("kept").compact
        [result] = create(b, new_topic("kept")).topics
        assert result.error_code == ErrorCode.TOPIC_ALREADY_EXISTS
    finally:
        shut(b)


# --- DeleteTopics --------------------------------------------------------------------------


def test_delete_topics_by_name(broker: Broker, tmp_path: Path) -> None:
    create(broker, new_topic("gone", 2), new_topic("stays"))
    session = broker.fetch_sessions.create()
    assert session is not None
    from strom.server.fetch_session import SessionPartition

    record = broker.metadata.get_topic("gone")
    assert record is not None
    session.partitions[("gone", 0)] = SessionPartition("gone", record.topic_id, 0, 0, 1000)
    request = DeleteTopicsRequest(topic_names=["gone", "nope"], timeout_ms=1000)
    response = handle_delete_topics(ctx(broker, 20, 5), request)
    assert codes(response.responses) == {
        "gone": ErrorCode.NONE,
        "nope": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    assert broker.metadata.get_topic("gone") is None
    assert broker.partition_log("gone", 0) is None
    assert not (tmp_path / "data" / "gone-0").exists()
    assert ("gone", 0) not in session.partitions
    assert broker.metadata.get_topic("stays") is not None


def test_delete_topics_by_id(broker: Broker) -> None:
    create(broker, new_topic("byid"), new_topic("both"))
    byid = broker.metadata.get_topic("byid")
    both = broker.metadata.get_topic("both")
    assert byid is not None and both is not None
    unknown = uuid.uuid4()
    request = DeleteTopicsRequest(
        topics=[
            DeleteTopicState(name=None, topic_id=byid.topic_id),
            DeleteTopicState(name=None, topic_id=unknown),
            DeleteTopicState(name="both", topic_id=both.topic_id),
            DeleteTopicState(name=None, topic_id=ZERO_UUID),
        ]
    )
    response = handle_delete_topics(ctx(broker, 20, 6), request)
    by_id = {r.topic_id: r for r in response.responses}
    assert by_id[byid.topic_id].error_code == ErrorCode.NONE
    assert by_id[byid.topic_id].name == "byid"
    assert by_id[unknown].error_code == ErrorCode.UNKNOWN_TOPIC_ID
    assert by_id[both.topic_id].error_code == ErrorCode.INVALID_REQUEST
    assert by_id[ZERO_UUID].error_code == ErrorCode.INVALID_REQUEST
    assert broker.metadata.get_topic("byid") is None
    assert broker.metadata.get_topic("both") is not None


def test_delete_topics_disabled(tmp_path: Path) -> None:
    b = open_broker(tmp_path / "d", **{"delete.topic.enable": "false"})
    try:
        create(b, new_topic("locked"))
        request = DeleteTopicsRequest(topic_names=["locked"])
        [v5] = handle_delete_topics(ctx(b, 20, 5), request).responses
        [v1] = handle_delete_topics(ctx(b, 20, 1), request).responses
        assert v5.error_code == ErrorCode.TOPIC_DELETION_DISABLED
        assert v1.error_code == ErrorCode.INVALID_REQUEST
        assert b.metadata.get_topic("locked") is not None
    finally:
        shut(b)


def test_deleted_topic_can_be_created_again(broker: Broker) -> None:
    create(broker, new_topic("again", 1))
    old = broker.metadata.get_topic("again")
    handle_delete_topics(ctx(broker, 20, 5), DeleteTopicsRequest(topic_names=["again"]))
    [result] = create(broker, new_topic("again", 2)).topics
    assert result.error_code == ErrorCode.NONE
    new = broker.metadata.get_topic("again")
    assert old is not None and new is not None and new.topic_id != old.topic_id


# --- CreatePartitions ----------------------------------------------------------------------


def grow(
    broker: Broker, *topics: CreatePartitionsTopic, validate_only: bool = False
) -> dict[str | None, int]:
    request = CreatePartitionsRequest(
        topics=list(topics), timeout_ms=1000, validate_only=validate_only
    )
    return codes(handle_create_partitions(ctx(broker, 37, 3), request).results)


def test_create_partitions(broker: Broker, tmp_path: Path) -> None:
    create(broker, new_topic("grow", 1), new_topic("same", 2))
    node = broker.node.node_id
    assert grow(
        broker,
        CreatePartitionsTopic(name="grow", count=3, assignments=None),
        CreatePartitionsTopic(name="same", count=2, assignments=None),
        CreatePartitionsTopic(name="missing", count=2, assignments=None),
    ) == {
        "grow": ErrorCode.NONE,
        "same": ErrorCode.INVALID_PARTITIONS,
        "missing": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    record = broker.metadata.get_topic("grow")
    assert record is not None and record.num_partitions == 3
    assert (tmp_path / "data" / "grow-2").is_dir()
    assert grow(broker, CreatePartitionsTopic(name="grow", count=2, assignments=None)) == {
        "grow": ErrorCode.INVALID_PARTITIONS
    }
    # Assignments: one replica list per new partition, with known brokers.
    assert grow(
        broker,
        CreatePartitionsTopic(
            name="grow", count=5, assignments=[CreatePartitionsAssignment(broker_ids=[node])]
        ),
    ) == {"grow": ErrorCode.INVALID_REPLICA_ASSIGNMENT}
    assert grow(
        broker,
        CreatePartitionsTopic(
            name="grow", count=4, assignments=[CreatePartitionsAssignment(broker_ids=[node + 1])]
        ),
    ) == {"grow": ErrorCode.INVALID_REPLICA_ASSIGNMENT}
    assert grow(
        broker,
        CreatePartitionsTopic(
            name="grow", count=4, assignments=[CreatePartitionsAssignment(broker_ids=[node])]
        ),
    ) == {"grow": ErrorCode.NONE}
    record = broker.metadata.get_topic("grow")
    assert record is not None and record.num_partitions == 4


def test_create_partitions_validate_only_and_duplicates(broker: Broker) -> None:
    create(broker, new_topic("dry", 1))
    assert grow(
        broker, CreatePartitionsTopic(name="dry", count=5, assignments=None), validate_only=True
    ) == {"dry": ErrorCode.NONE}
    record = broker.metadata.get_topic("dry")
    assert record is not None and record.num_partitions == 1
    assert broker.partition_log("dry", 1) is None
    assert grow(
        broker,
        CreatePartitionsTopic(name="dry", count=2, assignments=None),
        CreatePartitionsTopic(name="dry", count=3, assignments=None),
    ) == {"dry": ErrorCode.INVALID_REQUEST}
    record = broker.metadata.get_topic("dry")
    assert record is not None and record.num_partitions == 1


# --- DescribeConfigs -----------------------------------------------------------------------


def describe(
    broker: Broker,
    *resources: tuple[int, str, list[str] | None],
    version: int = 4,
    synonyms: bool = False,
    documentation: bool = False,
) -> Any:
    request = DescribeConfigsRequest(
        resources=[
            DescribeConfigsResource(resource_type=t, resource_name=n, configuration_keys=keys)
            for t, n, keys in resources
        ],
        include_synonyms=synonyms,
        include_documentation=documentation,
    )
    return handle_describe_configs(ctx(broker, 32, version), request).results


def test_describe_topic_configs(broker: Broker) -> None:
    create(broker, new_topic("described", 1, 1, {"retention.ms": "5000"}))
    [result] = describe(broker, (TOPIC, "described", None))
    assert result.error_code == ErrorCode.NONE
    entries = {c.name: c for c in result.configs}
    assert entries["retention.ms"].value == "5000"
    assert entries["retention.ms"].config_source == ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert not entries["retention.ms"].is_default
    assert entries["segment.bytes"].config_source == ConfigSource.DEFAULT_CONFIG
    assert entries["segment.bytes"].synonyms == []
    assert entries["segment.bytes"].documentation is None
    assert entries["cleanup.policy"].config_type == 7  # LIST

    [filtered] = describe(
        broker,
        (TOPIC, "described", ["retention.ms", "no.such.key"]),
        synonyms=True,
        documentation=True,
    )
    [entry] = filtered.configs
    assert entry.name == "retention.ms"
    assert entry.documentation
    assert [(s.name, s.value, s.source) for s in entry.synonyms] == [
        ("retention.ms", "5000", ConfigSource.DYNAMIC_TOPIC_CONFIG),
        ("log.retention.hours", "168", ConfigSource.DEFAULT_CONFIG),
    ]


def test_describe_config_errors(broker: Broker) -> None:
    node = str(broker.node.node_id)
    results = describe(
        broker,
        (TOPIC, "missing", None),
        (TOPIC, "bad/name", None),
        (BROKER, "77", None),
        (BROKER, "abc", None),
        (BROKER_LOGGER, node, None),
        (99, "x", None),
    )
    assert [r.error_code for r in results] == [
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.INVALID_TOPIC_EXCEPTION,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.INVALID_REQUEST,
    ]
    assert all(r.error_message for r in results)
    assert (results[0].resource_type, results[0].resource_name) == (TOPIC, "missing")


def test_describe_broker_configs(broker: Broker) -> None:
    node = str(broker.node.node_id)
    [result] = describe(broker, (BROKER, node, ["log.dirs", "log.retention.ms", "num.partitions"]))
    assert result.error_code == ErrorCode.NONE
    entries = {c.name: c for c in result.configs}
    assert set(entries) == {"log.dirs", "log.retention.ms", "num.partitions"}
    assert entries["log.dirs"].config_source == ConfigSource.STATIC_BROKER_CONFIG
    assert entries["log.dirs"].read_only
    assert not entries["log.retention.ms"].read_only
    [everything] = describe(broker, (BROKER, node, None))
    assert len(everything.configs) > 50
    # The cluster-default resource lists only dynamic defaults that are set: none yet.
    [default] = describe(broker, (BROKER, "", None))
    assert default.error_code == ErrorCode.NONE and default.configs == []


# --- AlterConfigs --------------------------------------------------------------------------


def alter(
    broker: Broker, *resources: tuple[int, str, dict[str, str | None]], validate_only: bool = False
) -> list[int]:
    request = AlterConfigsRequest(
        resources=[
            AlterConfigsResource(
                resource_type=t,
                resource_name=n,
                configs=[AlterableConfig(name=k, value=v) for k, v in configs.items()],
            )
            for t, n, configs in resources
        ],
        validate_only=validate_only,
    )
    return [r.error_code for r in handle_alter_configs(ctx(broker, 33, 2), request).responses]


def test_alter_configs_replaces_all_topic_overrides(tmp_path: Path) -> None:
    b = open_broker(tmp_path / "d")
    create(b, new_topic("t", 1, 1, {"retention.ms": "1000", "segment.bytes": "100000"}))
    assert alter(b, (TOPIC, "t", {"cleanup.policy": "compact"})) == [ErrorCode.NONE]
    record = b.metadata.get_topic("t")
    assert record is not None and record.configs == {"cleanup.policy": "compact"}
    assert b.log_config("t").compact
    log = b.partition_log("t", 0)
    assert log is not None and log.config.compact
    assert alter(b, (TOPIC, "t", {"retention.ms": "later"})) == [ErrorCode.INVALID_CONFIG]
    assert alter(b, (TOPIC, "t", {"retention.ms": "1"}), validate_only=True) == [ErrorCode.NONE]
    assert alter(b, (TOPIC, "missing", {})) == [ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]
    assert alter(b, (TOPIC, "t", {}), (TOPIC, "t", {})) == [ErrorCode.INVALID_REQUEST] * 2
    record = b.metadata.get_topic("t")
    assert record is not None and record.configs == {"cleanup.policy": "compact"}
    shut(b)
    b = open_broker(tmp_path / "d")
    try:
        record = b.metadata.get_topic("t")
        assert record is not None and record.configs == {"cleanup.policy": "compact"}
    finally:
        shut(b)


def test_alter_broker_dynamic_configs_persist(tmp_path: Path) -> None:
    b = open_broker(tmp_path / "d")
    node = str(b.node.node_id)
    create(b, new_topic("t"))
    assert alter(b, (BROKER, node, {"log.retention.ms": "12345"})) == [ErrorCode.NONE]
    assert b.config.get("log.retention.ms") == 12345
    assert b.log_config("t").retention_ms == 12345
    assert alter(b, (BROKER, node, {"log.dirs": "/elsewhere"})) == [ErrorCode.INVALID_CONFIG]
    assert alter(b, (BROKER, node, {"log.retention.ms": "x"})) == [ErrorCode.INVALID_CONFIG]
    assert alter(b, (BROKER, "", {"log.retention.bytes": "999"})) == [ErrorCode.NONE]
    assert alter(b, (BROKER, "42", {})) == [ErrorCode.INVALID_REQUEST]
    assert alter(b, (BROKER_LOGGER, node, {})) == [ErrorCode.INVALID_REQUEST]
    assert alter(b, (BROKER, node, {"log.retention.ms": "1"}), validate_only=True) == [
        ErrorCode.NONE
    ]
    assert b.config.get("log.retention.ms") == 12345
    shut(b)
    b = open_broker(tmp_path / "d")
    try:
        assert b.config.get("log.retention.ms") == 12345
        assert b.config.get("log.retention.bytes") == 999
        [result] = describe(b, (BROKER, node, ["log.retention.ms"]))
        assert result.configs[0].config_source == ConfigSource.DYNAMIC_BROKER_CONFIG
        [default] = describe(b, (BROKER, "", None))
        assert [c.name for c in default.configs] == ["log.retention.bytes"]
    finally:
        shut(b)


# --- IncrementalAlterConfigs ---------------------------------------------------------------


def incremental(
    broker: Broker,
    resource_type: int,
    name: str,
    ops: list[tuple[str, int, str | None]],
    validate_only: bool = False,
) -> int:
    request = IncrementalAlterConfigsRequest(
        resources=[
            IncrementalResource(
                resource_type=resource_type,
                resource_name=name,
                configs=[
                    IncrementalConfig(name=k, config_operation=op, value=v) for k, op, v in ops
                ],
            )
        ],
        validate_only=validate_only,
    )
    [response] = handle_incremental_alter_configs(ctx(broker, 44, 1), request).responses
    return int(response.error_code)


def overrides(broker: Broker, topic: str) -> dict[str, str]:
    record = broker.metadata.get_topic(topic)
    assert record is not None
    return dict(record.configs)


def test_incremental_alter_topic(broker: Broker) -> None:
    create(broker, new_topic("inc", 1, 1, {"segment.bytes": "100000"}))
    assert incremental(broker, TOPIC, "inc", [("retention.ms", SET, "777")]) == ErrorCode.NONE
    assert overrides(broker, "inc") == {"segment.bytes": "100000", "retention.ms": "777"}
    assert incremental(broker, TOPIC, "inc", [("segment.bytes", DELETE, None)]) == ErrorCode.NONE
    assert overrides(broker, "inc") == {"retention.ms": "777"}
    # APPEND starts from the effective value (delete) and skips elements already there.
    assert incremental(broker, TOPIC, "inc", [("cleanup.policy", APPEND, "compact,delete")]) == 0
    assert overrides(broker, "inc")["cleanup.policy"] == "delete,compact"
    assert incremental(broker, TOPIC, "inc", [("cleanup.policy", SUBTRACT, "delete")]) == 0
    assert overrides(broker, "inc")["cleanup.policy"] == "compact"
    assert broker.log_config("inc").compact and not broker.log_config("inc").delete
    # Errors.
    assert incremental(broker, TOPIC, "inc", [("retention.ms", APPEND, "1")]) == (
        ErrorCode.INVALID_CONFIG
    )
    assert incremental(broker, TOPIC, "inc", [("retention.ms", SET, "x")]) == (
        ErrorCode.INVALID_CONFIG
    )
    assert incremental(broker, TOPIC, "inc", [("no.such", SET, "1")]) == ErrorCode.INVALID_CONFIG
    assert incremental(broker, TOPIC, "inc", [("retention.ms", SET, None)]) == (
        ErrorCode.INVALID_REQUEST
    )
    assert (
        incremental(
            broker, TOPIC, "inc", [("retention.ms", SET, "1"), ("retention.ms", DELETE, None)]
        )
        == ErrorCode.INVALID_REQUEST
    )
    assert incremental(broker, TOPIC, "nope", [("retention.ms", SET, "1")]) == (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    )
    # validate_only changes nothing.
    assert incremental(broker, TOPIC, "inc", [("retention.ms", SET, "1")], True) == ErrorCode.NONE
    assert overrides(broker, "inc") == {"retention.ms": "777", "cleanup.policy": "compact"}


def test_incremental_alter_broker(broker: Broker) -> None:
    node = str(broker.node.node_id)
    assert incremental(broker, BROKER, node, [("log.retention.bytes", SET, "5000")]) == 0
    assert broker.config.get("log.retention.bytes") == 5000
    assert incremental(broker, BROKER, node, [("log.cleanup.policy", APPEND, "compact")]) == 0
    assert broker.config.get("log.cleanup.policy") == ["delete", "compact"]
    assert incremental(broker, BROKER, node, [("log.retention.bytes", DELETE, None)]) == 0
    assert broker.config.get("log.retention.bytes") == -1
    assert incremental(broker, BROKER, node, [("broker.id", SET, "3")]) == ErrorCode.INVALID_CONFIG
    assert incremental(broker, BROKER_LOGGER, node, [("root", SET, "DEBUG")]) == (
        ErrorCode.INVALID_REQUEST
    )


# --- DescribeCluster -----------------------------------------------------------------------


def test_describe_cluster(broker: Broker) -> None:
    response = handle_describe_cluster(ctx(broker, 60, 1), DescribeClusterRequest(endpoint_type=1))
    assert response.error_code == ErrorCode.NONE
    assert response.cluster_id == broker.metadata.cluster_id
    assert response.controller_id == broker.node.node_id
    [node] = response.brokers
    assert (node.broker_id, node.host, node.port) == (
        broker.node.node_id,
        broker.node.host,
        broker.node.port,
    )
    controllers = handle_describe_cluster(
        ctx(broker, 60, 1), DescribeClusterRequest(endpoint_type=2)
    )
    assert controllers.error_code == ErrorCode.MISMATCHED_ENDPOINT_TYPE
    v0 = handle_describe_cluster(ctx(broker, 60, 0), DescribeClusterRequest(endpoint_type=2))
    assert v0.error_code == ErrorCode.NONE  # v0 has no endpoint type: brokers


# --- DeleteRecords -------------------------------------------------------------------------


def delete_records(
    broker: Broker, topic: str, *offsets: tuple[int, int]
) -> dict[int, tuple[int, int]]:
    request = DeleteRecordsRequest(
        topics=[
            DeleteRecordsTopic(
                name=topic,
                partitions=[
                    DeleteRecordsPartition(partition_index=p, offset=o) for p, o in offsets
                ],
            )
        ],
        timeout_ms=1000,
    )
    [result] = handle_delete_records(ctx(broker, 21, 2), request).topics
    return {p.partition_index: (p.error_code, p.low_watermark) for p in result.partitions}


def test_delete_records_moves_log_start(broker: Broker, tmp_path: Path) -> None:
    create(broker, new_topic("dr", 2))
    append(broker, "dr", 0, 10)
    append(broker, "dr", 1, 4)
    assert delete_records(broker, "dr", (0, 6), (1, -1), (7, 0)) == {
        0: (ErrorCode.NONE, 6),
        1: (ErrorCode.NONE, 4),
        7: (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1),
    }
    log = broker.partition_log("dr", 0)
    assert log is not None and log.log_start_offset == 6
    # Below the current start: nothing changes; past the high watermark: out of range.
    assert delete_records(broker, "dr", (0, 3)) == {0: (ErrorCode.NONE, 6)}
    assert delete_records(broker, "dr", (0, 11)) == {0: (ErrorCode.OFFSET_OUT_OF_RANGE, -1)}
    assert delete_records(broker, "dr", (0, -5)) == {0: (ErrorCode.OFFSET_OUT_OF_RANGE, -1)}
    assert delete_records(broker, "missing", (0, 0)) == {
        0: (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1)
    }


def test_delete_records_refused_for_compacted_topics(broker: Broker) -> None:
    create(broker, new_topic("compacted", 1, 1, {"cleanup.policy": "compact"}))
    append(broker, "compacted", 0, 3)
    assert delete_records(broker, "compacted", (0, 1)) == {0: (ErrorCode.POLICY_VIOLATION, -1)}


def test_delete_records_wakes_waiting_fetches(broker: Broker) -> None:
    create(broker, new_topic("woken"))
    append(broker, "woken", 0, 3)
    woken: list[object] = []
    real_notify = broker.fetch_purgatory.notify

    def notify(key: Any) -> int:
        woken.append(key)
        return real_notify(key)

    broker.fetch_purgatory.notify = notify  # type: ignore[method-assign]
    delete_records(broker, "woken", (0, 2))
    assert ("woken", 0) in woken


# --- DescribeLogDirs -----------------------------------------------------------------------


def test_describe_log_dirs(broker: Broker, tmp_path: Path) -> None:
    create(broker, new_topic("sized", 2), new_topic("other"))
    append(broker, "sized", 1, 5)
    response = handle_describe_log_dirs(ctx(broker, 35, 4), DescribeLogDirsRequest(topics=None))
    assert response.error_code == ErrorCode.NONE
    [result] = response.results
    assert result.error_code == ErrorCode.NONE
    assert result.log_dir == str((tmp_path / "data").absolute())
    assert result.total_bytes > 0 and result.usable_bytes >= 0
    topics = {t.name: {p.partition_index: p for p in t.partitions} for t in result.topics}
    assert set(topics) == {"sized", "other"}
    assert topics["sized"][0].partition_size == 0
    assert topics["sized"][1].partition_size > 0
    assert topics["sized"][1].offset_lag == 0
    assert not topics["sized"][1].is_future_key

    only = DescribeLogDirsRequest(
        topics=[
            DescribableLogDirTopic(topic="sized", partitions=[1, 9]),
            DescribableLogDirTopic(topic="ghost", partitions=[0]),
        ]
    )
    [narrow] = handle_describe_log_dirs(ctx(broker, 35, 1), only).results
    assert [(t.name, [p.partition_index for p in t.partitions]) for t in narrow.topics] == [
        ("sized", [1])
    ]


# --- every answer encodes at every version handled -----------------------------------------


def test_answers_encode_at_every_version(broker: Broker) -> None:
    node = str(broker.node.node_id)
    create(broker, new_topic("enc", 2, 1, {"retention.ms": "1000"}))
    append(broker, "enc", 0, 3)
    requests: dict[int, Any] = {
        19: CreateTopicsRequest(
            topics=[new_topic("enc"), new_topic("bad/name"), new_topic("fresh", 1)],
            validate_only=True,
        ),
        20: DeleteTopicsRequest(
            topics=[DeleteTopicState(name=None, topic_id=uuid.uuid4())], topic_names=["nope"]
        ),
        21: DeleteRecordsRequest(
            topics=[
                DeleteRecordsTopic(
                    name="enc", partitions=[DeleteRecordsPartition(partition_index=0, offset=1)]
                )
            ]
        ),
        32: DescribeConfigsRequest(
            resources=[
                DescribeConfigsResource(
                    resource_type=TOPIC, resource_name="enc", configuration_keys=None
                ),
                DescribeConfigsResource(
                    resource_type=BROKER, resource_name=node, configuration_keys=None
                ),
                DescribeConfigsResource(
                    resource_type=TOPIC, resource_name="nope", configuration_keys=None
                ),
            ],
            include_synonyms=True,
            include_documentation=True,
        ),
        33: AlterConfigsRequest(
            resources=[AlterConfigsResource(resource_type=TOPIC, resource_name="enc")],
            validate_only=True,
        ),
        35: DescribeLogDirsRequest(topics=None),
        37: CreatePartitionsRequest(
            topics=[CreatePartitionsTopic(name="enc", count=3, assignments=None)],
            validate_only=True,
        ),
        44: IncrementalAlterConfigsRequest(
            resources=[IncrementalResource(resource_type=TOPIC, resource_name="enc")],
            validate_only=True,
        ),
        60: DescribeClusterRequest(),
    }
    for key, request in requests.items():
        handler = HANDLERS[key]
        for version in range(handler.min_version, handler.max_version + 1):
            response = handler.fn(ctx(broker, key, version), request)
            data = response.encode(version)
            again = type(response).decode(data, version)
            assert type(again) is type(response)
