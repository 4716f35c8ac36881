"""AlterConfigs (key 33), versions 0-2: replace the configuration of topics or of the broker.

This is the legacy, non-incremental API: the given set replaces ALL of a resource's overrides,
so a key that is not named goes back to its default; a key given a null value is left out, as
Kafka does. TOPIC (2) resources set a topic's overrides (validated like CreateTopics' configs:
unknown keys and bad values answer INVALID_CONFIG, an unknown topic UNKNOWN_TOPIC_OR_PARTITION);
BROKER (4) resources set the dynamic per-broker values (name = this broker's id) or the
cluster-wide dynamic defaults (empty name) under Kafka's rules (strom.config.dynamic): read-only
keys, per-broker keys on the default resource, TLS keys without a listener prefix, passwords
without password.encoder.secret answer INVALID_CONFIG with Kafka's messages; names Kafka does not
define are stored as custom configs. Every key Kafka 3.9 knows is taken, also those Strom does
not act on (one log line says so). Changes are persisted in the metadata store and applied to
the running logs at once (cluster mode: written to ZooKeeper, answered once this broker's watch
applied them; the others follow). validate_only checks and changes nothing. A resource named
twice, or a key named twice in one resource, answers INVALID_REQUEST. With an authorizer a
topic needs ALTER_CONFIGS on it (TOPIC_AUTHORIZATION_FAILED), a broker resource ALTER_CONFIGS on
the cluster (CLUSTER_AUTHORIZATION_FAILED). Not done: BROKER_LOGGER resources (INVALID_REQUEST);
alter-config policies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Mapping, Sequence
from typing import Protocol

from strom.cluster.topic_names import validate_topic_name
from strom.config import (
    ConfigError,
    InvalidConfigurationError,
    check_password_storage,
    check_thread_pools,
    log_config_for,
    log_no_effect_topic_keys,
    validate_dynamic_broker_configs,
    validate_topic_configs,
)
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.alter_configs_request import AlterConfigsRequest
from strom.protocol.messages.alter_configs_response import (
    AlterConfigsResourceResponse,
    AlterConfigsResponse,
)
from strom.runtime.errors import ApiError
from strom.security.acl import AclOperation
from strom.server.authz import config_resource_refusal
from strom.server.context import RequestContext
from strom.server.dynamic_configs import broker_config_write_name, group_config_write_name
from strom.server.handlers.describe_configs import (
    BROKER,
    GROUP,
    TOPIC,
    broker_target,
    unsupported_resource,
)
from strom.server.registry import handles


def topic_overrides(ctx: RequestContext, name: str) -> dict[str, str]:
    """A topic's current overrides; ApiError for an illegal name or an unknown topic."""
    problem = validate_topic_name(name)
    if problem is not None:
        raise ApiError(ErrorCode.INVALID_TOPIC_EXCEPTION, problem)
    record = ctx.broker.metadata.get_topic(name)
    if record is None:
        raise ApiError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' does not exist.")
    return dict(record.configs)


def invalid_config(resource_type: int, name: str, exc: ConfigError) -> ApiError:
    """INVALID_CONFIG with Kafka's message: a refused value is reported with the resource."""
    if isinstance(exc, InvalidConfigurationError):
        return ApiError(ErrorCode.INVALID_CONFIG, str(exc))
    kind = "TOPIC" if resource_type == TOPIC else "BROKER"
    return ApiError(
        ErrorCode.INVALID_CONFIG,
        f"Invalid config value for resource ConfigResource(type={kind}, name='{name}'): {exc}",
    )


def replace_topic_configs(
    ctx: RequestContext, name: str, configs: Mapping[str, str | None], validate_only: bool
) -> None:
    """Validate `configs` as the topic's complete set of overrides and, unless validating, store
    and apply them."""
    current = topic_overrides(ctx, name)
    try:
        normalized = validate_topic_configs(configs)
        log_config_for(normalized, ctx.broker.config)  # rules across keys and broker defaults
    except ConfigError as exc:
        raise invalid_config(TOPIC, name, exc) from exc
    if not validate_only:
        ctx.broker.set_topic_configs(name, normalized)
        log_no_effect_topic_keys(name, (k for k, v in normalized.items() if current.get(k) != v))


def broker_layer(ctx: RequestContext, target: int | None) -> dict[str, str]:
    """The dynamic values currently set for this broker (target = its id) or the cluster."""
    config = ctx.broker.config
    return config.dynamic_default_configs if target is None else config.dynamic_broker_configs


def replace_broker_configs(
    ctx: RequestContext, target: int | None, configs: Mapping[str, str | None], validate_only: bool
) -> None:
    """Validate `configs` as the complete dynamic layer of `target` (None: the cluster default)
    and, unless validating, persist and apply it."""
    broker = ctx.broker
    name = "" if target is None else str(target)
    current = broker.config
    try:
        normalized = validate_dynamic_broker_configs(configs, per_broker=target is not None)
        if target is None:
            updated = current.with_dynamic(cluster_default=normalized)
        else:
            updated = current.with_dynamic(per_broker=normalized)
        check_thread_pools(current, updated)
        if target is None or target == current.broker_id:
            broker.check_reconfiguration(updated)
        if not validate_only:
            secret = current.get("password.encoder.secret") is not None
            check_password_storage(normalized, target is not None, secret)
            broker.set_dynamic_broker_configs(target, normalized)
    except ConfigError as exc:
        raise invalid_config(BROKER, name, exc) from exc


class ResourceResult(Protocol):
    error_code: int
    error_message: str | None
    resource_type: int
    resource_name: str


async def settle_config_writes(ctx: RequestContext, results: Sequence[ResourceResult]) -> None:
    """Cluster mode: wait for the config writes the resources started (to ZooKeeper, until
    this broker's watch applied them) and put their errors into the results."""
    cluster = ctx.broker.cluster
    assert cluster is not None
    names = {
        _write_name(result.resource_type, result.resource_name)
        for result in results
        if result.error_code == ErrorCode.NONE
    }
    errors = await cluster.settle(names)
    for result in results:
        if result.error_code != ErrorCode.NONE:
            continue
        error = errors.get(_write_name(result.resource_type, result.resource_name))
        if error is not None:
            result.error_code = error.code
            result.error_message = error.message or error.code.name


def _write_name(resource_type: int, resource_name: str) -> str:
    if resource_type == BROKER:  # a valid broker resource: its name is "" or a number
        return broker_config_write_name(None if resource_name == "" else int(resource_name))
    if resource_type == GROUP:
        return group_config_write_name(resource_name)
    return resource_name


def duplicate_resources(resources: list[tuple[int, str]]) -> set[tuple[int, str]]:
    return {key for key, n in Counter(resources).items() if n > 1}


@handles(33, 0, 2)
def handle_alter_configs(
    ctx: RequestContext, request: AlterConfigsRequest
) -> AlterConfigsResponse | Awaitable[AlterConfigsResponse]:
    dupes = duplicate_resources([(r.resource_type, r.resource_name) for r in request.resources])
    responses: list[AlterConfigsResourceResponse] = []
    for resource in request.resources:
        response = AlterConfigsResourceResponse(
            error_code=ErrorCode.NONE,
            error_message=None,
            resource_type=resource.resource_type,
            resource_name=resource.resource_name,
        )
        responses.append(response)
        try:
            if (resource.resource_type, resource.resource_name) in dupes:
                raise ApiError(
                    ErrorCode.INVALID_REQUEST, "The resource appears more than once in the request."
                )
            refusal = config_resource_refusal(
                ctx, resource.resource_type, resource.resource_name, AclOperation.ALTER_CONFIGS
            )
            if refusal is not None:
                response.error_code = refusal
                continue
            names = Counter(c.name for c in resource.configs)
            repeated = sorted(n for n, count in names.items() if count > 1)
            if repeated:
                raise ApiError(
                    ErrorCode.INVALID_REQUEST,
                    f"Config keys named more than once: {', '.join(repeated)}.",
                )
            # Kafka's legacy AlterConfigs leaves out keys given a null value.
            configs = {c.name: c.value for c in resource.configs if c.value is not None}
            if resource.resource_type == TOPIC:
                replace_topic_configs(ctx, resource.resource_name, configs, request.validate_only)
            elif resource.resource_type == BROKER:
                target = broker_target(ctx, resource.resource_name)
                replace_broker_configs(ctx, target, configs, request.validate_only)
            else:
                raise unsupported_resource(resource.resource_type)
        except ApiError as exc:
            response.error_code = exc.code
            response.error_message = exc.message or exc.code.name
    answer = AlterConfigsResponse(responses=responses)
    if ctx.broker.cluster is not None and not request.validate_only:
        return _answer_when_written(ctx, answer)
    return answer


async def _answer_when_written(
    ctx: RequestContext, answer: AlterConfigsResponse
) -> AlterConfigsResponse:
    await settle_config_writes(ctx, answer.responses)
    return answer
