"""The web console in a real headless Chromium (Debian's, driven by Playwright), against a real
broker: pages show the test's topics and groups, the message browser shows a produced record,
a topic created, reconfigured and deleted from the page really is. Screenshots of every step go
to test-artifacts/console/."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import pytest

from .cli_helpers import ok, strom
from .clients import Rec, ck_produce
from .conftest import BrokerFactory

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
TIMEOUT_MS = 60_000

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is missing (scripts/test installs Debian's chromium)")
    profile = tempfile.mkdtemp(prefix="strom-chromium-")
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--headless",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
            viewport={"width": 1366, "height": 900},
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def console_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    factory = BrokerFactory(tmp_path_factory.mktemp("console"))
    try:
        b = factory(
            {
                "strom.http.listeners": "http://127.0.0.1:0",
                "group.initial.rebalance.delay.ms": 0,
                "offsets.topic.num.partitions": 2,
            }
        )
        b.console = f"http://127.0.0.1:{b.http_listening_port()}"
        yield b
    finally:
        factory.stop_all()


@pytest.fixture
def page(browser_context: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    tab = browser_context.new_page()
    shots = ARTIFACTS / re.sub(r"[^a-zA-Z0-9_.-]", "_", request.node.name)
    shots.mkdir(parents=True, exist_ok=True)
    tab.shoot = lambda name: tab.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    # Every URL the page asks for (documents, scripts, styles, XHR), to prove none is external.
    tab.urls = []
    tab.on("request", lambda r: tab.urls.append(r.url))
    try:
        yield tab
    finally:
        tab.close()


def _cell_texts(page: Any, selector: str) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"{selector} tbody tr",
        "rows => rows.map(r => Array.from(r.cells).map(c => c.innerText.trim()))",
    )


def test_pages_show_topics_groups_and_a_record(console_broker: Any, page: Any, topic: str) -> None:
    b = console_broker.bootstrap
    group = f"g-{topic}"
    ok(strom("topic", "create", topic, "-p", "2", "-b", b))
    ck_produce(
        b,
        topic,
        [
            Rec(
                b"order-1", b'{"item": "tea", "qty": 2}', headers=(("source", b"it"),), partition=0
            ),
            *[Rec(f"k{i}".encode(), f"v{i}".encode(), partition=1) for i in range(9)],
        ],
    )
    consumer = ck.Consumer(
        {
            "bootstrap.servers": b,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([ck.TopicPartition(topic, 1, 0)])
    got = 0
    deadline = time.monotonic() + 60
    while got < 4 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            got += 1
    consumer.commit(offsets=[ck.TopicPartition(topic, 1, 4)], asynchronous=False)
    consumer.close()

    page.goto(f"{console_broker.console}/ui/topics")
    row = page.locator("#topics tbody tr", has_text=topic)
    assert row.locator("td").nth(1).inner_text() == "2"
    page.shoot("topics")

    row.get_by_role("link", name=topic).click()
    page.wait_for_url(f"**/ui/topics/{topic}")
    page.locator("#partitions").wait_for()
    partitions = _cell_texts(page, "#partitions")
    assert [(r[0], r[5]) for r in partitions] == [("0", "1"), ("1", "9")]
    page.locator(".chart[data-ready] canvas").first.wait_for()
    page.shoot("topic")

    page.locator("#partitions tbody tr").first.get_by_role("link", name="browse").click()
    page.locator("#messages").wait_for()
    page.select_option("#browse select[name=as]", "json")
    page.click("#browse button")
    page.wait_for_url(re.compile(r".*as=json.*"))
    first = page.locator("#messages tbody tr").first
    cells = first.locator("td").all_inner_texts()
    assert cells[0] == "0"
    assert cells[2] == "order-1"
    assert '"item": "tea"' in cells[3] and '"qty": 2' in cells[3]
    assert cells[4] == "source=it"
    page.shoot("messages")

    page.get_by_role("link", name="Groups").click()
    page.wait_for_url("**/ui/groups")
    group_row = page.locator("#groups tbody tr", has_text=group)
    assert group_row.locator("td").nth(4).inner_text() == "5"  # 9 records, committed 4
    page.shoot("groups")
    group_row.get_by_role("link", name=group).click()
    page.locator("#lag").wait_for()
    assert _cell_texts(page, "#lag") == [[topic, "1", "4", "9", "5", ""]]
    page.shoot("group")

    page.get_by_role("link", name="Overview").click()
    page.wait_for_url("**/ui")
    assert _cell_texts(page, "#brokers")[0][:2] == ["0", "127.0.0.1"]
    page.shoot("overview")

    # Nothing fetched from elsewhere: the vendored htmx and uPlot came from the broker.
    assert page.urls
    assert [u for u in page.urls if not u.startswith(console_broker.console + "/")] == []
    assert any("/static/vendor/htmx" in u for u in page.urls)
    assert any("/static/vendor/uPlot" in u for u in page.urls)


def test_share_group_with_its_lag(console_broker: Any, page: Any, topic: str) -> None:
    """A share group (KIP-932) listed with its type and lag, and its page showing the
    share-partition start offset against the log end."""
    from .clients import wait_until
    from .share_helpers import ShareWorker, prime, produce_values

    b = console_broker.bootstrap
    group = f"share-{topic}"
    ok(strom("topic", "create", topic, "-p", "1", "-b", b))
    worker = ShareWorker(b, group, [topic]).start()
    try:
        prime(b, topic, [worker])

        def acknowledged() -> int | None:
            (d,) = ok(strom("group", "describe", group, "-b", b, "--format", "json")).json()
            (o,) = d["offsets"]
            done = o["start_offset"] == o["log_end_offset"]
            return o["log_end_offset"] if done else None

        end = wait_until(acknowledged, "the share group to acknowledge every record")
    finally:
        worker.stop()
    produce_values(b, topic, [b"x", b"y", b"z"])

    page.goto(f"{console_broker.console}/ui/groups")
    row = page.locator("#groups tbody tr", has_text=group)
    cells = row.locator("td").all_inner_texts()
    assert cells[1:5] == ["Empty", "share", "0", "3"]
    page.shoot("groups")
    row.get_by_role("link", name=group).click()
    page.locator("#lag").wait_for()
    headers = page.eval_on_selector_all(
        "#lag thead th", "cells => cells.map(c => c.textContent.trim())"
    )
    assert headers[:5] == ["Topic", "Partition", "Start offset", "Log end", "Lag"]
    assert _cell_texts(page, "#lag") == [[topic, "0", str(end), str(end + 3), "3", ""]]
    page.shoot("share-group")


def test_create_configure_and_delete_a_topic_from_the_page(
    console_broker: Any, page: Any, topic: str
) -> None:
    b = console_broker.bootstrap
    page.goto(f"{console_broker.console}/ui/topics")
    form = page.locator("#create-topic")
    form.locator("input[name=name]").fill(topic)
    form.locator("input[name=partitions]").fill("3")
    form.locator("textarea[name=configs]").fill("retention.ms=123456")
    form.get_by_role("button", name="Create topic").click()
    page.locator(".notice", has_text=f"created {topic}").wait_for()
    page.shoot("created")
    (doc,) = ok(strom("topic", "describe", topic, "--configs", "-b", b, "--format", "json")).json()
    assert len(doc["partitions"]) == 3
    assert {"name": "retention.ms", "value": "123456", "source": "DYNAMIC_TOPIC_CONFIG"} in doc[
        "configs"
    ]

    page.locator("#topics").get_by_role("link", name=topic).click()
    page.locator("#edit-configs").wait_for()
    page.fill("#edit-configs textarea[name=set]", "cleanup.policy=compact")
    page.fill("#edit-configs input[name=delete]", "retention.ms")
    page.click("#edit-configs button")
    page.locator(".notice", has_text="changed cleanup.policy=compact").wait_for()
    configs = {r[0]: (r[1], r[2]) for r in _cell_texts(page, "#configs")}
    assert configs["cleanup.policy"] == ("compact", "DYNAMIC_TOPIC_CONFIG")
    assert configs["retention.ms"][1] != "DYNAMIC_TOPIC_CONFIG"
    page.shoot("configured")

    bad = page.locator("#edit-configs")
    bad.locator("textarea[name=set]").fill("retention.ms=soon")
    bad.get_by_role("button").click()
    page.locator(".notice.error", has_text="INVALID_CONFIG").wait_for()

    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#delete-topic button")
    page.locator(".notice", has_text=f"deleted {topic}").wait_for()
    page.shoot("deleted")
    listed = ok(strom("topic", "list", "-b", b, "--format", "json")).json()
    assert topic not in {t["topic"] for t in listed}


def test_unknown_topic_page_says_so(console_broker: Any, page: Any) -> None:
    response = page.goto(f"{console_broker.console}/ui/topics/no-such-topic")
    assert response.status == 404
    assert "UNKNOWN_TOPIC_OR_PARTITION" in page.locator(".notice.error").inner_text()
