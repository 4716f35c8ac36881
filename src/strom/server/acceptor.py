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

Each accepted socket becomes a transport and protocol through `loop.connect_accepted_socket`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

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


class Acceptor:
    """Accepts connections on `sockets` for `protocol_factory` until closed."""

    def __init__(
        self,
        sockets: list[socket.socket],
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        relieve: Callable[[], int],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.sockets = sockets
        self._factory = protocol_factory
        self._relieve = relieve
        self._loop = loop or asyncio.get_running_loop()
        self._closed = False
        self._paused: set[socket.socket] = set()
        self._limited = LogLimiter(log)
        self._setting_up: set[asyncio.Task[object]] = set()

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    def start(self) -> None:
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                conn, _ = sock.accept()
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
            self._connect(conn)

    def _connect(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        task: asyncio.Task[object] = self._loop.create_task(
            self._loop.connect_accepted_socket(self._factory, conn)
        )
        self._setting_up.add(task)
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[object]) -> None:
        self._setting_up.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
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

    async def wait_closed(self) -> None:
        """Connections still being set up finish (each closes itself if the broker is
        shutting down)."""
        if self._setting_up:
            await asyncio.gather(*list(self._setting_up), return_exceptions=True)
