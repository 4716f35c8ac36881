"""Replication quotas (quota/replication.py): which replicas a topic's throttled-replicas
config names for a broker, the rate bound, and a follower session that leaves a throttled,
out-of-sync partition out of its fetches while its rate is over the bound (LeaderSim answers,
no network)."""

from __future__ import annotations

from pathlib import Path

from replication_helpers import TOPIC, LeaderSim, log_bytes, open_log

from strom.quota.replication import UNLIMITED, ReplicationQuota, throttled_partitions
from strom.replication.follower import FetcherConfig, FollowerSession


def test_throttled_partitions_are_those_paired_with_the_broker() -> None:
    assert throttled_partitions("*", 1) is None
    assert throttled_partitions(" * ", 7) is None
    assert throttled_partitions("0:1,1:2,2:1", 1) == {0, 2}
    assert throttled_partitions("0:1, 1:2 ,2:1", 2) == {1}
    assert throttled_partitions("0:1,1:2", 3) == frozenset()
    assert throttled_partitions("", 1) == frozenset()


def test_the_quota_follows_the_config_and_the_rate() -> None:
    configs = {"orders": "0:1,3:1,1:2"}
    bound = [UNLIMITED]
    quota = ReplicationQuota(1, lambda: bound[0], lambda t: configs.get(t, ""), 11, 1000)
    assert quota.is_throttled("orders", 0) and quota.is_throttled("orders", 3)
    assert not quota.is_throttled("orders", 1) and not quota.is_throttled("other", 0)
    configs["orders"] = "*"  # a changed config is read again
    assert quota.is_throttled("orders", 1)
    quota.record(5_000_000, 0)
    # Unbounded (Kafka's Long.MAX_VALUE default): never exceeded.
    assert not quota.should_throttle("orders", 1, False, 0)
    bound[0] = 100_000
    # 5 MB over the minimal 10 s window is 500 KB/s: over 100 KB/s.
    assert quota.is_exceeded(0)
    assert quota.should_throttle("orders", 1, False, 0)
    assert not quota.should_throttle("orders", 1, True, 0)  # in sync: never throttled
    assert not quota.should_throttle("other", 0, False, 0)  # not throttled
    # Once the samples are a whole window old, the rate is back under the bound.
    assert not quota.is_exceeded(11 * 1000 + 1)


def test_a_follower_leaves_throttled_lagging_partitions_out(tmp_path: Path) -> None:
    leader = LeaderSim(open_log(tmp_path / "leader"), epoch=1)
    # The follower is a replica a reassignment adds: not in the ISR, so the leader's high
    # watermark is its log end and the follower is behind it until it has caught up.
    leader.become_leader(2, isr=(0,))
    for n in range(20):
        leader.append([f"v{n}-{i}".encode() * 50 for i in range(10)])
    follower = open_log(tmp_path / "follower")
    clock = leader.clock
    bound = [100]  # bytes per second
    throttled = ["0:1"]
    quota = ReplicationQuota(1, lambda: bound[0], lambda t: throttled[0] if t == TOPIC else "")
    # Small fetches (one batch each), so that one does not take everything.
    config = FetcherConfig(fetch_max_bytes=2_000, fetch_backoff_ms=1_000)
    session = FollowerSession(local_broker_id=1, config=config, quota=quota)
    entry = session.add(follower, leader_epoch=2)
    session.truncate_without_epochs(clock.monotonic_ms())

    def fetch_once() -> bool:
        now = clock.monotonic_ms()
        session.truncate_without_epochs(now)
        request = session.offsets_request(now)
        if request is not None:
            session.handle_offsets_response(request, leader.answer_offsets(request), now)
        prepared = session.fetch_request(17, now)
        if prepared is None:
            return False
        fetch, sent = prepared
        response = leader.answer_fetch(fetch, sent.version)
        session.handle_fetch_response(sent, response, now)
        return True

    assert fetch_once()
    fetched = follower.log_end_offset
    assert 0 < fetched < leader.log.log_end_offset
    assert not entry.in_sync
    # The bytes fetched for the throttled partition, counted once.
    assert quota.rate.total(clock.monotonic_ms()) == len(log_bytes(follower))
    # Over 100 B/s and behind the leader: left out, and delayed by replica.fetch.backoff.ms.
    assert not fetch_once()
    assert quota.throttled_fetches == 1
    assert session.next_ready_ms() == clock.monotonic_ms() + 1_000
    clock.advance(1_000)
    assert not fetch_once()  # still over the bound
    assert follower.log_end_offset == fetched
    # Once the topic's throttled replicas no longer name this broker, it fetches whatever
    # the rate; named again, it is held back again.
    throttled[0] = "0:2"
    clock.advance(1_000)
    assert fetch_once() and follower.log_end_offset > fetched
    throttled[0] = "*"
    assert not fetch_once()
    # Without a bound it catches up; in sync, a bound no longer holds it back.
    bound[0] = UNLIMITED
    clock.advance(1_000)
    while follower.log_end_offset < leader.log.log_end_offset:
        clock.advance(1_000)
        assert fetch_once()
    assert log_bytes(follower) == log_bytes(leader.log)
    assert entry.in_sync
    bound[0] = 1
    leader.append([b"late"])
    assert fetch_once() and follower.log_end_offset == leader.log.log_end_offset
