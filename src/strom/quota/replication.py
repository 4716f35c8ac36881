"""Replication quotas (Kafka's ReplicationQuotaManager): a bound on the bytes per second a
broker moves for throttled replicas, as a leader (`leader.replication.throttled.rate`) and as a
follower (`follower.replication.throttled.rate`).

Which replicas are throttled is a topic's `leader.replication.throttled.replicas` and
`follower.replication.throttled.replicas`: `*` (every partition of the topic) or a list of
`partition:broker` pairs, of which a broker takes the partitions paired with its own id (the
leader list names the brokers that send, the follower list those that fetch, as
kafka-reassign-partitions.sh writes them). The rate is Kafka's sampled rate over
`replication.quota.window.num` samples of `replication.quota.window.size.seconds`.

As in Kafka, a throttled replica that is not in sync gets nothing while the rate is over the
bound (the leader answers it no records, the follower leaves it out of its fetch), and every
byte moved for a throttled replica counts, in sync or not. One rate per direction per broker;
recording is one addition per fetch, no per-record work.
"""

from __future__ import annotations

from collections.abc import Callable

from strom.quota.rate import SampledRate

# Kafka's default for both rates (Long.MAX_VALUE): no bound.
UNLIMITED = (1 << 63) - 1
ALL_PARTITIONS = "*"


def throttled_partitions(value: str, broker_id: int) -> frozenset[int] | None:
    """The partitions a throttled-replicas value names for `broker_id` (None: all of them).
    Entries that do not parse are ignored (the topic config's validator refuses them)."""
    value = value.strip()
    if value == ALL_PARTITIONS:
        return None
    partitions: set[int] = set()
    for item in value.split(","):
        partition, sep, broker = item.strip().partition(":")
        if not sep:
            continue
        try:
            if int(broker) == broker_id:
                partitions.add(int(partition))
        except ValueError:
            continue
    return frozenset(partitions)


class ReplicationQuota:
    """One direction's quota on one broker.

    `bound` gives the current rate bound (a dynamic broker config, so read on every check);
    `throttled_value` the topic's throttled-replicas config value ("" when unset)."""

    def __init__(
        self,
        broker_id: int,
        bound: Callable[[], int],
        throttled_value: Callable[[str], str],
        samples: int = 11,
        window_ms: int = 1000,
    ) -> None:
        self.broker_id = broker_id
        self.bound = bound
        self.throttled_value = throttled_value
        self.rate = SampledRate(samples, window_ms)
        # topic -> (the config value parsed, its partitions for this broker)
        self._parsed: dict[str, tuple[str, frozenset[int] | None]] = {}
        # Fetches in which a throttled replica got nothing (Kafka's throttle-time counts).
        self.throttled_fetches = 0

    def is_throttled(self, topic: str, partition: int) -> bool:
        value = self.throttled_value(topic)
        if not value:
            return False
        cached = self._parsed.get(topic)
        if cached is None or cached[0] != value:
            cached = (value, throttled_partitions(value, self.broker_id))
            self._parsed[topic] = cached
        partitions = cached[1]
        return partitions is None or partition in partitions

    def is_exceeded(self, now_ms: int) -> bool:
        bound = self.bound()
        if bound >= UNLIMITED:
            return False
        return self.rate.rate(now_ms) > bound

    def should_throttle(self, topic: str, partition: int, in_sync: bool, now_ms: int) -> bool:
        """Kafka's shouldLeaderThrottle / shouldFollowerThrottle."""
        return not in_sync and self.is_throttled(topic, partition) and self.is_exceeded(now_ms)

    def record(self, size: int, now_ms: int) -> None:
        if size > 0:
            self.rate.record(size, now_ms)
