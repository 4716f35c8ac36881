"""`strom consume --share-group`: the CLI as a share-group member (KIP-932) against a real
broker, alone and beside confluent-kafka's ShareConsumer in the same group."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter

import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from .broker_process import BrokerProcess
from .cli_helpers import ok, one_line_error, strom
from .clients import Rec, ck_produce, wait_until
from .conftest import BrokerFactory
from .share_helpers import ShareWorker, share_group_describe

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> object:
    """One broker for the module: every test uses its own topic and group."""
    factory = BrokerFactory(tmp_path_factory.mktemp("cli-share"))
    try:
        yield factory()
    finally:
        factory.stop_all()


def _start_at_earliest(bootstrap: str, group: str) -> None:
    """share.auto.offset.reset=earliest for `group`, so that it reads what is already there."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entry = ConfigEntry(
        "share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


def _offsets(bootstrap: str, group: str) -> list[dict[str, object]]:
    (doc,) = ok(strom("group", "describe", group, "-b", bootstrap, "--format", "json")).json()
    offsets: list[dict[str, object]] = doc["offsets"]
    return offsets


def test_accept_release_and_reject(broker: BrokerProcess, topic: str) -> None:
    b = broker.bootstrap
    group = f"cli-share-{topic}"
    ok(strom("topic", "create", topic, "-p", "2", "-b", b))
    _start_at_earliest(b, group)
    values = [f"v{i}" for i in range(12)]
    ck_produce(
        b, topic, [Rec(key=None, value=v.encode(), partition=i % 2) for i, v in enumerate(values)]
    )

    taken = ok(strom("consume", topic, "--share-group", group, "-n", "4", "-b", b))
    first = taken.out.splitlines()
    assert len(first) == 4 and set(first) <= set(values)

    # Released records are delivered again; the template shows where they came from.
    released = ok(
        strom(
            "consume", topic, "--share-group", group, "--release", "-n", "3", "-F", "%s\\n", "-b", b
        )
    )
    looked_at = released.out.splitlines()
    assert len(looked_at) == 3 and not set(looked_at) & set(first)

    # Everything left, the released three among it; then nothing, the group has no lag.
    rest = ok(strom("consume", topic, "--share-group", group, "--idle-timeout", "1s", "-b", b))
    assert Counter(first + rest.out.splitlines()) == Counter(values)
    assert set(looked_at) <= set(rest.out.splitlines())
    assert all(o["lag"] == 0 for o in _offsets(b, group)), _offsets(b, group)

    # A rejected record is never delivered again.
    ck_produce(b, topic, [Rec(key=None, value=b"poison", partition=0)])
    rejected = ok(strom("consume", topic, "--share-group", group, "--reject", "-n", "1", "-b", b))
    assert rejected.out == "poison\n"
    again = ok(strom("consume", topic, "--share-group", group, "--idle-timeout", "1s", "-b", b))
    assert again.out == ""
    assert all(o["lag"] == 0 for o in _offsets(b, group)), _offsets(b, group)
    assert share_group_describe(broker, group).group_state == "Empty"


def test_beside_a_confluent_share_consumer(broker: BrokerProcess, topic: str) -> None:
    """The CLI and a ShareConsumer in one group: every record goes to one of them, once."""
    b = broker.bootstrap
    group = f"mixed-{topic}"
    ok(strom("topic", "create", topic, "-p", "1", "-b", b))
    _start_at_earliest(b, group)
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strom",
            "consume",
            topic,
            "--share-group",
            group,
            "--follow",
            "-b",
            b,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    worker = ShareWorker(b, group, [topic]).start()
    out = b""
    try:
        wait_until(
            lambda: len(share_group_describe(broker, group).members) == 2,
            "the CLI and the ShareConsumer to join",
        )
        values = [f"m{i}".encode() for i in range(200)]
        ck_produce(
            b,
            topic,
            [Rec(key=None, value=v, partition=0) for v in values],
            **{"linger.ms": 0, "batch.num.messages": 1},
        )

        def all_acknowledged() -> bool:
            offsets = _offsets(b, group)
            return bool(offsets) and all(
                o["log_end_offset"] == len(values) and o["lag"] == 0 for o in offsets
            )

        wait_until(all_acknowledged, "every record acknowledged by one of the two members")
    finally:
        worker.stop()
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=60)
    assert "Traceback" not in err.decode(), err.decode()
    printed = out.decode().splitlines()
    assert printed, "the CLI member got no record"
    assert Counter([*printed, *(v.decode() for v in worker.values())]) == Counter(
        v.decode() for v in values
    )
    assert all(g.delivery_count == 1 for g in worker.got)


def test_share_options_that_do_not_fit(broker: BrokerProcess, topic: str) -> None:
    b = broker.bootstrap
    ok(strom("topic", "create", topic, "-p", "1", "-b", b))
    one_line_error(
        strom("consume", topic, "--share-group", "g", "-p", "0", "-b", b), 2, "--partitions"
    )
    one_line_error(
        strom("consume", topic, "--share-group", "g", "-o", "earliest", "-b", b),
        2,
        "share.auto.offset.reset",
    )
    one_line_error(strom("consume", topic, "--release", "-b", b), 2, "--share-group")
    one_line_error(
        strom("consume", "no-such-topic", "--share-group", "g", "-b", b),
        1,
        "UNKNOWN_TOPIC_OR_PARTITION",
    )


def test_group_configs_shape_what_the_cli_member_gets(broker: BrokerProcess, topic: str) -> None:
    """`strom group alter-config` sets a share group's filter and dead-letter topic,
    `strom group describe` shows them, and the CLI member gets only the matching records."""
    b = broker.bootstrap
    group = f"filtered-{topic}"
    ok(strom("topic", "create", topic, "-p", "1", "-b", b))
    one_line_error(
        strom(
            "group", "alter-config", group, "--set", "strom.share.filter=header.kind ==", "-b", b
        ),
        1,
        "INVALID_CONFIG",
    )
    altered = ok(
        strom(
            "group",
            "alter-config",
            group,
            "--set",
            "strom.share.filter=header.kind = 'job'",
            "--set",
            "errors.deadletterqueue.topic.name=dlq.cli",
            "--set",
            "share.auto.offset.reset=earliest",
            "-b",
            b,
            "--format",
            "json",
        )
    )
    assert altered.json() == [{"group": group, "status": "altered", "error": None}]
    for i in range(6):
        kind = "job" if i % 2 == 0 else "other"
        ok(strom("produce", topic, "-H", f"kind={kind}", "-b", b, input=f"{kind}-{i}\n"))
    got = ok(strom("consume", topic, "--share-group", group, "--idle-timeout", "1s", "-b", b))
    assert sorted(got.out.splitlines()) == ["job-0", "job-2", "job-4"]

    (doc,) = ok(strom("group", "describe", group, "-b", b, "--format", "json")).json()
    assert (doc["dead_letter_topic"], doc["filter"]) == ("dlq.cli", "header.kind = 'job'")
    table = ok(strom("group", "describe", group, "-b", b)).out.splitlines()
    assert table[4].split()[:1] == ["DEAD-LETTER-TOPIC"]
    assert table[6].split()[0] == "dlq.cli"

    ok(strom("group", "alter-config", group, "--delete", "strom.share.filter", "-b", b))
    (doc,) = ok(strom("group", "describe", group, "-b", b, "--format", "json")).json()
    assert (doc["dead_letter_topic"], doc["filter"]) == ("dlq.cli", None)
