"""ListPartitionReassignments (key 46), version 0: the partition reassignments in progress.

Answered by any broker from its cache of the topics' assignment znodes (kept current by
watches): each partition being reassigned with its full replica set (target then original),
the replicas being added and the ones being removed. A null topic list means every partition;
partitions named but not being reassigned (or unknown) are left out, as in Kafka. A single
broker (no zookeeper.connect) never has a reassignment in progress. Needs DESCRIBE on the
cluster (CLUSTER_AUTHORIZATION_FAILED).
"""

from __future__ import annotations

from strom.cluster.zk import reassignment as R
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.list_partition_reassignments_request import (
    ListPartitionReassignmentsRequest,
)
from strom.protocol.messages.list_partition_reassignments_response import (
    ListPartitionReassignmentsResponse,
    OngoingPartitionReassignment,
    OngoingTopicReassignment,
)
from strom.security.acl import AclOperation
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles


@handles(46, 0, 0)
def handle_list_partition_reassignments(
    ctx: RequestContext, request: ListPartitionReassignmentsRequest
) -> ListPartitionReassignmentsResponse:
    response = ListPartitionReassignmentsResponse(error_code=ErrorCode.NONE, error_message=None)
    if not authorize_cluster(ctx, AclOperation.DESCRIBE):
        response.error_code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        response.error_message = "Request is not authorized to list partition reassignments."
        return response
    cluster = ctx.broker.cluster
    if cluster is None:
        return response
    assignments = cluster.metadata.assignments
    if request.topics is None:
        wanted = {topic: sorted(a.partitions) for topic, a in sorted(assignments.items())}
    else:
        wanted = {}
        for entry in request.topics:
            wanted.setdefault(entry.name, []).extend(entry.partition_indexes)
    for topic, partitions in wanted.items():
        assignment = assignments.get(topic)
        if assignment is None:
            continue
        ongoing: list[OngoingPartitionReassignment] = []
        for p in dict.fromkeys(partitions):
            ra = R.partition_assignment(assignment, p)
            if ra is not None and ra.is_being_reassigned:
                ongoing.append(
                    OngoingPartitionReassignment(
                        partition_index=p,
                        replicas=list(ra.replicas),
                        adding_replicas=list(ra.adding),
                        removing_replicas=list(ra.removing),
                    )
                )
        if ongoing:
            response.topics.append(OngoingTopicReassignment(name=topic, partitions=ongoing))
    return response
