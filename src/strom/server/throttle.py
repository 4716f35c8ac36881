"""Client quotas as the request path applies them (Kafka's KIP-219 throttling).

Handlers count bandwidth (Produce: the request's bytes; Fetch: the records returned) and put
the throttle time they get in `ctx.throttle_ms`; the dispatcher adds the request-time quota
(`request_percentage`: the time spent handling the request, as a percentage of one second)
and then, for the larger of the two: writes it as the response's `throttle_time_ms`, and
mutes the connection for that long. Clients from KIP-219 on (the response versions in
`CLIENT_THROTTLES_FROM`) get the answer at once and wait themselves; older ones, and APIs
whose responses Kafka never has the client throttle, get it after the throttle time.

Without any quota configured nothing here runs but one attribute test per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strom.server.context import RequestContext

# The first version of each response that the client itself throttles on (Kafka's
# AbstractResponse.shouldClientThrottle); 0: every version. APIs not listed: never.
CLIENT_THROTTLES_FROM: dict[int, int] = {
    0: 6,  # Produce
    1: 8,  # Fetch
    2: 3,  # ListOffsets
    3: 6,  # Metadata
    8: 4,  # OffsetCommit
    9: 4,  # OffsetFetch
    10: 2,  # FindCoordinator
    11: 3,  # JoinGroup
    12: 2,  # Heartbeat
    13: 2,  # LeaveGroup
    14: 2,  # SyncGroup
    15: 2,  # DescribeGroups
    16: 2,  # ListGroups
    18: 2,  # ApiVersions
    19: 3,  # CreateTopics
    20: 2,  # DeleteTopics
    21: 1,  # DeleteRecords
    22: 1,  # InitProducerId
    24: 1,  # AddPartitionsToTxn
    25: 1,  # AddOffsetsToTxn
    26: 1,  # EndTxn
    28: 1,  # TxnOffsetCommit
    29: 1,  # DescribeAcls
    30: 1,  # CreateAcls
    31: 1,  # DeleteAcls
    32: 2,  # DescribeConfigs
    33: 1,  # AlterConfigs
    34: 1,  # AlterReplicaLogDirs
    35: 1,  # DescribeLogDirs
    37: 1,  # CreatePartitions
    38: 1,  # CreateDelegationToken
    39: 1,  # RenewDelegationToken
    40: 1,  # ExpireDelegationToken
    41: 1,  # DescribeDelegationToken
    42: 1,  # DeleteGroups
    43: 0,  # ElectLeaders
    44: 0,  # IncrementalAlterConfigs
    45: 0,  # AlterPartitionReassignments
    46: 0,  # ListPartitionReassignments
    47: 0,  # OffsetDelete
    50: 0,  # DescribeUserScramCredentials
    51: 0,  # AlterUserScramCredentials
    75: 0,  # DescribeTopicPartitions
}

# Requests brokers send each other: exempt from the request quota, as in Kafka.
EXEMPT = frozenset({4, 5, 6, 7, 27, 56, 58, 67})


def client_throttles(api_key: int, version: int) -> bool:
    first = CLIENT_THROTTLES_FROM.get(api_key)
    return first is not None and version >= first


def user_of(ctx: RequestContext) -> str:
    return ctx.principal.name


def client_of(ctx: RequestContext) -> str:
    return ctx.client_id or ""


def request_throttle(ctx: RequestContext, handled_s: float) -> int:
    """Count the time spent on the request against `request_percentage`; the throttle time."""
    manager = ctx.broker.quotas.request
    if not manager.enabled or ctx.api_key in EXEMPT:
        return 0
    return manager.record(
        user_of(ctx), client_of(ctx), handled_s * 100.0, ctx.broker.clock.now_ms()
    )


def set_throttle_time(response: Any, throttle_ms: int) -> None:
    """Write the throttle time into a response that has the field (most do)."""
    if response is not None and hasattr(response, "throttle_time_ms"):
        response.throttle_time_ms = max(int(response.throttle_time_ms), throttle_ms)


class MutationQuota:
    """controller_mutation_rate for one CreateTopics, CreatePartitions or DeleteTopics request:
    strict from the versions Kafka makes strict (a topic that finds the bucket empty is refused
    with THROTTLING_QUOTA_EXCEEDED), permissive before (counted, only throttled after)."""

    def __init__(self, ctx: RequestContext, strict_from: int) -> None:
        self.ctx = ctx
        self.manager = ctx.broker.quotas.controller
        self.strict = ctx.api_version >= strict_from

    def take(self, partitions: int) -> bool:
        """Count `partitions` created or deleted; False when the request must not do it."""
        if not self.manager.enabled:
            return True
        user, client = user_of(self.ctx), client_of(self.ctx)
        now_ms = self.ctx.broker.clock.now_ms()
        if self.strict and self.manager.throttle_ms(user, client, now_ms) > 0:
            return False
        self.manager.record(user, client, partitions, now_ms)
        return True

    def finish(self) -> None:
        """The throttle time the mutations left, for the response and the connection."""
        if self.manager.enabled:
            throttle = self.manager.throttle_ms(
                user_of(self.ctx), client_of(self.ctx), self.ctx.broker.clock.now_ms()
            )
            self.ctx.throttle_ms = max(self.ctx.throttle_ms, throttle)


THROTTLED_MESSAGE = "The throttling quota has been exceeded."
