"""Where share-partition state is read and written: its share coordinator (Kafka's
DefaultStatePersister and PersisterStateManager, in small).

The state of (group, topic id, partition) lives with the share coordinator of the key
`group:topicId:partition`, the leader of that key's `__share_group_state` partition. On a
single broker, and in a cluster when this broker leads that partition, the call goes straight
to `ShareCoordinatorRuntime` (the same code that answers the RPCs). Otherwise it is sent to the
leader as InitializeShareGroupState (83), ReadShareGroupState (84), WriteShareGroupState (85),
DeleteShareGroupState (86) or ReadShareGroupStateSummary (87), one share partition per
request, over the inter-broker listener.

Retries, as Kafka's persister: NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE,
COORDINATOR_LOAD_IN_PROGRESS, UNKNOWN_TOPIC_OR_PARTITION (metadata not there yet), a lost
connection or a timeout make the call look up the leader again and try again after a backoff
(100 ms doubling up to 1 s, the defaults of Kafka's retry.backoff.ms and retry.backoff.max.ms).
Kafka gives up after five attempts; a ZooKeeper cluster moves a leadership only once the dead
broker's session expires, so here the call keeps trying for request.timeout.ms (30 s), which
spans a session timeout (18 s) and the election after it. Then it answers the last error.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from strom.cluster.zk.layout import NO_LEADER
from strom.coordinator.share.coordinator import (
    Outcome,
    ShareState,
    StateKey,
    StateWrite,
    coordinator_key,
)
from strom.coordinator.share.partition import RecordState, StateBatch
from strom.protocol.errors import ErrorCode, ProtocolError
from strom.protocol.messages.delete_share_group_state_request import (
    DeleteShareGroupStateRequest,
    DeleteStateData,
)
from strom.protocol.messages.delete_share_group_state_request import (
    PartitionData as DeletePartition,
)
from strom.protocol.messages.initialize_share_group_state_request import (
    InitializeShareGroupStateRequest,
    InitializeStateData,
)
from strom.protocol.messages.initialize_share_group_state_request import (
    PartitionData as InitializePartition,
)
from strom.protocol.messages.read_share_group_state_request import (
    PartitionData as ReadPartition,
)
from strom.protocol.messages.read_share_group_state_request import (
    ReadShareGroupStateRequest,
    ReadStateData,
)
from strom.protocol.messages.read_share_group_state_summary_request import (
    PartitionData as SummaryPartition,
)
from strom.protocol.messages.read_share_group_state_summary_request import (
    ReadShareGroupStateSummaryRequest,
    ReadStateSummaryData,
)
from strom.protocol.messages.write_share_group_state_request import (
    PartitionData as WritePartition,
)
from strom.protocol.messages.write_share_group_state_request import (
    StateBatch as WireBatch,
)
from strom.protocol.messages.write_share_group_state_request import (
    WriteShareGroupStateRequest,
    WriteStateData,
)
from strom.replication.broker_client import InterBrokerClient
from strom.runtime.share_coordinator_runtime import SHARE_STATE_TOPIC

if TYPE_CHECKING:
    from strom.runtime.host import BrokerHost
    from strom.runtime.share_coordinator_runtime import ShareCoordinatorRuntime

__all__ = ["RETRIABLE", "SharePersister"]

log = logging.getLogger("strom.share")

INITIALIZE, READ, WRITE, DELETE, SUMMARY = 83, 84, 85, 86, 87
BACKOFF_S = 0.1
BACKOFF_MAX_S = 1.0
MAX_VERSIONS = {INITIALIZE: 0, READ: 0, WRITE: 1, DELETE: 0, SUMMARY: 1}

RETRIABLE = frozenset(
    {
        ErrorCode.NOT_COORDINATOR,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.REQUEST_TIMED_OUT,
        ErrorCode.NETWORK_EXCEPTION,
    }
)

Local = Callable[[], "Outcome | Awaitable[Outcome]"]
Remote = tuple[int, Any, Callable[[Any], Outcome]]  # api key, request, parse


class SharePersister:
    def __init__(self, broker: BrokerHost, coordinator: ShareCoordinatorRuntime) -> None:
        self.broker = broker
        self.coordinator = coordinator
        self._client: InterBrokerClient | None = None

    # -- the operations --------------------------------------------------------------------

    def initialize(
        self, key: StateKey, state_epoch: int, start_offset: int
    ) -> Outcome | Awaitable[Outcome]:
        group_id, topic_id, partition = key
        request = InitializeShareGroupStateRequest(
            group_id,
            [
                InitializeStateData(
                    topic_id, [InitializePartition(partition, state_epoch, start_offset)]
                )
            ],
        )
        return self._call(
            key,
            lambda: self.coordinator.initialize(key, state_epoch, start_offset),
            (INITIALIZE, request, _error_only),
        )

    def read(self, key: StateKey, leader_epoch: int) -> Outcome | Awaitable[Outcome]:
        group_id, topic_id, partition = key
        request = ReadShareGroupStateRequest(
            group_id, [ReadStateData(topic_id, [ReadPartition(partition, leader_epoch)])]
        )
        return self._call(
            key, lambda: self.coordinator.read(key, leader_epoch), (READ, request, _read_outcome)
        )

    def write(self, key: StateKey, write: StateWrite) -> Outcome | Awaitable[Outcome]:
        group_id, topic_id, partition = key
        request = WriteShareGroupStateRequest(
            group_id,
            [
                WriteStateData(
                    topic_id,
                    [
                        WritePartition(
                            partition=partition,
                            state_epoch=write.state_epoch,
                            leader_epoch=write.leader_epoch,
                            start_offset=write.start_offset,
                            state_batches=[
                                WireBatch(
                                    b.first_offset, b.last_offset, int(b.state), b.delivery_count
                                )
                                for b in write.batches
                            ],
                            delivery_complete_count=write.delivery_complete_count,
                        )
                    ],
                )
            ],
        )
        return self._call(
            key, lambda: self.coordinator.write_state(key, write), (WRITE, request, _error_only)
        )

    def delete(self, key: StateKey) -> Outcome | Awaitable[Outcome]:
        group_id, topic_id, partition = key
        request = DeleteShareGroupStateRequest(
            group_id, [DeleteStateData(topic_id, [DeletePartition(partition)])]
        )
        return self._call(key, lambda: self.coordinator.delete(key), (DELETE, request, _error_only))

    def summary(self, key: StateKey) -> Outcome | Awaitable[Outcome]:
        group_id, topic_id, partition = key
        request = ReadShareGroupStateSummaryRequest(
            group_id, [ReadStateSummaryData(topic_id, [SummaryPartition(partition, 0)])]
        )
        return self._call(
            key, lambda: self.coordinator.summary(key), (SUMMARY, request, _summary_outcome)
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    # -- routing and retries ---------------------------------------------------------------

    def _leader(self, key: StateKey) -> int | None:
        """The broker coordinating the key in a cluster (None: nobody yet, or the topic does
        not exist yet, which asking the local runtime creates)."""
        cluster = self.broker.cluster
        assert cluster is not None
        if self.broker.metadata.get_topic(SHARE_STATE_TOPIC) is None:
            return None
        partition = self.coordinator.partition_for(coordinator_key(*key))
        versioned = cluster.metadata.state(SHARE_STATE_TOPIC, partition)
        if versioned is None or versioned.state.leader == NO_LEADER:
            return None
        return versioned.state.leader

    def _call(self, key: StateKey, local: Local, remote: Remote) -> Outcome | Awaitable[Outcome]:
        if self.broker.cluster is None:
            return local()
        first: Outcome | Awaitable[Outcome] | None = None
        if self._leader(key) == self.broker.config.broker_id:
            first = local()
            if not isinstance(first, Awaitable) and first.error not in RETRIABLE:
                return first  # answered here, at once
        return self._retrying(key, local, remote, first)

    async def _retrying(
        self,
        key: StateKey,
        local: Local,
        remote: Remote,
        first: Outcome | Awaitable[Outcome] | None,
    ) -> Outcome:
        """Answers of the first attempt (`first`, when made already) and of the next ones,
        until one is not retriable or the time is up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.broker.config.get_int("request.timeout.ms") / 1000.0
        attempt = 0
        while True:
            if first is None:
                outcome = await self._once(key, local, remote)
            elif isinstance(first, Awaitable):
                outcome = await first
            else:
                outcome = first
            first = None
            if outcome.error not in RETRIABLE or loop.time() >= deadline:
                return outcome
            delay = min(BACKOFF_S * (2**attempt), BACKOFF_MAX_S) * random.uniform(0.8, 1.2)
            attempt += 1
            log.debug("share state of %s: %s; trying again", key, outcome.error.name)
            await asyncio.sleep(max(0.0, min(delay, deadline - loop.time())))

    async def _once(self, key: StateKey, local: Local, remote: Remote) -> Outcome:
        leader = self._leader(key)
        if leader is None or leader == self.broker.config.broker_id:
            # Nobody leads (yet): the local runtime creates the topic or says who should.
            answer = local()
            return await answer if isinstance(answer, Awaitable) else answer
        api_key, request, parse = remote
        try:
            response = await self._inter_broker().call(
                leader, api_key, MAX_VERSIONS[api_key], request
            )
        except (OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError) as exc:
            log.debug("share state request to broker %d failed: %r", leader, exc)
            return Outcome(ErrorCode.NETWORK_EXCEPTION)
        try:
            return parse(response)
        except (IndexError, ValueError):
            return Outcome(ErrorCode.UNKNOWN_SERVER_ERROR, "malformed share-state answer")

    def _inter_broker(self) -> InterBrokerClient:
        if self._client is None:
            cluster = self.broker.cluster
            assert cluster is not None
            self._client = InterBrokerClient(
                f"strom-share-state-{self.broker.config.broker_id}",
                cluster.replicas.endpoint,
                # The coordinator answers once its ISR has the write (offsets.commit.timeout.ms).
                self.broker.config.get_int("offsets.commit.timeout.ms") / 1000.0 + 5.0,
            )
        return self._client


# -- answers ---------------------------------------------------------------------------------


def _code(value: int) -> ErrorCode:
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.UNKNOWN_SERVER_ERROR


def _error_only(response: Any) -> Outcome:
    (p,) = response.results[0].partitions
    return Outcome(_code(p.error_code), p.error_message)


def _read_outcome(response: Any) -> Outcome:
    (p,) = response.results[0].partitions
    if p.error_code:
        return Outcome(_code(p.error_code), p.error_message)
    return Outcome(
        state=ShareState(
            start_offset=p.start_offset,
            state_epoch=p.state_epoch,
            batches=[
                StateBatch(
                    b.first_offset, b.last_offset, _record_state(b.delivery_state), b.delivery_count
                )
                for b in p.state_batches
            ],
        )
    )


def _summary_outcome(response: Any) -> Outcome:
    (p,) = response.results[0].partitions
    if p.error_code:
        return Outcome(_code(p.error_code), p.error_message)
    return Outcome(
        state=ShareState(
            start_offset=p.start_offset,
            state_epoch=p.state_epoch,
            leader_epoch=p.leader_epoch,
            delivery_complete_count=p.delivery_complete_count,
        )
    )


def _record_state(code: int) -> RecordState:
    try:
        return RecordState(code)
    except ValueError:
        return RecordState.AVAILABLE
