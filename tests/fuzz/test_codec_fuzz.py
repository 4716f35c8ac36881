"""Malformed bytes against every generated codec: only ProtocolError may escape.

Inputs are derived deterministically (seeded per class and version) from valid
encodings: every truncation point, byte mutations aimed at length prefixes,
and plain random bytes. Targeted cases check that a tiny frame claiming a huge
length costs no memory.
"""

from __future__ import annotations

import contextlib
import random
import string
import tracemalloc
import uuid
import zlib
from typing import Any

import pytest

from strom.protocol.errors import ProtocolError
from strom.protocol.framing import decode_request, parse_request
from strom.protocol.messages import FieldSpec, message_classes
from strom.protocol.messages.api_versions_request import ApiVersionsRequest
from strom.protocol.messages.metadata_request import MetadataRequest
from strom.protocol.messages.produce_request import ProduceRequest

pytestmark = pytest.mark.fuzz

INT_RANGES = {
    "int8": (-(1 << 7), (1 << 7) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "uint16": (0, (1 << 16) - 1),
    "uint32": (0, (1 << 32) - 1),
}

# Values that make a length prefix or count hostile when written over one.
HOSTILE = [
    b"\x7f\xff\xff\xff",
    b"\xff\xff\xff\xff",
    b"\x80\x00\x00\x00",
    b"\xff\xfe",
    b"\x7f\xff",
    b"\xff\xff\xff\xff\x0f",
    b"\xff\xff\xff\xff\xff\xff",
    b"\xc3\x28",  # invalid UTF-8
]


def scalar(kind: str, rng: random.Random) -> Any:
    if kind in INT_RANGES:
        lo, hi = INT_RANGES[kind]
        return rng.choice([0, -1 if lo < 0 else 1, rng.randint(lo, hi)])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "float64":
        return rng.uniform(-1e9, 1e9)
    if kind == "string":
        return "".join(rng.choices(string.ascii_letters + "é", k=rng.randint(0, 5)))
    if kind in ("bytes", "records"):
        return rng.randbytes(rng.randint(0, 6))
    if kind == "uuid":
        return uuid.UUID(int=rng.getrandbits(128))
    raise AssertionError(kind)


def sample(cls: type[Any], version: int, rng: random.Random) -> Any:
    kwargs: dict[str, Any] = {}
    for spec in cls.FIELDS:
        if spec.present_in(version):
            kwargs[spec.name] = sample_field(spec, version, rng)
    return cls(**kwargs)


def sample_field(spec: FieldSpec, version: int, rng: random.Random) -> Any:
    if spec.nullable_in(version) and rng.random() < 0.2:
        return None
    kind = spec.kind
    if kind == "struct":
        assert spec.struct is not None
        return sample(spec.struct, version, rng)
    if kind == "[]struct":
        assert spec.struct is not None
        return [sample(spec.struct, version, rng) for _ in range(rng.randint(0, 2))]
    if kind.startswith("[]"):
        return [scalar(kind[2:], rng) for _ in range(rng.randint(0, 3))]
    return scalar(kind, rng)


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    op = rng.randrange(5)
    pos = rng.randrange(len(buf) + 1)
    if op == 0 and buf:
        buf[min(pos, len(buf) - 1)] = rng.randrange(256)
    elif op == 1:
        hostile = rng.choice(HOSTILE)
        buf[pos : pos + len(hostile)] = hostile
    elif op == 2:
        buf[pos:pos] = rng.randbytes(rng.randint(1, 3))
    elif op == 3 and buf:
        del buf[pos : pos + rng.randint(1, 3)]
    else:
        buf[pos:pos] = rng.choice(HOSTILE)
    return bytes(buf)


def inputs_for(cls: type[Any], version: int) -> list[bytes]:
    rng = random.Random(zlib.crc32(cls.__name__.encode()) * 100 + version)
    seeds = [cls().encode(version)]
    seeds += [sample(cls, version, rng).encode(version) for _ in range(2)]
    out: list[bytes] = []
    for seed in seeds:
        cuts = range(len(seed)) if len(seed) <= 48 else rng.sample(range(len(seed)), 48)
        out += [seed[:cut] for cut in cuts]
        out += [mutate(seed, rng) for _ in range(25)]
    out += [rng.randbytes(rng.randint(0, 40)) for _ in range(10)]
    return out


def check_decode(cls: type[Any], version: int, data: bytes) -> None:
    try:
        message = cls.decode(data, version)
    except ProtocolError:
        return
    except Exception as exc:  # pragma: no cover - this is the failure being looked for
        pytest.fail(f"{cls.__name__} v{version} raised {exc!r} on {data.hex()}")
    # Whatever decodes must encode again (within the protocol's own limits).
    message.encode(version)


CASES = [
    (cls, version)
    for cls in sorted(message_classes(), key=lambda c: c.__name__)
    for version in range(cls.MIN_VERSION, cls.MAX_VERSION + 1)
]


@pytest.mark.parametrize(("cls", "version"), CASES, ids=[f"{c.__name__}-v{v}" for c, v in CASES])
def test_malformed_bodies_raise_only_protocol_error(cls: type[Any], version: int) -> None:
    for data in inputs_for(cls, version):
        check_decode(cls, version, data)


def test_random_request_frames() -> None:
    rng = random.Random(7)
    keys = [0, 1, 3, 18, 19, 9999]
    for _ in range(3000):
        header = (
            rng.choice(keys).to_bytes(2, "big", signed=True)
            + rng.randint(-1, 20).to_bytes(2, "big", signed=True)
            + rng.randbytes(4)
        )
        frame = header + rng.randbytes(rng.randint(0, 30))
        if rng.random() < 0.5:
            frame = mutate(frame, rng)
        with contextlib.suppress(ProtocolError):
            decode_request(parse_request(frame))


def peak_bytes(fn: Any) -> int:
    tracemalloc.start()
    try:
        fn()
    except ProtocolError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize(
    "body",
    [
        b"\x7f\xff\xff\xff\x00",  # classic array of 2^31-1 topics
        b"\x80\x00\x00\x00\x00",  # negative count
        b"\xff\xff\xff\xff\x0f",  # compact count 2^32-2 with nothing after it
    ],
)
def test_huge_array_claim_costs_nothing(body: bytes) -> None:
    for version in (1, 9):
        with pytest.raises(ProtocolError):
            MetadataRequest.decode(body, version)
        assert peak_bytes(lambda v=version: MetadataRequest.decode(body, v)) < 64 * 1024


def test_huge_array_in_a_request_frame() -> None:
    # Metadata v1 request header (client id null) followed by a 2^31-1 topic claim.
    frame = b"\x00\x03\x00\x01\x00\x00\x00\x01\xff\xff" + b"\x7f\xff\xff\xff\x00"
    parsed = parse_request(frame)
    with pytest.raises(ProtocolError, match="array of 2147483647 elements"):
        decode_request(parsed)
    assert peak_bytes(lambda: decode_request(parse_request(frame))) < 64 * 1024


def test_huge_records_claim_costs_nothing() -> None:
    # Produce v3: null transactional id, acks, timeout, one topic "t", one
    # partition claiming 2 GB of records.
    body = (
        b"\xff\xff\x00\x01\x00\x00\x00\x10"
        + b"\x00\x00\x00\x01\x00\x01t"
        + b"\x00\x00\x00\x01\x00\x00\x00\x00"
        + b"\x7f\xff\xff\xff"
    )
    with pytest.raises(ProtocolError, match="truncated records"):
        ProduceRequest.decode(body, 3)
    assert peak_bytes(lambda: ProduceRequest.decode(body, 3)) < 64 * 1024


def test_truncated_compact_string() -> None:
    with pytest.raises(ProtocolError, match="truncated string"):
        ApiVersionsRequest.decode(b"\x06str", 3)


def test_bad_varint_length() -> None:
    with pytest.raises(ProtocolError, match="longer than 5 bytes"):
        ApiVersionsRequest.decode(b"\xff\xff\xff\xff\xff\xff", 3)


def test_huge_tagged_field_count() -> None:
    # ApiVersions v3: two empty compact strings, then 2^32-1 tagged fields claimed.
    body = b"\x01\x01" + b"\xff\xff\xff\xff\x0f"
    with pytest.raises(ProtocolError, match="truncated unsigned varint"):
        ApiVersionsRequest.decode(body, 3)
    assert peak_bytes(lambda: ApiVersionsRequest.decode(body, 3)) < 64 * 1024
