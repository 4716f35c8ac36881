"""Broker keys of storage: data directories, segments, retention, flushing, timestamps, compression,
the log cleaner and tiered (remote) storage.

Many are the broker-wide defaults of topic keys (topic_keys names each topic key's synonyms) and
change at run time for every topic that does not override them.
"""

from __future__ import annotations

from strom.config.definitions import LONG_MAX, ConfigDef
from strom.config.shorthand import CW, DOUBLE_MAX, LS, B, C, D, I, L, S, define
from strom.config.validators import (
    GzipLevel,
    ListOf,
    MetadataVersion,
    NonEmptyString,
    OneOf,
    PoolSizeOrFallback,
    at_least,
    between,
)

HOUR_MS = 60 * 60 * 1000
WEEK_MS = 7 * 24 * HOUR_MS
COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")
CLEANUP_POLICIES = ("compact", "delete")
TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
GZIP_LEVEL = GzipLevel()
LZ4_LEVEL = between(1, 17)
ZSTD_LEVEL = between(-131072, 22)
POOL_SIZE = PoolSizeOrFallback("-1 (remote.log.manager.thread.pool.size) or more than 0")
TOPIC_BASED_RLMM = (
    "org.apache.kafka.server.log.remote.metadata.storage.TopicBasedRemoteLogMetadataManager"
)

# fmt: off
BROKER_LOG_DEFS: list[ConfigDef] = [
    define("log.dirs", S, None, "Comma-separated data directories; unset means log.dir."),
    define("log.dir", S, "./strom-data", "Data directory used when log.dirs is unset (Strom "
       "default ./strom-data; Kafka's is /tmp/kafka-logs)."),
    define("num.partitions", I, 1, "Partitions of an auto-created topic, or of a created one "
       "that does not say.", at_least(1)),
    define("auto.create.topics.enable", B, True, "Create a topic when a client asks for one "
       "that does not exist (metadata or produce)."),
    define("num.recovery.threads.per.data.dir", I, 1, "Threads per data directory for "
       "recovery and shutdown flushes.", at_least(1), mode=CW, unused=True),
    define("num.replica.alter.log.dirs.threads", I, None, "Threads that move replicas between "
       "log directories; unset means one per directory."),
    define("log.dir.failure.timeout.ms", L, 30000, "KRaft: how long a broker with a failed "
       "log directory may wait for its leaders to move before it stops.",
       at_least(1), unused=True),
    define("log.initial.task.delay.ms", L, 30000, "Delay before the first run of the log "
       "manager's periodic tasks.", at_least(0), unused=True, internal=True),
    define("log.segment.bytes", I, 1073741824, "Size at which a segment is closed and a new "
       "one started (default of segment.bytes).", at_least(14), mode=CW),
    define("log.roll.ms", L, None, "Age at which a segment is rolled even if not full; unset "
       "means log.roll.hours.", mode=CW),
    define("log.roll.hours", I, 168, "Segment roll age in hours, used when log.roll.ms is "
       "unset.", at_least(1)),
    define("log.roll.jitter.ms", L, None, "Random amount subtracted from the roll age so that "
       "segments do not all roll at once; unset means log.roll.jitter.hours.", mode=CW),
    define("log.roll.jitter.hours", I, 0, "Roll jitter in hours, used when log.roll.jitter.ms "
       "is unset.", at_least(0)),
    define("log.retention.ms", L, None, "How long data is kept before its segments are "
       "deleted; -1 keeps it forever. Wins over log.retention.minutes and "
       "log.retention.hours.", mode=CW),
    define("log.retention.minutes", I, None, "Retention in minutes, used when "
       "log.retention.ms is unset."),
    define("log.retention.hours", I, 168, "Retention in hours, used when neither "
       "log.retention.ms nor log.retention.minutes is set."),
    define("log.retention.bytes", L, -1, "Size a partition may grow to before old segments "
       "are deleted; -1 means no size limit.", mode=CW),
    define("log.retention.check.interval.ms", L, 300000, "How often retention is enforced.",
       at_least(1)),
    define("log.cleanup.policy", LS, "delete", "Default cleanup policy: delete old segments, "
       "compact by key, or both.", ListOf(CLEANUP_POLICIES), mode=CW),
    define("log.index.interval.bytes", I, 4096, "Bytes of log between two offset index "
       "entries.", at_least(0), mode=CW),
    define("log.index.size.max.bytes", I, 10485760, "Largest size of a segment's offset "
       "index; a full index rolls the segment.", at_least(4), mode=CW),
    define("log.flush.interval.messages", L, LONG_MAX, "Records appended to a partition "
       "before it is fsynced (default: leave it to the page cache).", at_least(1), mode=CW),
    define("log.flush.interval.ms", L, None, "Longest time appended data stays unsynced; "
       "unset means log.flush.scheduler.interval.ms.", mode=CW),
    define("log.flush.scheduler.interval.ms", L, LONG_MAX, "How often the flusher checks "
       "whether a partition is due for an fsync."),
    define("log.flush.offset.checkpoint.interval.ms", I, 60000, "How often the recovery point "
       "checkpoint is written.", at_least(0)),
    define("log.flush.start.offset.checkpoint.interval.ms", I, 60000, "How often the log "
       "start offset checkpoint is written.", at_least(0), unused=True),
    define("log.segment.delete.delay.ms", L, 60000, "Delay between taking a segment out of "
       "the log and deleting its files.", at_least(0), mode=CW),
    define("log.preallocate", B, False, "Preallocate segment files at their full size.",
       mode=CW),
    define("log.message.format.version", S, "3.0-IV1", "Deprecated: message format of new "
       "data. Ignored when inter.broker.protocol.version is 3.0 or newer, as in Strom, which "
       "always writes record batch v2.", MetadataVersion(), unused=True),
    define("log.message.timestamp.type", S, "CreateTime", "Whether records keep the "
       "producer's timestamp or get the broker's append time.",
       OneOf(TIMESTAMP_TYPES), mode=CW),
    define("log.message.timestamp.difference.max.ms", L, LONG_MAX, "Deprecated: one bound for "
       "both directions; used where the before/after keys are left at their defaults.",
       at_least(0), mode=CW),
    define("log.message.timestamp.before.max.ms", L, LONG_MAX, "How far in the past a record "
       "timestamp may be (CreateTime only).", at_least(0), mode=CW),
    define("log.message.timestamp.after.max.ms", L, LONG_MAX, "How far in the future a record "
       "timestamp may be (CreateTime only).", at_least(0), mode=CW),
    define("log.message.downconversion.enable", B, True, "Whether Fetch v0-3 (message formats "
       "v0/v1) may be served by converting record batches down.", mode=CW),
    define("message.max.bytes", I, 1048588, "Largest record batch a topic accepts by default "
       "(after compression); topic key max.message.bytes.", at_least(0), mode=CW),
    define("compression.type", S, "producer", "Codec batches are stored with; 'producer' "
       "keeps what the producer sent.",
       OneOf(COMPRESSION_TYPES), mode=CW),
    define("compression.gzip.level", I, -1, "gzip level when the broker compresses.",
       GZIP_LEVEL, mode=CW),
    define("compression.lz4.level", I, 9, "lz4 level when the broker compresses.",
       LZ4_LEVEL, mode=CW),
    define("compression.zstd.level", I, 3, "zstd level when the broker compresses.",
       ZSTD_LEVEL, mode=CW),
    define("min.insync.replicas", I, 1, "Replicas that must have a record before an acks=all "
       "produce succeeds.", at_least(1), mode=CW),
    define("unclean.leader.election.enable", B, False, "Allow a replica outside the ISR to "
       "become leader (losing data) when no ISR member is left.", mode=CW),
    define("create.topic.policy.class.name", C, None, "Plugin that may refuse CreateTopics "
       "requests.", unused=True),
    define("alter.config.policy.class.name", C, None, "Plugin that may refuse AlterConfigs "
       "requests.", unused=True),
    define("log.cleaner.enable", B, True, "Run the log cleaner, which compacts topics whose "
       "cleanup.policy includes compact."),
    define("log.cleaner.threads", I, 1, "Cleaner threads (0: no cleaning).", at_least(0),
       mode=CW),
    define("log.cleaner.backoff.ms", L, 15000, "Cleaner sleep when nothing is cleanable.",
       at_least(0), mode=CW),
    define("log.cleaner.delete.retention.ms", L, 86400000, "How long tombstones survive "
       "compaction (default of delete.retention.ms).", at_least(0), mode=CW),
    define("log.cleaner.min.cleanable.ratio", D, 0.5, "Dirty share of a log that triggers "
       "compaction (default of min.cleanable.dirty.ratio).", between(0, 1), mode=CW),
    define("log.cleaner.min.compaction.lag.ms", L, 0, "Youngest a record may be and still be "
       "compacted.", at_least(0), mode=CW),
    define("log.cleaner.max.compaction.lag.ms", L, LONG_MAX, "Oldest a record may get before "
       "it must be compacted.", at_least(1), mode=CW),
    define("log.cleaner.dedupe.buffer.size", L, 134217728, "Memory for the cleaner's key map.",
       mode=CW, unused=True),
    define("log.cleaner.io.buffer.size", I, 524288, "Cleaner I/O buffer size.",
       at_least(0), mode=CW, unused=True),
    define("log.cleaner.io.buffer.load.factor", D, 0.9, "Fill factor of the cleaner's key "
       "map.", mode=CW, unused=True),
    define("log.cleaner.io.max.bytes.per.second", D, DOUBLE_MAX, "Cleaner I/O "
       "throttle.", mode=CW, unused=True),
    define("log.local.retention.ms", L, -2, "Tiered storage: how long segments stay on local "
       "disk once copied to remote storage; -2 means log.retention.ms.",
       at_least(-2), mode=CW, unused=True),
    define("log.local.retention.bytes", L, -2, "Tiered storage: local size a partition may "
       "keep once copied to remote storage; -2 means log.retention.bytes.",
       at_least(-2), mode=CW, unused=True),
    define("remote.log.storage.system.enable", B, False, "Turn on tiered storage for the "
       "broker.", unused=True),
    define("remote.log.storage.manager.class.name", S, None, "Remote storage plugin.",
       NonEmptyString(), unused=True),
    define("remote.log.storage.manager.class.path", S, None, "Class path of the remote "
       "storage plugin.", unused=True),
    define("remote.log.storage.manager.impl.prefix", S, "rsm.config.", "Prefix of the "
       "settings passed to the remote storage plugin.", NonEmptyString(), unused=True),
    define("remote.log.metadata.manager.class.name", S, TOPIC_BASED_RLMM, "Remote "
       "log metadata plugin.", NonEmptyString(), unused=True),
    define("remote.log.metadata.manager.class.path", S, None, "Class path of the remote log "
       "metadata plugin.", unused=True),
    define("remote.log.metadata.manager.impl.prefix", S, "rlmm.config.", "Prefix of the "
       "settings passed to the remote log metadata plugin.", NonEmptyString(), unused=True),
    define("remote.log.metadata.manager.listener.name", S, None, "Listener the remote log "
       "metadata plugin connects through.", NonEmptyString(), unused=True),
    define("remote.log.metadata.custom.metadata.max.bytes", I, 128, "Largest custom metadata "
       "the remote storage plugin may attach to a segment.", at_least(0), unused=True),
    define("remote.log.index.file.cache.total.size.bytes", L, 1073741824, "Disk space for "
       "cached remote index files.", at_least(1), mode=CW, unused=True),
    define("remote.log.manager.thread.pool.size", I, 10, "Threads that copy segments to and "
       "expire them from remote storage.", at_least(1), unused=True),
    define("remote.log.manager.copier.thread.pool.size", I, -1, "Threads that copy segments "
       "to remote storage; -1 means remote.log.manager.thread.pool.size.",
       POOL_SIZE, unused=True),
    define("remote.log.manager.expiration.thread.pool.size", I, -1, "Threads that expire "
       "remote segments; -1 means remote.log.manager.thread.pool.size.",
       POOL_SIZE, unused=True),
    define("remote.log.manager.task.interval.ms", L, 30000, "How often remote storage tasks "
       "run.", at_least(1), unused=True),
    define("remote.log.manager.task.retry.backoff.ms", L, 500, "First wait before a failed "
       "remote storage task is retried.", at_least(1), unused=True, internal=True),
    define("remote.log.manager.task.retry.backoff.max.ms", L, 30000, "Longest wait before a "
       "failed remote storage task is retried.", at_least(1), unused=True, internal=True),
    define("remote.log.manager.task.retry.jitter", D, 0.2, "Random share of the retry wait of "
       "remote storage tasks.", between(0, 0.5), unused=True, internal=True),
    define("remote.log.reader.threads", I, 10, "Threads that read from remote storage.",
       at_least(1), unused=True),
    define("remote.log.reader.max.pending.tasks", I, 100, "Reads from remote storage that may "
       "wait for a thread.", at_least(1), unused=True),
    define("remote.log.manager.copy.max.bytes.per.second", L, LONG_MAX, "Bytes per second "
       "copied to remote storage.", at_least(1), mode=CW, unused=True),
    define("remote.log.manager.copy.quota.window.num", I, 11, "Samples kept for the remote "
       "copy quota.", at_least(1), unused=True),
    define("remote.log.manager.copy.quota.window.size.seconds", I, 1, "Time span of one "
       "remote copy quota sample.", at_least(1), unused=True),
    define("remote.log.manager.fetch.max.bytes.per.second", L, LONG_MAX, "Bytes per second "
       "read from remote storage.", at_least(1), mode=CW, unused=True),
    define("remote.log.manager.fetch.quota.window.num", I, 11, "Samples kept for the remote "
       "fetch quota.", at_least(1), unused=True),
    define("remote.log.manager.fetch.quota.window.size.seconds", I, 1, "Time span of one "
       "remote fetch quota sample.", at_least(1), unused=True),
    define("remote.fetch.max.wait.ms", I, 500, "Longest time a fetch waits for data read from "
       "remote storage.", at_least(1), mode=CW, unused=True),
]
# fmt: on
