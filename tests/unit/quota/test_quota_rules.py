"""Client quota entities, precedence, the sampled rate and the admin rules, without a broker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strom.protocol.errors import ErrorCode
from strom.quota.admin import (
    DEFAULT_MATCH,
    EXACT,
    SPECIFIED,
    FilterComponent,
    QuotaRequestError,
    altered,
    describe,
    entity_of,
)
from strom.quota.entities import (
    DEFAULT,
    QuotaEntity,
    applicable,
    desanitize,
    format_value,
    sanitize,
)
from strom.quota.manager import ClientQuotaManager, ControllerMutationQuotaManager
from strom.quota.rate import SampledRate


def test_sanitize_as_kafka() -> None:
    # Java's URLEncoder, with space as %20 and * as %2A.
    assert sanitize("User:CN=alice, O=Acme*") == "User%3ACN%3Dalice%2C%20O%3DAcme%2A"
    assert sanitize("a.b-c_d") == "a.b-c_d"
    assert sanitize("~") == "%7E"
    assert desanitize(sanitize("x y/z")) == "x y/z"


@given(st.text(min_size=1), st.one_of(st.none(), st.text(min_size=1)))
def test_entity_paths_round_trip(user: str, client: str | None) -> None:
    entity = QuotaEntity(user=user, client_id=client)
    assert QuotaEntity.from_path(entity.path) == entity


def test_paths_are_kafkas() -> None:
    assert QuotaEntity(user=DEFAULT, client_id="app").path == "users/<default>/clients/app"
    assert QuotaEntity(client_id=DEFAULT).path == "clients/<default>"
    assert QuotaEntity(ip="10.0.0.1").path == "ips/10.0.0.1"
    with pytest.raises(ValueError):
        QuotaEntity.from_path("brokers/1")


LEVELS = [
    QuotaEntity("u", "c"),
    QuotaEntity("u", DEFAULT),
    QuotaEntity(user="u"),
    QuotaEntity(DEFAULT, "c"),
    QuotaEntity(DEFAULT, DEFAULT),
    QuotaEntity(user=DEFAULT),
    QuotaEntity(client_id="c"),
    QuotaEntity(client_id=DEFAULT),
]
SENSORS = [
    ("u", "c"),
    ("u", "c"),
    ("u", ""),
    ("u", "c"),
    ("u", "c"),
    ("u", ""),
    ("", "c"),
    ("", "c"),
]


@given(st.sets(st.integers(0, 7)))
def test_the_most_specific_quota_applies(levels: set[int]) -> None:
    quotas = {LEVELS[i]: {"producer_byte_rate": float(i + 1)} for i in levels}
    found = applicable(quotas, "producer_byte_rate", "u", "c")
    if not levels:
        assert found is None
    else:
        first = min(levels)
        assert found == (SENSORS[first], float(first + 1))


def test_rate_throttle_follows_kafkas_formula() -> None:
    rate = SampledRate(samples=11, window_ms=1000)
    # 20,000 bytes at once: measured over the minimum of 10 windows, 2,000 B/s.
    rate.record(20_000, now_ms=0)
    assert rate.rate(0) == pytest.approx(2000.0)
    # Quota 1,000 B/s: X = (O - T) / T * W = (2000 - 1000) / 1000 * 10,000 ms.
    assert rate.throttle_ms(1000.0, 0) == 10_000
    assert rate.throttle_ms(5000.0, 0) == 0
    # Samples older than the whole window are forgotten.
    assert rate.total(12_000) == 0


def test_managers_do_nothing_without_a_quota() -> None:
    manager = ClientQuotaManager("producer_byte_rate", 11, 1000)
    assert manager.record("u", "c", 1e12, 0) == 0 and not manager.enabled
    manager.update({QuotaEntity(user="u"): {"producer_byte_rate": 1000.0}})
    assert manager.enabled
    assert manager.record("other", "c", 1e9, 0) == 0
    assert manager.record("u", "c1", 15_000, 0) > 0
    # The user's client ids share one allowance: another client id is throttled too.
    assert manager.record("u", "c2", 1, 0) > 0


def test_controller_mutation_token_bucket() -> None:
    manager = ControllerMutationQuotaManager(samples=11, window_ms=1000)
    manager.update({QuotaEntity(client_id=DEFAULT): {"controller_mutation_rate": 2.0}})
    # A burst of 2/s x 11 samples x 1 s = 22 partitions, then tokens run out.
    assert manager.record("u", "c", 22, 0) == 0
    assert manager.record("u", "c", 4, 0) == 2000
    assert manager.throttle_ms("u", "c", 1000) == 1000
    assert manager.throttle_ms("u", "c", 2000) == 0


STORED = {
    "users/alice": {"producer_byte_rate": "1024", "SCRAM-SHA-256": "salt=..."},
    "users/alice/clients/app": {"consumer_byte_rate": "10"},
    "users/<default>": {"request_percentage": "25.0"},
    "clients/app": {"consumer_byte_rate": "5"},
    "users/bob": {"SCRAM-SHA-512": "salt=..."},
    "ips/10.0.0.1": {"connection_creation_rate": "3"},
}


def names(found: list[tuple[QuotaEntity, dict[str, float]]]) -> set[str]:
    return {entity.path for entity, _ in found}


def test_describe_filters() -> None:
    # A user with SCRAM credentials only has no quota: not listed.
    assert names(describe(STORED, [], False)) == set(STORED) - {"users/bob"}
    assert names(describe(STORED, [], True)) == set()
    exact = [FilterComponent("user", EXACT, "alice")]
    assert names(describe(STORED, exact, False)) == {"users/alice", "users/alice/clients/app"}
    assert names(describe(STORED, exact, True)) == {"users/alice"}
    assert names(describe(STORED, [FilterComponent("user", DEFAULT_MATCH, None)], False)) == {
        "users/<default>"
    }
    assert names(describe(STORED, [FilterComponent("client-id", SPECIFIED, None)], True)) == {
        "clients/app"
    }
    assert names(describe(STORED, [FilterComponent("ip", SPECIFIED, None)], False)) == {
        "ips/10.0.0.1"
    }
    with pytest.raises(QuotaRequestError) as err:
        describe(
            STORED, [FilterComponent("ip", EXACT, "a"), FilterComponent("user", EXACT, "b")], False
        )
    assert err.value.code == ErrorCode.INVALID_REQUEST


def test_alter_keeps_other_configs_and_kafkas_formats() -> None:
    entity = entity_of([("user", "alice")])
    after = altered(
        entity,
        STORED["users/alice"],
        [("request_percentage", 12.5, False), ("producer_byte_rate", 0, True)],
    )
    assert after == {"SCRAM-SHA-256": "salt=...", "request_percentage": "12.5"}
    assert format_value("producer_byte_rate", 2048.0) == "2048"
    assert entity_of([("user", None), ("client-id", None)]) == QuotaEntity(DEFAULT, DEFAULT)
    with pytest.raises(QuotaRequestError):
        entity_of([])
    with pytest.raises(QuotaRequestError):
        entity_of([("user", "")])
    with pytest.raises(QuotaRequestError):
        altered(entity, {}, [("consumer_byte_rate", 1.5, False)])
