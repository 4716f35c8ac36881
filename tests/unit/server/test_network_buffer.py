"""The receive path: frames intact through any split into reads, memory reserved only for
large frames and grown as their bytes arrive, oversized frames refused, and connections that
wait for memory or for their responses not read meanwhile."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.server.memory_pool import MemoryPool
from strom.server.network import (
    MAX_IN_FLIGHT_PER_CONNECTION,
    RECEIVE_BUFFER_BYTES,
    SMALL_FRAME_BYTES,
    KafkaConnection,
    NetworkShared,
)


class Sink:
    """Records frames; optionally answers later (a future per frame, resolved by the test)."""

    def __init__(self, answer_later: bool = False) -> None:
        self.frames: list[bytes] = []
        self.answer_later = answer_later
        self.futures: list[asyncio.Future[Any]] = []
        self.opened = 0
        self.closed = 0

    def connection_opened(self, conn: Any) -> bool:
        self.opened += 1
        return True

    def connection_closed(self, conn: Any) -> None:
        self.closed += 1

    def dispatch(self, conn: KafkaConnection, frame: bytearray) -> None:
        self.frames.append(bytes(frame))
        if self.answer_later:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self.futures.append(fut)
            conn.respond_later(fut)
        else:
            conn.respond_now(None)


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.aborted = False
        self.closing = False
        self.written: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing or self.aborted

    def writelines(self, chunks: Any) -> None:
        self.written.extend(bytes(c) for c in chunks)


def feed(conn: KafkaConnection, data: bytes, max_read: int | None = None) -> int:
    """What the transport does: recv_into the offered buffer, then report the byte count.
    Stops (returning what is left) while the connection has reading paused."""
    transport = conn._transport
    while data and not (isinstance(transport, Transport) and transport.paused):
        buf = conn.get_buffer(-1)
        n = min(len(buf), len(data), max_read or len(data))
        buf[:n] = data[:n]
        del buf
        conn.buffer_updated(n)
        data = data[n:]
    return len(data)


def frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def connection(
    pool_bytes: int = 64 << 20, max_request: int = 10 << 20, answer_later: bool = False
) -> tuple[KafkaConnection, Sink, Transport, MemoryPool]:
    pool = MemoryPool(pool_bytes)
    shared = NetworkShared(pool=pool, max_request_bytes=max_request, max_unsent_bytes=64 << 20)
    sink = Sink(answer_later)
    conn = KafkaConnection(sink, shared)  # type: ignore[arg-type]
    transport = Transport()
    conn.connection_made(transport)
    return conn, sink, transport, pool


def test_idle_connection_holds_no_buffer_of_its_own() -> None:
    conn, sink, _, pool = connection()
    feed(conn, frame(b"x" * 100))
    assert sink.frames == [b"x" * 100]
    assert conn.receiving_bytes == 0 and conn._tail == b""
    assert pool.used == 0


def test_many_small_frames_split_anywhere_arrive_whole() -> None:
    conn, sink, _, pool = connection()
    bodies = [bytes([i % 256]) * (1000 + 37 * i) for i in range(200)]
    feed(conn, b"".join(frame(b) for b in bodies), max_read=7777)
    assert sink.frames == bodies
    assert pool.used == 0


def test_frame_larger_than_the_receive_buffer_arrives_whole() -> None:
    conn, sink, _, pool = connection()
    body = bytes(range(256)) * 4000  # ~1 MB, four times the shared buffer
    feed(conn, frame(b"a") + frame(body) + frame(b"z"))
    assert sink.frames == [b"a", body, b"z"]
    assert pool.used == 0


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3 * RECEIVE_BUFFER_BYTES), min_size=1, max_size=5),
    read=st.sampled_from([1, 3, 4, 5, 4093, 65536, RECEIVE_BUFFER_BYTES, 2 * RECEIVE_BUFFER_BYTES]),
)
def test_any_frames_any_read_sizes(sizes: list[int], read: int) -> None:
    if read < 10:  # byte-at-a-time reads: small frames only, or the test takes minutes
        sizes = [s % 3000 for s in sizes]
    conn, sink, _, pool = connection()
    bodies = [bytes([i + 1]) * size for i, size in enumerate(sizes)]
    left = feed(conn, b"".join(frame(b) for b in bodies), max_read=read)
    assert left == 0
    assert sink.frames == bodies
    assert pool.used == 0


def test_announced_size_is_not_allocated_up_front() -> None:
    conn, sink, _, pool = connection(max_request=100 << 20, pool_bytes=200 << 20)
    size = 100 << 20
    feed(conn, struct.pack(">i", size) + b"\1" * 1000)
    # Announcing costs nothing until the first SMALL_FRAME_BYTES have arrived.
    assert pool.used == 0 and conn.receiving_bytes == 0
    feed(conn, b"\1" * SMALL_FRAME_BYTES)
    # The reservation covers the announced size; the buffer only what arrived (and a little).
    assert pool.used == size
    assert conn.receiving_bytes == size
    assert conn._big is not None and len(conn._big) <= 1 << 20
    feed(conn, b"\1" * (3 << 20))
    assert conn._big is not None and len(conn._big) <= 8 << 20
    assert sink.frames == []


def test_connection_waits_for_memory_and_gets_it_when_released() -> None:
    conn1, sink1, _, pool = connection(pool_bytes=1 << 20)
    shared = conn1._shared
    sink2 = Sink()
    conn2 = KafkaConnection(sink2, shared)  # type: ignore[arg-type]
    t2 = Transport()
    conn2.connection_made(t2)
    big = b"\2" * (700 * 1024)
    feed(conn1, frame(big)[: 300 * 1024])  # conn1 reserves 700 KiB
    assert pool.used == len(big)
    feed(conn2, frame(big)[: 200 * 1024])  # conn2 cannot: waits, not read meanwhile
    assert t2.paused and pool.waiting == 1
    feed(conn1, frame(big)[300 * 1024 :])  # conn1 completes: memory released, conn2 granted
    assert sink1.frames == [big]
    assert not t2.paused and pool.waiting == 0 and pool.used == len(big)
    feed(conn2, frame(big)[200 * 1024 :])
    assert sink2.frames == [big]
    assert pool.used == 0


def test_small_frames_never_wait_for_memory() -> None:
    conn1, _, _, _ = connection(pool_bytes=1 << 20)
    feed(conn1, frame(b"\3" * 1_000_000)[:100_000])  # reserves almost everything
    sink2 = Sink()
    conn2 = KafkaConnection(sink2, conn1._shared)  # type: ignore[arg-type]
    conn2.connection_made(Transport())
    feed(conn2, frame(b"ok" * 10_000) * 3, max_read=5000)
    assert sink2.frames == [b"ok" * 10_000] * 3


@pytest.mark.parametrize("size", [-1, (10 << 20) + 1, -(2**31)])
def test_frame_outside_the_limit_closes_the_connection(size: int) -> None:
    conn, sink, transport, pool = connection()
    feed(conn, struct.pack(">i", size) + b"x" * 10)
    assert conn.closed and transport.aborted
    assert sink.frames == [] and pool.used == 0


def test_frame_larger_than_all_request_memory_is_refused() -> None:
    conn, _, transport, pool = connection(pool_bytes=1 << 20, max_request=10 << 20)
    feed(conn, struct.pack(">i", 2 << 20) + b"x" * 10)
    assert conn.closed and transport.aborted and pool.used == 0


def test_per_connection_limit_can_be_lowered() -> None:
    conn, _, transport, _ = connection()
    conn.max_request_bytes = 512 * 1024
    conn.max_request_key = "sasl.server.max.receive.size"
    feed(conn, struct.pack(">i", 600 * 1024))
    assert conn.closed and transport.aborted


def test_closing_releases_reserved_and_awaited_memory() -> None:
    conn1, _, _, pool = connection(pool_bytes=1 << 20)
    conn2 = KafkaConnection(Sink(), conn1._shared)  # type: ignore[arg-type]
    conn2.connection_made(Transport())
    feed(conn1, frame(b"\4" * 900_000)[:200_000])
    feed(conn2, frame(b"\4" * 900_000)[:200_000])
    assert pool.used == 900_000 and pool.waiting == 1
    conn1.connection_lost(None)  # conn2 is granted conn1's memory
    assert pool.used == 900_000 and pool.waiting == 0
    conn2.connection_lost(None)
    assert pool.used == 0


def test_in_flight_limit_holds_frames_back_and_drains_them_later() -> None:
    async def run() -> None:
        conn, sink, transport, pool = connection(answer_later=True)
        count = MAX_IN_FLIGHT_PER_CONNECTION + 10
        feed(conn, b"".join(frame(struct.pack(">i", i)) for i in range(count)))
        assert len(sink.frames) == MAX_IN_FLIGHT_PER_CONNECTION
        assert transport.paused
        # Frames being handled count against the pool until answered.
        assert pool.used == 4 * MAX_IN_FLIGHT_PER_CONNECTION
        for fut in list(sink.futures):
            fut.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)
        assert [struct.unpack(">i", f)[0] for f in sink.frames] == list(range(count))
        for fut in sink.futures[MAX_IN_FLIGHT_PER_CONNECTION:]:
            fut.set_result(None)
        await asyncio.sleep(0)
        assert pool.used == 0 and not transport.paused

    asyncio.run(run())


def test_stalled_reservation_is_reported() -> None:
    conn, _, _, _ = connection()
    feed(conn, frame(b"\5" * (SMALL_FRAME_BYTES * 4))[: SMALL_FRAME_BYTES + 1000])
    conn.last_received -= 100
    assert conn.stalled_receive_s >= 100
