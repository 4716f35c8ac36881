"""FindCoordinator (key 10), versions 0-6: a single broker coordinates every group and every
transactional id; in cluster mode the coordinator is the broker leading the key's partition of
`__consumer_offsets` / `__transaction_state` (COORDINATOR_NOT_AVAILABLE while it has none).

Key type 0 (group): the first lookup creates `__consumer_offsets`; key type 1 (transaction):
the first lookup creates `__transaction_state`, as Kafka does. v4+ batches several keys.
Key type 2 (v6+, KIP-932): the share coordinator of a share partition, key
`groupId:topicId:partition`, i.e. the leader of its `__share_group_state` partition (the
first lookup creates that topic); a key of another form is INVALID_REQUEST. Below v6, and for
any other key type, INVALID_REQUEST.
With an authorizer, a group key needs DESCRIBE on the group (GROUP_AUTHORIZATION_FAILED), a
transactional id DESCRIBE on it (TRANSACTIONAL_ID_AUTHORIZATION_FAILED), a share key
CLUSTER_ACTION (CLUSTER_AUTHORIZATION_FAILED), as in Kafka.
"""

from __future__ import annotations

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from strom.protocol.messages.find_coordinator_response import Coordinator, FindCoordinatorResponse
from strom.runtime.errors import ApiError
from strom.runtime.group_runtime import OFFSETS_TOPIC, GroupCoordinatorRuntime
from strom.runtime.share_coordinator_runtime import SHARE_STATE_TOPIC, ShareCoordinatorRuntime
from strom.runtime.txn_runtime import TRANSACTION_STATE_TOPIC, TransactionCoordinatorRuntime
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize, authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles

GROUP_KEY = 0
TRANSACTION_KEY = 1
SHARE_KEY = 2
SHARE_KEY_VERSION = 6


def _lookup(ctx: RequestContext, key: str, key_type: int) -> Coordinator:
    node = ctx.broker.node_for(ctx.listener)
    found = Coordinator(key=key, node_id=node.node_id, host=node.host, port=node.port)
    share = key_type == SHARE_KEY and ctx.api_version >= SHARE_KEY_VERSION
    if key_type == GROUP_KEY and not authorize(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, key):
        found.error_code = ErrorCode.GROUP_AUTHORIZATION_FAILED
    elif key_type == TRANSACTION_KEY and not authorize(
        ctx, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, key
    ):
        found.error_code = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    elif share and not authorize_cluster(ctx, AclOperation.CLUSTER_ACTION):
        found.error_code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    elif share and not _is_share_partition_key(key):
        found.error_code = ErrorCode.INVALID_REQUEST
        found.error_message = f"Invalid share coordinator key {key!r}."
    elif key_type not in (GROUP_KEY, TRANSACTION_KEY) and not share:
        found.error_code = ErrorCode.INVALID_REQUEST
        found.error_message = f"Unknown coordinator type {key_type} for version {ctx.api_version}."
    elif not key:
        found.error_code = (
            ErrorCode.INVALID_GROUP_ID if key_type == GROUP_KEY else ErrorCode.INVALID_REQUEST
        )
    elif ctx.broker.cluster is not None:
        _lookup_in_cluster(ctx, key, key_type, found)
    else:
        try:
            if key_type == GROUP_KEY:
                ctx.broker.groups.shard_for(key)
            elif key_type == SHARE_KEY:
                ctx.broker.share_state.shard_for(key)
            else:
                ctx.broker.txns.shard_for(key)
        except ApiError as exc:
            found.error_code, found.error_message = exc.code, exc.message
    if found.error_code != ErrorCode.NONE:
        found.node_id, found.host, found.port = -1, "", -1
    return found


def _lookup_in_cluster(ctx: RequestContext, key: str, key_type: int, found: Coordinator) -> None:
    """Cluster mode: the coordinator is the broker leading the key's internal partition."""
    cluster = ctx.broker.cluster
    assert cluster is not None
    runtime: GroupCoordinatorRuntime | TransactionCoordinatorRuntime | ShareCoordinatorRuntime
    if key_type == GROUP_KEY:
        runtime, topic = ctx.broker.groups, OFFSETS_TOPIC
    elif key_type == SHARE_KEY:
        runtime, topic = ctx.broker.share_state, SHARE_STATE_TOPIC
    else:
        runtime, topic = ctx.broker.txns, TRANSACTION_STATE_TOPIC
    leader = None
    if ctx.broker.metadata.get_topic(topic) is None:
        runtime.ensure_topic()  # created in the background; the client asks again
    else:
        leader = cluster.leader_node(topic, runtime.partition_for(key), ctx.listener)
    if leader is None:
        found.error_code = ErrorCode.COORDINATOR_NOT_AVAILABLE
        found.error_message = "The coordinator is not available."
        return
    found.node_id, found.host, found.port = leader.node_id, leader.host, leader.port


def _is_share_partition_key(key: str) -> bool:
    """Kafka's SharePartitionKey string: group id, topic id (base64), partition."""
    group, sep, rest = key.rpartition(":")
    if not sep:
        return False
    group_id, sep, topic_id = group.rpartition(":")
    return bool(sep and group_id and topic_id and rest.isdigit())


@handles(10, 0, 6)
def handle_find_coordinator(
    ctx: RequestContext, request: FindCoordinatorRequest
) -> FindCoordinatorResponse:
    if ctx.api_version >= 4:
        return FindCoordinatorResponse(
            coordinators=[_lookup(ctx, key, request.key_type) for key in request.coordinator_keys]
        )
    found = _lookup(ctx, request.key, request.key_type)
    return FindCoordinatorResponse(
        error_code=found.error_code,
        error_message=found.error_message,
        node_id=found.node_id,
        host=found.host,
        port=found.port,
    )
