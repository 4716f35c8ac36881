"""Reader/Writer primitives, and generated codecs checked against hand-made bytes."""

from __future__ import annotations

import struct
import uuid

import pytest

from strom.protocol.errors import ErrorCode, ProtocolError, UnsupportedVersionError
from strom.protocol.messages.api_versions_request import ApiVersionsRequest
from strom.protocol.messages.api_versions_response import (
    ApiVersion,
    ApiVersionsResponse,
    FinalizedFeatureKey,
)
from strom.protocol.messages.consumer_group_heartbeat_response import (
    Assignment,
    ConsumerGroupHeartbeatResponse,
)
from strom.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from strom.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)
from strom.protocol.primitives import ZERO_COPY_MIN, ZERO_UUID, Reader, Writer

# -- fixed width ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "encoded"),
    [
        ("int8", -1, b"\xff"),
        ("int8", 127, b"\x7f"),
        ("int16", -2, b"\xff\xfe"),
        ("int32", 1, b"\x00\x00\x00\x01"),
        ("int32", -(1 << 31), b"\x80\x00\x00\x00"),
        ("int64", -1, b"\xff" * 8),
        ("uint16", 65535, b"\xff\xff"),
        ("uint32", 0xFFFFFFFE, b"\xff\xff\xff\xfe"),
        ("float64", 1.5, struct.pack(">d", 1.5)),
        ("bool", True, b"\x01"),
        ("bool", False, b"\x00"),
    ],
)
def test_fixed_width(kind: str, value: object, encoded: bytes) -> None:
    w = Writer()
    getattr(w, f"write_{kind}")(value)
    assert w.getvalue() == encoded
    r = Reader(encoded)
    assert getattr(r, f"read_{kind}")() == value
    assert r.remaining == 0


@pytest.mark.parametrize("kind", ["int8", "int16", "int32", "int64", "uint16", "uint32"])
def test_out_of_range_ints_are_value_errors(kind: str) -> None:
    with pytest.raises(ValueError):
        getattr(Writer(), f"write_{kind}")(1 << 64)


@pytest.mark.parametrize(
    ("kind", "size"),
    [("int8", 1), ("int16", 2), ("int32", 4), ("int64", 8), ("float64", 8), ("uuid", 16)],
)
def test_truncated_fixed_width(kind: str, size: int) -> None:
    r = Reader(b"\x00" * (size - 1))
    with pytest.raises(ProtocolError, match=f"truncated {kind} at offset 0"):
        getattr(r, f"read_{kind}")()


def test_bool_reads_any_nonzero_as_true() -> None:
    assert Reader(b"\x07").read_bool() is True


def test_uuid() -> None:
    u = uuid.UUID("0123456789abcdef0123456789abcdef")
    w = Writer()
    w.write_uuid(u)
    w.write_uuid(ZERO_UUID)
    data = w.getvalue()
    assert data == u.bytes + b"\x00" * 16
    r = Reader(data)
    assert r.read_uuid() == u
    assert r.read_uuid() is ZERO_UUID


# -- varints -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02")],
)
def test_unsigned_varint(value: int, encoded: bytes) -> None:
    w = Writer()
    w.write_uvarint(value)
    assert w.getvalue() == encoded
    assert Reader(encoded).read_uvarint() == value


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (-1, b"\x01"), (1, b"\x02"), (-64, b"\x7f"), (64, b"\x80\x01")],
)
def test_zigzag_varint(value: int, encoded: bytes) -> None:
    w = Writer()
    w.write_varint(value)
    assert w.getvalue() == encoded
    assert Reader(encoded).read_varint() == value


@pytest.mark.parametrize("value", [0, -1, 1, (1 << 63) - 1, -(1 << 63), 1 << 40])
def test_varlong_roundtrip(value: int) -> None:
    w = Writer()
    w.write_varlong(value)
    assert Reader(w.getvalue()).read_varlong() == value


@pytest.mark.parametrize("value", [(1 << 31) - 1, -(1 << 31)])
def test_varint_extremes(value: int) -> None:
    w = Writer()
    w.write_varint(value)
    assert len(w.getvalue()) == 5
    assert Reader(w.getvalue()).read_varint() == value


def test_overlong_varint_rejected() -> None:
    with pytest.raises(ProtocolError, match="unsigned varint longer than 5 bytes at offset"):
        Reader(b"\xff\xff\xff\xff\xff\x01").read_uvarint()
    with pytest.raises(ProtocolError, match="varlong longer than 10 bytes"):
        Reader(b"\xff" * 11).read_varlong()


def test_varint_above_32_bits_rejected() -> None:
    # Five bytes, no continuation on the last, but bits 32..34 set.
    with pytest.raises(ProtocolError, match="does not fit in 32 bits"):
        Reader(b"\xff\xff\xff\xff\x7f").read_uvarint()


def test_truncated_varint() -> None:
    with pytest.raises(ProtocolError, match="truncated unsigned varint"):
        Reader(b"\x80\x80").read_uvarint()
    with pytest.raises(ProtocolError, match="truncated"):
        Reader(b"").read_uvarint()


# -- strings -------------------------------------------------------------------


def test_strings() -> None:
    w = Writer()
    w.write_string("hé")
    w.write_nullable_string(None)
    w.write_compact_string("ab")
    w.write_compact_nullable_string(None)
    w.write_compact_string("")
    data = w.getvalue()
    assert data == b"\x00\x03h\xc3\xa9" + b"\xff\xff" + b"\x03ab" + b"\x00" + b"\x01"
    r = Reader(data)
    assert r.read_string() == "hé"
    assert r.read_nullable_string() is None
    assert r.read_compact_string() == "ab"
    assert r.read_compact_nullable_string() is None
    assert r.read_compact_string() == ""
    assert r.remaining == 0


def test_null_for_non_nullable_string() -> None:
    with pytest.raises(ProtocolError, match="non-nullable string at offset 0"):
        Reader(b"\xff\xff").read_string()
    with pytest.raises(ProtocolError, match="non-nullable compact string"):
        Reader(b"\x00").read_compact_string()


def test_negative_string_length() -> None:
    with pytest.raises(ProtocolError, match="negative string length -2"):
        Reader(b"\xff\xfe").read_nullable_string()


def test_truncated_strings() -> None:
    with pytest.raises(ProtocolError, match="truncated string at offset 2: need 5 bytes, 2 remain"):
        Reader(b"\x00\x05ab").read_string()
    with pytest.raises(ProtocolError, match="truncated string at offset 1"):
        Reader(b"\x06ab").read_compact_string()


def test_malformed_utf8() -> None:
    with pytest.raises(ProtocolError, match=r"malformed UTF-8 in string \(.*\) at offset 3"):
        Reader(b"\x00\x02a\xff").read_string()


def test_string_too_long_for_int16() -> None:
    with pytest.raises(ValueError):
        Writer().write_string("x" * 40000)


# -- bytes, records, chunks ----------------------------------------------------


def test_bytes_and_null() -> None:
    w = Writer()
    w.write_bytes(b"ab")
    w.write_nullable_bytes(None)
    w.write_compact_bytes(b"c")
    w.write_compact_nullable_bytes(None)
    data = w.getvalue()
    assert data == b"\x00\x00\x00\x02ab" + b"\xff\xff\xff\xff" + b"\x02c" + b"\x00"
    r = Reader(data)
    assert r.read_bytes() == b"ab"
    assert r.read_nullable_bytes() is None
    assert r.read_compact_bytes() == b"c"
    assert r.read_compact_nullable_bytes() is None


def test_negative_bytes_length() -> None:
    with pytest.raises(ProtocolError, match="negative bytes length -5"):
        Reader(b"\xff\xff\xff\xfb").read_nullable_bytes()
    with pytest.raises(ProtocolError, match="non-nullable bytes"):
        Reader(b"\xff\xff\xff\xff").read_bytes()


def test_records_are_zero_copy_slices() -> None:
    frame = bytearray(b"\x00\x00\x00\x03xyz!")
    r = Reader(memoryview(frame))
    records = r.read_nullable_records()
    assert isinstance(records, memoryview)
    assert records.obj is frame
    assert records == b"xyz"
    assert r.read_raw(1) == b"!"


def test_truncated_records() -> None:
    with pytest.raises(ProtocolError, match="truncated records at offset 4: need 100 bytes"):
        Reader(b"\x00\x00\x00\x64abc").read_nullable_records()


def test_writer_keeps_large_payloads_as_chunks() -> None:
    payload = memoryview(bytes(range(256)) * (ZERO_COPY_MIN // 256 + 1))
    w = Writer()
    w.write_int16(7)
    w.write_nullable_records(payload)
    w.write_int8(1)
    chunks = w.chunks
    assert len(chunks) == 3
    assert chunks[1] is payload
    assert w.size == 2 + 4 + len(payload) + 1
    assert w.getvalue() == b"\x00\x07" + struct.pack(">i", len(payload)) + payload + b"\x01"


def test_writer_copies_small_payloads() -> None:
    w = Writer()
    w.write_nullable_records(b"abc")
    assert w.chunks == [b"\x00\x00\x00\x03abc"]


def test_writer_extend() -> None:
    inner = Writer()
    inner.write_raw(b"z" * ZERO_COPY_MIN)
    inner.write_int8(2)
    outer = Writer()
    outer.write_int8(1)
    outer.extend(inner)
    assert outer.size == 2 + ZERO_COPY_MIN
    assert outer.getvalue() == b"\x01" + b"z" * ZERO_COPY_MIN + b"\x02"


# -- arrays --------------------------------------------------------------------


def test_array_count_larger_than_remaining_bytes() -> None:
    with pytest.raises(
        ProtocolError, match=r"array of 2147483647 elements but only 1 bytes remain"
    ):
        Reader(b"\x7f\xff\xff\xff\x00").read_array_length()
    with pytest.raises(ProtocolError, match="array of 4294967294 elements"):
        Reader(b"\xff\xff\xff\xff\x0f\x00").read_compact_array_length()


def test_null_arrays() -> None:
    assert Reader(b"\xff\xff\xff\xff").read_nullable_array_length() == -1
    assert Reader(b"\x00").read_compact_nullable_array_length() == -1
    with pytest.raises(ProtocolError, match="non-nullable array"):
        Reader(b"\xff\xff\xff\xff").read_array_length()
    with pytest.raises(ProtocolError, match="negative array length -3"):
        Reader(b"\xff\xff\xff\xfd").read_nullable_array_length()


def test_fixed_width_arrays() -> None:
    w = Writer()
    w.write_int32s([1, -1])
    w.write_int64s([5])
    data = w.getvalue()
    assert data == b"\x00\x00\x00\x01\xff\xff\xff\xff" + b"\x00" * 7 + b"\x05"
    r = Reader(data)
    assert r.read_int32s(2) == [1, -1]
    assert r.read_int64s(1) == [5]
    with pytest.raises(ProtocolError, match="truncated int32 array"):
        Reader(b"\x00\x00\x00").read_int32s(1)


def test_skip_tagged_fields() -> None:
    r = Reader(b"\x02\x00\x01\xaa\x05\x02\xbb\xcc\x09")
    r.skip_tagged_fields()
    assert r.read_int8() == 9
    with pytest.raises(ProtocolError, match="truncated skipped field"):
        Reader(b"\x01\x00\x05\xaa").skip_tagged_fields()


def test_sub_reader_offsets_are_absolute() -> None:
    r = Reader(b"\x00\x00\x00\x01\x02")
    r.skip(3)
    sub = r.sub_reader(2)
    sub.read_int8()
    with pytest.raises(ProtocolError, match="at offset 4"):
        sub.read_int16()


# -- generated codecs against hand-computed bytes ------------------------------


def test_api_versions_request_v3_bytes() -> None:
    request = ApiVersionsRequest(client_software_name="strom", client_software_version="1.0")
    expected = b"\x06strom" + b"\x041.0" + b"\x00"
    assert request.encode(3) == expected
    assert ApiVersionsRequest.decode(expected, 3) == request
    # v0-v2 have no fields at all.
    assert request.encode(2) == b""


def test_api_versions_response_v3_with_tagged_field() -> None:
    response = ApiVersionsResponse(
        error_code=0,
        api_keys=[ApiVersion(api_key=18, min_version=0, max_version=4)],
        throttle_time_ms=0,
        finalized_features_epoch=5,
        finalized_features=[
            FinalizedFeatureKey(name="a", max_version_level=1, min_version_level=1)
        ],
    )
    expected = (
        b"\x00\x00"  # error_code
        + b"\x02"  # compact array of 1
        + b"\x00\x12\x00\x00\x00\x04\x00"  # api_key, min, max, no tagged fields
        + b"\x00\x00\x00\x00"  # throttle_time_ms
        + b"\x02"  # two tagged fields, in tag order
        + b"\x01\x08"
        + b"\x00\x00\x00\x00\x00\x00\x00\x05"  # tag 1: epoch
        + b"\x02\x08"
        + b"\x02\x02a\x00\x01\x00\x01\x00"  # tag 2: finalized features
    )
    assert response.encode(3) == expected
    assert ApiVersionsResponse.decode(expected, 3) == response
    # v0 has neither throttle time nor tagged fields.
    assert response.encode(0) == b"\x00\x00" + b"\x00\x00\x00\x01" + b"\x00\x12\x00\x00\x00\x04"


def test_unknown_tagged_fields_are_skipped() -> None:
    body = b"\x00\x00" + b"\x01" + b"\x00\x00\x00\x00" + b"\x01" + b"\x63\x02\xaa\xbb"
    decoded = ApiVersionsResponse.decode(body, 3)
    assert decoded == ApiVersionsResponse()


def test_metadata_request_v1_bytes() -> None:
    request = MetadataRequest(
        topics=[MetadataRequestTopic(name="a"), MetadataRequestTopic(name="bc")]
    )
    expected = b"\x00\x00\x00\x02" + b"\x00\x01a" + b"\x00\x02bc"
    assert request.encode(1) == expected
    assert MetadataRequest.decode(expected, 1) == request
    # null topics means "all topics" from v1 on.
    assert MetadataRequest(topics=None).encode(1) == b"\xff\xff\xff\xff"
    assert MetadataRequest.decode(b"\xff\xff\xff\xff", 1).topics is None


def test_metadata_request_null_not_allowed_in_v0() -> None:
    with pytest.raises(ProtocolError, match="non-nullable array"):
        MetadataRequest.decode(b"\xff\xff\xff\xff", 0)
    with pytest.raises(ValueError, match="version 0 does not allow"):
        MetadataRequest(topics=None).encode(0)


def test_metadata_request_v12_bytes() -> None:
    topic_id = uuid.UUID(int=1)
    request = MetadataRequest(
        topics=[MetadataRequestTopic(topic_id=topic_id, name=None)],
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=True,
    )
    expected = (
        b"\x02"  # compact array of 1
        + topic_id.bytes
        + b"\x00"  # null compact string (nullable from v10)
        + b"\x00"  # topic tagged fields
        + b"\x00"  # allow_auto_topic_creation
        + b"\x01"  # include_topic_authorized_operations
        + b"\x00"  # tagged fields
    )
    assert request.encode(12) == expected
    assert MetadataRequest.decode(expected, 12) == request


def test_produce_request_v3_bytes() -> None:
    records = b"R" * 5
    request = ProduceRequest(
        transactional_id=None,
        acks=-1,
        timeout_ms=1000,
        topic_data=[
            TopicProduceData(
                name="t", partition_data=[PartitionProduceData(index=0, records=records)]
            )
        ],
    )
    expected = (
        b"\xff\xff"  # null transactional id
        + b"\xff\xff"  # acks
        + b"\x00\x00\x03\xe8"
        + b"\x00\x00\x00\x01\x00\x01t"
        + b"\x00\x00\x00\x01\x00\x00\x00\x00"
        + b"\x00\x00\x00\x05RRRRR"
    )
    assert request.encode(3) == expected
    decoded = ProduceRequest.decode(expected, 3)
    assert decoded == request
    assert isinstance(decoded.topic_data[0].partition_data[0].records, memoryview)


def test_nullable_struct_marker() -> None:
    present = ConsumerGroupHeartbeatResponse(assignment=Assignment())
    absent = ConsumerGroupHeartbeatResponse(assignment=None)
    # The struct is preceded by an int8: 1 when present, -1 when null.
    prefix = absent.encode(0)[:-2]
    assert absent.encode(0) == prefix + b"\xff\x00"
    assert present.encode(0) == prefix + b"\x01\x01\x00\x00"
    assert ConsumerGroupHeartbeatResponse.decode(present.encode(0), 0) == present
    assert ConsumerGroupHeartbeatResponse.decode(absent.encode(0), 0) == absent


def test_fields_absent_in_version_keep_defaults() -> None:
    request = ProduceRequest(transactional_id="tx", acks=1)
    decoded = ProduceRequest.decode(request.encode(2), 2)
    assert decoded.transactional_id is None
    assert decoded.acks == 1


def test_decode_rejects_trailing_bytes_and_bad_versions() -> None:
    with pytest.raises(ProtocolError, match="1 unexpected bytes"):
        ApiVersionsRequest.decode(b"\x00", 0)
    with pytest.raises(UnsupportedVersionError) as info:
        ApiVersionsRequest.decode(b"", 99)
    assert info.value.api_key == 18
    assert info.value.api_version == 99


def test_decode_errors_name_the_message() -> None:
    with pytest.raises(ProtocolError, match=r"^ProduceRequest v3: truncated int16 at offset 2"):
        ProduceRequest.decode(b"\xff\xff\x00", 3)


def test_error_codes() -> None:
    assert ErrorCode.UNKNOWN_SERVER_ERROR == -1
    assert ErrorCode.NONE == 0
    assert ErrorCode.UNKNOWN_TOPIC_OR_PARTITION == 3
    assert ErrorCode.NOT_LEADER_OR_FOLLOWER == 6
    assert ErrorCode.UNSUPPORTED_VERSION == 35
    assert ErrorCode.TRANSACTION_ABORTABLE == 120
    codes = [e.value for e in ErrorCode]
    assert codes == list(range(-1, max(codes) + 1))
