"""Kafka's ZooKeeper JSON for ACLs and ACL change notifications."""

from __future__ import annotations

import pytest

from strom.security.acl import (
    AccessControlEntry,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourcePattern,
    ResourceType,
    binding_problem,
    operations_bitfield,
    parse_enum,
    pascal_name,
)
from strom.security.acl import AclBinding as Binding
from strom.security.acl_json import (
    decode_acls,
    decode_extended_change,
    decode_literal_change,
    encode_acls,
    encode_extended_change,
    encode_literal_change,
)


def test_kafka_documented_znode_reads_back() -> None:
    # The example of Kafka's ZkData documentation for /kafka-acl/Topic/topic-1.
    data = (
        b'{"version": 1, "acls": [ { "host":"host1", "permissionType": "Allow",'
        b'"operation": "Read","principal": "User:alice"}]}'
    )
    entries = decode_acls(data)
    assert entries == {
        AccessControlEntry("User:alice", "host1", AclOperation.READ, AclPermissionType.ALLOW)
    }
    assert decode_acls(encode_acls(entries)) == entries
    assert encode_acls(entries) == (
        b'{"version":1,"acls":[{"principal":"User:alice","permissionType":"Allow",'
        b'"operation":"Read","host":"host1"}]}'
    )


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'{"version": 2, "acls": []}',
        b'{"version": 1, "acls": {}}',
        b'{"version": 1, "acls": [{"host": "*", "permissionType": "Allow", "operation": "Fly",'
        b' "principal": "User:a"}]}',
        b'{"version": 1, "acls": [{"host": "*", "permissionType": "Allow", "operation": "Read",'
        b' "principal": "alice"}]}',
    ],
)
def test_malformed_acls_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_acls(data)


def test_change_notifications() -> None:
    literal = ResourcePattern(ResourceType.TRANSACTIONAL_ID, "tx:1", PatternType.LITERAL)
    assert encode_literal_change(literal) == b"TRANSACTIONAL_ID:tx:1"
    assert decode_literal_change(b"TRANSACTIONAL_ID:tx:1") == literal
    # Kafka before 2.0 wrote the Pascal-case name.
    assert decode_literal_change(b"Topic:t").resource_type == ResourceType.TOPIC
    prefixed = ResourcePattern(ResourceType.GROUP, "g-", PatternType.PREFIXED)
    assert decode_extended_change(encode_extended_change(prefixed)) == prefixed
    with pytest.raises(ValueError):
        decode_literal_change(b"Planet:x")


def test_names_and_bitfield() -> None:
    assert pascal_name(AclOperation.DESCRIBE_CONFIGS) == "DescribeConfigs"
    assert parse_enum(AclOperation, "DESCRIBECONFIGS") == AclOperation.DESCRIBE_CONFIGS
    assert parse_enum(ResourceType, "TransactionalId") == ResourceType.TRANSACTIONAL_ID
    assert parse_enum(ResourceType, "planet") == ResourceType.UNKNOWN
    # Kafka's Utils.to32BitField: READ (3) and WRITE (4).
    assert operations_bitfield({AclOperation.READ, AclOperation.WRITE}) == 0b11000


def test_binding_checks() -> None:
    entry = AccessControlEntry("User:a", "*", AclOperation.READ, AclPermissionType.ALLOW)
    ok = Binding(ResourcePattern(ResourceType.TOPIC, "t", PatternType.LITERAL), entry)
    assert binding_problem(ok) is None
    cluster = Binding(ResourcePattern(ResourceType.CLUSTER, "c", PatternType.LITERAL), entry)
    assert (
        binding_problem(cluster) == "The only valid name for the CLUSTER resource is kafka-cluster"
    )
    slash = Binding(ResourcePattern(ResourceType.TOPIC, "a/b", PatternType.LITERAL), entry)
    assert "invalid resource name" in (binding_problem(slash) or "")
    anon = AccessControlEntry("alice", "*", AclOperation.READ, AclPermissionType.ALLOW)
    assert "principalType:principalName" in (binding_problem(Binding(ok.pattern, anon)) or "")
