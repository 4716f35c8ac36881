"""Authorization as the handlers ask for it (Kafka's AuthHelper), and the audit trail.

Every handler asks in one place, before it does anything, with the helpers below; each one
returns at once when no authorizer is configured (`authorizer.class.name` empty, the
default), so a broker without ACLs pays one attribute test per request. With an authorizer a
decision is a lookup in its cache once made.

Denials are logged on `strom.authorizer` at INFO, once per principal, resource and operation
per minute (not once per request: a client retrying a refused produce would flood the log),
with the principal and host, in Kafka's words ("Principal = User:bob is Denied operation =
Write from host = 10.0.0.7 on resource = Topic:LITERAL:orders for request = Produce").
Checks made only to filter or to compute authorized operations do not log, as in Kafka.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from strom.config import BrokerConfig
from strom.protocol.errors import ErrorCode
from strom.protocol.messages import API_SPECS
from strom.security.acl import (
    CLUSTER_NAME,
    SUPPORTED_OPERATIONS,
    AclOperation,
    PatternType,
    ResourceType,
    operations_bitfield,
    pascal_name,
)
from strom.security.authorizer import AclAuthorizer

if TYPE_CHECKING:
    from strom.server.context import RequestContext

audit = logging.getLogger("strom.authorizer")

# Kafka's default for an authorized-operations field that was not asked for.
AUTHORIZED_OPERATIONS_OMITTED = -2147483648
AUDIT_INTERVAL_S = 60.0
AUDIT_KEYS_LIMIT = 10_000


def authorizer_from_config(config: BrokerConfig) -> AclAuthorizer | None:
    """The ACL authorizer `authorizer.class.name` asks for (its value is one of the names of
    config/broker_security_keys.py AUTHORIZER_CLASS_NAMES, or empty: no authorizer), with
    `super.users` and `allow.everyone.if.no.acl.found` (read from the static configuration,
    as Kafka's authorizer reads them once)."""
    if not (config.get_str("authorizer.class.name") or "").strip():
        return None
    raw = config.raw
    super_users = [u.strip() for u in (raw.get("super.users") or "").split(";") if u.strip()]
    allow = (raw.get("allow.everyone.if.no.acl.found") or "false").strip().lower() == "true"
    return AclAuthorizer(super_users, allow)


def principal_of(ctx: RequestContext) -> str:
    principal = ctx.principal
    return f"{principal.principal_type}:{principal.name}"


def host_of(ctx: RequestContext) -> str:
    """The client's address without the port (`1.2.3.4:5678`, `::1:5678`)."""
    return ctx.peer.rsplit(":", 1)[0]


class AuditLog:
    """Denials, each (principal, resource, operation) at most once per interval.

    `_last` is in the order the keys were last logged (a key logged again moves to the end),
    so the oldest are at the front: past AUDIT_KEYS_LIMIT keys those are forgotten first,
    which bounds the memory of a client naming ever new resources (a forgotten key may be
    logged again within its minute)."""

    def __init__(
        self,
        interval_s: float = AUDIT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        keys_limit: int = AUDIT_KEYS_LIMIT,
    ) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.keys_limit = keys_limit
        self._last: OrderedDict[tuple[str, ResourceType, str, AclOperation], float] = OrderedDict()

    def denied(
        self,
        principal: str,
        host: str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: str,
        api_key: int,
    ) -> None:
        now = self.clock()
        key = (principal, resource_type, name, operation)
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return
        last_logged = self._last
        last_logged.pop(key, None)
        while last_logged:
            oldest = next(iter(last_logged.values()))
            if len(last_logged) < self.keys_limit and now - oldest < self.interval_s:
                break
            last_logged.popitem(last=False)
        last_logged[key] = now
        spec = API_SPECS.get(api_key)
        audit.info(
            "Principal = %s is Denied operation = %s from host = %s on resource = %s:%s:%s "
            "for request = %s",
            principal,
            pascal_name(operation),
            host,
            pascal_name(resource_type),
            PatternType.LITERAL.name,
            name,
            spec.name if spec is not None else api_key,
        )


AUDIT = AuditLog()


def authorize(
    ctx: RequestContext,
    operation: AclOperation,
    resource_type: ResourceType,
    name: str,
    *,
    log_denied: bool = True,
) -> bool:
    authorizer = ctx.broker.authorizer
    if authorizer is None:
        return True
    principal = principal_of(ctx)
    host = host_of(ctx)
    if authorizer.authorize(principal, host, operation, resource_type, name):
        return True
    if log_denied:
        AUDIT.denied(principal, host, operation, resource_type, name, ctx.api_key)
    return False


def authorize_cluster(
    ctx: RequestContext, operation: AclOperation, *, log_denied: bool = True
) -> bool:
    return authorize(ctx, operation, ResourceType.CLUSTER, CLUSTER_NAME, log_denied=log_denied)


def authorized_names(
    ctx: RequestContext,
    operation: AclOperation,
    resource_type: ResourceType,
    names: Iterable[str],
    *,
    log_denied: bool = True,
) -> set[str]:
    """The names among `names` the request's principal may act on (all of them without an
    authorizer)."""
    authorizer = ctx.broker.authorizer
    if authorizer is None:
        return set(names)
    principal = principal_of(ctx)
    host = host_of(ctx)
    allowed: set[str] = set()
    for name in names if isinstance(names, (set, frozenset)) else set(names):
        if authorizer.authorize(principal, host, operation, resource_type, name):
            allowed.add(name)
        elif log_denied:
            AUDIT.denied(principal, host, operation, resource_type, name, ctx.api_key)
    return allowed


def authorize_by_resource_type(
    ctx: RequestContext, operation: AclOperation, resource_type: ResourceType
) -> bool:
    authorizer = ctx.broker.authorizer
    if authorizer is None:
        return True
    return authorizer.authorize_by_resource_type(
        principal_of(ctx), host_of(ctx), operation, resource_type
    )


def authorized_operations(ctx: RequestContext, resource_type: ResourceType, name: str) -> int:
    """Kafka's 32-bit field of what the principal may do to the resource (every operation
    the type supports without an authorizer)."""
    authorizer = ctx.broker.authorizer
    if authorizer is None:
        return operations_bitfield(frozenset(SUPPORTED_OPERATIONS[resource_type]))
    return operations_bitfield(
        authorizer.authorized_operations(principal_of(ctx), host_of(ctx), resource_type, name)
    )


# Config resource types (DescribeConfigs, AlterConfigs, IncrementalAlterConfigs).
_TOPIC_RESOURCE = 2
_GROUP_RESOURCE = 32
_CLUSTER_RESOURCES = (4, 8, 16)  # BROKER, BROKER_LOGGER, CLIENT_METRICS

KAFKA_MESSAGES = {
    ErrorCode.TOPIC_AUTHORIZATION_FAILED: "Topic authorization failed.",
    ErrorCode.CLUSTER_AUTHORIZATION_FAILED: "Cluster authorization failed.",
    ErrorCode.GROUP_AUTHORIZATION_FAILED: "Group authorization failed.",
}


def config_resource_refusal(
    ctx: RequestContext, resource_type: int, name: str, operation: AclOperation
) -> ErrorCode | None:
    """Kafka's check of a config resource: a topic needs `operation` (DESCRIBE_CONFIGS or
    ALTER_CONFIGS) on the topic, a group on the group, a broker, broker logger or client-metrics
    resource on the cluster. The error to answer, or None (other types are left to the
    handler)."""
    if resource_type == _TOPIC_RESOURCE:
        if not authorize(ctx, operation, ResourceType.TOPIC, name):
            return ErrorCode.TOPIC_AUTHORIZATION_FAILED
    elif resource_type == _GROUP_RESOURCE:
        if not authorize(ctx, operation, ResourceType.GROUP, name):
            return ErrorCode.GROUP_AUTHORIZATION_FAILED
    elif resource_type in _CLUSTER_RESOURCES and not authorize_cluster(ctx, operation):
        return ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    return None
