"""Broker keys of the group, share-group and transaction coordinators and of producer state."""

from __future__ import annotations

from strom.config.definitions import INT_MAX, ConfigDef
from strom.config.shorthand import CW, LS, SH, B, I, L, S, define
from strom.config.validators import ListOf, OneOf, at_least, between

KAFKA_ASSIGNORS = (
    "org.apache.kafka.coordinator.group.assignor.UniformAssignor,"
    "org.apache.kafka.coordinator.group.assignor.RangeAssignor"
)
MIGRATION_POLICIES = OneOf(
    ("bidirectional", "upgrade", "downgrade", "disabled"), case_sensitive=False
)

# fmt: off
BROKER_COORDINATOR_DEFS: list[ConfigDef] = [
    define("group.min.session.timeout.ms", I, 6000, "Smallest session timeout a member may "
       "ask for."),
    define("group.max.session.timeout.ms", I, 1800000, "Largest session timeout a member may "
       "ask for."),
    define("group.initial.rebalance.delay.ms", I, 3000, "How long a new group waits for more "
       "members before its first rebalance."),
    define("group.max.size", I, INT_MAX, "Most members one group may have.", at_least(1)),
    define("group.coordinator.rebalance.protocols", LS, "classic,consumer", "Group protocols "
       "the coordinator accepts.",
       ListOf(("consumer", "classic", "share", "unknown")), unused=True),
    define("group.coordinator.threads", I, 1, "Threads of the new group coordinator.",
       at_least(1), unused=True),
    define("group.coordinator.append.linger.ms", I, 10, "How long the new group coordinator "
       "gathers writes before appending them.", at_least(0), unused=True),
    define("group.coordinator.new.enable", B, False, "Use the new group coordinator (KIP-848) "
       "in place of the old one.", unused=True, internal=True),
    define("group.consumer.session.timeout.ms", I, 45000, "Session timeout of members of "
       "consumer-protocol (KIP-848) groups.", at_least(1)),
    define("group.consumer.min.session.timeout.ms", I, 45000, "Smallest session timeout a "
       "consumer-protocol member may ask for.", at_least(1), unused=True),
    define("group.consumer.max.session.timeout.ms", I, 60000, "Largest session timeout a "
       "consumer-protocol member may ask for.", at_least(1), unused=True),
    define("group.consumer.heartbeat.interval.ms", I, 5000, "Heartbeat interval the "
       "coordinator gives consumer-protocol members.", at_least(1)),
    define("group.consumer.min.heartbeat.interval.ms", I, 5000, "Smallest heartbeat interval "
       "of consumer-protocol members.", at_least(1), unused=True),
    define("group.consumer.max.heartbeat.interval.ms", I, 15000, "Largest heartbeat interval "
       "of consumer-protocol members.", at_least(1), unused=True),
    define("group.consumer.max.size", I, INT_MAX, "Most members one consumer-protocol group "
       "may have.", at_least(1)),
    define("group.consumer.assignors", LS, KAFKA_ASSIGNORS, "Server-side assignors of "
       "consumer-protocol groups, by class name (Kafka's UniformAssignor and "
       "RangeAssignor) or short name (uniform, range); the first is the default."),
    define("group.consumer.migration.policy", S, "disabled", "Which conversions between "
       "classic and consumer groups are allowed (bidirectional, upgrade, downgrade, "
       "disabled).", MIGRATION_POLICIES, unused=True, internal=True),
    define("group.share.enable", B, False, "Kafka 3.9's switch for its early-access share "
       "groups (KIP-932). Strom serves share groups whatever its value, as Kafka 4.2 does.",
       unused=True, internal=True),
    define("group.share.session.timeout.ms", I, 45000, "Session timeout of share group "
       "members.", at_least(1)),
    define("group.share.min.session.timeout.ms", I, 45000, "Smallest session timeout of share "
       "group members.", at_least(1), unused=True),
    define("group.share.max.session.timeout.ms", I, 60000, "Largest session timeout of share "
       "group members.", at_least(1), unused=True),
    define("group.share.heartbeat.interval.ms", I, 5000, "Heartbeat interval of share group "
       "members.", at_least(1)),
    define("group.share.min.heartbeat.interval.ms", I, 5000, "Smallest heartbeat interval of "
       "share group members.", at_least(1), unused=True),
    define("group.share.max.heartbeat.interval.ms", I, 15000, "Largest heartbeat interval of "
       "share group members.", at_least(1), unused=True),
    define("group.share.max.size", SH, 200, "Most members of one share group.",
       between(10, 1000)),
    define("group.share.max.groups", SH, 10, "Most share groups on the broker; times "
       "group.share.max.size, the most share sessions a broker keeps (as Kafka 4.0).",
       between(1, 100)),
    define("group.share.delivery.count.limit", I, 5, "Deliveries of a record to a share group "
       "before it is archived.", between(2, 10)),
    define("group.share.record.lock.duration.ms", I, 30000, "How long a record handed to a "
       "share consumer stays locked to it.", between(1000, 60000)),
    define("group.share.min.record.lock.duration.ms", I, 15000, "Smallest record lock "
       "duration a share group may set.", between(1000, 30000)),
    define("group.share.max.record.lock.duration.ms", I, 60000, "Largest record lock duration "
       "a share group may set.", between(30000, 3600000)),
    define("group.share.partition.max.record.locks", I, 200, "Most records of one partition "
       "in flight (acquired, or delivered and not yet past the share-partition start offset) "
       "for one share group (Kafka 3.9's default; Kafka 4.x's is 2000).", between(100, 10000)),
    define("offset.metadata.max.bytes", I, 4096, "Largest metadata string an offset commit "
       "may carry."),
    define("offsets.load.buffer.size", I, 5242880, "Read size when loading __consumer_offsets "
       "into the coordinator's cache.", at_least(1), unused=True),
    define("offsets.topic.replication.factor", SH, 1, "Replication factor of "
       "__consumer_offsets. Strom defaults to 1 (Kafka: 3) so a single broker can create it.",
       at_least(1)),
    define("offsets.topic.num.partitions", I, 50, "Partitions of __consumer_offsets (fixed "
       "once created).", at_least(1)),
    define("offsets.topic.segment.bytes", I, 104857600, "Segment size of __consumer_offsets.",
       at_least(1)),
    define("offsets.topic.compression.codec", I, 0, "Codec of __consumer_offsets batches, by "
       "id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).", unused=True),
    define("offsets.retention.minutes", I, 10080, "How long committed offsets of an empty "
       "group are kept.", at_least(1)),
    define("offsets.retention.check.interval.ms", L, 600000, "How often expired offsets are "
       "removed.", at_least(1)),
    define("offsets.commit.timeout.ms", I, 5000, "How long an offset commit waits for the "
       "offsets topic to replicate.", at_least(1)),
    define("offsets.commit.required.acks", SH, -1, "Deprecated: acks an offset commit waits "
       "for; -1 (all in-sync replicas) is the only sensible value.", unused=True),
    define("transactional.id.expiration.ms", I, 604800000, "Idle time after which a "
       "transactional id is forgotten.", at_least(1)),
    define("transaction.max.timeout.ms", I, 900000, "Largest transaction timeout a producer "
       "may ask for.", at_least(1)),
    define("transaction.state.log.min.isr", I, 1, "min.insync.replicas of __transaction_state "
       "(Strom: 1, Kafka: 2).", at_least(1)),
    define("transaction.state.log.load.buffer.size", I, 5242880, "Read size when loading "
       "__transaction_state into the coordinator's cache.", at_least(1), unused=True),
    define("transaction.state.log.replication.factor", SH, 1, "Replication factor of "
       "__transaction_state. Strom defaults to 1 (Kafka: 3) so a single broker can create it.",
       at_least(1)),
    define("transaction.state.log.num.partitions", I, 50, "Partitions of __transaction_state.",
       at_least(1)),
    define("transaction.state.log.segment.bytes", I, 104857600, "Segment size of "
       "__transaction_state.", at_least(1)),
    define("transaction.abort.timed.out.transaction.cleanup.interval.ms", I, 10000, "How "
       "often timed-out transactions are aborted.", at_least(1)),
    define("transaction.remove.expired.transaction.cleanup.interval.ms", I, 3600000, "How "
       "often expired transactional ids are removed.", at_least(1)),
    define("transaction.partition.verification.enable", B, True, "Check with the transaction "
       "coordinator that a partition was added to the transaction before taking a "
       "transactional write (KIP-890).", mode=CW, unused=True),
    define("producer.id.expiration.ms", I, 86400000, "Idle time after which an idempotent "
       "producer's sequence state is dropped.", at_least(1), mode=CW),
    define("producer.id.expiration.check.interval.ms", I, 600000, "How often expired producer "
       "ids are removed.", at_least(1), internal=True),
]
# fmt: on
