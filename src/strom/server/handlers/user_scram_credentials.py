"""DescribeUserScramCredentials (key 50, v0) and AlterUserScramCredentials (key 51, v0): the
SCRAM users that SASL listeners authenticate against (`kafka-configs --entity-type users`,
the admin clients' describe/alter_user_scram_credentials).

Clients send the salt and the salted password (never the password); the broker keeps the
derived stored key and server key (`security/scram.py`), on a single broker in its metadata
file and in cluster mode in ZooKeeper under /config/users/<user> in Kafka's format, from where
every broker takes changes through its watches. A change acts at once for new
authentications. Per user, as Kafka's ZooKeeper-mode broker answers: an empty name or a
bad iteration count (4096..16384) UNACCEPTABLE_CREDENTIAL, an unknown mechanism
UNSUPPORTED_SASL_MECHANISM, the same user and mechanism twice DUPLICATE_RESOURCE, deleting a
credential that does not exist RESOURCE_NOT_FOUND. With an authorizer, describing needs
DESCRIBE and altering ALTER on the cluster (CLUSTER_AUTHORIZATION_FAILED otherwise), as Kafka.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.alter_user_scram_credentials_request import (
    AlterUserScramCredentialsRequest,
)
from strom.protocol.messages.alter_user_scram_credentials_response import (
    AlterUserScramCredentialsResponse,
    AlterUserScramCredentialsResult,
)
from strom.protocol.messages.describe_user_scram_credentials_request import (
    DescribeUserScramCredentialsRequest,
)
from strom.protocol.messages.describe_user_scram_credentials_response import (
    CredentialInfo,
    DescribeUserScramCredentialsResponse,
    DescribeUserScramCredentialsResult,
)
from strom.security.acl import AclOperation
from strom.security.scram import (
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    ScramCredential,
    credential_from_salted,
)
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles

# Kafka's ScramMechanism types.
MECHANISM_TYPES = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
TYPES_BY_NAME = {name: code for code, name in MECHANISM_TYPES.items()}
EMPTY_NAME = "Username must not be empty"


@handles(50, 0, 0)
def handle_describe_user_scram_credentials(
    ctx: RequestContext, request: DescribeUserScramCredentialsRequest
) -> DescribeUserScramCredentialsResponse:
    if not authorize_cluster(ctx, AclOperation.DESCRIBE):
        return DescribeUserScramCredentialsResponse(
            error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message=None
        )
    stored = ctx.broker.scram_users()
    results: list[DescribeUserScramCredentialsResult] = []

    def described(user: str) -> DescribeUserScramCredentialsResult:
        infos = []
        for mechanism, text in sorted(stored.get(user, {}).items()):
            if mechanism in TYPES_BY_NAME:
                infos.append(
                    CredentialInfo(
                        mechanism=TYPES_BY_NAME[mechanism],
                        iterations=ScramCredential.from_kafka(text).iterations,
                    )
                )
        return DescribeUserScramCredentialsResult(
            user=user, error_message=None, credential_infos=infos
        )

    wanted = [u.name for u in request.users] if request.users else None
    if not wanted:
        results = [described(user) for user in sorted(stored) if stored[user]]
        return DescribeUserScramCredentialsResponse(error_message=None, results=results)
    counts = Counter(wanted)
    for user in dict.fromkeys(wanted):
        if not user:
            results.append(
                DescribeUserScramCredentialsResult(
                    user=user, error_code=ErrorCode.RESOURCE_NOT_FOUND, error_message=EMPTY_NAME
                )
            )
        elif counts[user] > 1:
            results.append(
                DescribeUserScramCredentialsResult(
                    user=user,
                    error_code=ErrorCode.DUPLICATE_RESOURCE,
                    error_message="Cannot describe SCRAM credentials for the same user twice in "
                    f"a single request: {user}",
                )
            )
        elif not stored.get(user):
            results.append(
                DescribeUserScramCredentialsResult(
                    user=user,
                    error_code=ErrorCode.RESOURCE_NOT_FOUND,
                    error_message="Attempt to describe a user credential that does not exist: "
                    f"{user}",
                )
            )
        else:
            results.append(described(user))
    return DescribeUserScramCredentialsResponse(error_message=None, results=results)


@handles(51, 0, 0)
def handle_alter_user_scram_credentials(
    ctx: RequestContext, request: AlterUserScramCredentialsRequest
) -> AlterUserScramCredentialsResponse | Awaitable[AlterUserScramCredentialsResponse]:
    if not authorize_cluster(ctx, AclOperation.ALTER):
        named = [d.name for d in request.deletions] + [u.name for u in request.upsertions]
        return AlterUserScramCredentialsResponse(
            results=[
                AlterUserScramCredentialsResult(
                    user=user, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message=None
                )
                for user in dict.fromkeys(named)
            ]
        )
    errors: dict[str, tuple[ErrorCode, str]] = {}
    for deletion in request.deletions:
        if not deletion.name:
            errors[deletion.name] = (ErrorCode.UNACCEPTABLE_CREDENTIAL, EMPTY_NAME)
        elif deletion.mechanism not in MECHANISM_TYPES:
            errors[deletion.name] = (
                ErrorCode.UNSUPPORTED_SASL_MECHANISM,
                "Unknown SCRAM mechanism",
            )
    for upsertion in request.upsertions:
        if not upsertion.name:
            errors[upsertion.name] = (ErrorCode.UNACCEPTABLE_CREDENTIAL, EMPTY_NAME)
        elif upsertion.mechanism not in MECHANISM_TYPES:
            errors[upsertion.name] = (
                ErrorCode.UNSUPPORTED_SASL_MECHANISM,
                "Unknown SCRAM mechanism",
            )
        elif upsertion.iterations < MIN_ITERATIONS:
            errors[upsertion.name] = (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too few iterations")
        elif upsertion.iterations > MAX_ITERATIONS:
            errors[upsertion.name] = (ErrorCode.UNACCEPTABLE_CREDENTIAL, "Too many iterations")
    pairs = [(d.name, d.mechanism) for d in request.deletions if d.name not in errors] + [
        (u.name, u.mechanism) for u in request.upsertions if u.name not in errors
    ]
    for (user, _), count in Counter(pairs).items():
        if count > 1:
            errors[user] = (
                ErrorCode.DUPLICATE_RESOURCE,
                "A user credential cannot be altered twice in the same request",
            )
    stored = ctx.broker.scram_users()
    changed: dict[str, dict[str, str]] = {}
    for user in dict.fromkeys(user for user, _ in pairs):
        if user not in errors:
            changed[user] = dict(stored.get(user, {}))
    for deletion in request.deletions:
        if deletion.name in changed:
            name = MECHANISM_TYPES[deletion.mechanism]
            if name not in changed[deletion.name]:
                errors[deletion.name] = (
                    ErrorCode.RESOURCE_NOT_FOUND,
                    "Attempt to delete a user credential that does not exist",
                )
                del changed[deletion.name]
            else:
                del changed[deletion.name][name]
    for upsertion in request.upsertions:
        if upsertion.name in changed:
            name = MECHANISM_TYPES[upsertion.mechanism]
            credential = credential_from_salted(
                name, bytes(upsertion.salt), bytes(upsertion.salted_password), upsertion.iterations
            )
            changed[upsertion.name][name] = credential.to_kafka()

    def response(failed: dict[str, tuple[ErrorCode, str]]) -> AlterUserScramCredentialsResponse:
        results = [
            AlterUserScramCredentialsResult(user=user, error_code=code, error_message=message)
            for user, (code, message) in failed.items()
        ]
        results += [
            AlterUserScramCredentialsResult(
                user=user, error_code=ErrorCode.NONE, error_message=None
            )
            for user in changed
            if user not in failed
        ]
        return AlterUserScramCredentialsResponse(results=results)

    if not changed:
        return response(errors)
    outcome = ctx.broker.set_scram_users(changed)
    if isinstance(outcome, dict):
        return response({**errors, **outcome})

    async def wait() -> AlterUserScramCredentialsResponse:
        failed = await outcome
        return response({**errors, **failed})

    return wait()
