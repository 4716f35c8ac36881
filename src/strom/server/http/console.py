"""The web console: brokers, topics (partitions, offsets, sizes, configs, throughput), a message
browser, consumer groups and share groups with lag; creating and deleting topics and editing
their configs.

It is served by the broker's HTTP listener and reads the cluster the way any client does:
through `strom.client`, connected to this broker's own Kafka listener, so in a cluster it
shows every broker's topics and groups, not only this one's. The throughput charts are the
exception: they chart this broker's own counters (`throughput.py`).

This module holds the routes, the client and the page around each view; the views are built
by console_brokers, console_topics, console_messages and console_groups from the client, and
the HTML by console_pages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING

from aiohttp import web

from strom.client import Client, ClientError, KafkaError
from strom.client import admin as client_admin
from strom.protocol.errors import ErrorCode
from strom.server.http import console_brokers, console_groups, console_messages, console_topics
from strom.server.http.console_pages import Html, notice, page
from strom.server.http.console_topics import config_lines
from strom.server.http.throughput import ThroughputSampler

if TYPE_CHECKING:
    from strom.server.broker import Broker

_STATIC = resources.files("strom.server.http").joinpath("static")
_CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".md": "text/plain"}

View = Callable[[Client], Awaitable[Html]]


class Console:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.throughput = ThroughputSampler(broker.metrics)
        self._client: Client | None = None
        self._client_lock = asyncio.Lock()

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self.root)
        r.add_get("/ui", self.overview)
        r.add_get("/ui/brokers", self.brokers)
        r.add_get("/ui/brokers/{id}", self.broker_configs)
        r.add_get("/ui/topics", self.topics)
        r.add_post("/ui/topics", self.create_topic)
        r.add_get("/ui/topics/{topic}", self.topic)
        r.add_post("/ui/topics/{topic}/configs", self.alter_topic_configs)
        r.add_post("/ui/topics/{topic}/delete", self.delete_topic)
        r.add_get("/ui/topics/{topic}/messages", self.messages)
        r.add_get("/ui/topics/{topic}/throughput.json", self.topic_throughput)
        r.add_get("/ui/groups", self.groups)
        r.add_get("/ui/groups/{group}", self.group)
        r.add_get("/static/{path:.+}", self.static)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)

    async def _on_startup(self, _app: web.Application) -> None:
        self.throughput.start()

    async def _on_cleanup(self, _app: web.Application) -> None:
        self.throughput.stop()
        if self._client is not None:
            await self._client.close()

    async def client(self) -> Client:
        """A client of this broker's own first data-plane listener, opened on first use."""
        async with self._client_lock:
            if self._client is None:
                listener = self.broker.config.data_plane_listeners[0]
                host = listener.host if listener.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
                port = self.broker.bound_ports.get(listener.name, listener.port)
                self._client = Client(f"{host}:{port}", client_id="strom-console")
            return self._client

    # -- plumbing ---------------------------------------------------------------------------

    async def _page(self, request: web.Request, title: str, main: Html) -> web.Response:
        client = await self.client()
        cluster_id = client.metadata_cache.cluster_id if client.metadata_cache else None
        body = page(title, main, cluster_id=cluster_id, fragment="HX-Request" in request.headers)
        return web.Response(text=body, content_type="text/html")

    async def _guarded(self, request: web.Request, title: str, view: View) -> web.Response:
        """Render `view`; a client error becomes a page saying what went wrong."""
        try:
            main = await view(await self.client())
        except KafkaError as exc:
            status = 404 if exc.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION else 502
            return await self._error_page(request, title, str(exc), status)
        except ClientError as exc:
            return await self._error_page(request, title, str(exc), 502)
        return await self._page(request, title, main)

    async def _error_page(
        self, request: web.Request, title: str, message: str, status: int
    ) -> web.Response:
        response = await self._page(request, title, notice(message, error=True))
        response.set_status(status)
        return response

    async def root(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui")

    async def static(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        if ".." in path.split("/"):
            raise web.HTTPNotFound()
        resource = _STATIC.joinpath(*path.split("/"))
        if not resource.is_file():
            raise web.HTTPNotFound()
        suffix = "." + path.rsplit(".", 1)[-1]
        return web.Response(
            body=resource.read_bytes(),
            content_type=_CONTENT_TYPES.get(suffix, "application/octet-stream"),
            headers={"Cache-Control": "max-age=3600"},
        )

    # -- brokers ----------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.Response:
        return await self._guarded(request, "Overview", console_brokers.overview)

    async def brokers(self, request: web.Request) -> web.Response:
        return await self._guarded(request, "Brokers", console_brokers.brokers)

    async def broker_configs(self, request: web.Request) -> web.Response:
        node = request.match_info["id"]
        if not node.isdigit():
            raise web.HTTPNotFound()
        return await self._guarded(
            request, f"Broker {node}", lambda client: console_brokers.broker_configs(client, node)
        )

    # -- topics -----------------------------------------------------------------------------

    async def topics(self, request: web.Request, message: Html | None = None) -> web.Response:
        return await self._guarded(
            request, "Topics", lambda client: console_topics.topic_list(client, message)
        )

    async def create_topic(self, request: web.Request) -> web.Response:
        form = await request.post()
        name = str(form.get("name", "")).strip()
        try:
            partitions = int(str(form.get("partitions") or -1))
            replication = int(str(form.get("replication_factor") or -1))
            configs = config_lines(str(form.get("configs", "")))
        except ValueError as exc:
            return await self.topics(request, notice(f"not created: {exc}", error=True))
        try:
            created = await client_admin.create_topic(
                await self.client(),
                name,
                partitions=partitions,
                replication_factor=replication,
                configs=configs,
            )
        except ClientError as exc:
            return await self.topics(request, notice(f"not created: {exc}", error=True))
        return await self.topics(
            request,
            notice(f"created {created.name} with {created.partitions} partitions"),
        )

    async def topic(self, request: web.Request, message: Html | None = None) -> web.Response:
        name = request.match_info["topic"]
        return await self._guarded(
            request, f"Topic {name}", lambda client: console_topics.topic(client, name, message)
        )

    async def alter_topic_configs(self, request: web.Request) -> web.Response:
        name = request.match_info["topic"]
        form = await request.post()
        try:
            to_set = config_lines(str(form.get("set", "")))
        except ValueError as exc:
            return await self.topic(request, notice(f"not changed: {exc}", error=True))
        to_delete = [k.strip() for k in str(form.get("delete", "")).split(",") if k.strip()]
        if not to_set and not to_delete:
            return await self.topic(request, notice("nothing to change", error=True))
        try:
            await client_admin.alter_configs(
                await self.client(), client_admin.RESOURCE_TOPIC, name, to_set, to_delete
            )
        except ClientError as exc:
            return await self.topic(request, notice(f"not changed: {exc}", error=True))
        changed = [f"{k}={v}" for k, v in to_set.items()] + [f"{k} (default)" for k in to_delete]
        return await self.topic(request, notice("changed " + ", ".join(changed)))

    async def delete_topic(self, request: web.Request) -> web.Response:
        name = request.match_info["topic"]
        results = await client_admin.delete_topics(await self.client(), [name])
        error = results.get(name)
        if error is not None:
            return await self.topic(request, notice(f"not deleted: {error}", error=True))
        response = await self.topics(request, notice(f"deleted {name}"))
        response.headers["HX-Push-Url"] = "/ui/topics"
        return response

    async def topic_throughput(self, request: web.Request) -> web.Response:
        return web.json_response(self.throughput.rates(request.match_info["topic"]))

    async def messages(self, request: web.Request) -> web.Response:
        name = request.match_info["topic"]
        query = request.query
        return await self._guarded(
            request,
            f"Messages of {name}",
            lambda client: console_messages.messages(client, name, query),
        )

    # -- groups -----------------------------------------------------------------------------

    async def groups(self, request: web.Request) -> web.Response:
        return await self._guarded(request, "Groups (consumer and share)", console_groups.groups)

    async def group(self, request: web.Request) -> web.Response:
        group_id = request.match_info["group"]
        return await self._guarded(
            request, f"Group {group_id}", lambda client: console_groups.group(client, group_id)
        )


def add_console_routes(app: web.Application, broker: Broker) -> Console:
    console = Console(broker)
    console.add_routes(app)
    return console
