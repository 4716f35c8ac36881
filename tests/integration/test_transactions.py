"""Exactly-once: transactional producers against a real broker, read by real consumers.

confluent-kafka's transactional producer (init_transactions, begin/commit/abort,
send_offsets_to_transaction); read_committed and read_uncommitted consumers of confluent-kafka
and kafka-python; fencing; the coordinator's timeout abort; kafka-python's admin
(DescribeTransactions, ListTransactions); a consume-transform-produce app killed with kill -9
several times; the broker killed with kill -9 in the middle of a transaction.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import kafka
import pytest

from .broker_process import BrokerProcess
from .clients import ck_conf, ck_produce, create_topic, make_recs, wait_until
from .conftest import BrokerFactory

pytestmark = pytest.mark.integration

APP = Path(__file__).with_name("eos_app.py")
FENCED = {
    ck.KafkaError._FENCED,
    ck.KafkaError.PRODUCER_FENCED,
    ck.KafkaError.INVALID_PRODUCER_EPOCH,
}


def txn_producer(bootstrap: str, txn_id: str, **conf: Any) -> ck.Producer:
    p = ck.Producer(ck_conf(bootstrap, **{"transactional.id": txn_id, "linger.ms": 5, **conf}))
    p.init_transactions(30)
    return p


def ck_read(
    bootstrap: str,
    topic: str,
    partitions: Iterable[int],
    isolation: str,
    expect: int,
    idle_s: float = 1.5,
    deadline_s: float = 30.0,
) -> list[bytes]:
    """Values of every record of `partitions`: waits for `expect` records, then for `idle_s`
    without more (so that extra records would be seen too)."""
    c = ck.Consumer(
        ck_conf(
            bootstrap,
            **{
                "group.id": f"reader-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
                "isolation.level": isolation,
                "fetch.wait.max.ms": 100,
            },
        )
    )
    got: list[bytes] = []
    try:
        c.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in partitions])
        end = time.monotonic() + deadline_s
        quiet_since = time.monotonic()
        while time.monotonic() < end:
            batch = [m for m in c.consume(500, timeout=0.2) if m.error() is None]
            if batch:
                got.extend(m.value() for m in batch)
                quiet_since = time.monotonic()
            elif len(got) >= expect and time.monotonic() - quiet_since >= idle_s:
                break
    finally:
        c.close()
    return got


def kp_read(
    bootstrap: str, topic: str, partitions: Iterable[int], isolation: str, expect: int
) -> list[bytes]:
    c = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level=isolation,
        fetch_max_wait_ms=100,
    )
    got: list[bytes] = []
    try:
        c.assign([kafka.TopicPartition(topic, p) for p in partitions])
        c.seek_to_beginning()
        end = time.monotonic() + 30
        quiet_since = time.monotonic()
        while time.monotonic() < end:
            batch = c.poll(timeout_ms=200)
            values = [m.value for msgs in batch.values() for m in msgs]
            if values:
                got.extend(values)
                quiet_since = time.monotonic()
            elif len(got) >= expect and time.monotonic() - quiet_since >= 1.5:
                break
    finally:
        c.close()
    return got


def produce_in_txn(p: ck.Producer, topic: str, values: list[bytes], partitions: int = 1) -> None:
    for i, v in enumerate(values):
        p.produce(topic, value=v, key=v, partition=i % partitions)
    p.flush(30)


# ------------------------------------------------------------------------------- visibility


def test_committed_and_aborted_transactions_for_both_isolation_levels(
    broker: BrokerProcess, topic: str
) -> None:
    create_topic(broker.bootstrap, topic, 2)
    p = txn_producer(broker.bootstrap, f"tx-{topic}")
    committed = [b"c%d" % i for i in range(20)]
    aborted = [b"a%d" % i for i in range(20)]
    later = [b"l%d" % i for i in range(10)]
    p.begin_transaction()
    produce_in_txn(p, topic, committed, 2)
    p.commit_transaction(30)
    p.begin_transaction()
    produce_in_txn(p, topic, aborted, 2)
    p.abort_transaction(30)
    p.begin_transaction()
    produce_in_txn(p, topic, later, 2)
    p.commit_transaction(30)

    visible = sorted(committed + later)
    everything = sorted(committed + aborted + later)
    # Control records (the markers) never reach the application, at either level.
    assert sorted(ck_read(broker.bootstrap, topic, [0, 1], "read_committed", 30)) == visible
    assert sorted(ck_read(broker.bootstrap, topic, [0, 1], "read_uncommitted", 50)) == everything
    assert sorted(kp_read(broker.bootstrap, topic, [0, 1], "read_committed", 30)) == visible
    assert sorted(kp_read(broker.bootstrap, topic, [0, 1], "read_uncommitted", 50)) == everything


def test_open_transaction_holds_back_read_committed_consumers(
    broker: BrokerProcess, topic: str
) -> None:
    create_topic(broker.bootstrap, topic, 1)
    ck_produce(broker.bootstrap, topic, make_recs(3))  # plain records before
    p = txn_producer(broker.bootstrap, f"tx-{topic}")
    p.begin_transaction()
    produce_in_txn(p, topic, [b"pending"])
    ck_produce(broker.bootstrap, topic, make_recs(2, prefix="after"))
    # The last stable offset stops at the open transaction: the plain records after it wait.
    assert len(ck_read(broker.bootstrap, topic, [0], "read_committed", 3, idle_s=1)) == 3
    assert len(ck_read(broker.bootstrap, topic, [0], "read_uncommitted", 6, idle_s=0.5)) == 6
    p.commit_transaction(30)
    assert len(ck_read(broker.bootstrap, topic, [0], "read_committed", 6, idle_s=0.5)) == 6


# --------------------------------------------------------------------------------- fencing


def test_second_producer_with_the_same_transactional_id_fences_the_first(
    broker: BrokerProcess, topic: str
) -> None:
    create_topic(broker.bootstrap, topic, 1)
    txn_id = f"tx-{topic}"
    first = txn_producer(broker.bootstrap, txn_id)
    first.begin_transaction()
    produce_in_txn(first, topic, [b"zombie"])
    second = txn_producer(broker.bootstrap, txn_id)  # aborts the first one's transaction
    with pytest.raises(ck.KafkaException) as info:
        first.commit_transaction(30)
    err = info.value.args[0]
    assert err.code() in FENCED, err
    assert err.fatal(), err
    second.begin_transaction()
    produce_in_txn(second, topic, [b"survivor"])
    second.commit_transaction(30)
    assert ck_read(broker.bootstrap, topic, [0], "read_committed", 1) == [b"survivor"]


def test_silent_producer_is_aborted_after_its_transaction_timeout(
    broker_factory: BrokerFactory, topic: str
) -> None:
    b = broker_factory({"transaction.abort.timed.out.transaction.cleanup.interval.ms": 300})
    create_topic(b.bootstrap, topic, 1)
    silent = txn_producer(b.bootstrap, f"silent-{topic}", **{"transaction.timeout.ms": 2000})
    silent.begin_transaction()
    produce_in_txn(silent, topic, [b"lost"])
    other = txn_producer(b.bootstrap, f"other-{topic}")
    other.begin_transaction()
    produce_in_txn(other, topic, [b"kept"])
    other.commit_transaction(30)
    # Once the silent transaction is aborted, the last stable offset moves past it.
    got = wait_until(
        lambda: ck_read(b.bootstrap, topic, [0], "read_committed", 1, idle_s=0.3, deadline_s=3),
        "the timed-out transaction to be aborted",
    )
    assert got == [b"kept"]
    with pytest.raises(ck.KafkaException):
        silent.commit_transaction(10)


# ------------------------------------------------------------------------------ offsets


def committed_offset(bootstrap: str, group: str, topic: str) -> int:
    c = ck.Consumer(ck_conf(bootstrap, **{"group.id": group, "enable.auto.commit": False}))
    try:
        (tp,) = c.committed([ck.TopicPartition(topic, 0)], timeout=20)
        return int(tp.offset)
    finally:
        c.close()


def test_send_offsets_to_transaction_commits_only_with_the_transaction(
    broker: BrokerProcess, topic: str
) -> None:
    create_topic(broker.bootstrap, topic, 1)
    group = f"g-{topic}"
    p = txn_producer(broker.bootstrap, f"tx-{topic}")
    metadata = ck.Consumer(ck_conf(broker.bootstrap, **{"group.id": group}))
    try:
        group_md = metadata.consumer_group_metadata()
    finally:
        metadata.close()
    p.begin_transaction()
    produce_in_txn(p, topic, [b"x"])
    p.send_offsets_to_transaction([ck.TopicPartition(topic, 0, 5)], group_md, 30)
    p.abort_transaction(30)
    assert committed_offset(broker.bootstrap, group, topic) < 0
    p.begin_transaction()
    produce_in_txn(p, topic, [b"y"])
    p.send_offsets_to_transaction([ck.TopicPartition(topic, 0, 7)], group_md, 30)
    p.commit_transaction(30)
    assert committed_offset(broker.bootstrap, group, topic) == 7
    broker.kill9()
    broker.restart()
    assert committed_offset(broker.bootstrap, group, topic) == 7


# -------------------------------------------------------------------------------- admin


def test_describe_and_list_transactions_with_kafka_python_admin(
    broker: BrokerProcess, topic: str
) -> None:
    create_topic(broker.bootstrap, topic, 2)
    txn_id = f"tx-{topic}"
    p = txn_producer(broker.bootstrap, txn_id)
    p.begin_transaction()
    produce_in_txn(p, topic, [b"a", b"b"], 2)
    admin = kafka.KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        desc = admin.describe_transactions([txn_id])[txn_id]
        text = repr(desc)
        assert "Ongoing" in text.replace("ONGOING", "Ongoing"), text
        listed = admin.list_transactions()
        assert txn_id in repr(listed), listed
        assert txn_id not in repr(admin.list_transactions(state_filters=["CompleteCommit"]))
        p.commit_transaction(30)
        assert txn_id in repr(admin.list_transactions(state_filters=["CompleteCommit"]))
        with pytest.raises(kafka.errors.KafkaError):
            admin.describe_transactions(["no-such-id"])
    finally:
        admin.close()


# ---------------------------------------------------- consume-transform-produce under kill -9


def start_app(
    bootstrap: str, source: str, sink: str, group: str, txn_id: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), bootstrap, source, sink, group, txn_id, "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_committed(app: subprocess.Popen[str], deadline_s: float = 60) -> None:
    """Wait until the app printed its first "committed" line."""
    assert app.stdout is not None
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        ready, _, _ = select.select([app.stdout], [], [], 0.5)
        if not ready:
            continue
        line = app.stdout.readline()
        if not line:
            raise AssertionError(f"app exited with {app.wait()} before committing")
        if line.startswith("committed"):
            return
    raise AssertionError("the app committed no transaction before the deadline")


def test_consume_transform_produce_exactly_once_through_kill9(
    broker: BrokerProcess, new_topic: Any
) -> None:
    source, sink = new_topic("in"), new_topic("out")
    create_topic(broker.bootstrap, source, 3)
    create_topic(broker.bootstrap, sink, 3)
    n = 3000
    ck_produce(
        broker.bootstrap,
        source,
        [r for r in make_recs(n)],
        **{"enable.idempotence": True},
    )
    group, txn_id = f"eos-{source}", f"eos-tx-{source}"
    rng = random.Random(7)
    for _ in range(4):
        app = start_app(broker.bootstrap, source, sink, group, txn_id)
        try:
            wait_committed(app)
            time.sleep(rng.uniform(0.2, 1.5))  # most likely inside a transaction
        finally:
            app.send_signal(signal.SIGKILL)
            app.wait()
    app = start_app(broker.bootstrap, source, sink, group, txn_id)
    try:
        got = ck_read(
            broker.bootstrap, sink, [0, 1, 2], "read_committed", n, idle_s=3, deadline_s=120
        )
    finally:
        app.send_signal(signal.SIGKILL)
        app.wait()
    counts = Counter(got)
    duplicates = {v: c for v, c in counts.items() if c > 1}
    assert not duplicates, f"{len(duplicates)} values written more than once"
    expected = {b"out-" + r.value for r in make_recs(n) if r.value is not None}
    assert set(counts) == expected
    # The kills did interrupt transactions: their records are in the log, aborted.
    everything = ck_read(broker.bootstrap, sink, [0, 1, 2], "read_uncommitted", n, idle_s=1)
    print(f"{len(everything) - n} aborted record(s) in the output topic")
    assert len(everything) > n


# ------------------------------------------------------------------ broker kill -9 mid-transaction


def test_broker_killed_mid_transaction_never_shows_half_a_transaction(
    broker: BrokerProcess, topic: str
) -> None:
    create_topic(broker.bootstrap, topic, 3)
    p = txn_producer(
        broker.bootstrap,
        f"tx-{topic}",
        **{"transaction.timeout.ms": 10000, "message.timeout.ms": 10000},
    )
    p.begin_transaction()
    values = [b"v%d" % i for i in range(30)]
    produce_in_txn(p, topic, values, 3)
    broker.kill9()
    broker.restart()
    try:
        p.commit_transaction(30)
        outcome = "committed"
    except ck.KafkaException as exc:
        outcome = f"aborted ({exc})"
        if exc.args[0].txn_requires_abort():
            p.abort_transaction(30)
    # Acknowledged records survived the crash (read_uncommitted sees them all).
    uncommitted = ck_read(broker.bootstrap, topic, [0, 1, 2], "read_uncommitted", 30)
    assert sorted(uncommitted) == sorted(values)
    # A later transaction on every partition: read_committed sees it once the crashed one has
    # ended (by the producer, or by the coordinator after its timeout), with all of the crashed
    # transaction's records or none of them.
    q = txn_producer(broker.bootstrap, f"next-{topic}")
    q.begin_transaction()
    produce_in_txn(q, topic, [b"after0", b"after1", b"after2"], 3)
    q.commit_transaction(30)
    after = [b"after0", b"after1", b"after2"]

    def settled() -> list[bytes] | None:
        got = ck_read(broker.bootstrap, topic, [0, 1, 2], "read_committed", 3, deadline_s=5)
        return got if all(a in got for a in after) else None

    final = sorted(wait_until(settled, "the crashed transaction to end"))
    expected_committed = sorted(values + after)
    print(f"transaction after the broker crash: {outcome}")
    assert final in (expected_committed, sorted(after)), (outcome, final)
    if outcome == "committed":
        assert final == expected_committed
