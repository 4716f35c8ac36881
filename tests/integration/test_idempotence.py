"""Idempotent producers over the wire: a retried batch is written once.

The retry is replayed at the protocol level (the same Produce bytes sent twice on a socket, as
a producer does after losing a response), then read back with a real client; and a real
idempotent producer (confluent-kafka, enable.idempotence=true) writes each record once.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from confluent_kafka import Producer

from strom.protocol.framing import decode_response, encode_request
from strom.protocol.messages.init_producer_id_request import InitProducerIdRequest
from strom.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from strom.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from strom.protocol.records.codec import Record, build_batch

from .broker_process import BrokerProcess
from .clients import ck_consume

pytestmark = pytest.mark.integration

INIT_PRODUCER_ID, METADATA, PRODUCE = 22, 3, 0


class Wire:
    """One connection speaking the Kafka protocol with the project's codecs."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.sock = socket.create_connection(("127.0.0.1", broker.port), timeout=30)
        self.correlation_id = 0

    def send(self, api_key: int, version: int, request: Any) -> bytes:
        self.correlation_id += 1
        frame = b"".join(encode_request(api_key, version, self.correlation_id, "wire", request))
        self.sock.sendall(frame)
        return frame

    def send_raw(self, frame: bytes) -> None:
        self.sock.sendall(frame)

    def receive(self, api_key: int, version: int) -> Any:
        size = struct.unpack(">i", self._read(4))[0]
        _, response = decode_response(api_key, version, self._read(size))
        return response

    def _read(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return bytes(data)

    def close(self) -> None:
        self.sock.close()


def test_retried_idempotent_batch_is_written_once(shared_broker: BrokerProcess, topic: str) -> None:
    wire = Wire(shared_broker)
    try:
        wire.send(
            METADATA,
            9,
            MetadataRequest(
                topics=[MetadataRequestTopic(name=topic)], allow_auto_topic_creation=True
            ),
        )
        wire.receive(METADATA, 9)
        wire.send(
            INIT_PRODUCER_ID,
            4,
            InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=-1),
        )
        init = wire.receive(INIT_PRODUCER_ID, 4)
        assert init.error_code == 0 and init.producer_id >= 0

        def produce_frame(sequence: int, values: list[bytes]) -> bytes:
            batch = build_batch(
                [
                    Record(offset=i, timestamp=1_700_000_000_000 + i, key=b"k", value=v, headers=[])
                    for i, v in enumerate(values)
                ],
                producer_id=init.producer_id,
                producer_epoch=init.producer_epoch,
                base_sequence=sequence,
            )
            request = ProduceRequest(
                acks=-1,
                timeout_ms=30_000,
                topic_data=[
                    TopicProduceData(
                        name=topic, partition_data=[PartitionProduceData(index=0, records=batch)]
                    )
                ],
            )
            return wire.send(PRODUCE, 9, request)

        first = produce_frame(0, [b"a", b"b"])
        original = wire.receive(PRODUCE, 9).responses[0].partition_responses[0]
        assert original.error_code == 0
        # The producer "lost" the response and sends the very same bytes again.
        wire.send_raw(first)
        retried = wire.receive(PRODUCE, 9).responses[0].partition_responses[0]
        assert retried.error_code == 0
        assert retried.base_offset == original.base_offset
        produce_frame(2, [b"c"])
        after = wire.receive(PRODUCE, 9).responses[0].partition_responses[0]
        assert after.error_code == 0 and after.base_offset == original.base_offset + 2
        # A sequence gap is refused.
        produce_frame(7, [b"gap"])
        gap = wire.receive(PRODUCE, 9).responses[0].partition_responses[0]
        assert gap.error_code == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
    finally:
        wire.close()
    values = [m.value for m in ck_consume(shared_broker.bootstrap, topic, count=3)]
    assert values == [b"a", b"b", b"c"]


def test_confluent_idempotent_producer_writes_each_record_once(
    shared_broker: BrokerProcess, topic: str
) -> None:
    producer = Producer(
        {"bootstrap.servers": shared_broker.bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    errors: list[object] = []
    for i in range(500):
        producer.produce(
            topic, value=b"%d" % i, on_delivery=lambda err, _m: errors.append(err) if err else None
        )
    assert producer.flush(60) == 0
    assert errors == []
    values = [m.value for m in ck_consume(shared_broker.bootstrap, topic, count=500)]
    assert values == [b"%d" % i for i in range(500)]
