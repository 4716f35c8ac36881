"""Records the broker writes on its own behalf, through the normal produce path.

Used for share groups' dead-letter copies (strom.runtime.dead_letter_runtime). The batch goes
through the Produce handler with acks=all, so it is validated, checked against its producer's
state (an idempotent batch sent again is answered as the duplicate it is) and, in a cluster,
replicated before it counts: on this broker when it leads the partition, else as a Produce
request to the leader over the inter-broker listener.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from strom.protocol.messages.produce_response import ProduceResponse
from strom.replication.broker_client import InterBrokerClient

if TYPE_CHECKING:
    from strom.server.broker import Broker

__all__ = ["InternalProducer"]

PRODUCE = 0
PRODUCE_VERSION = 9  # the newest that names topics (v13 names them by id)


class InternalProducer:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._client: InterBrokerClient | None = None

    async def produce(self, topic: str, partition: int, batch: bytes, timeout_ms: int) -> ErrorCode:
        """Append one batch (acks=all); the partition's error code."""
        request = ProduceRequest(
            transactional_id=None,
            acks=-1,
            timeout_ms=timeout_ms,
            topic_data=[TopicProduceData(topic, [PartitionProduceData(partition, batch)])],
        )
        cluster = self.broker.cluster
        if cluster is not None and not cluster.replicas.is_leader(topic, partition):
            state = cluster.metadata.state(topic, partition)
            if state is None or state.state.leader < 0:
                return ErrorCode.LEADER_NOT_AVAILABLE
            if self._client is None:
                self._client = InterBrokerClient(
                    f"strom-dead-letters-{self.broker.config.broker_id}",
                    cluster.replicas.endpoint,
                    timeout_ms / 1000.0 + 5.0,
                )
            response = await self._client.call(
                state.state.leader, PRODUCE, PRODUCE_VERSION, request
            )
            assert isinstance(response, ProduceResponse)
            return _code(response)
        # Imported here: the handlers and the request context import the broker, which
        # builds this producer.
        from strom.server.context import RequestContext
        from strom.server.handlers.produce import handle_produce

        ctx = RequestContext(
            broker=self.broker,
            api_key=PRODUCE,
            api_version=PRODUCE_VERSION,
            correlation_id=0,
            client_id="strom-dead-letters",
            peer="internal",
            frame=bytearray(),
        )
        answer = handle_produce(ctx, request)
        if isinstance(answer, Awaitable):
            answer = await answer
        assert answer is not None
        return _code(answer)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


def _code(response: ProduceResponse) -> ErrorCode:
    for topic in response.responses:
        for p in topic.partition_responses:
            return ErrorCode(p.error_code)
    return ErrorCode.UNKNOWN_SERVER_ERROR
