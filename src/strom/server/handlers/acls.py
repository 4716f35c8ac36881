"""DescribeAcls (key 29), CreateAcls (key 30) and DeleteAcls (key 31), versions 0-3.

As Kafka's AclApis: DescribeAcls needs DESCRIBE on the cluster, the other two ALTER on the
cluster (CLUSTER_AUTHORIZATION_FAILED otherwise); without an authorizer
(`authorizer.class.name` empty) each answers SECURITY_DISABLED. Version 0 knows LITERAL
patterns only: a filter's ANY is read as LITERAL there, as Kafka does. The ACLs are stored
before the answer (runtime/acl_runtime.py), so the next request on any connection to this
broker sees them; the other brokers of a cluster apply them from their ZooKeeper watch.

Differences from Kafka: a request that Kafka's parser refuses (UNKNOWN codes, a non-LITERAL
pattern at version 0) makes Kafka close the connection; Strom answers it, with
INVALID_REQUEST or UNSUPPORTED_VERSION for the entries concerned.
"""

from __future__ import annotations

from collections.abc import Awaitable

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.create_acls_request import AclCreation, CreateAclsRequest
from strom.protocol.messages.create_acls_response import AclCreationResult, CreateAclsResponse
from strom.protocol.messages.delete_acls_request import DeleteAclsFilter, DeleteAclsRequest
from strom.protocol.messages.delete_acls_response import (
    DeleteAclsFilterResult,
    DeleteAclsMatchingAcl,
    DeleteAclsResponse,
)
from strom.protocol.messages.describe_acls_request import DescribeAclsRequest
from strom.protocol.messages.describe_acls_response import (
    AclDescription,
    DescribeAclsResource,
    DescribeAclsResponse,
)
from strom.security.acl import (
    AccessControlEntry,
    AccessControlEntryFilter,
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
    binding_problem,
    code_of,
)
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles

NOT_AUTHORIZED = "Request is not authorized to perform this cluster operation."
NO_AUTHORIZER = "No Authorizer is configured on the broker"
V0_LITERAL_ONLY = "Version 0 only supports literal resource pattern types"


def _filter(
    ctx: RequestContext,
    resource_type: int,
    name: str | None,
    pattern_type: int,
    principal: str | None,
    host: str | None,
    operation: int,
    permission_type: int,
) -> AclBindingFilter | tuple[ErrorCode, str]:
    """A filter of a DescribeAcls or DeleteAcls request, or why it cannot be used."""
    ptype = code_of(PatternType, pattern_type)
    if ctx.api_version == 0:
        if ptype == PatternType.ANY:
            ptype = PatternType.LITERAL
        elif ptype != PatternType.LITERAL:
            return ErrorCode.UNSUPPORTED_VERSION, V0_LITERAL_ONLY
    f = AclBindingFilter(
        ResourcePatternFilter(code_of(ResourceType, resource_type), name, ptype),
        AccessControlEntryFilter(
            principal,
            host,
            code_of(AclOperation, operation),
            code_of(AclPermissionType, permission_type),
        ),
    )
    if f.has_unknown():
        return ErrorCode.INVALID_REQUEST, "The filter contains UNKNOWN elements."
    return f


@handles(29, 0, 3)
def handle_describe_acls(ctx: RequestContext, request: DescribeAclsRequest) -> DescribeAclsResponse:
    response = DescribeAclsResponse(error_code=ErrorCode.NONE, error_message=None, resources=[])
    if not authorize_cluster(ctx, AclOperation.DESCRIBE):
        response.error_code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        response.error_message = NOT_AUTHORIZED
        return response
    authorizer = ctx.broker.authorizer
    if authorizer is None:
        response.error_code = ErrorCode.SECURITY_DISABLED
        response.error_message = NO_AUTHORIZER
        return response
    f = _filter(
        ctx,
        request.resource_type_filter,
        request.resource_name_filter,
        request.pattern_type_filter,
        request.principal_filter,
        request.host_filter,
        request.operation,
        request.permission_type,
    )
    if isinstance(f, tuple):
        response.error_code, response.error_message = f
        return response
    by_pattern: dict[ResourcePattern, list[AccessControlEntry]] = {}
    for binding in authorizer.acls(f):
        by_pattern.setdefault(binding.pattern, []).append(binding.entry)
    response.resources = [
        DescribeAclsResource(
            resource_type=pattern.resource_type,
            resource_name=pattern.name,
            pattern_type=pattern.pattern_type,
            acls=[
                AclDescription(
                    principal=e.principal,
                    host=e.host,
                    operation=e.operation,
                    permission_type=e.permission_type,
                )
                for e in entries
            ],
        )
        for pattern, entries in by_pattern.items()
    ]
    return response


def _binding(ctx: RequestContext, creation: AclCreation) -> AclBinding | AclCreationResult:
    pattern_type = code_of(PatternType, creation.resource_pattern_type)
    if ctx.api_version == 0 and pattern_type != PatternType.LITERAL:
        return AclCreationResult(
            error_code=ErrorCode.UNSUPPORTED_VERSION, error_message=V0_LITERAL_ONLY
        )
    binding = AclBinding(
        ResourcePattern(
            code_of(ResourceType, creation.resource_type), creation.resource_name, pattern_type
        ),
        AccessControlEntry(
            creation.principal,
            creation.host,
            code_of(AclOperation, creation.operation),
            code_of(AclPermissionType, creation.permission_type),
        ),
    )
    problem = binding_problem(binding)
    if problem is not None:
        return AclCreationResult(error_code=ErrorCode.INVALID_REQUEST, error_message=problem)
    return binding


@handles(30, 0, 3)
def handle_create_acls(
    ctx: RequestContext, request: CreateAclsRequest
) -> CreateAclsResponse | Awaitable[CreateAclsResponse]:
    def every(code: ErrorCode, message: str) -> CreateAclsResponse:
        return CreateAclsResponse(
            results=[
                AclCreationResult(error_code=code, error_message=message) for _ in request.creations
            ]
        )

    if not authorize_cluster(ctx, AclOperation.ALTER):
        return every(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, NOT_AUTHORIZED)
    acls = ctx.broker.acls
    if acls is None:
        return every(ErrorCode.SECURITY_DISABLED, "No Authorizer is configured.")
    checked = [_binding(ctx, c) for c in request.creations]
    valid = [b for b in checked if isinstance(b, AclBinding)]

    async def create() -> CreateAclsResponse:
        failures = await acls.create(valid) if valid else {}
        results = []
        for item in checked:
            if isinstance(item, AclCreationResult):
                results.append(item)
            elif item in failures:
                failure = failures[item]
                results.append(
                    AclCreationResult(error_code=failure.code, error_message=failure.message)
                )
            else:
                results.append(AclCreationResult(error_code=ErrorCode.NONE, error_message=None))
        return CreateAclsResponse(results=results)

    return create()


def _matching(binding: AclBinding, code: ErrorCode, message: str | None) -> DeleteAclsMatchingAcl:
    return DeleteAclsMatchingAcl(
        error_code=code,
        error_message=message,
        resource_type=binding.pattern.resource_type,
        resource_name=binding.pattern.name,
        pattern_type=binding.pattern.pattern_type,
        principal=binding.entry.principal,
        host=binding.entry.host,
        operation=binding.entry.operation,
        permission_type=binding.entry.permission_type,
    )


def _delete_filter(
    ctx: RequestContext, f: DeleteAclsFilter
) -> AclBindingFilter | tuple[ErrorCode, str]:
    return _filter(
        ctx,
        f.resource_type_filter,
        f.resource_name_filter,
        f.pattern_type_filter,
        f.principal_filter,
        f.host_filter,
        f.operation,
        f.permission_type,
    )


@handles(31, 0, 3)
def handle_delete_acls(
    ctx: RequestContext, request: DeleteAclsRequest
) -> DeleteAclsResponse | Awaitable[DeleteAclsResponse]:
    def every(code: ErrorCode, message: str) -> DeleteAclsResponse:
        return DeleteAclsResponse(
            filter_results=[
                DeleteAclsFilterResult(error_code=code, error_message=message, matching_acls=[])
                for _ in request.filters
            ]
        )

    if not authorize_cluster(ctx, AclOperation.ALTER):
        return every(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, NOT_AUTHORIZED)
    acls = ctx.broker.acls
    if acls is None:
        return every(ErrorCode.SECURITY_DISABLED, "No Authorizer is configured.")
    parsed = [_delete_filter(ctx, f) for f in request.filters]
    valid = [f for f in parsed if isinstance(f, AclBindingFilter)]

    async def delete() -> DeleteAclsResponse:
        outcomes = iter(await acls.delete(valid) if valid else [])
        results = []
        for item in parsed:
            if isinstance(item, tuple):
                code, message = item
                results.append(
                    DeleteAclsFilterResult(error_code=code, error_message=message, matching_acls=[])
                )
                continue
            outcome = next(outcomes)
            results.append(
                DeleteAclsFilterResult(
                    error_code=ErrorCode.NONE,
                    error_message=None,
                    matching_acls=[_matching(b, ErrorCode.NONE, None) for b in outcome.deleted]
                    + [_matching(b, f.code, f.message) for b, f in outcome.failed],
                )
            )
        return DeleteAclsResponse(filter_results=results)

    return delete()
