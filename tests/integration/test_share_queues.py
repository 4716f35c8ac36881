"""Issue #16 with confluent-kafka's ShareConsumer and Producer against a real broker: delayed
delivery, retry backoff, server-side filters and dead-letter topics, across restarts.

Nothing is timed: "not early" compares when a record arrived with the due time its own
timestamp and headers give (same machine, same clock), and backoffs are checked as lower bounds
between delivery times. Waits are loops with generous deadlines.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import confluent_kafka as ck
import pytest

from strom.coordinator.share.extension import ShareExtension
from strom.protocol.messages.describe_share_group_offsets_request import (
    DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsRequestGroup,
    DescribeShareGroupOffsetsRequestTopic,
)
from strom.protocol.messages.describe_share_group_offsets_response import (
    DescribeShareGroupOffsetsResponse,
)
from strom.protocol.records.batch_header import iter_batch_headers
from strom.protocol.records.codec import decode_records

from .broker_process import BrokerProcess, free_port
from .clients import ck_watermarks, create_topic, wait_until
from .conftest import BrokerFactory
from .queue_helpers import Arrival, Receiver, alter_group, describe_group, now_ms, read_all
from .share_helpers import wire
from .test_http_metrics import scrape
from .test_http_metrics import value as sample_value

pytestmark = pytest.mark.integration

LONG_S = 120.0


def due_of(a: Arrival, topic_delay_ms: int = 0) -> int:
    """When the record may be delivered, from what the consumer sees of it."""
    at = a.header("strom.deliver.at")
    if at is not None:
        return int(at)
    delay = a.header("strom.delay.ms")
    if delay is not None and int(delay) > 0:
        return a.timestamp + int(delay)
    return a.timestamp + topic_delay_ms if topic_delay_ms > 0 else a.timestamp


def assert_not_early(arrivals: list[Arrival], topic_delay_ms: int = 0) -> None:
    for a in arrivals:
        assert a.received_ms >= due_of(a, topic_delay_ms), (a.value, a.received_ms, due_of(a))


def share_start_offset(broker: BrokerProcess, group: str, topic: str) -> int:
    return described_partition(broker, group, topic)[0]


def described_partition(broker: BrokerProcess, group: str, topic: str) -> tuple[int, int]:
    """(start offset, records waiting for their time) of partition 0, as
    DescribeShareGroupOffsets answers them (the second in Strom's tagged field)."""
    request = DescribeShareGroupOffsetsRequest(
        groups=[
            DescribeShareGroupOffsetsRequestGroup(
                group, [DescribeShareGroupOffsetsRequestTopic(topic, [0])]
            )
        ]
    )
    response = wire(broker, 90, 0, request, DescribeShareGroupOffsetsResponse)
    row = response.groups[0].topics[0].partitions[0]
    return row.start_offset, row.strom_delayed_records


def producer_for(kind: str, bootstrap: str, topic: str) -> ck.Producer:
    conf: dict[str, object] = {"bootstrap.servers": bootstrap, "linger.ms": 0}
    if kind == "idempotent":
        conf["enable.idempotence"] = True
    elif kind == "transactional":
        conf["transactional.id"] = f"tx-{topic}"
    else:
        conf["enable.idempotence"] = False
    p = ck.Producer(conf)
    if kind == "transactional":
        p.init_transactions(30)
        p.begin_transaction()
    return p


def finish(p: ck.Producer, kind: str) -> None:
    if kind == "transactional":
        p.commit_transaction(30)
    assert p.flush(30) == 0


@pytest.mark.parametrize("kind", ["plain", "idempotent", "transactional"])
def test_delayed_records_are_never_early_and_arrive_once(
    broker: BrokerProcess, topic: str, kind: str
) -> None:
    create_topic(broker.bootstrap, topic, partitions=1)
    alter_group(broker.bootstrap, "timers", share_auto_offset_reset="earliest")
    receiver = Receiver(broker.bootstrap, "timers", [topic]).start_primed(topic)
    p = producer_for(kind, broker.bootstrap, topic)
    base = now_ms()
    sent: dict[bytes, list[tuple[str, bytes]]] = {
        b"in-5s": [("strom.delay.ms", b"5000")],
        b"now-0": [],
        b"in-1s": [("strom.delay.ms", b"1000")],
        b"at-5s": [("strom.deliver.at", str(base + 5000).encode())],
        b"now-1": [],
        b"at-1s": [("strom.deliver.at", str(base + 1000).encode())],
        b"past": [("strom.deliver.at", str(base - 60_000).encode())],
        b"now-2": [],
    }
    for value, headers in sent.items():
        p.produce(topic, value, headers=headers, partition=0)
    finish(p, kind)
    try:
        immediate = {b"now-0", b"now-1", b"now-2", b"past"}
        wait_until(lambda: immediate <= set(receiver.values()), "the records without a delay")
        # The share-partition start offset moves past records waiting for their time (the
        # marker record is offset 0).
        five = [1 + o for o, v in enumerate(sent) if v in (b"in-5s", b"at-5s")]
        wait_until(
            lambda: share_start_offset(broker, "timers", topic) > max(five),
            "the start offset past the records waiting 5 s",
        )
        wait_until(
            lambda: Counter(receiver.values()) == Counter(list(sent)),
            "every record once",
            deadline_s=LONG_S,
        )
    finally:
        receiver.stop()
    assert Counter(receiver.values()) == Counter(list(sent))
    assert all(a.delivery_count == 1 for a in receiver.arrivals())
    assert_not_early(receiver.arrivals())


def test_topic_default_delay(broker: BrokerProcess, topic: str) -> None:
    create_topic(broker.bootstrap, topic, config={"strom.delivery.delay.ms": "1500"})
    alter_group(broker.bootstrap, "slow", share_auto_offset_reset="earliest")
    receiver = Receiver(broker.bootstrap, "slow", [topic]).start_primed(topic)
    p = producer_for("plain", broker.bootstrap, topic)
    p.produce(topic, b"default", partition=0)
    p.produce(topic, b"own", headers=[("strom.delay.ms", b"2500")], partition=0)
    p.produce(topic, b"none", headers=[("strom.delay.ms", b"0")], partition=0)  # at once
    finish(p, "plain")
    try:
        wait_until(lambda: len(receiver.values()) == 3, "the three records", deadline_s=LONG_S)
    finally:
        receiver.stop()
    by_value = {a.value: a for a in receiver.arrivals()}
    assert by_value[b"default"].received_ms >= by_value[b"default"].timestamp + 1500
    assert by_value[b"own"].received_ms >= by_value[b"own"].timestamp + 2500
    assert sorted(receiver.values()) == [b"default", b"none", b"own"]


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_pending_delays_survive_a_restart(
    broker_factory: BrokerFactory, topic: str, how: str
) -> None:
    broker = broker_factory()
    create_topic(broker.bootstrap, topic, partitions=1)
    alter_group(broker.bootstrap, "durable-timers", share_auto_offset_reset="earliest")
    receiver = Receiver(broker.bootstrap, "durable-timers", [topic]).start_primed(topic)
    p = producer_for("idempotent", broker.bootstrap, topic)
    delayed = [f"wait-{i}".encode() for i in range(20)]
    # Long enough to be pending across the restart on a loaded machine, which the check
    # of the log below (a rebuild after kill -9 only) relies on.
    for i, value in enumerate(delayed):
        p.produce(topic, value, headers=[("strom.delay.ms", str(20_000 + 100 * i).encode())])
        p.produce(topic, f"now-{i}".encode())
    finish(p, "idempotent")
    try:
        wait_until(
            lambda: sum(v.startswith(b"now-") for v in receiver.values()) == 20,
            "the records without a delay",
        )
    finally:
        receiver.stop()
    early = [v for v in receiver.values() if v.startswith(b"wait-")]
    if how == "kill9":
        broker.kill9()
    else:
        broker.stop()
    broker.restart()
    after = Receiver(broker.bootstrap, "durable-timers", [topic]).start()
    try:
        wait_until(
            lambda: Counter(after.values()) + Counter(early) == Counter(delayed),
            "every delayed record once after the restart",
            deadline_s=LONG_S,
        )
    finally:
        after.stop()
    assert_not_early(receiver.arrivals() + after.arrivals())
    assert not [v for v in after.values() if v.startswith(b"now-")]
    rebuilt = "rebuilt the delay index" in broker.log_text_since_last_start()
    assert rebuilt == (how == "kill9")  # a clean stop leaves a checkpoint to reuse


def test_retry_backoff_grows_and_survives_a_restart(
    broker_factory: BrokerFactory, topic: str
) -> None:
    broker = broker_factory(group_share_delivery_count_limit=8)
    create_topic(broker.bootstrap, topic)
    alter_group(
        broker.bootstrap,
        "patient",
        share_auto_offset_reset="earliest",
        strom_share_retry_backoff_ms="300",
        strom_share_retry_backoff_max_ms="1200",
    )
    p = producer_for("plain", broker.bootstrap, topic)
    p.produce(topic, b"flaky", partition=0)
    finish(p, "plain")

    def release_four(a: Arrival) -> ck.AcknowledgeType:
        return ck.AcknowledgeType.RELEASE if a.delivery_count < 5 else ck.AcknowledgeType.ACCEPT

    receiver = Receiver(broker.bootstrap, "patient", [topic], decide=release_four).start()
    try:
        wait_until(lambda: len(receiver.values()) == 5, "five deliveries", deadline_s=LONG_S)
    finally:
        receiver.stop()
    times = [a.received_ms for a in sorted(receiver.arrivals(), key=lambda a: a.delivery_count)]
    assert [a.delivery_count for a in receiver.arrivals()] == [1, 2, 3, 4, 5]
    # Released after delivery n, a record waits 300 * 2^(n-1) ms, at most 1200 ms.
    for n, wait in enumerate([300, 600, 1200, 1200], start=1):
        assert times[n] - times[n - 1] >= wait, (n, times)

    # A long backoff pending across a clean restart still holds.
    alter_group(
        broker.bootstrap,
        "patient",
        strom_share_retry_backoff_ms="4000",
        strom_share_retry_backoff_max_ms="60000",
    )
    p = producer_for("plain", broker.bootstrap, topic)
    p.produce(topic, b"again", partition=0)
    finish(p, "plain")

    def release_once(a: Arrival) -> ck.AcknowledgeType:
        return ck.AcknowledgeType.RELEASE if a.delivery_count == 1 else ck.AcknowledgeType.ACCEPT

    first = Receiver(broker.bootstrap, "patient", [topic], decide=release_once).start()
    try:
        wait_until(lambda: b"again" in first.values(), "the record's first delivery")
    finally:
        first.stop()
    released_at = max(a.received_ms for a in first.arrivals() if a.value == b"again")
    broker.stop()
    broker.restart()
    second = Receiver(broker.bootstrap, "patient", [topic]).start()
    try:
        wait_until(lambda: b"again" in second.values(), "the redelivery", deadline_s=LONG_S)
    finally:
        second.stop()
    (redelivered,) = [a for a in second.arrivals() if a.value == b"again"]
    assert redelivered.delivery_count == 2
    assert redelivered.received_ms >= released_at + 4000


def test_filtered_group_gets_only_matches_unfiltered_gets_all(
    broker: BrokerProcess, topic: str
) -> None:
    create_topic(broker.bootstrap, topic, partitions=1)
    alter_group(
        broker.bootstrap,
        "orders-eu",
        share_auto_offset_reset="earliest",
        strom_share_filter="header.type = 'order' AND header.region STARTS WITH 'eu-' "
        "AND header.amount >= 100 AND key NOT IN ('blocked')",
    )
    alter_group(broker.bootstrap, "everything", share_auto_offset_reset="earliest")
    p = producer_for("plain", broker.bootstrap, topic)
    matching = set()
    for i in range(60):
        kind = [b"order", b"refund", b"order"][i % 3]
        region = [b"eu-west", b"us-east"][i % 2]
        amount = str(i * 5).encode()
        key = b"blocked" if i % 7 == 0 else f"k{i}".encode()
        value = f"r{i}".encode()
        headers = [("type", kind), ("region", region), ("amount", amount)]
        p.produce(topic, value, key=key, headers=headers, partition=0)
        if kind == b"order" and region == b"eu-west" and i * 5 >= 100 and key != b"blocked":
            matching.add(value)
    finish(p, "plain")
    assert matching
    filtered = Receiver(broker.bootstrap, "orders-eu", [topic]).start()
    everything = Receiver(broker.bootstrap, "everything", [topic]).start()
    try:
        wait_until(lambda: len(everything.values()) == 60, "all records in the plain group")
        wait_until(lambda: set(filtered.values()) == matching, "the matching records")
        # Filtered-out records are acknowledged for the group: its start offset passes all.
        wait_until(
            lambda: share_start_offset(broker, "orders-eu", topic) == 60,
            "the filtered group's start offset at the end",
        )
    finally:
        filtered.stop()
        everything.stop()
    assert Counter(filtered.values()) == Counter(matching)
    assert Counter(everything.values()) == Counter(f"r{i}".encode() for i in range(60))


def test_bad_filter_is_refused_with_where(broker: BrokerProcess) -> None:
    with pytest.raises(ck.KafkaException) as caught:
        alter_group(broker.bootstrap, "g", strom_share_filter="header.a = 1 AND (key = 'x'")
    error = caught.value.args[0]
    assert error.code() == ck.KafkaError.INVALID_CONFIG
    assert "strom.share.filter" in error.str() and "at the end of the expression" in error.str()
    with pytest.raises(ck.KafkaException, match="at position 12"):
        alter_group(broker.bootstrap, "g", strom_share_filter="header.a < 'text'")
    alter_group(broker.bootstrap, "g", strom_share_filter="header.a < 5")
    assert describe_group(broker.bootstrap, "g")["strom.share.filter"] == "header.a < 5"


def _dlq_headers(m: ck.Message) -> dict[str, bytes]:
    return {k: v for k, v in (m.headers() or []) if k.startswith("__dlq.errors.")}


def test_dead_letters_rejected_and_exhausted(broker_factory: BrokerFactory, topic: str) -> None:
    broker = broker_factory(group_share_delivery_count_limit=3)
    dlq = f"dlq.{topic}"
    create_topic(broker.bootstrap, topic, partitions=1)
    create_topic(broker.bootstrap, dlq, config={"errors.deadletterqueue.group.enable": "true"})
    alter_group(
        broker.bootstrap,
        "careful",
        share_auto_offset_reset="earliest",
        errors_deadletterqueue_topic_name=dlq,
    )
    p = producer_for("idempotent", broker.bootstrap, topic)
    for i in range(12):
        value = [b"good", b"poison", b"hopeless"][i % 3] + f"-{i}".encode()
        p.produce(topic, value, key=f"k{i}".encode(), headers=[("trace", str(i).encode())])
    finish(p, "idempotent")

    def decide(a: Arrival) -> ck.AcknowledgeType:
        if a.value.startswith(b"poison"):
            return ck.AcknowledgeType.REJECT
        if a.value.startswith(b"hopeless"):
            return ck.AcknowledgeType.RELEASE
        return ck.AcknowledgeType.ACCEPT

    receiver = Receiver(broker.bootstrap, "careful", [topic], decide=decide).start()
    try:
        wait_until(
            lambda: len(read_all(broker.bootstrap, dlq)) >= 8,
            "eight dead-letter copies",
            deadline_s=LONG_S,
        )
        wait_until(
            lambda: share_start_offset(broker, "careful", topic) == 12, "everything finished"
        )
    finally:
        receiver.stop()
    copies = read_all(broker.bootstrap, dlq)
    source = {m.offset(): m for m in read_all(broker.bootstrap, topic)}
    assert len(copies) == 8
    seen: set[int] = set()
    for m in copies:
        h = _dlq_headers(m)
        offset = int(h["__dlq.errors.offset"])
        seen.add(offset)
        original = source[offset]
        assert (m.key(), m.value()) == (original.key(), original.value())
        assert m.timestamp() == original.timestamp()
        assert ("trace", str(offset).encode()) in (m.headers() or [])
        assert h["__dlq.errors.topic"] == topic.encode()
        assert h["__dlq.errors.partition"] == b"0"
        assert h["__dlq.errors.group"] == b"careful"
        if original.value().startswith(b"poison"):
            assert h["__dlq.errors.message"] == b"Offset rejected by client."
            assert h["__dlq.errors.delivery.count"] == b"1"
        else:
            assert h["__dlq.errors.message"] == b"Offset delivery count exceeded the threshold."
            assert h["__dlq.errors.delivery.count"] == b"3"
    assert seen == {o for o, m in source.items() if not m.value().startswith(b"good")}


def test_dead_letter_topic_rules(broker_factory: BrokerFactory, new_topic) -> None:  # type: ignore[no-untyped-def]
    """A missing topic without auto-creation, or one named without the prefix: archived
    without a copy. With auto-creation the topic is made, marked for dead letters."""
    broker = broker_factory()
    topic = new_topic("src")
    create_topic(broker.bootstrap, topic)
    alter_group(
        broker.bootstrap,
        "nowhere",
        share_auto_offset_reset="earliest",
        errors_deadletterqueue_topic_name=f"dlq.{topic}-missing",
    )
    create_topic(
        broker.bootstrap,
        f"no-prefix-{topic}",
        config={"errors.deadletterqueue.group.enable": "true"},
    )
    alter_group(
        broker.bootstrap,
        "badname",
        share_auto_offset_reset="earliest",
        errors_deadletterqueue_topic_name=f"no-prefix-{topic}",
    )
    p = producer_for("plain", broker.bootstrap, topic)
    p.produce(topic, b"bad", partition=0)
    finish(p, "plain")
    for group in ("nowhere", "badname"):
        r = Receiver(broker.bootstrap, group, [topic], decide=lambda a: ck.AcknowledgeType.REJECT)
        r.start()
        try:
            wait_until(
                lambda g=group: share_start_offset(broker, g, topic) == 1, f"{group} archived"
            )
        finally:
            r.stop()
    log = broker.log_text()
    assert "DLQ topic does not exist and auto create is disabled" in log
    assert "does not comply with the DLQ topic prefix" in log
    assert not read_all(broker.bootstrap, f"no-prefix-{topic}")

    broker.stop()
    broker.restart({"errors.deadletterqueue.auto.create.topics.enable": "true"})
    alter_group(
        broker.bootstrap,
        "made",
        share_auto_offset_reset="earliest",
        errors_deadletterqueue_topic_name=f"dlq.{topic}-made",
    )
    r = Receiver(broker.bootstrap, "made", [topic], decide=lambda a: ck.AcknowledgeType.REJECT)
    r.start()
    try:
        wait_until(lambda: read_all(broker.bootstrap, f"dlq.{topic}-made"), "the created topic")
    finally:
        r.stop()
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, f"dlq.{topic}-made")
    configs = admin.describe_configs([resource])[resource].result(30)
    assert configs["errors.deadletterqueue.group.enable"].value == "true"


def _last_batch_with_plan(data_dir: Path) -> tuple[Path, int] | None:
    """The `__share_group_state` segment and end position of the last batch whose extension
    record holds a dead-letter plan in flight."""
    found = None
    for segment in sorted(data_dir.glob("__share_group_state-*/*.log")):
        data = segment.read_bytes()
        for pos, h in iter_batch_headers(data):
            end = pos + h.batch_length + 12
            _, records = decode_records(data[pos:end])
            for r in records:
                if r.key is None or r.value is None or r.key[:2] != b"\x03\xe8":
                    continue
                if ShareExtension.decode(r.value).copier.in_flight is not None:
                    found = (segment, end)
    return found


def _forget_checkpoints(data_dir: Path) -> None:
    """After cutting logs by hand: every segment is recovered from its start again."""
    for name in ("recovery-point-offset-checkpoint", "replication-offset-checkpoint"):
        (data_dir / name).unlink(missing_ok=True)


@pytest.mark.parametrize("window", ["copied, not marked", "planned, not copied"])
def test_dead_letter_copy_once_when_killed_between(
    broker_factory: BrokerFactory, topic: str, window: str
) -> None:
    """The broker killed with kill -9 after the plan of a copy was persisted: once with the copy
    already in the dead-letter topic, once without it. The state and logs are cut back by hand
    to exactly that moment; after the restart each record is in the dead-letter topic once."""
    broker = broker_factory()
    dlq = f"dlq.{topic}"
    create_topic(broker.bootstrap, topic)
    create_topic(broker.bootstrap, dlq, config={"errors.deadletterqueue.group.enable": "true"})
    alter_group(
        broker.bootstrap,
        "rejecting",
        share_auto_offset_reset="earliest",
        errors_deadletterqueue_topic_name=dlq,
    )
    p = producer_for("plain", broker.bootstrap, topic)
    for i in range(5):
        p.produce(topic, f"bad-{i}".encode(), partition=0)
    finish(p, "plain")
    reject = Receiver(
        broker.bootstrap, "rejecting", [topic], decide=lambda a: ck.AcknowledgeType.REJECT
    ).start()
    try:
        wait_until(
            lambda: share_start_offset(broker, "rejecting", topic) == 5, "the copies written"
        )
    finally:
        reject.stop()
    assert len(read_all(broker.bootstrap, dlq)) == 5
    broker.kill9()
    cut = _last_batch_with_plan(broker.data_dir)
    assert cut is not None, "no persisted dead-letter plan"
    segment, end = cut
    os.truncate(segment, end)  # the state as it was when the plan was persisted
    if window == "planned, not copied":
        dlq_dir = broker.partition_dir(dlq, 0)
        for path in dlq_dir.iterdir():
            if path.suffix in (".log", ".index", ".timeindex", ".snapshot", ".txnindex"):
                os.truncate(path, 0) if path.suffix == ".log" else path.unlink()
    _forget_checkpoints(broker.data_dir)
    broker.restart()
    wait_until(
        lambda: share_start_offset(broker, "rejecting", topic) == 5,
        "the plan sent again",
        deadline_s=LONG_S,
    )
    offsets = [int(_dlq_headers(m)["__dlq.errors.offset"]) for m in read_all(broker.bootstrap, dlq)]
    assert sorted(offsets) == [0, 1, 2, 3, 4]


def test_dead_letters_once_across_kill9(broker_factory: BrokerFactory, topic: str) -> None:
    """The broker killed with kill -9 while rejections are being copied, three times: every
    rejected record lands in the dead-letter topic once. Each kill comes as soon as the copies
    have grown, with most of them still to write."""
    broker = broker_factory()
    dlq = f"dlq.{topic}"
    total = 3000
    create_topic(broker.bootstrap, topic)
    create_topic(broker.bootstrap, dlq, config={"errors.deadletterqueue.group.enable": "true"})
    alter_group(
        broker.bootstrap,
        "rejecting",
        share_auto_offset_reset="earliest",
        errors_deadletterqueue_topic_name=dlq,
    )
    p = producer_for("plain", broker.bootstrap, topic)
    for i in range(total):
        p.produce(topic, f"more-{i}".encode(), partition=0)
    finish(p, "plain")
    copied_at_kill: list[int] = []
    for _ in range(3):
        before = ck_watermarks(broker.bootstrap, dlq, 0)[1]
        if before == total:
            break
        reject = Receiver(
            broker.bootstrap, "rejecting", [topic], decide=lambda a: ck.AcknowledgeType.REJECT
        ).start()
        try:
            copied = wait_until(
                lambda b=before: (n := ck_watermarks(broker.bootstrap, dlq, 0)[1]) > b and n,
                "more dead-letter copies",
                deadline_s=LONG_S,
            )
            broker.kill9()
        finally:
            reject.stop()
        copied_at_kill.append(copied)
        broker.restart()
    assert copied_at_kill and copied_at_kill[0] < total, copied_at_kill
    reject = Receiver(
        broker.bootstrap, "rejecting", [topic], decide=lambda a: ck.AcknowledgeType.REJECT
    ).start()
    try:
        wait_until(
            lambda: share_start_offset(broker, "rejecting", topic) == total,
            "every record rejected and copied",
            deadline_s=LONG_S,
        )
    finally:
        reject.stop()
    offsets = [int(_dlq_headers(m)["__dlq.errors.offset"]) for m in read_all(broker.bootstrap, dlq)]
    assert sorted(offsets) == list(range(total))


def test_describe_and_metrics_show_dead_letters_delays_and_filter(
    broker_factory: BrokerFactory, topic: str
) -> None:
    """DescribeConfigs on the group shows its dead-letter topic and filter; /metrics and
    DescribeShareGroupOffsets show the records waiting for their time, /metrics the
    dead-letter copies written."""
    port = free_port()
    broker = broker_factory({"strom.http.listeners": f"http://127.0.0.1:{port}"})
    dlq = f"dlq.{topic}"
    create_topic(broker.bootstrap, topic, partitions=1)
    create_topic(broker.bootstrap, dlq, config={"errors.deadletterqueue.group.enable": "true"})
    alter_group(
        broker.bootstrap,
        "shown",
        share_auto_offset_reset="earliest",
        errors_deadletterqueue_topic_name=dlq,
        strom_share_filter="header.kind = 'job'",
    )
    p = producer_for("plain", broker.bootstrap, topic)
    tomorrow = str(now_ms() + 86_400_000).encode()
    for i in range(7):
        p.produce(
            topic, f"later-{i}".encode(), headers=[("kind", b"job"), ("strom.deliver.at", tomorrow)]
        )
    for i in range(3):
        p.produce(topic, f"now-{i}".encode(), headers=[("kind", b"job")])
        p.produce(topic, f"other-{i}".encode(), headers=[("kind", b"mail")])
    p.produce(topic, b"bad", headers=[("kind", b"job")])
    finish(p, "plain")

    def decide(a: Arrival) -> ck.AcknowledgeType:
        return ck.AcknowledgeType.REJECT if a.value == b"bad" else ck.AcknowledgeType.ACCEPT

    receiver = Receiver(broker.bootstrap, "shown", [topic], decide=decide).start()
    try:
        wait_until(lambda: len(receiver.values()) == 4, "the four due matching records")
        wait_until(lambda: read_all(broker.bootstrap, dlq), "the dead-letter copy")
        # Records waiting a day do not hold the share-partition start offset back.
        wait_until(lambda: share_start_offset(broker, "shown", topic) == 14, "the start at the end")
    finally:
        receiver.stop()
    assert sorted(receiver.values()) == [b"bad", b"now-0", b"now-1", b"now-2"]
    described = describe_group(broker.bootstrap, "shown")
    assert described["errors.deadletterqueue.topic.name"] == dlq
    assert described["strom.share.filter"] == "header.kind = 'job'"
    labels = {"sharegroup": "shown", "topic": topic, "partition": "0"}
    samples = scrape(port)
    assert sample_value(samples, "strom_share_partition_delayed_records", **labels) == 7
    # DescribeShareGroupOffsets says it too, from the share state last written.
    wait_until(
        lambda: described_partition(broker, "shown", topic) == (14, 7),
        "the seven delayed records described",
    )
    assert sample_value(samples, "strom_share_partition_archiving_records", **labels) == 0
    assert sample_value(samples, "strom_share_dead_letter_records_total") == 1
