"""Kafka's ACL model: resource patterns, access control entries, bindings and their filters.

The codes of the four enumerations are Kafka's wire codes (CreateAcls, DescribeAcls and
DeleteAcls carry them as int8), and their Pascal-case names (`DescribeConfigs`,
`TransactionalId`) are what Kafka writes into ZooKeeper and its tools print.

Rules taken from Kafka:
- A binding is a resource pattern (type, name, LITERAL or PREFIXED) and an entry (principal
  `Type:name`, host, operation, ALLOW or DENY). `*` as a LITERAL name is every resource of the
  type, `User:*` every principal, `*` every host.
- Filters may be indefinite: type ANY, a null name, pattern type ANY (exactly LITERAL or
  PREFIXED with the name given) or MATCH (every pattern that would apply to a resource of that
  name: the literal one, the `*` wildcard and every PREFIXED pattern the name starts with),
  operation and permission ANY, null principal and host.
- Operations imply others for ALLOW only: READ, WRITE, DELETE and ALTER imply DESCRIBE,
  ALTER_CONFIGS implies DESCRIBE_CONFIGS; ALL is every operation, for ALLOW and DENY.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

from strom.protocol.errors import ErrorCode

WILDCARD_RESOURCE = "*"
WILDCARD_HOST = "*"
WILDCARD_PRINCIPAL = "User:*"
CLUSTER_NAME = "kafka-cluster"
USER_TYPE = "User"
# The code of UNKNOWN in every enumeration below.
UNKNOWN_CODE = 0


class AclOperation(IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class ResourceType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclPermissionType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


E = TypeVar("E", AclOperation, ResourceType, PatternType, AclPermissionType)


def pascal_name(member: IntEnum) -> str:
    """`DESCRIBE_CONFIGS` -> `DescribeConfigs`, as Kafka stores and prints them."""
    return "".join(part.capitalize() for part in member.name.split("_"))


def parse_enum(cls: type[E], text: str) -> E:
    """Kafka's lookup by name: the Pascal-case name or the upper-case one (`DescribeConfigs`,
    `DESCRIBECONFIGS`, `DESCRIBE_CONFIGS`); UNKNOWN for anything else."""
    for member in cls:
        if text in (pascal_name(member), pascal_name(member).upper(), member.name):
            return member
    return cls.UNKNOWN


def code_of(cls: type[E], code: int) -> E:
    """A wire code as the enumeration; UNKNOWN for a code Kafka does not define."""
    try:
        return cls(code)
    except ValueError:
        return cls.UNKNOWN


# Which operations mean something on each resource type (Kafka's AclEntry.supportedOperations):
# what `include_*_authorized_operations` reports.
SUPPORTED_OPERATIONS: dict[ResourceType, tuple[AclOperation, ...]] = {
    ResourceType.TOPIC: (
        AclOperation.READ,
        AclOperation.WRITE,
        AclOperation.CREATE,
        AclOperation.DESCRIBE,
        AclOperation.DELETE,
        AclOperation.ALTER,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
    ),
    ResourceType.GROUP: (AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE),
    ResourceType.CLUSTER: (
        AclOperation.CREATE,
        AclOperation.CLUSTER_ACTION,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
        AclOperation.IDEMPOTENT_WRITE,
        AclOperation.ALTER,
        AclOperation.DESCRIBE,
    ),
    ResourceType.TRANSACTIONAL_ID: (AclOperation.DESCRIBE, AclOperation.WRITE),
    ResourceType.DELEGATION_TOKEN: (AclOperation.DESCRIBE,),
    ResourceType.USER: (AclOperation.CREATE_TOKENS, AclOperation.DESCRIBE_TOKENS),
}

AUTHORIZATION_ERRORS: dict[ResourceType, ErrorCode] = {
    ResourceType.TOPIC: ErrorCode.TOPIC_AUTHORIZATION_FAILED,
    ResourceType.GROUP: ErrorCode.GROUP_AUTHORIZATION_FAILED,
    ResourceType.CLUSTER: ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
    ResourceType.TRANSACTIONAL_ID: ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    ResourceType.DELEGATION_TOKEN: ErrorCode.DELEGATION_TOKEN_AUTHORIZATION_FAILED,
}

# The ALLOW operations that grant an operation (besides ALL).
_GRANTED_BY: dict[AclOperation, frozenset[AclOperation]] = {
    AclOperation.DESCRIBE: frozenset(
        {
            AclOperation.DESCRIBE,
            AclOperation.READ,
            AclOperation.WRITE,
            AclOperation.DELETE,
            AclOperation.ALTER,
        }
    ),
    AclOperation.DESCRIBE_CONFIGS: frozenset(
        {AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}
    ),
}


def allowing_operations(operation: AclOperation) -> frozenset[AclOperation]:
    """The operations of ALLOW entries that permit `operation`: itself, what implies it, ALL."""
    return _GRANTED_BY.get(operation, frozenset({operation})) | {AclOperation.ALL}


def operations_bitfield(operations: set[AclOperation] | frozenset[AclOperation]) -> int:
    """Kafka's 32-bit field of authorized operations: bit `code` set for each operation."""
    field = 0
    for op in operations:
        field |= 1 << int(op)
    return field - (1 << 32) if field >= 1 << 31 else field


@dataclass(frozen=True, slots=True)
class ResourcePattern:
    resource_type: ResourceType
    name: str
    pattern_type: PatternType

    def __str__(self) -> str:
        return (
            f"ResourcePattern(resourceType={self.resource_type.name}, name={self.name}, "
            f"patternType={self.pattern_type.name})"
        )


@dataclass(frozen=True, slots=True)
class AccessControlEntry:
    principal: str
    host: str
    operation: AclOperation
    permission_type: AclPermissionType

    def __str__(self) -> str:
        return (
            f"(principal={self.principal}, host={self.host}, operation={self.operation.name}, "
            f"permissionType={self.permission_type.name})"
        )


@dataclass(frozen=True, slots=True)
class AclBinding:
    pattern: ResourcePattern
    entry: AccessControlEntry


@dataclass(frozen=True, slots=True)
class ResourcePatternFilter:
    resource_type: ResourceType
    name: str | None
    pattern_type: PatternType

    def matches(self, pattern: ResourcePattern) -> bool:
        if self.resource_type not in (ResourceType.ANY, pattern.resource_type):
            return False
        if self.pattern_type not in (PatternType.ANY, PatternType.MATCH, pattern.pattern_type):
            return False
        if self.name is None:
            return True
        if self.pattern_type in (PatternType.ANY, pattern.pattern_type):
            return self.name == pattern.name
        # MATCH: the patterns that would apply to a resource called `name`.
        if pattern.pattern_type == PatternType.LITERAL:
            return self.name == pattern.name or pattern.name == WILDCARD_RESOURCE
        return self.name.startswith(pattern.name)

    def indefinite_field(self) -> str | None:
        """Why the filter may match more than one pattern (None: at most one)."""
        if self.resource_type == ResourceType.ANY:
            return "Resource type is ANY."
        if self.resource_type == ResourceType.UNKNOWN:
            return "Resource type is UNKNOWN."
        if self.name is None:
            return "Resource name is NULL."
        if self.pattern_type == PatternType.MATCH:
            return "Resource pattern type is MATCH."
        if self.pattern_type == PatternType.UNKNOWN:
            return "Resource pattern type is UNKNOWN."
        return None

    def exact_patterns(self) -> list[ResourcePattern]:
        """The patterns a filter that matches at most one pattern can name (ANY: the literal
        and the prefixed one)."""
        assert self.name is not None
        if self.pattern_type == PatternType.ANY:
            types = [PatternType.LITERAL, PatternType.PREFIXED]
        else:
            types = [self.pattern_type]
        return [ResourcePattern(self.resource_type, self.name, t) for t in types]


@dataclass(frozen=True, slots=True)
class AccessControlEntryFilter:
    principal: str | None
    host: str | None
    operation: AclOperation
    permission_type: AclPermissionType

    def matches(self, entry: AccessControlEntry) -> bool:
        if self.principal is not None and self.principal != entry.principal:
            return False
        if self.host is not None and self.host != entry.host:
            return False
        if self.operation != AclOperation.ANY and self.operation != entry.operation:
            return False
        return self.permission_type in (AclPermissionType.ANY, entry.permission_type)

    def indefinite_field(self) -> str | None:
        if self.principal is None:
            return "Principal is NULL"
        if self.host is None:
            return "Host is NULL"
        if self.operation == AclOperation.ANY:
            return "Operation is ANY"
        if self.operation == AclOperation.UNKNOWN:
            return "Operation is UNKNOWN"
        if self.permission_type == AclPermissionType.ANY:
            return "Permission type is ANY"
        if self.permission_type == AclPermissionType.UNKNOWN:
            return "Permission type is UNKNOWN"
        return None


@dataclass(frozen=True, slots=True)
class AclBindingFilter:
    pattern_filter: ResourcePatternFilter
    entry_filter: AccessControlEntryFilter

    def matches(self, binding: AclBinding) -> bool:
        return self.pattern_filter.matches(binding.pattern) and self.entry_filter.matches(
            binding.entry
        )

    def has_unknown(self) -> bool:
        return UNKNOWN_CODE in (
            self.pattern_filter.resource_type,
            self.pattern_filter.pattern_type,
            self.entry_filter.operation,
            self.entry_filter.permission_type,
        )


ANY_BINDING = AclBindingFilter(
    ResourcePatternFilter(ResourceType.ANY, None, PatternType.ANY),
    AccessControlEntryFilter(None, None, AclOperation.ANY, AclPermissionType.ANY),
)


def parse_principal(text: str) -> tuple[str, str]:
    """`Type:name` -> (type, name); ValueError with Kafka's message otherwise."""
    principal_type, sep, name = text.partition(":")
    if not text or not sep:
        raise ValueError(f"expected a string in format principalType:principalName but got {text}")
    return principal_type, name


def binding_problem(binding: AclBinding) -> str | None:
    """Why a binding cannot be created (Kafka's checks and messages), or None."""
    pattern, entry = binding.pattern, binding.entry
    if UNKNOWN_CODE in (
        pattern.resource_type,
        pattern.pattern_type,
        entry.operation,
        entry.permission_type,
    ) or (
        pattern.resource_type == ResourceType.ANY
        or pattern.pattern_type in (PatternType.ANY, PatternType.MATCH)
        or entry.operation == AclOperation.ANY
        or entry.permission_type == AclPermissionType.ANY
    ):
        return "ACL binding contains unknown elements"
    if pattern.resource_type == ResourceType.CLUSTER and pattern.name != CLUSTER_NAME:
        return f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
    if pattern.name == "":
        return "Invalid empty resource name"
    if "/" in pattern.name:
        return f"ACL binding contains invalid resource name: {pattern.name}"
    try:
        parse_principal(entry.principal)
    except ValueError as exc:
        return str(exc)
    return None
