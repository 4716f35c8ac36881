"""OffsetsForLeaderEpoch (key 23), versions 0-4: where each of the leader's epochs ends.

Followers ask it before fetching (to truncate what a previous leader wrote past the point
where the new leader's log diverges), and consumers use it to detect log truncation. The
answers are `replication/leader_epoch_handler.py`'s; this module resolves partitions. On a
single broker every partition is led here at epoch 0; in cluster mode only the leader answers
(NOT_LEADER_OR_FOLLOWER elsewhere, UNKNOWN_TOPIC_OR_PARTITION for a partition the metadata does
not have). v0-1 carry no current leader epoch (nothing to fence) and v0's answer has no epoch,
only the end offset.
"""

from __future__ import annotations

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.offset_for_leader_epoch_request import OffsetForLeaderEpochRequest
from strom.protocol.messages.offset_for_leader_epoch_response import (
    OffsetForLeaderEpochResponse,
)
from strom.replication.leader_epoch_handler import (
    MAX_VERSION,
    MIN_VERSION,
    LocalEpochs,
    handle_offsets_for_leader_epoch,
)
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize_cluster, authorized_names
from strom.server.context import RequestContext
from strom.server.registry import handles


@handles(23, MIN_VERSION, MAX_VERSION)
def handle_offsets_for_leader_epoch_request(
    ctx: RequestContext, request: OffsetForLeaderEpochRequest
) -> OffsetForLeaderEpochResponse:
    broker = ctx.broker
    cluster = broker.cluster

    def resolve(topic: str, partition: int) -> LocalEpochs | None:
        plog = broker.partition_log(topic, partition)
        record = broker.metadata.get_topic(topic)
        if cluster is None:
            if plog is None:
                return None
            return LocalEpochs(
                broker.leader_epoch(topic, partition), True, plog.end_offset_for_epoch
            )
        state = cluster.replicas.states.get((topic, partition))
        if plog is None or state is None:
            if record is not None and 0 <= partition < record.num_partitions:
                # Known, but not hosted here: not the leader (Kafka answers the same).
                return LocalEpochs(-1, False, lambda epoch: (-1, -1))
            return None
        return LocalEpochs(state.leader_epoch, state.is_leader, plog.end_offset_for_epoch)

    # Brokers have CLUSTER_ACTION; consumers (KIP-320) need DESCRIBE on each topic.
    refused: set[str] = set()
    if ctx.broker.authorizer is not None and not authorize_cluster(
        ctx, AclOperation.CLUSTER_ACTION, log_denied=False
    ):
        names = {t.topic for t in request.topics}
        refused = names - authorized_names(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names)
    response = handle_offsets_for_leader_epoch(request, resolve)
    for topic in response.topics:
        if topic.topic in refused:
            for p in topic.partitions:
                p.error_code = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                p.leader_epoch, p.end_offset = -1, -1
    if cluster is not None:
        for topic in response.topics:
            for p in topic.partitions:
                hosted = (topic.topic, p.partition) in cluster.replicas.states
                if p.error_code == ErrorCode.UNKNOWN_LEADER_EPOCH and not hosted:
                    p.error_code = ErrorCode.NOT_LEADER_OR_FOLLOWER
    return response
