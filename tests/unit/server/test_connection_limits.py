"""Connection admission (Kafka's connection quotas), the request memory pool, and the
configuration keys behind them."""

from __future__ import annotations

import pytest

from strom.config import BrokerConfig, ConfigError
from strom.server.connection_quotas import ConnectionLimits, ConnectionQuotas
from strom.server.connections import connection_limits
from strom.server.memory_pool import MemoryPool


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_per_ip_limit_and_overrides() -> None:
    quotas = ConnectionQuotas(
        ConnectionLimits(max_connections_per_ip=2, per_ip_overrides={"10.0.0.9": 3})
    )
    assert quotas.admit("PLAINTEXT", "10.0.0.1")
    assert quotas.admit("PLAINTEXT", "10.0.0.1")
    assert not quotas.admit("PLAINTEXT", "10.0.0.1")
    assert quotas.admit("PLAINTEXT", "10.0.0.2")  # another address has its own count
    assert all(quotas.admit("PLAINTEXT", "10.0.0.9") for _ in range(3))
    assert not quotas.admit("PLAINTEXT", "10.0.0.9")
    quotas.release("PLAINTEXT", "10.0.0.1")
    assert quotas.admit("PLAINTEXT", "10.0.0.1")


def test_broker_wide_limit_spares_the_inter_broker_listener() -> None:
    quotas = ConnectionQuotas(ConnectionLimits(max_connections=2, protected_listener="INTERNAL"))
    assert quotas.admit("CLIENTS", "10.0.0.1")
    assert quotas.admit("CLIENTS", "10.0.0.2")
    assert not quotas.admit("CLIENTS", "10.0.0.3")
    assert quotas.admit("INTERNAL", "10.0.0.4")
    quotas.release("CLIENTS", "10.0.0.1")
    assert quotas.admit("CLIENTS", "10.0.0.3")


def test_listener_limit() -> None:
    quotas = ConnectionQuotas(ConnectionLimits(per_listener={"SSL": (1, 2**31 - 1)}))
    assert quotas.admit("SSL", "10.0.0.1")
    assert not quotas.admit("SSL", "10.0.0.2")
    assert quotas.admit("PLAINTEXT", "10.0.0.2")


def test_creation_rate_over_the_last_second() -> None:
    clock = Clock()
    quotas = ConnectionQuotas(ConnectionLimits(max_connection_creation_rate=3), clock)
    assert [quotas.admit("PLAINTEXT", f"10.0.0.{i}") for i in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    clock.now += 0.5
    assert not quotas.admit("PLAINTEXT", "10.0.0.9")
    clock.now += 0.6
    assert quotas.admit("PLAINTEXT", "10.0.0.9")


def test_refusals_are_logged_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    quotas = ConnectionQuotas(ConnectionLimits(max_connections_per_ip=0), clock)
    for _ in range(100):
        quotas.admit("PLAINTEXT", "10.0.0.1")
    assert len(caplog.records) == 1
    assert "max.connections.per.ip" in caplog.records[0].getMessage()
    clock.now += 11
    quotas.admit("PLAINTEXT", "10.0.0.1")
    assert len(caplog.records) == 2
    assert "99 more like this" in caplog.records[1].getMessage()


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
