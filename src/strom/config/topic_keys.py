"""The topic configuration table and each topic key's broker synonyms.

A topic key without a per-topic override takes its value from its broker synonyms (the broker's
`log.*` defaults), in the order listed, each converted to the topic key's unit; with none of those
set it takes Kafka's default.
"""

from __future__ import annotations

from strom.config.broker_log_keys import (
    CLEANUP_POLICIES,
    COMPRESSION_TYPES,
    GZIP_LEVEL,
    HOUR_MS,
    LZ4_LEVEL,
    TIMESTAMP_TYPES,
    WEEK_MS,
    ZSTD_LEVEL,
)
from strom.config.definitions import (
    LONG_MAX,
    ConfigDef,
    ConfigType,
    ConfigValue,
    Validator,
    names,
)
from strom.config.shorthand import LS, B, D, I, L, S, define
from strom.config.validators import (
    ListOf,
    MetadataVersion,
    OneOf,
    ThrottledReplicas,
    at_least,
    between,
)

# Kafka 3.x let a topic's segment.bytes go down to the size of the smallest legacy record (14
# bytes), as log.segment.bytes does; 4.x raised the topic minimum and added an internal key for
# tests instead. Strom keeps the 3.x rule: tests and small deployments rely on tiny segments, and
# nothing breaks if a segment holds a single batch.
MIN_TOPIC_SEGMENT_BYTES = 14


def _t(
    name: str,
    ctype: ConfigType,
    default: ConfigValue,
    doc: str,
    validator: Validator | None = None,
    synonyms: tuple[str, ...] = (),
    *,
    unused: bool = False,
) -> ConfigDef:
    return define(name, ctype, default, doc, validator, unused=unused, synonyms=synonyms)


# fmt: off
TOPIC_DEFS: dict[str, ConfigDef] = names(
    [
        _t("cleanup.policy", LS, "delete", "delete: drop segments past retention; compact: keep "
           "the latest record per key; both may be listed.", ListOf(CLEANUP_POLICIES),
           ("log.cleanup.policy",)),
        _t("compression.type", S, "producer", "Codec batches are stored with; 'producer' keeps "
           "the producer's.", OneOf(COMPRESSION_TYPES), ("compression.type",)),
        _t("compression.gzip.level", I, -1, "gzip level when the broker recompresses.",
           GZIP_LEVEL, ("compression.gzip.level",)),
        _t("compression.lz4.level", I, 9, "lz4 level when the broker recompresses.", LZ4_LEVEL,
           ("compression.lz4.level",)),
        _t("compression.zstd.level", I, 3, "zstd level when the broker recompresses.",
           ZSTD_LEVEL, ("compression.zstd.level",)),
        _t("delete.retention.ms", L, 86400000, "How long a tombstone stays readable after "
           "compaction reaches it.", at_least(0), ("log.cleaner.delete.retention.ms",)),
        _t("errors.deadletterqueue.group.enable", B, False, "Whether share groups may use the "
           "topic as their dead-letter topic (KIP-1191, Kafka 4.4)."),
        _t("file.delete.delay.ms", L, 60000, "Delay before a removed segment's files are "
           "deleted.", at_least(0), ("log.segment.delete.delay.ms",)),
        _t("flush.messages", L, LONG_MAX, "Records appended before the partition is fsynced.",
           at_least(1), ("log.flush.interval.messages",)),
        _t("flush.ms", L, LONG_MAX, "Longest time appended data stays unsynced.", at_least(0),
           ("log.flush.interval.ms", "log.flush.scheduler.interval.ms")),
        _t("follower.replication.throttled.replicas", LS, "", "Replicas (partition:broker, or *) "
           "whose replication is throttled on the follower side.", ThrottledReplicas()),
        _t("index.interval.bytes", I, 4096, "Bytes of log between offset index entries.",
           at_least(0), ("log.index.interval.bytes",)),
        _t("leader.replication.throttled.replicas", LS, "", "Replicas (partition:broker, or *) "
           "whose replication is throttled on the leader side.", ThrottledReplicas()),
        _t("local.retention.bytes", L, -2, "Tiered storage: local size kept once segments are "
           "copied to remote storage; -2 means retention.bytes.",
           at_least(-2), ("log.local.retention.bytes",), unused=True),
        _t("local.retention.ms", L, -2, "Tiered storage: how long segments stay local once "
           "copied to remote storage; -2 means retention.ms.",
           at_least(-2), ("log.local.retention.ms",), unused=True),
        _t("max.compaction.lag.ms", L, LONG_MAX, "Oldest an uncompacted record may get.",
           at_least(1), ("log.cleaner.max.compaction.lag.ms",)),
        _t("max.message.bytes", I, 1048588, "Largest record batch accepted (after "
           "compression).", at_least(0), ("message.max.bytes",)),
        _t("message.downconversion.enable", B, True, "Whether consumers fetching with Fetch v0-3 "
           "get record batches converted down to message format v0/v1 (false: "
           "UNSUPPORTED_VERSION).", None, ("log.message.downconversion.enable",)),
        _t("message.format.version", S, "3.0-IV1", "Deprecated: message format of the topic's new "
           "data. Ignored when inter.broker.protocol.version is 3.0 or newer, as in Strom, which "
           "always writes record batch v2.", MetadataVersion(), ("log.message.format.version",),
           unused=True),
        _t("message.timestamp.after.max.ms", L, LONG_MAX, "How far ahead of the broker's clock "
           "a CreateTime timestamp may be.", at_least(0),
           ("log.message.timestamp.after.max.ms",)),
        _t("message.timestamp.before.max.ms", L, LONG_MAX, "How far behind the broker's clock "
           "a CreateTime timestamp may be.", at_least(0),
           ("log.message.timestamp.before.max.ms",)),
        _t("message.timestamp.difference.max.ms", L, LONG_MAX, "Deprecated: sets both "
           "timestamp bounds where the before/after keys are left at their defaults.",
           at_least(0), ("log.message.timestamp.difference.max.ms",)),
        _t("message.timestamp.type", S, "CreateTime", "CreateTime keeps the producer's "
           "timestamps; LogAppendTime stamps the broker's clock.", OneOf(TIMESTAMP_TYPES),
           ("log.message.timestamp.type",)),
        _t("min.cleanable.dirty.ratio", D, 0.5, "Share of uncompacted log that makes the "
           "partition eligible for compaction.", between(0, 1),
           ("log.cleaner.min.cleanable.ratio",)),
        _t("min.compaction.lag.ms", L, 0, "Youngest a record may be and still be compacted.",
           at_least(0), ("log.cleaner.min.compaction.lag.ms",)),
        _t("min.insync.replicas", I, 1, "In-sync replicas required for an acks=all produce.",
           at_least(1), ("min.insync.replicas",)),
        _t("preallocate", B, False, "Preallocate segment files.", None, ("log.preallocate",)),
        _t("remote.log.copy.disable", B, False, "Tiered storage: stop copying segments to remote "
           "storage, keeping what is there readable. Refused in ZooKeeper mode.", unused=True),
        _t("remote.log.delete.on.disable", B, False, "Tiered storage: delete the remote data "
           "when remote.storage.enable is turned off. Refused in ZooKeeper mode.", unused=True),
        _t("remote.storage.enable", B, False, "Keep the topic's older segments in remote "
           "(tiered) storage. Strom has none, so only false is accepted.", unused=True),
        _t("retention.bytes", L, -1, "Size a partition may reach before its oldest segments "
           "are deleted; -1: no limit.", None, ("log.retention.bytes",)),
        _t("retention.ms", L, WEEK_MS, "Age after which segments are deleted; -1: no limit.",
           at_least(-1), ("log.retention.ms", "log.retention.minutes", "log.retention.hours")),
        _t("segment.bytes", I, 1073741824, "Size at which a new segment is started.",
           at_least(MIN_TOPIC_SEGMENT_BYTES), ("log.segment.bytes",)),
        _t("segment.index.bytes", I, 10485760, "Largest offset index of a segment.",
           at_least(4), ("log.index.size.max.bytes",)),
        _t("segment.jitter.ms", L, 0, "Random amount subtracted from segment.ms per segment.",
           at_least(0), ("log.roll.jitter.ms", "log.roll.jitter.hours")),
        _t("segment.ms", L, WEEK_MS, "Age at which a segment is rolled even if not full.",
           at_least(1), ("log.roll.ms", "log.roll.hours")),
        _t("strom.delivery.delay.ms", L, 0, "Strom: how long after its timestamp a record "
           "becomes deliverable to share groups, unless its headers strom.deliver.at or "
           "strom.delay.ms say otherwise; 0: at once.", at_least(0)),
        _t("unclean.leader.election.enable", B, False, "Allow an out-of-sync replica to become "
           "leader, losing data.", None, ("unclean.leader.election.enable",)),
    ]
)
# fmt: on

# Units of broker synonyms that are not in the topic key's unit.
SYNONYM_FACTORS: dict[str, int] = {
    "log.retention.minutes": 60_000,
    "log.retention.hours": HOUR_MS,
    "log.roll.hours": HOUR_MS,
    "log.roll.jitter.hours": HOUR_MS,
}
