"""Seeded mutation fuzzing of a live `strom serve` process.

Valid requests (hand-encoded, independent of strom's codec) are mutated: flipped bytes,
truncated or extended bodies, swapped API keys and versions, random bodies for every API key,
lying size prefixes, raw noise. After a bounded number of frames the broker must still be
running, answer ApiVersions on a fresh connection, take records from a real client and give
them back, and its log must hold no traceback (bad input is answered with an error code or a
closed connection, never an unexpected exception).

The helpers live in tests/integration (this file is also an integration test).
"""

from __future__ import annotations

import random
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from integration.broker_process import BrokerProcess
from integration.clients import Rec, ck_consume, ck_produce, create_topic
from integration.kafka_wire import (
    RawRecord,
    api_versions_ok,
    api_versions_request,
    connect,
    frame,
    i16,
    i32,
    metadata_request_v1,
    produce_request_v3,
    record_batch,
    recv_frame,
    request_header,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

FRAMES_PER_SEED = 150
SEEDS = [20240601, 7]
RESPONSE_DEADLINE_S = 3.0
SENTINEL_BASE = 0x5EED0000


@pytest.fixture
def fuzz_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    b = BrokerProcess(tmp_path / "fuzz", {"socket.request.max.bytes": 1 << 20}, name="fuzz-broker")
    try:
        b.start()
        b.wait_ready()
        yield b
    finally:
        b.stop()


def seeds_corpus(topic: str) -> list[bytes]:
    """Valid request payloads (without the size prefix)."""
    batch = record_batch(
        [RawRecord(b"k", b"value", [("h", b"1")]), RawRecord(None, b"v2"), RawRecord(b"k3", None)]
    )
    return [
        api_versions_request(correlation_id=1)[4:],
        metadata_request_v1(None, correlation_id=2)[4:],
        metadata_request_v1([topic], correlation_id=3)[4:],
        produce_request_v3(topic, 0, batch, acks=1, correlation_id=4)[4:],
        produce_request_v3(topic, 0, batch, acks=-1, correlation_id=5)[4:],
    ]


def mutate(rng: random.Random, payload: bytes) -> tuple[bytes, bool]:
    """One mutated frame and whether its size prefix is honest (so a reply may follow)."""
    p = bytearray(payload)
    kind = rng.randrange(9)
    if kind == 0:  # flip a few bytes anywhere
        for _ in range(rng.randint(1, 8)):
            p[rng.randrange(len(p))] ^= rng.randrange(1, 256)
    elif kind == 1:  # truncate the body
        p = p[: rng.randrange(len(p))]
    elif kind == 2:  # extend with noise
        p += rng.randbytes(rng.randint(1, 64))
    elif kind == 3:  # insert or delete a span
        i = rng.randrange(len(p))
        if rng.random() < 0.5:
            p[i:i] = rng.randbytes(rng.randint(1, 16))
        else:
            del p[i : i + rng.randint(1, 16)]
    elif kind == 4:  # another API key and version, same body
        p[0:4] = i16(rng.randrange(0, 80)) + i16(rng.randrange(0, 20))
    elif kind == 5:  # a random body for any API key and version
        p = bytearray(
            request_header(rng.randrange(0, 80), rng.randrange(0, 18), 9, "fuzz")
            + rng.randbytes(rng.randint(0, 200))
        )
    elif kind == 6:  # a size prefix that lies upwards: the broker waits, we hang up
        return i32(len(p) + rng.randint(1, 5000)) + bytes(p), False
    elif kind == 7:  # noise instead of a frame
        return rng.randbytes(rng.randint(1, 300)), False
    else:  # extreme values in the numeric fields after the header
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(8, max(9, len(p) - 4))
            p[i : i + 4] = rng.choice([i32(-1), i32(0x7FFFFFFF), i32(-0x80000000), i32(0)])
    return frame(bytes(p)), True


def exchange(
    b: BrokerProcess, sock: socket.socket | None, data: bytes, honest: bool, n: int
) -> tuple[socket.socket | None, str]:
    """Send one fuzzed frame; for honest frames follow with an ApiVersions sentinel and read
    until its answer (responses come in request order), a close, or the deadline."""
    if sock is None:
        sock = connect(b.host, b.port)
    sentinel = SENTINEL_BASE + n
    try:
        sock.sendall(data + (api_versions_request(correlation_id=sentinel) if honest else b""))
    except OSError:
        sock.close()
        return None, "closed"
    if not honest:
        sock.close()
        return None, "hung-up"
    end = time.monotonic() + RESPONSE_DEADLINE_S
    try:
        while time.monotonic() < end:
            sock.settimeout(max(0.05, end - time.monotonic()))
            body = recv_frame(sock)
            if len(body) >= 4 and struct.unpack(">i", body[:4])[0] == sentinel:
                return sock, "answered"
    except TimeoutError:
        pass
    except Exception:  # closed, reset or an implausible size: the connection is done
        sock.close()
        return None, "closed"
    sock.close()
    return None, "timeout"


def check_alive(b: BrokerProcess, after: int) -> None:
    assert b.is_alive(), f"broker died after {after} fuzzed frames\n{b.log_tail()}"
    assert api_versions_ok(b.host, b.port), (
        f"ApiVersions unanswered after {after} fuzzed frames\n{b.log_tail()}"
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_mutated_requests_do_not_break_the_broker(fuzz_broker: BrokerProcess, seed: int) -> None:
    b = fuzz_broker
    topic = f"fuzz-{seed}"
    create_topic(b.bootstrap, topic, 1)
    rng = random.Random(seed)
    corpus = seeds_corpus(topic)
    outcomes: Counter[str] = Counter()
    sock: socket.socket | None = None
    try:
        for n in range(FRAMES_PER_SEED):
            data, honest = mutate(rng, rng.choice(corpus))
            sock, outcome = exchange(b, sock, data, honest, n)
            outcomes[outcome] += 1
            if n % 50 == 49:
                check_alive(b, n + 1)
    finally:
        if sock is not None:
            sock.close()
    check_alive(b, FRAMES_PER_SEED)
    assert outcomes["answered"] > 0, f"no fuzzed request was ever answered: {dict(outcomes)}"

    # A real client still works end to end.
    after = f"after-fuzz-{seed}"
    ck_produce(
        b.bootstrap,
        after,
        [Rec(f"k{i}".encode(), f"v{i}".encode(), partition=0) for i in range(10)],
    )
    got = ck_consume(b.bootstrap, after, count=10)
    assert [g.value for g in got] == [f"v{i}".encode() for i in range(10)]
    assert b.is_alive()
    log = b.log_text()
    i = log.find("Traceback")
    assert i < 0, (
        f"the broker logged a traceback during fuzzing (outcomes {dict(outcomes)}):\n{log[max(0, i - 500) : i + 3000]}"
    )


def test_every_api_key_and_version_with_random_bodies(fuzz_broker: BrokerProcess) -> None:
    """Every (api key, version) the broker advertises gets three random bodies."""
    from integration.kafka_wire import parse_api_versions_v0, roundtrip

    b = fuzz_broker
    with connect(b.host, b.port) as s:
        advertised = parse_api_versions_v0(roundtrip(s, api_versions_request())).api_keys
    rng = random.Random(1234)
    sock: socket.socket | None = None
    n = 0
    outcomes: Counter[str] = Counter()
    try:
        for key, (lo, hi) in sorted(advertised.items()):
            for version in range(lo, hi + 1):
                for _ in range(3):
                    body = rng.randbytes(rng.choice([0, 1, 5, 20, 100]))
                    data = frame(request_header(key, version, 9, "fuzz") + body)
                    sock, outcome = exchange(b, sock, data, True, n)
                    outcomes[outcome] += 1
                    n += 1
    finally:
        if sock is not None:
            sock.close()
    check_alive(b, n)
    log = b.log_text()
    i = log.find("Traceback")
    assert i < 0, (
        f"the broker logged a traceback ({dict(outcomes)}):\n{log[max(0, i - 500) : i + 3000]}"
    )
