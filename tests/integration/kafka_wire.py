"""Hand-encoded Kafka requests for the raw-socket tests.

Deliberately independent of `strom.protocol`: these bytes are written from Kafka's protocol
guide (shared/kafka/docs/protocol.html, implementation.html), so a bug in the broker's codec
cannot hide behind the same bug in the test's encoder.
"""

from __future__ import annotations

import socket
import struct
import time
import zlib
from dataclasses import dataclass, field

import crc32c

API_PRODUCE = 0
API_METADATA = 3
API_API_VERSIONS = 18

ERR_NONE = 0
ERR_CORRUPT_MESSAGE = 2
ERR_INVALID_REQUIRED_ACKS = 21
ERR_UNSUPPORTED_VERSION = 35


# --------------------------------------------------------------------------- primitives


def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def nbytes(b: bytes | None) -> bytes:
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v: int) -> bytes:
    """Zig-zag signed varint (64-bit)."""
    return uvarint((v << 1) ^ (v >> 63))


class Cursor:
    """A bounds-checked reader over a response body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(
                f"response truncated: need {n} bytes at {self.pos} of {len(self.data)}"
            )
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def i8(self) -> int:
        return int(struct.unpack(">b", self._take(1))[0])

    def i16(self) -> int:
        return int(struct.unpack(">h", self._take(2))[0])

    def i32(self) -> int:
        return int(struct.unpack(">i", self._take(4))[0])

    def i64(self) -> int:
        return int(struct.unpack(">q", self._take(8))[0])

    def string(self) -> str | None:
        n = self.i16()
        return None if n < 0 else self._take(n).decode()

    def remaining(self) -> int:
        return len(self.data) - self.pos


# --------------------------------------------------------------------------- requests


def request_header(
    api_key: int, api_version: int, correlation_id: int, client_id: str | None
) -> bytes:
    """Request header v1 (non-flexible versions only)."""
    return i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def api_versions_request(correlation_id: int = 1, version: int = 0) -> bytes:
    """ApiVersions v0..v2 have an empty body; we only ever send non-flexible versions, or a
    deliberately unsupported one (whose body the broker must not try to parse)."""
    return frame(request_header(API_API_VERSIONS, version, correlation_id, "strom-it"))


def metadata_request_v1(topics: list[str] | None, correlation_id: int = 1) -> bytes:
    body = i32(-1) if topics is None else i32(len(topics)) + b"".join(string(t) for t in topics)
    return frame(request_header(API_METADATA, 1, correlation_id, "strom-it") + body)


@dataclass
class RawRecord:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


def record_batch(records: list[RawRecord], base_timestamp: int | None = None) -> bytes:
    """An uncompressed record batch v2 with a correct CRC-32C, base offset 0."""
    ts = int(time.time() * 1000) if base_timestamp is None else base_timestamp
    body = bytearray()
    for i, r in enumerate(records):
        rec = bytearray()
        rec += i8(0)  # attributes
        rec += varint(0)  # timestamp delta
        rec += varint(i)  # offset delta
        for part in (r.key, r.value):
            if part is None:
                rec += varint(-1)
            else:
                rec += varint(len(part)) + part
        rec += varint(len(r.headers))
        for hk, hv in r.headers:
            kb = hk.encode()
            rec += varint(len(kb)) + kb
            rec += varint(-1) if hv is None else varint(len(hv)) + hv
        body += varint(len(rec)) + rec
    after_crc = (
        i16(0)  # attributes: no compression, CreateTime, not transactional
        + i32(len(records) - 1)  # last offset delta
        + i64(ts)  # base timestamp
        + i64(ts)  # max timestamp
        + i64(-1)  # producer id
        + i16(-1)  # producer epoch
        + i32(-1)  # base sequence
        + i32(len(records))
        + bytes(body)
    )
    crc = crc32c.crc32c(after_crc)
    after_length = i32(0) + i8(2) + struct.pack(">I", crc) + after_crc  # leader epoch, magic
    return i64(0) + i32(len(after_length)) + after_length


# Byte offset of the CRC field inside a batch, and of the first byte the CRC covers.
BATCH_CRC_OFFSET = 17
BATCH_ATTRIBUTES_OFFSET = 21


def produce_request_v3(
    topic: str,
    partition: int,
    records: bytes,
    acks: int = 1,
    timeout_ms: int = 10_000,
    correlation_id: int = 1,
) -> bytes:
    body = (
        string(None)  # transactional id
        + i16(acks)
        + i32(timeout_ms)
        + i32(1)
        + string(topic)
        + i32(1)
        + i32(partition)
        + nbytes(records)
    )
    return frame(request_header(API_PRODUCE, 3, correlation_id, "strom-it") + body)


# --------------------------------------------------------------------------- responses


@dataclass
class ApiVersionsResponse:
    correlation_id: int
    error_code: int
    api_keys: dict[int, tuple[int, int]]


def parse_api_versions_v0(payload: bytes) -> ApiVersionsResponse:
    c = Cursor(payload)
    corr = c.i32()
    err = c.i16()
    n = c.i32()
    keys: dict[int, tuple[int, int]] = {}
    for _ in range(max(n, 0)):
        k = c.i16()
        keys[k] = (c.i16(), c.i16())
    return ApiVersionsResponse(corr, err, keys)


@dataclass
class ProducePartitionResult:
    topic: str
    partition: int
    error_code: int
    base_offset: int


def parse_produce_v3(payload: bytes) -> tuple[int, list[ProducePartitionResult]]:
    c = Cursor(payload)
    corr = c.i32()
    out: list[ProducePartitionResult] = []
    for _ in range(c.i32()):
        name = c.string() or ""
        for _ in range(c.i32()):
            index = c.i32()
            err = c.i16()
            base = c.i64()
            c.i64()  # log append time
            out.append(ProducePartitionResult(name, index, err, base))
    c.i32()  # throttle time
    return corr, out


@dataclass
class MetadataV1:
    correlation_id: int
    brokers: list[tuple[int, str, int]]
    controller_id: int
    topics: dict[
        str, tuple[int, list[tuple[int, int, int]]]
    ]  # name -> (error, [(partition, error, leader)])


def parse_metadata_v1(payload: bytes) -> MetadataV1:
    c = Cursor(payload)
    corr = c.i32()
    brokers = []
    for _ in range(c.i32()):
        node = c.i32()
        host = c.string() or ""
        port = c.i32()
        c.string()  # rack
        brokers.append((node, host, port))
    controller = c.i32()
    topics: dict[str, tuple[int, list[tuple[int, int, int]]]] = {}
    for _ in range(c.i32()):
        err = c.i16()
        name = c.string() or ""
        c.i8()  # is_internal
        parts = []
        for _ in range(c.i32()):
            perr = c.i16()
            idx = c.i32()
            leader = c.i32()
            for _ in range(c.i32()):
                c.i32()
            for _ in range(c.i32()):
                c.i32()
            parts.append((idx, perr, leader))
        topics[name] = (err, parts)
    return MetadataV1(corr, brokers, controller, topics)


# --------------------------------------------------------------------------- sockets


class ConnectionClosed(Exception):
    pass


def connect(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except (ConnectionResetError, BrokenPipeError) as e:
            raise ConnectionClosed(str(e)) from e
        if not chunk:
            raise ConnectionClosed(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    if size < 0 or size > 64 * 1024 * 1024:
        raise ValueError(f"implausible response size {size}")
    return recv_exact(sock, size)


def roundtrip(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    return recv_frame(sock)


def wait_closed(sock: socket.socket, deadline_s: float = 15.0) -> bool:
    """True when the peer closes (EOF or reset) before the deadline; data received meanwhile
    is discarded. False when the connection is still open at the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        sock.settimeout(max(0.05, min(1.0, end - time.monotonic())))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
        except OSError:
            return True
        if not chunk:
            return True
    return False


def api_versions_ok(host: str, port: int, timeout: float = 5.0) -> bool:
    """One ApiVersions v0 roundtrip on a fresh connection; True when a well-formed answer came."""
    try:
        with connect(host, port, timeout=timeout) as s:
            resp = parse_api_versions_v0(roundtrip(s, api_versions_request(correlation_id=7)))
    except (OSError, ConnectionClosed, ValueError):
        return False
    return (
        resp.correlation_id == 7
        and resp.error_code == ERR_NONE
        and API_API_VERSIONS in resp.api_keys
    )


# --------------------------------------------------------------------------- message format v0/v1

API_FETCH = 1


def legacy_message(
    magic: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    timestamp: int = -1,
    attributes: int = 0,
) -> bytes:
    """One message set entry of message format v0/v1 (offset, size, crc, magic, attributes,
    [timestamp], key, value), CRC-32 over magic to the end, as the protocol guide lays it out."""
    body = i8(magic) + i8(attributes) + (i64(timestamp) if magic == 1 else b"")
    body += nbytes(key) + nbytes(value)
    crc = struct.pack(">I", zlib.crc32(body))
    return i64(offset) + i32(len(body) + 4) + crc + body


def produce_request_v0_2(
    version: int,
    topic: str,
    partition: int,
    records: bytes,
    acks: int = 1,
    correlation_id: int = 1,
) -> bytes:
    """Produce v0-2: no transactional id; the same body in all three."""
    body = i16(acks) + i32(10_000) + i32(1) + string(topic) + i32(1) + i32(partition)
    return frame(
        request_header(API_PRODUCE, version, correlation_id, "strom-it") + body + nbytes(records)
    )


@dataclass
class OldProduceResult:
    error_code: int
    base_offset: int
    log_append_time: int | None


def parse_produce_v0_2(version: int, payload: bytes) -> OldProduceResult:
    c = Cursor(payload)
    c.i32()  # correlation id
    assert c.i32() == 1
    c.string()
    assert c.i32() == 1
    c.i32()  # partition
    err, base = c.i16(), c.i64()
    lat = c.i64() if version >= 2 else None
    return OldProduceResult(err, base, lat)


def fetch_request_v0_3(
    version: int, topic: str, partition: int, offset: int, max_bytes: int = 1 << 20
) -> bytes:
    body = i32(-1) + i32(100) + i32(1) + (i32(1 << 24) if version >= 3 else b"")
    body += i32(1) + string(topic) + i32(1) + i32(partition) + i64(offset) + i32(max_bytes)
    return frame(request_header(API_FETCH, version, 5, "strom-it") + body)


@dataclass
class OldMessage:
    offset: int
    magic: int
    attributes: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None


@dataclass
class OldFetchResult:
    error_code: int
    high_watermark: int
    records: bytes


def parse_fetch_v0_3(version: int, payload: bytes) -> OldFetchResult:
    c = Cursor(payload)
    c.i32()  # correlation id
    if version >= 1:
        c.i32()  # throttle time
    assert c.i32() == 1
    c.string()
    assert c.i32() == 1
    c.i32()  # partition
    err, hw = c.i16(), c.i64()
    size = c.i32()
    return OldFetchResult(err, hw, c._take(size) if size > 0 else b"")


def parse_message_set(data: bytes) -> list[OldMessage]:
    """Shallow entries of a message set (uncompressed messages); CRCs checked."""
    out: list[OldMessage] = []
    c = Cursor(data)
    while c.remaining() >= 12:
        offset, size = c.i64(), c.i32()
        if c.remaining() < size:
            break
        entry = Cursor(c._take(size))
        crc = struct.unpack(">I", entry._take(4))[0]
        assert crc == zlib.crc32(entry.data[4:]), "CRC-32 mismatch"
        magic, attributes = entry.i8(), entry.i8()
        timestamp = entry.i64() if magic == 1 else None
        klen = entry.i32()
        key = entry._take(klen) if klen >= 0 else None
        vlen = entry.i32()
        value = entry._take(vlen) if vlen >= 0 else None
        out.append(OldMessage(offset, magic, attributes, timestamp, key, value))
    return out
