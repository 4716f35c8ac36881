"""The controller's requests to the brokers: building them, choosing the endpoint, and the
per-broker channel (order, reconnecting, bounded queue) against a real TCP peer that speaks
the Kafka protocol with Strom's codecs."""

from __future__ import annotations

import asyncio
import struct
import uuid

from strom.cluster.ids import kafka_uuid_str
from strom.cluster.zk.context import PartitionUpdate
from strom.cluster.zk.controller_channel import (
    EPOCH_DURING_DELETE,
    ChannelConfig,
    ControllerChannelManager,
    _versioned_stop_replica,
    controller_endpoint,
    leader_and_isr_request,
    stop_replica_request,
)
from strom.cluster.zk.layout import BrokerRegistration, Endpoint, PartitionState, TopicPartition
from strom.protocol.framing import decode_request, encode_response, parse_request
from strom.protocol.messages.leader_and_isr_request import LeaderAndIsrRequest
from strom.protocol.messages.leader_and_isr_response import LeaderAndIsrResponse
from strom.protocol.messages.stop_replica_request import StopReplicaRequest
from strom.protocol.primitives import Reader, Writer
from strom.server.handlers.api_versions import supported_api_versions

TOPIC_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")
CONFIG = ChannelConfig("CONTROL_PLANE", "PLAINTEXT")


def _update(topic: str, partition: int, leader: int, version: int) -> PartitionUpdate:
    return PartitionUpdate(
        TopicPartition(topic, partition),
        kafka_uuid_str(TOPIC_ID),
        (1, 2, 3),
        PartitionState(leader, 4, (1, 2), controller_epoch=7),
        version,
    )


def _registration(broker_id: int, *endpoints: Endpoint) -> BrokerRegistration:
    return BrokerRegistration(broker_id, endpoints)


def test_endpoint_is_the_control_plane_else_the_inter_broker_listener() -> None:
    plain = Endpoint("PLAINTEXT", "h", 1)
    control = Endpoint("CONTROL_PLANE", "h", 2)
    other = Endpoint("CLIENTS", "h", 3)
    assert controller_endpoint(_registration(1, plain, control), CONFIG) == control
    assert controller_endpoint(_registration(1, other, plain), CONFIG) == plain
    assert controller_endpoint(_registration(1, other), CONFIG) is None
    no_control = ChannelConfig(None, "PLAINTEXT")
    assert controller_endpoint(_registration(1, plain, control), no_control) == plain


def _roundtrip(request: LeaderAndIsrRequest, version: int) -> LeaderAndIsrRequest:
    writer = Writer()
    request.write(writer, version)
    return LeaderAndIsrRequest.read(Reader(writer.getvalue()), version)


def test_leader_and_isr_request_carries_the_states() -> None:
    updates = [_update("b", 0, 2, 9), _update("a", 1, 1, 3), _update("a", 0, 3, 5)]
    leaders = {1: Endpoint("PLAINTEXT", "h1", 9091), 2: Endpoint("PLAINTEXT", "h2", 9092)}
    request = _roundtrip(leader_and_isr_request(1, 7, 42, updates, leaders), 7)
    assert (request.controller_id, request.controller_epoch, request.broker_epoch) == (1, 7, 42)
    assert not request.is_kraft_controller
    assert [t.topic_name for t in request.topic_states] == ["a", "b"]
    assert all(t.topic_id == TOPIC_ID for t in request.topic_states)
    a0, a1 = request.topic_states[0].partition_states
    assert (a0.partition_index, a0.leader, a0.partition_epoch) == (0, 3, 5)
    assert (a1.partition_index, a1.leader, a1.partition_epoch) == (1, 1, 3)
    assert (a0.leader_epoch, a0.isr, a0.replicas, a0.controller_epoch) == (4, [1, 2], [1, 2, 3], 7)
    # Leader 3 has no known endpoint: only the known live leaders are listed.
    assert [(x.broker_id, x.host_name, x.port) for x in request.live_leaders] == [
        (1, "h1", 9091),
        (2, "h2", 9092),
    ]
    # v0-1 list the partitions ungrouped, each with its topic.
    old = _roundtrip(leader_and_isr_request(1, 7, 42, updates, leaders), 1)
    assert [(p.topic_name, p.partition_index) for p in old.ungrouped_partition_states] == [
        ("a", 0),
        ("a", 1),
        ("b", 0),
    ]


def test_stop_replica_request_for_deletion() -> None:
    tps = [TopicPartition("t", 1), TopicPartition("t", 0), TopicPartition("u", 0)]
    request = stop_replica_request(1, 7, 42, tps, delete=True)
    assert [t.topic_name for t in request.topic_states] == ["t", "u"]
    states = request.topic_states[0].partition_states
    assert [(p.partition_index, p.leader_epoch, p.delete_partition) for p in states] == [
        (0, EPOCH_DURING_DELETE, True),
        (1, EPOCH_DURING_DELETE, True),
    ]
    legacy = _versioned_stop_replica(stop_replica_request(1, 7, 42, tps, delete=True), 1)
    writer = Writer()
    legacy.write(writer, 1)
    decoded = StopReplicaRequest.read(Reader(writer.getvalue()), 1)
    assert decoded.delete_partitions
    assert [(t.name, t.partition_indexes) for t in decoded.topics] == [("t", [0, 1]), ("u", [0])]


class _Peer:
    """A broker's listener reduced to what the channel needs: ApiVersions and LeaderAndIsr.
    The first LeaderAndIsr on the first connection is dropped with the connection."""

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = self.connections == 1
        try:
            while True:
                (size,) = struct.unpack(">i", await reader.readexactly(4))
                parsed = parse_request(await reader.readexactly(size))
                request = decode_request(parsed)
                if parsed.api_key == 18:
                    response: object = supported_api_versions()
                else:
                    assert isinstance(request, LeaderAndIsrRequest)
                    if first:
                        return  # lost with the connection: the channel must send it again
                    self.epochs.append(request.controller_epoch)
                    response = LeaderAndIsrResponse()
                chunks = encode_response(
                    parsed.api_key, parsed.api_version, parsed.correlation_id, response
                )
                writer.write(b"".join(chunks))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def _wait(condition: object, deadline_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not condition():  # type: ignore[operator]
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.01)


def test_channel_sends_in_order_and_resends_after_a_lost_connection() -> None:
    async def run() -> None:
        peer = _Peer()
        port = await peer.start()
        manager = ControllerChannelManager(
            1, ChannelConfig("CONTROL_PLANE", "PLAINTEXT", reconnect_backoff_ms=10)
        )
        try:
            registration = _registration(
                2,
                Endpoint("PLAINTEXT", "127.0.0.1", 1),
                Endpoint("CONTROL_PLANE", "127.0.0.1", port),
            )
            manager.add_broker(2, registration, epoch=5)
            manager.add_broker(1, _registration(1, Endpoint("PLAINTEXT", "h", 9)), epoch=3)
            assert set(manager.channels) == {2}  # never a channel to itself
            update = _update("t", 0, 1, 1)
            for epoch in (1, 2, 3):
                manager.send_leader_and_isr(epoch, {update.tp: update})
            # A broker not among the replicas gets nothing.
            elsewhere = PartitionUpdate(
                TopicPartition("t", 1), None, (1, 3), PartitionState(1, 0, (1,), 4), 0
            )
            manager.send_leader_and_isr(4, {elsewhere.tp: elsewhere})
            await _wait(lambda: len(peer.epochs) == 3)
            assert peer.epochs == [1, 2, 3]
            assert peer.connections == 2
            # The peer counts a request before answering it: the head leaves the queue once
            # the channel has read the answer.
            await _wait(lambda: not manager.channels[2].queue)
        finally:
            await manager.close()
            await peer.stop()

    asyncio.run(run())


def test_queue_is_bounded_and_a_removed_broker_drops_it() -> None:
    async def run() -> None:
        config = ChannelConfig(
            None, "PLAINTEXT", reconnect_backoff_ms=60_000, max_queued_requests=2
        )
        manager = ControllerChannelManager(1, config)
        # Nothing listens on port 1: the head stays queued.
        manager.add_broker(2, _registration(2, Endpoint("PLAINTEXT", "127.0.0.1", 1)), epoch=5)
        update = _update("t", 0, 1, 1)
        for epoch in (1, 2, 3):
            manager.send_leader_and_isr(epoch, {update.tp: update})
        queue = manager.channels[2].queue
        assert [item.what for item in queue] == [
            "LeaderAndIsr (1 partition(s), controller epoch 2)",
            "LeaderAndIsr (1 partition(s), controller epoch 3)",
        ]
        manager.remove_broker(2)
        assert not manager.channels
        await manager.close()

    asyncio.run(run())
