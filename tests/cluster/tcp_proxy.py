"""A TCP forwarder the tests put between brokers and ZooKeeper, to make ZooKeeper unreachable
without stopping it.

Stopping ZooKeeper does not expire sessions: a restarted server restores them from its data
directory and gives each a fresh timeout, so clients that come back quickly keep them. To
have the server expire the brokers' sessions (as a network partition longer than the session
timeout does), the test `cut()`s this proxy: every forwarded connection is closed and new
ones are closed as soon as they are accepted, while ZooKeeper itself runs on. `restore()`
forwards again.

One thread does everything (accept, forward, cut) over a selector; ZooKeeper's traffic in
these tests is small, so a blocking `sendall` to the other side is fine.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._cut = False
        self._closing = False
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, name="zk-proxy", daemon=True)
        self._thread.start()

    @property
    def is_cut(self) -> bool:
        return self._cut

    def hosts(self, chroot: str = "") -> str:
        return f"127.0.0.1:{self.port}{chroot}"

    def cut(self) -> None:
        """Closes every forwarded connection and refuses to forward new ones."""
        with self._lock:
            self._cut = True
        self._wake()

    def restore(self) -> None:
        with self._lock:
            self._cut = False
        self._wake()

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._wake()
        self._thread.join(10)
        for s in (self._listener, self._wake_r, self._wake_w):
            s.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, "accept")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while True:
                with self._lock:
                    closing, cut = self._closing, self._cut
                if closing or cut:
                    self._drop_all(sel)
                if closing:
                    return
                for key, _ in sel.select(timeout=1.0):
                    if key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    elif key.data == "accept":
                        self._accept(sel)
                    else:
                        self._forward(sel, key.fileobj)  # type: ignore[arg-type]
        finally:
            self._drop_all(sel)
            sel.close()

    def _accept(self, sel: selectors.BaseSelector) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        with self._lock:
            cut = self._cut
        if cut:
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            client.close()  # ZooKeeper itself is down
            return
        self.accepted += 1
        for s in (client, upstream):
            s.setblocking(True)
            s.settimeout(5)
        self._peers[client] = upstream
        self._peers[upstream] = client
        sel.register(client, selectors.EVENT_READ, "conn")
        sel.register(upstream, selectors.EVENT_READ, "conn")

    def _forward(self, sel: selectors.BaseSelector, source: socket.socket) -> None:
        peer = self._peers.get(source)
        if peer is None:
            return
        try:
            data = source.recv(65536)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        self._drop(sel, source)

    def _drop(self, sel: selectors.BaseSelector, s: socket.socket) -> None:
        peer = self._peers.pop(s, None)
        for sock in (s, peer):
            if sock is None:
                continue
            self._peers.pop(sock, None)
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(sock)
            with contextlib.suppress(OSError):
                sock.close()

    def _drop_all(self, sel: selectors.BaseSelector) -> None:
        for s in list(self._peers):
            self._drop(sel, s)
