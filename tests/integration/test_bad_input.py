"""Malformed and hostile requests on raw sockets. Framing violations close the connection;
everything else is answered with an error code; the broker keeps serving other connections."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from .broker_process import BrokerProcess
from .clients import Rec, ck_consume, ck_produce, create_topic
from .conftest import BrokerFactory
from .kafka_wire import (
    API_API_VERSIONS,
    API_PRODUCE,
    BATCH_CRC_OFFSET,
    ERR_CORRUPT_MESSAGE,
    ERR_INVALID_REQUIRED_ACKS,
    ERR_NONE,
    ERR_UNSUPPORTED_VERSION,
    RawRecord,
    api_versions_ok,
    api_versions_request,
    connect,
    frame,
    i16,
    i32,
    metadata_request_v1,
    parse_api_versions_v0,
    parse_metadata_v1,
    parse_produce_v3,
    produce_request_v3,
    record_batch,
    recv_frame,
    request_header,
    roundtrip,
    wait_closed,
)

pytestmark = pytest.mark.integration


def assert_still_serving(b: BrokerProcess) -> None:
    assert b.is_alive(), f"the broker process died\n{b.log_tail()}"
    assert api_versions_ok(b.host, b.port), "a fresh connection no longer gets ApiVersions answered"


def test_api_versions_v0(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker.host, shared_broker.port) as s:
        r = parse_api_versions_v0(roundtrip(s, api_versions_request(correlation_id=42)))
    assert r.correlation_id == 42 and r.error_code == ERR_NONE
    assert r.api_keys[API_API_VERSIONS][0] == 0 and r.api_keys[API_API_VERSIONS][1] >= 3
    lo, hi = r.api_keys[API_PRODUCE]
    assert lo <= 3 <= hi, "Produce v3 (record batch v2) must be supported"


def test_api_versions_unsupported_version(shared_broker: BrokerProcess) -> None:
    """Kafka answers an ApiVersions request of a version it does not know with a v0 body:
    UNSUPPORTED_VERSION and its own ranges, so the client can pick a version."""
    with connect(shared_broker.host, shared_broker.port) as s:
        # A flexible-looking header (v2: client id + empty tagged fields) and some body bytes.
        payload = (
            request_header(API_API_VERSIONS, 99, 5, "future-client") + b"\x00" + b"\x05junk\x00"
        )
        r = parse_api_versions_v0(roundtrip(s, frame(payload)))
        assert r.correlation_id == 5
        assert r.error_code == ERR_UNSUPPORTED_VERSION
        assert API_API_VERSIONS in r.api_keys and API_PRODUCE in r.api_keys
        # The connection stays usable.
        r2 = parse_api_versions_v0(roundtrip(s, api_versions_request(correlation_id=6)))
        assert (r2.correlation_id, r2.error_code) == (6, ERR_NONE)


def test_unknown_api_key_closes_connection(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker.host, shared_broker.port) as s:
        s.sendall(frame(request_header(32000, 0, 1, "x") + b"\x00" * 8))
        assert wait_closed(s), "the broker kept a connection open after an unknown API key"
    assert_still_serving(shared_broker)


def test_unsupported_version_of_other_api_closes_or_errors(shared_broker: BrokerProcess) -> None:
    """Metadata v999: Kafka cannot parse the body and closes the connection."""
    with connect(shared_broker.host, shared_broker.port) as s:
        s.sendall(frame(request_header(3, 999, 1, "x") + b"\x00" * 8))
        assert wait_closed(s)
    assert_still_serving(shared_broker)


def test_truncated_frame_then_close(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker.host, shared_broker.port) as s:
        s.sendall(i32(100) + request_header(API_API_VERSIONS, 0, 1, "x")[:6])
    # And a truncated size prefix alone.
    with connect(shared_broker.host, shared_broker.port) as s:
        s.sendall(b"\x00\x00")
    assert_still_serving(shared_broker)


def test_frame_larger_than_socket_request_max_bytes(shared_broker: BrokerProcess) -> None:
    bystander = connect(shared_broker.host, shared_broker.port)
    try:
        with connect(shared_broker.host, shared_broker.port) as s:
            s.sendall(i32(0x7FFFFFFF) + b"\x00" * 64)
            assert wait_closed(s), "an oversized frame did not close the connection"
        # A connection opened before keeps working.
        r = parse_api_versions_v0(roundtrip(bystander, api_versions_request(correlation_id=9)))
        assert r.correlation_id == 9
    finally:
        bystander.close()
    assert_still_serving(shared_broker)


def test_frame_just_over_small_socket_request_max_bytes(broker_factory: BrokerFactory) -> None:
    b = broker_factory({"socket.request.max.bytes": 4096})
    with connect(b.host, b.port) as s:
        s.sendall(i32(4097) + b"\x00" * 4097)
        assert wait_closed(s)
    with connect(b.host, b.port) as s:  # at the limit: parsed (and answered or refused normally)
        r = parse_api_versions_v0(roundtrip(s, api_versions_request(correlation_id=3)))
        assert r.error_code == ERR_NONE
    assert_still_serving(b)


@pytest.mark.parametrize("size", [-1, 0, 1, 3])
def test_nonsense_sizes(shared_broker: BrokerProcess, size: int) -> None:
    with connect(shared_broker.host, shared_broker.port) as s:
        s.sendall(i32(size) + b"\x01" * max(size, 0))
        assert wait_closed(s), f"size prefix {size} did not close the connection"
    assert_still_serving(shared_broker)


def test_garbage_bytes(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker.host, shared_broker.port) as s:
        s.sendall(os.urandom(4096))
        wait_closed(s, deadline_s=3)  # closed or ignored: both are fine, dying is not
    with connect(shared_broker.host, shared_broker.port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_closed(s)
    assert_still_serving(shared_broker)


def test_client_disconnects_mid_response(shared_broker: BrokerProcess) -> None:
    """Many requests sent, connection reset before reading: the broker shrugs."""
    s = connect(shared_broker.host, shared_broker.port)
    s.sendall(b"".join(metadata_request_v1(None, correlation_id=i) for i in range(200)))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
    s.close()
    assert_still_serving(shared_broker)


def test_pipelined_requests_answered_in_order(shared_broker: BrokerProcess) -> None:
    with connect(shared_broker.host, shared_broker.port) as s:
        reqs = []
        for i in range(20):
            reqs.append(
                api_versions_request(correlation_id=1000 + i)
                if i % 2
                else metadata_request_v1(None, correlation_id=1000 + i)
            )
        s.sendall(b"".join(reqs))
        corr = [struct.unpack(">i", recv_frame(s)[:4])[0] for _ in reqs]
    assert corr == [1000 + i for i in range(20)]


# ================================================================================ produce


@pytest.fixture
def raw_topic(shared_broker: BrokerProcess, topic: str) -> str:
    create_topic(shared_broker.bootstrap, topic, 1)
    return topic


def raw_produce(b: BrokerProcess, topic: str, batch: bytes, acks: int = 1) -> int:
    with connect(b.host, b.port) as s:
        corr, results = parse_produce_v3(
            roundtrip(s, produce_request_v3(topic, 0, batch, acks=acks, correlation_id=77))
        )
    assert corr == 77
    [r] = results
    assert (r.topic, r.partition) == (topic, 0)
    return r.error_code


def test_hand_built_produce_is_readable(shared_broker: BrokerProcess, raw_topic: str) -> None:
    batch = record_batch(
        [RawRecord(b"k1", b"v1", [("h", b"x")]), RawRecord(None, b"v2"), RawRecord(b"k3", None)]
    )
    assert raw_produce(shared_broker, raw_topic, batch) == ERR_NONE
    got = ck_consume(shared_broker.bootstrap, raw_topic, count=3)
    assert [g.kv() for g in got] == [(b"k1", b"v1"), (None, b"v2"), (b"k3", None)]
    assert got[0].headers == (("h", b"x"),)


def test_produce_corrupt_crc(shared_broker: BrokerProcess, raw_topic: str) -> None:
    batch = bytearray(record_batch([RawRecord(b"k", b"v" * 50)]))
    batch[BATCH_CRC_OFFSET] ^= 0x01
    assert raw_produce(shared_broker, raw_topic, bytes(batch)) == ERR_CORRUPT_MESSAGE
    batch = bytearray(record_batch([RawRecord(b"k", b"v" * 50)]))
    batch[-3] ^= 0xFF  # a record byte: the CRC no longer matches the content
    assert raw_produce(shared_broker, raw_topic, bytes(batch)) == ERR_CORRUPT_MESSAGE
    # Nothing was appended; a good record lands at offset 0.
    d = ck_produce(shared_broker.bootstrap, raw_topic, [Rec(b"good", b"one", partition=0)])
    assert d[0].offset == 0


def test_produce_corrupt_kafka_python_batch(shared_broker: BrokerProcess, raw_topic: str) -> None:
    """A batch built by kafka-python's own builder, one byte flipped after the CRC field."""
    from kafka.record.memory_records import MemoryRecordsBuilder

    builder = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20)
    builder.append(timestamp=None, key=b"k", value=b"value", headers=[])
    builder.close()
    batch = bytearray(builder.buffer())
    assert raw_produce(shared_broker, raw_topic, bytes(batch)) == ERR_NONE  # the intact one is fine
    batch[-1] ^= 0x55
    assert raw_produce(shared_broker, raw_topic, bytes(batch)) == ERR_CORRUPT_MESSAGE


@pytest.mark.parametrize(
    "mutate",
    [
        "length-too-long",
        "length-too-short",
        "bad-magic",
        "record-count-too-high",
        "truncated-batch",
    ],
)
def test_produce_malformed_batches(
    shared_broker: BrokerProcess, raw_topic: str, mutate: str
) -> None:
    batch = bytearray(record_batch([RawRecord(b"k", b"v" * 20), RawRecord(b"k2", b"w")]))
    if mutate == "length-too-long":
        batch[8:12] = i32(len(batch))
    elif mutate == "length-too-short":
        batch[8:12] = i32(20)
    elif mutate == "bad-magic":
        batch[16] = 7
    elif mutate == "record-count-too-high":
        batch[57:61] = i32(1000)
    elif mutate == "truncated-batch":
        batch = batch[:40]
    code = raw_produce(shared_broker, raw_topic, bytes(batch))
    assert code != ERR_NONE, f"{mutate}: a malformed batch was accepted"
    assert_still_serving(shared_broker)


def test_produce_invalid_acks(shared_broker: BrokerProcess, raw_topic: str) -> None:
    batch = record_batch([RawRecord(b"k", b"v")])
    assert raw_produce(shared_broker, raw_topic, batch, acks=5) == ERR_INVALID_REQUIRED_ACKS


def test_produce_unknown_topic_and_partition(shared_broker: BrokerProcess, raw_topic: str) -> None:
    batch = record_batch([RawRecord(b"k", b"v")])
    with connect(shared_broker.host, shared_broker.port) as s:
        _, [r] = parse_produce_v3(roundtrip(s, produce_request_v3(raw_topic, 9, batch)))
    assert r.error_code == 3  # UNKNOWN_TOPIC_OR_PARTITION


def test_metadata_v1_lists_broker_and_topic(shared_broker: BrokerProcess, raw_topic: str) -> None:
    with connect(shared_broker.host, shared_broker.port) as s:
        md = parse_metadata_v1(roundtrip(s, metadata_request_v1([raw_topic])))
    assert [(h, p) for _, h, p in md.brokers] == [(shared_broker.host, shared_broker.port)]
    assert md.controller_id == md.brokers[0][0]
    err, parts = md.topics[raw_topic]
    assert err == 0 and [(i, e) for i, e, _ in parts] == [(0, 0)]


def test_client_id_null_and_long(shared_broker: BrokerProcess) -> None:
    for client_id in (None, "c" * 30000):
        with connect(shared_broker.host, shared_broker.port) as s:
            r = parse_api_versions_v0(
                roundtrip(s, frame(request_header(API_API_VERSIONS, 0, 11, client_id)))
            )
        assert (r.correlation_id, r.error_code) == (11, ERR_NONE)


def test_produce_v3_header_with_bad_string_length(shared_broker: BrokerProcess) -> None:
    """A client id whose length runs past the frame: a framing error, the connection closes."""
    with connect(shared_broker.host, shared_broker.port) as s:
        s.sendall(frame(i16(API_PRODUCE) + i16(3) + i32(1) + i16(500) + b"abc"))
        assert wait_closed(s)
    assert_still_serving(shared_broker)
