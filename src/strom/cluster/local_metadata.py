"""Single-broker metadata: the cluster id, the topics, dynamic broker configs, the offsets of
OffsetCommit v0 and the finalized features (with their epoch) in one JSON file.

The file (`strom-metadata.json` in the first log dir) is small and changes rarely (topic created,
deleted, altered; an old client's v0 commit), so every change rewrites it whole: write a temporary file, fsync it, rename it
over the old one, fsync the directory. A crash leaves either the old or the new file, never a mix.

The store keeps no locks: like a partition log it is changed by one caller at a time (the event
loop). A write blocks for an fsync, which is acceptable for admin operations.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from strom.cluster.atomic_file import write_atomically
from strom.cluster.features import FinalizedFeatures, default_finalized
from strom.cluster.ids import kafka_uuid_str, new_cluster_id, parse_kafka_uuid, random_kafka_uuid
from strom.cluster.topic_names import validate_topic_name

FILE_NAME = "strom-metadata.json"
FORMAT_VERSION = 1


class MetadataError(Exception):
    """Base of the store's errors."""


class CorruptMetadataError(MetadataError):
    """The metadata file exists but cannot be read back; the broker must not start over it."""


class TopicExistsError(MetadataError):
    pass


class UnknownTopicError(MetadataError):
    pass


class InvalidTopicError(MetadataError):
    pass


class InvalidPartitionsError(MetadataError):
    pass


class InvalidReplicationFactorError(MetadataError):
    pass


@dataclass(frozen=True, slots=True)
class TopicRecord:
    topic_id: uuid.UUID
    num_partitions: int
    replication_factor: int
    configs: dict[str, str] = field(default_factory=dict)  # overrides only; treat as read-only


class TopicLookup(NamedTuple):
    """A topic found by id: unpacks as `(name, record)`, or use `.name` / `.record`."""

    name: str
    record: TopicRecord


class LocalMetadata:
    """The metadata of a single-broker cluster, persisted on every change."""

    def __init__(
        self,
        path: Path,
        cluster_id: str,
        topics: dict[str, TopicRecord],
        dynamic_broker_configs: dict[str, dict[str, str]],
        next_producer_id: int = 0,
        consumer_offsets: dict[str, dict[str, dict[int, int]]] | None = None,
        features: FinalizedFeatures | None = None,
    ) -> None:
        self._path = path
        self._cluster_id = cluster_id
        self._topics = topics
        self._by_id = {t.topic_id: name for name, t in topics.items()}
        # Key "" holds the cluster-wide defaults, str(broker id) a broker's own values (Kafka's
        # layout for the default and per-broker config resources).
        self._dynamic = dynamic_broker_configs
        # group id -> group configs (IncrementalAlterConfigs on GROUP resources)
        self._group_configs: dict[str, dict[str, str]] = {}
        # User -> its config: SCRAM credentials in Kafka's form (salted and hashed), by
        # mechanism, as a cluster keeps them in /config/users/<user>.
        self._users: dict[str, dict[str, str]] = {}
        # Producer ids are handed out in reserved blocks; this is the first id of the next
        # block, so no id is ever given twice, even across a crash.
        self._next_producer_id = next_producer_id
        # {group: {topic: {partition: offset}}}: what a cluster keeps in ZooKeeper under
        # /consumers/<group>/offsets (OffsetCommit v0), apart from the group coordinator's.
        self._consumer_offsets = consumer_offsets or {}
        # What a cluster keeps in the /feature znode: a file without them (new, or written
        # before feature versioning) starts with every supported feature at its highest
        # level, as Kafka's controller creates the znode; the epoch counts changes from 0.
        self._features = features or FinalizedFeatures(default_finalized(), 0)

    # --- loading and saving ---------------------------------------------------------------

    @classmethod
    def load(cls, path_dir: Path) -> LocalMetadata:
        """Opens the store in `path_dir`, creating it (with a new cluster id) on first start."""
        path = path_dir / FILE_NAME
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            path_dir.mkdir(parents=True, exist_ok=True)
            store = cls(path, new_cluster_id(), {}, {})
            store._save()
            return store
        except (OSError, UnicodeDecodeError) as exc:
            raise CorruptMetadataError(f"cannot read metadata file {path}: {exc}") from exc
        try:
            doc = json.loads(text)
            store = cls._decode(path, doc)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptMetadataError(
                f"metadata file {path} is corrupt ({exc}); refusing to start so that no topic is "
                "lost. Restore it from a backup or move it away to start an empty cluster."
            ) from exc
        if "features" not in doc:
            store._save()
        return store

    @classmethod
    def _decode(cls, path: Path, doc: Any) -> LocalMetadata:
        if not isinstance(doc, dict):
            raise ValueError("top level is not an object")
        version = doc.get("version")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported format version {version!r}")
        cluster_id = doc["cluster_id"]
        parse_kafka_uuid(cluster_id)
        topics: dict[str, TopicRecord] = {}
        for name, t in doc["topics"].items():
            record = TopicRecord(
                topic_id=parse_kafka_uuid(t["topic_id"]),
                num_partitions=_positive_int(t["num_partitions"], "num_partitions"),
                replication_factor=_positive_int(t["replication_factor"], "replication_factor"),
                configs=_str_map(t.get("configs", {}), f"configs of {name}"),
            )
            topics[name] = record
        dynamic = {
            str(k): _str_map(v, f"dynamic broker configs {k!r}")
            for k, v in doc.get("dynamic_broker_configs", {}).items()
        }
        next_producer_id = doc.get("next_producer_id", 0)
        if not isinstance(next_producer_id, int) or isinstance(next_producer_id, bool):
            raise ValueError(f"next_producer_id must be an integer, not {next_producer_id!r}")
        if next_producer_id < 0:
            raise ValueError(f"next_producer_id must not be negative, not {next_producer_id}")
        consumer_offsets = _consumer_offsets(doc.get("consumer_offsets", {}))
        features = _features(doc["features"]) if "features" in doc else None
        store = cls(path, cluster_id, topics, dynamic, next_producer_id, consumer_offsets, features)
        store._users = {
            str(k): _str_map(v, f"config of user {k!r}") for k, v in doc.get("users", {}).items()
        }
        store._group_configs = {
            str(g): _str_map(v, f"configs of group {g!r}")
            for g, v in doc.get("group_configs", {}).items()
        }
        return store

    def _encode(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "cluster_id": self._cluster_id,
            "topics": {
                name: {
                    "topic_id": kafka_uuid_str(t.topic_id),
                    "num_partitions": t.num_partitions,
                    "replication_factor": t.replication_factor,
                    "configs": dict(sorted(t.configs.items())),
                }
                for name, t in sorted(self._topics.items())
            },
            "dynamic_broker_configs": {
                k: dict(sorted(v.items())) for k, v in sorted(self._dynamic.items()) if v
            },
            "group_configs": {
                g: dict(sorted(v.items())) for g, v in sorted(self._group_configs.items()) if v
            },
            "next_producer_id": self._next_producer_id,
            "users": {k: dict(sorted(v.items())) for k, v in sorted(self._users.items()) if v},
            "consumer_offsets": {
                group: {
                    topic: {str(p): o for p, o in sorted(partitions.items())}
                    for topic, partitions in sorted(topics.items())
                }
                for group, topics in sorted(self._consumer_offsets.items())
            },
            "features": {
                "epoch": self._features.epoch,
                "finalized": dict(sorted(self._features.levels.items())),
            },
        }

    def _save(self) -> None:
        # Owner-only: the file holds the users' salted SCRAM credentials.
        write_atomically(
            self._path, (json.dumps(self._encode(), indent=2) + "\n").encode("utf-8"), mode=0o600
        )

    # --- reading --------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def cluster_id(self) -> str:
        return self._cluster_id

    @property
    def topics(self) -> Mapping[str, TopicRecord]:
        return MappingProxyType(self._topics)

    def get_topic(self, name: str) -> TopicRecord | None:
        return self._topics.get(name)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicLookup | None:
        """(name, record) of the topic with this id, or None."""
        name = self._by_id.get(topic_id)
        return None if name is None else TopicLookup(name, self._topics[name])

    @property
    def dynamic_broker_configs(self) -> Mapping[str, Mapping[str, str]]:
        """ "" -> cluster-wide defaults; "<broker id>" -> that broker's values."""
        return MappingProxyType({k: MappingProxyType(v) for k, v in self._dynamic.items()})

    def dynamic_configs_for(self, broker_id: int | None) -> dict[str, str]:
        """The dynamic values of one broker (None: the cluster-wide defaults)."""
        return dict(self._dynamic.get("" if broker_id is None else str(broker_id), {}))

    @property
    def finalized_features(self) -> FinalizedFeatures:
        return self._features

    # --- changing -------------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: Mapping[str, str] | None = None,
    ) -> TopicRecord:
        """Adds a topic; the caller has validated `configs` (strom.config.validate_topic_configs)."""
        problem = validate_topic_name(name)
        if problem is not None:
            raise InvalidTopicError(problem)
        if name in self._topics:
            raise TopicExistsError(f"topic {name!r} already exists")
        if num_partitions < 1:
            raise InvalidPartitionsError(
                f"number of partitions must be at least 1, not {num_partitions}"
            )
        if replication_factor < 1:
            raise InvalidReplicationFactorError(
                f"replication factor must be at least 1, not {replication_factor}"
            )
        topic_id = random_kafka_uuid()
        while topic_id in self._by_id:  # astronomically unlikely, but ids must be unique
            topic_id = random_kafka_uuid()
        record = TopicRecord(topic_id, num_partitions, replication_factor, dict(configs or {}))
        self._put(name, record)
        return record

    def delete_topic(self, name: str) -> TopicRecord:
        record = self._require(name)
        del self._topics[name]
        del self._by_id[record.topic_id]
        try:
            self._save()
        except BaseException:
            self._topics[name] = record
            self._by_id[record.topic_id] = name
            raise
        return record

    def set_partition_count(self, name: str, num_partitions: int) -> TopicRecord:
        """Grows a topic (Kafka never shrinks one: keys would move between partitions)."""
        record = self._require(name)
        if num_partitions < record.num_partitions:
            raise InvalidPartitionsError(
                f"topic {name!r} has {record.num_partitions} partitions; it cannot shrink to "
                f"{num_partitions}"
            )
        if num_partitions == record.num_partitions:
            raise InvalidPartitionsError(f"topic {name!r} already has {num_partitions} partitions")
        return self._put(name, replace(record, num_partitions=num_partitions))

    def set_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicRecord:
        """Replaces the topic's overrides with `configs` (validated by the caller)."""
        record = self._require(name)
        return self._put(name, replace(record, configs=dict(configs)))

    def set_dynamic_broker_configs(self, broker_id: int | None, configs: Mapping[str, str]) -> None:
        """Replaces the dynamic values of one broker (None: the cluster-wide defaults)."""
        key = "" if broker_id is None else str(broker_id)
        before = self._dynamic.get(key)
        self._dynamic[key] = dict(configs)
        try:
            self._save()
        except BaseException:
            if before is None:
                self._dynamic.pop(key, None)
            else:
                self._dynamic[key] = before
            raise

    @property
    def users(self) -> Mapping[str, Mapping[str, str]]:
        return MappingProxyType({k: MappingProxyType(v) for k, v in self._users.items()})

    def set_user_config(self, user: str, config: Mapping[str, str]) -> None:
        """Replaces a user's config (an empty one removes the user)."""
        before = self._users.get(user)
        if config:
            self._users[user] = dict(config)
        else:
            self._users.pop(user, None)
        try:
            self._save()
        except BaseException:
            if before is None:
                self._users.pop(user, None)
            else:
                self._users[user] = before
            raise

    def group_configs(self, group_id: str) -> dict[str, str]:
        return dict(self._group_configs.get(group_id, {}))

    def set_group_configs(self, group_id: str, configs: Mapping[str, str]) -> None:
        """Replaces the group's configs (validated by the caller)."""
        before = self._group_configs.get(group_id)
        self._group_configs[group_id] = dict(configs)
        try:
            self._save()
        except BaseException:
            if before is None:
                self._group_configs.pop(group_id, None)
            else:
                self._group_configs[group_id] = before
            raise

    def reserve_producer_ids(self, count: int) -> int:
        """Reserves `count` producer ids never reserved before (persisted before returning);
        returns the first. Kafka's controller hands out blocks of 1000 the same way."""
        if count < 1:
            raise ValueError(f"cannot reserve {count} producer ids")
        first = self._next_producer_id
        self._next_producer_id = first + count
        try:
            self._save()
        except BaseException:
            self._next_producer_id = first
            raise
        return first

    def set_finalized_features(self, levels: Mapping[str, int]) -> FinalizedFeatures:
        """Replaces the finalized features (UpdateFeatures), one epoch later; persisted
        before returning."""
        before = self._features
        self._features = FinalizedFeatures(dict(levels), before.epoch + 1)
        try:
            self._save()
        except BaseException:
            self._features = before
            raise
        return self._features

    def consumer_offset(self, group: str, topic: str, partition: int) -> int | None:
        return self._consumer_offsets.get(group, {}).get(topic, {}).get(partition)

    def set_consumer_offsets(self, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
        """Stores a group's OffsetCommit v0 offsets (persisted before returning)."""
        if not offsets:
            return
        before = self._consumer_offsets.get(group)
        topics = {topic: dict(partitions) for topic, partitions in (before or {}).items()}
        for (topic, partition), offset in offsets.items():
            topics.setdefault(topic, {})[partition] = offset
        self._consumer_offsets[group] = topics
        try:
            self._save()
        except BaseException:
            if before is None:
                del self._consumer_offsets[group]
            else:
                self._consumer_offsets[group] = before
            raise

    def _require(self, name: str) -> TopicRecord:
        record = self._topics.get(name)
        if record is None:
            raise UnknownTopicError(f"topic {name!r} does not exist")
        return record

    def _put(self, name: str, record: TopicRecord) -> TopicRecord:
        """Stores `record` and persists; on a failed write the old state is kept in memory."""
        old = self._topics.get(name)
        self._topics[name] = record
        self._by_id[record.topic_id] = name
        try:
            self._save()
        except BaseException:
            if old is None:
                del self._topics[name]
                del self._by_id[record.topic_id]
            else:
                self._topics[name] = old
            raise
        return record


def _positive_int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    return value


def _str_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"{what} must map strings to strings")
    return dict(value)


def _features(value: Any) -> FinalizedFeatures:
    if not isinstance(value, dict):
        raise ValueError("features must be an object")
    epoch = value.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ValueError(f"the features' epoch must be a non-negative integer, not {epoch!r}")
    levels = value.get("finalized")
    if not isinstance(levels, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 1
        for k, v in levels.items()
    ):
        raise ValueError("finalized features must map names to levels of at least 1")
    return FinalizedFeatures(dict(levels), epoch)


def _consumer_offsets(value: Any) -> dict[str, dict[str, dict[int, int]]]:
    if not isinstance(value, dict):
        raise ValueError("consumer_offsets must be an object")
    out: dict[str, dict[str, dict[int, int]]] = {}
    for group, topics in value.items():
        if not isinstance(topics, dict):
            raise ValueError(f"consumer_offsets of {group!r} must be an object")
        out[group] = {}
        for topic, partitions in topics.items():
            if not isinstance(partitions, dict):
                raise ValueError(f"consumer_offsets of {group!r}/{topic!r} must be an object")
            parsed: dict[int, int] = {}
            for p, offset in partitions.items():
                if isinstance(offset, bool) or not isinstance(offset, int):
                    raise ValueError(f"consumer offset {group!r}/{topic!r}/{p} is not an integer")
                parsed[int(p)] = offset
            out[group][topic] = parsed
    return out
