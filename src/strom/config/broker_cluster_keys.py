"""Broker keys of identity and cluster membership: broker ids, ZooKeeper (and its TLS), KRaft (which
Strom, a ZooKeeper-mode broker, only accepts), replication between brokers, controlled shutdown,
metrics reporters and request housekeeping."""

from __future__ import annotations

from strom.config.definitions import LONG_MAX, ConfigDef
from strom.config.shorthand import CW, LS, B, I, L, P, S, define
from strom.config.validators import (
    BootstrapServers,
    ListOf,
    MetadataVersion,
    QuorumVoters,
    at_least,
)

# fmt: off
BROKER_CLUSTER_DEFS: list[ConfigDef] = [
    define("broker.id", I, 0, "This broker's id. Strom defaults to 0 (Kafka's -1 asks "
       "ZooKeeper to generate one, which Strom does not do)."),
    define("node.id", I, -1, "KRaft name for the broker id; when set and broker.id is not, it "
       "is used as the broker id."),
    define("broker.rack", S, None, "Rack (or zone) of this broker, reported in metadata."),
    define("broker.id.generation.enable", B, True, "Let ZooKeeper hand out a broker id when "
       "broker.id is unset (Strom needs an explicit id).", unused=True),
    define("reserved.broker.max.id", I, 1000, "Highest broker id an operator may set; "
       "generated ids start above it.", at_least(0), unused=True),
    define("zookeeper.connect", S, None, "ZooKeeper connection string for a multi-broker "
       "cluster; unset means a single broker keeping metadata in its data directory."),
    define("zookeeper.session.timeout.ms", I, 18000, "ZooKeeper session timeout."),
    define("zookeeper.connection.timeout.ms", I, None, "Time to wait for a ZooKeeper "
       "connection; unset means zookeeper.session.timeout.ms."),
    define("zookeeper.set.acl", B, False, "Write ZooKeeper nodes with ACLs that only "
       "authenticated brokers may change.", unused=True),
    define("zookeeper.max.in.flight.requests", I, 10, "Unacknowledged ZooKeeper requests a "
       "broker may have before it waits.", at_least(1), unused=True),
    define("zookeeper.clientCnxnSocket", S, None, "ZooKeeper client socket implementation "
       "(Netty for TLS to ZooKeeper).", unused=True),
    define("zookeeper.ssl.client.enable", B, False, "Connect to ZooKeeper over TLS (its "
       "secureClientPort)."),
    define("zookeeper.ssl.keystore.location", S, None, "Keystore file of the TLS connection "
       "to ZooKeeper."),
    define("zookeeper.ssl.keystore.password", P, None, "Password of "
       "zookeeper.ssl.keystore.location."),
    define("zookeeper.ssl.keystore.type", S, None, "Keystore format of the ZooKeeper TLS "
       "connection (JKS, PKCS12, PEM)."),
    define("zookeeper.ssl.truststore.location", S, None, "Truststore file of the TLS "
       "connection to ZooKeeper."),
    define("zookeeper.ssl.truststore.password", P, None, "Password of "
       "zookeeper.ssl.truststore.location."),
    define("zookeeper.ssl.truststore.type", S, None, "Truststore format of the ZooKeeper TLS "
       "connection (JKS, PKCS12, PEM); without a truststore the system's authorities are "
       "trusted."),
    define("zookeeper.ssl.protocol", S, "TLSv1.2", "TLS protocol of the ZooKeeper connection, "
       "when zookeeper.ssl.enabled.protocols is not set."),
    define("zookeeper.ssl.enabled.protocols", LS, None, "TLS protocol versions allowed "
       "towards ZooKeeper."),
    define("zookeeper.ssl.cipher.suites", LS, None, "Cipher suites allowed towards ZooKeeper."),
    define("zookeeper.ssl.endpoint.identification.algorithm", S, "HTTPS", "Host name check of "
       "ZooKeeper's certificate (HTTPS, or empty for none)."),
    define("zookeeper.ssl.crl.enable", B, False, "Check certificate revocation lists on the "
       "ZooKeeper connection.", unused=True),
    define("zookeeper.ssl.ocsp.enable", B, False, "Check certificates through OCSP on the "
       "ZooKeeper connection.", unused=True),
    define("zookeeper.metadata.migration.enable", B, False, "Take part in a migration of the "
       "cluster's metadata from ZooKeeper to KRaft.", unused=True),
    define("zookeeper.metadata.migration.min.batch.size", I, 200, "Smallest batch of records "
       "written during a ZooKeeper-to-KRaft migration.",
       at_least(1), unused=True, internal=True),
    define("process.roles", LS, "", "KRaft roles of this node (broker, controller); empty "
       "means a ZooKeeper-mode broker, which is what Strom is.",
       ListOf(("broker", "controller")), unused=True),
    define("controller.listener.names", S, None, "Listeners the KRaft controllers use.",
       unused=True),
    define("controller.quorum.voters", LS, "", "KRaft controller quorum as id@host:port "
       "entries.", QuorumVoters(), unused=True),
    define("controller.quorum.bootstrap.servers", LS, "", "host:port entries through which a "
       "node finds the KRaft quorum.", BootstrapServers(), unused=True),
    define("controller.quorum.election.timeout.ms", I, 1000, "KRaft: time without a leader "
       "before an election starts.", unused=True),
    define("controller.quorum.fetch.timeout.ms", I, 2000, "KRaft: time without a successful "
       "fetch from the leader before a voter stands for election.", unused=True),
    define("controller.quorum.election.backoff.max.ms", I, 1000, "KRaft: longest back-off "
       "before a new election.", unused=True),
    define("controller.quorum.append.linger.ms", I, 25, "KRaft: how long the leader gathers "
       "writes before flushing them.", unused=True),
    define("controller.quorum.request.timeout.ms", I, 2000, "KRaft: how long a quorum request "
       "waits for its answer.", unused=True),
    define("controller.quorum.retry.backoff.ms", I, 20, "KRaft: wait before a failed quorum "
       "request is retried.", unused=True),
    define("sasl.mechanism.controller.protocol", S, "GSSAPI", "SASL mechanism for connections "
       "to the KRaft controllers.", unused=True),
    define("metadata.log.dir", S, None, "Directory of the KRaft metadata log; unset means the "
       "first log directory.", unused=True),
    define("metadata.log.segment.bytes", I, 1073741824, "Segment size of the KRaft metadata "
       "log.", at_least(12), unused=True),
    define("metadata.log.segment.min.bytes", I, 8388608, "Smallest allowed segment size of "
       "the KRaft metadata log.", at_least(12), unused=True, internal=True),
    define("metadata.log.segment.ms", L, 604800000, "Age at which the KRaft metadata log "
       "rolls a segment.", unused=True),
    define("metadata.max.retention.bytes", L, 104857600, "Size of the KRaft metadata log past "
       "which old snapshots and segments go.", unused=True),
    define("metadata.max.retention.ms", L, 604800000, "Age past which KRaft metadata "
       "snapshots and segments go.", unused=True),
    define("metadata.max.idle.interval.ms", I, 500, "How often an idle KRaft controller "
       "writes a no-op record.", at_least(0), unused=True),
    define("metadata.log.max.record.bytes.between.snapshots", L, 20971520, "KRaft: bytes of "
       "new metadata records after which a snapshot is taken.", at_least(1), unused=True),
    define("metadata.log.max.snapshot.interval.ms", L, 3600000, "KRaft: longest time between "
       "metadata snapshots when records arrive.", at_least(0), unused=True),
    define("initial.broker.registration.timeout.ms", I, 60000, "KRaft: how long a starting "
       "broker waits to register with the controllers.", unused=True),
    define("broker.heartbeat.interval.ms", I, 2000, "KRaft: time between a broker's "
       "heartbeats to the controller.", unused=True),
    define("broker.session.timeout.ms", I, 9000, "KRaft: a broker silent this long is fenced.",
       unused=True),
    define("server.max.startup.time.ms", L, LONG_MAX, "Longest time a starting node waits to "
       "be ready before it gives up.", at_least(0), unused=True, internal=True),
    define("eligible.leader.replicas.enable", B, False, "Keep eligible leader replicas "
       "(KIP-966) besides the ISR.", unused=True),
    define("inter.broker.protocol.version", S, "3.9-IV0", "Protocol version brokers use with "
       "each other; in Kafka, raised in steps during an upgrade.",
       MetadataVersion(), unused=True),
    define("unstable.api.versions.enable", B, False, "Advertise API versions that are still "
       "in development.", unused=True, internal=True),
    define("unstable.feature.versions.enable", B, False, "Allow feature versions that are "
       "still in development.", unused=True, internal=True),
    define("default.replication.factor", I, 1, "Replication factor of auto-created topics."),
    define("replica.lag.time.max.ms", L, 30000, "A follower that has not caught up for this "
       "long leaves the ISR."),
    define("replica.socket.timeout.ms", I, 30000, "Socket timeout of follower fetches."),
    define("replica.socket.receive.buffer.bytes", I, 65536, "SO_RCVBUF of follower fetch "
       "connections.", unused=True),
    define("replica.fetch.max.bytes", I, 1048576, "Bytes a follower asks for per partition.",
       at_least(0)),
    define("replica.fetch.wait.max.ms", I, 500, "How long a follower's fetch may wait."),
    define("replica.fetch.min.bytes", I, 1, "Bytes a follower's fetch waits for."),
    define("replica.fetch.backoff.ms", I, 1000, "Pause after a follower fetch failed before "
       "the next one.", at_least(0), unused=True),
    define("replica.fetch.response.max.bytes", I, 10485760, "Most bytes a follower asks for "
       "in one fetch over all partitions.", at_least(0), unused=True),
    define("replica.high.watermark.checkpoint.interval.ms", L, 5000, "How often high "
       "watermarks are checkpointed.", unused=True),
    define("replica.selector.class", S, None, "Chooses the replica a consumer with a rack "
       "reads from (KIP-392 follower fetching).", unused=True),
    define("num.replica.fetchers", I, 1, "Fetcher tasks per source broker.",
       mode=CW, unused=True),
    define("auto.leader.rebalance.enable", B, True, "Move leadership back to preferred "
       "replicas."),
    define("leader.imbalance.check.interval.seconds", L, 300, "How often the controller "
       "checks the leader imbalance.", at_least(1)),
    define("leader.imbalance.per.broker.percentage", I, 10, "Share of a broker's preferred "
       "partitions led elsewhere above which the controller rebalances them."),
    define("unclean.leader.election.interval.ms", L, 300000, "How often a KRaft controller "
       "looks for leaderless partitions to elect unclean leaders for.",
       at_least(1), unused=True, internal=True),
    define("controller.socket.timeout.ms", I, 30000, "How long the controller waits for a "
       "broker to answer one of its requests before reconnecting and sending it again."),
    define("controlled.shutdown.enable", B, True, "Hand leadership over before shutting down."),
    define("controlled.shutdown.max.retries", I, 3, "Controlled shutdown attempts before the "
       "broker stops without one.", unused=True),
    define("controlled.shutdown.retry.backoff.ms", L, 5000, "Pause between controlled "
       "shutdown attempts.", unused=True),
    define("delete.topic.enable", B, True, "Allow DeleteTopics; when false it is refused."),
    define("request.timeout.ms", I, 30000, "Timeout for requests the broker sends itself.",
       unused=True),
    define("socket.connection.setup.timeout.ms", L, 10000, "Initial time a broker waits for a "
       "connection it opens to another broker.", unused=True),
    define("socket.connection.setup.timeout.max.ms", L, 30000, "Longest time a broker waits "
       "for a connection it opens, after repeated failures.", unused=True),
    define("fetch.purgatory.purge.interval.requests", I, 1000, "Completed fetch requests "
       "between clean-ups of the fetch purgatory.", unused=True),
    define("producer.purgatory.purge.interval.requests", I, 1000, "Completed produce requests "
       "between clean-ups of the produce purgatory.", unused=True),
    define("delete.records.purgatory.purge.interval.requests", I, 1, "Completed DeleteRecords "
       "requests between clean-ups of their purgatory.", unused=True),
    define("metric.reporters", LS, "", "Classes that receive the broker's metrics.",
       mode=CW, unused=True),
    define("metrics.num.samples", I, 2, "Samples kept to compute a metric.",
       at_least(1), unused=True),
    define("metrics.sample.window.ms", L, 30000, "Time window of one metrics sample.",
       at_least(1), unused=True),
    define("metrics.recording.level", S, "INFO", "Highest level of metrics that are recorded.",
       unused=True),
    define("kafka.metrics.reporters", LS, "", "Yammer metrics reporter classes.", unused=True),
    define("kafka.metrics.polling.interval.secs", I, 10, "How often Yammer metrics reporters "
       "poll.", at_least(1), unused=True),
    define("auto.include.jmx.reporter", B, True, "Add the JMX reporter to metric.reporters "
       "(deprecated).", unused=True),
    define("telemetry.max.bytes", I, 1048576, "Largest client telemetry payload (KIP-714) the "
       "broker accepts.", at_least(1), unused=True),
]
# fmt: on
