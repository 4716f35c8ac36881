"""Listening sockets and their accept loop, kept working when descriptors run out.

asyncio's own server (Python 3.11) answers EMFILE on accept by logging the error once per
backlog slot, dropping the listening socket from the selector and trying again a second later;
if nothing gives descriptors back meanwhile, it never accepts again. Here an accept that fails
for lack of descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM) first asks
`relieve` to give some back (the storage layer's cache of open segment files closes idle ones,
file_cache.py) and tries again at once; only when nothing can be given back does the listener
pause, for `RETRY_DELAY_S`, with one log line per `LogLimiter` interval. The cache's bound
leaves a reserve of descriptors below the process limit for connections
(`strom.max.open.files`), so this is the last line of defence, not the normal path.

Connection quotas (connection_quotas.py) are applied here, as Kafka's acceptor applies them: a
connection over a creation rate, or without a free slot under `max.connections`, is held
(accepted but not set up) and the listener accepts nothing more until the throttle time has
passed and a slot is free; the rest wait in the kernel's backlog. A connection over its
address's creation rate is held unread and closed when its throttle time has passed; one over
`max.connections.per.ip` is closed at once.

Each admitted socket becomes a transport and protocol through `loop.connect_accepted_socket`;
the protocol factory is given the peer's address and the connection's slot, which the protocol
releases when the connection ends.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

from strom.server.connection_quotas import ConnectionQuotas, ConnectionSlot, Verdict
from strom.server.log_limiter import LogLimiter

log = logging.getLogger("strom.network")

RETRY_DELAY_S = 0.1
# Connections taken per wake-up of a listening socket (asyncio's server takes its backlog).
ACCEPTS_PER_WAKEUP = 128
BACKLOG = 1024
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def bind_listening_sockets(host: str | None, port: int) -> list[socket.socket]:
    """Non-blocking sockets listening on every address `host` resolves to (all interfaces
    when empty), with SO_REUSEADDR as asyncio's create_server sets it."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, found in infos:
            if (family, found) in seen:
                continue
            seen.add((family, found))
            # Port 0: the first socket's port for the others too.
            address = (found[0], port, *found[2:])
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(
                    exc.errno, f"error while attempting to bind on address {address!r}: {exc}"
                ) from None
            sock.listen(BACKLOG)
            sock.setblocking(False)
            if port == 0:
                port = sock.getsockname()[1]  # every family on the same port, as asyncio does
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


ProtocolFactory = Callable[[str, ConnectionSlot | None], asyncio.BaseProtocol]


def _host(address: object) -> str:
    return str(address[0]) if isinstance(address, tuple) else str(address)


class Acceptor:
    """Accepts connections on `sockets` of listener `listener` for `protocol_factory` until
    closed, within `quotas` when given."""

    def __init__(
        self,
        sockets: list[socket.socket],
        protocol_factory: ProtocolFactory,
        relieve: Callable[[], int],
        *,
        listener: str = "",
        quotas: ConnectionQuotas | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.sockets = sockets
        self.listener = listener
        self._factory = protocol_factory
        self._relieve = relieve
        self._quotas = quotas
        self._loop = loop or asyncio.get_running_loop()
        self._closed = False
        self._paused: set[socket.socket] = set()
        self._limited = LogLimiter(log)
        self._setting_up: set[asyncio.Task[object]] = set()
        # The connection the listener waits to take (a creation rate's throttle, no free
        # slot), the loop time its throttle ends, and whether a slot is being waited for.
        self._held: tuple[socket.socket, str] | None = None
        self._held_until = 0.0
        self._held_timer: asyncio.TimerHandle | None = None
        self._awaiting_slot = False
        # Connections over their address's creation rate, closed when their time is up.
        self._throttled: dict[socket.socket, asyncio.TimerHandle] = {}

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    def start(self) -> None:
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            if self._held is not None or self._closed:
                return
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno not in OUT_OF_RESOURCES:
                    log.error("accepting on %s failed: %s", sock.getsockname(), exc)
                    return
                if self._relieve() > 0:
                    continue  # descriptors were given back: the next accept can have one
                self._pause(sock, exc)
                return
            self._arrived(conn, _host(address))

    # -- quotas ------------------------------------------------------------------------------

    def _arrived(self, conn: socket.socket, host: str) -> None:
        quotas = self._quotas
        if quotas is None:
            self._connect(conn, host, None)
            return
        delay = quotas.record_connection(self.listener)
        if delay <= 0 and quotas.slot_available(self.listener):
            self._admit(conn, host)
            return
        # Kafka's acceptor blocks here: the listener takes nothing more meanwhile.
        self._held = (conn, host)
        self._held_until = self._loop.time() + delay
        for sock in self.sockets:
            if sock not in self._paused:
                self._loop.remove_reader(sock.fileno())
        if delay > 0:
            self._held_timer = self._loop.call_at(self._held_until, self._take_held)
        else:
            self._take_held()

    def _take_held(self) -> None:
        """Takes the held connection once its throttle time is over and a slot is free."""
        self._held_timer = None
        quotas = self._quotas
        if self._held is None or self._closed or quotas is None:
            return
        if self._loop.time() < self._held_until:
            if self._held_timer is None:
                self._held_timer = self._loop.call_at(self._held_until, self._take_held)
            return
        if not quotas.slot_available(self.listener):
            if not self._awaiting_slot:
                quotas.log_waiting_for_slot(self.listener)
                self._awaiting_slot = True
                quotas.wait_for_slot(self._slot_freed)
            return
        conn, host = self._held
        self._held = None
        self._admit(conn, host)
        for sock in self.sockets:
            if sock not in self._paused:
                self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _slot_freed(self) -> None:
        # Called from inside a release (a connection being torn down): look again afterwards.
        self._awaiting_slot = False
        self._loop.call_soon(self._take_held)

    def _admit(self, conn: socket.socket, host: str) -> None:
        assert self._quotas is not None
        verdict, delay, slot = self._quotas.admit(self.listener, host)
        if verdict is Verdict.ADMITTED:
            self._connect(conn, host, slot)
        elif verdict is Verdict.IP_THROTTLED:
            self._throttled[conn] = self._loop.call_later(delay, self._close_throttled, conn)
        else:
            conn.close()

    def _close_throttled(self, conn: socket.socket) -> None:
        self._throttled.pop(conn, None)
        conn.close()

    # -- set-up ------------------------------------------------------------------------------

    def _connect(self, conn: socket.socket, host: str, slot: ConnectionSlot | None) -> None:
        conn.setblocking(False)
        task: asyncio.Task[object] = self._loop.create_task(
            self._loop.connect_accepted_socket(lambda: self._factory(host, slot), conn)
        )
        self._setting_up.add(task)
        task.add_done_callback(lambda t: self._connected(t, slot))

    def _connected(self, task: asyncio.Task[object], slot: ConnectionSlot | None) -> None:
        self._setting_up.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            # The transport was not made, so no protocol will release the slot.
            if slot is not None:
                slot.release()
            log.warning("setting up an accepted connection failed: %r", exc)

    def _pause(self, sock: socket.socket, exc: OSError) -> None:
        """Out of descriptors with none to give back: stop polling this socket for a moment
        (Linux keeps reporting it readable while connections wait in its backlog)."""
        self._limited.warning(
            "accept",
            "cannot accept connections on %s: %s; retrying every %.1f s while connections "
            "wait in the backlog",
            sock.getsockname(),
            exc.strerror or exc,
            RETRY_DELAY_S,
        )
        self._loop.remove_reader(sock.fileno())
        self._paused.add(sock)
        self._loop.call_later(RETRY_DELAY_S, self._resume, sock)

    def _resume(self, sock: socket.socket) -> None:
        if self._closed or sock not in self._paused:
            return
        self._paused.discard(sock)
        if self._held is None:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sock in self.sockets:
            if sock not in self._paused:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._paused.clear()
        if self._held_timer is not None:
            self._held_timer.cancel()
        if self._held is not None:
            self._held[0].close()
            self._held = None
        for conn, timer in self._throttled.items():
            timer.cancel()
            conn.close()
        self._throttled.clear()

    async def wait_closed(self) -> None:
        """Connections still being set up finish (each closes itself if the broker is
        shutting down)."""
        if self._setting_up:
            await asyncio.gather(*list(self._setting_up), return_exceptions=True)
