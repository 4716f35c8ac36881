"""HTML of the web console: the page layout and small builders, every value escaped.

Pages are rendered on the server; htmx (vendored, `static/vendor/`) swaps the main section when
a link or form inside it is followed, and the browser's history follows along. A request made
by htmx (`HX-Request` header) gets the main section only, a direct one the whole page.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

HTMX = "/static/vendor/htmx-2.0.11.min.js"
UPLOT_JS = "/static/vendor/uPlot-1.6.32.iife.min.js"
UPLOT_CSS = "/static/vendor/uPlot-1.6.32.min.css"

NAV = (
    ("/ui", "Overview"),
    ("/ui/topics", "Topics"),
    ("/ui/groups", "Groups"),
    ("/ui/brokers", "Brokers"),
)


class Html(str):
    """Markup that is already safe: not escaped again. Adding text to it escapes the text."""

    __slots__ = ()

    def __add__(self, other: object) -> Html:
        return Html(str.__add__(self, h(other)))

    def __radd__(self, other: object) -> Html:
        return Html(str.__add__(h(other), self))


def h(value: object) -> Html:
    """A value as escaped text (markup passes through)."""
    if isinstance(value, Html):
        return value
    return Html(escape("" if value is None else str(value)))


def join(parts: Iterable[object]) -> Html:
    return Html("".join(h(p) for p in parts))


def tag(element: str, body: object = "", /, **attrs: object) -> Html:
    rendered = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{escape(str(v))}"'
        for k, v in attrs.items()
        if v is not None and v is not False
    )
    return Html(f"<{element}{rendered}>{h(body)}</{element}>")


def link(href: str, text: object) -> Html:
    return tag("a", text, href=href, hx_get=href, hx_target="#main", hx_push_url="true")


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    numeric: Sequence[str] = (),
    id_: str | None = None,
    empty: str = "nothing here yet",
) -> Html:
    head = join(tag("th", c, class_="num" if c in numeric else None) for c in columns)
    body_rows = []
    for row in rows:
        cells = join(
            tag("td", cell, class_="num" if column in numeric else None)
            for column, cell in zip(columns, row, strict=True)
        )
        body_rows.append(tag("tr", cells))
    if not body_rows:
        body_rows.append(tag("tr", tag("td", empty, colspan=len(columns), class_="empty")))
    return tag("table", tag("thead", tag("tr", head)) + tag("tbody", join(body_rows)), id=id_)


def facts(pairs: Iterable[tuple[str, object]]) -> Html:
    return tag("dl", join(tag("dt", k) + tag("dd", v) for k, v in pairs), class_="facts")


def notice(text: object, *, error: bool = False) -> Html:
    return tag("p", text, class_="notice error" if error else "notice", role="status")


def section(title: str, *body: object) -> Html:
    return tag("section", tag("h2", title) + join(body))


def field(label: str, control: Html) -> Html:
    """A form control with its label."""
    return tag("label", h(label) + control)


def page(title: str, main: Html, *, cluster_id: str | None, fragment: bool) -> Html:
    content = tag("h1", title) + main
    if fragment:
        return Html(content + tag("title", f"{title} · Strom"))
    nav = join(
        tag("a", text, href=href, hx_get=href, hx_target="#main", hx_push_url="true")
        for href, text in NAV
    )
    return Html(
        Html("<!doctype html>")
        + tag(
            "html",
            tag(
                "head",
                Html('<meta charset="utf-8">')
                + Html('<meta name="viewport" content="width=device-width, initial-scale=1">')
                + tag("title", f"{title} · Strom")
                + Html(f'<link rel="stylesheet" href="{UPLOT_CSS}">')
                + Html('<link rel="stylesheet" href="/static/console.css">')
                + Html(f'<script src="{HTMX}"></script>')
                + Html(f'<script src="{UPLOT_JS}"></script>')
                + Html('<script src="/static/console.js"></script>'),
            )
            + tag(
                "body",
                tag(
                    "header",
                    tag("span", "Strom", class_="brand")
                    + tag("nav", nav)
                    + tag("span", f"cluster {cluster_id or '?'}", class_="cluster"),
                )
                + tag("main", content, id="main"),
                hx_boost="false",
            ),
            lang="en",
        )
    )
