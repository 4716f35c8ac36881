"""The single-broker metadata store."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from strom.cluster.features import FinalizedFeatures, default_finalized
from strom.cluster.ids import kafka_uuid_str, parse_kafka_uuid, random_kafka_uuid
from strom.cluster.local_metadata import (
    FILE_NAME,
    CorruptMetadataError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    LocalMetadata,
    TopicExistsError,
    UnknownTopicError,
)


def test_kafka_uuid_text() -> None:
    value = uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
    text = kafka_uuid_str(value)
    assert len(text) == 22 and "=" not in text
    assert text == "Dx4tPEtaaXiHlqW0w9Lh8A"
    assert parse_kafka_uuid(text) == value
    assert kafka_uuid_str(uuid.UUID(int=0)) == "AAAAAAAAAAAAAAAAAAAAAA"
    for bad in ("", "short", "Dx4tPEtaaXiHlqW0w9Lh8A=", "Dx4tPEtaaXiHlqW0w9Lh8!"):
        with pytest.raises(ValueError):
            parse_kafka_uuid(bad)


def test_random_ids_avoid_reserved_and_leading_dash() -> None:
    for _ in range(500):
        value = random_kafka_uuid()
        assert value.int > 1
        assert not kafka_uuid_str(value).startswith("-")


def test_fresh_store_gets_a_stable_cluster_id(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = LocalMetadata.load(data)
    assert len(store.cluster_id) == 22
    assert (data / FILE_NAME).exists()
    assert LocalMetadata.load(data).cluster_id == store.cluster_id
    assert store.topics == {}


def test_topics_persist(tmp_path: Path) -> None:
    store = LocalMetadata.load(tmp_path)
    a = store.create_topic("orders", 3, 1, {"retention.ms": "1000"})
    b = store.create_topic("events", 1, 1, {})
    assert store.get_topic("orders") == a
    assert store.topic_by_id(b.topic_id) == ("events", b)
    assert a.topic_id != b.topic_id

    again = LocalMetadata.load(tmp_path)
    assert dict(again.topics) == {"orders": a, "events": b}
    found = again.topic_by_id(a.topic_id)
    assert found == ("orders", a)
    assert found is not None and (found.name, found.record) == ("orders", a)


def test_topics_view_is_read_only(tmp_path: Path) -> None:
    store = LocalMetadata.load(tmp_path)
    with pytest.raises(TypeError):
        store.topics["x"] = None  # type: ignore[index]


def test_create_errors(tmp_path: Path) -> None:
    store = LocalMetadata.load(tmp_path)
    store.create_topic("t", 1, 1)
    with pytest.raises(TopicExistsError):
        store.create_topic("t", 1, 1)
    with pytest.raises(InvalidTopicError):
        store.create_topic("bad name", 1, 1)
    with pytest.raises(InvalidPartitionsError):
        store.create_topic("u", 0, 1)
    with pytest.raises(InvalidReplicationFactorError):
        store.create_topic("u", 1, 0)
    assert set(store.topics) == {"t"}


def test_delete_alter_and_grow(tmp_path: Path) -> None:
    store = LocalMetadata.load(tmp_path)
    t = store.create_topic("t", 2, 1)
    grown = store.set_partition_count("t", 5)
    assert grown.num_partitions == 5 and grown.topic_id == t.topic_id
    with pytest.raises(InvalidPartitionsError):
        store.set_partition_count("t", 4)
    with pytest.raises(InvalidPartitionsError):
        store.set_partition_count("t", 5)
    store.set_topic_configs("t", {"cleanup.policy": "compact"})
    assert LocalMetadata.load(tmp_path).get_topic("t") == grown.__class__(
        t.topic_id, 5, 1, {"cleanup.policy": "compact"}
    )
    store.delete_topic("t")
    assert store.get_topic("t") is None and store.topic_by_id(t.topic_id) is None
    assert LocalMetadata.load(tmp_path).topics == {}
    with pytest.raises(UnknownTopicError):
        store.delete_topic("t")
    with pytest.raises(UnknownTopicError):
        store.set_topic_configs("t", {})


def test_dynamic_broker_configs(tmp_path: Path) -> None:
    store = LocalMetadata.load(tmp_path)
    store.set_dynamic_broker_configs(0, {"log.retention.ms": "5"})
    store.set_dynamic_broker_configs(None, {"message.max.bytes": "10"})
    again = LocalMetadata.load(tmp_path)
    assert again.dynamic_configs_for(0) == {"log.retention.ms": "5"}
    assert again.dynamic_configs_for(None) == {"message.max.bytes": "10"}
    assert again.dynamic_configs_for(7) == {}
    assert dict(again.dynamic_broker_configs["0"]) == {"log.retention.ms": "5"}


def test_consumer_offsets_of_offset_commit_v0(tmp_path: Path) -> None:
    store = LocalMetadata.load(tmp_path)
    store.set_consumer_offsets("g", {("t", 0): 5, ("t", 1): 6, ("u", 0): 7})
    store.set_consumer_offsets("g", {("t", 0): 8})
    store.set_consumer_offsets("h", {})
    again = LocalMetadata.load(tmp_path)
    assert [again.consumer_offset("g", "t", p) for p in (0, 1, 2)] == [8, 6, None]
    assert again.consumer_offset("g", "u", 0) == 7
    assert again.consumer_offset("h", "t", 0) is None
    doc = json.loads((tmp_path / FILE_NAME).read_text())
    assert doc["consumer_offsets"] == {"g": {"t": {"0": 8, "1": 6}, "u": {"0": 7}}}


def test_finalized_features(tmp_path: Path) -> None:
    # A new store finalizes every supported feature at its highest level, epoch 0.
    store = LocalMetadata.load(tmp_path)
    assert store.finalized_features == FinalizedFeatures(default_finalized(), 0)
    written = store.set_finalized_features({"group.version": 1})
    assert written == FinalizedFeatures({"group.version": 1}, 1)
    assert store.set_finalized_features({}).epoch == 2
    again = LocalMetadata.load(tmp_path)
    assert again.finalized_features == FinalizedFeatures({}, 2)
    doc = json.loads((tmp_path / FILE_NAME).read_text())
    assert doc["features"] == {"epoch": 2, "finalized": {}}


def test_file_written_before_feature_versioning_gets_the_defaults(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text(
        json.dumps({"version": 1, "cluster_id": "AAAAAAAAAAAAAAAAAAAAAA", "topics": {}})
    )
    store = LocalMetadata.load(tmp_path)
    assert store.finalized_features == FinalizedFeatures(default_finalized(), 0)
    assert json.loads((tmp_path / FILE_NAME).read_text())["features"]["epoch"] == 0


def test_failed_write_keeps_memory_consistent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalMetadata.load(tmp_path)
    store.create_topic("keep", 1, 1)

    def boom(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("strom.cluster.atomic_file.os.fsync", boom)
    with pytest.raises(OSError):
        store.create_topic("lost", 1, 1)
    with pytest.raises(OSError):
        store.delete_topic("keep")
    assert set(store.topics) == {"keep"}
    with pytest.raises(OSError):
        store.set_consumer_offsets("g", {("keep", 0): 1})
    assert store.consumer_offset("g", "keep", 0) is None
    before = store.finalized_features
    with pytest.raises(OSError):
        store.set_finalized_features({})
    assert store.finalized_features == before


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        json.dumps({"version": 99, "cluster_id": "x", "topics": {}}),
        json.dumps({"version": 1, "cluster_id": "AAAAAAAAAAAAAAAAAAAAAA", "topics": {"t": {}}}),
        json.dumps(
            {
                "version": 1,
                "cluster_id": "AAAAAAAAAAAAAAAAAAAAAA",
                "topics": {"t": {"topic_id": "bad", "num_partitions": 1, "replication_factor": 1}},
            }
        ),
        json.dumps(
            {
                "version": 1,
                "cluster_id": "AAAAAAAAAAAAAAAAAAAAAA",
                "topics": {},
                "consumer_offsets": {"g": {"t": {"0": "five"}}},
            }
        ),
        json.dumps(
            {
                "version": 1,
                "cluster_id": "AAAAAAAAAAAAAAAAAAAAAA",
                "topics": {},
                "features": {"epoch": 0, "finalized": {"group.version": 0}},
            }
        ),
        json.dumps(
            {
                "version": 1,
                "cluster_id": "AAAAAAAAAAAAAAAAAAAAAA",
                "topics": {},
                "features": {"epoch": -1, "finalized": {}},
            }
        ),
    ],
)
def test_corrupt_file_is_an_error_naming_it(tmp_path: Path, content: str) -> None:
    (tmp_path / FILE_NAME).write_text(content)
    with pytest.raises(CorruptMetadataError, match=FILE_NAME):
        LocalMetadata.load(tmp_path)
    assert (tmp_path / FILE_NAME).read_text() == content  # left untouched for the operator


def test_no_temporary_file_left_behind(tmp_path: Path) -> None:
    store = LocalMetadata.load(tmp_path)
    store.create_topic("t", 1, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE_NAME]


def test_security_store_failed_write_keeps_memory_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strom.cluster.local_security import LocalSecurityStore
    from strom.security.acl import (
        AccessControlEntry,
        AclOperation,
        AclPermissionType,
        PatternType,
        ResourcePattern,
        ResourceType,
    )

    store = LocalSecurityStore.load(tmp_path)
    pattern = ResourcePattern(ResourceType.TOPIC, "t", PatternType.LITERAL)
    entry = AccessControlEntry("User:a", "*", AclOperation.READ, AclPermissionType.ALLOW)
    store.update_acls(pattern, lambda current: current | {entry})
    store.set_entity_configs({"users/a": {"producer_byte_rate": "1024"}})

    def boom(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("strom.cluster.atomic_file.os.fsync", boom)
    with pytest.raises(OSError):
        store.update_acls(pattern, lambda current: frozenset())
    with pytest.raises(OSError):
        store.set_entity_configs({"users/a": {}})
    assert store.all_acls() == {pattern: frozenset({entry})}
    assert store.entity_configs() == {"users/a": {"producer_byte_rate": "1024"}}
    monkeypatch.undo()
    reloaded = LocalSecurityStore.load(tmp_path)
    assert reloaded.all_acls() == store.all_acls()
    assert reloaded.entity_configs() == store.entity_configs()
