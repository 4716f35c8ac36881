"""Kafka's ZooKeeper layout: znode paths and the JSON payloads stored in them.

The paths and payloads follow Kafka's ZooKeeper mode (3.x) so that tools which read a Kafka
cluster's ZooKeeper (zookeeper-shell, zkCli, migration tooling) see familiar data, and a Strom
cluster's ZooKeeper reads like a Kafka one:

    /cluster/id                               {"version":"1","id":"<22-char base64 uuid>"}
    /controller              (ephemeral)      {"version":2,"brokerid":1,"timestamp":"<ms>",
                                               "kraftControllerEpoch":-1}
    /controller_epoch                         1          (plain decimal text, not JSON)
    /brokers/ids/<id>        (ephemeral)      broker registration, version 5 (BrokerRegistration)
    /brokers/topics/<topic>                   {"version":3,"partitions":{"0":[1,2]},
                                               "adding_replicas":{},"removing_replicas":{},
                                               "topic_id":"<base64 uuid>"}
    /brokers/topics/<topic>/partitions/<p>/state
                                              {"version":1,"leader":1,"leader_epoch":0,
                                               "isr":[1,2],"controller_epoch":1}
    /config/topics/<topic>, /config/brokers/<id>|<default>
                                              {"version":1,"config":{"k":"v"}}
    /config/users/<user, URL-encoded>         {"version":1,"config":{"SCRAM-SHA-256":
                                               "salt=..,stored_key=..,server_key=..,
                                               iterations=4096"}}
    /config/groups/<group, URL-encoded>       {"version":1,"config":{"share.auto.offset.reset":
                                               "earliest"}}
    /config/changes/config_change_<seq>       {"version":2,"entity_path":"topics/foo"}
    /admin/delete_topics/<topic>              (no data: the child's name is the request)
    /admin/reassign_partitions                {"version":1,"partitions":[{"topic":..,
                                               "partition":..,"replicas":[..]}]}
    /admin/preferred_replica_election         {"version":1,"partitions":[{"topic":..,
                                               "partition":..}]}
    /isr_change_notification/isr_change_<seq> {"version":1,"partitions":[...]}
    /log_dir_event_notification/log_dir_event_<seq>
                                              {"version":1,"broker":1,"event":1}
    /latest_producer_id_block                 {"version":1,"broker":0,"block_start":"0",
                                               "block_end":"999"}   (numbers as strings)
    /consumers/<group>/offsets/<topic>/<p>    42         (plain decimal text: offsets committed
                                               with OffsetCommit v0)

Every decoder raises `LayoutError` (a ValueError) on malformed data: the znodes are shared with
other processes and tools, so bad data must be reported, never crash the caller with a KeyError.
Decoders accept unknown keys (a newer writer may add fields) and encoders write compact JSON
as Kafka's Jackson does.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from strom.cluster.ids import kafka_uuid_str, parse_kafka_uuid


class LayoutError(ValueError):
    """A znode holds data that is not in the expected format."""


class TopicPartition(NamedTuple):
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"


# --- paths ----------------------------------------------------------------------------------

CLUSTER_ID = "/cluster/id"
CONTROLLER = "/controller"
CONTROLLER_EPOCH = "/controller_epoch"
BROKERS = "/brokers"
BROKER_IDS = "/brokers/ids"
BROKER_SEQID = "/brokers/seqid"
TOPICS = "/brokers/topics"
CONFIG = "/config"
CONFIG_TOPICS = "/config/topics"
CONFIG_BROKERS = "/config/brokers"
CONFIG_USERS = "/config/users"
CONFIG_GROUPS = "/config/groups"
CONFIG_CHANGES = "/config/changes"
CONFIG_CHANGE_PREFIX = "config_change_"
ADMIN = "/admin"
DELETE_TOPICS = "/admin/delete_topics"
REASSIGN_PARTITIONS = "/admin/reassign_partitions"
PREFERRED_REPLICA_ELECTION = "/admin/preferred_replica_election"
ISR_CHANGE_NOTIFICATION = "/isr_change_notification"
ISR_CHANGE_PREFIX = "isr_change_"
LOG_DIR_EVENT_NOTIFICATION = "/log_dir_event_notification"
LOG_DIR_EVENT_PREFIX = "log_dir_event_"
LOG_DIR_FAILURE_EVENT = 1  # Kafka's only event kind
PRODUCER_ID_BLOCK = "/latest_producer_id_block"
CONSUMERS = "/consumers"
# The name Kafka uses for the cluster-wide default of a config entity.
DEFAULT_ENTITY = "<default>"

# Created (empty) at startup by every broker, as Kafka's persistent paths, so that watches and
# child creations never race with a missing parent.
PERSISTENT_PATHS = (
    BROKER_IDS,
    TOPICS,
    CONFIG_CHANGES,
    CONFIG_TOPICS,
    CONFIG_BROKERS,
    CONFIG_USERS,
    CONFIG_GROUPS,
    DELETE_TOPICS,
    BROKER_SEQID,
    ISR_CHANGE_NOTIFICATION,
    LOG_DIR_EVENT_NOTIFICATION,
    PRODUCER_ID_BLOCK,
)


def broker_path(broker_id: int) -> str:
    return f"{BROKER_IDS}/{broker_id}"


def topic_path(topic: str) -> str:
    return f"{TOPICS}/{topic}"


def partitions_path(topic: str) -> str:
    return f"{TOPICS}/{topic}/partitions"


def partition_path(tp: TopicPartition) -> str:
    return f"{TOPICS}/{tp.topic}/partitions/{tp.partition}"


def partition_state_path(tp: TopicPartition) -> str:
    return f"{partition_path(tp)}/state"


def topic_config_path(topic: str) -> str:
    return f"{CONFIG_TOPICS}/{topic}"


def broker_config_path(broker_id: int | None) -> str:
    """`None` is the cluster-wide default entity (`/config/brokers/<default>`)."""
    return f"{CONFIG_BROKERS}/{DEFAULT_ENTITY if broker_id is None else broker_id}"


def sanitize(name: str) -> str:
    """An entity name as Kafka writes it in a znode name (its Sanitizer): URL encoding as
    Java's URLEncoder does it (letters, digits, `.`, `-`, `_` kept), with `*` and a space
    percent-encoded too."""
    out = []
    for byte in name.encode():
        ch = chr(byte)
        if ch.isascii() and (ch.isalnum() or ch in ".-_"):
            out.append(ch)
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def desanitize(name: str) -> str:
    return urllib.parse.unquote(name)


def user_config_path(user: str) -> str:
    """`/config/users/<sanitized user>`: a user's SCRAM credentials (and, in Kafka, quotas)."""
    return f"{CONFIG_USERS}/{sanitize(user)}"


def delete_topic_path(topic: str) -> str:
    return f"{DELETE_TOPICS}/{topic}"


def consumer_offset_path(group: str, topic: str, partition: int) -> str:
    """Where OffsetCommit v0 keeps a group's offset; LayoutError when ZooKeeper would refuse
    the path (a group id with an empty, "." or ".." segment or a forbidden character: the group
    id goes into the path unescaped, "/" included, as in Kafka)."""
    path = f"{CONSUMERS}/{group}/offsets/{topic}/{partition}"
    validate_path(path)
    return path


def validate_path(path: str) -> None:
    """ZooKeeper's own rules for a znode path (its PathUtils.validatePath)."""
    if not path.startswith("/") or (len(path) > 1 and path.endswith("/")):
        raise LayoutError(f"invalid znode path {path!r}")
    for name in path[1:].split("/"):
        if name in ("", ".", ".."):
            raise LayoutError(f"invalid znode path {path!r}: empty or relative node name")
        if any(_forbidden_in_path(c) for c in name):
            raise LayoutError(f"invalid znode path {path!r}: forbidden character")


def _forbidden_in_path(c: str) -> bool:
    code = ord(c)
    return (
        code <= 0x1F
        or 0x7F <= code <= 0x9F
        or 0xD800 <= code <= 0xF8FF
        or code >= 0xFFF0  # also every character outside Java's 16-bit chars
    )


# --- JSON helpers ---------------------------------------------------------------------------


def _dumps(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def _loads(data: bytes | None, what: str) -> dict[str, Any]:
    if not data:
        raise LayoutError(f"{what}: empty znode")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LayoutError(f"{what}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise LayoutError(f"{what}: top level is not an object")
    return doc


def _int(doc: Mapping[str, Any], key: str, what: str) -> int:
    value = doc.get(key)
    # Kafka writes some numbers as strings (timestamps, producer id blocks): accept both.
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    raise LayoutError(f"{what}: {key!r} is not an integer: {value!r}")


def _str(doc: Mapping[str, Any], key: str, what: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise LayoutError(f"{what}: {key!r} is not a string: {value!r}")
    return value


def _int_list(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise LayoutError(f"{what}: expected a list of integers, not {value!r}")
    return tuple(value)


def _partition_list(doc: Mapping[str, Any], what: str) -> list[dict[str, Any]]:
    items = doc.get("partitions")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise LayoutError(f"{what}: 'partitions' is not a list of objects")
    return items


def _tp(item: Mapping[str, Any], what: str) -> TopicPartition:
    return TopicPartition(_str(item, "topic", what), _int(item, "partition", what))


# --- payloads -------------------------------------------------------------------------------


def encode_consumer_offset(offset: int) -> bytes:
    return str(offset).encode("ascii")


def decode_consumer_offset(data: bytes | None, what: str) -> int:
    try:
        return int((data or b"").decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise LayoutError(f"{what}: not a decimal offset: {data!r}") from None


def encode_cluster_id(cluster_id: str) -> bytes:
    # Kafka writes this version as a string, unlike every other payload.
    return _dumps({"version": "1", "id": cluster_id})


def decode_cluster_id(data: bytes) -> str:
    return _str(_loads(data, CLUSTER_ID), "id", CLUSTER_ID)


def encode_controller_epoch(epoch: int) -> bytes:
    return str(epoch).encode("ascii")


def decode_controller_epoch(data: bytes) -> int:
    try:
        return int(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise LayoutError(f"{CONTROLLER_EPOCH}: not an integer: {data!r}") from None


@dataclass(frozen=True, slots=True)
class ControllerRegistration:
    broker_id: int
    timestamp_ms: int
    # Kafka 3.4+ records the KRaft controller epoch during a migration; -1 means "never
    # migrated", the only value a ZooKeeper-only cluster writes.
    kraft_controller_epoch: int = -1

    def to_json(self) -> bytes:
        return _dumps(
            {
                "version": 2,
                "brokerid": self.broker_id,
                "timestamp": str(self.timestamp_ms),
                "kraftControllerEpoch": self.kraft_controller_epoch,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> ControllerRegistration:
        doc = _loads(data, CONTROLLER)
        timestamp = _int(doc, "timestamp", CONTROLLER) if "timestamp" in doc else 0
        kraft = (
            _int(doc, "kraftControllerEpoch", CONTROLLER) if "kraftControllerEpoch" in doc else -1
        )
        return cls(_int(doc, "brokerid", CONTROLLER), timestamp, kraft)


@dataclass(frozen=True, slots=True)
class Endpoint:
    listener_name: str
    host: str
    port: int
    security_protocol: str = "PLAINTEXT"

    def connection_string(self) -> str:
        # IPv6 literals are bracketed, as Kafka's Utils.formatAddress does.
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.listener_name}://{host}:{self.port}"

    @classmethod
    def parse(cls, text: str, protocols: Mapping[str, str]) -> Endpoint:
        """`NAME://host:port`; the protocol comes from the listener map (default: the name)."""
        name, sep, rest = text.partition("://")
        host, colon, port = rest.rpartition(":")
        if not sep or not colon or not name:
            raise LayoutError(f"bad endpoint {text!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            port_number = int(port)
        except ValueError:
            raise LayoutError(f"bad port in endpoint {text!r}") from None
        return cls(name, host, port_number, protocols.get(name, name))


@dataclass(frozen=True, slots=True)
class BrokerRegistration:
    """`/brokers/ids/<id>`: where a live broker can be reached. Version 5 as Kafka 2.7+."""

    broker_id: int
    endpoints: tuple[Endpoint, ...]
    rack: str | None = None
    timestamp_ms: int = 0
    features: Mapping[str, Any] = field(default_factory=dict)
    jmx_port: int = -1

    def to_json(self) -> bytes:
        # The top-level host/port are for old clients that only know PLAINTEXT: the first
        # PLAINTEXT endpoint, or null/-1 when there is none (as Kafka).
        plain = next((e for e in self.endpoints if e.security_protocol == "PLAINTEXT"), None)
        doc: dict[str, Any] = {
            "features": dict(self.features),
            "listener_security_protocol_map": {
                e.listener_name: e.security_protocol for e in self.endpoints
            },
            "endpoints": [e.connection_string() for e in self.endpoints],
            "jmx_port": self.jmx_port,
            "port": plain.port if plain else -1,
            "host": plain.host if plain else None,
            "version": 5,
            "timestamp": str(self.timestamp_ms),
        }
        if self.rack is not None:
            doc["rack"] = self.rack
        return _dumps(doc)

    @classmethod
    def from_json(cls, broker_id: int, data: bytes) -> BrokerRegistration:
        what = broker_path(broker_id)
        doc = _loads(data, what)
        version = _int(doc, "version", what)
        if version < 1:
            raise LayoutError(f"{what}: unsupported registration version {version}")
        if version == 1:
            endpoints: tuple[Endpoint, ...] = (
                Endpoint("PLAINTEXT", _str(doc, "host", what), _int(doc, "port", what)),
            )
        else:
            protocols = doc.get("listener_security_protocol_map") or {}
            if not isinstance(protocols, dict):
                raise LayoutError(f"{what}: bad listener_security_protocol_map")
            raw = doc.get("endpoints")
            if not isinstance(raw, list) or not all(isinstance(e, str) for e in raw):
                raise LayoutError(f"{what}: 'endpoints' is not a list of strings")
            endpoints = tuple(Endpoint.parse(e, protocols) for e in raw)
        rack = doc.get("rack")
        if rack is not None and not isinstance(rack, str):
            raise LayoutError(f"{what}: bad rack {rack!r}")
        features = doc.get("features") or {}
        if not isinstance(features, dict):
            raise LayoutError(f"{what}: bad features")
        timestamp = _int(doc, "timestamp", what) if "timestamp" in doc else 0
        jmx = _int(doc, "jmx_port", what) if "jmx_port" in doc else -1
        return cls(broker_id, endpoints, rack, timestamp, features, jmx)


@dataclass(frozen=True, slots=True)
class TopicAssignment:
    """`/brokers/topics/<topic>`: replicas per partition, in preference order (the first
    replica is the preferred leader). Version 3 carries the topic id (Kafka 2.8+)."""

    partitions: Mapping[int, tuple[int, ...]]
    topic_id: uuid.UUID | None = None
    adding_replicas: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    removing_replicas: Mapping[int, tuple[int, ...]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        def ints(m: Mapping[int, tuple[int, ...]]) -> dict[str, list[int]]:
            return {str(p): list(r) for p, r in sorted(m.items()) if r}

        doc: dict[str, Any] = {
            "version": 3,
            "partitions": {str(p): list(r) for p, r in sorted(self.partitions.items())},
            "adding_replicas": ints(self.adding_replicas),
            "removing_replicas": ints(self.removing_replicas),
        }
        if self.topic_id is not None:
            doc["topic_id"] = kafka_uuid_str(self.topic_id)
        return _dumps(doc)

    @classmethod
    def from_json(cls, topic: str, data: bytes) -> TopicAssignment:
        what = topic_path(topic)
        doc = _loads(data, what)

        def section(key: str) -> dict[int, tuple[int, ...]]:
            raw = doc.get(key) or {}
            if not isinstance(raw, dict):
                raise LayoutError(f"{what}: {key!r} is not an object")
            out: dict[int, tuple[int, ...]] = {}
            for p, replicas in raw.items():
                try:
                    partition = int(p)
                except ValueError:
                    raise LayoutError(f"{what}: bad partition {p!r}") from None
                out[partition] = _int_list(replicas, f"{what} partition {p}")
            return out

        topic_id = None
        if doc.get("topic_id") is not None:
            try:
                topic_id = parse_kafka_uuid(_str(doc, "topic_id", what))
            except ValueError as exc:
                raise LayoutError(f"{what}: {exc}") from None
        return cls(
            section("partitions"),
            topic_id,
            section("adding_replicas"),
            section("removing_replicas"),
        )


# Partition leader when there is none (no live in-sync replica).
NO_LEADER = -1
# `leader_recovery_state`: 0 RECOVERED (omitted from the JSON), 1 RECOVERING after an unclean
# election until the new leader has reconciled its log (Kafka 3.2+, KIP-704).
RECOVERED = 0
RECOVERING = 1


@dataclass(frozen=True, slots=True)
class PartitionState:
    """`.../partitions/<p>/state`: leader, leader epoch and ISR of one partition.

    Every change is a compare-and-set on the znode version, so a controller and a leader
    updating the ISR concurrently cannot lose each other's write.
    """

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    controller_epoch: int
    leader_recovery_state: int = RECOVERED

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "controller_epoch": self.controller_epoch,
            "leader": self.leader,
            "version": 1,
            "leader_epoch": self.leader_epoch,
            "isr": list(self.isr),
        }
        if self.leader_recovery_state != RECOVERED:
            doc["leader_recovery_state"] = self.leader_recovery_state
        return _dumps(doc)

    @classmethod
    def from_json(cls, data: bytes, what: str = "partition state") -> PartitionState:
        doc = _loads(data, what)
        recovery = _int(doc, "leader_recovery_state", what) if "leader_recovery_state" in doc else 0
        return cls(
            leader=_int(doc, "leader", what),
            leader_epoch=_int(doc, "leader_epoch", what),
            isr=_int_list(doc.get("isr"), f"{what} isr"),
            controller_epoch=_int(doc, "controller_epoch", what),
            leader_recovery_state=recovery,
        )


@dataclass(frozen=True, slots=True)
class EntityConfig:
    """`/config/topics/<topic>` and `/config/brokers/<id>`: dynamic config overrides."""

    config: Mapping[str, str]

    def to_json(self) -> bytes:
        return _dumps({"version": 1, "config": dict(self.config)})

    @classmethod
    def from_json(cls, data: bytes | None) -> EntityConfig:
        # Kafka treats a missing or empty znode as "no overrides".
        if not data:
            return cls({})
        doc = _loads(data, "entity config")
        raw = doc.get("config") or {}
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise LayoutError("entity config: 'config' is not a map of strings")
        return cls(dict(raw))


@dataclass(frozen=True, slots=True)
class ConfigChangeNotification:
    """A sequential child of /config/changes telling brokers to re-read one entity's config;
    `entity_path` is e.g. `topics/foo` or `brokers/<default>`."""

    entity_path: str

    def to_json(self) -> bytes:
        return _dumps({"version": 2, "entity_path": self.entity_path})

    @classmethod
    def from_json(cls, data: bytes) -> ConfigChangeNotification:
        doc = _loads(data, CONFIG_CHANGES)
        return cls(_str(doc, "entity_path", CONFIG_CHANGES))


def _encode_partitions(partitions: Iterable[TopicPartition]) -> bytes:
    return _dumps(
        {
            "version": 1,
            "partitions": [{"topic": t, "partition": p} for t, p in sorted(partitions)],
        }
    )


def _decode_partitions(data: bytes, what: str) -> frozenset[TopicPartition]:
    doc = _loads(data, what)
    return frozenset(_tp(item, what) for item in _partition_list(doc, what))


def encode_isr_change(partitions: Iterable[TopicPartition]) -> bytes:
    """A sequential child of /isr_change_notification: a leader changed these ISRs."""
    return _encode_partitions(partitions)


def decode_isr_change(data: bytes) -> frozenset[TopicPartition]:
    return _decode_partitions(data, ISR_CHANGE_NOTIFICATION)


def encode_log_dir_event(broker_id: int) -> bytes:
    """A sequential child of /log_dir_event_notification: a log dir of this broker failed."""
    return _dumps({"version": 1, "broker": broker_id, "event": LOG_DIR_FAILURE_EVENT})


def decode_log_dir_event(data: bytes) -> int:
    """The broker whose log dir failed."""
    return _int(_loads(data, LOG_DIR_EVENT_NOTIFICATION), "broker", LOG_DIR_EVENT_NOTIFICATION)


def encode_preferred_replica_election(partitions: Iterable[TopicPartition]) -> bytes:
    return _encode_partitions(partitions)


def decode_preferred_replica_election(data: bytes) -> frozenset[TopicPartition]:
    return _decode_partitions(data, PREFERRED_REPLICA_ELECTION)


def encode_reassignment(targets: Mapping[TopicPartition, Iterable[int]]) -> bytes:
    return _dumps(
        {
            "version": 1,
            "partitions": [
                {"topic": tp.topic, "partition": tp.partition, "replicas": list(replicas)}
                for tp, replicas in sorted(targets.items())
            ],
        }
    )


def decode_reassignment(data: bytes) -> dict[TopicPartition, tuple[int, ...]]:
    what = REASSIGN_PARTITIONS
    doc = _loads(data, what)
    return {
        _tp(item, what): _int_list(item.get("replicas"), f"{what} replicas")
        for item in _partition_list(doc, what)
    }


PRODUCER_ID_BLOCK_SIZE = 1000
_MAX_PRODUCER_ID = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class ProducerIdBlock:
    """`/latest_producer_id_block`: the last block of producer ids handed out (both ends
    inclusive). A broker claims the next block with a compare-and-set on this znode, so no
    id is ever given to two brokers."""

    broker: int
    block_start: int
    block_end: int

    def to_json(self) -> bytes:
        # Kafka writes both ends as strings (a long does not fit every JSON reader).
        return _dumps(
            {
                "version": 1,
                "broker": self.broker,
                "block_start": str(self.block_start),
                "block_end": str(self.block_end),
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> ProducerIdBlock:
        what = PRODUCER_ID_BLOCK
        doc = _loads(data, what)
        return cls(
            _int(doc, "broker", what), _int(doc, "block_start", what), _int(doc, "block_end", what)
        )

    @classmethod
    def next_after(
        cls, previous: ProducerIdBlock | None, broker: int, size: int = PRODUCER_ID_BLOCK_SIZE
    ) -> ProducerIdBlock:
        """The block following `previous` (the first block, 0..size-1, when there is none)."""
        start = 0 if previous is None else previous.block_end + 1
        end = start + size - 1
        if end > _MAX_PRODUCER_ID:
            raise LayoutError("producer ids exhausted")
        return cls(broker, start, end)
