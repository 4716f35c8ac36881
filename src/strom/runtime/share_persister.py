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
from types import ModuleType
from typing import TYPE_CHECKING

from strom.coordinator.share.coordinator import (
    Outcome,
    StateKey,
    StateWrite,
    coordinator_key,
)
from strom.protocol.errors import ErrorCode, ProtocolError
from strom.replication.broker_client import InterBrokerClient
from strom.runtime.share_coordinator_runtime import SHARE_STATE_TOPIC

if TYPE_CHECKING:
    from strom.runtime.host import BrokerHost
    from strom.runtime.share_coordinator_runtime import ShareCoordinatorRuntime
    from strom.runtime.share_state_requests import ShareStateRequest

__all__ = ["RETRIABLE", "SharePersister"]

log = logging.getLogger("strom.share")

BACKOFF_S = 0.1
BACKOFF_MAX_S = 1.0

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
# The request for another broker, built from the module of requests (imported on first use:
# a single broker never needs it).
Remote = Callable[[ModuleType], "ShareStateRequest"]


class SharePersister:
    def __init__(self, broker: BrokerHost, coordinator: ShareCoordinatorRuntime) -> None:
        self.broker = broker
        self.coordinator = coordinator
        self._client: InterBrokerClient | None = None

    # -- the operations --------------------------------------------------------------------

    def initialize(
        self, key: StateKey, state_epoch: int, start_offset: int
    ) -> Outcome | Awaitable[Outcome]:
        return self._call(
            key,
            lambda: self.coordinator.initialize(key, state_epoch, start_offset),
            lambda rq: rq.initialize(key, state_epoch, start_offset),
        )

    def read(self, key: StateKey, leader_epoch: int) -> Outcome | Awaitable[Outcome]:
        return self._call(
            key,
            lambda: self.coordinator.read(key, leader_epoch),
            lambda rq: rq.read(key, leader_epoch),
        )

    def write(self, key: StateKey, write: StateWrite) -> Outcome | Awaitable[Outcome]:
        return self._call(
            key, lambda: self.coordinator.write_state(key, write), lambda rq: rq.write(key, write)
        )

    def delete(self, key: StateKey) -> Outcome | Awaitable[Outcome]:
        return self._call(key, lambda: self.coordinator.delete(key), lambda rq: rq.delete(key))

    def summary(self, key: StateKey) -> Outcome | Awaitable[Outcome]:
        return self._call(key, lambda: self.coordinator.summary(key), lambda rq: rq.summary(key))

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
        if versioned is None or versioned.state.leader < 0:  # no leader
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
        from strom.runtime import share_state_requests

        api_key, request, parse = remote(share_state_requests)
        try:
            response = await self._inter_broker().call(
                leader, api_key, share_state_requests.MAX_VERSIONS[api_key], request
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
