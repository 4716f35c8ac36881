"""IncrementalAlterConfigs (key 44), versions 0-1: change single keys of topics or the broker.

Operations per key: SET (0) sets an override, DELETE (1) removes it (the key goes back to its
inherited or default value; deleting a key that is not set changes nothing), APPEND (2) and
SUBTRACT (3) add or remove elements of a LIST-typed key (other types and unknown names answer
INVALID_CONFIG, with Kafka's messages). APPEND and SUBTRACT start from the key's current
override, or where there is none from its current effective value (what DescribeConfigs shows);
APPEND adds only elements that are not there yet. The resulting set of overrides is validated
as a whole (unknown keys and bad values answer INVALID_CONFIG) and then stored and applied, as
with AlterConfigs: TOPIC (2) resources change a topic's overrides, BROKER (4) resources the
dynamic values of this broker (its id) or the cluster-wide defaults (empty name). A null value
for anything but DELETE, a key named twice in one resource, or a resource named twice answers
INVALID_REQUEST. validate_only checks and changes nothing. GROUP (32) resources set and delete
a group's configs (share.*, see strom.config.group; SET and DELETE only; kept in the metadata
store on a single broker, in /config/groups/<group> in ZooKeeper in cluster mode). Authorization
as for AlterConfigs (ALTER_CONFIGS on the topic, the group or the cluster). Not done:
BROKER_LOGGER and CLIENT_METRICS resources (INVALID_REQUEST); alter-config policies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

from strom.config import BROKER_DEFS, TOPIC_DEFS, ConfigDef, ConfigType, effective_topic_value
from strom.config.broker_keys import known_def
from strom.config.definitions import ConfigValue, format_value
from strom.config.group import validate_group_config
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.incremental_alter_configs_request import (
    AlterableConfig,
    IncrementalAlterConfigsRequest,
)
from strom.protocol.messages.incremental_alter_configs_response import (
    AlterConfigsResourceResponse,
    IncrementalAlterConfigsResponse,
)
from strom.runtime.errors import ApiError
from strom.security.acl import AclOperation
from strom.server.authz import config_resource_refusal
from strom.server.context import RequestContext
from strom.server.handlers.alter_configs import (
    broker_layer,
    duplicate_resources,
    replace_broker_configs,
    replace_topic_configs,
    settle_config_writes,
    topic_overrides,
)
from strom.server.handlers.describe_configs import (
    BROKER,
    GROUP,
    TOPIC,
    broker_target,
    broker_values,
    unsupported_resource,
)
from strom.server.registry import handles

SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
_OP_NAMES = {SET: "SET", DELETE: "DELETE", APPEND: "APPEND", SUBTRACT: "SUBTRACT"}


def _split(text: str | None) -> list[str]:
    if not text:
        return []
    return [item.strip() for item in text.split(",") if item.strip()]


def apply_ops(
    current: dict[str, str],
    ops: list[AlterableConfig],
    defs: Callable[[str], ConfigDef | None],
    effective: dict[str, ConfigValue],
) -> dict[str, str | None]:
    """The overrides after `ops`; `defs` finds a key's definition, `effective` holds current
    values of keys without overrides. Names without a definition may be SET and DELETEd (the
    validation of the whole set then judges them)."""
    result: dict[str, str | None] = dict(current)
    for op in ops:
        name = op.name
        if op.config_operation not in _OP_NAMES:
            raise ApiError(
                ErrorCode.INVALID_REQUEST,
                f"Unknown config operation {op.config_operation} for {name}.",
            )
        if op.config_operation == DELETE:
            result.pop(name, None)
            continue
        if op.value is None:
            raise ApiError(
                ErrorCode.INVALID_REQUEST,
                f"A null value is only allowed with DELETE ({_OP_NAMES[op.config_operation]} "
                f"{name}).",
            )
        if op.config_operation == SET:
            result[name] = op.value
            continue
        d = defs(name)
        if d is None:
            raise ApiError(ErrorCode.INVALID_CONFIG, f"Unknown config name: {name}")
        if d.type is not ConfigType.LIST:
            verb = "append" if op.config_operation == APPEND else "subtract"
            raise ApiError(
                ErrorCode.INVALID_CONFIG,
                f"Config value {verb} is not allowed for config key: {name}",
            )
        if name in current:
            items = _split(current[name])
        else:
            items = _split(format_value(d.type, effective.get(name)))
        change = _split(op.value)
        if op.config_operation == APPEND:
            items.extend(x for x in dict.fromkeys(change) if x not in items)
        else:
            items = [x for x in items if x not in change]
        result[name] = ",".join(items)
    return result


def _alter(
    ctx: RequestContext,
    resource_type: int,
    resource_name: str,
    ops: list[AlterableConfig],
    validate_only: bool,
) -> None:
    names = Counter(op.name for op in ops)
    repeated = sorted(n for n, count in names.items() if count > 1)
    if repeated:
        raise ApiError(
            ErrorCode.INVALID_REQUEST, f"Config keys named more than once: {', '.join(repeated)}."
        )
    if resource_type == TOPIC:
        current = topic_overrides(ctx, resource_name)
        config = ctx.broker.config
        effective = {
            op.name: effective_topic_value(op.name, current, config)[0]
            for op in ops
            if op.name in TOPIC_DEFS and op.name not in current
        }
        wanted = apply_ops(current, ops, TOPIC_DEFS.get, effective)
        replace_topic_configs(ctx, resource_name, wanted, validate_only)
    elif resource_type == BROKER:
        target = broker_target(ctx, resource_name)
        current = broker_layer(ctx, target)
        config = ctx.broker.config
        effective = {op.name: config.get(op.name) for op in ops if op.name in BROKER_DEFS}
        wanted = apply_ops(current, ops, known_def, effective)
        replace_broker_configs(ctx, target, wanted, validate_only)
    elif resource_type == GROUP:
        _alter_group(ctx, resource_name, ops, validate_only)
    else:
        raise unsupported_resource(resource_type)


def _alter_group(
    ctx: RequestContext, group_id: str, ops: list[AlterableConfig], validate_only: bool
) -> None:
    """SET and DELETE of group configs (APPEND/SUBTRACT: no group config is a list)."""
    if not group_id:
        raise ApiError(ErrorCode.INVALID_GROUP_ID, "A group resource needs a group id.")
    wanted = ctx.broker.metadata.group_configs(group_id)
    broker = broker_values(ctx)
    for op in ops:
        if op.config_operation not in (SET, DELETE):
            raise ApiError(
                ErrorCode.INVALID_CONFIG, f"{op.name} is not a list: only SET and DELETE apply."
            )
        value = op.value if op.config_operation == SET else None
        if op.config_operation == SET and value is None:
            raise ApiError(ErrorCode.INVALID_CONFIG, f"Null value for {op.name}.")
        problem = validate_group_config(op.name, value, broker)
        if problem is not None:
            raise ApiError(ErrorCode.INVALID_CONFIG, problem)
        if value is None:
            wanted.pop(op.name, None)
        else:
            wanted[op.name] = value
    if not validate_only:
        ctx.broker.set_group_configs(group_id, wanted)


@handles(44, 0, 1)
def handle_incremental_alter_configs(
    ctx: RequestContext, request: IncrementalAlterConfigsRequest
) -> IncrementalAlterConfigsResponse | Awaitable[IncrementalAlterConfigsResponse]:
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
            _alter(
                ctx,
                resource.resource_type,
                resource.resource_name,
                resource.configs,
                request.validate_only,
            )
        except ApiError as exc:
            response.error_code = exc.code
            response.error_message = exc.message or exc.code.name
    answer = IncrementalAlterConfigsResponse(responses=responses)
    if ctx.broker.cluster is not None and not request.validate_only:
        return _answer_when_written(ctx, answer)
    return answer


async def _answer_when_written(
    ctx: RequestContext, answer: IncrementalAlterConfigsResponse
) -> IncrementalAlterConfigsResponse:
    await settle_config_writes(ctx, answer.responses)
    return answer
