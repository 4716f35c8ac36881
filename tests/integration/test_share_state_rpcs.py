"""The share-state RPCs (keys 83-87) on the wire against a real broker, as another broker (a
share partition leader or a group coordinator) sends them: initialize, read at a leader epoch
(which fences older leaders), write, summary, delete; and CLUSTER_ACTION with an authorizer."""

from __future__ import annotations

import socket
import struct
import uuid
from typing import Any

import pytest

from strom.coordinator.share.dead_letter import CopyPlan, DeadLetterCopier
from strom.coordinator.share.extension import ShareExtension, TimerState
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.api_versions_request import ApiVersionsRequest
from strom.protocol.messages.api_versions_response import ApiVersionsResponse
from strom.protocol.messages.delete_share_group_state_request import (
    DeleteShareGroupStateRequest,
    DeleteStateData,
)
from strom.protocol.messages.delete_share_group_state_request import (
    PartitionData as DeletePartition,
)
from strom.protocol.messages.delete_share_group_state_response import (
    DeleteShareGroupStateResponse,
)
from strom.protocol.messages.initialize_share_group_state_request import (
    InitializeShareGroupStateRequest,
    InitializeStateData,
)
from strom.protocol.messages.initialize_share_group_state_request import (
    PartitionData as InitPartition,
)
from strom.protocol.messages.initialize_share_group_state_response import (
    InitializeShareGroupStateResponse,
)
from strom.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from strom.protocol.messages.metadata_response import MetadataResponse
from strom.protocol.messages.read_share_group_state_request import (
    PartitionData as ReadPartition,
)
from strom.protocol.messages.read_share_group_state_request import (
    ReadShareGroupStateRequest,
    ReadStateData,
)
from strom.protocol.messages.read_share_group_state_response import ReadShareGroupStateResponse
from strom.protocol.messages.read_share_group_state_summary_request import (
    PartitionData as SummaryPartition,
)
from strom.protocol.messages.read_share_group_state_summary_request import (
    ReadShareGroupStateSummaryRequest,
    ReadStateSummaryData,
)
from strom.protocol.messages.read_share_group_state_summary_response import (
    ReadShareGroupStateSummaryResponse,
)
from strom.protocol.messages.write_share_group_state_request import (
    PartitionData as WritePartition,
)
from strom.protocol.messages.write_share_group_state_request import (
    StateBatch,
    WriteShareGroupStateRequest,
    WriteStateData,
)
from strom.protocol.messages.write_share_group_state_response import WriteShareGroupStateResponse

from .broker_process import BrokerProcess
from .clients import create_topic
from .conftest import BrokerFactory
from .share_helpers import wire

pytestmark = pytest.mark.integration

GROUP = "rpc-group"


def topic_id(broker: BrokerProcess, topic: str) -> uuid.UUID:
    request = MetadataRequest(topics=[MetadataRequestTopic(name=topic)])
    (found,) = wire(broker, 3, 12, request, MetadataResponse).topics
    assert found.error_code == 0
    return found.topic_id


def api_versions(broker: BrokerProcess) -> ApiVersionsResponse:
    """ApiVersions v3 (its response header is v0 whatever the version: no tagged fields)."""
    header = struct.pack(">hhi", 18, 3, 1) + struct.pack(">h", 4) + b"test" + b"\x00"
    payload = header + ApiVersionsRequest("t", "1").encode(3)
    with socket.create_connection((broker.host, broker.port), timeout=30) as sock:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        reader = sock.makefile("rb")
        (size,) = struct.unpack(">i", reader.read(4))
        answer = reader.read(size)
    return ApiVersionsResponse.decode(answer[4:], 3)


def only(response: Any) -> Any:
    (result,) = response.results
    (partition,) = result.partitions
    return partition


class Rpcs:
    def __init__(self, broker: BrokerProcess, tid: uuid.UUID, partition: int = 0) -> None:
        self.broker, self.tid, self.partition = broker, tid, partition

    def initialize(self, state_epoch: int, start: int) -> Any:
        request = InitializeShareGroupStateRequest(
            GROUP,
            [InitializeStateData(self.tid, [InitPartition(self.partition, state_epoch, start)])],
        )
        return only(wire(self.broker, 83, 0, request, InitializeShareGroupStateResponse))

    def read(self, leader_epoch: int) -> Any:
        request = ReadShareGroupStateRequest(
            GROUP, [ReadStateData(self.tid, [ReadPartition(self.partition, leader_epoch)])]
        )
        return only(wire(self.broker, 84, 0, request, ReadShareGroupStateResponse))

    def write(
        self,
        state_epoch: int,
        leader_epoch: int,
        start: int,
        batches: list[StateBatch],
        extension: bytes | None = None,
    ) -> Any:
        partition = WritePartition(
            partition=self.partition,
            state_epoch=state_epoch,
            leader_epoch=leader_epoch,
            start_offset=start,
            state_batches=batches,
            delivery_complete_count=2,
            strom_extension=extension,
        )
        request = WriteShareGroupStateRequest(GROUP, [WriteStateData(self.tid, [partition])])
        return only(wire(self.broker, 85, 1, request, WriteShareGroupStateResponse))

    def summary(self) -> Any:
        request = ReadShareGroupStateSummaryRequest(
            GROUP, [ReadStateSummaryData(self.tid, [SummaryPartition(self.partition, 0)])]
        )
        return only(wire(self.broker, 87, 1, request, ReadShareGroupStateSummaryResponse))

    def delete(self) -> Any:
        request = DeleteShareGroupStateRequest(
            GROUP, [DeleteStateData(self.tid, [DeletePartition(self.partition)])]
        )
        return only(wire(self.broker, 86, 0, request, DeleteShareGroupStateResponse))


def test_share_state_lifecycle_on_the_wire(broker: BrokerProcess, topic: str) -> None:
    create_topic(broker.bootstrap, topic, partitions=2)
    rpc = Rpcs(broker, topic_id(broker, topic))
    versions = api_versions(broker)
    advertised = {k.api_key: (k.min_version, k.max_version) for k in versions.api_keys}
    assert [advertised.get(k) for k in range(83, 88)] == [(0, 0), (0, 0), (0, 1), (0, 0), (0, 1)]

    assert rpc.read(0).error_code == ErrorCode.INVALID_REQUEST  # never initialized
    assert rpc.summary().start_offset == -1
    assert rpc.initialize(3, -1).error_code == 0
    first = rpc.read(5)
    assert (first.error_code, first.state_epoch, first.start_offset) == (0, 3, -1)
    batches = [StateBatch(10, 11, 2, 1), StateBatch(12, 12, 0, 2)]
    assert rpc.write(3, 5, 10, batches).error_code == 0
    got = rpc.read(5)
    assert got.start_offset == 10
    assert [
        (b.first_offset, b.last_offset, b.delivery_state, b.delivery_count)
        for b in got.state_batches
    ] == [
        (10, 11, 2, 1),
        (12, 12, 0, 2),
    ]
    summary = rpc.summary()
    assert (summary.start_offset, summary.leader_epoch, summary.state_epoch) == (10, 5, 3)
    assert summary.delivery_complete_count == 2
    # A newer leader reads: the older one is fenced.
    assert rpc.read(6).error_code == 0
    assert rpc.write(3, 5, 12, []).error_code == ErrorCode.FENCED_LEADER_EPOCH
    assert rpc.read(5).error_code == ErrorCode.FENCED_LEADER_EPOCH
    # Initialized again at a newer state epoch: the state epoch fences.
    assert rpc.initialize(4, 0).error_code == 0
    assert rpc.write(3, 6, 12, []).error_code == ErrorCode.FENCED_STATE_EPOCH
    assert rpc.read(6).start_offset == 0
    # Bad input answers an error, the broker stays up.
    assert rpc.write(4, 6, 1, [StateBatch(5, 4, 0, 1)]).error_code == ErrorCode.INVALID_REQUEST
    assert Rpcs(broker, uuid.uuid4()).read(0).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert Rpcs(broker, rpc.tid, 9).initialize(0, 0).error_code == (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    )
    assert rpc.delete().error_code == 0
    assert rpc.summary().start_offset == -1
    assert rpc.read(6).error_code == ErrorCode.INVALID_REQUEST
    assert rpc.delete().error_code == 0  # nothing left to delete: no error


def test_strom_extension_travels_in_tagged_fields(broker: BrokerProcess, topic: str) -> None:
    """What a share partition keeps beyond Kafka's state (delay index cursor, due records,
    backoffs, the dead-letter plan in flight) is written with WriteShareGroupState and read
    back with ReadShareGroupState in Strom's tagged field, so that a share partition leader on
    another broker than its share coordinator keeps it; a write without the field (as a Kafka
    broker sends) leaves it, an empty one removes it, a malformed one is refused."""
    create_topic(broker.bootstrap, topic, partitions=1)
    rpc = Rpcs(broker, topic_id(broker, topic))
    assert rpc.initialize(0, 0).error_code == 0
    assert rpc.read(1).strom_extension is None
    copier = DeadLetterCopier(producer_id=42, producer_epoch=0, next_sequence=7)
    copier.in_flight = CopyPlan(42, 0, 7, 0, (3, 4))
    extension = ShareExtension(
        timer=TimerState(1_000, 5, 2, 9, b"token"),
        backoff=[(8, 9, 123_456)],
        rejected=[3],
        copier=copier,
    )
    batches = [StateBatch(3, 4, 3, 1), StateBatch(5, 7, 16, 0), StateBatch(8, 9, 0, 1)]
    assert rpc.write(0, 1, 3, batches, extension.encode()).error_code == 0
    got = ShareExtension.decode(rpc.read(1).strom_extension)
    assert got.encode() == extension.encode()
    assert (got.timer, got.copier.in_flight) == (extension.timer, copier.in_flight)
    assert rpc.summary().strom_delayed_records == 9
    # A write without the field keeps the extension; a newer leader reads it.
    assert rpc.write(0, 1, 3, batches).error_code == 0
    assert rpc.read(2).strom_extension == extension.encode()
    assert rpc.write(0, 2, 3, batches, b"\x00\x07").error_code == ErrorCode.INVALID_REQUEST
    assert rpc.read(2).strom_extension == extension.encode()
    assert rpc.write(0, 2, 3, batches, b"").error_code == 0
    assert rpc.read(2).strom_extension is None
    assert rpc.summary().strom_delayed_records == 0


def test_cluster_action_is_required(broker_factory: BrokerFactory) -> None:
    b = broker_factory(
        {
            "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
            "super.users": "User:broker",
        }
    )
    rpc = Rpcs(b, uuid.uuid4())  # refused before anything else is looked at
    assert rpc.initialize(0, 0).error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    assert rpc.read(0).error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    assert rpc.write(0, 0, 0, []).error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    assert rpc.summary().error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    assert rpc.delete().error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
