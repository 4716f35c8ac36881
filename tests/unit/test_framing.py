"""Request header parsing and response framing, against hand-computed bytes."""

from __future__ import annotations

import struct

import pytest

from strom.protocol.errors import ProtocolError, UnsupportedVersionError
from strom.protocol.framing import (
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    parse_request,
    parse_response,
    request_header_version,
    response_header_version,
)
from strom.protocol.messages import API_SPECS
from strom.protocol.messages.api_versions_request import ApiVersionsRequest
from strom.protocol.messages.api_versions_response import ApiVersion, ApiVersionsResponse
from strom.protocol.messages.metadata_request import MetadataRequest
from strom.protocol.messages.metadata_response import MetadataResponse
from strom.protocol.messages.produce_request import (
    PartitionProduceData,
    ProduceRequest,
    TopicProduceData,
)


def join(chunks: list[bytes | memoryview]) -> bytes:
    return b"".join(chunks)


def test_header_versions() -> None:
    assert request_header_version(18, 2) == 1
    assert request_header_version(18, 3) == 2
    # A too-new ApiVersions probe is still read with the flexible header.
    assert request_header_version(18, 99) == 2
    assert request_header_version(7, 0) == 0
    assert request_header_version(7, 1) == 1
    assert request_header_version(9999, 0) == 1
    assert response_header_version(3, 8) == 0
    assert response_header_version(3, 9) == 1
    assert response_header_version(18, 4) == 0


def test_parse_request_header_v1() -> None:
    frame = b"\x00\x03\x00\x01\x00\x00\x00\x2a\x00\x03cli" + b"\xff\xff\xff\xff"
    parsed = parse_request(frame)
    assert (parsed.api_key, parsed.api_version, parsed.correlation_id) == (3, 1, 42)
    assert parsed.client_id == "cli"
    assert parsed.header_version == 1
    assert parsed.body == b"\xff\xff\xff\xff"
    assert decode_request(parsed) == MetadataRequest(topics=None)


def test_parse_request_header_v2_skips_tagged_fields() -> None:
    body = b"\x06strom\x041.0\x00"
    frame = (
        b"\x00\x12\x00\x03\x00\x00\x00\x07"
        + b"\xff\xff"  # null client id, classic encoding even in header v2
        + b"\x01\x05\x01\x99"  # one unknown tagged field
        + body
    )
    parsed = parse_request(frame)
    assert parsed.client_id is None
    assert parsed.header_version == 2
    assert parsed.body == body
    assert decode_request(parsed) == ApiVersionsRequest("strom", "1.0")


def test_unknown_api_key_still_yields_correlation_id() -> None:
    parsed = parse_request(b"\x27\x0f\x00\x00\x00\x00\x00\x05\x00\x00junk")
    assert parsed.correlation_id == 5
    assert not parsed.supported
    with pytest.raises(UnsupportedVersionError) as info:
        decode_request(parsed)
    assert info.value.correlation_id == 5
    assert info.value.api_key == 9999


def test_unsupported_version_still_yields_correlation_id() -> None:
    frame = b"\x00\x12\x00\x63\x00\x00\x00\x09\x00\x01c\x00" + b"whatever"
    parsed = parse_request(frame)
    assert parsed.correlation_id == 9
    assert parsed.client_id == "c"
    with pytest.raises(UnsupportedVersionError) as info:
        decode_request(parsed)
    assert (info.value.api_version, info.value.correlation_id) == (99, 9)


def test_short_request_header() -> None:
    with pytest.raises(ProtocolError, match="shorter than a request header"):
        parse_request(b"\x00\x12\x00")
    with pytest.raises(ProtocolError, match="correlation id 1"):
        parse_request(b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x09ab")


def test_api_versions_response_uses_header_v0() -> None:
    response = ApiVersionsResponse(api_keys=[ApiVersion(18, 0, 4)])
    frame = join(encode_response(18, 3, 77, response))
    body = response.encode(3)
    assert frame == struct.pack(">ii", 4 + len(body), 77) + body


def test_flexible_response_uses_header_v1() -> None:
    response = MetadataResponse()
    frame = join(encode_response(3, 12, 1, response))
    body = response.encode(12)
    assert frame == struct.pack(">ii", 5 + len(body), 1) + b"\x00" + body
    frame_v8 = join(encode_response(3, 8, 1, response))
    assert frame_v8 == struct.pack(">ii", 4 + len(response.encode(8)), 1) + response.encode(8)


def test_response_frame_keeps_records_zero_copy() -> None:
    from strom.protocol.messages.fetch_response import (
        FetchableTopicResponse,
        FetchResponse,
        PartitionData,
    )

    records = memoryview(b"x" * 4096)
    response = FetchResponse(
        responses=[FetchableTopicResponse(partitions=[PartitionData(records=records)])]
    )
    chunks = encode_response(1, 16, 3, response)
    assert any(chunk is records for chunk in chunks)
    frame = join(chunks)
    (size,) = struct.unpack_from(">i", frame)
    assert size == len(frame) - 4
    correlation_id, decoded = decode_response(1, 16, frame[4:])
    assert correlation_id == 3
    assert decoded == response


def test_request_roundtrip_through_frames() -> None:
    request = ProduceRequest(
        acks=1,
        timeout_ms=5,
        topic_data=[TopicProduceData("t", [PartitionProduceData(0, b"abc")])],
    )
    for version in (3, 9, 11):
        frame = join(encode_request(0, version, 11, "me", request))
        (size,) = struct.unpack_from(">i", frame)
        assert size == len(frame) - 4
        parsed = parse_request(frame[4:])
        assert (parsed.api_key, parsed.api_version, parsed.correlation_id) == (0, version, 11)
        assert parsed.client_id == "me"
        assert decode_request(parsed) == request


def test_parse_response_header_v1() -> None:
    correlation_id, body = parse_response(3, 12, b"\x00\x00\x00\x02\x00rest")
    assert correlation_id == 2
    assert body == b"rest"


def test_api_specs_cover_request_response_pairs() -> None:
    produce = API_SPECS[0]
    assert produce.name == "Produce"
    assert produce.request is ProduceRequest
    assert produce.response.__name__ == "ProduceResponse"
    assert (produce.min_version, produce.max_version) == (0, 13)
    assert produce.flexible_min == 9
    assert produce.deprecated_max == 6
    for key, spec in API_SPECS.items():
        assert spec.api_key == key
        assert key == spec.request.API_KEY
        assert key == spec.response.API_KEY
        assert spec.max_version == spec.request.MAX_VERSION
