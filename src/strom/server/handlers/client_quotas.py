"""DescribeClientQuotas (key 48) and AlterClientQuotas (key 49), versions 0-1.

Kafka's ZooKeeper-mode semantics (quota/admin.py): entities of users, client ids, both, and
IPs, each named or `<default>` (a null name on the wire); the keys producer_byte_rate,
consumer_byte_rate (whole bytes per second), request_percentage and controller_mutation_rate
(doubles), and connection_creation_rate for IPs. Describe needs DESCRIBE_CONFIGS on the
cluster, alter ALTER_CONFIGS (CLUSTER_AUTHORIZATION_FAILED). A filter Kafka refuses answers
INVALID_REQUEST (UNSUPPORTED_VERSION for an entity type it does not know) with its message; an
alteration is answered per entry and applied before the answer (a single broker writes
strom-security.json, a cluster ZooKeeper's /config/users and /config/clients; the other
brokers apply it from the change notification). Difference: a value of zero or less is
refused (INVALID_REQUEST), where Kafka's ZooKeeper mode stores it.
"""

from __future__ import annotations

from collections.abc import Awaitable

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.alter_client_quotas_request import AlterClientQuotasRequest
from strom.protocol.messages.alter_client_quotas_response import (
    AlterClientQuotasResponse,
)
from strom.protocol.messages.alter_client_quotas_response import (
    EntityData as AlterEntityData,
)
from strom.protocol.messages.alter_client_quotas_response import (
    EntryData as AlterEntryData,
)
from strom.protocol.messages.describe_client_quotas_request import DescribeClientQuotasRequest
from strom.protocol.messages.describe_client_quotas_response import (
    DescribeClientQuotasResponse,
    EntityData,
    EntryData,
    ValueData,
)
from strom.quota.admin import FilterComponent, QuotaRequestError
from strom.security.acl import AclOperation
from strom.server.authz import KAFKA_MESSAGES, authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles


@handles(48, 0, 1)
def handle_describe_client_quotas(
    ctx: RequestContext, request: DescribeClientQuotasRequest
) -> DescribeClientQuotasResponse:
    response = DescribeClientQuotasResponse(error_code=ErrorCode.NONE, error_message=None)
    if not authorize_cluster(ctx, AclOperation.DESCRIBE_CONFIGS):
        code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        response.error_code, response.error_message = code, KAFKA_MESSAGES[code]
        response.entries = None
        return response
    components = [FilterComponent(c.entity_type, c.match_type, c.match) for c in request.components]
    try:
        found = ctx.broker.quotas.describe(components, request.strict)
    except QuotaRequestError as exc:
        response.error_code, response.error_message = exc.code, exc.message
        response.entries = None
        return response
    response.entries = [
        EntryData(
            entity=[EntityData(entity_type=t, entity_name=n) for t, n in entity.components()],
            values=[ValueData(key=k, value=v) for k, v in sorted(values.items())],
        )
        for entity, values in found
    ]
    return response


@handles(49, 0, 1)
def handle_alter_client_quotas(
    ctx: RequestContext, request: AlterClientQuotasRequest
) -> AlterClientQuotasResponse | Awaitable[AlterClientQuotasResponse]:
    def entity(parts: list[tuple[str, str | None]]) -> list[AlterEntityData]:
        return [AlterEntityData(entity_type=t, entity_name=n) for t, n in parts]

    parts = [[(e.entity_type, e.entity_name) for e in entry.entity] for entry in request.entries]
    if not authorize_cluster(ctx, AclOperation.ALTER_CONFIGS):
        code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        return AlterClientQuotasResponse(
            entries=[
                AlterEntryData(
                    error_code=code, error_message=KAFKA_MESSAGES[code], entity=entity(p)
                )
                for p in parts
            ]
        )
    ops = [[(o.key, o.value, o.remove) for o in entry.ops] for entry in request.entries]

    async def alter() -> AlterClientQuotasResponse:
        results = await ctx.broker.quotas.alter(
            list(zip(parts, ops, strict=True)), request.validate_only
        )
        return AlterClientQuotasResponse(
            entries=[
                AlterEntryData(error_code=code, error_message=message, entity=entity(p))
                for p, (code, message) in zip(parts, results, strict=True)
            ]
        )

    return alter()
