"""The web console: brokers, topics (partitions, offsets, sizes, configs, throughput), a message
browser, consumer groups and share groups with lag; creating and deleting topics and editing
their configs.

It is served by the broker's HTTP listener and reads the cluster the way any client does:
through `strom.client`, connected to this broker's own Kafka listener, so in a cluster it
shows every broker's topics and groups, not only this one's. The throughput charts are the
exception: they chart this broker's own counters (`throughput.py`).
"""

from __future__ import annotations

import asyncio
import base64
import json
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from strom.client import Client, ClientError, KafkaError
from strom.client import admin as client_admin
from strom.client import groups as client_groups
from strom.client.fetcher import Fetcher, resolve_positions
from strom.protocol.errors import ErrorCode
from strom.server.http.console_pages import (
    Html,
    facts,
    h,
    join,
    link,
    notice,
    page,
    section,
    table,
    tag,
)
from strom.server.http.throughput import ThroughputSampler

if TYPE_CHECKING:
    from strom.protocol.records.codec import Record
    from strom.server.broker import Broker

MAX_MESSAGES = 200
_STATIC = resources.files("strom.server.http").joinpath("static")
_CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".md": "text/plain"}


def _ms(value: int) -> str:
    from datetime import datetime

    if value < 0:
        return ""
    return datetime.fromtimestamp(value / 1000).astimezone().isoformat(timespec="milliseconds")


def _bytes(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


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

    async def _guarded(self, request: web.Request, title: str, build: Any) -> web.Response:
        """Render `build()`; a client error becomes a page saying what went wrong."""
        try:
            main = await build()
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
        async def build() -> Html:
            client = await self.client()
            info = await client_admin.describe_cluster(client)
            metadata = await client.metadata(None)
            topics = [t for t in metadata.topics.values() if not t.internal]
            partitions = sum(len(t.partitions) for t in topics)
            groups = await client_groups.list_groups(client)
            return join(
                [
                    facts(
                        [
                            ("Cluster id", info.cluster_id),
                            ("Controller", info.controller_id),
                            ("Brokers", len(info.brokers)),
                            ("Topics", len(topics)),
                            ("Partitions", partitions),
                            ("Groups", len(groups)),
                        ]
                    ),
                    section("Brokers", self._brokers_table(info)),
                ]
            )

        return await self._guarded(request, "Overview", build)

    def _brokers_table(self, info: client_admin.ClusterInfo) -> Html:
        return table(
            ["Id", "Host", "Port", "Rack", "Role", "APIs"],
            [
                [
                    link(f"/ui/brokers/{node}", node),
                    host,
                    port,
                    rack or "",
                    "controller" if node == info.controller_id else "",
                    len(info.api_versions.get(node, {})),
                ]
                for node, host, port, rack in info.brokers
            ],
            numeric=["Port", "APIs"],
            id_="brokers",
        )

    async def brokers(self, request: web.Request) -> web.Response:
        async def build() -> Html:
            info = await client_admin.describe_cluster(await self.client())
            return self._brokers_table(info)

        return await self._guarded(request, "Brokers", build)

    async def broker_configs(self, request: web.Request) -> web.Response:
        node = request.match_info["id"]
        if not node.isdigit():
            raise web.HTTPNotFound()

        async def build() -> Html:
            configs = await client_admin.describe_configs(
                await self.client(), client_admin.RESOURCE_BROKER, node
            )
            return table(
                ["Config", "Value", "Source"],
                [[c.name, "(sensitive)" if c.sensitive else c.value, c.source] for c in configs],
                id_="configs",
            )

        return await self._guarded(request, f"Broker {node}", build)

    # -- topics -----------------------------------------------------------------------------

    async def topics(self, request: web.Request, message: Html | None = None) -> web.Response:
        async def build() -> Html:
            metadata = await (await self.client()).metadata(None)
            rows = [
                [
                    link(f"/ui/topics/{t.name}", t.name),
                    len(t.partitions),
                    max((len(p.replicas) for p in t.partitions.values()), default=0),
                    sum(1 for p in t.partitions.values() if len(p.isr) < len(p.replicas)),
                    "internal" if t.internal else "",
                ]
                for t in sorted(metadata.topics.values(), key=lambda t: (t.internal, t.name))
            ]
            return join(
                [
                    message or "",
                    table(
                        ["Topic", "Partitions", "Replicas", "Under-replicated", ""],
                        rows,
                        numeric=["Partitions", "Replicas", "Under-replicated"],
                        id_="topics",
                    ),
                    section("Create a topic", _create_form()),
                ]
            )

        return await self._guarded(request, "Topics", build)

    async def create_topic(self, request: web.Request) -> web.Response:
        form = await request.post()
        name = str(form.get("name", "")).strip()
        try:
            partitions = int(str(form.get("partitions") or -1))
            replication = int(str(form.get("replication_factor") or -1))
            configs = _config_lines(str(form.get("configs", "")))
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

        async def build() -> Html:
            client = await self.client()
            metadata = await client.metadata([name])
            info = metadata.topic(name)
            parts = sorted(info.partitions)
            tps = [(name, p) for p in parts]
            starts = await client_admin.list_offsets(client, tps, client_admin.EARLIEST)
            ends = await client_admin.list_offsets(client, tps, client_admin.LATEST)
            brokers = {b for p in info.partitions.values() for b in p.replicas}
            sizes = await client_admin.replica_sizes(client, name, parts, brokers)
            configs = await client_admin.describe_configs(client, client_admin.RESOURCE_TOPIC, name)
            partition_rows = [
                [
                    p.partition,
                    p.leader,
                    ",".join(map(str, p.replicas)),
                    ",".join(map(str, p.isr)),
                    starts[(name, p.partition)].offset,
                    ends[(name, p.partition)].offset,
                    _bytes(sizes.get((p.partition, p.leader))),
                    link(f"/ui/topics/{name}/messages?partition={p.partition}", "browse"),
                ]
                for p in (info.partitions[i] for i in parts)
            ]
            return join(
                [
                    message or "",
                    facts(
                        [
                            ("Partitions", len(parts)),
                            (
                                "Records (end - start)",
                                sum(ends[tp].offset - starts[tp].offset for tp in tps),
                            ),
                            ("Internal", "yes" if info.internal else "no"),
                        ]
                    ),
                    section(
                        "Throughput on this broker",
                        tag(
                            "div",
                            "",
                            class_="chart",
                            data_src=f"/ui/topics/{name}/throughput.json",
                            id="throughput",
                        ),
                    ),
                    section(
                        "Partitions",
                        table(
                            [
                                "Partition",
                                "Leader",
                                "Replicas",
                                "ISR",
                                "Log start",
                                "High watermark",
                                "Size",
                                "",
                            ],
                            partition_rows,
                            numeric=["Partition", "Leader", "Log start", "High watermark", "Size"],
                            id_="partitions",
                        ),
                    ),
                    section(
                        "Configs",
                        table(
                            ["Config", "Value", "Source"],
                            [
                                [c.name, "(sensitive)" if c.sensitive else c.value, c.source]
                                for c in configs
                            ],
                            id_="configs",
                        ),
                        _config_form(name),
                    ),
                    section("Danger zone", _delete_form(name)),
                ]
            )

        return await self._guarded(request, f"Topic {name}", build)

    async def alter_topic_configs(self, request: web.Request) -> web.Response:
        name = request.match_info["topic"]
        form = await request.post()
        try:
            to_set = _config_lines(str(form.get("set", "")))
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

    # -- the message browser ----------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.Response:
        name = request.match_info["topic"]
        query = request.query

        async def build() -> Html:
            client = await self.client()
            metadata = await client.metadata([name])
            info = metadata.topic(name)
            try:
                partition = int(query.get("partition", "0"))
                count = max(1, min(MAX_MESSAGES, int(query.get("count", "20"))))
                offset_text = query.get("offset", "").strip()
                time_text = query.get("timestamp", "").strip()
            except ValueError as exc:
                return notice(f"bad query: {exc}", error=True)
            shown_as = query.get("as", "text")
            if partition not in info.partitions:
                return notice(f"{name} has no partition {partition}", error=True)
            tp = (name, partition)
            start: int | str
            if time_text:
                start = f"@{_parse_time(time_text)}"
            elif offset_text:
                start = int(offset_text) if offset_text.lstrip("-").isdigit() else offset_text
                if isinstance(start, int) and start < 0:
                    start = str(start)
            else:
                start = "earliest"
            positions = await resolve_positions(client, [tp], start)
            ends = await client_admin.list_offsets(client, [tp], client_admin.LATEST)
            end = ends[tp].offset
            fetcher = Fetcher(client, positions, max_wait_ms=0)
            records: list[Record] = []
            while len(records) < count and fetcher.positions[tp] < end:
                fetched = await fetcher.fetch()
                got = [r for f in fetched for r in f.records if r.offset < end]
                if not got and all(not f.records for f in fetched):
                    break
                records.extend(got)
            rows = [
                [
                    r.offset,
                    _ms(r.timestamp),
                    _show(r.key, shown_as),
                    _show(r.value, shown_as),
                    join(tag("span", f"{k}={_text(v)}", class_="header") for k, v in r.headers),
                ]
                for r in records[:count]
            ]
            return join(
                [
                    _browse_form(
                        name,
                        sorted(info.partitions),
                        partition,
                        offset_text,
                        time_text,
                        count,
                        shown_as,
                    ),
                    tag("p", f"partition {partition}: log end offset {end}", class_="hint"),
                    table(
                        ["Offset", "Timestamp", "Key", "Value", "Headers"],
                        rows,
                        numeric=["Offset"],
                        id_="messages",
                        empty="no records there",
                    ),
                ]
            )

        return await self._guarded(request, f"Messages of {name}", build)

    # -- groups -----------------------------------------------------------------------------

    async def groups(self, request: web.Request) -> web.Response:
        async def build() -> Html:
            client = await self.client()
            listed = await client_groups.list_groups(client)
            rows = []
            for g in listed:
                total: int | str = ""
                members: int | str = ""
                try:
                    description = await client_groups.describe_group(client, g.group_id)
                    lags = await client_groups.group_lag(client, g.group_id, description)
                    total = sum(lag.lag or 0 for lag in lags)
                    members = len(description.members)
                except ClientError:
                    pass  # shown without members and lag
                rows.append(
                    [
                        link(f"/ui/groups/{g.group_id}", g.group_id),
                        g.state,
                        g.group_type or g.protocol_type,
                        members,
                        total,
                        g.coordinator,
                    ]
                )
            return table(
                ["Group", "State", "Type", "Members", "Lag", "Coordinator"],
                rows,
                numeric=["Members", "Lag", "Coordinator"],
                id_="groups",
                empty="no groups",
            )

        return await self._guarded(request, "Groups (consumer and share)", build)

    async def group(self, request: web.Request) -> web.Response:
        group_id = request.match_info["group"]

        async def build() -> Html:
            client = await self.client()
            description = await client_groups.describe_group(client, group_id)
            lags = await client_groups.group_lag(client, group_id, description)
            # A share group's position is its share-partition start offset.
            share = description.protocol_type == "share"
            position = "Start offset" if share else "Committed"
            return join(
                [
                    facts(
                        [
                            ("State", description.state),
                            ("Protocol", description.protocol or description.protocol_type),
                            ("Coordinator", description.coordinator),
                            ("Total lag", sum(lag.lag or 0 for lag in lags)),
                        ]
                    ),
                    section(
                        "Members",
                        table(
                            ["Member", "Client id", "Host", "Partitions"],
                            [
                                [
                                    m.member_id,
                                    m.client_id,
                                    m.client_host,
                                    " ".join(f"{t}-{p}" for t, p in m.assignment),
                                ]
                                for m in description.members
                            ],
                            id_="members",
                            empty="no active members",
                        ),
                    ),
                    section(
                        "Lag",
                        table(
                            ["Topic", "Partition", position, "Log end", "Lag", "Member"],
                            [
                                [
                                    lag.topic,
                                    lag.partition,
                                    "" if lag.committed is None else lag.committed,
                                    lag.log_end,
                                    "" if lag.lag is None else lag.lag,
                                    lag.member_id or "",
                                ]
                                for lag in lags
                            ],
                            numeric=["Partition", position, "Log end", "Lag"],
                            id_="lag",
                            empty="no committed offsets" if not share else "nothing consumed yet",
                        ),
                    ),
                ]
            )

        return await self._guarded(request, f"Group {group_id}", build)


# -- forms and small helpers ----------------------------------------------------------------


def _config_lines(text: str) -> dict[str, str]:
    out = {}
    for line in text.replace(",", "\n").splitlines():
        line = line.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{line!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def _parse_time(text: str) -> int:
    from datetime import datetime

    if text.isdigit():
        return int(text)
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _text(data: bytes | None) -> str:
    return "" if data is None else bytes(data).decode("utf-8", errors="replace")


def _show(data: bytes | None, shown_as: str) -> Html:
    if data is None:
        return tag("span", "null", class_="null")
    raw = bytes(data)
    if shown_as == "hex":
        return tag("code", raw.hex(" "))
    if shown_as == "base64":
        return tag("code", base64.b64encode(raw).decode())
    if shown_as == "json":
        try:
            return tag("pre", json.dumps(json.loads(raw), indent=2, ensure_ascii=False))
        except ValueError:
            pass  # not JSON: shown as text
    return tag("span", raw.decode("utf-8", errors="replace"))


def _field(label: str, control: Html) -> Html:
    return tag("label", h(label) + control)


def _create_form() -> Html:
    return tag(
        "form",
        join(
            [
                _field("Name", Html('<input name="name" required pattern="[a-zA-Z0-9._-]+">')),
                _field(
                    "Partitions",
                    Html(
                        '<input name="partitions" type="number" min="1" '
                        'placeholder="broker default">'
                    ),
                ),
                _field(
                    "Replication factor",
                    Html(
                        '<input name="replication_factor" '
                        'type="number" min="1" '
                        'placeholder="broker default">'
                    ),
                ),
                _field(
                    "Configs (key=value, one a line)",
                    Html('<textarea name="configs" rows="2"></textarea>'),
                ),
                Html('<button type="submit">Create topic</button>'),
            ]
        ),
        hx_post="/ui/topics",
        hx_target="#main",
        id="create-topic",
    )


def _config_form(topic: str) -> Html:
    return tag(
        "form",
        join(
            [
                _field(
                    "Set (key=value, one a line)", Html('<textarea name="set" rows="2"></textarea>')
                ),
                _field("Back to default (keys, comma-separated)", Html('<input name="delete">')),
                Html('<button type="submit">Change configs</button>'),
            ]
        ),
        hx_post=f"/ui/topics/{topic}/configs",
        hx_target="#main",
        id="edit-configs",
    )


def _delete_form(topic: str) -> Html:
    return tag(
        "form",
        Html('<button type="submit" class="danger">Delete this topic</button>'),
        hx_post=f"/ui/topics/{topic}/delete",
        hx_target="#main",
        hx_confirm=f"Delete topic {topic} and all its records?",
        id="delete-topic",
    )


def _browse_form(
    topic: str,
    partitions: list[int],
    partition: int,
    offset: str,
    timestamp: str,
    count: int,
    shown_as: str,
) -> Html:
    options = join(tag("option", p, value=p, selected=p == partition) for p in partitions)
    shows = join(
        tag("option", s, value=s, selected=s == shown_as) for s in ("text", "json", "hex", "base64")
    )
    return tag(
        "form",
        join(
            [
                _field("Partition", tag("select", options, name="partition")),
                _field(
                    "Offset (earliest, latest, N, -N)",
                    Html(f'<input name="offset" value="{h(offset)}" placeholder="earliest">'),
                ),
                _field(
                    "or time (ISO 8601 or ms)",
                    Html(f'<input name="timestamp" value="{h(timestamp)}">'),
                ),
                _field(
                    "Count",
                    Html(
                        f'<input name="count" type="number" min="1" '
                        f'max="{MAX_MESSAGES}" value="{count}">'
                    ),
                ),
                _field("Show as", tag("select", shows, name="as")),
                Html('<button type="submit">Show</button>'),
            ]
        ),
        hx_get=f"/ui/topics/{topic}/messages",
        hx_target="#main",
        hx_push_url="true",
        id="browse",
        class_="inline",
    )


def add_console_routes(app: web.Application, broker: Broker) -> Console:
    console = Console(broker)
    console.add_routes(app)
    return console
