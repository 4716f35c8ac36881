"""The network shell: an asyncio `BufferedProtocol` per client connection.

Frame format (Kafka protocol): a 4-byte big-endian size, then that many bytes of request.
Small frames are parsed out of one reusable receive buffer and copied once into a `bytearray`
of their own (handlers may patch record batches in place). A frame larger than the receive
buffer is read straight into a `bytearray` of its exact size, so a large produce request is
never copied on its way in.

Responses go back in request order even when a later request finishes first: each request
takes a slot in `_pending`, and the head of the queue is written as soon as it is ready.

Responses are written by this class, not by the transport: Python 3.11's
`transport.writelines` joins the chunks into one new bytes object, and whatever the socket does
not take at once is sliced (another copy) and appended to the transport's buffer (a third). A
fetch response is mostly record data straight from the segment files, so instead the chunks
wait in `_out` as they are and go out with `sendmsg` (scatter/gather, no copy) on a duplicate of
the connection's socket; when the socket is full, a writer callback on that duplicate resumes.
Responses produced while one receive buffer is being parsed are sent together with one
`sendmsg`, so a burst of small requests (acks=1 produce at a steady rate) costs one system call
per burst instead of one per response.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Sequence
from itertools import islice
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strom.server.dispatch import Dispatcher

log = logging.getLogger("strom.network")

# Every connection starts with a small receive buffer, so that idle clients cost little
# memory; one whose reads fill the buffer (a busy producer) gets the large one.
INITIAL_RECEIVE_BUFFER_BYTES = 16 * 1024
RECEIVE_BUFFER_BYTES = 256 * 1024
# Stop reading from a client with this many requests in flight, as Kafka's
# queued.max.requests does per broker; resumes when the backlog drains.
MAX_IN_FLIGHT_PER_CONNECTION = 64
# Stop reading from a client while this much of its responses waits for the socket, as the
# transport's high-water mark did; resumes when the backlog has drained.
WRITE_HIGH_WATER = 1 << 20
# At most this many buffers per sendmsg (the kernel's UIO_MAXIOV).
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024

Chunks = Sequence[bytes | memoryview]


class ConnectionClosed(Exception):
    """Raised to a handler whose connection went away while it waited."""


class KafkaConnection(asyncio.BufferedProtocol):
    def __init__(
        self, dispatcher: Dispatcher, max_request_bytes: int, listener_name: str = ""
    ) -> None:
        self._dispatcher = dispatcher
        self.listener_name = listener_name
        self._max_request_bytes = max_request_bytes
        self._buf = bytearray(INITIAL_RECEIVE_BUFFER_BYTES)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._offered = 0  # size of the last buffer handed to the transport
        # A frame too big for the receive buffer is read into its own bytearray.
        self._big: bytearray | None = None
        self._big_filled = 0
        self._pending: deque[asyncio.Future[Chunks | None]] = deque()
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._reading_paused = False
        self._writing_paused = False
        # Responses not yet taken by the socket, oldest first, as the chunks they were made of.
        self._out: deque[bytes | memoryview] = deque()
        self._out_bytes = 0
        # A duplicate of the transport's socket to sendmsg on (None: write via the transport).
        self._wsock: socket.socket | None = None
        self._writer_registered = False
        # While a receive buffer is parsed, responses are queued and sent together afterwards.
        self._batching = False
        self.peer = "?"
        self.last_active = time.monotonic()

    # -- asyncio protocol callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                # Kafka sets TCP_NODELAY on every accepted socket: a small response (a produce
                # ack, a fetch of a few records) must not wait for the previous one's ACK.
                # asyncio already does this; it is spelled out because latency depends on it.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._wsock = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)
            self._wsock.setblocking(False)
        self._dispatcher.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        for fut in self._pending:
            fut.cancel()
        self._pending.clear()
        self._drop_output()
        self._dispatcher.connection_closed(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._big is not None:
            return memoryview(self._big)[self._big_filled :]
        if len(self._buf) - self._end < 4096:
            self._compact()
        view = self._view[self._end :]
        self._offered = len(view)
        return view

    def buffer_updated(self, nbytes: int) -> None:
        self.last_active = time.monotonic()
        self._batching = True
        try:
            if self._big is not None:
                self._big_filled += nbytes
                if self._big_filled == len(self._big):
                    frame, self._big = self._big, None
                    self._big_filled = 0
                    self._deliver(frame)
            else:
                self._end += nbytes
                self._parse_frames()
                if nbytes == self._offered and len(self._buf) < RECEIVE_BUFFER_BYTES:
                    self._grow()
        finally:
            self._batching = False
        if self._out and not self._writer_registered:
            self._send()

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        # Only reached when writing through the transport (no socket to sendmsg on).
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()

    # -- framing --------------------------------------------------------------------------

    def _grow(self) -> None:
        """Move to the large receive buffer, keeping the unparsed bytes."""
        live = self._end - self._start
        grown = bytearray(RECEIVE_BUFFER_BYTES)
        grown[:live] = self._view[self._start : self._end]
        self._buf, self._view = grown, memoryview(grown)
        self._start, self._end = 0, live

    def _compact(self) -> None:
        live = self._end - self._start
        if self._start:
            self._buf[:live] = self._buf[self._start : self._end]
        self._start, self._end = 0, live

    def _parse_frames(self) -> None:
        buf = self._buf
        while not self._closed and self._end - self._start >= 4:
            start = self._start
            size = int.from_bytes(buf[start : start + 4], "big", signed=True)
            if size < 0 or size > self._max_request_bytes:
                self.close(
                    f"frame of {size} bytes is outside 0..{self._max_request_bytes} "
                    "(socket.request.max.bytes)"
                )
                return
            available = self._end - start - 4
            if available >= size:
                frame = bytearray(self._view[start + 4 : start + 4 + size])
                self._start = start + 4 + size
                self._deliver(frame)
                continue
            if 4 + size > len(buf):
                self._big = bytearray(size)
                self._big[:available] = self._view[start + 4 : self._end]
                self._big_filled = available
                self._start = self._end = 0
            break
        if self._start == self._end:
            self._start = self._end = 0

    def _deliver(self, frame: bytearray) -> None:
        self._dispatcher.dispatch(self, frame)

    # -- responses ------------------------------------------------------------------------

    def respond_now(self, chunks: Chunks | None) -> None:
        """Answer a request that finished synchronously."""
        if not self._pending:
            if chunks is not None:
                self._write(chunks)
            return
        fut: asyncio.Future[Chunks | None] = asyncio.get_running_loop().create_future()
        fut.set_result(chunks)
        self._pending.append(fut)

    def respond_later(self, fut: asyncio.Future[Chunks | None]) -> None:
        """Reserve the next response slot for a request still being handled."""
        self._pending.append(fut)
        fut.add_done_callback(self._on_response_ready)
        self._update_reading()

    def _on_response_ready(self, _fut: asyncio.Future[Chunks | None]) -> None:
        while self._pending and self._pending[0].done():
            fut = self._pending.popleft()
            if fut.cancelled():
                continue
            exc = fut.exception()
            if exc is not None:
                self.close(f"request failed: {exc!r}")
                return
            chunks = fut.result()
            if chunks is not None:
                self._write(chunks)
        self._update_reading()

    def _write(self, chunks: Chunks) -> None:
        if self._closed or self._transport is None:
            return
        if self._wsock is None:
            self._transport.writelines(chunks)
            return
        out = self._out
        for chunk in chunks:
            if len(chunk):
                out.append(chunk)
                self._out_bytes += len(chunk)
        if not self._batching and not self._writer_registered:
            self._send()

    def _send(self) -> None:
        """Hand `_out` to the socket until it is empty or the socket is full."""
        wsock = self._wsock
        out = self._out
        assert wsock is not None
        while out:
            try:
                sent = wsock.sendmsg(list(islice(out, _IOV_MAX)))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # The peer is gone; reading will notice too, but do not wait for it.
                self._drop_output()
                if self._transport is not None:
                    self._transport.abort()
                log.debug("write to %s failed: %r", self.peer, exc)
                return
            self._out_bytes -= sent
            while sent:
                first = out[0]
                size = len(first)
                if sent >= size:
                    out.popleft()
                    sent -= size
                else:
                    out[0] = memoryview(first)[sent:]
                    sent = 0
        if out and not self._writer_registered:
            asyncio.get_running_loop().add_writer(wsock.fileno(), self._send)
            self._writer_registered = True
        elif not out and self._writer_registered:
            asyncio.get_running_loop().remove_writer(wsock.fileno())
            self._writer_registered = False
        self._writing_paused = self._out_bytes > WRITE_HIGH_WATER
        self._update_reading()

    def _drop_output(self) -> None:
        """Forget unsent responses and release the duplicate socket."""
        self._out.clear()
        self._out_bytes = 0
        if self._wsock is not None:
            if self._writer_registered:
                asyncio.get_running_loop().remove_writer(self._wsock.fileno())
                self._writer_registered = False
            self._wsock.close()
            self._wsock = None

    def _update_reading(self) -> None:
        if self._transport is None or self._closed:
            return
        should_pause = self._writing_paused or len(self._pending) >= MAX_IN_FLIGHT_PER_CONNECTION
        if should_pause and not self._reading_paused:
            self._transport.pause_reading()
            self._reading_paused = True
        elif not should_pause and self._reading_paused:
            self._transport.resume_reading()
            self._reading_paused = False

    def close(self, reason: str) -> None:
        if self._closed:
            return
        log.warning("closing connection from %s: %s", self.peer, reason)
        self._closed = True
        if self._transport is not None:
            # Responses already queued still go out first, as the transport's close() flushes
            # its own buffer: hand ours over (a copy, but only on this rare path).
            unsent = list(self._out)
            self._drop_output()
            if unsent:
                self._transport.writelines(unsent)
            self._transport.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        return bool(self._pending)
