"""`/metrics`: the broker's state and counters as Prometheus metric families.

Names follow Kafka's JMX metrics as the Prometheus JMX exporter's usual Kafka rules map them
(lower-cased `kafka_<domain>_<type>_<name>`, `PerSec` meters as `_total` counters), so
dashboards and alerts written for Kafka read Strom unchanged:

| metric | Kafka MBean |
| --- | --- |
| kafka_server_brokertopicmetrics_{bytesin,messagesin,bytesout}_total{topic} | BrokerTopicMetrics |
| kafka_network_requestmetrics_requests_total{request} | RequestMetrics RequestsPerSec |
| kafka_network_requestmetrics_totaltimems{request} (histogram, ms) | RequestMetrics TotalTimeMs |
| kafka_server_delayedoperationpurgatory_purgatorysize{delayedoperation} | DelayedOperationPurgatory |
| kafka_server_replicamanager_{partitioncount,leadercount,underreplicatedpartitions,underminisrpartitioncount} | ReplicaManager |
| kafka_server_replicamanager_{isrshrinks,isrexpands}_total | ReplicaManager |
| kafka_controller_kafkacontroller_{activecontrollercount,offlinepartitionscount} | KafkaController |
| kafka_controller_controllerstats_leaderelections_total | ControllerStats LeaderElectionRateAndTimeMs (count) |
| kafka_log_log_{size,logendoffset,logstartoffset,numlogsegments}{topic,partition} | Log |
| kafka_server_socket_server_metrics_{connection_count,connection_creation_total,connection_close_total}{listener} | socket-server-metrics |
| kafka_network_socketserver_networkprocessoravgidlepercent | SocketServer (the event loop) |
| kafka_consumergroup_{lag,current_offset}{consumergroup,topic,partition} | (kafka_exporter's names) |
| kafka_sharegroup_{lag,start_offset}{sharegroup,topic,partition} | (the same names for share groups; Kafka has no such MBean) |
| kafka_server_share_group_metrics_{share_acknowledgement,record_acknowledgement}_total | share-group-metrics |
| kafka_server_group_coordinator_metrics_group_count{protocol}, ..._{consumer,share}_group_count{state} | group-coordinator-metrics |
| kafka_network_requestmetrics_throttletimems{request} (histogram, ms, throttled responses) | RequestMetrics ThrottleTimeMs |
| kafka_server_socket_server_metrics_{successful,failed}_authentication_total{listener} | socket-server-metrics |
| strom_share_partition_{in_flight,delayed_records,archiving_records}{sharegroup,topic,partition} | (Strom's: share partitions led here) |
| strom_share_dead_letter_records_total | (Strom's: dead-letter copies written by this broker) |
| process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ... | prometheus_client's process collector |

Gauges are read from the broker at scrape time; counters come from `server/metrics.py`. Per-topic
counters only (Kafka's topic-less aggregate is `sum()` of them). Group lag is computed for the
groups this broker coordinates, over the partitions it hosts; share-group lag for the share
partitions it leads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from strom.protocol.messages import API_SPECS
from strom.server.metrics import LATENCY_BUCKETS_MS, LatencyHistogram

if TYPE_CHECKING:
    from strom.server.broker import Broker
    from strom.server.dispatch import Dispatcher


def registry_for(broker: Broker, dispatcher: Dispatcher) -> CollectorRegistry:
    """A registry of this broker's metrics and the process's (not the global default
    registry: a test process may run several brokers)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(broker, dispatcher))
    registry.register(ProcessCollector(registry=None))
    return registry


def _api_name(key: int) -> str:
    spec = API_SPECS.get(key)
    return spec.name if spec is not None else str(key)


# ShareAcknowledge's acknowledge types (0 is a gap: no record there).
ACKNOWLEDGE_TYPES = {1: "accept", 2: "release", 3: "reject", 4: "renew"}


def _cumulative(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    """Prometheus' cumulative buckets, the last one +Inf (the count)."""
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip(LATENCY_BUCKETS_MS, histogram.counts, strict=False):
        cumulative += count
        buckets.append((repr(bound), cumulative))
    cumulative += histogram.counts[-1]
    buckets.append(("+Inf", cumulative))
    return buckets


class BrokerCollector(Collector):
    def __init__(self, broker: Broker, dispatcher: Dispatcher) -> None:
        self.broker = broker
        self.dispatcher = dispatcher

    def collect(self) -> Iterator[Metric]:
        yield from self._topic_counters()
        yield from self._requests()
        yield from self._purgatories()
        yield from self._replicas()
        yield from self._logs()
        yield from self._connections()
        yield from self._group_lag()
        yield from self._share_partitions()

    def _topic_counters(self) -> Iterator[Metric]:
        topics = self.broker.metrics.topics
        families = {
            "bytesin": ("Bytes appended by produce requests", "bytes_in"),
            "messagesin": ("Records appended by produce requests", "messages_in"),
            "bytesout": ("Bytes returned to consumer fetches", "bytes_out"),
        }
        for name, (doc, attr) in families.items():
            family = CounterMetricFamily(
                f"kafka_server_brokertopicmetrics_{name}", doc, labels=["topic"]
            )
            for topic, counters in sorted(topics.items()):
                family.add_metric([topic], getattr(counters, attr))
            yield family

    def _requests(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "kafka_network_requestmetrics_requests",
            "Requests answered, per API",
            labels=["request"],
        )
        times = HistogramMetricFamily(
            "kafka_network_requestmetrics_totaltimems",
            "Time from a request's arrival to its encoded response, milliseconds",
            labels=["request"],
        )
        for key, histogram in sorted(self.broker.metrics.requests.items()):
            name = _api_name(key)
            buckets = _cumulative(histogram)
            requests.add_metric([name], buckets[-1][1])
            times.add_metric([name], buckets, histogram.total_ms)
        yield requests
        yield times
        throttles = HistogramMetricFamily(
            "kafka_network_requestmetrics_throttletimems",
            "Throttle time of the responses a client quota delayed, milliseconds",
            labels=["request"],
        )
        for key, histogram in sorted(self.broker.metrics.throttles.items()):
            throttles.add_metric([_api_name(key)], _cumulative(histogram), histogram.total_ms)
        yield throttles

    def _purgatories(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "kafka_server_delayedoperationpurgatory_purgatorysize",
            "Requests waiting in a purgatory (long-polling fetches, acks=all produces)",
            labels=["delayedoperation"],
        )
        family.add_metric(["Fetch"], len(self.broker.fetch_purgatory))
        family.add_metric(["Produce"], len(self.broker.produce_purgatory))
        yield family

    def _replicas(self) -> Iterator[Metric]:
        broker = self.broker
        partitions = len(broker.logs.partitions())
        cluster = broker.cluster
        isr_shrinks = isr_expands = elections = 0
        offline = 0
        if cluster is None:
            leaders, under_replicated, under_min_isr = partitions, 0, 0
            active = 1
        else:
            states = cluster.replicas.states.values()
            leading = [s for s in states if s.is_leader]
            leaders = len(leading)
            under_replicated = sum(1 for s in leading if len(s.isr) < len(s.replicas))
            under_min_isr = sum(1 for s in leading if s.under_min_isr)
            isr_shrinks = cluster.replicas.isr_shrinks
            isr_expands = cluster.replicas.isr_expands
            active = int(broker.controller_id() == broker.config.broker_id)
            elections = cluster.controller.leader_elections
            if active:
                live = set(cluster.metadata.brokers)
                offline = sum(
                    1
                    for versioned in cluster.metadata.states.values()
                    if versioned.state.leader not in live
                )
        gauges = {
            "kafka_server_replicamanager_partitioncount": (
                "Partitions with a replica on this broker",
                partitions,
            ),
            "kafka_server_replicamanager_leadercount": ("Partitions this broker leads", leaders),
            "kafka_server_replicamanager_underreplicatedpartitions": (
                "Partitions led here whose ISR is smaller than their replica set",
                under_replicated,
            ),
            "kafka_server_replicamanager_underminisrpartitioncount": (
                "Partitions led here whose ISR is below min.insync.replicas",
                under_min_isr,
            ),
            "kafka_controller_kafkacontroller_activecontrollercount": (
                "1 on the active controller",
                active,
            ),
            "kafka_controller_kafkacontroller_offlinepartitionscount": (
                "Partitions without a live leader (counted by the active controller)",
                offline,
            ),
        }
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(name, doc, value=value)
        yield CounterMetricFamily(
            "kafka_server_replicamanager_isrshrinks", "ISR shrinks written", value=isr_shrinks
        )
        yield CounterMetricFamily(
            "kafka_server_replicamanager_isrexpands", "ISR expansions written", value=isr_expands
        )
        yield from self._replication_quotas()
        yield CounterMetricFamily(
            "kafka_controller_controllerstats_leaderelections",
            "Partition leaders moved to another broker by this broker as controller",
            value=elections,
        )

    def _replication_quotas(self) -> Iterator[Metric]:
        """Kafka's LeaderReplication and FollowerReplication byte-rate (the bytes per second
        moved for throttled replicas) and the fetches in which a throttled replica got
        nothing."""
        cluster = self.broker.cluster
        if cluster is None:
            return
        now_ms = self.broker.clock.monotonic_ms()
        for side, quota in (
            ("leader", cluster.replicas.leader_quota),
            ("follower", cluster.replicas.follower_quota),
        ):
            yield GaugeMetricFamily(
                f"kafka_server_{side}replication_byte_rate",
                f"Bytes per second moved for replicas throttled as a {side}",
                value=quota.rate.rate(now_ms),
            )
            yield CounterMetricFamily(
                f"kafka_server_{side}replication_throttledfetches",
                f"Fetches in which a throttled replica got nothing ({side} side)",
                value=quota.throttled_fetches,
            )

    def _logs(self) -> Iterator[Metric]:
        families = {
            "size": GaugeMetricFamily(
                "kafka_log_log_size", "Bytes of the partition's log", labels=["topic", "partition"]
            ),
            "end": GaugeMetricFamily(
                "kafka_log_log_logendoffset", "Log end offset", labels=["topic", "partition"]
            ),
            "start": GaugeMetricFamily(
                "kafka_log_log_logstartoffset", "Log start offset", labels=["topic", "partition"]
            ),
            "segments": GaugeMetricFamily(
                "kafka_log_log_numlogsegments", "Segments", labels=["topic", "partition"]
            ),
        }
        for plog in self.broker.logs.all_logs():
            labels = [plog.topic, str(plog.partition)]
            families["size"].add_metric(labels, plog.size_bytes)
            families["end"].add_metric(labels, plog.log_end_offset)
            families["start"].add_metric(labels, plog.log_start_offset)
            families["segments"].add_metric(labels, len(plog.segments))
        yield from families.values()

    def _connections(self) -> Iterator[Metric]:
        metrics = self.broker.metrics
        listeners = sorted(
            {listener.name for listener in self.broker.config.listeners}
            | set(metrics.connections_created)
        )
        open_by_listener = dict.fromkeys(listeners, 0)
        for conn in self.dispatcher.connections:
            open_by_listener[conn.listener_name] = open_by_listener.get(conn.listener_name, 0) + 1
        count = GaugeMetricFamily(
            "kafka_server_socket_server_metrics_connection_count",
            "Open client connections",
            labels=["listener"],
        )
        created = CounterMetricFamily(
            "kafka_server_socket_server_metrics_connection_creation",
            "Connections accepted",
            labels=["listener"],
        )
        closed = CounterMetricFamily(
            "kafka_server_socket_server_metrics_connection_close",
            "Connections closed",
            labels=["listener"],
        )
        shared = self.dispatcher.connections.shared
        succeeded = CounterMetricFamily(
            "kafka_server_socket_server_metrics_successful_authentication",
            "Successful SASL authentications (and re-authentications)",
            labels=["listener"],
        )
        failed = CounterMetricFamily(
            "kafka_server_socket_server_metrics_failed_authentication",
            "Failed SASL authentications, refused TLS handshakes and unmapped TLS principals",
            labels=["listener"],
        )
        for listener in sorted(open_by_listener):
            count.add_metric([listener], open_by_listener[listener])
            created.add_metric([listener], metrics.connections_created.get(listener, 0))
            closed.add_metric([listener], metrics.connections_closed.get(listener, 0))
            succeeded.add_metric([listener], shared.authentications.get(listener, 0))
            failed.add_metric([listener], shared.failed_authentications.get(listener, 0))
        yield count
        yield created
        yield closed
        yield succeeded
        yield failed
        yield GaugeMetricFamily(
            "kafka_network_socketserver_networkprocessoravgidlepercent",
            "Fraction of time the event loop waited for I/O since the previous scrape",
            value=metrics.idle.ratio_since_last(),
        )

    def _group_lag(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "kafka_consumergroup_lag",
            "High watermark minus the group's committed offset",
            labels=["consumergroup", "topic", "partition"],
        )
        current = GaugeMetricFamily(
            "kafka_consumergroup_current_offset",
            "The group's committed offset",
            labels=["consumergroup", "topic", "partition"],
        )
        for shard in list(self.broker.groups.shards.values()):
            for group, topic, partition, offset in shard.committed_offsets():
                labels = [group, topic, str(partition)]
                current.add_metric(labels, offset)
                plog = self.broker.logs.get(topic, partition)
                if plog is not None:
                    lag.add_metric(labels, max(0, plog.high_watermark - offset))
        yield lag
        yield current
        yield from self._share_group_lag()
        yield from self._group_counts()

    def _group_counts(self) -> Iterator[Metric]:
        """Groups this broker coordinates, by protocol and, for consumer and share groups, by
        state (Kafka's GroupCoordinatorMetrics group-count, consumer-group-count and
        share-group-count)."""
        by_protocol = dict.fromkeys(("classic", "consumer", "share"), 0)
        by_state: dict[str, dict[str, int]] = {"consumer": {}, "share": {}}
        for shard in list(self.broker.groups.shards.values()):
            for g in shard.list_groups([], []):
                kind = g.group_type or "classic"
                by_protocol[kind] = by_protocol.get(kind, 0) + 1
                if kind in by_state:
                    state = g.group_state.lower()
                    by_state[kind][state] = by_state[kind].get(state, 0) + 1
        count = GaugeMetricFamily(
            "kafka_server_group_coordinator_metrics_group_count",
            "Groups this broker coordinates, per protocol",
            labels=["protocol"],
        )
        for kind, n in sorted(by_protocol.items()):
            count.add_metric([kind], n)
        yield count
        for kind, states in by_state.items():
            family = GaugeMetricFamily(
                f"kafka_server_group_coordinator_metrics_{kind}_group_count",
                f"{kind.capitalize()} groups this broker coordinates, per state",
                labels=["state"],
            )
            for state, n in sorted(states.items()):
                family.add_metric([state], n)
            yield family

    def _share_group_lag(self) -> Iterator[Metric]:
        """Share groups' lag on the share partitions this broker leads (loaded in memory):
        the high watermark minus the share-partition start offset, less the records after it
        already acknowledged or archived, as DescribeShareGroupOffsets v1 answers it."""
        lag = GaugeMetricFamily(
            "kafka_sharegroup_lag",
            "Records of the partition the share group has not finished (acknowledged or archived)",
            labels=["sharegroup", "topic", "partition"],
        )
        start = GaugeMetricFamily(
            "kafka_sharegroup_start_offset",
            "The share-partition start offset: every record before it is finished",
            labels=["sharegroup", "topic", "partition"],
        )
        for (group, topic, partition), sp in sorted(self.broker.shares.partitions.items()):
            labels = [group, topic, str(partition)]
            start.add_metric(labels, sp.start_offset)
            plog = self.broker.logs.get(topic, partition)
            if plog is not None:
                finished = sp.final_count()
                lag.add_metric(labels, max(0, plog.high_watermark - sp.start_offset - finished))
        yield lag
        yield start
        metrics = self.broker.metrics
        yield CounterMetricFamily(
            "kafka_server_share_group_metrics_share_acknowledgement",
            "Partitions whose acknowledgements a ShareFetch or ShareAcknowledge applied",
            value=metrics.share_acknowledgements,
        )
        records = CounterMetricFamily(
            "kafka_server_share_group_metrics_record_acknowledgement",
            "Records acknowledged by share consumers, per acknowledge type",
            labels=["ack_type"],
        )
        for code, name in ACKNOWLEDGE_TYPES.items():
            records.add_metric([name], metrics.share_records_acknowledged.get(code, 0))
        yield records

    def _share_partitions(self) -> Iterator[Metric]:
        labels = ["sharegroup", "topic", "partition"]
        families = {
            "in_flight": GaugeMetricFamily(
                "strom_share_partition_in_flight",
                "Records between the start offset and the end of the share partition's window",
                labels=labels,
            ),
            "delayed": GaugeMetricFamily(
                "strom_share_partition_delayed_records",
                "Records waiting for their delivery time (strom.deliver.at, strom.delay.ms)",
                labels=labels,
            ),
            "archiving": GaugeMetricFamily(
                "strom_share_partition_archiving_records",
                "Records given up on that wait for their dead-letter copy",
                labels=labels,
            ),
        }
        shares = self.broker.shares
        for (group, topic, partition), sp in list(shares.partitions.items()):
            values = [group, topic, str(partition)]
            families["in_flight"].add_metric(values, sp.in_flight)
            families["delayed"].add_metric(values, sp.delayed_pending)
            families["archiving"].add_metric(values, len(sp.archiving_offsets()))
        yield from families.values()
        yield CounterMetricFamily(
            "strom_share_dead_letter_records",
            "Dead-letter copies this broker wrote for share groups",
            value=shares.queues.dead_letters.copied,
        )
