"""The broker configuration table: Kafka's key names, types, defaults and ranges.

Defaults are Kafka's unless a comment says why Strom differs. `unused=True` marks keys that are
parsed, validated and described (so tools and copied files behave) but that Strom does not act on.
`dynamic=True` marks keys that AlterConfigs may change at run time; the set follows what Kafka
allows among the keys Strom defines (the broker defaults of topic configs, the cleaner, thread
pools and connection limits).
"""

from __future__ import annotations

from strom.config.definitions import (
    INT_MAX,
    LONG_MAX,
    ConfigDef,
    ConfigType,
    ConfigValue,
    ListOf,
    OneOf,
    Predicate,
    Range,
    at_least,
    between,
    names,
)

B, S, I, SH, L, D, LS, C, P = (  # noqa: E741 - short names keep the table readable
    ConfigType.BOOLEAN,
    ConfigType.STRING,
    ConfigType.INT,
    ConfigType.SHORT,
    ConfigType.LONG,
    ConfigType.DOUBLE,
    ConfigType.LIST,
    ConfigType.CLASS,
    ConfigType.PASSWORD,
)

HOUR_MS = 60 * 60 * 1000
WEEK_MS = 7 * 24 * HOUR_MS
COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")
CLEANUP_POLICIES = ("compact", "delete")
TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")

GZIP_LEVEL = Predicate(
    lambda v: isinstance(v, int) and (v == -1 or 1 <= v <= 9), "-1 (library default) or 1..9"
)
LZ4_LEVEL = between(1, 17)
ZSTD_LEVEL = between(-131072, 22)


def _d(
    name: str,
    ctype: ConfigType,
    default: ConfigValue,
    doc: str,
    validator: Range | OneOf | ListOf | Predicate | None = None,
    *,
    dynamic: bool = False,
    unused: bool = False,
) -> ConfigDef:
    return ConfigDef(name, ctype, default, doc, validator, dynamic, unused)


# fmt: off
BROKER_DEFS: dict[str, ConfigDef] = names(
    [
        # --- identity and cluster -----------------------------------------------------------
        _d("broker.id", I, 0, "This broker's id. Strom defaults to 0 (Kafka's -1 asks ZooKeeper "
           "to generate one, which Strom does not do).", at_least(-1)),
        _d("node.id", I, -1, "KRaft name for the broker id; when set and broker.id is not, it is "
           "used as the broker id.", at_least(-1)),
        _d("broker.rack", S, None, "Rack (or zone) of this broker, reported in metadata."),
        _d("zookeeper.connect", S, None, "ZooKeeper connection string for a multi-broker "
           "cluster; unset means a single broker keeping metadata in its data directory."),
        _d("zookeeper.session.timeout.ms", I, 18000, "ZooKeeper session timeout."),
        _d("zookeeper.connection.timeout.ms", I, None, "Time to wait for a ZooKeeper connection; "
           "unset means zookeeper.session.timeout.ms."),
        # --- network ------------------------------------------------------------------------
        _d("listeners", LS, "PLAINTEXT://127.0.0.1:9092", "Comma-separated NAME://host:port "
           "endpoints to accept clients on. Strom binds 127.0.0.1 by default, where Kafka binds "
           "every interface, so a development broker is not reachable from the network."),
        _d("advertised.listeners", LS, None, "Endpoints given to clients in metadata, when they "
           "differ from listeners (NAT, containers). Unset means the listeners."),
        _d("listener.security.protocol.map", S,
           "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
           "Maps listener names to security protocols; Strom serves PLAINTEXT only."),
        _d("inter.broker.listener.name", S, None, "Listener the brokers use to reach each other; "
           "unset means the first listener that is not the control-plane listener."),
        _d("control.plane.listener.name", S, None, "Listener the controller sends its requests "
           "(LeaderAndIsr, StopReplica) to, so that they do not queue behind client traffic; "
           "one of listeners, in listener.security.protocol.map, not the inter-broker listener. "
           "Never given to clients in metadata. Unset: the inter-broker listener."),
        _d("controller.socket.timeout.ms", I, 30000, "How long the controller waits for a "
           "broker to answer one of its requests before reconnecting and sending it again.",
           at_least(1)),
        _d("security.inter.broker.protocol", S, "PLAINTEXT", "Protocol between brokers.",
           OneOf(("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")), unused=True),
        _d("socket.send.buffer.bytes", I, 102400, "SO_SNDBUF for client sockets; -1 keeps the "
           "operating system's default."),
        _d("socket.receive.buffer.bytes", I, 102400, "SO_RCVBUF for client sockets; -1 keeps the "
           "operating system's default."),
        _d("socket.request.max.bytes", I, 104857600, "Largest request frame accepted; larger "
           "ones close the connection.", at_least(1)),
        _d("socket.listen.backlog.size", I, 50, "Pending-connection queue of the listening "
           "socket.", at_least(1)),
        _d("connections.max.idle.ms", L, 600000, "Connections idle longer than this are closed."),
        _d("max.connections", I, INT_MAX, "Limit on open client connections.", at_least(0),
           dynamic=True, unused=True),
        _d("max.connections.per.ip", I, INT_MAX, "Limit on open connections from one address.",
           at_least(0), dynamic=True, unused=True),
        _d("num.network.threads", I, 3, "Kafka's network thread count; accepted and ignored "
           "because Strom's network layer is one asyncio loop.", at_least(1), dynamic=True,
           unused=True),
        _d("num.io.threads", I, 8, "Worker threads for blocking work (fsync, reading cold "
           "segments, deleting files).", at_least(1), dynamic=True),
        _d("background.threads", I, 10, "Threads for background tasks.", at_least(1),
           dynamic=True, unused=True),
        _d("queued.max.requests", I, 500, "Requests that may be in progress before the broker "
           "stops reading from connections.", at_least(1)),
        _d("message.max.bytes", I, 1048588, "Largest record batch a topic accepts by default "
           "(after compression); topic key max.message.bytes.", at_least(0), dynamic=True),
        _d("fetch.max.bytes", I, 57671680, "Most bytes one Fetch response returns.",
           at_least(1024)),
        _d("max.incremental.fetch.session.cache.slots", I, 1000, "How many incremental fetch "
           "sessions (KIP-227) the broker keeps.", at_least(0)),
        _d("request.timeout.ms", I, 30000, "Timeout for requests the broker sends itself.",
           unused=True),
        # --- storage ------------------------------------------------------------------------
        _d("log.dirs", LS, None, "Comma-separated data directories; unset means log.dir."),
        _d("log.dir", S, "./strom-data", "Data directory used when log.dirs is unset (Strom "
           "default ./strom-data; Kafka's is /tmp/kafka-logs)."),
        _d("num.partitions", I, 1, "Partitions of an auto-created topic, or of a created one "
           "that does not say.", at_least(1)),
        _d("default.replication.factor", I, 1, "Replication factor of auto-created topics.",
           at_least(1)),
        _d("auto.create.topics.enable", B, True, "Create a topic when a client asks for one "
           "that does not exist (metadata or produce)."),
        _d("delete.topic.enable", B, True, "Allow DeleteTopics; when false it is refused."),
        _d("num.recovery.threads.per.data.dir", I, 1, "Threads per data directory for recovery "
           "and shutdown flushes.", at_least(1), dynamic=True, unused=True),
        _d("log.segment.bytes", I, 1073741824, "Size at which a segment is closed and a new one "
           "started (default of segment.bytes).", at_least(1024 * 1024), dynamic=True),
        _d("log.roll.ms", L, None, "Age at which a segment is rolled even if not full; unset "
           "means log.roll.hours.", dynamic=True),
        _d("log.roll.hours", I, 168, "Segment roll age in hours, used when log.roll.ms is "
           "unset.", at_least(1)),
        _d("log.roll.jitter.ms", L, None, "Random amount subtracted from the roll age so that "
           "segments do not all roll at once; unset means log.roll.jitter.hours.", dynamic=True),
        _d("log.roll.jitter.hours", I, 0, "Roll jitter in hours, used when log.roll.jitter.ms "
           "is unset.", at_least(0)),
        _d("log.retention.ms", L, None, "How long data is kept before its segments are deleted; "
           "-1 keeps it forever. Wins over log.retention.minutes and log.retention.hours.",
           dynamic=True),
        _d("log.retention.minutes", I, None, "Retention in minutes, used when log.retention.ms "
           "is unset."),
        _d("log.retention.hours", I, 168, "Retention in hours, used when neither "
           "log.retention.ms nor log.retention.minutes is set."),
        _d("log.retention.bytes", L, -1, "Size a partition may grow to before old segments are "
           "deleted; -1 means no size limit.", dynamic=True),
        _d("log.retention.check.interval.ms", L, 300000, "How often retention is enforced.",
           at_least(1)),
        _d("log.cleanup.policy", LS, "delete", "Default cleanup policy: delete old segments, "
           "compact by key, or both.", ListOf(CLEANUP_POLICIES), dynamic=True),
        _d("log.index.interval.bytes", I, 4096, "Bytes of log between two offset index "
           "entries.", at_least(0), dynamic=True),
        _d("log.index.size.max.bytes", I, 10485760, "Largest size of a segment's offset index; "
           "a full index rolls the segment.", at_least(4), dynamic=True),
        _d("log.flush.interval.messages", L, LONG_MAX, "Records appended to a partition before "
           "it is fsynced (default: leave it to the page cache).", at_least(1), dynamic=True),
        _d("log.flush.interval.ms", L, None, "Longest time appended data stays unsynced; unset "
           "means log.flush.scheduler.interval.ms.", dynamic=True),
        _d("log.flush.scheduler.interval.ms", L, LONG_MAX, "How often the flusher checks "
           "whether a partition is due for an fsync."),
        _d("log.flush.offset.checkpoint.interval.ms", I, 60000, "How often the recovery point "
           "checkpoint is written.", at_least(0)),
        _d("log.flush.start.offset.checkpoint.interval.ms", I, 60000, "How often the log start "
           "offset checkpoint is written.", at_least(0)),
        _d("log.segment.delete.delay.ms", L, 60000, "Delay between taking a segment out of the "
           "log and deleting its files.", at_least(0), dynamic=True),
        _d("log.preallocate", B, False, "Preallocate segment files at their full size.",
           dynamic=True),
        _d("log.message.timestamp.type", S, "CreateTime", "Whether records keep the producer's "
           "timestamp or get the broker's append time.", OneOf(TIMESTAMP_TYPES), dynamic=True),
        _d("log.message.timestamp.before.max.ms", L, LONG_MAX, "How far in the past a record "
           "timestamp may be (CreateTime only).", at_least(0), dynamic=True),
        _d("log.message.timestamp.after.max.ms", L, LONG_MAX, "How far in the future a record "
           "timestamp may be (CreateTime only).", at_least(0), dynamic=True),
        _d("log.message.downconversion.enable", B, True, "Whether Fetch v0-3 (message formats "
           "v0/v1) may be served by converting record batches down.", dynamic=True),
        _d("log.message.timestamp.difference.max.ms", L, LONG_MAX, "Deprecated: one bound for "
           "both directions; used where the before/after keys are left at their defaults.",
           at_least(0)),
        _d("compression.type", S, "producer", "Codec batches are stored with; 'producer' keeps "
           "what the producer sent.", OneOf(COMPRESSION_TYPES), dynamic=True),
        _d("compression.gzip.level", I, -1, "gzip level when the broker compresses.",
           GZIP_LEVEL, dynamic=True),
        _d("compression.lz4.level", I, 9, "lz4 level when the broker compresses.", LZ4_LEVEL,
           dynamic=True),
        _d("compression.zstd.level", I, 3, "zstd level when the broker compresses.",
           ZSTD_LEVEL, dynamic=True),
        _d("min.insync.replicas", I, 1, "Replicas that must have a record before an acks=all "
           "produce succeeds.", at_least(1), dynamic=True),
        _d("unclean.leader.election.enable", B, False, "Allow a replica outside the ISR to "
           "become leader (losing data) when no ISR member is left.", dynamic=True),
        _d("log.local.retention.ms", L, -2, "Tiered storage only; accepted for compatibility.",
           at_least(-2), dynamic=True, unused=True),
        _d("log.local.retention.bytes", L, -2, "Tiered storage only; accepted for "
           "compatibility.", at_least(-2), dynamic=True, unused=True),
        # --- compaction ---------------------------------------------------------------------
        _d("log.cleaner.enable", B, True, "Run the log cleaner, which compacts topics whose "
           "cleanup.policy includes compact."),
        _d("log.cleaner.threads", I, 1, "Cleaner threads.", at_least(0), dynamic=True),
        _d("log.cleaner.backoff.ms", L, 15000, "Cleaner sleep when nothing is cleanable.",
           at_least(0), dynamic=True),
        _d("log.cleaner.delete.retention.ms", L, 86400000, "How long tombstones survive "
           "compaction (default of delete.retention.ms).", at_least(0), dynamic=True),
        _d("log.cleaner.min.cleanable.ratio", D, 0.5, "Dirty share of a log that triggers "
           "compaction (default of min.cleanable.dirty.ratio).", between(0, 1), dynamic=True),
        _d("log.cleaner.min.compaction.lag.ms", L, 0, "Youngest a record may be and still be "
           "compacted.", at_least(0), dynamic=True),
        _d("log.cleaner.max.compaction.lag.ms", L, LONG_MAX, "Oldest a record may get before "
           "it must be compacted.", at_least(1), dynamic=True),
        _d("log.cleaner.dedupe.buffer.size", L, 134217728, "Memory for the cleaner's key map.",
           dynamic=True, unused=True),
        _d("log.cleaner.io.buffer.size", I, 524288, "Cleaner I/O buffer size.", at_least(0),
           dynamic=True, unused=True),
        _d("log.cleaner.io.buffer.load.factor", D, 0.9, "Fill factor of the cleaner's key map.",
           dynamic=True, unused=True),
        _d("log.cleaner.io.max.bytes.per.second", D, 1.7976931348623157e308, "Cleaner I/O "
           "throttle.", dynamic=True, unused=True),
        # --- groups, offsets, transactions --------------------------------------------------
        _d("group.initial.rebalance.delay.ms", I, 3000, "How long a new group waits for more "
           "members before its first rebalance."),
        _d("group.min.session.timeout.ms", I, 6000, "Smallest session timeout a member may "
           "ask for."),
        _d("group.max.session.timeout.ms", I, 1800000, "Largest session timeout a member may "
           "ask for."),
        _d("group.max.size", I, INT_MAX, "Most members one group may have.", at_least(1)),
        _d("group.consumer.session.timeout.ms", I, 45000, "Session timeout of members of "
           "consumer-protocol (KIP-848) groups.", at_least(1)),
        _d("group.consumer.min.session.timeout.ms", I, 45000, "Smallest session timeout a "
           "consumer-protocol member may ask for.", at_least(1)),
        _d("group.consumer.max.session.timeout.ms", I, 60000, "Largest session timeout a "
           "consumer-protocol member may ask for.", at_least(1)),
        _d("group.consumer.heartbeat.interval.ms", I, 5000, "Heartbeat interval the coordinator "
           "gives consumer-protocol members.", at_least(1)),
        _d("group.consumer.min.heartbeat.interval.ms", I, 5000, "Smallest heartbeat interval of "
           "consumer-protocol members.", at_least(1)),
        _d("group.consumer.max.heartbeat.interval.ms", I, 15000, "Largest heartbeat interval of "
           "consumer-protocol members.", at_least(1)),
        _d("group.consumer.assignors", LS, "uniform,range", "Server-side assignors of "
           "consumer-protocol groups, the first being the default."),
        _d("group.consumer.max.size", I, INT_MAX, "Most members one consumer-protocol group may "
           "have.", at_least(1)),
        _d("group.coordinator.rebalance.protocols", LS, "classic,consumer", "Group protocols the "
           "coordinator accepts."),
        _d("offset.metadata.max.bytes", I, 4096, "Largest metadata string an offset commit may "
           "carry.", at_least(0)),
        _d("offsets.topic.num.partitions", I, 50, "Partitions of __consumer_offsets (fixed "
           "once created).", at_least(1)),
        _d("offsets.topic.replication.factor", SH, 1, "Replication factor of "
           "__consumer_offsets. Strom defaults to 1 (Kafka: 3) so a single broker can create it.",
           at_least(1)),
        _d("offsets.topic.segment.bytes", I, 104857600, "Segment size of __consumer_offsets.",
           at_least(1)),
        _d("offsets.retention.minutes", I, 10080, "How long committed offsets of an empty group "
           "are kept.", at_least(1)),
        _d("offsets.retention.check.interval.ms", L, 600000, "How often expired offsets are "
           "removed.", at_least(1)),
        _d("offsets.commit.timeout.ms", I, 5000, "How long an offset commit waits for the "
           "offsets topic to replicate.", at_least(1)),
        _d("transaction.state.log.num.partitions", I, 50, "Partitions of __transaction_state.",
           at_least(1)),
        _d("transaction.state.log.replication.factor", SH, 1, "Replication factor of "
           "__transaction_state. Strom defaults to 1 (Kafka: 3) so a single broker can create it.",
           at_least(1)),
        _d("transaction.state.log.min.isr", I, 1, "min.insync.replicas of __transaction_state "
           "(Strom: 1, Kafka: 2).", at_least(1)),
        _d("transaction.state.log.segment.bytes", I, 104857600, "Segment size of "
           "__transaction_state.", at_least(1)),
        _d("transactional.id.expiration.ms", I, 604800000, "Idle time after which a "
           "transactional id is forgotten.", at_least(1)),
        _d("transaction.max.timeout.ms", I, 900000, "Largest transaction timeout a producer may "
           "ask for.", at_least(1)),
        _d("transaction.abort.timed.out.transaction.cleanup.interval.ms", I, 10000, "How often "
           "timed-out transactions are aborted.", at_least(1)),
        _d("transaction.remove.expired.transaction.cleanup.interval.ms", I, 3600000, "How often "
           "expired transactional ids are removed.", at_least(1)),
        _d("producer.id.expiration.ms", I, 86400000, "Idle time after which an idempotent "
           "producer's sequence state is dropped.", at_least(1)),
        _d("producer.id.expiration.check.interval.ms", I, 600000, "How often expired producer "
           "ids are removed.", at_least(1)),
        # --- replication --------------------------------------------------------------------
        _d("replica.lag.time.max.ms", L, 30000, "A follower that has not caught up for this "
           "long leaves the ISR."),
        _d("replica.fetch.max.bytes", I, 1048576, "Bytes a follower asks for per partition.",
           at_least(0)),
        _d("replica.fetch.wait.max.ms", I, 500, "How long a follower's fetch may wait."),
        _d("replica.fetch.min.bytes", I, 1, "Bytes a follower's fetch waits for."),
        _d("replica.socket.timeout.ms", I, 30000, "Socket timeout of follower fetches."),
        _d("replica.high.watermark.checkpoint.interval.ms", L, 5000, "How often high "
           "watermarks are checkpointed."),
        _d("num.replica.fetchers", I, 1, "Fetcher tasks per source broker.", at_least(1),
           dynamic=True),
        _d("auto.leader.rebalance.enable", B, True, "Move leadership back to preferred "
           "replicas."),
        _d("leader.imbalance.check.interval.seconds", L, 300, "How often the controller "
           "checks the leader imbalance.", at_least(1)),
        _d("leader.imbalance.per.broker.percentage", I, 10, "Share of a broker's preferred "
           "partitions led elsewhere above which the controller rebalances them.", at_least(0)),
        _d("controlled.shutdown.enable", B, True, "Hand leadership over before shutting down."),
        # --- secrets (accepted so copied files load; Strom serves PLAINTEXT only) ------------
        _d("ssl.keystore.password", P, None, "TLS keystore password (not used: PLAINTEXT "
           "only).", unused=True),
        _d("ssl.key.password", P, None, "TLS private key password (not used).", unused=True),
        _d("ssl.truststore.password", P, None, "TLS truststore password (not used).",
           unused=True),
    ]
)
# fmt: on

# Families whose first member wins over the others (Kafka: ms > minutes > hours), with the factor
# that turns each member into milliseconds.
TIME_FAMILIES: dict[str, tuple[tuple[str, int], ...]] = {
    "log.retention.ms": (
        ("log.retention.ms", 1),
        ("log.retention.minutes", 60_000),
        ("log.retention.hours", HOUR_MS),
    ),
    "log.roll.ms": (("log.roll.ms", 1), ("log.roll.hours", HOUR_MS)),
    "log.roll.jitter.ms": (("log.roll.jitter.ms", 1), ("log.roll.jitter.hours", HOUR_MS)),
    "log.flush.interval.ms": (
        ("log.flush.interval.ms", 1),
        ("log.flush.scheduler.interval.ms", 1),
    ),
}


def family_of(name: str) -> tuple[str, ...]:
    """All broker keys that stand for the same setting as `name`, highest priority first."""
    for members in TIME_FAMILIES.values():
        keys = tuple(k for k, _ in members)
        if name in keys:
            return keys
    return (name,)


# Kafka keys Strom does not define but accepts without a warning, so that a server.properties
# copied from a Kafka installation loads quietly. Their values are kept in `raw` and ignored.
KNOWN_UNUSED: frozenset[str] = frozenset(
    """
    process.roles controller.quorum.voters controller.quorum.bootstrap.servers
    controller.listener.names metadata.log.dir metadata.log.segment.bytes
    metadata.max.retention.bytes metadata.max.retention.ms initial.broker.registration.timeout.ms
    broker.heartbeat.interval.ms broker.session.timeout.ms broker.id.generation.enable
    reserved.broker.max.id num.replica.alter.log.dirs.threads
    log.initial.task.delay.ms log.dir.failure.timeout.ms metric.reporters metrics.num.samples
    metrics.sample.window.ms metrics.recording.level kafka.metrics.reporters
    kafka.metrics.polling.interval.secs auto.include.jmx.reporter
    group.coordinator.rebalance.protocols group.coordinator.new.enable group.coordinator.threads
    group.consumer.session.timeout.ms group.consumer.heartbeat.interval.ms group.consumer.max.size
    group.consumer.assignors group.share.enable share.coordinator.state.topic.replication.factor
    share.coordinator.state.topic.min.isr offsets.load.buffer.size offsets.commit.required.acks
    offsets.topic.compression.codec transaction.state.log.load.buffer.size
    transaction.partition.verification.enable controlled.shutdown.max.retries
    controlled.shutdown.retry.backoff.ms replica.fetch.backoff.ms replica.fetch.response.max.bytes
    replica.socket.receive.buffer.bytes replica.selector.class fetch.purgatory.purge.interval.requests
    producer.purgatory.purge.interval.requests delete.records.purgatory.purge.interval.requests
    max.connection.creation.rate max.connections.per.ip.overrides connection.failed.authentication.delay.ms
    connections.max.reauth.ms socket.connection.setup.timeout.ms socket.connection.setup.timeout.max.ms
    queued.max.request.bytes num.quota.samples quota.window.num quota.window.size.seconds
    replication.quota.window.num replication.quota.window.size.seconds
    alter.log.dirs.replication.quota.window.num alter.log.dirs.replication.quota.window.size.seconds
    client.quota.callback.class create.topic.policy.class.name alter.config.policy.class.name
    authorizer.class.name super.users allow.everyone.if.no.acl.found principal.builder.class
    inter.broker.protocol.version log.message.format.version
    zookeeper.set.acl zookeeper.max.in.flight.requests zookeeper.clientCnxnSocket
    zookeeper.ssl.client.enable zookeeper.metadata.migration.enable unstable.api.versions.enable
    unstable.feature.versions.enable remote.log.storage.system.enable delegation.token.master.key
    delegation.token.secret.key delegation.token.max.lifetime.ms delegation.token.expiry.time.ms
    password.encoder.secret password.encoder.old.secret early.start.listeners
    eligible.leader.replicas.enable telemetry.max.bytes
    """.split()  # noqa: SIM905 - a word list is easier to scan than 90 quoted strings
)
# Whole namespaces of security and per-listener settings are accepted the same way.
KNOWN_UNUSED_PREFIXES: tuple[str, ...] = (
    "ssl.",
    "sasl.",
    "listener.name.",
    "security.",
    "remote.log.",
    "zookeeper.ssl.",
    "confluent.",
)
