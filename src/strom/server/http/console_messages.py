"""The console's message browser: up to MAX_MESSAGES records of one partition from an offset
(earliest, latest, N, -N from the end) or a time, read with `strom.client`'s fetcher up to the
log end offset as it was when asked, keys and values shown as text, JSON, hex or base64."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from strom.client import Client
from strom.client import admin as client_admin
from strom.client.fetcher import Fetcher, resolve_positions
from strom.server.http.console_pages import Html, field, h, join, notice, table, tag

if TYPE_CHECKING:
    from strom.protocol.records.codec import Record

MAX_MESSAGES = 200


async def messages(client: Client, name: str, query: Mapping[str, str]) -> Html:
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


def _ms(value: int) -> str:
    from datetime import datetime

    if value < 0:
        return ""
    return datetime.fromtimestamp(value / 1000).astimezone().isoformat(timespec="milliseconds")


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
                field("Partition", tag("select", options, name="partition")),
                field(
                    "Offset (earliest, latest, N, -N)",
                    Html(f'<input name="offset" value="{h(offset)}" placeholder="earliest">'),
                ),
                field(
                    "or time (ISO 8601 or ms)",
                    Html(f'<input name="timestamp" value="{h(timestamp)}">'),
                ),
                field(
                    "Count",
                    Html(
                        f'<input name="count" type="number" min="1" '
                        f'max="{MAX_MESSAGES}" value="{count}">'
                    ),
                ),
                field("Show as", tag("select", shows, name="as")),
                Html('<button type="submit">Show</button>'),
            ]
        ),
        hx_get=f"/ui/topics/{topic}/messages",
        hx_target="#main",
        hx_push_url="true",
        id="browse",
        class_="inline",
    )
