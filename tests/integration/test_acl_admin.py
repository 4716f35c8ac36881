"""CreateAcls, DescribeAcls and DeleteAcls through confluent-kafka's and kafka-python's admin
clients, on a broker with the ACL authorizer; the ACLs survive a restart."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import kafka.admin as kpa
import kafka.errors
import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from .clients import DEADLINE_S, ck_admin
from .conftest import BrokerFactory

pytestmark = pytest.mark.integration

AUTHORIZER = "kafka.security.authorizer.AclAuthorizer"
# Plaintext clients are User:ANONYMOUS; as a super user they may manage ACLs.
ADMIN = {"authorizer.class.name": AUTHORIZER, "super.users": "User:ANONYMOUS"}


def binding(
    rtype: ResourceType,
    name: str,
    ptype: ResourcePatternType,
    principal: str,
    op: AclOperation,
    perm: AclPermissionType,
    host: str = "*",
) -> AclBinding:
    return AclBinding(rtype, name, ptype, principal, host, op, perm)


def as_tuples(bindings: list[AclBinding]) -> set[tuple[object, ...]]:
    return {
        (
            b.restype,
            b.name,
            b.resource_pattern_type,
            b.principal,
            b.host,
            b.operation,
            b.permission_type,
        )
        for b in bindings
    }


def ck_describe(admin: ck.admin.AdminClient, f: AclBindingFilter) -> list[AclBinding]:
    return list(admin.describe_acls(f).result(timeout=DEADLINE_S))


ANY_FILTER = AclBindingFilter(
    ResourceType.ANY,
    None,
    ResourcePatternType.ANY,
    None,
    None,
    AclOperation.ANY,
    AclPermissionType.ANY,
)


def test_confluent_kafka_manages_acls(broker_factory: BrokerFactory) -> None:
    b = broker_factory(ADMIN)
    admin = ck_admin(b.bootstrap)
    wanted = [
        binding(
            ResourceType.TOPIC,
            "orders",
            ResourcePatternType.LITERAL,
            "User:alice",
            AclOperation.WRITE,
            AclPermissionType.ALLOW,
        ),
        binding(
            ResourceType.TOPIC,
            "orders-",
            ResourcePatternType.PREFIXED,
            "User:bob",
            AclOperation.READ,
            AclPermissionType.ALLOW,
            host="10.0.0.7",
        ),
        binding(
            ResourceType.GROUP,
            "*",
            ResourcePatternType.LITERAL,
            "User:*",
            AclOperation.READ,
            AclPermissionType.DENY,
        ),
        binding(
            ResourceType.BROKER,  # the cluster resource (code 4)
            "kafka-cluster",
            ResourcePatternType.LITERAL,
            "User:ops",
            AclOperation.ALTER_CONFIGS,
            AclPermissionType.ALLOW,
        ),
        binding(
            ResourceType.TRANSACTIONAL_ID,
            "tx-",
            ResourcePatternType.PREFIXED,
            "User:alice",
            AclOperation.WRITE,
            AclPermissionType.ALLOW,
        ),
    ]
    for fut in admin.create_acls(wanted).values():
        assert fut.result(timeout=DEADLINE_S) is None
    assert as_tuples(ck_describe(admin, ANY_FILTER)) == as_tuples(wanted)

    # MATCH: what applies to the topic orders-eu (the prefixed pattern), not the literal one.
    match = AclBindingFilter(
        ResourceType.TOPIC,
        "orders-eu",
        ResourcePatternType.MATCH,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    assert as_tuples(ck_describe(admin, match)) == as_tuples([wanted[1]])
    by_principal = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        "User:alice",
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    assert as_tuples(ck_describe(admin, by_principal)) == as_tuples([wanted[0], wanted[4]])

    # A bad binding fails alone.
    bad = binding(
        ResourceType.BROKER,  # the cluster resource (code 4)
        "not-the-cluster",
        ResourcePatternType.LITERAL,
        "User:x",
        AclOperation.ALTER,
        AclPermissionType.ALLOW,
    )
    with pytest.raises(ck.KafkaException) as err:
        admin.create_acls([bad])[bad].result(timeout=DEADLINE_S)
    assert err.value.args[0].code() == ck.KafkaError.INVALID_REQUEST

    # Delete by filter: every ACL of User:alice, reported as deleted.
    deleted = admin.delete_acls([by_principal])[by_principal].result(timeout=DEADLINE_S)
    assert as_tuples(list(deleted)) == as_tuples([wanted[0], wanted[4]])
    assert as_tuples(ck_describe(admin, ANY_FILTER)) == as_tuples(wanted[1:4])

    # The ACLs are kept in the data directory, in Kafka's shapes, and survive a restart.
    stored = json.loads((b.data_dir / "strom-security.json").read_text())
    assert {item["resourceType"] for item in stored["acls"]} == {"Topic", "Group", "Cluster"}
    b.restart()
    admin = ck_admin(b.bootstrap)
    assert as_tuples(ck_describe(admin, ANY_FILTER)) == as_tuples(wanted[1:4])


def test_kafka_python_manages_acls(broker_factory: BrokerFactory) -> None:
    b = broker_factory(ADMIN)
    admin = kpa.KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        acl = kpa.ACL(
            principal="User:carol",
            host="*",
            operation=kpa.ACLOperation.READ,
            permission_type=kpa.ACLPermissionType.ALLOW,
            resource_pattern=kpa.ResourcePattern(
                kpa.ResourceType.GROUP, "readers-", kpa.ACLResourcePatternType.PREFIXED
            ),
        )
        result = admin.create_acls([acl])
        assert result["failed"] == []
        group_filter = kpa.ACLFilter(
            principal=None,
            host=None,
            operation=kpa.ACLOperation.ANY,
            permission_type=kpa.ACLPermissionType.ANY,
            resource_pattern=kpa.ResourcePatternFilter(
                kpa.ResourceType.GROUP, None, kpa.ACLResourcePatternType.ANY
            ),
        )
        found, error = admin.describe_acls(group_filter)
        assert error is kafka.errors.NoError
        assert [(a.principal, a.resource_pattern.resource_name) for a in found] == [
            ("User:carol", "readers-")
        ]
        deleted = admin.delete_acls([group_filter])
        [(_, matches, error)] = deleted
        assert error is kafka.errors.NoError
        assert [a.principal for a in matches] == ["User:carol"]
        found, _ = admin.describe_acls(group_filter)
        assert found == []
    finally:
        admin.close()


def test_kafka_python_pinned_to_0_11_uses_version_0(broker_factory: BrokerFactory) -> None:
    """api_version (0, 11): the ACL APIs at v0, which Kafka 4.0 removed and Kafka 3.9 serves
    (issue #10). v0 knows LITERAL patterns only: the filter's ANY is read as LITERAL."""
    b = broker_factory(ADMIN)
    admin = kpa.KafkaAdminClient(bootstrap_servers=b.bootstrap, api_version=(0, 11))
    try:
        versions = admin._manager.broker_version_data.api_versions
        assert [versions[k] for k in (29, 30, 31)] == [(0, 0)] * 3
        acl = kpa.ACL(
            principal="User:dave",
            host="*",
            operation=kpa.ACLOperation.WRITE,
            permission_type=kpa.ACLPermissionType.ALLOW,
            resource_pattern=kpa.ResourcePattern(
                kpa.ResourceType.TOPIC, "orders", kpa.ACLResourcePatternType.LITERAL
            ),
        )
        assert admin.create_acls([acl])["failed"] == []
        topics = kpa.ACLFilter(
            principal=None,
            host=None,
            operation=kpa.ACLOperation.ANY,
            permission_type=kpa.ACLPermissionType.ANY,
            resource_pattern=kpa.ResourcePatternFilter(
                kpa.ResourceType.TOPIC, None, kpa.ACLResourcePatternType.ANY
            ),
        )
        found, error = admin.describe_acls(topics)
        assert error is kafka.errors.NoError
        assert [(a.principal, a.resource_pattern.resource_name) for a in found] == [
            ("User:dave", "orders")
        ]
        [(_, matches, error)] = admin.delete_acls([topics])
        assert error is kafka.errors.NoError and [a.principal for a in matches] == ["User:dave"]
        assert admin.describe_acls(topics)[0] == []
    finally:
        admin.close()


def kp_describe_error(bootstrap: str) -> type[Exception]:
    admin = kpa.KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        everything = kpa.ACLFilter(
            principal=None,
            host=None,
            operation=kpa.ACLOperation.ANY,
            permission_type=kpa.ACLPermissionType.ANY,
            resource_pattern=kpa.ResourcePatternFilter(
                kpa.ResourceType.ANY, None, kpa.ACLResourcePatternType.ANY
            ),
        )
        try:
            _, error = admin.describe_acls(everything)
        except kafka.errors.BrokerResponseError as exc:
            return type(exc)
        return error  # type: ignore[no-any-return]
    finally:
        admin.close()


def test_without_an_authorizer_acls_are_security_disabled(broker_factory: BrokerFactory) -> None:
    b = broker_factory()
    assert kp_describe_error(b.bootstrap) is kafka.errors.SecurityDisabledError
    # librdkafka drops DescribeAcls' error code (an empty list is all it reports), but
    # CreateAcls' results carry theirs.
    admin = ck_admin(b.bootstrap)
    assert ck_describe(admin, ANY_FILTER) == []
    acl = binding(
        ResourceType.TOPIC,
        "t",
        ResourcePatternType.LITERAL,
        "User:x",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    with pytest.raises(ck.KafkaException) as err:
        admin.create_acls([acl])[acl].result(timeout=DEADLINE_S)
    assert err.value.args[0].code() == ck.KafkaError.SECURITY_DISABLED


def test_managing_acls_needs_cluster_permissions(broker_factory: BrokerFactory) -> None:
    # Without super.users and with no ACL on the cluster, User:ANONYMOUS may not manage ACLs.
    b = broker_factory({"authorizer.class.name": AUTHORIZER})
    assert kp_describe_error(b.bootstrap) is kafka.errors.ClusterAuthorizationFailedError
    admin = ck_admin(b.bootstrap)
    acl = binding(
        ResourceType.TOPIC,
        "t",
        ResourcePatternType.LITERAL,
        "User:x",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )
    with pytest.raises(ck.KafkaException) as err:
        admin.create_acls([acl])[acl].result(timeout=DEADLINE_S)
    assert err.value.args[0].code() == ck.KafkaError.CLUSTER_AUTHORIZATION_FAILED
    log = b.log_text()
    assert "Denied operation = Describe from host = 127.0.0.1" in log
    assert "Principal = User:ANONYMOUS is Denied operation = Alter" in log


JS_DIR = Path(__file__).parent / "js"
# KafkaJS's codes are Kafka's: resource ANY 1, TOPIC 2, GROUP 3, CLUSTER 4; pattern ANY 1,
# LITERAL 3, PREFIXED 4; operation ANY 1, READ 3, ALTER 7; permission ANY 1, DENY 2, ALLOW 3.
ANY_JS_FILTER = {"resourceType": 1, "resourcePatternType": 1, "operation": 1, "permissionType": 1}


def kafkajs(bootstrap: str, command: dict[str, Any]) -> dict[str, Any]:
    """Run tests/integration/js/acls.js (KafkaJS's admin client) with one command."""
    if shutil.which("node") is None or not (JS_DIR / "node_modules" / "kafkajs").is_dir():
        pytest.skip("KafkaJS is not installed: npm ci --prefix tests/integration/js")
    done = subprocess.run(
        ["node", str(JS_DIR / "acls.js"), bootstrap, json.dumps(command)],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S * 2,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def js_bindings(resources: list[dict[str, Any]]) -> set[tuple[object, ...]]:
    return {
        (
            r["resourceType"],
            r["resourceName"],
            r["resourcePatternType"],
            a["principal"],
            a["host"],
            a["operation"],
            a["permissionType"],
        )
        for r in resources
        for a in r["acls"]
    }


def test_kafkajs_manages_acls(broker_factory: BrokerFactory) -> None:
    b = broker_factory(ADMIN)
    alice = (2, "orders", 3, "User:alice", "*", 3, 3)
    bob_group = (3, "billing-", 4, "User:bob", "10.0.0.1", 3, 2)
    bob_cluster = (4, "kafka-cluster", 3, "User:bob", "*", 7, 3)
    fields = (
        "resourceType",
        "resourceName",
        "resourcePatternType",
        "principal",
        "host",
        "operation",
        "permissionType",
    )
    out = kafkajs(
        b.bootstrap,
        {
            "create": [
                dict(zip(fields, acl, strict=True)) for acl in (alice, bob_group, bob_cluster)
            ],
            "describe": ANY_JS_FILTER,
            "delete": [{**ANY_JS_FILTER, "principal": "User:bob"}],
        },
    )
    assert "error" not in out, out
    assert js_bindings(out["described"]) == {alice, bob_group, bob_cluster}
    deleted = [
        tuple(m[f] for f in fields) for response in out["deleted"] for m in response["matchingAcls"]
    ]
    assert sorted(deleted) == sorted([bob_group, bob_cluster])
    assert js_bindings(out["after"]) == {alice}
    # What confluent-kafka sees agrees.
    left = ck_describe(ck_admin(b.bootstrap), ANY_FILTER)
    assert [(x.name, x.principal) for x in left] == [("orders", "User:alice")]


def test_kafkajs_is_refused_without_cluster_permissions(broker_factory: BrokerFactory) -> None:
    b = broker_factory({"authorizer.class.name": AUTHORIZER})
    out = kafkajs(b.bootstrap, {"describe": ANY_JS_FILTER})
    assert out["error"]["type"] == "CLUSTER_AUTHORIZATION_FAILED", out
