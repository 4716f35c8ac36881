"""Connection admission (Kafka's connection quotas), the request memory pool, and the
configuration keys behind them."""

from __future__ import annotations

import pytest

from strom.config import BrokerConfig, ConfigError
from strom.server.connection_quotas import (
    DEFAULT_IP,
    ConnectionLimits,
    ConnectionQuotas,
    Verdict,
)
from strom.server.connections import connection_limits
from strom.server.memory_pool import MemoryPool


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ADMITTED, TOO_MANY, THROTTLED = Verdict.ADMITTED, Verdict.TOO_MANY_FROM_IP, Verdict.IP_THROTTLED


def admit(quotas: ConnectionQuotas, listener: str, ip: str) -> Verdict:
    return quotas.admit(listener, ip)[0]


def test_per_ip_limit_and_overrides() -> None:
    quotas = ConnectionQuotas(
        ConnectionLimits(max_connections_per_ip=2, per_ip_overrides={"10.0.0.9": 3})
    )
    assert [admit(quotas, "PLAINTEXT", "10.0.0.1") for _ in range(3)] == [
        ADMITTED,
        ADMITTED,
        TOO_MANY,
    ]
    assert admit(quotas, "PLAINTEXT", "10.0.0.2") is ADMITTED  # its own count
    assert [admit(quotas, "PLAINTEXT", "10.0.0.9") for _ in range(4)][-2:] == [ADMITTED, TOO_MANY]
    assert quotas.count("10.0.0.1") == 2 and quotas.count() == 6  # refusals are not counted
    quotas.release("PLAINTEXT", "10.0.0.1")
    assert admit(quotas, "PLAINTEXT", "10.0.0.1") is ADMITTED


def test_broker_wide_limit_waits_and_spares_the_inter_broker_listener() -> None:
    quotas = ConnectionQuotas(ConnectionLimits(max_connections=2, protected_listener="INTERNAL"))
    woken: list[str] = []
    slots = [quotas.admit("CLIENTS", f"10.0.0.{i}")[2] for i in (1, 2)]
    assert not quotas.slot_available("CLIENTS")
    quotas.wait_for_slot(lambda: woken.append("clients"))
    # The inter-broker listener is admitted beyond the limit and counts: one client
    # connection too many, to be closed.
    assert quotas.slot_available("INTERNAL")
    assert admit(quotas, "INTERNAL", "10.0.0.4") is ADMITTED
    assert quotas.excess() == 1 and woken == []
    assert slots[0] is not None
    slots[0].release()
    slots[0].release()  # a slot is given back once
    assert woken == ["clients"] and quotas.count() == 2 and quotas.excess() == 0
    assert not quotas.slot_available("CLIENTS")  # the inter-broker connection took it
    quotas.release("INTERNAL", "10.0.0.4")
    assert quotas.slot_available("CLIENTS")


def test_listener_limit_and_new_limits_wake_waiters() -> None:
    quotas = ConnectionQuotas(ConnectionLimits(per_listener={"SSL": (1, 2**31 - 1)}))
    assert admit(quotas, "SSL", "10.0.0.1") is ADMITTED
    assert not quotas.slot_available("SSL") and quotas.slot_available("PLAINTEXT")
    woken: list[bool] = []
    quotas.wait_for_slot(lambda: woken.append(True))
    quotas.limits = ConnectionLimits(per_listener={"SSL": (2, 2**31 - 1)})
    assert woken == [True] and quotas.slot_available("SSL")


def test_creation_rate_delays_by_kafkas_throttle_time() -> None:
    clock = Clock()
    limits = ConnectionLimits(max_connection_creation_rate=3, quota_samples=2)
    quotas = ConnectionQuotas(limits, clock)
    # Two samples of a second: the rate is counted over at least one second.
    delays = [quotas.record_connection("PLAINTEXT") for _ in range(5)]
    assert delays[:3] == [0, 0, 0]
    # 4 in a second against 3: (4 - 3) / 3 of the window; then capped at one window.
    assert delays[3] == pytest.approx(0.333, abs=0.001)
    assert 0.333 < delays[4] <= 1.0
    clock.now += 60  # long quiet: the samples are forgotten
    assert quotas.record_connection("PLAINTEXT") == 0
    # A listener's own rate counts too, and the protected listener only that one.
    quotas.limits = ConnectionLimits(
        max_connection_creation_rate=1,
        per_listener={"INTERNAL": (2**31 - 1, 2**31 - 1)},
        protected_listener="INTERNAL",
        quota_samples=2,
    )
    assert all(quotas.record_connection("INTERNAL") == 0 for _ in range(10))


def test_address_creation_rate_closes_without_counting() -> None:
    clock = Clock()
    quotas = ConnectionQuotas(ConnectionLimits(quota_samples=2), clock)
    quotas.set_ip_rates({"10.0.0.9": 2, DEFAULT_IP: 1, "::0001": 1})
    assert quotas.ip_rate("10.0.0.9") == 2 and quotas.ip_rate("10.0.0.1") == 1
    assert quotas.ip_rate("::1") == 1
    verdicts = [quotas.admit("PLAINTEXT", "10.0.0.9") for _ in range(4)]
    assert [v[0] for v in verdicts] == [ADMITTED, ADMITTED, THROTTLED, THROTTLED]
    assert 0 < verdicts[2][1] <= 1.0 and verdicts[2][2] is None
    assert quotas.count("10.0.0.9") == 2
    assert admit(quotas, "PLAINTEXT", "10.0.0.1") is ADMITTED
    assert admit(quotas, "PLAINTEXT", "10.0.0.1") is THROTTLED
    # Taken back: throttled ones do not fill the address's rate, so it recovers.
    clock.now += 1.5
    assert admit(quotas, "PLAINTEXT", "10.0.0.9") is ADMITTED
    quotas.set_ip_rates({})
    assert all(admit(quotas, "PLAINTEXT", "10.0.0.1") is ADMITTED for _ in range(20))


def test_delays_and_refusals_are_logged_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    quotas = ConnectionQuotas(
        ConnectionLimits(max_connections_per_ip=0, max_connection_creation_rate=1), clock
    )
    for _ in range(100):
        quotas.admit("PLAINTEXT", "10.0.0.1")
        quotas.record_connection("PLAINTEXT")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert sum("(max.connections.per.ip)" in m for m in messages) == 1
    assert sum("(max.connection.creation.rate)" in m for m in messages) == 1
    assert sum("(listener.name.plaintext.max.connection.creation.rate)" in m for m in messages) == 0
    clock.now += 11
    quotas.admit("PLAINTEXT", "10.0.0.1")
    assert "99 more like this" in caplog.records[-1].getMessage()


def test_pool_grants_whole_reservations_in_order() -> None:
    pool = MemoryPool(100)
    granted: list[str] = []
    assert pool.try_reserve(60)
    assert not pool.try_reserve(50)
    pool.wait(50, lambda: granted.append("a"))
    pool.wait(10, lambda: granted.append("b"))
    assert not pool.try_reserve(10)  # nobody jumps the queue
    pool.release(60)
    assert granted == ["a", "b"] and pool.used == 60
    pool.force(80)  # frames already received count even past the capacity
    assert pool.used == 140 and pool.available == 0
    assert not pool.try_reserve(1)


def test_pool_grants_addresses_in_turn() -> None:
    pool = MemoryPool(100)
    granted: list[str] = []
    assert pool.try_reserve(100)
    for i in range(5):
        pool.wait(50, lambda i=i: granted.append(f"attacker{i}"), "10.0.0.66")
    pool.wait(50, lambda: granted.append("client"), "10.0.0.1")
    pool.release(100)
    # The second grant goes to the other address, however many waited before it.
    assert granted == ["attacker0", "client"]


def test_pool_cancel_lets_the_next_waiter_in() -> None:
    pool = MemoryPool(100)
    granted: list[str] = []
    assert pool.try_reserve(50)

    def big() -> None:
        granted.append("big")

    pool.wait(80, big)
    pool.wait(40, lambda: granted.append("small"))
    pool.cancel(big)
    assert granted == ["small"] and pool.used == 90


def test_configuration_keys() -> None:
    config = BrokerConfig.load(
        None,
        {
            "listeners": "PLAINTEXT://127.0.0.1:9092,INTERNAL://127.0.0.1:9093",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT",
            "inter.broker.listener.name": "INTERNAL",
            "max.connections": "50",
            "max.connections.per.ip": "5",
            "max.connections.per.ip.overrides": "127.0.0.1:20, localhost : 7",
            "listener.name.plaintext.max.connections": "40",
            "max.connection.creation.rate": "9",
            "queued.max.request.bytes": "1000000",
            "socket.request.max.bytes": "1000000",
        },
    )
    assert config.queued_max_request_bytes == 1000000
    limits = connection_limits(config)
    assert limits.max_connections == 50
    assert limits.max_connections_per_ip == 5
    assert limits.per_ip_overrides["127.0.0.1"] == 7  # localhost resolves to it, later wins
    assert limits.per_listener == {"PLAINTEXT": (40, 9), "INTERNAL": (50, 9)}
    assert limits.protected_listener == "INTERNAL"


def test_strom_defaults_are_finite() -> None:
    config = BrokerConfig.load(None, {})
    assert config.queued_max_request_bytes == 200 * 1024 * 1024
    assert config.max_connections == 10000
    assert config.max_connections_per_ip == 1000
    assert config.max_connection_creation_rate == 1000
    assert config.sasl_server_max_receive_size == 524288


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("max.connections.per.ip.overrides", "nocount", "max.connections.per.ip.overrides"),
        ("max.connections.per.ip", "0", "max.connections.per.ip"),
        ("queued.max.request.bytes", "1000", "queued.max.request.bytes"),
        (
            "listener.name.plaintext.max.connections",
            "many",
            "listener.name.plaintext.max.connections",
        ),
    ],
)
def test_bad_values_name_the_key(key: str, value: str, named: str) -> None:
    with pytest.raises(ConfigError) as err:
        BrokerConfig.load(None, {key: value})
    assert named in str(err.value)
