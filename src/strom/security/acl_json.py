"""Kafka's JSON for the ACLs of one resource pattern, as its ZooKeeper-mode authorizer stores
them in `/kafka-acl/<Type>/<name>` (and `/kafka-acl-extended/prefixed/<Type>/<name>`):

    {"version":1,"acls":[{"principal":"User:alice","permissionType":"Allow",
                          "operation":"Read","host":"*"}]}

and the change notifications that tell every broker to re-read one pattern: a LITERAL
pattern's is the text `TOPIC:<name>` in `/kafka-acl-changes/acl_changes_<seq>`, any other's
`{"version":1,"resourceType":"TOPIC","name":"<name>","patternType":"PREFIXED"}` in
`/kafka-acl-extended-changes/acl_changes_<seq>`.

Decoders raise ValueError on malformed data (the znodes are shared with Kafka's own tools);
entries naming an operation or permission Kafka does not know are refused the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from strom.security.acl import (
    UNKNOWN_CODE,
    AccessControlEntry,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourcePattern,
    ResourceType,
    parse_enum,
    parse_principal,
    pascal_name,
)

ACL_JSON_VERSION = 1


def encode_acls(entries: Iterable[AccessControlEntry]) -> bytes:
    ordered = sorted(
        entries, key=lambda e: (e.principal, e.host, int(e.operation), int(e.permission_type))
    )
    doc = {
        "version": ACL_JSON_VERSION,
        "acls": [
            {
                "principal": e.principal,
                "permissionType": pascal_name(e.permission_type),
                "operation": pascal_name(e.operation),
                "host": e.host,
            }
            for e in ordered
        ],
    }
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def decode_acls(data: bytes | None) -> frozenset[AccessControlEntry]:
    if not data:
        return frozenset()
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"ACLs are not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != ACL_JSON_VERSION:
        raise ValueError(f"ACLs: expected a version {ACL_JSON_VERSION} object")
    items = doc.get("acls")
    if not isinstance(items, list):
        raise ValueError("ACLs: 'acls' is not a list")
    return frozenset(entry_from_json(item) for item in items)


def entry_from_json(item: Any) -> AccessControlEntry:
    if not isinstance(item, dict):
        raise ValueError("ACL entry is not an object")
    fields = {}
    for key in ("principal", "permissionType", "operation", "host"):
        value = item.get(key)
        if not isinstance(value, str):
            raise ValueError(f"ACL entry: {key!r} is not a string")
        fields[key] = value
    parse_principal(fields["principal"])
    operation = parse_enum(AclOperation, fields["operation"])
    permission = parse_enum(AclPermissionType, fields["permissionType"])
    if operation in (UNKNOWN_CODE, AclOperation.ANY) or permission in (
        UNKNOWN_CODE,
        AclPermissionType.ANY,
    ):
        raise ValueError(f"ACL entry with an unknown operation or permission: {item}")
    return AccessControlEntry(fields["principal"], fields["host"], operation, permission)


def encode_literal_change(pattern: ResourcePattern) -> bytes:
    return f"{pattern.resource_type.name}:{pattern.name}".encode()


def decode_literal_change(data: bytes) -> ResourcePattern:
    text = data.decode("utf-8")
    type_name, sep, name = text.partition(":")
    resource_type = parse_enum(ResourceType, type_name.upper())
    if not sep or resource_type == UNKNOWN_CODE:
        raise ValueError(f"expected a string in format ResourceType:ResourceName but got {text}")
    return ResourcePattern(resource_type, name, PatternType.LITERAL)


def encode_extended_change(pattern: ResourcePattern) -> bytes:
    doc = {
        "version": 1,
        "resourceType": pattern.resource_type.name,
        "name": pattern.name,
        "patternType": pattern.pattern_type.name,
    }
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def decode_extended_change(data: bytes) -> ResourcePattern:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"ACL change event is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("ACL change event is not an object")
    version = doc.get("version")
    if not isinstance(version, int) or version > 1:
        raise ValueError(f"ACL change event of unsupported version {version!r}")
    values = [doc.get(k) for k in ("resourceType", "name", "patternType")]
    if not all(isinstance(v, str) for v in values):
        raise ValueError("ACL change event: resourceType, name and patternType must be strings")
    type_name, name, pattern_name = (str(v) for v in values)
    resource_type = parse_enum(ResourceType, type_name.upper())
    pattern_type = parse_enum(PatternType, pattern_name.upper())
    if resource_type == UNKNOWN_CODE or pattern_type not in (
        PatternType.LITERAL,
        PatternType.PREFIXED,
    ):
        raise ValueError(f"ACL change event names an unknown resource: {doc}")
    return ResourcePattern(resource_type, name, pattern_type)
