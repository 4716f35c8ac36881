"""A small asyncio wrapper over kazoo (the ZooKeeper client).

kazoo is thread-based: its calls block and it runs watches and session callbacks on its own
threads. The broker is one asyncio loop that must never block, so:

- every blocking kazoo call runs in this client's own small thread pool (`run_in_executor`),
  never in the broker's I/O pool, so a ZooKeeper outage cannot starve disk work;
- every callback (watch fired, session state change) is marshalled onto the loop with
  `loop.call_soon_threadsafe`, so the code it runs needs no locks.

Errors are translated into this module's exception types (`BadVersionError` for a failed
compare-and-set, `NodeExistsError`, `NoNodeError`, `ZkConnectionError`), so callers never
import kazoo.

Session model (what ZooKeeper guarantees and what callers see):
- SUSPENDED: the connection dropped; the session may still be alive on the server, and with it
  our ephemeral znodes. kazoo queues calls until it reconnects (by itself).
- CONNECTED: connected again within the session timeout: same session, ephemerals intact.
- EXPIRED: the server dropped the session: every ephemeral znode it owned is gone (a new
  controller may already be elected). kazoo then opens a NEW session.
- NEW_SESSION: connected with a fresh session after an expiry. Before listeners hear of it,
  the ephemerals registered with `register_ephemeral` are created again.

Reads are retried across connection losses (they are idempotent); writes are not, because a
write whose reply was lost may or may not have happened: the caller re-reads and decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from kazoo.client import KazooClient, KazooState  # type: ignore[import-untyped]
from kazoo.exceptions import (  # type: ignore[import-untyped]
    BadVersionError as _KzBadVersion,
)
from kazoo.exceptions import (
    ConnectionClosedError as _KzClosed,
)
from kazoo.exceptions import (
    ConnectionLoss as _KzConnectionLoss,
)
from kazoo.exceptions import (
    KazooException as _KzException,
)
from kazoo.exceptions import (
    NodeExistsError as _KzNodeExists,
)
from kazoo.exceptions import (
    NoNodeError as _KzNoNode,
)
from kazoo.exceptions import (
    NotEmptyError as _KzNotEmpty,
)
from kazoo.exceptions import (
    RolledBackError as _KzRolledBack,
)
from kazoo.exceptions import (
    SessionExpiredError as _KzSessionExpired,
)
from kazoo.handlers.threading import (  # type: ignore[import-untyped]
    KazooTimeoutError,
    SequentialThreadingHandler,
)
from kazoo.recipe.watchers import ChildrenWatch, DataWatch  # type: ignore[import-untyped]
from kazoo.retry import KazooRetry  # type: ignore[import-untyped]

log = logging.getLogger("strom.zk")

T = TypeVar("T")

# ZooKeeper's "any version" for set/delete/check.
ANY_VERSION = -1


class ZkError(Exception):
    """Base of the errors this client raises."""


class NoNodeError(ZkError):
    pass


class NodeExistsError(ZkError):
    pass


class NotEmptyError(ZkError):
    pass


class BadVersionError(ZkError):
    """A compare-and-set lost: the znode changed since the version the caller read."""


class ZkConnectionError(ZkError):
    """No connection (or the session expired) while the call was in flight; a write may or
    may not have been applied."""


class TransactionFailed(ZkError):
    """A multi-op transaction was rolled back; `index` is the operation that failed and
    `cause` its error (one of the types above)."""

    def __init__(self, index: int, cause: ZkError) -> None:
        super().__init__(f"transaction operation {index} failed: {cause!r}")
        self.index = index
        self.cause = cause


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, _KzBadVersion):
        return BadVersionError(str(exc) or "bad version")
    if isinstance(exc, _KzNoNode):
        return NoNodeError(str(exc) or "no node")
    if isinstance(exc, _KzNodeExists):
        return NodeExistsError(str(exc) or "node exists")
    if isinstance(exc, _KzNotEmpty):
        return NotEmptyError(str(exc) or "not empty")
    if isinstance(exc, (_KzConnectionLoss, _KzSessionExpired, _KzClosed, KazooTimeoutError)):
        return ZkConnectionError(type(exc).__name__)
    if isinstance(exc, _KzException):
        return ZkError(f"{type(exc).__name__}: {exc}")
    return exc


class SessionState(enum.Enum):
    CONNECTED = "connected"
    SUSPENDED = "suspended"
    EXPIRED = "expired"
    NEW_SESSION = "new_session"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Stat:
    """The parts of a znode's stat this project uses."""

    version: int  # data version: the compare-and-set token
    cversion: int  # children version
    czxid: int  # creation transaction id: tells a re-created znode from the old one
    ephemeral_owner: int  # session id of the owner, 0 for persistent znodes
    ctime: int = 0  # creation time, ms since the epoch (change notifications expire by it)

    @classmethod
    def of(cls, stat: Any) -> Stat:
        return cls(stat.version, stat.cversion, stat.czxid, stat.ephemeralOwner, stat.ctime)


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a `transaction`: kind is "create", "set", "delete" or "check"."""

    kind: str
    path: str
    data: bytes = b""
    version: int = ANY_VERSION
    ephemeral: bool = False

    @classmethod
    def create(cls, path: str, data: bytes = b"", *, ephemeral: bool = False) -> Op:
        return cls("create", path, data, ephemeral=ephemeral)

    @classmethod
    def set(cls, path: str, data: bytes, version: int = ANY_VERSION) -> Op:
        return cls("set", path, data, version)

    @classmethod
    def delete(cls, path: str, version: int = ANY_VERSION) -> Op:
        return cls("delete", path, version=version)

    @classmethod
    def check(cls, path: str, version: int) -> Op:
        return cls("check", path, version=version)


class WatchHandle:
    """Stops a watch. kazoo only unregisters a recipe on its next firing, so a cancelled
    handle also drops anything that fires later."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _TlsHandler(SequentialThreadingHandler):  # type: ignore[misc]
    """kazoo's threading handler with connections made through our own TLS context (kazoo
    builds one from PEM file names only; the context takes PKCS12 stores and Kafka's protocol
    and cipher settings too)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self._context = context

    def create_connection(
        self,
        address: tuple[str, int],
        hostname: str | None = None,
        timeout: float | None = None,
        **_kazoo_tls_options: Any,
    ) -> ssl.SSLSocket:
        sock = socket.create_connection(address, timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return self._context.wrap_socket(sock, server_hostname=hostname or address[0])
        except BaseException:
            sock.close()
            raise


class ZkClient:
    def __init__(
        self,
        hosts: str,
        *,
        session_timeout_ms: int = 18000,
        connection_timeout_ms: int | None = None,
        client_id: tuple[int, bytes] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.hosts = hosts
        self.session_timeout_ms = session_timeout_ms
        # Kafka: zookeeper.connection.timeout.ms defaults to the session timeout.
        self.connection_timeout_ms = connection_timeout_ms or session_timeout_ms
        self._kazoo = KazooClient(
            hosts=hosts,
            timeout=session_timeout_ms / 1000,
            client_id=client_id,
            # kazoo's defaults back off up to an hour between reconnect attempts; a broker
            # must find a restarted ZooKeeper within a second or so.
            connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=1.0),
            command_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=1.0),
            **({} if tls is None else {"handler": _TlsHandler(tls), "use_ssl": True}),
        )
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="strom-zk")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Callable[[SessionState], None]] = []
        self._ephemerals: dict[str, bytes] = {}
        self._session_id: int | None = None
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connects; raises ZkConnectionError if no server answers within the connection
        timeout."""
        self._loop = asyncio.get_running_loop()
        self._kazoo.add_listener(self._kazoo_state)
        try:
            await self._run(self._kazoo.start, self.connection_timeout_ms / 1000)
        except ZkConnectionError:
            await self._run(self._kazoo.stop)
            self._executor.shutdown(wait=False)
            raise ZkConnectionError(
                f"could not connect to ZooKeeper at {self.hosts} within "
                f"{self.connection_timeout_ms} ms"
            ) from None
        self._session_id = self.session_id

    async def close(self) -> None:
        """Closes the session: ZooKeeper deletes its ephemeral znodes at once."""
        if self._closing:
            return
        self._closing = True
        # Listeners hear of it before the session ends, so nothing acts on it meanwhile.
        self._notify(SessionState.CLOSED)

        # Not in the pool: while ZooKeeper is unreachable every worker may be busy retrying a
        # read, and those reads only give up once kazoo is stopped.
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        def stop_and_close() -> None:
            try:
                self._kazoo.stop()
                self._kazoo.close()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is gone
                    loop.call_soon_threadsafe(finished)

        try:
            threading.Thread(target=stop_and_close, name="strom-zk-close", daemon=True).start()
            await done
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)
            for task in list(self._tasks):
                task.cancel()

    @property
    def session_id(self) -> int | None:
        cid = self._kazoo.client_id
        return None if cid is None else int(cid[0])

    @property
    def client_id(self) -> tuple[int, bytes] | None:
        """(session id, password): lets tests expire this session from a second client."""
        cid = self._kazoo.client_id
        return None if cid is None else (int(cid[0]), bytes(cid[1]))

    @property
    def connected(self) -> bool:
        return bool(self._kazoo.connected)

    def add_state_listener(self, callback: Callable[[SessionState], None]) -> None:
        """`callback(state)` runs on the event loop for every session state change."""
        self._listeners.append(callback)

    def remove_state_listener(self, callback: Callable[[SessionState], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    # --- plain operations ---------------------------------------------------------------

    async def create(
        self,
        path: str,
        data: bytes = b"",
        *,
        ephemeral: bool = False,
        sequential: bool = False,
        make_parents: bool = False,
    ) -> str:
        """Creates a znode and returns its path (with the sequence suffix if sequential)."""
        path_created: str = await self._run(
            self._kazoo.create,
            path,
            data,
            ephemeral=ephemeral,
            sequence=sequential,
            makepath=make_parents,
        )
        return path_created

    async def ensure_path(self, path: str) -> None:
        """Creates a persistent znode and its parents, empty, where missing."""
        await self._run(self._kazoo.retry, self._kazoo.ensure_path, path)

    async def get(
        self, path: str, *, watch: Callable[[], None] | None = None
    ) -> tuple[bytes, Stat]:
        """Data and stat of a znode. `watch` (one-shot) runs on the loop at its next change or
        when the connection drops (then the caller must re-read)."""
        watcher = None if watch is None else self._one_shot(watch)
        data, stat = await self._run(self._kazoo.retry, self._kazoo.get, path, watcher)
        return bytes(data or b""), Stat.of(stat)

    async def get_or_none(self, path: str) -> tuple[bytes, Stat] | None:
        try:
            return await self.get(path)
        except NoNodeError:
            return None

    async def exists(self, path: str) -> Stat | None:
        stat = await self._run(self._kazoo.retry, self._kazoo.exists, path)
        return None if stat is None else Stat.of(stat)

    async def children(self, path: str) -> list[str]:
        result: list[str] = await self._run(self._kazoo.retry, self._kazoo.get_children, path)
        return sorted(result)

    async def set(self, path: str, data: bytes, version: int = ANY_VERSION) -> Stat:
        """Sets data; with `version` >= 0 a compare-and-set (BadVersionError on conflict)."""
        return Stat.of(await self._run(self._kazoo.set, path, data, version))

    async def delete(
        self, path: str, version: int = ANY_VERSION, *, recursive: bool = False
    ) -> None:
        await self._run(self._kazoo.delete, path, version, recursive)

    async def transaction(self, ops: Sequence[Op]) -> list[Any]:
        """Applies `ops` atomically (ZooKeeper multi). Raises TransactionFailed naming the
        first operation that failed; nothing was applied then."""

        def commit() -> list[Any]:
            tx = self._kazoo.transaction()
            for op in ops:
                if op.kind == "create":
                    tx.create(op.path, op.data, ephemeral=op.ephemeral)
                elif op.kind == "set":
                    tx.set_data(op.path, op.data, op.version)
                elif op.kind == "delete":
                    tx.delete(op.path, op.version)
                elif op.kind == "check":
                    tx.check(op.path, op.version)
                else:
                    raise ValueError(f"unknown transaction op {op.kind!r}")
            return list(tx.commit())

        results = await self._run(commit)
        for index, result in enumerate(results):
            if isinstance(result, Exception) and not isinstance(result, _KzRolledBack):
                cause = _translate(result)
                raise TransactionFailed(
                    index, cause if isinstance(cause, ZkError) else ZkError(str(cause))
                )
        return results

    # --- watches --------------------------------------------------------------------------

    async def watch_children(self, path: str, callback: Callable[[list[str]], None]) -> WatchHandle:
        """`callback(children)` on the loop now and whenever the children change, across
        reconnects and new sessions, until the handle is cancelled. The path must exist."""
        handle = WatchHandle()

        def on_children(children: list[str]) -> bool | None:
            if handle.cancelled or self._closing:
                return False
            self._deliver(handle, callback, sorted(children))
            return None

        loop = self._require_loop()
        # The recipe reads the children once in its constructor: keep that off the loop.
        await loop.run_in_executor(
            self._executor, lambda: ChildrenWatch(self._kazoo, path, on_children)
        )
        return handle

    async def watch_data(
        self, path: str, callback: Callable[[bytes | None, Stat | None], None]
    ) -> WatchHandle:
        """`callback(data, stat)` on the loop now and on every change; (None, None) while the
        znode does not exist."""
        handle = WatchHandle()

        def on_data(data: bytes | None, stat: Any) -> bool | None:
            if handle.cancelled or self._closing:
                return False
            value = (bytes(data or b""), Stat.of(stat)) if stat is not None else (None, None)
            self._deliver(handle, lambda v: callback(*v), value)
            return None

        loop = self._require_loop()
        await loop.run_in_executor(self._executor, lambda: DataWatch(self._kazoo, path, on_data))
        return handle

    # --- ephemerals that survive session expiry ------------------------------------------

    async def register_ephemeral(self, path: str, data: bytes) -> None:
        """Creates an ephemeral znode now and again in every new session, until
        `unregister_ephemeral`. NodeExistsError if a different session owns it (another
        broker registered with the same id)."""
        self._ephemerals[path] = data
        try:
            await self._create_own_ephemeral(path, data)
        except BaseException:
            self._ephemerals.pop(path, None)
            raise

    async def update_ephemeral(self, path: str, data: bytes) -> None:
        self._ephemerals[path] = data
        await self.set(path, data)

    async def unregister_ephemeral(self, path: str) -> None:
        self._ephemerals.pop(path, None)
        with contextlib.suppress(NoNodeError):
            await self.delete(path)

    async def _create_own_ephemeral(self, path: str, data: bytes) -> None:
        try:
            await self.create(path, data, ephemeral=True, make_parents=True)
        except NodeExistsError:
            # Ours already (a create whose reply was lost, then retried)? Then keep it.
            found = await self.get_or_none(path)
            if found is None:
                await self.create(path, data, ephemeral=True, make_parents=True)
                return
            if found[1].ephemeral_owner != self.session_id:
                raise
            if found[0] != data:
                await self.set(path, data, found[1].version)

    async def _reregister_ephemerals(self, session: int | None) -> None:
        """Creates every registered ephemeral again in the new `session`. Retries (backing
        off up to a second) until each one exists, the client closes or yet another session
        replaces this one: a broker must not stay unregistered because ZooKeeper flapped."""
        pending = set(self._ephemerals)
        attempt = 0
        while pending and not self._closing and self._session_id == session:
            for path in sorted(pending):
                data = self._ephemerals.get(path)
                if data is None:  # unregistered meanwhile
                    pending.discard(path)
                    continue
                try:
                    await self._create_own_ephemeral(path, data)
                except (NodeExistsError, ZkConnectionError) as exc:
                    # NodeExists: the expired session's znode may still be disappearing.
                    if attempt % 20 == 19:
                        log.error("still cannot re-register %s: %r; retrying", path, exc)
                    continue
                pending.discard(path)
                log.info("re-registered %s in new ZooKeeper session", path)
            if pending:
                attempt += 1
                await asyncio.sleep(min(0.1 * attempt, 1.0))

    # --- plumbing -------------------------------------------------------------------------

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("ZkClient.start() has not been called")
        return self._loop

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))
        except asyncio.CancelledError:
            # A call still queued when the client closed is cancelled with the pool; the
            # caller's task itself was not cancelled, so it gets a connection error instead.
            task = asyncio.current_task()
            if self._closing and task is not None and not task.cancelling():
                raise ZkConnectionError("client closed") from None
            raise
        except RuntimeError as exc:
            if self._closing:  # the executor was shut down under us
                raise ZkConnectionError("client closed") from exc
            raise
        except Exception as exc:
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from None

    def _one_shot(self, watch: Callable[[], None]) -> Callable[[Any], None]:
        loop = self._require_loop()

        def watcher(event: Any) -> None:
            # kazoo drops every one-shot watch when the connection is lost (telling it with a
            # NONE event) and does not re-arm it on reconnect; so a NONE event also means
            # "re-read", or a change made while disconnected would go unnoticed.
            if not self._closing:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(watch)

        return watcher

    def _deliver(self, handle: WatchHandle, callback: Callable[[T], None], value: T) -> None:
        loop = self._require_loop()

        def run() -> None:
            if not handle.cancelled and not self._closing:
                try:
                    callback(value)
                except Exception:
                    log.exception("ZooKeeper watch callback failed")

        with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
            loop.call_soon_threadsafe(run)

    def _kazoo_state(self, state: str) -> None:
        # On kazoo's connection thread: must not block. Capture the session id now (it is
        # updated before CONNECTED is announced) and hand over to the loop.
        loop = self._loop
        if loop is None:
            return
        session = self.session_id
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._on_state, state, session)

    def _on_state(self, kazoo_state: str, session: int | None) -> None:
        if self._closing:
            return
        if kazoo_state == KazooState.SUSPENDED:
            self._notify(SessionState.SUSPENDED)
        elif kazoo_state == KazooState.LOST:
            self._notify(SessionState.EXPIRED)
        elif kazoo_state == KazooState.CONNECTED:
            if self._session_id is not None and session != self._session_id:
                self._session_id = session
                task = asyncio.ensure_future(self._new_session())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._session_id = session
                self._notify(SessionState.CONNECTED)

    async def _new_session(self) -> None:
        session = self._session_id
        log.warning("ZooKeeper session expired; connected with new session %x", session)
        await self._reregister_ephemerals(session)
        if not self._closing and self._session_id == session:
            self._notify(SessionState.NEW_SESSION)

    def _notify(self, state: SessionState) -> None:
        for callback in list(self._listeners):
            try:
                callback(state)
            except Exception:
                log.exception("ZooKeeper session listener failed")
