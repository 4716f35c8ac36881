"""APIs Kafka 3.9 answers that brokers and controllers send each other, on a single broker
(their cluster paths are in tests/cluster/test_cluster_old_versions.py): FindCoordinator v6,
AddPartitionsToTxn v4-5 (several transactions, verify_only), and what a broker without a
controller answers to UpdateMetadata, AllocateProducerIds and AlterPartition."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from strom.config import BrokerConfig
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.add_partitions_to_txn_request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
    AddPartitionsToTxnTransaction,
)
from strom.protocol.messages.add_partitions_to_txn_response import AddPartitionsToTxnResponse
from strom.protocol.messages.allocate_producer_ids_request import AllocateProducerIdsRequest
from strom.protocol.messages.alter_partition_request import AlterPartitionRequest
from strom.protocol.messages.envelope_request import EnvelopeRequest
from strom.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from strom.protocol.messages.init_producer_id_request import InitProducerIdRequest
from strom.protocol.messages.update_metadata_request import UpdateMetadataRequest
from strom.server.broker import Broker
from strom.server.context import RequestContext
from strom.server.handlers.add_partitions_to_txn import handle_add_partitions_to_txn
from strom.server.handlers.allocate_producer_ids import handle_allocate_producer_ids
from strom.server.handlers.alter_partition import handle_alter_partition
from strom.server.handlers.envelope import handle_envelope
from strom.server.handlers.find_coordinator import handle_find_coordinator
from strom.server.handlers.init_producer_id import handle_init_producer_id
from strom.server.handlers.update_metadata import handle_update_metadata
from strom.server.registry import CloseConnection

TOPIC = "t"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker.open(BrokerConfig.load(None, {"log.dirs": str(tmp_path / "data")}))
    b.create_topic(TOPIC, 3)
    yield b
    b.txns.close()
    b.groups.close()
    b.share_state.close()
    b.logs.close()
    b.io.shutdown(wait=True)


def ctx(broker: Broker, api_key: int, version: int) -> RequestContext:
    return RequestContext(broker, api_key, version, 1, "test", "127.0.0.1:1", bytearray())


async def answer(result: Any) -> Any:
    return await result if isinstance(result, Awaitable) else result


def test_find_coordinator_share_key(broker: Broker) -> None:
    def lookup(version: int, key_type: int, key: str = "k") -> tuple[int, int]:
        request = FindCoordinatorRequest(key=key, key_type=key_type, coordinator_keys=[key])
        response = handle_find_coordinator(ctx(broker, 10, version), request)
        if version >= 4:
            (found,) = response.coordinators
            return found.error_code, found.node_id
        return response.error_code, response.node_id

    # Key type 2 asks for the share coordinator of "group:topicId:partition" (KIP-932).
    assert lookup(6, 2, "g:AAAAAAAAAAAAAAAAAAAAAA:0") == (ErrorCode.NONE, broker.node.node_id)
    assert lookup(6, 2) == (ErrorCode.INVALID_REQUEST, -1)  # not a share-partition key
    assert lookup(5, 2) == (ErrorCode.INVALID_REQUEST, -1)
    assert lookup(3, 2) == (ErrorCode.INVALID_REQUEST, -1)
    assert lookup(6, 3) == (ErrorCode.INVALID_REQUEST, -1)
    assert lookup(6, 0) == (ErrorCode.NONE, broker.node.node_id)


def _transaction(
    txn_id: str, pid: int, epoch: int, partitions: list[tuple[str, int]], verify_only: bool
) -> AddPartitionsToTxnTransaction:
    topics: dict[str, list[int]] = {}
    for topic, p in partitions:
        topics.setdefault(topic, []).append(p)
    return AddPartitionsToTxnTransaction(
        transactional_id=txn_id,
        producer_id=pid,
        producer_epoch=epoch,
        verify_only=verify_only,
        topics=[AddPartitionsToTxnTopic(name, ps) for name, ps in topics.items()],
    )


def _codes(response: AddPartitionsToTxnResponse) -> dict[str, dict[tuple[str, int], int]]:
    return {
        r.transactional_id: {
            (t.name, p.partition_index): p.partition_error_code
            for t in r.topic_results
            for p in t.results_by_partition
        }
        for r in response.results_by_transaction
    }


def test_add_partitions_to_txn_v4_v5_batches_and_verifies(broker: Broker) -> None:
    async def run() -> None:
        ids = {}
        for txn_id in ("a", "b"):
            init = InitProducerIdRequest(transactional_id=txn_id, transaction_timeout_ms=60_000)
            response = await answer(handle_init_producer_id(ctx(broker, 22, 4), init))
            assert response.error_code == ErrorCode.NONE
            ids[txn_id] = (response.producer_id, response.producer_epoch)

        async def send(version: int, *transactions: AddPartitionsToTxnTransaction) -> Any:
            request = AddPartitionsToTxnRequest(transactions=list(transactions))
            response = await answer(handle_add_partitions_to_txn(ctx(broker, 24, version), request))
            encoded = response.encode(version)
            return _codes(AddPartitionsToTxnResponse.decode(encoded, version))

        (a_pid, a_epoch), (b_pid, b_epoch) = ids["a"], ids["b"]
        t0, t1, t2 = (TOPIC, 0), (TOPIC, 1), (TOPIC, 2)
        # Two transactions in one request: each added on its own; the one naming a missing
        # partition adds nothing (OPERATION_NOT_ATTEMPTED for its others).
        added = await send(
            4,
            _transaction("a", a_pid, a_epoch, [t0, t1], verify_only=False),
            _transaction("b", b_pid, b_epoch, [t2, ("nope", 0)], verify_only=False),
        )
        assert added == {
            "a": {t0: 0, t1: 0},
            "b": {t2: ErrorCode.OPERATION_NOT_ATTEMPTED, ("nope", 0): 3},
        }
        # Verification: in the transaction or not; wrong epoch or id fail every partition.
        for version in (4, 5):
            verified = await send(
                version,
                _transaction("a", a_pid, a_epoch, [t0, t2], verify_only=True),
                _transaction("b", b_pid, b_epoch, [t2], verify_only=True),
            )
            assert verified == {
                "a": {t0: ErrorCode.NONE, t2: ErrorCode.TRANSACTION_ABORTABLE},
                "b": {t2: ErrorCode.TRANSACTION_ABORTABLE},
            }
        fenced = await send(
            5,
            _transaction("a", a_pid, a_epoch + 1, [t0], verify_only=True),
            _transaction("b", a_pid, b_epoch, [t0], verify_only=True),
            _transaction("c", 99, 0, [t0], verify_only=True),
        )
        assert fenced == {
            "a": {t0: ErrorCode.PRODUCER_FENCED},
            "b": {t0: ErrorCode.INVALID_PRODUCER_ID_MAPPING},
            "c": {t0: ErrorCode.INVALID_PRODUCER_ID_MAPPING},
        }
        # Verifying adds nothing: "b" still has no partition after being asked about t2.
        again = await send(5, _transaction("b", b_pid, b_epoch, [t2], verify_only=True))
        assert again == {"b": {t2: ErrorCode.TRANSACTION_ABORTABLE}}

    asyncio.run(run())


def test_single_broker_has_no_controller(broker: Broker) -> None:
    async def run() -> None:
        update = await answer(handle_update_metadata(ctx(broker, 6, 8), UpdateMetadataRequest()))
        assert update.error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
        ids = await answer(
            handle_allocate_producer_ids(ctx(broker, 67, 0), AllocateProducerIdsRequest(0, 1))
        )
        assert ids.error_code == ErrorCode.NOT_CONTROLLER
        alter = await answer(handle_alter_partition(ctx(broker, 56, 3), AlterPartitionRequest()))
        assert alter.error_code == ErrorCode.NOT_CONTROLLER

    asyncio.run(run())


def test_envelope_closes_the_connection(broker: Broker) -> None:
    with pytest.raises(CloseConnection, match="forwarding is not enabled"):
        handle_envelope(ctx(broker, 58, 0), EnvelopeRequest())
