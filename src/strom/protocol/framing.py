"""Request and response framing: headers around the generated message bodies.

A frame is the bytes after the 4-byte size prefix. Requests start with a
request header whose layout depends on the request version: v2 (client id plus
tagged fields) when the request version is flexible, v1 (client id) otherwise,
and v0 (no client id) only for ControlledShutdown v0. Responses start with
header v1 (correlation id plus tagged fields) when the response version is
flexible and v0 otherwise, except ApiVersions, whose responses always use v0
so that a client that guessed a too-new version can still read the reply.

`parse_request` succeeds for any frame whose fixed header fields (api key,
version, correlation id, client id) are readable, even for API keys and
versions this codec does not know; `decode_request` is where those are
rejected, with an `UnsupportedVersionError` that carries the correlation id.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

from strom.protocol.errors import ProtocolError, UnsupportedVersionError
from strom.protocol.messages import API_SPECS, ApiSpec, Message
from strom.protocol.primitives import Reader, Writer

__all__ = [
    "API_VERSIONS_KEY",
    "ParsedRequest",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "parse_request",
    "parse_response",
    "request_header_version",
    "response_header_version",
]

API_VERSIONS_KEY: Final = 18
_CONTROLLED_SHUTDOWN_KEY: Final = 7

_FIXED_REQUEST_HEADER = struct.Struct(">hhi")


def request_header_version(api_key: int, api_version: int) -> int:
    """Request header version for a request; unknown keys are assumed v1.

    Versions above the newest known one are assumed flexible when the API has
    flexible versions at all, which is what clients that probe with a newer
    ApiVersions request send.
    """
    spec = API_SPECS.get(api_key)
    if spec is not None and spec.flexible_min is not None and api_version >= spec.flexible_min:
        return 2
    if api_key == _CONTROLLED_SHUTDOWN_KEY and api_version == 0:
        return 0
    return 1


def response_header_version(api_key: int, api_version: int) -> int:
    if api_key == API_VERSIONS_KEY:
        return 0
    spec = API_SPECS.get(api_key)
    if spec is not None and spec.flexible_min is not None and api_version >= spec.flexible_min:
        return 1
    return 0


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A request whose header has been read; `body` is the undecoded rest."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    header_version: int
    body: memoryview

    @property
    def spec(self) -> ApiSpec | None:
        return API_SPECS.get(self.api_key)

    @property
    def supported(self) -> bool:
        """Whether `decode_request` knows this API key and version."""
        spec = API_SPECS.get(self.api_key)
        return spec is not None and spec.min_version <= self.api_version <= spec.max_version


def parse_request(frame: bytes | bytearray | memoryview) -> ParsedRequest:
    """Read the request header of `frame` (the bytes after the size prefix)."""
    reader = Reader(frame)
    if reader.remaining < _FIXED_REQUEST_HEADER.size:
        raise ProtocolError(
            f"request frame of {reader.remaining} bytes is shorter than a request header"
        )
    api_key, api_version, correlation_id = _FIXED_REQUEST_HEADER.unpack_from(
        reader.read_raw(_FIXED_REQUEST_HEADER.size)
    )
    header_version = request_header_version(api_key, api_version)
    client_id: str | None = None
    try:
        if header_version >= 1:
            # The client id keeps its classic encoding even in header v2.
            client_id = reader.read_nullable_string()
        if header_version >= 2:
            reader.skip_tagged_fields()
    except ProtocolError as exc:
        raise ProtocolError(
            f"request header v{header_version} (api key {api_key}, version {api_version}, "
            f"correlation id {correlation_id}): {exc}"
        ) from None
    return ParsedRequest(
        api_key=api_key,
        api_version=api_version,
        correlation_id=correlation_id,
        client_id=client_id,
        header_version=header_version,
        body=reader.read_remaining(),
    )


def decode_request(request: ParsedRequest) -> Any:
    """Decode the body of a parsed request into its generated message class.

    Raises `UnsupportedVersionError` (with the correlation id) for an unknown
    API key or a version outside the generated range, `ProtocolError` for a
    malformed body.
    """
    spec = API_SPECS.get(request.api_key)
    if spec is None:
        raise UnsupportedVersionError(
            f"unknown api key {request.api_key}",
            request.api_key,
            request.api_version,
            request.correlation_id,
        )
    if not spec.min_version <= request.api_version <= spec.max_version:
        raise UnsupportedVersionError(
            f"{spec.name} version {request.api_version} is outside "
            f"{spec.min_version}-{spec.max_version}",
            request.api_key,
            request.api_version,
            request.correlation_id,
        )
    return spec.request.decode(request.body, request.api_version)


def _frame(prefix: Writer, message: Message, version: int) -> list[bytes | memoryview]:
    """Chunks of a whole frame: size prefix, header (in `prefix`), message."""
    body = Writer()
    message.write(body, version)
    header = prefix.getvalue()
    size = len(header) - 4 + body.size
    # The size slot was written as a placeholder; patch it in the small header.
    first = struct.pack(">i", size) + header[4:]
    return [first, *body.chunks]


def encode_response(
    api_key: int, api_version: int, correlation_id: int, response: Message
) -> list[bytes | memoryview]:
    """A complete response frame, 4-byte size prefix included, as chunks."""
    header = Writer()
    header.write_int32(0)
    header.write_int32(correlation_id)
    if response_header_version(api_key, api_version) >= 1:
        header.write_empty_tagged_fields()
    return _frame(header, response, api_version)


def encode_request(
    api_key: int,
    api_version: int,
    correlation_id: int,
    client_id: str | None,
    request: Message,
) -> list[bytes | memoryview]:
    """A complete request frame, 4-byte size prefix included, as chunks."""
    header_version = request_header_version(api_key, api_version)
    header = Writer()
    header.write_int32(0)
    header.write_int16(api_key)
    header.write_int16(api_version)
    header.write_int32(correlation_id)
    if header_version >= 1:
        header.write_nullable_string(client_id)
    if header_version >= 2:
        header.write_empty_tagged_fields()
    return _frame(header, request, api_version)


def parse_response(
    api_key: int, api_version: int, frame: bytes | bytearray | memoryview
) -> tuple[int, memoryview]:
    """Correlation id and undecoded body of a response frame (no size prefix)."""
    reader = Reader(frame)
    correlation_id = reader.read_int32()
    if response_header_version(api_key, api_version) >= 1:
        reader.skip_tagged_fields()
    return correlation_id, reader.read_remaining()


def decode_response(
    api_key: int, api_version: int, frame: bytes | bytearray | memoryview
) -> tuple[int, Any]:
    """Correlation id and decoded response of a response frame (no size prefix)."""
    spec = API_SPECS.get(api_key)
    if spec is None:
        raise UnsupportedVersionError(f"unknown api key {api_key}", api_key, api_version)
    correlation_id, body = parse_response(api_key, api_version, frame)
    return correlation_id, spec.response.decode(body, api_version)
