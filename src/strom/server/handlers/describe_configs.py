"""DescribeConfigs (key 32), versions 0-4: the configuration of topics and of this broker.

Resource types: TOPIC (2) lists every topic key with its effective value and where it came from
(the topic's override, a broker `log.*` synonym, or Kafka's default); BROKER (4) with this
broker's id lists every broker key (read-only unless dynamically updatable), and with the empty
name the cluster-wide dynamic defaults that are set. `configuration_keys` limits the answer to
the named keys (unknown ones are left out); synonyms are listed only when asked for
(include_synonyms), documentation likewise (include_documentation, v3+), and the value type
from v3. Sensitive values are never returned. An unknown topic answers
UNKNOWN_TOPIC_OR_PARTITION, an illegal topic name INVALID_TOPIC_EXCEPTION, another broker's id
or a non-numeric broker name INVALID_REQUEST. GROUP (32) lists the group configs (share.*)
with the group's values (source DYNAMIC_GROUP_CONFIG) or their defaults. With an authorizer a
topic needs DESCRIBE_CONFIGS on it (TOPIC_AUTHORIZATION_FAILED), a group on the group
(GROUP_AUTHORIZATION_FAILED), a broker resource on the cluster (CLUSTER_AUTHORIZATION_FAILED).
Not done: BROKER_LOGGER (8) resources, answered with INVALID_REQUEST (there are no log4j
loggers to describe); CLIENT_METRICS resources (INVALID_REQUEST).

v0 has no config source: each entry says is_default instead (true for a key at Kafka's default),
which is what brokers answered when v0 was current; Kafka 3.9 leaves it false for every entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from strom.cluster.topic_names import validate_topic_name
from strom.config import ConfigEntry, ConfigSource, describe_topic_configs
from strom.config.group import describe_group_configs
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.describe_configs_request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)
from strom.protocol.messages.describe_configs_response import (
    DescribeConfigsResourceResult,
    DescribeConfigsResponse,
    DescribeConfigsResult,
    DescribeConfigsSynonym,
)
from strom.runtime.errors import ApiError
from strom.security.acl import AclOperation
from strom.server.authz import KAFKA_MESSAGES, config_resource_refusal
from strom.server.context import RequestContext
from strom.server.registry import handles

TOPIC = 2
BROKER = 4
BROKER_LOGGER = 8
GROUP = 32

# Broker keys that group configs default to or are bounded by.
GROUP_BROKER_KEYS = (
    "group.share.record.lock.duration.ms",
    "group.share.min.record.lock.duration.ms",
    "group.share.max.record.lock.duration.ms",
)


def topic_config_entries(
    ctx: RequestContext, overrides: Mapping[str, str], names: Iterable[str] | None = None
) -> list[ConfigEntry]:
    """The described configuration of a topic with these overrides on this broker."""
    return describe_topic_configs(overrides, ctx.broker.config, names)


def broker_target(ctx: RequestContext, resource_name: str) -> int | None:
    """The broker a BROKER resource names: this broker's id, or None for the cluster default.

    Raises ApiError(INVALID_REQUEST) for a name that is not a number or is another broker's id.
    """
    if resource_name == "":
        return None
    own = ctx.broker.node.node_id
    try:
        broker_id = int(resource_name)
    except ValueError:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"A broker resource is named by a broker id, not {resource_name!r}.",
        ) from None
    if broker_id != own:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            f"This is broker {own}; it describes and alters broker {own} or the cluster default "
            f"(empty name), not broker {resource_name}.",
        )
    return broker_id


def unsupported_resource(resource_type: int) -> ApiError:
    if resource_type == BROKER_LOGGER:
        return ApiError(
            ErrorCode.INVALID_REQUEST, "Strom has no broker loggers (BROKER_LOGGER resources)."
        )
    return ApiError(ErrorCode.INVALID_REQUEST, f"Unsupported resource type {resource_type}.")


def _entries(ctx: RequestContext, resource: DescribeConfigsResource) -> list[ConfigEntry]:
    names = resource.configuration_keys
    if resource.resource_type == TOPIC:
        problem = validate_topic_name(resource.resource_name)
        if problem is not None:
            raise ApiError(ErrorCode.INVALID_TOPIC_EXCEPTION, problem)
        record = ctx.broker.metadata.get_topic(resource.resource_name)
        if record is None:
            raise ApiError(
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                f"Topic '{resource.resource_name}' does not exist.",
            )
        return topic_config_entries(ctx, record.configs, names)
    if resource.resource_type == BROKER:
        if broker_target(ctx, resource.resource_name) is None:
            return ctx.broker.config.describe_default(names)
        return ctx.broker.config.describe(names)
    if resource.resource_type == GROUP:
        if not resource.resource_name:
            raise ApiError(ErrorCode.INVALID_GROUP_ID, "A group resource needs a group id.")
        getter = getattr(ctx.broker.metadata, "group_configs", None)
        overrides = getter(resource.resource_name) if getter is not None else {}
        return describe_group_configs(overrides, broker_values(ctx), names)
    raise unsupported_resource(resource.resource_type)


def broker_values(ctx: RequestContext) -> dict[str, str]:
    """The broker settings group configs fall back to or are bounded by."""
    return {name: str(ctx.broker.config.get(name)) for name in GROUP_BROKER_KEYS}


def _result_entry(
    ctx: RequestContext, entry: ConfigEntry, synonyms: bool, documentation: bool
) -> DescribeConfigsResourceResult:
    return DescribeConfigsResourceResult(
        name=entry.name,
        value=None if entry.is_sensitive else entry.value,
        read_only=entry.read_only,
        is_default=entry.source == ConfigSource.DEFAULT_CONFIG,
        config_source=int(entry.source),
        is_sensitive=entry.is_sensitive,
        synonyms=[
            DescribeConfigsSynonym(name=s.name, value=s.value, source=int(s.source))
            for s in entry.synonyms
        ]
        if synonyms
        else [],
        config_type=int(entry.config_type),
        documentation=entry.documentation if documentation else None,
    )


@handles(32, 0, 4)
def handle_describe_configs(
    ctx: RequestContext, request: DescribeConfigsRequest
) -> DescribeConfigsResponse:
    documentation = ctx.api_version >= 3 and request.include_documentation
    results: list[DescribeConfigsResult] = []
    for resource in request.resources:
        result = DescribeConfigsResult(
            error_code=ErrorCode.NONE,
            error_message=None,
            resource_type=resource.resource_type,
            resource_name=resource.resource_name,
            configs=[],
        )
        refusal = config_resource_refusal(
            ctx, resource.resource_type, resource.resource_name, AclOperation.DESCRIBE_CONFIGS
        )
        if refusal is not None:
            result.error_code, result.error_message = refusal, KAFKA_MESSAGES[refusal]
            results.append(result)
            continue
        try:
            entries = _entries(ctx, resource)
        except ApiError as exc:
            result.error_code = exc.code
            result.error_message = exc.message or exc.code.name
        else:
            result.configs = [
                _result_entry(ctx, e, request.include_synonyms, documentation) for e in entries
            ]
        results.append(result)
    return DescribeConfigsResponse(results=results)
