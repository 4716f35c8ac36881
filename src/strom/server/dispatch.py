"""From a request frame to a response frame.

Only a framing violation closes a connection: an unparsable header, an unknown API key, a
version no handler covers (except ApiVersions, which answers UNSUPPORTED_VERSION as Kafka
does so that clients can fall back), or a body that does not decode; a handler whose
answer, as Kafka's, is to close it (`CloseConnection`); and an API whose code cannot be
imported on its first request even with the descriptor reserve (descriptors.py). Everything a handler can
express as a Kafka error code goes back as a response.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from strom.protocol.errors import ErrorCode, ProtocolError
from strom.protocol.framing import encode_response, parse_request
from strom.protocol.messages import API_SPECS
from strom.protocol.primitives import Reader
from strom.server.connections import Connections
from strom.server.context import RequestContext
from strom.server.descriptors import reserve
from strom.server.network import Chunks, KafkaConnection
from strom.server.registry import CloseConnection, handler_for
from strom.server.throttle import (
    client_throttles,
    request_throttle,
    set_throttle_time,
)

if TYPE_CHECKING:
    from strom.server.broker import Broker

log = logging.getLogger("strom.dispatch")

API_VERSIONS_KEY = 18


class Dispatcher:
    def __init__(self, broker: Broker, connections: Connections | None = None) -> None:
        self.broker = broker
        self.connections = connections if connections is not None else Connections(broker.config)
        # API keys whose handler and message modules are imported.
        self._loaded: set[int] = set()

    def connection_opened(self, conn: KafkaConnection) -> bool:
        self.connections.reconfigure(self.broker.config)
        if not self.connections.admit(conn):
            return False
        self.broker.metrics.connection_opened(conn.listener_name)
        return True

    def connection_closed(self, conn: KafkaConnection) -> None:
        if self.connections.release(conn):
            self.broker.metrics.connection_closed(conn.listener_name)
        self.broker.shares.connection_closed(_connection_id(conn))

    def dispatch(self, conn: KafkaConnection, frame: bytearray) -> None:
        started = time.perf_counter()
        try:
            parsed = parse_request(memoryview(frame))
        except ProtocolError as exc:
            conn.close(f"malformed request header: {exc}", kind="malformed request")
            return
        api_key, version = parsed.api_key, parsed.api_version
        if api_key not in self._loaded:
            try:
                reserve.run(lambda: _load_api(api_key))
            except OSError as exc:
                conn.close(f"could not load the code for api key {api_key}: {exc}")
                return
            self._loaded.add(api_key)
        handler = handler_for(api_key)
        spec = API_SPECS.get(api_key)
        if handler is None or spec is None:
            conn.close(
                f"unknown or unsupported api key {api_key} (version {version})",
                kind="malformed request",
            )
            return
        if not handler.min_version <= version <= handler.max_version:
            if api_key == API_VERSIONS_KEY:
                conn.respond_now(self._unsupported_api_versions(parsed.correlation_id))
            else:
                conn.close(
                    f"{spec.name} version {version} is not supported "
                    f"(this broker handles {handler.min_version}-{handler.max_version})"
                )
            return
        try:
            # Bytes after the message are ignored, as Kafka does: librdkafka's Metadata v12
            # request carries three of them.
            request = spec.request.read(Reader(parsed.body), version)
        except ProtocolError as exc:
            conn.close(f"malformed {spec.name} v{version} request: {exc}", kind="malformed request")
            return
        ctx = RequestContext(
            broker=self.broker,
            api_key=api_key,
            api_version=version,
            correlation_id=parsed.correlation_id,
            client_id=parsed.client_id,
            peer=conn.peer,
            frame=frame,
            listener=conn.listener_name,
            principal=conn.principal,
            connection_id=_connection_id(conn),
        )
        try:
            result = handler.fn(ctx, request)
        except CloseConnection as exc:
            self._give_back(ctx)
            conn.close(str(exc))
            return
        except Exception:
            self._give_back(ctx)
            log.exception("%s v%d from %s failed", spec.name, version, conn.peer)
            conn.close(f"internal error while handling {spec.name}")
            return
        written = functools.partial(self._give_back, ctx)
        # The time spent here counts against a request_percentage quota (not the waiting of
        # a long poll or of acks=all).
        throttle = self._throttle(ctx, conn, time.perf_counter() - started)
        if isinstance(result, Awaitable):
            conn.respond_later(
                asyncio.ensure_future(self._finish(ctx, conn, result, started, throttle)), written
            )
            return
        if throttle:
            set_throttle_time(result, throttle)
            if not client_throttles(api_key, version):
                answer = asyncio.ensure_future(self._later(ctx, result, throttle))
                conn.respond_later(answer, written)
                self.broker.metrics.request_done(api_key, started)
                return
        conn.respond_now(self._encode(ctx, result), written)
        self.broker.metrics.request_done(api_key, started)

    def _throttle(self, ctx: RequestContext, conn: KafkaConnection, handled_s: float) -> int:
        """The throttle time of a request (bandwidth counted by its handler, request time);
        the connection is muted for it."""
        throttle = max(ctx.throttle_ms, request_throttle(ctx, handled_s))
        if throttle > 0:
            ctx.throttle_ms = throttle
            conn.throttle(throttle)
            self.broker.metrics.throttled(ctx.api_key, throttle)
        return throttle

    async def _later(self, ctx: RequestContext, response: Any, throttle_ms: int) -> Chunks | None:
        """Old clients do not wait by themselves: the answer waits the throttle time."""
        await asyncio.sleep(throttle_ms / 1000.0)
        return self._encode(ctx, response)

    def _give_back(self, ctx: RequestContext) -> None:
        """A fetch's share of the response budget, once its answer counts as unsent bytes."""
        if ctx.response_charge:
            self.broker.response_budget.give_back(ctx.response_charge)
            ctx.response_charge = 0

    async def _finish(
        self,
        ctx: RequestContext,
        conn: KafkaConnection,
        pending: Awaitable[Any],
        started: float,
        throttle_ms: int,
    ) -> Chunks | None:
        try:
            response = await pending
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("request %d (api key %d) failed", ctx.correlation_id, ctx.api_key)
            raise
        # A handler may count bandwidth once its answer is ready (a long-polled fetch).
        if ctx.throttle_ms > throttle_ms:
            throttle_ms = ctx.throttle_ms
            conn.throttle(throttle_ms)
        if throttle_ms:
            set_throttle_time(response, throttle_ms)
            if not client_throttles(ctx.api_key, ctx.api_version):
                await asyncio.sleep(throttle_ms / 1000.0)
        encoded = self._encode(ctx, response)
        self.broker.metrics.request_done(ctx.api_key, started)
        return encoded

    @staticmethod
    def _encode(ctx: RequestContext, response: Any) -> Chunks | None:
        if response is None:
            return None
        return encode_response(ctx.api_key, ctx.api_version, ctx.correlation_id, response)

    def _unsupported_api_versions(self, correlation_id: int) -> Chunks:
        from strom.server.handlers.api_versions import supported_api_versions

        response = supported_api_versions(ErrorCode.UNSUPPORTED_VERSION)
        return encode_response(API_VERSIONS_KEY, 0, correlation_id, response)


def _load_api(api_key: int) -> None:
    """Import what answering `api_key` needs: its handler module (which registers it) and its
    request and response classes."""
    if handler_for(api_key) is None:
        return
    spec = API_SPECS.get(api_key)
    if spec is not None:
        spec.request  # noqa: B018 - the property imports the module
        spec.response  # noqa: B018


def _connection_id(conn: KafkaConnection) -> int:
    """A connection's id for the state tied to it. `id()` is unique while the connection
    lives, and that state is dropped when it closes, before the id can be reused."""
    return id(conn)
