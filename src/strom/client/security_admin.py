"""Security administration over a `Client`: ACLs (CreateAcls, DescribeAcls, DeleteAcls), SCRAM
users (DescribeUserScramCredentials, AlterUserScramCredentials) and client quotas
(DescribeClientQuotas, AlterClientQuotas).

Every one of these goes to any broker, as Kafka's AdminClient sends them to the least loaded
node (a ZooKeeper-mode broker writes them to ZooKeeper, KRaft forwards them to the controller).
A SCRAM password is salted and hashed here (PBKDF2 with the mechanism's HMAC, a random 32-byte
salt): the broker only ever receives the salted password, as with Kafka's tools.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from strom.client.client import Client
from strom.client.errors import KafkaError, check
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.alter_client_quotas_request import (
    AlterClientQuotasRequest,
    OpData,
)
from strom.protocol.messages.alter_client_quotas_request import (
    EntityData as AlterEntity,
)
from strom.protocol.messages.alter_client_quotas_request import (
    EntryData as AlterEntry,
)
from strom.protocol.messages.alter_user_scram_credentials_request import (
    AlterUserScramCredentialsRequest,
    ScramCredentialDeletion,
    ScramCredentialUpsertion,
)
from strom.protocol.messages.create_acls_request import AclCreation, CreateAclsRequest
from strom.protocol.messages.delete_acls_request import DeleteAclsFilter, DeleteAclsRequest
from strom.protocol.messages.describe_acls_request import DescribeAclsRequest
from strom.protocol.messages.describe_client_quotas_request import (
    ComponentData,
    DescribeClientQuotasRequest,
)
from strom.protocol.messages.describe_user_scram_credentials_request import (
    DescribeUserScramCredentialsRequest,
    UserName,
)
from strom.security.acl import AclOperation, AclPermissionType, PatternType, ResourceType
from strom.security.scram import salted_password

DESCRIBE_ACLS = 29
CREATE_ACLS = 30
DELETE_ACLS = 31
DESCRIBE_CLIENT_QUOTAS = 48
ALTER_CLIENT_QUOTAS = 49
DESCRIBE_USER_SCRAM_CREDENTIALS = 50
ALTER_USER_SCRAM_CREDENTIALS = 51

# Kafka's ScramMechanism codes on the wire.
SCRAM_MECHANISMS = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
SCRAM_MECHANISM_NAMES = {code: name for name, code in SCRAM_MECHANISMS.items()}

# DescribeClientQuotas component match types.
MATCH_EXACT = 0
MATCH_DEFAULT = 1
MATCH_SPECIFIED = 2

QUOTA_ENTITY_TYPES = ("user", "client-id", "ip")


# -- ACLs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AclBinding:
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: AclOperation
    permission: AclPermissionType


@dataclass(frozen=True, slots=True)
class AclFilter:
    """None (or ANY) matches anything, as Kafka's AclBindingFilter."""

    resource_type: ResourceType = ResourceType.ANY
    resource_name: str | None = None
    pattern_type: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: AclOperation = AclOperation.ANY
    permission: AclPermissionType = AclPermissionType.ANY


async def create_acls(
    client: Client, bindings: Iterable[AclBinding]
) -> list[tuple[AclBinding, KafkaError | None]]:
    """Each binding with None when created, or the broker's refusal of it."""
    wanted = list(bindings)
    request = CreateAclsRequest(
        creations=[
            AclCreation(
                resource_type=b.resource_type,
                resource_name=b.resource_name,
                resource_pattern_type=b.pattern_type,
                principal=b.principal,
                host=b.host,
                operation=b.operation,
                permission_type=b.permission,
            )
            for b in wanted
        ]
    )
    response = await client.call(CREATE_ACLS, request)
    out: list[tuple[AclBinding, KafkaError | None]] = []
    for binding, result in zip(wanted, response.results, strict=True):
        error = None
        if result.error_code != ErrorCode.NONE:
            error = KafkaError(result.error_code, "create ACL", result.error_message)
        out.append((binding, error))
    return out


async def describe_acls(client: Client, acl_filter: AclFilter) -> list[AclBinding]:
    f = acl_filter
    request = DescribeAclsRequest(
        resource_type_filter=f.resource_type,
        resource_name_filter=f.resource_name,
        pattern_type_filter=f.pattern_type,
        principal_filter=f.principal,
        host_filter=f.host,
        operation=f.operation,
        permission_type=f.permission,
    )
    response = await client.call(DESCRIBE_ACLS, request)
    check(response.error_code, "describe ACLs", response.error_message)
    return sorted(
        (
            AclBinding(
                ResourceType(r.resource_type),
                r.resource_name,
                PatternType(r.pattern_type),
                a.principal,
                a.host,
                AclOperation(a.operation),
                AclPermissionType(a.permission_type),
            )
            for r in response.resources
            for a in r.acls
        ),
        key=_binding_order,
    )


async def delete_acls(client: Client, filters: Iterable[AclFilter]) -> list[AclBinding]:
    """The bindings the filters matched and the broker deleted."""
    request = DeleteAclsRequest(
        filters=[
            DeleteAclsFilter(
                resource_type_filter=f.resource_type,
                resource_name_filter=f.resource_name,
                pattern_type_filter=f.pattern_type,
                principal_filter=f.principal,
                host_filter=f.host,
                operation=f.operation,
                permission_type=f.permission,
            )
            for f in filters
        ]
    )
    response = await client.call(DELETE_ACLS, request)
    deleted: set[AclBinding] = set()
    for result in response.filter_results:
        check(result.error_code, "delete ACLs", result.error_message)
        for m in result.matching_acls:
            check(m.error_code, "delete ACL", m.error_message)
            deleted.add(
                AclBinding(
                    ResourceType(m.resource_type),
                    m.resource_name,
                    PatternType(m.pattern_type),
                    m.principal,
                    m.host,
                    AclOperation(m.operation),
                    AclPermissionType(m.permission_type),
                )
            )
    return sorted(deleted, key=_binding_order)


def _binding_order(b: AclBinding) -> tuple[object, ...]:
    return (b.principal, b.resource_type, b.resource_name, b.pattern_type, b.operation, b.host)


# -- SCRAM users ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScramCredentialInfo:
    user: str
    mechanism: str
    iterations: int


async def describe_scram_users(
    client: Client, users: Iterable[str] | None = None
) -> list[ScramCredentialInfo]:
    """Credentials of the users named (every user when None); an unknown named user raises
    RESOURCE_NOT_FOUND."""
    names = None if users is None else [UserName(u) for u in users]
    response = await client.call(
        DESCRIBE_USER_SCRAM_CREDENTIALS, DescribeUserScramCredentialsRequest(users=names)
    )
    check(response.error_code, "describe SCRAM users", response.error_message)
    out = []
    for r in response.results:
        check(r.error_code, f"user {r.user!r}", r.error_message)
        for info in r.credential_infos:
            mechanism = SCRAM_MECHANISM_NAMES.get(info.mechanism, str(info.mechanism))
            out.append(ScramCredentialInfo(r.user, mechanism, info.iterations))
    return sorted(out, key=lambda c: (c.user, c.mechanism))


async def upsert_scram_user(
    client: Client, user: str, password: str, mechanism: str, iterations: int
) -> None:
    salt = secrets.token_bytes(32)
    upsertion = ScramCredentialUpsertion(
        name=user,
        mechanism=SCRAM_MECHANISMS[mechanism],
        iterations=iterations,
        salt=salt,
        salted_password=salted_password(mechanism, password, salt, iterations),
    )
    await _alter_scram(client, AlterUserScramCredentialsRequest(upsertions=[upsertion]))


async def delete_scram_user(client: Client, user: str, mechanisms: Iterable[str]) -> None:
    deletions = [ScramCredentialDeletion(user, SCRAM_MECHANISMS[m]) for m in mechanisms]
    await _alter_scram(client, AlterUserScramCredentialsRequest(deletions=deletions))


async def _alter_scram(client: Client, request: AlterUserScramCredentialsRequest) -> None:
    response = await client.call(ALTER_USER_SCRAM_CREDENTIALS, request)
    for r in response.results:
        check(r.error_code, f"user {r.user!r}", r.error_message)


# -- client quotas --------------------------------------------------------------------------

# An entity: (type, name) pairs, sorted by type; a None name is the type's default.
QuotaEntity = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True)
class QuotaComponent:
    entity_type: str
    match_type: int
    match: str | None = None


def entity_text(entity: QuotaEntity) -> str:
    """`user=alice,client-id=app` (`<default>` for a default), Kafka's order: user first."""
    order = {t: i for i, t in enumerate(QUOTA_ENTITY_TYPES)}
    parts = sorted(entity, key=lambda e: order.get(e[0], len(order)))
    return ",".join(f"{t}={'<default>' if n is None else n}" for t, n in parts)


async def describe_quotas(
    client: Client, components: Iterable[QuotaComponent], *, strict: bool = False
) -> dict[QuotaEntity, dict[str, float]]:
    request = DescribeClientQuotasRequest(
        components=[ComponentData(c.entity_type, c.match_type, c.match) for c in components],
        strict=strict,
    )
    response = await client.call(DESCRIBE_CLIENT_QUOTAS, request)
    check(response.error_code, "describe quotas", response.error_message)
    out: dict[QuotaEntity, dict[str, float]] = {}
    for entry in response.entries or []:
        entity = tuple(sorted((e.entity_type, e.entity_name) for e in entry.entity))
        out[entity] = {v.key: v.value for v in sorted(entry.values, key=lambda v: v.key)}
    return out


async def alter_quotas(
    client: Client,
    entity: Mapping[str, str | None],
    changes: Mapping[str, float | None],
    *,
    validate_only: bool = False,
) -> None:
    """Set (a value) or remove (None) quota keys of one entity."""
    request = AlterClientQuotasRequest(
        entries=[
            AlterEntry(
                entity=[AlterEntity(t, n) for t, n in entity.items()],
                ops=[
                    OpData(key, 0.0 if value is None else value, value is None)
                    for key, value in changes.items()
                ],
            )
        ],
        validate_only=validate_only,
    )
    response = await client.call(ALTER_CLIENT_QUOTAS, request)
    for e in response.entries:
        check(e.error_code, "alter quotas", e.error_message)
