"""The `strom` CLI run as a user runs it (a subprocess) against real `strom serve` brokers:
topics, groups, produce, consume, cluster info and the offline log dump; table output
compared line by line, JSON parsed, exit codes and one-line errors checked."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import confluent_kafka as ck
import pytest
from kafka.partitioner.default import murmur2

from .broker_process import BrokerProcess
from .cli_helpers import Ran, ok, one_line_error, strom
from .clients import Rec, ck_consume, ck_produce
from .conftest import BrokerFactory

pytestmark = pytest.mark.integration

GROUP_SETTINGS = {"group.initial.rebalance.delay.ms": 0, "offsets.topic.num.partitions": 3}


@pytest.fixture(scope="module")
def cli_broker(tmp_path_factory: pytest.TempPathFactory) -> object:
    factory = BrokerFactory(tmp_path_factory.mktemp("cli"))
    try:
        yield factory(GROUP_SETTINGS)
    finally:
        factory.stop_all()


def _table(ran: Ran) -> list[str]:
    return ran.out.rstrip("\n").splitlines()


def _expected(header: str, *rows: str) -> list[str]:
    """A table as the CLI prints it: header, a rule as wide as the table, rows."""
    return [header, "─" * len(header), *rows]


# -- topics ---------------------------------------------------------------------------------


def test_topic_lifecycle(cli_broker: BrokerProcess, topic: str) -> None:
    b = cli_broker.bootstrap
    created = ok(strom("topic", "create", topic, "-p", "3", "-c", "retention.ms=3600000", "-b", b))
    assert _table(created) == _expected(
        "TOPIC" + " " * (len(topic) - 2) + "STATUS    PARTITIONS   REPLICAS",
        f"{topic}   created   3            1",
    )
    listed = ok(strom("topic", "list", "-b", b, "--format", "json")).json()
    assert {"topic": topic, "partitions": 3, "replication_factor": 1, "internal": False} in listed
    assert all(not t["internal"] for t in listed)
    internal = ok(strom("topic", "list", "--internal", "-b", b, "--format", "json")).json()
    assert len(internal) >= len(listed)

    described = ok(strom("topic", "describe", topic, "--configs", "-b", b, "--format", "json"))
    (doc,) = described.json()
    assert [p["partition"] for p in doc["partitions"]] == [0, 1, 2]
    assert all(
        p["leader"] == 0 and p["replicas"] == [0] and p["isr"] == [0] for p in doc["partitions"]
    )
    assert {"name": "retention.ms", "value": "3600000", "source": "DYNAMIC_TOPIC_CONFIG"} in doc[
        "configs"
    ]

    ok(
        strom(
            "topic",
            "alter-config",
            topic,
            "--set",
            "retention.ms=7200000",
            "--set",
            "cleanup.policy=compact",
            "-b",
            b,
        )
    )
    (doc,) = ok(strom("topic", "describe", topic, "--configs", "-b", b, "--format", "json")).json()
    configs = {c["name"]: c["value"] for c in doc["configs"]}
    assert configs["retention.ms"] == "7200000"
    assert configs["cleanup.policy"] == "compact"
    ok(strom("topic", "alter-config", topic, "--delete", "cleanup.policy", "-b", b))
    (doc,) = ok(strom("topic", "describe", topic, "--configs", "-b", b, "--format", "json")).json()
    assert "cleanup.policy" not in {c["name"] for c in doc["configs"]}

    grown = ok(strom("topic", "add-partitions", topic, "--num", "2", "-b", b))
    assert f"{topic}   3 -> 5 partitions" in grown.out
    shrink = strom("topic", "add-partitions", topic, "--total", "4", "-b", b)
    one_line_error(shrink, 1, "INVALID_PARTITIONS", topic)

    deleted = ok(strom("topic", "delete", topic, "-b", b, "--format", "json")).json()
    assert deleted == [{"topic": topic, "status": "deleted", "error": None}]
    listed = ok(strom("topic", "list", "-b", b, "--format", "json")).json()
    assert topic not in {t["topic"] for t in listed}


def test_topic_describe_table(cli_broker: BrokerProcess, topic: str) -> None:
    b = cli_broker.bootstrap
    ok(strom("topic", "create", topic, "-p", "2", "-b", b))
    ok(strom("produce", topic, "-p", "1", "-b", b, input="a\nb\nc\n"))
    described = ok(strom("topic", "describe", topic, "-b", b))
    lines = _table(described)
    topic_id = lines[2].split()[1]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", topic_id)
    width = len(topic)
    assert lines == [
        *_expected(
            "NAME" + " " * (width - 1) + "ID" + " " * 23 + "PARTITIONS   REPLICAS   INTERNAL",
            f"{topic}   {topic_id}   2            1          no",
        ),
        "",
        *_expected(
            "PARTITION   LEADER   EPOCH   REPLICAS   ISR   LOG-START   HIGH-WATERMARK",
            "        0        0       0   0          0             0                0",
            "        1        0       0   0          0             0                3",
        ),
    ]


def test_topic_errors_are_one_line(cli_broker: BrokerProcess, topic: str, tmp_path: Path) -> None:
    b = cli_broker.bootstrap
    one_line_error(strom("topic", "describe", topic, "-b", b), 1, "UNKNOWN_TOPIC_OR_PARTITION")
    one_line_error(strom("topic", "delete", topic, "-b", b), 1, "UNKNOWN_TOPIC_OR_PARTITION")
    ok(strom("topic", "create", topic, "-b", b))
    one_line_error(strom("topic", "create", topic, "-b", b), 1, "TOPIC_ALREADY_EXISTS")
    one_line_error(
        strom("topic", "alter-config", topic, "--set", "retention.ms=soon", "-b", b),
        1,
        "INVALID_CONFIG",
    )
    # Nothing listens on a port that was just free.
    from .broker_process import free_port

    unreachable = strom("topic", "list", "-b", f"127.0.0.1:{free_port()}", "--timeout", "5")
    one_line_error(unreachable, 3, "cannot connect", "Connection refused")
    usage = strom("topic", "alter-config", topic, "-b", b)
    one_line_error(usage, 2, "nothing to change")
    assert strom("topic", "frobnicate").code == 2


# -- produce and consume --------------------------------------------------------------------


def test_produce_and_consume_formats(cli_broker: BrokerProcess, topic: str) -> None:
    b = cli_broker.bootstrap
    ok(strom("topic", "create", topic, "-p", "4", "-b", b))
    lines = [f"trace=t{i},tenant=7|key-{i}:value {i}" for i in range(40)]
    produced = ok(
        strom(
            "produce",
            topic,
            "-K",
            ":",
            "--header-separator",
            "|",
            "-H",
            "source=cli",
            "-z",
            "zstd",
            "-b",
            b,
            "--format",
            "json",
            input="\n".join(lines) + "\n",
        )
    ).json()
    assert produced["records"] == 40
    consumed = ok(strom("consume", topic, "--format", "json", "-b", b)).json_lines()
    assert len(consumed) == 40
    by_key = {r["key"]: r for r in consumed}
    for i in range(40):
        r = by_key[f"key-{i}"]
        assert r["value"] == f"value {i}"
        assert r["headers"] == [
            {"key": "source", "value": "cli"},
            {"key": "trace", "value": f"t{i}"},
            {"key": "tenant", "value": "7"},
        ]
        # Kafka's default partitioner: murmur2 of the key, as kafka-python and Java compute it.
        assert r["partition"] == (murmur2(f"key-{i}".encode()) & 0x7FFFFFFF) % 4
    # A kcat-style template, and the same records read by a second client.
    templated = ok(strom("consume", topic, "-p", "0", "-F", "%p/%o %k=%s %h\\n", "-b", b))
    part0 = sorted((r for r in consumed if r["partition"] == 0), key=lambda r: r["offset"])
    assert templated.out.splitlines() == [
        f"0/{r['offset']} {r['key']}={r['value']} source=cli,trace={r['headers'][1]['value']},"
        "tenant=7"
        for r in part0
    ]
    got = ck_consume(b, topic, partitions=range(4))
    assert sorted(g.value for g in got) == sorted(f"value {i}".encode() for i in range(40))


def test_consume_positions(cli_broker: BrokerProcess, topic: str) -> None:
    b = cli_broker.bootstrap
    ok(strom("topic", "create", topic, "-p", "1", "-b", b))
    ok(strom("produce", topic, "-b", b, input="".join(f"r{i}\n" for i in range(10))))
    middle = int(time.time() * 1000)
    time.sleep(0.05)  # the next records' timestamps must be after `middle`
    ok(strom("produce", topic, "-b", b, input="".join(f"s{i}\n" for i in range(5))))

    def values(*args: str) -> list[str]:
        return ok(strom("consume", topic, *args, "-b", b)).out.splitlines()

    assert values() == [f"r{i}" for i in range(10)] + [f"s{i}" for i in range(5)]
    assert values("-o", "12") == ["s2", "s3", "s4"]
    assert values("-o", "-2") == ["s3", "s4"]
    assert values("-o", "latest") == []
    assert values("-o", "3", "-n", "2") == ["r3", "r4"]
    assert values("--from-timestamp", str(middle)) == [f"s{i}" for i in range(5)]
    assert values("--since", "1h", "-n", "1") == ["r0"]
    one_line_error(strom("consume", topic, "-o", "soon", "-b", b), 2, "--offset")
    one_line_error(strom("consume", topic, "-p", "7", "-b", b), 2, "no partition 7")


def test_consume_follow_sees_new_records(cli_broker: BrokerProcess, topic: str) -> None:
    b = cli_broker.bootstrap
    ok(strom("topic", "create", topic, "-p", "2", "-b", b))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strom",
            "consume",
            topic,
            "-o",
            "latest",
            "--follow",
            "-n",
            "6",
            "-b",
            b,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # The follower may start after the first produce: produce until it has seen six.
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            ok(strom("produce", topic, "-b", b, input="x\n"))
            time.sleep(0.5)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.decode().splitlines() == ["x"] * 6


def test_produce_rate_and_errors(cli_broker: BrokerProcess, topic: str, tmp_path: Path) -> None:
    b = cli_broker.bootstrap
    ok(strom("topic", "create", topic, "-p", "1", "-b", b))
    source = tmp_path / "input.txt"
    source.write_text("".join(f"{i}\n" for i in range(10)))
    ok(strom("produce", topic, "-f", source, "--rate", "20", "--acks", "1", "-b", b))
    records = ok(strom("consume", topic, "--format", "json", "-b", b)).json_lines()
    assert [r["value"] for r in records] == [str(i) for i in range(10)]
    # 20 records/s: the tenth record was created 9/20 s after the start, the first one at most
    # a few milliseconds after it (timestamps are whole milliseconds).
    assert records[-1]["timestamp"] - records[0]["timestamp"] >= 400
    one_line_error(
        strom("produce", topic + "-missing", "-b", b, input="x\n"), 1, "UNKNOWN_TOPIC_OR_PARTITION"
    )
    one_line_error(strom("produce", topic, "-p", "3", "-b", b, input="x\n"), 1, "partition")
    one_line_error(strom("produce", topic, "-f", tmp_path / "nope", "-b", b), 2, "cannot open")


# -- groups ---------------------------------------------------------------------------------


def test_group_consume_describe_seek_delete(cli_broker: BrokerProcess, topic: str) -> None:
    b = cli_broker.bootstrap
    group = f"g-{topic}"
    ok(strom("topic", "create", topic, "-p", "2", "-b", b))
    ok(strom("produce", topic, "-p", "0", "-b", b, input="".join(f"a{i}\n" for i in range(6))))
    ok(strom("produce", topic, "-p", "1", "-b", b, input="".join(f"b{i}\n" for i in range(4))))

    first = ok(strom("consume", topic, "-g", group, "-n", "3", "-b", b)).out.splitlines()
    assert len(first) == 3
    rest = ok(strom("consume", topic, "-g", group, "-b", b)).out.splitlines()
    assert sorted(first + rest) == sorted([f"a{i}" for i in range(6)] + [f"b{i}" for i in range(4)])

    (doc,) = ok(strom("group", "describe", group, "-b", b, "--format", "json")).json()
    assert doc["state"] == "Empty"
    assert doc["total_lag"] == 0
    assert {
        (o["partition"], o["committed_offset"], o["log_end_offset"]) for o in doc["offsets"]
    } == {(0, 6, 6), (1, 4, 4)}
    listed = ok(strom("group", "list", "-b", b, "--format", "json")).json()
    assert {"group": group, "state": "Empty"}.items() <= next(
        g for g in listed if g["group"] == group
    ).items()

    ok(strom("group", "seek", group, "--to", "earliest", "-b", b))
    table = _table(ok(strom("group", "describe", group, "-b", b)))
    width = len(topic)
    assert table[-4:] == _expected(
        "TOPIC" + " " * (width - 2) + "PARTITION   COMMITTED   LOG-END   LAG   MEMBER",
        f"{topic}           0           0         6     6",
        f"{topic}           1           0         4     4",
    )
    ok(strom("group", "seek", group, "--to", "2", "--topic", f"{topic}:1", "-b", b))
    ok(strom("group", "seek", group, "--shift-by", "3", "--topic", f"{topic}:0", "-b", b))
    (doc,) = ok(strom("group", "describe", group, "-b", b, "--format", "json")).json()
    assert {(o["partition"], o["committed_offset"], o["lag"]) for o in doc["offsets"]} == {
        (0, 3, 3),
        (1, 2, 2),
    }
    resumed = ok(strom("consume", topic, "-g", group, "-b", b)).out.splitlines()
    assert sorted(resumed) == ["a3", "a4", "a5", "b2", "b3"]
    dry = ok(
        strom(
            "group", "seek", group, "--to-duration", "1h", "--dry-run", "-b", b, "--format", "json"
        )
    ).json()
    assert {(r["partition"], r["new_offset"]) for r in dry} == {(0, 0), (1, 0)}

    ok(strom("group", "delete", group, "-b", b))
    one_line_error(strom("group", "delete", group, "-b", b), 1, "GROUP_ID_NOT_FOUND")


def test_group_member_shares_partitions_with_librdkafka(
    cli_broker: BrokerProcess, topic: str
) -> None:
    """`strom consume -g` is a classic-protocol member: a confluent-kafka consumer in the same
    group gets the other half of the partitions, and seek refuses while it is active."""
    b = cli_broker.bootstrap
    group = f"g-{topic}"
    ok(strom("topic", "create", topic, "-p", "4", "-b", b))
    other = ck.Consumer(
        {
            "bootstrap.servers": b,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range",
        }
    )
    other.subscribe([topic])
    proc = subprocess.Popen(
        [sys.executable, "-m", "strom", "consume", topic, "-g", group, "--follow", "-b", b],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        members: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            other.poll(0.2)
            (doc,) = ok(strom("group", "describe", group, "-b", b, "--format", "json")).json()
            members = doc["members"]
            if (
                doc["state"] == "Stable"
                and len(members) == 2
                and all(m["partitions"] for m in members)
            ):
                break
        assignments = sorted(len(m["partitions"]) for m in members)  # type: ignore[arg-type]
        assert assignments == [2, 2], members
        clients = {m["client_id"] for m in members}
        assert "strom-cli" in clients
        refused = strom("group", "seek", group, "--to", "earliest", "--topic", topic, "-b", b)
        one_line_error(refused, 1, "active members")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        other.close()


# -- cluster and log dump -------------------------------------------------------------------


def test_cluster_info(cli_broker: BrokerProcess) -> None:
    b = cli_broker.bootstrap
    doc = ok(strom("cluster", "info", "-b", b, "--format", "json")).json()
    assert doc["controller_id"] == 0
    assert doc["brokers"] == [
        {
            "id": 0,
            "host": "127.0.0.1",
            "port": cli_broker.port,
            "rack": None,
            "controller": True,
            "apis": len(doc["api_versions"]["apis"]),
        }
    ]
    apis = {a["name"]: a for a in doc["api_versions"]["apis"]}
    assert apis["Produce"]["min_version"] <= 3 and apis["Produce"]["client_version"] == 11
    assert apis["ApiVersions"]["max_version"] >= 3
    table = ok(strom("cluster", "info", "--api-versions", "-b", b)).out
    assert "API versions of 127.0.0.1:" in table and "Metadata" in table


def test_log_dump_reads_what_the_broker_wrote(cli_broker: BrokerProcess, topic: str) -> None:
    b = cli_broker.bootstrap
    group = f"g-{topic}"
    ok(strom("topic", "create", topic, "-p", "1", "-b", b))
    ok(
        strom(
            "produce",
            topic,
            "-K",
            ":",
            "-z",
            "gzip",
            "-b",
            b,
            input="".join(f"k{i}:v{i}\n" for i in range(5)),
        )
    )
    ok(strom("consume", topic, "-g", group, "-b", b))
    directory = cli_broker.partition_dir(topic, 0)
    docs = ok(strom("log", "dump", directory, "--records", "--format", "json")).json()
    segments = [d for d in docs if d["kind"] == "segment"]
    assert len(segments) == 1
    (segment,) = segments
    assert segment["problems"] == []
    assert [(r["key"], r["value"]) for r in segment["records"]] == [
        (f"k{i}", f"v{i}") for i in range(5)
    ]
    assert all(batch["valid"] and batch["compression"] == "gzip" for batch in segment["batches"])
    assert {d["kind"] for d in docs} >= {
        "segment",
        "offset index",
        "time index",
        "partition metadata",
    }
    # The group's commit, decoded from __consumer_offsets.
    offsets_dirs = sorted(cli_broker.data_dir.glob("__consumer_offsets-*"))
    decoded = ok(strom("log", "dump", *offsets_dirs, "--records", "--format", "json")).json()
    commits = [
        r["decoded"]
        for d in decoded
        if d["kind"] == "segment"
        for r in d["records"]
        if r.get("decoded", {}).get("type") == "OffsetCommit"
        and r["decoded"]["key"]["group"] == group
    ]
    assert commits and commits[-1]["key"]["topic"] == topic
    assert commits[-1]["value"]["offset"] == 5
    # The log directory: its checkpoints and partitions; and a table for people.
    summary = ok(strom("log", "dump", cli_broker.data_dir, "--format", "json")).json()
    assert summary[0]["kind"] == "log directory"
    assert f"{topic}-0" in {e["partition"] for e in summary[0]["entries"]}
    table = ok(strom("log", "dump", directory / "00000000000000000000.log")).out
    assert table.splitlines()[1].split() == [
        "POSITION",
        "BASE",
        "LAST",
        "COUNT",
        "SIZE",
        "CODEC",
        "MAX-TIMESTAMP",
        "PRODUCER",
        "EPOCH",
        "SEQ",
        "LEADER-EPOCH",
        "TXN",
        "CTRL",
        "CRC-OK",
    ]
    one_line_error(strom("log", "dump", directory / "nope.log"), 2, "no such file")


def test_log_dump_reports_a_torn_tail(
    cli_broker: BrokerProcess, topic: str, tmp_path: Path
) -> None:
    b = cli_broker.bootstrap
    ok(strom("topic", "create", topic, "-p", "1", "-b", b))
    ok(strom("produce", topic, "-b", b, input="one\ntwo\n"))
    ok(strom("produce", topic, "-b", b, input="three\n"))
    segment = cli_broker.partition_dir(topic, 0) / "00000000000000000000.log"
    copy = tmp_path / segment.name
    data = segment.read_bytes()
    copy.write_bytes(data[:-5])
    (doc,) = strom("log", "dump", copy, "--format", "json").json()
    assert len(doc["batches"]) == 1
    assert doc["problems"] and "torn batch" in doc["problems"][0]


# -- a second broker with other settings ----------------------------------------------------


def test_against_a_broker_with_other_settings(broker_factory: BrokerFactory, topic: str) -> None:
    """num.partitions 2, no auto-created topics, LogAppendTime: the same commands follow the
    broker's settings."""
    other = broker_factory(
        {
            **GROUP_SETTINGS,
            "num.partitions": 2,
            "auto.create.topics.enable": False,
            "log.message.timestamp.type": "LogAppendTime",
        }
    )
    b = other.bootstrap
    ok(strom("topic", "create", topic, "-b", b))
    (doc,) = ok(strom("topic", "describe", topic, "-b", b, "--format", "json")).json()
    assert len(doc["partitions"]) == 2
    one_line_error(
        strom("produce", topic + "-auto", "-b", b, input="x\n"), 1, "UNKNOWN_TOPIC_OR_PARTITION"
    )
    before = int(time.time() * 1000)
    ok(strom("produce", topic, "-K", "=", "-b", b, input="a=1\nb=2\nc=3\n"))
    records = ok(strom("consume", topic, "--format", "json", "-b", b)).json_lines()
    assert sorted((r["key"], r["value"]) for r in records) == [("a", "1"), ("b", "2"), ("c", "3")]
    # LogAppendTime: the broker's clock, not the producer's.
    assert all(r["timestamp"] >= before - 1000 for r in records)
    ck_produce(b, topic, [Rec(b"d", b"4", partition=0)])
    group = f"g-{topic}"
    values = ok(strom("consume", topic, "-g", group, "-b", b)).out.splitlines()
    assert sorted(values) == ["1", "2", "3", "4"]
    (described,) = ok(strom("group", "describe", group, "-b", b, "--format", "json")).json()
    assert described["total_lag"] == 0
    ok(strom("group", "seek", group, "--to", "latest", "-b", b))
    ok(strom("group", "delete", group, "-b", b))
    ok(strom("topic", "delete", topic, "-b", b))


def test_share_groups_are_listed_and_described(cli_broker: BrokerProcess, topic: str) -> None:
    """A share group's members, and its lag from DescribeShareGroupOffsets: the start offset
    (first record not acknowledged) against the log end."""
    from .clients import wait_until
    from .share_helpers import ShareWorker, prime, produce_values

    b = cli_broker.bootstrap
    group = f"share-{topic}"
    ok(strom("topic", "create", topic, "-p", "1", "-b", b))
    worker = ShareWorker(b, group, [topic]).start()
    try:
        prime(b, topic, [worker])
        listed = ok(strom("group", "list", "-b", b, "--format", "json")).json()
        assert next(g for g in listed if g["group"] == group)["type"] == "share"
        (doc,) = ok(strom("group", "describe", group, "-b", b, "--format", "json")).json()
        assert doc["protocol_type"] == "share"
        assert doc["state"] == "Stable"
        (member,) = doc["members"]
        assert member["partitions"] == [{"topic": topic, "partition": 0}]
        assert [(o["topic"], o["partition"]) for o in doc["offsets"]] == [(topic, 0)]
        assert doc["offsets"][0]["member_id"] == member["member_id"]

        def all_acknowledged() -> bool:
            (d,) = ok(strom("group", "describe", group, "-b", b, "--format", "json")).json()
            (o,) = d["offsets"]
            return o["start_offset"] == o["log_end_offset"] and o["lag"] == 0

        wait_until(all_acknowledged, "the share group to acknowledge every record")
        one_line_error(
            strom("group", "seek", group, "--to", "earliest", "-b", b), 1, "NON_EMPTY_GROUP"
        )
    finally:
        worker.stop()

    # No member now: records produced are the group's lag, the start offset stays.
    (before,) = ok(strom("group", "describe", group, "-b", b, "--format", "json")).json()
    end = before["offsets"][0]["log_end_offset"]
    produce_values(b, topic, [b"a", b"b", b"c", b"d", b"e"])
    (doc,) = ok(strom("group", "describe", group, "-b", b, "--format", "json")).json()
    assert doc["state"] == "Empty"
    assert doc["members"] == []
    assert doc["offsets"] == [
        {
            "topic": topic,
            "partition": 0,
            "start_offset": end,
            "log_end_offset": end + 5,
            "lag": 5,
            "member_id": None,
            "delayed": 0,
        }
    ]
    assert doc["total_lag"] == 5
    table = _table(ok(strom("group", "describe", group, "-b", b)))
    assert table[-3].split() == [
        "TOPIC", "PARTITION", "START-OFFSET", "LOG-END", "LAG", "DELAYED", "MEMBER"
    ]  # fmt: skip
    assert table[-1].split() == [topic, "0", str(end), str(end + 5), "5", "0"]
    listed = ok(strom("group", "list", "--lag", "-b", b, "--format", "json")).json()
    row = next(g for g in listed if g["group"] == group)
    assert (row["type"], row["state"], row["members"], row["total_lag"]) == ("share", "Empty", 0, 5)
    lines = _table(ok(strom("group", "list", "--lag", "-b", b)))
    assert lines[0].split() == ["GROUP", "STATE", "TYPE", "COORDINATOR", "MEMBERS", "TOTAL-LAG"]
    assert next(line for line in lines if line.startswith(group)).split() == [
        group, "Empty", "share", "0", "0", "5"
    ]  # fmt: skip

    # Seek moves the share-partition start offset (AlterShareGroupOffsets).
    moved = ok(strom("group", "seek", group, "--to", "latest", "-b", b, "--format", "json"))
    assert moved.json() == [
        {"topic": topic, "partition": 0, "previous_offset": end, "new_offset": end + 5}
    ]
    (doc,) = ok(strom("group", "describe", group, "-b", b, "--format", "json")).json()
    assert (doc["offsets"][0]["start_offset"], doc["total_lag"]) == (end + 5, 0)
    ok(strom("group", "seek", group, "--shift-by", "-2", "-b", b))
    (doc,) = ok(strom("group", "describe", group, "-b", b, "--format", "json")).json()
    assert (doc["offsets"][0]["start_offset"], doc["total_lag"]) == (end + 3, 2)
    ok(strom("group", "delete", group, "-b", b))


def test_progress_bars_only_on_a_terminal(
    cli_broker: BrokerProcess, topic: str, tmp_path: Path
) -> None:
    """stderr a terminal: a progress bar; a pipe (every other test here): none."""
    import os
    import pty

    b = cli_broker.bootstrap
    ok(strom("topic", "create", topic, "-p", "1", "-b", b))
    source = tmp_path / "lines.txt"
    source.write_text("".join(f"line {i}\n" for i in range(20000)))

    def run_on_tty(*args: str | Path, stdout: int | None = None) -> str:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "strom", *map(str, args)],
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else follower,
            stderr=follower,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("STROM_")},
                "COLUMNS": "100",
                "TERM": "xterm",
            },
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        os.close(leader)
        assert proc.wait(timeout=120) == 0
        return b"".join(chunks).decode(errors="replace")

    produced = run_on_tty("produce", topic, "-f", source, "-b", b)
    assert "producing" in produced and "produced 20000 records" in produced
    with open(tmp_path / "out.txt", "wb") as out:
        consumed = run_on_tty("consume", topic, "-b", b, stdout=out.fileno())
    assert "consuming" in consumed
    assert (tmp_path / "out.txt").read_text().count("\n") == 20000
