"""ACLs, quotas and SASL with a Go client: Sarama 1.22.1 (Debian's), through
tests/integration/go/sarama_client.go.

One broker with the ACL authorizer: a PLAINTEXT listener (User:ANONYMOUS, a super user, creates
topics and sets quotas), SASL_PLAINTEXT and SASL_SSL listeners with PLAIN, SCRAM-SHA-256 and
SCRAM-SHA-512 users. User:admin is a super user and manages ACLs from Go; the others have only
the ACLs a test gives them (allow.everyone.if.no.acl.found is false): a producer, a partition
consumer and a consumer group are refused with Kafka's errors until the admin's ACLs let them.

Sarama 1.22 has no client quota calls (DescribeClientQuotas/AlterClientQuotas came to Sarama
years later): quotas are set through kafka-python here, and the Go side proves the
throttle_time_ms it is answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from .certs import STORE_PASSWORD, Pki
from .clients import DEADLINE_S, ck_admin, create_topic
from .conftest import BrokerFactory
from .go_client import build_sarama_client, run_sarama
from .group_helpers import ck_committed
from .secure import SecureBroker, start_secure
from .test_client_quotas import QuotaAdmin
from .test_sasl import scram_upsert

pytestmark = pytest.mark.integration

USERS = {
    "admin": "admin-secret",
    "alice": "alice-secret",
    "bob": "bob-secret",
    "dave": "dave-secret",
    "erin": "erin-secret",
}
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
PLAIN_JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    + " ".join(f'user_{u}="{p}"' for u, p in USERS.items())
    + ";"
)
SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"

# Kafka's codes, which Sarama's enums share.
TOPIC, GROUP, TRANSACTIONAL_ID = 2, 3, 5
ANY, MATCH, LITERAL, PREFIXED = 1, 2, 3, 4
READ, WRITE, DESCRIBE = 3, 4, 8
DENY, ALLOW = 2, 3
ANY_FILTER = {"resource_type": ANY, "pattern_type": ANY, "operation": ANY, "permission": ANY}
TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
CLUSTER_AUTHORIZATION_FAILED = 31
SASL_AUTHENTICATION_FAILED = 58

Binding = tuple[int, str, int, str, str, int, int]


def acl(
    rtype: int, name: str, ptype: int, principal: str, op: int, perm: int = ALLOW, host: str = "*"
) -> dict[str, Any]:
    return {
        "resource_type": rtype,
        "resource_name": name,
        "pattern_type": ptype,
        "principal": principal,
        "host": host,
        "operation": op,
        "permission": perm,
    }


def as_binding(a: dict[str, Any]) -> Binding:
    return (
        a["resource_type"],
        a["resource_name"],
        a["pattern_type"],
        a["principal"],
        a["host"],
        a["operation"],
        a["permission"],
    )


def bindings(found: list[list[Any]]) -> set[Binding]:
    return {tuple(b) for b in found}  # type: ignore[misc]


@pytest.fixture(scope="module")
def sarama_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once: the only module that runs it."""
    return build_sarama_client(tmp_path_factory.mktemp("go-client"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("go-pki"))


@pytest.fixture(scope="module")
def broker(
    tmp_path_factory: pytest.TempPathFactory, sarama_client: Path, pki: Pki
) -> Iterator[SecureBroker]:
    """Started after the Go client is built (so a machine without Go skips before this)."""
    factory = BrokerFactory(tmp_path_factory.mktemp("go-brokers"))
    store = pki.broker.write_pkcs12(pki.directory / "broker.p12")
    sets: dict[str, object] = {
        "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
        "super.users": "User:ANONYMOUS;User:admin",
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": store,
        "ssl.keystore.password": STORE_PASSWORD,
    }
    for listener in ("sasl_plaintext", "sasl_ssl"):
        sets[f"listener.name.{listener}.sasl.enabled.mechanisms"] = ",".join(MECHANISMS)
        sets[f"listener.name.{listener}.plain.sasl.jaas.config"] = PLAIN_JAAS
        for mechanism in MECHANISMS[1:]:
            sets[f"listener.name.{listener}.{mechanism.lower()}.sasl.jaas.config"] = SCRAM_JAAS
    try:
        b = start_secure(
            factory, {"SASL_PLAINTEXT": "SASL_PLAINTEXT", "SASL_SSL": "SASL_SSL"}, sets
        )
        for user, password in USERS.items():
            scram_upsert(b.plaintext, user, password)
        yield b
    finally:
        factory.stop_all()


def as_user(
    user: str, mechanism: str = "PLAIN", protocol: str = "SASL_PLAINTEXT"
) -> dict[str, str]:
    return {"protocol": protocol, "mechanism": mechanism, "user": user, "password": USERS[user]}


def grant(sarama_client: Path, address: str, *acls: dict[str, object]) -> dict[str, object]:
    """CreateAcls v1 from Go as the super user; returns the step's result."""
    step = {"op": "create_acls", "version": 1, "acls": list(acls)}
    (result,) = run_sarama(sarama_client, address, [step], as_user("admin"))
    return result


def test_sarama_manages_acls(broker: SecureBroker, sarama_client: Path) -> None:
    alice_topic = acl(TOPIC, "orders", LITERAL, "User:alice", WRITE)
    bob_group = acl(GROUP, "billing", LITERAL, "User:bob", READ, DENY, host="10.0.0.7")
    bob_topics = acl(TOPIC, "orders-", PREFIXED, "User:bob", READ)
    alice_tx = acl(TRANSACTIONAL_ID, "tx-", PREFIXED, "User:alice", WRITE)
    by_bob = {**ANY_FILTER, "principal": "User:bob"}
    by_alice = {**ANY_FILTER, "principal": "User:alice"}
    eu_topic = {**ANY_FILTER, "resource_type": TOPIC, "resource_name": "orders-eu"}
    (
        created_v0,
        created_v1,
        listed_v0,
        described,
        matched,
        deleted_v1,
        deleted_v0,
        left,
    ) = run_sarama(
        sarama_client,
        broker.bootstrap("SASL_PLAINTEXT"),
        [
            # Sarama's ClusterAdmin speaks CreateAcls v0: LITERAL only.
            {"op": "admin_create_acls", "acls": [alice_topic, bob_group]},
            # PREFIXED needs v1, sent as Sarama's CreateAclsRequest.
            {"op": "create_acls", "version": 1, "acls": [bob_topics, alice_tx]},
            {"op": "admin_list_acls", "filters": [ANY_FILTER]},
            {"op": "describe_acls", "version": 1, "filters": [ANY_FILTER]},
            {"op": "describe_acls", "version": 1, "filters": [{**eu_topic, "pattern_type": MATCH}]},
            {"op": "delete_acls", "version": 1, "filters": [by_bob]},
            {"op": "admin_delete_acls", "filters": [by_alice]},
            {"op": "describe_acls", "version": 1, "filters": [ANY_FILTER]},
        ],
        as_user("admin"),
    )
    assert created_v0 == {}
    assert created_v1 == {"error_codes": [0, 0]}
    # v0 reads the ANY pattern as LITERAL and its answer has no pattern type (Sarama: 0).
    assert bindings(listed_v0["acls"]) == {
        (t, n, 0, p, h, o, q) for (t, n, _, p, h, o, q) in map(as_binding, [alice_topic, bob_group])
    }
    everything = {as_binding(a) for a in (alice_topic, bob_group, bob_topics, alice_tx)}
    assert described == {"error_code": 0, "acls": described["acls"]}
    assert bindings(described["acls"]) == everything
    # MATCH: what applies to the topic orders-eu, i.e. the prefix orders- and no literal.
    assert bindings(matched["acls"]) == {as_binding(bob_topics)}
    (bob_result,) = deleted_v1["results"]
    assert bob_result["error_code"] == 0
    assert bindings(bob_result["deleted"]) == {as_binding(bob_group), as_binding(bob_topics)}
    # ClusterAdmin's v0 delete: alice's LITERAL ACL goes, her PREFIXED one stays.
    assert [(t, n, p) for (t, n, _, p, *_) in deleted_v0["deleted"]] == [
        (TOPIC, "orders", "User:alice")
    ]
    assert bindings(left["acls"]) == {as_binding(alice_tx)}

    # confluent-kafka sees the same.
    admin = ck_admin(broker.plaintext)
    seen = admin.describe_acls(
        AclBindingFilter(
            ResourceType.ANY,
            None,
            ResourcePatternType.ANY,
            None,
            None,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
    )
    assert [(b.name, b.principal) for b in seen.result(timeout=DEADLINE_S)] == [
        ("tx-", "User:alice")
    ]
    # Leave nothing behind for the other tests.
    (cleared,) = run_sarama(
        sarama_client,
        broker.bootstrap("SASL_PLAINTEXT"),
        [{"op": "delete_acls", "version": 1, "filters": [by_alice]}],
        as_user("admin"),
    )
    assert bindings(cleared["results"][0]["deleted"]) == {as_binding(alice_tx)}


def test_sarama_needs_cluster_alter_to_manage_acls(
    broker: SecureBroker, sarama_client: Path
) -> None:
    wanted = acl(TOPIC, "mine", LITERAL, "User:alice", WRITE)
    created, described, deleted, admin_created = run_sarama(
        sarama_client,
        broker.bootstrap("SASL_PLAINTEXT"),
        [
            {"op": "create_acls", "version": 1, "acls": [wanted]},
            {"op": "describe_acls", "version": 1, "filters": [ANY_FILTER]},
            {"op": "delete_acls", "version": 1, "filters": [ANY_FILTER]},
            # Sarama 1.22's ClusterAdmin drops a creation's error code: it reports success.
            {"op": "admin_create_acls", "acls": [wanted]},
        ],
        as_user("alice"),
    )
    assert created == {"error_codes": [CLUSTER_AUTHORIZATION_FAILED]}
    assert described == {"error_code": CLUSTER_AUTHORIZATION_FAILED, "acls": []}
    assert deleted == {"results": [{"error_code": CLUSTER_AUTHORIZATION_FAILED, "deleted": []}]}
    assert admin_created == {}
    # Nothing was created by any of them.
    (after,) = run_sarama(
        sarama_client,
        broker.bootstrap("SASL_PLAINTEXT"),
        [
            {
                "op": "describe_acls",
                "version": 1,
                "filters": [{**ANY_FILTER, "principal": "User:alice"}],
            }
        ],
        as_user("admin"),
    )
    assert after == {"error_code": 0, "acls": []}


def test_sarama_producer_needs_write(broker: SecureBroker, sarama_client: Path, topic: str) -> None:
    create_topic(broker.plaintext, topic)
    sasl = broker.bootstrap("SASL_PLAINTEXT")
    produce = {"op": "produce", "topic": topic, "count": 3}
    # dave may see the topic but not write it; bob has no ACL on it at all.
    granted = grant(sarama_client, sasl, acl(TOPIC, topic, LITERAL, "User:dave", DESCRIBE))
    assert granted == {"error_codes": [0]}
    for user in ("dave", "bob"):
        (refused,) = run_sarama(sarama_client, sasl, [produce], as_user(user, "SCRAM-SHA-512"))
        assert refused.get("error_code") == TOPIC_AUTHORIZATION_FAILED, (user, refused)
    (no_read,) = run_sarama(
        sarama_client, sasl, [{"op": "consume", "topic": topic, "count": 1}], as_user("dave")
    )
    assert no_read.get("error_code") == TOPIC_AUTHORIZATION_FAILED, no_read

    # The admin allows WRITE and READ on the topic's prefix: dave produces and reads back.
    prefix = topic[: len(topic) // 2]
    granted = grant(
        sarama_client,
        sasl,
        acl(TOPIC, prefix, PREFIXED, "User:dave", WRITE),
        acl(TOPIC, prefix, PREFIXED, "User:dave", READ),
    )
    assert granted == {"error_codes": [0, 0]}
    produced, consumed = run_sarama(
        sarama_client,
        sasl,
        [produce, {"op": "consume", "topic": topic, "count": 3}],
        as_user("dave", "SCRAM-SHA-512"),
    )
    assert produced == {"offsets": [0, 1, 2]}
    assert consumed == {"values": [f"{topic}-{i}-" for i in range(3)]}
    # bob is still refused: the ACLs are dave's.
    (refused,) = run_sarama(sarama_client, sasl, [produce], as_user("bob"))
    assert refused.get("error_code") == TOPIC_AUTHORIZATION_FAILED, refused

    # A DENY wins over the ALLOW.
    denied = grant(sarama_client, sasl, acl(TOPIC, topic, LITERAL, "User:dave", WRITE, DENY))
    assert denied == {"error_codes": [0]}
    (refused,) = run_sarama(sarama_client, sasl, [produce], as_user("dave"))
    assert refused.get("error_code") == TOPIC_AUTHORIZATION_FAILED, refused


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sarama_over_sasl_ssl(
    broker: SecureBroker, pki: Pki, sarama_client: Path, topic: str, mechanism: str
) -> None:
    create_topic(broker.plaintext, topic)
    produced, consumed = run_sarama(
        sarama_client,
        broker.bootstrap("SASL_SSL"),
        [
            {"op": "produce", "topic": topic, "count": 5, "size": 2000},
            {"op": "consume", "topic": topic, "count": 5},
        ],
        {**as_user("admin", mechanism, "SASL_SSL"), "ca": str(pki.ca_file)},
    )
    assert produced == {"offsets": [0, 1, 2, 3, 4]}
    assert [v[: len(topic) + 3] for v in consumed["values"]] == [f"{topic}-{i}-" for i in range(5)]
    assert all(len(v) == 2000 for v in consumed["values"])


def test_sarama_with_a_wrong_password_is_refused(
    broker: SecureBroker, pki: Pki, sarama_client: Path
) -> None:
    for mechanism in MECHANISMS:
        security = {
            **as_user("admin", mechanism, "SASL_SSL"),
            "password": "not-the-password",
            "ca": str(pki.ca_file),
        }
        (refused,) = run_sarama(
            sarama_client, broker.bootstrap("SASL_SSL"), [{"op": "connect"}], security
        )
        assert refused.get("error_code") == SASL_AUTHENTICATION_FAILED, (mechanism, refused)
    (ok,) = run_sarama(
        sarama_client,
        broker.bootstrap("SASL_SSL"),
        [{"op": "connect"}],
        {**as_user("admin", "SCRAM-SHA-512", "SASL_SSL"), "ca": str(pki.ca_file)},
    )
    assert ok == {"brokers": 1}


def test_sarama_producer_over_its_quota_is_throttled(
    broker: SecureBroker, sarama_client: Path, topic: str
) -> None:
    create_topic(broker.plaintext, topic)
    admin = ck_admin(broker.plaintext)
    made = admin.create_acls(
        [
            AclBinding(
                ResourceType.TOPIC,
                topic,
                ResourcePatternType.LITERAL,
                "User:erin",
                "*",
                AclOperation.WRITE,
                AclPermissionType.ALLOW,
            )
        ]
    )
    for fut in made.values():
        assert fut.result(timeout=DEADLINE_S) is None
    quotas = QuotaAdmin(broker.plaintext)
    try:
        assert quotas.alter({"user": "erin"}, {"producer_byte_rate": 10_000}) == (0, None)
        assert quotas.describe([("user", 0, "erin")]) == {
            (("user", "erin"),): {"producer_byte_rate": 10_000.0}
        }
    finally:
        quotas.close()
    sasl = broker.bootstrap("SASL_PLAINTEXT")
    step = {"op": "produce_throttled", "topic": topic, "count": 16, "size": 10_000}
    (throttled,) = run_sarama(sarama_client, sasl, [step], as_user("erin", "SCRAM-SHA-256"))
    # 160 kB against 10 kB/s, measured (as Kafka does) over at least ten 1 s samples: past
    # 100 kB the broker answers with throttle_time_ms.
    assert len(throttled["throttle_ms"]) == 16 and max(throttled["throttle_ms"]) > 0, throttled
    (free,) = run_sarama(sarama_client, sasl, [step], as_user("admin", "SCRAM-SHA-256"))
    assert free == {"throttle_ms": [0] * 16}


def test_sarama_consumer_group_needs_read_on_its_group(
    broker: SecureBroker, sarama_client: Path, topic: str
) -> None:
    create_topic(broker.plaintext, topic)
    sasl = broker.bootstrap("SASL_PLAINTEXT")
    group = f"readers-{topic}"
    produced, granted = run_sarama(
        sarama_client,
        sasl,
        [
            {"op": "produce", "topic": topic, "count": 3},
            {
                "op": "create_acls",
                "version": 1,
                "acls": [acl(TOPIC, topic, LITERAL, "User:bob", READ)],
            },
        ],
        as_user("admin"),
    )
    assert produced == {"offsets": [0, 1, 2]}
    assert granted == {"error_codes": [0]}
    consume = {"op": "group_consume", "topic": topic, "group": group, "count": 3}
    bob = as_user("bob", "SCRAM-SHA-512")
    # Without any ACL on the group FindCoordinator is refused (Sarama's consumer group would
    # retry that for ever: its client's Coordinator call shows the error).
    (refused,) = run_sarama(sarama_client, sasl, [{"op": "coordinator", "group": group}], bob)
    assert refused.get("error_code") == GROUP_AUTHORIZATION_FAILED, refused
    # DESCRIBE on the group finds the coordinator, but joining needs READ.
    granted = grant(sarama_client, sasl, acl(GROUP, group, LITERAL, "User:bob", DESCRIBE))
    assert granted == {"error_codes": [0]}
    (refused,) = run_sarama(sarama_client, sasl, [consume], bob)
    assert refused.get("error_code") == GROUP_AUTHORIZATION_FAILED, refused

    granted = grant(sarama_client, sasl, acl(GROUP, "readers-", PREFIXED, "User:bob", READ))
    assert granted == {"error_codes": [0]}
    (consumed,) = run_sarama(sarama_client, sasl, [consume], bob)
    assert consumed == {"values": [f"{topic}-{i}-" for i in range(3)]}
    # The group's offsets were committed (OffsetCommit allowed by the group READ).
    assert ck_committed(broker.plaintext, group, [(topic, 0)]) == {(topic, 0): 3}
