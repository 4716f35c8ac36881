"""The receive buffer: small for idle connections, large once reads fill it, frames intact."""

from __future__ import annotations

import struct
from typing import Any

from strom.server.network import (
    INITIAL_RECEIVE_BUFFER_BYTES,
    RECEIVE_BUFFER_BYTES,
    KafkaConnection,
)


class Recorder:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def dispatch(self, conn: Any, frame: bytearray) -> None:
        self.frames.append(bytes(frame))


def feed(conn: KafkaConnection, data: bytes) -> None:
    """What the transport does: recv_into the offered buffer, then report the byte count."""
    while data:
        buf = conn.get_buffer(-1)
        n = min(len(buf), len(data))
        buf[:n] = data[:n]
        conn.buffer_updated(n)
        data = data[n:]


def frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def connection() -> tuple[KafkaConnection, Recorder]:
    recorder = Recorder()
    return KafkaConnection(recorder, 10 << 20), recorder  # type: ignore[arg-type]


def test_idle_connection_keeps_the_small_buffer() -> None:
    conn, recorder = connection()
    feed(conn, frame(b"x" * 100))
    assert recorder.frames == [b"x" * 100]
    assert len(conn.get_buffer(-1)) <= INITIAL_RECEIVE_BUFFER_BYTES


def test_busy_connection_grows_and_keeps_every_frame_whole() -> None:
    conn, recorder = connection()
    bodies = [bytes([i % 256]) * (1000 + 37 * i) for i in range(200)]
    feed(conn, b"".join(frame(b) for b in bodies))
    assert recorder.frames == bodies
    assert len(conn.get_buffer(-1)) > INITIAL_RECEIVE_BUFFER_BYTES
    assert len(conn.get_buffer(-1)) <= RECEIVE_BUFFER_BYTES


def test_frame_larger_than_any_buffer_arrives_whole() -> None:
    conn, recorder = connection()
    body = bytes(range(256)) * 4000  # ~1 MB, larger than the large buffer
    feed(conn, frame(b"a") + frame(body) + frame(b"z"))
    assert recorder.frames == [b"a", body, b"z"]
