"""DescribeClientQuotas and AlterClientQuotas as functions of the stored entity configs, with
Kafka's ZooKeeper-mode rules and messages (ZkAdminManager).

Describe: filter components name an entity type (`user`, `client-id`, `ip`) with a match:
EXACT (that name), DEFAULT (the `<default>` entity) or SPECIFIED (any entity that has that
part, the default included, as Kafka's ZooKeeper mode answers). Without `strict`, entities
with more parts than the filter names match too; with it, only those with exactly those
parts. IP components cannot be mixed with user or client-id ones.

Alter: each entry's operations set or remove quota keys of one entity; LONG keys take whole
numbers. The result replaces the entity's quota keys and keeps its other configs (a user's
znode also holds its SCRAM credentials).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from strom.protocol.errors import ErrorCode
from strom.quota.entities import (
    CLIENT_ID,
    DEFAULT,
    IP,
    IP_KEYS,
    USER,
    USER_CLIENT_KEYS,
    QuotaEntity,
    format_value,
    quota_values,
)

EXACT, DEFAULT_MATCH, SPECIFIED = 0, 1, 2
EPSILON = 1e-6


class QuotaRequestError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> QuotaRequestError:
    return QuotaRequestError(ErrorCode.INVALID_REQUEST, message)


@dataclass(frozen=True, slots=True)
class FilterComponent:
    entity_type: str
    match_type: int
    match: str | None


def describe(
    configs: Mapping[str, Mapping[str, str]], components: list[FilterComponent], strict: bool
) -> list[tuple[QuotaEntity, dict[str, float]]]:
    """The entities the filter matches with their quota values; QuotaRequestError for a
    filter Kafka refuses."""
    by_type: dict[str, FilterComponent] = {}
    for c in components:
        if c.entity_type == "":
            raise _invalid("Unexpected empty filter component entity type")
        if c.entity_type not in (USER, CLIENT_ID, IP):
            raise QuotaRequestError(
                ErrorCode.UNSUPPORTED_VERSION, f"Custom entity type '{c.entity_type}' not supported"
            )
        if c.entity_type in by_type:
            word = "client" if c.entity_type == CLIENT_ID else c.entity_type
            raise _invalid(f"Duplicate {word} filter component entity type")
        if c.match_type not in (EXACT, DEFAULT_MATCH, SPECIFIED):
            raise _invalid(f"Unexpected match type: {c.match_type}")
        by_type[c.entity_type] = c
    if IP in by_type and (USER in by_type or CLIENT_ID in by_type):
        raise _invalid(
            "Invalid entity filter component combination, IP filter component should not be "
            "used with user or clientId filter component."
        )

    def matches(component: FilterComponent | None, value: str | None) -> bool:
        if component is None:
            return value is None or not strict
        if value is None:
            return False
        if component.match_type == EXACT:
            return value == component.match and value != DEFAULT
        if component.match_type == DEFAULT_MATCH:
            return value == DEFAULT
        return True

    out: list[tuple[QuotaEntity, dict[str, float]]] = []
    for path, stored in sorted(configs.items()):
        try:
            entity = QuotaEntity.from_path(path)
        except ValueError:
            continue
        is_ip = entity.ip is not None
        values = quota_values(stored, ip=is_ip)
        if not values:
            continue
        if is_ip:
            # IP entities answer an IP filter, or an empty one that is not strict.
            if USER in by_type or CLIENT_ID in by_type or not matches(by_type.get(IP), entity.ip):
                continue
        elif IP in by_type or not (
            matches(by_type.get(USER), entity.user)
            and matches(by_type.get(CLIENT_ID), entity.client_id)
        ):
            continue
        out.append((entity, values))
    return out


def entity_of(parts: list[tuple[str, str | None]]) -> QuotaEntity:
    """The entity an AlterClientQuotas entry names; QuotaRequestError as Kafka refuses it."""
    if not parts:
        raise _invalid("Invalid empty client quota entity")
    found: dict[str, str] = {}
    for entity_type, name in parts:
        if entity_type not in (USER, CLIENT_ID, IP):
            raise _invalid(f"Unhandled client quota entity type: {entity_type}")
        if name is not None and name == "":
            raise _invalid(f"Empty {entity_type} not supported")
        found[entity_type] = DEFAULT if name is None else name
    if IP in found:
        if len(found) > 1:
            raise _invalid(
                "Invalid quota entity combination, IP entity should not be used with "
                "user/client ID entity."
            )
        ip = found[IP]
        if ip != DEFAULT:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise _invalid(f"{ip} is not a valid IP or resolvable host.") from None
        return QuotaEntity(ip=ip)
    return QuotaEntity(user=found.get(USER), client_id=found.get(CLIENT_ID))


def altered(
    entity: QuotaEntity, stored: Mapping[str, str], ops: list[tuple[str, float, bool]]
) -> dict[str, str]:
    """The entity's configs after the operations (key, value, remove); QuotaRequestError for
    a key or value Kafka refuses."""
    keys = IP_KEYS if entity.ip is not None else USER_CLIENT_KEYS
    result = dict(stored)
    for key, value, remove in ops:
        if remove:
            result.pop(key, None)
            continue
        kind = keys.get(key)
        if kind is None:
            raise _invalid(f"Invalid configuration key {key}")
        if kind in ("LONG", "INT"):
            whole = int(value + EPSILON)
            if abs(whole - value) > EPSILON:
                raise _invalid(f"Configuration {key} must be a {kind} value")
        if value <= 0:
            raise _invalid(f"Configuration {key} must be positive")
        result[key] = format_value(key, value)
    return result
