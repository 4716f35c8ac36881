"""The console's topic pages: the topic list with its create form, and one topic's partitions
(leaders, ISR, offsets, sizes), throughput chart, configs and the forms that change its configs
or delete it. The form posts themselves are handled by `Console`."""

from __future__ import annotations

from strom.client import Client
from strom.client import admin as client_admin
from strom.server.http.console_pages import Html, facts, field, join, link, section, table, tag


async def topic_list(client: Client, message: Html | None) -> Html:
    metadata = await client.metadata(None)
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


async def topic(client: Client, name: str, message: Html | None) -> Html:
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


def config_lines(text: str) -> dict[str, str]:
    """Configs as a form gives them: key=value, one a line or comma-separated."""
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


def _bytes(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def _create_form() -> Html:
    return tag(
        "form",
        join(
            [
                field("Name", Html('<input name="name" required pattern="[a-zA-Z0-9._-]+">')),
                field(
                    "Partitions",
                    Html(
                        '<input name="partitions" type="number" min="1" '
                        'placeholder="broker default">'
                    ),
                ),
                field(
                    "Replication factor",
                    Html(
                        '<input name="replication_factor" '
                        'type="number" min="1" '
                        'placeholder="broker default">'
                    ),
                ),
                field(
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
                field(
                    "Set (key=value, one a line)", Html('<textarea name="set" rows="2"></textarea>')
                ),
                field("Back to default (keys, comma-separated)", Html('<input name="delete">')),
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
