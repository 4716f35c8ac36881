"""The HTTP listener (`strom.http.listeners`): `/metrics`, `/health`, `/ready` and the web
console, served by aiohttp on the broker's own event loop.

aiohttp and prometheus_client are imported in a worker thread after the Kafka listeners are up
(together they take a few hundred milliseconds to import, aiohttp's default TLS context
included), so they delay neither the broker's start nor its clients. Handlers only read the
broker's state; `/metrics` renders its text on the loop (a scrape of a broker with thousands of
partitions takes milliseconds).

`/health` says the process is up and its event loop answers (200 always, as long as it answers
at all); `/ready` says the broker serves clients: 200 once its listeners are bound (and in
cluster mode it is registered and its ZooKeeper session is connected), 503 with the reason
while starting, stopping or cut off from ZooKeeper.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

    from strom.config import Listener
    from strom.server.broker import Broker
    from strom.server.dispatch import Dispatcher

log = logging.getLogger("strom.http")


class BrokerState:
    """What /ready reports: set by `server/app.py` as the broker starts and stops."""

    def __init__(self) -> None:
        self.serving = False
        self.stopping = False

    def not_ready_because(self, broker: Broker) -> str | None:
        if self.stopping:
            return "shutting down"
        if not self.serving:
            return "starting"
        cluster = broker.cluster
        if cluster is not None and not cluster.client.connected:
            return "ZooKeeper is unreachable"
        return None


def _import_web_stack() -> None:
    importlib.import_module("aiohttp.web")
    importlib.import_module("prometheus_client")


class HttpListener:
    def __init__(
        self,
        broker: Broker,
        dispatcher: Dispatcher,
        endpoints: list[Listener],
        state: BrokerState,
    ) -> None:
        self.broker = broker
        self.dispatcher = dispatcher
        self.endpoints = endpoints
        self.state = state
        self.bound: list[tuple[str, int]] = []
        self._runner: Any = None

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, _import_web_stack)
        from aiohttp import web

        from strom.server.http.console import add_console_routes
        from strom.server.http.prometheus import registry_for

        self.registry = registry_for(self.broker, self.dispatcher)
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        add_console_routes(app, self.broker)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runner = runner
        for endpoint in self.endpoints:
            site = web.TCPSite(runner, endpoint.host or None, endpoint.port, reuse_address=True)
            await site.start()
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            port = sockets[0].getsockname()[1] if sockets else endpoint.port
            self.bound.append((endpoint.host, port))
            log.info(
                "HTTP listening on http://%s:%d (metrics, health, console)", endpoint.host, port
            )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _health(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.json_response({"status": "ok"})

    async def _ready(self, request: web.Request) -> web.Response:
        from aiohttp import web

        reason = self.state.not_ready_because(self.broker)
        if reason is None:
            return web.json_response({"status": "ready"})
        return web.Response(
            status=503,
            text=json.dumps({"status": "not ready", "reason": reason}),
            content_type="application/json",
        )
