"""The network shell: an asyncio `BufferedProtocol` per client connection.

Frame format (Kafka protocol): a 4-byte big-endian size, then that many bytes of request.

Receiving, with memory bounded whatever the clients do:
- Reads land in one receive buffer shared by every connection of the broker (`NetworkShared.
  scratch`): the event loop runs one read callback at a time and each is parsed before it
  returns, so an idle connection holds no buffer at all. Whole frames are copied out of it into
  a `bytearray` of their own (handlers may patch record batches in place); the bytes of an
  incomplete small frame are kept (`_tail`) and put back in front of the next read.
- A frame larger than `SMALL_FRAME_BYTES` that is not complete reserves its announced size in
  the broker's `MemoryPool` (`queued.max.request.bytes`) once that many of its bytes have
  arrived, and is then read straight into a buffer of its own that grows as its bytes arrive,
  never to the announced size up front. A connection whose frame cannot get a reservation stops
  being read until it can. Before its reservation a connection holds at most
  2 * SMALL_FRAME_BYTES of a frame while the pool is short of memory (reads are cut to
  SMALL_FRAME_BYTES then).
- Every frame counts against the pool until its response is ready.
- Frames are refused (the connection closed) above `max_request_bytes`: socket.request.max.bytes,
  or sasl.server.max.receive.size while a SASL client has not authenticated.

Responses go back in request order even when a later request finishes first: each request
takes a slot in `_pending`, and the head of the queue is written as soon as it is ready.

Responses are written by this class, not by the transport: Python 3.11's
`transport.writelines` joins the chunks into one new bytes object, and whatever the socket does
not take at once is sliced (another copy) and appended to the transport's buffer (a third). A
fetch response is mostly record data straight from the segment files, so instead the chunks
wait in `_out` as they are and go out with `sendmsg` (scatter/gather, no copy) on a duplicate of
the connection's socket; when the socket is full, a writer callback on that duplicate resumes.
Responses produced while one read is being parsed are sent together with one `sendmsg`, so a
burst of small requests (acks=1 produce at a steady rate) costs one system call per burst
instead of one per response.

A client that does not read its responses stops being read once `WRITE_HIGH_WATER` bytes wait
for it, stops having requests dispatched, and is closed when what waits for it passes
`NetworkShared.max_unsent_bytes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Protocol

from strom.security.authenticator import SASL_HANDSHAKE, SaslAuthenticator, Step
from strom.security.principal import ANONYMOUS, KafkaPrincipal, NoMatchingRule
from strom.server.connection_quotas import ConnectionSlot
from strom.server.log_limiter import LogLimiter
from strom.server.memory_pool import MemoryPool
from strom.server.sasl import SaslListener
from strom.server.tls import TlsError, TlsListener, TlsSession
from strom.storage.file_cache import EXHAUSTED, open_files

log = logging.getLogger("strom.network")

# The shared receive buffer: the most one read takes.
RECEIVE_BUFFER_BYTES = 256 * 1024
# Frames up to this size are assembled from reads without a reservation; larger ones that do not
# arrive whole in one read reserve their size in the pool first.
SMALL_FRAME_BYTES = 64 * 1024
# A reserved frame's buffer starts at this size (or twice what has arrived, up to the frame's
# size) and then grows as bytes arrive, by at most _GROW_STEP at a time. Most produce requests
# (up to 1 MiB) fit the first buffer, so their bytes are never copied again.
_BIG_INITIAL = 1 << 20
_GROW_STEP = 1 << 20
_ZEROS = memoryview(bytes(_GROW_STEP))
# Stop reading from a client with this many requests in flight, as Kafka's
# queued.max.requests does per broker; resumes when the backlog drains.
MAX_IN_FLIGHT_PER_CONNECTION = 64
# Stop reading from a client while this much of its responses waits for the socket, as the
# transport's high-water mark did; resumes when the backlog has drained.
WRITE_HIGH_WATER = 1 << 20
# TLS: plaintext encrypted per step, and the transport buffer above which encrypting waits.
_TLS_WRITE_BATCH = 256 * 1024
_TLS_TRANSPORT_HIGH_WATER = 256 * 1024
# At most this many buffers per sendmsg (the kernel's UIO_MAXIOV).
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024

Chunks = Sequence[bytes | memoryview]


def _duplicate(sock: socket.socket) -> socket.socket | None:
    """The socket to sendmsg on. Out of descriptors even after the segment file cache gave
    some back: None, and the connection writes through its transport (one copy more)."""
    for attempt in range(2):
        try:
            dup = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)
        except OSError as exc:
            if exc.errno not in EXHAUSTED:
                raise
            if attempt == 0 and open_files.relieve() > 0:
                continue
            return None
        dup.setblocking(False)
        return dup
    return None


class ConnectionClosed(Exception):
    """Raised to a handler whose connection went away while it waited."""


class RequestSink(Protocol):
    """Where a connection hands its frames (the dispatcher, or a recorder in tests)."""

    def connection_opened(self, conn: KafkaConnection) -> bool: ...

    def connection_closed(self, conn: KafkaConnection) -> None: ...

    def dispatch(self, conn: KafkaConnection, frame: bytearray) -> None: ...


@dataclass
class NetworkShared:
    """What all connections of a broker share: the receive buffer and the memory limits."""

    pool: MemoryPool
    max_request_bytes: int  # socket.request.max.bytes
    # Unsent response bytes past which a client that does not read is disconnected.
    max_unsent_bytes: int
    scratch: bytearray = field(default_factory=lambda: bytearray(RECEIVE_BUFFER_BYTES))
    log: LogLimiter = field(default_factory=lambda: LogLimiter(log))
    # Unsent response bytes over all connections.
    unsent_bytes: int = 0
    # Authentications per listener for /metrics: SASL ones, and as failures TLS handshakes
    # refused and certificates no principal mapping rule accepts.
    authentications: dict[str, int] = field(default_factory=dict)
    failed_authentications: dict[str, int] = field(default_factory=dict)

    def authenticated(self, listener: str, ok: bool) -> None:
        counts = self.authentications if ok else self.failed_authentications
        counts[listener] = counts.get(listener, 0) + 1


class KafkaConnection(asyncio.BufferedProtocol):
    def __init__(
        self,
        sink: RequestSink,
        shared: NetworkShared,
        listener_name: str = "",
        tls: TlsListener | None = None,
        sasl: SaslListener | None = None,
        peer_host: str | None = None,
        slot: ConnectionSlot | None = None,
    ) -> None:
        self._sink = sink
        # Its place under the connection quotas, given back when the connection ends.
        self._slot = slot
        self._shared = shared
        self.listener_name = listener_name
        self._tls: TlsSession | None = tls.session() if tls is not None else None
        self._transport_full = False  # TLS: the transport's buffer is above its high mark
        # Who the client is: from its TLS certificate, or its SASL authentication.
        self.principal: KafkaPrincipal = ANONYMOUS
        # SASL listeners: requests go to the authenticator until it has authenticated the
        # client, and are smaller meanwhile.
        self.authenticator: SaslAuthenticator | None = None
        self._auth_failed = False
        self.max_request_bytes = shared.max_request_bytes
        # The setting named when a frame exceeds max_request_bytes.
        self.max_request_key = "socket.request.max.bytes"
        if sasl is not None:
            self.authenticator = sasl.authenticator()
            self.max_request_bytes = min(
                shared.max_request_bytes, self.authenticator.max_receive_bytes
            )
            self.max_request_key = "sasl.server.max.receive.size"
        # Received bytes not yet parsed into frames (an incomplete frame, or frames held back
        # while dispatching is paused).
        self._tail = b""
        self._tail_in_scratch = 0  # bytes of _tail copied in front of the offered scratch
        # A reserved frame being received: its body, bytes filled, announced size.
        self._big: bytearray | None = None
        self._big_filled = 0
        self._big_size = 0
        self._awaiting_memory = 0  # size of a reservation waited for (0: none)
        self._pending: deque[asyncio.Future[Chunks | None]] = deque()
        # Callbacks of pending answers, called once each answer is written (fetches give back
        # their share of the response budget then).
        self._written: dict[asyncio.Future[Chunks | None], Callable[[], None]] = {}
        self._transport: asyncio.Transport | None = None
        self._admitted = False
        self._closed = False
        self._reading_paused = False
        self._writing_paused = False
        self._drain_scheduled = False
        # Muted for a client quota (KIP-219): no request is read until the throttle time ends.
        self._throttled_until = 0.0
        self._throttle_timer: asyncio.TimerHandle | None = None
        self._held_back = False  # whole frames wait in _tail until dispatching may go on
        self._parsing = False
        # The response future of the request being dispatched, if it answers later.
        self._dispatched_future: asyncio.Future[Chunks | None] | None = None
        # Responses not yet taken by the socket, oldest first, as the chunks they were made of.
        self._out: deque[bytes | memoryview] = deque()
        self._out_bytes = 0
        # A duplicate of the transport's socket to sendmsg on (None: write via the transport).
        self._wsock: socket.socket | None = None
        self._writer_registered = False
        # While a read is parsed, responses are queued and sent together afterwards.
        self._batching = False
        self.peer = self.peer_host = peer_host or "?"
        now = time.monotonic()
        self.last_active = now  # last byte received or sent
        self.last_received = now
        self.last_sent = now

    # -- asyncio protocol callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):  # else: the address the acceptor saw, if any
            self.peer_host, self.peer = str(peer[0]), f"{peer[0]}:{peer[1]}"
        if not self._sink.connection_opened(self):
            self._closed = True
            transport.abort()
            return
        self._admitted = True
        if self._tls is not None:
            # Encrypted bytes go through the transport, which signals when its buffer is full.
            transport.set_write_buffer_limits(high=_TLS_TRANSPORT_HIGH_WATER)
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                # Kafka sets TCP_NODELAY on every accepted socket: a small response (a produce
                # ack, a fetch of a few records) must not wait for the previous one's ACK.
                # asyncio already does this; it is spelled out because latency depends on it.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._wsock = _duplicate(sock)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._throttle_timer is not None:
            self._throttle_timer.cancel()
            self._throttle_timer = None
        for fut in self._pending:
            fut.cancel()
        self._pending.clear()
        for written in self._written.values():
            written()
        self._written.clear()
        self._drop_output()
        self._release_receive_memory()
        if self._admitted:
            self._admitted = False
            self._sink.connection_closed(self)
        if self._slot is not None:
            self._slot.release()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._tls is not None:
            # Encrypted bytes: copied into the TLS session at once, so the shared buffer is
            # free again for the decrypted ones.
            return memoryview(self._shared.scratch)
        return self._offer()

    def buffer_updated(self, nbytes: int) -> None:
        self._batching = True
        try:
            if self._tls is not None:
                self.last_active = time.monotonic()
                self._tls.feed(memoryview(self._shared.scratch)[:nbytes])
                self._pump_tls()
            else:
                self._received(nbytes)
        finally:
            self._batching = False
        if self._out and not self._writer_registered:
            self._send()

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        # Only reached when writing through the transport (TLS, or no socket to sendmsg on).
        if self._tls is not None:
            self._transport_full = True
            return
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        if self._tls is not None:
            self._transport_full = False
            self._send()
            return
        self._writing_paused = False
        self._update_reading()

    # -- TLS ------------------------------------------------------------------------------

    def _pump_tls(self) -> None:
        """Advances the handshake, then decrypts into frames while dispatching may go on."""
        tls = self._tls
        assert tls is not None
        try:
            if not tls.established:
                done = tls.handshake()
                self._flush_tls()
                if not done:
                    return
                self._tls_established(tls)
                if self._closed:
                    return
            while not self._closed and not self._dispatch_paused() and not self._awaiting_memory:
                # One decrypt call gives at most one TLS record, and clients write many small
                # ones (librdkafka one per message): fill the buffer with as many as are there
                # before the frames are parsed.
                view = self._offer()
                filled = 0
                while filled < len(view):
                    got = tls.read_into(view[filled:])
                    if got == 0:
                        break
                    filled += got
                del view
                if filled == 0:
                    break
                self._received(filled)
        except TlsError as exc:
            if not tls.established:  # a refused handshake: Kafka counts it as authentication
                self._shared.authenticated(self.listener_name, False)
            self._flush_tls()
            # One log line per kind of failure and interval (a client retrying with a wrong
            # certificate must not fill the log).
            self.close(f"{exc} (listener {self.listener_name})", flush=False, kind=str(exc))
            return
        if tls.closed_by_peer and not self._closed:
            self.close("the client closed its TLS session", kind="tls closed")

    def _tls_established(self, tls: TlsSession) -> None:
        try:
            self.principal = tls.principal()
        except NoMatchingRule as exc:
            self._shared.authenticated(self.listener_name, False)
            self.close(f"failed authentication: {exc}", flush=False, kind="tls principal")
            return
        log.debug(
            "TLS from %s on %s: %s %s, principal %s",
            self.peer,
            self.listener_name,
            tls.version,
            tls.cipher,
            self.principal,
        )

    def _flush_tls(self) -> None:
        assert self._tls is not None
        data = self._tls.take_output()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    # -- receiving ------------------------------------------------------------------------

    def _offer(self) -> memoryview:
        """The buffer the next read goes into (called again if a read got nothing)."""
        big = self._big
        if big is not None:
            if self._big_filled == len(big):
                big = self._grow_big()
            return memoryview(big)[self._big_filled :]
        shared = self._shared
        scratch = shared.scratch
        held = len(self._tail)
        if held:
            scratch[:held] = self._tail
        self._tail_in_scratch = held
        if shared.pool.available < len(scratch):
            # Under memory pressure a read takes little, so that what a connection holds
            # before it has a reservation stays small.
            return memoryview(scratch)[held : held + SMALL_FRAME_BYTES]
        return memoryview(scratch)[held:]

    def _received(self, nbytes: int) -> None:
        """`nbytes` arrived in the buffer `_offer` returned."""
        now = time.monotonic()
        self.last_active = self.last_received = now
        if self._big is not None:
            self._big_filled += nbytes
            if self._big_filled == self._big_size:
                frame, size = self._big, self._big_size
                self._big = None
                self._big_filled = self._big_size = 0
                self._deliver(frame, size)
                self._update_reading()
            return
        data = memoryview(self._shared.scratch)[: self._tail_in_scratch + nbytes]
        self._tail = b""
        self._parse(data)

    def _parse(self, data: memoryview) -> None:
        """Delivers the whole frames at the start of `data` and keeps the rest."""
        self._parsing = True
        self._held_back = False
        pos, end = 0, len(data)
        try:
            while not self._closed and end - pos >= 4:
                if self._dispatch_paused():
                    self._held_back = True
                    break
                size = int.from_bytes(data[pos : pos + 4], "big", signed=True)
                if not self._acceptable(size):
                    return
                if end - pos - 4 >= size:
                    frame = bytearray(data[pos + 4 : pos + 4 + size])
                    pos += 4 + size
                    self._shared.pool.force(size)
                    self._deliver(frame, size)
                    continue
                if size > SMALL_FRAME_BYTES and end - pos - 4 >= SMALL_FRAME_BYTES:
                    if self._shared.pool.try_reserve(size):
                        self._start_big(size, data[pos + 4 : end])
                        pos = end
                    else:
                        self._awaiting_memory = size
                        self._shared.pool.wait(size, self._memory_granted, self.peer_host)
                break
            if not self._closed:
                self._tail = bytes(data[pos:end])
        finally:
            self._parsing = False
            del data
        self._update_reading()

    def _acceptable(self, size: int) -> bool:
        if size < 0 or size > self.max_request_bytes:
            self.close(
                f"frame of {size} bytes is outside 0..{self.max_request_bytes} "
                f"({self.max_request_key})",
                flush=False,
                kind="frame size",
            )
            return False
        if size > self._shared.pool.capacity:
            self.close(
                f"frame of {size} bytes is larger than all the memory for requests "
                f"({self._shared.pool.capacity} bytes, queued.max.request.bytes)",
                flush=False,
                kind="frame size",
            )
            return False
        return True

    def _start_big(self, size: int, arrived: memoryview) -> None:
        have = len(arrived)
        big = bytearray(min(size, max(_BIG_INITIAL, 2 * have)))
        big[:have] = arrived
        self._big, self._big_filled, self._big_size = big, have, size

    def _grow_big(self) -> bytearray:
        big = self._big
        assert big is not None
        step = min(len(big), _GROW_STEP, self._big_size - len(big))
        try:
            big += _ZEROS[:step]
        except BufferError:  # a view of it is still alive somewhere: grow a copy instead
            grown = bytearray(len(big) + step)
            grown[: len(big)] = big
            big = self._big = grown
        return big

    def _memory_granted(self) -> None:
        size, self._awaiting_memory = self._awaiting_memory, 0
        if self._closed:
            self._shared.pool.release(size)
            return
        held, self._tail = self._tail, b""
        self._start_big(size, memoryview(held)[4:])
        self._update_reading()

    def _deliver(self, frame: bytearray, size: int) -> None:
        """Hands a frame to the sink; its `size` bytes stay reserved until its response."""
        self._dispatched_future = None
        try:
            auth = self.authenticator
            if auth is None or not self._authenticate(auth, frame):
                self._sink.dispatch(self, frame)
        finally:
            fut, self._dispatched_future = self._dispatched_future, None
            pool = self._shared.pool
            if fut is None or fut.done():
                pool.release(size)
            else:
                fut.add_done_callback(lambda _f: pool.release(size))

    def _authenticate(self, auth: SaslAuthenticator, frame: bytearray) -> bool:
        """SASL before the dispatcher; True when the frame was taken care of here."""
        if not auth.authenticating:
            api_key = int.from_bytes(frame[:2], "big") if len(frame) >= 2 else -1
            if not (api_key == SASL_HANDSHAKE and auth.begin_reauthentication()):
                if auth.session_expired(int(time.time() * 1000)):
                    self.close(
                        "its SASL session expired without re-authentication "
                        "(connections.max.reauth.ms, or its token's expiry)",
                        flush=False,
                        kind="sasl session expired",
                    )
                    return True
                return False
        step = auth.receive(frame)
        if step.dispatch:
            return False
        if step.respond is not None:
            self.respond_now(step.respond)
        if step.authenticated:
            assert auth.principal is not None
            self.principal = auth.principal
            self._shared.authenticated(self.listener_name, True)
            self.max_request_bytes = self._shared.max_request_bytes
            self.max_request_key = "socket.request.max.bytes"
            log.debug("%s authenticated as %s on %s", self.peer, self.principal, self.listener_name)
        if step.failure is not None:
            self._authentication_failed(step)
        return True

    def _authentication_failed(self, step: Step) -> None:
        """Kafka's delayed close: nothing more is read, and after
        connection.failed.authentication.delay.ms the error answer goes out and the
        connection closes (password guessing gets slow)."""
        auth = self.authenticator
        mechanism = auth.mechanism if auth is not None else None
        self._shared.authenticated(self.listener_name, False)
        self._shared.log.warning(
            f"sasl {step.failure}",
            "failed authentication with %s (listener %s, %s): %s",
            self.peer,
            self.listener_name,
            mechanism or "no mechanism",
            step.failure,
        )
        self._auth_failed = True
        self._update_reading()

        def finish() -> None:
            if self._closed:
                return
            if step.failure_response is not None:
                self._write(step.failure_response)
            self.close("failed authentication", kind="sasl closed")

        asyncio.get_running_loop().call_later(step.delay_ms / 1000, finish)

    def _release_receive_memory(self) -> None:
        if self._big is not None:
            self._shared.pool.release(self._big_size)
            self._big = None
        if self._awaiting_memory:
            self._awaiting_memory = 0
            self._shared.pool.cancel(self._memory_granted)
        self._tail = b""

    @property
    def stalled_receive_s(self) -> float:
        """Seconds a reserved frame has gone without bytes while this connection was read
        (0 when it holds no reservation or is paused by the broker)."""
        if self._big is None or self._dispatch_paused():
            return 0.0
        return time.monotonic() - self.last_received

    @property
    def receiving_bytes(self) -> int:
        """Memory reserved for this connection's frame being received."""
        return self._big_size if self._big is not None else 0

    # -- pausing --------------------------------------------------------------------------

    def _dispatch_paused(self) -> bool:
        return (
            self._auth_failed
            or len(self._pending) >= MAX_IN_FLIGHT_PER_CONNECTION
            or self._writing_paused
            or self._out_bytes > WRITE_HIGH_WATER
            or self._throttle_timer is not None
        )

    def throttle(self, ms: int) -> None:
        """Mute the connection for `ms` (a client over its quota, as Kafka mutes the channel):
        requests already received wait, nothing more is read, until the time is over."""
        if ms <= 0 or self._closed:
            return
        loop = asyncio.get_running_loop()
        until = loop.time() + ms / 1000.0
        if until <= self._throttled_until:
            return
        self._throttled_until = until
        if self._throttle_timer is not None:
            self._throttle_timer.cancel()
        self._throttle_timer = loop.call_at(until, self._unthrottle)
        self._update_reading()

    def _unthrottle(self) -> None:
        self._throttle_timer = None
        self._update_reading()

    @property
    def throttled(self) -> bool:
        return self._throttle_timer is not None

    def _update_reading(self) -> None:
        if self._transport is None or self._closed:
            return
        should_pause = self._dispatch_paused() or self._awaiting_memory > 0
        if should_pause and not self._reading_paused:
            self._transport.pause_reading()
            self._reading_paused = True
        elif not should_pause:
            if self._reading_paused:
                self._transport.resume_reading()
                self._reading_paused = False
            tls_pending = self._tls is not None and self._tls.established and self._tls.pending
            if (self._held_back or tls_pending) and not self._parsing and not self._drain_scheduled:
                # Frames held back while dispatching was paused: parse them without waiting
                # for the client to send more.
                self._drain_scheduled = True
                asyncio.get_running_loop().call_soon(self._drain_tail)

    def _drain_tail(self) -> None:
        self._drain_scheduled = False
        if self._closed or self._dispatch_paused() or self._awaiting_memory:
            return
        self._batching = True
        try:
            if self._held_back:
                held, self._tail = self._tail, b""
                self._parse(memoryview(held))
            if self._tls is not None and not self._closed:
                self._pump_tls()
        finally:
            self._batching = False
        if self._out and not self._writer_registered:
            self._send()

    # -- responses ------------------------------------------------------------------------

    def respond_now(self, chunks: Chunks | None, written: Callable[[], None] | None = None) -> None:
        """Answer a request that finished synchronously. `written` is called once the answer
        counts among the unsent bytes (or the connection is gone)."""
        if not self._pending:
            if chunks is not None:
                self._write(chunks)
            if written is not None:
                written()
            return
        fut: asyncio.Future[Chunks | None] = asyncio.get_running_loop().create_future()
        fut.set_result(chunks)
        self._pending.append(fut)
        if written is not None:
            self._written[fut] = written

    def respond_later(
        self, fut: asyncio.Future[Chunks | None], written: Callable[[], None] | None = None
    ) -> None:
        """Reserve the next response slot for a request still being handled; `written` as
        for respond_now."""
        self._dispatched_future = fut
        self._pending.append(fut)
        if written is not None:
            self._written[fut] = written
        fut.add_done_callback(self._on_response_ready)
        self._update_reading()

    def _on_response_ready(self, _fut: asyncio.Future[Chunks | None]) -> None:
        while self._pending and self._pending[0].done():
            fut = self._pending.popleft()
            written = self._written.pop(fut, None)
            if written is not None:
                # After the write below: until then the answer's bytes are still the request's.
                asyncio.get_running_loop().call_soon(written)
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
        if self._wsock is None and self._tls is None:
            self._transport.writelines(chunks)
            return
        out = self._out
        if not out:
            # What waits is measured from now: an idle connection has sent nothing for long.
            self.last_sent = time.monotonic()
        added = 0
        for chunk in chunks:
            if len(chunk):
                out.append(chunk)
                added += len(chunk)
        self._out_bytes += added
        self._shared.unsent_bytes += added
        if self._out_bytes > self._shared.max_unsent_bytes:
            self.close(
                f"the client does not read its responses: {self._out_bytes} bytes wait to be "
                f"sent (limit {self._shared.max_unsent_bytes})",
                flush=False,
                kind="not reading",
            )
            return
        if not self._batching and not self._writer_registered:
            self._send()

    def _send(self) -> None:
        """Hand `_out` to the socket until it is empty or the socket is full."""
        if self._tls is not None:
            self._send_tls()
            return
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
            if sent:
                self.last_active = self.last_sent = time.monotonic()
            self._out_bytes -= sent
            self._shared.unsent_bytes -= sent
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

    def _send_tls(self) -> None:
        """Encrypts `_out` into the transport while its buffer has room: what waits for a slow
        reader stays plaintext (the fetched data as read), encrypted only as it goes out."""
        tls, transport, out = self._tls, self._transport, self._out
        assert tls is not None
        if transport is None or self._closed:
            return
        while out and not self._transport_full:
            pieces: list[bytes | memoryview] = []
            taken = 0
            while out and taken < _TLS_WRITE_BATCH:
                first = out[0]
                room = _TLS_WRITE_BATCH - taken
                if len(first) <= room:
                    pieces.append(out.popleft())
                    taken += len(first)
                else:
                    view = memoryview(first)
                    pieces.append(view[:room])
                    out[0] = view[room:]
                    taken += room
            try:
                tls.encrypt(pieces)
            except Exception as exc:  # ssl.SSLError: the session is broken
                self.close(f"TLS error while sending: {exc!r}", flush=False)
                return
            self._out_bytes -= taken
            self._shared.unsent_bytes -= taken
            self.last_active = self.last_sent = time.monotonic()
            self._flush_tls()
        self._writing_paused = self._out_bytes > WRITE_HIGH_WATER
        self._update_reading()

    def _drop_output(self) -> None:
        """Forget unsent responses and release the duplicate socket."""
        self._out.clear()
        self._shared.unsent_bytes -= self._out_bytes
        self._out_bytes = 0
        if self._wsock is not None:
            if self._writer_registered:
                asyncio.get_running_loop().remove_writer(self._wsock.fileno())
                self._writer_registered = False
            self._wsock.close()
            self._wsock = None

    @property
    def unsent_bytes(self) -> int:
        return self._out_bytes

    def close(self, reason: str, flush: bool = True, kind: str | None = None) -> None:
        """Closes the connection, logging why; `flush=False` drops unsent responses (a client
        that broke the rules gets nothing more). Closes of the same `kind` are logged at most
        once per interval (a flood of bad connections must not flood the log)."""
        if self._closed:
            return
        if kind is None:
            log.warning("closing connection from %s: %s", self.peer, reason)
        else:
            self._shared.log.warning(kind, "closing connection from %s: %s", self.peer, reason)
        self._closed = True
        self._release_receive_memory()
        if self._transport is not None:
            if not flush:
                self._drop_output()
                self._transport.abort()
                return
            # Responses already queued still go out first, as the transport's close() flushes
            # its own buffer: hand ours over (a copy, but only on this rare path).
            unsent = list(self._out)
            self._drop_output()
            if unsent and self._tls is not None:
                with contextlib.suppress(Exception):
                    self._tls.encrypt(unsent)
                    self._flush_tls()
            elif unsent:
                self._transport.writelines(unsent)
            self._transport.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        return bool(self._pending)
