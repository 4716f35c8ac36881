"""The leader side of the replication quota (server/follower_fetch.py): a replica that the
topic's leader.replication.throttled.replicas names for this broker and that is not in the ISR
gets no records while leader.replication.throttled.rate (this broker's dynamic value, else the
cluster-wide default) is exceeded; replicas in the ISR and partitions not named are served.
A broker without ZooKeeper (cluster_broker_helpers), broker 1 leading, broker 3 outside the
ISR."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_broker_helpers import EPOCH, TOPIC, Leader, close, open_leader

from strom.quota.replication import UNLIMITED

RATE_KEY = "leader.replication.throttled.rate"


@pytest.fixture
def leader(tmp_path: Path) -> Iterator[Leader]:
    lead = open_leader(tmp_path)
    lead.set_state(1, EPOCH, isr=(1, 2))
    try:
        yield lead
    finally:
        close(lead)


def throttle_replicas(lead: Leader, value: str) -> None:
    """The topic's leader.replication.throttled.replicas, as the config watch stores it."""
    record = lead.metadata._topics[TOPIC]
    configs = {"leader.replication.throttled.replicas": value} if value else {}
    lead.metadata._topics[TOPIC] = dataclasses.replace(record, configs=configs)


def set_rates(lead: Leader, per_broker: int | None, default: int | None) -> None:
    broker = lead.broker
    broker.config = broker.config.with_dynamic(
        {} if per_broker is None else {RATE_KEY: str(per_broker)},
        {} if default is None else {RATE_KEY: str(default)},
    )


def test_a_lagging_throttled_replica_gets_nothing_over_the_rate(leader: Leader) -> None:
    for _ in range(5):
        leader.append(50)
    end = leader.log.log_end_offset
    throttle_replicas(leader, "0:1")
    set_rates(leader, 100, None)
    quota = leader.replicas.leader_quota
    first = leader.fetch(3, 0)
    assert first.records  # nothing recorded yet: under the bound
    assert quota.rate.total(leader.broker.clock.monotonic_ms()) == len(first.records)
    held = leader.fetch(3, 0)
    assert held.error_code == 0 and not held.records
    assert held.high_watermark >= 0
    assert quota.throttled_fetches == 1
    # In the ISR: served whatever the rate.
    assert leader.fetch(2, 0).records
    # Named for another broker only: not throttled here.
    throttle_replicas(leader, "0:2")
    assert leader.fetch(3, 0).records
    throttle_replicas(leader, "*")
    assert not leader.fetch(3, 0).records
    # The cluster-wide default applies when the broker has no value of its own; neither: none.
    set_rates(leader, None, 100)
    assert not leader.fetch(3, 0).records
    set_rates(leader, None, None)
    assert leader.replicas._throttled_rate(RATE_KEY) == UNLIMITED
    assert leader.fetch(3, 0).records
    assert leader.log.log_end_offset == end
