"""Share groups (KIP-932) with confluent-kafka's ShareConsumer against a real broker (#11).

Records are told apart by their values; nothing is timed: waits are loops with generous
deadlines. Lock timeouts are shortened with group.share.record.lock.duration.ms where a test
waits for one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AdminClient

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.alter_share_group_offsets_request import (
    AlterShareGroupOffsetsRequest,
    AlterShareGroupOffsetsRequestPartition,
    AlterShareGroupOffsetsRequestTopic,
)
from strom.protocol.messages.alter_share_group_offsets_response import (
    AlterShareGroupOffsetsResponse,
)
from strom.protocol.messages.delete_share_group_offsets_request import (
    DeleteShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsRequestTopic,
)
from strom.protocol.messages.delete_share_group_offsets_response import (
    DeleteShareGroupOffsetsResponse,
)
from strom.protocol.messages.describe_share_group_offsets_request import (
    DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsRequestGroup,
    DescribeShareGroupOffsetsRequestTopic,
)
from strom.protocol.messages.describe_share_group_offsets_response import (
    DescribeShareGroupOffsetsResponse,
)
from strom.protocol.messages.list_groups_request import ListGroupsRequest
from strom.protocol.messages.list_groups_response import ListGroupsResponse
from strom.protocol.messages.share_fetch_request import (
    FetchPartition,
    FetchTopic,
    ShareFetchRequest,
)
from strom.protocol.messages.share_fetch_response import ShareFetchResponse

from .broker_process import BrokerProcess
from .clients import DEADLINE_S, ck_consume, create_topic, wait_until
from .conftest import BrokerFactory
from .share_helpers import (
    ShareWorker,
    WireConnection,
    prime,
    produce_values,
    share_conf,
    share_group_describe,
    wait_members,
    wire,
)

pytestmark = pytest.mark.integration

LONG_S = 120.0


def _values(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix}-{i}".encode() for i in range(n)]


def _stop(workers: list[ShareWorker]) -> None:
    for w in workers:
        w.stop()


def test_five_consumers_on_one_partition_share_it(broker: BrokerProcess, topic: str) -> None:
    create_topic(broker.bootstrap, topic, partitions=1)
    workers = [ShareWorker(broker.bootstrap, "five", [topic]).start() for _ in range(5)]
    try:
        wait_members(broker, "five", 5)
        prime(broker.bootstrap, topic, workers)
        expected = _values("r", 400)
        produce_values(broker.bootstrap, topic, expected)

        def all_received() -> bool:
            return Counter(v for w in workers for v in w.values()) == Counter(expected)

        wait_until(all_received, "every record received once", deadline_s=LONG_S)
        assert all(w.values() for w in workers), [len(w.values()) for w in workers]
        assert all(g.delivery_count == 1 for w in workers for g in w.got)
    finally:
        _stop(workers)
    described = share_group_describe(broker, "five")
    assert described.error_code == 0 and described.group_state == "Empty"


def test_release_and_reject(broker_factory: BrokerFactory, topic: str) -> None:
    """Explicit acknowledgement: a released record comes back with a higher delivery count,
    a rejected one never does, and the commit callback reports every acknowledged offset."""
    broker = broker_factory()
    create_topic(broker.bootstrap, topic, partitions=1)

    def decide(message: ck.Message) -> ck.AcknowledgeType:
        value = message.value()
        if value.startswith(b"release") and message.delivery_count() < 3:
            return ck.AcknowledgeType.RELEASE
        if value.startswith(b"reject"):
            return ck.AcknowledgeType.REJECT
        return ck.AcknowledgeType.ACCEPT

    worker = ShareWorker(broker.bootstrap, "explicit", [topic], decide=decide).start()
    try:
        prime(broker.bootstrap, topic, [worker])
        produce_values(broker.bootstrap, topic, [b"accept-0", b"release-0", b"reject-0", b"end"])

        def done() -> bool:
            got = [(g.value, g.delivery_count) for g in worker.got]
            return (b"release-0", 3) in got and b"end" in [v for v, _ in got]

        wait_until(done, "the released record redelivered twice", deadline_s=LONG_S)
    finally:
        worker.stop()
    counts = Counter(g.value for g in worker.got)
    assert counts[b"accept-0"] == 1 and counts[b"reject-0"] == 1 and counts[b"release-0"] == 3
    assert [g.delivery_count for g in worker.got if g.value == b"release-0"] == [1, 2, 3]
    acknowledged = {
        o for offsets, exc in worker.ack_results if exc is None for s in offsets.values() for o in s
    }
    assert {g.offset for g in worker.got} <= acknowledged
    assert not worker.errors


def test_closed_connection_releases_its_records(broker_factory: BrokerFactory, topic: str) -> None:
    """A member whose share-session connection closes loses its records at once (Kafka 4.1+),
    although it stays in the group and its locks (an hour here) have long to run: another
    member gets them, delivered a second time."""
    import asyncio

    from strom.client import Client
    from strom.client.share_consumer import ShareFetcher, ShareMember

    broker = broker_factory({"group.share.max.record.lock.duration.ms": 3_600_000})
    create_topic(broker.bootstrap, topic, partitions=1)
    group = "dropped"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ck.admin.ConfigResource(
        ck.admin.ResourceType.GROUP,
        group,
        incremental_configs=[
            ck.admin.ConfigEntry(name, value, incremental_operation=ck.admin.AlterConfigOpType.SET)
            for name, value in (
                ("share.auto.offset.reset", "earliest"),
                ("share.record.lock.duration.ms", "3600000"),
            )
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(DEADLINE_S)
    expected = _values("held", 10)
    produce_values(broker.bootstrap, topic, expected)

    async def hold_then_drop_connection(then: threading.Event, done: threading.Event) -> None:
        async with Client(broker.bootstrap) as client:
            member = ShareMember(client, group, [topic])
            await member.join()
            fetcher = ShareFetcher(member)
            held: list[bytes] = []
            deadline = time.monotonic() + LONG_S
            while len(held) < len(expected) and time.monotonic() < deadline:
                held += [bytes(r.record.value or b"") for r in await fetcher.fetch()]
            assert sorted(held) == sorted(expected)
            # The connection that carries the share session (and the heartbeats) goes away;
            # the next heartbeat opens another one, so the member stays in the group.
            await (await client.connection(0)).close()
            then.set()
            while not done.is_set():
                await asyncio.sleep(0.2)
            await member.leave()

    dropped, finished = threading.Event(), threading.Event()
    holder = threading.Thread(
        target=lambda: asyncio.run(hold_then_drop_connection(dropped, finished)), daemon=True
    )
    holder.start()
    worker: ShareWorker | None = None
    try:
        assert dropped.wait(LONG_S), "the first member did not get the records"
        worker = ShareWorker(broker.bootstrap, group, [topic]).start()
        wait_until(
            lambda: sorted(worker.values()) == sorted(expected),
            "the released records at the second member",
            deadline_s=LONG_S,
        )
        assert {g.delivery_count for g in worker.got} == {2}
        assert len(share_group_describe(broker, group).members) == 2
    finally:
        if worker is not None:
            worker.stop()
        finished.set()
        holder.join(DEADLINE_S)


def test_delivery_count_limit_archives(broker_factory: BrokerFactory, topic: str) -> None:
    broker = broker_factory({"group.share.delivery.count.limit": 3})
    create_topic(broker.bootstrap, topic, partitions=1)

    def decide(message: ck.Message) -> ck.AcknowledgeType:
        if message.value() == b"poison":
            return ck.AcknowledgeType.RELEASE
        return ck.AcknowledgeType.ACCEPT

    worker = ShareWorker(broker.bootstrap, "limit", [topic], decide=decide).start()
    try:
        prime(broker.bootstrap, topic, [worker])
        produce_values(broker.bootstrap, topic, [b"poison"])
        wait_until(
            lambda: sum(g.value == b"poison" for g in worker.got) >= 3,
            "three deliveries of the poison record",
            deadline_s=LONG_S,
        )
        produce_values(broker.bootstrap, topic, [b"after"])
        wait_until(lambda: b"after" in worker.values(), "the next record", deadline_s=LONG_S)
    finally:
        worker.stop()
    poison = [g.delivery_count for g in worker.got if g.value == b"poison"]
    assert poison == [1, 2, 3]  # archived after the limit: never a fourth time


KILLED_CONSUMER = textwrap.dedent(
    """
    import sys, confluent_kafka as ck
    bootstrap, group, topic = sys.argv[1:4]
    c = ck.ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group,
                          "share.acknowledgement.mode": "explicit", "max.poll.records": 50})
    c.subscribe([topic])
    while True:
        msgs = [m for m in c.poll(0.5) if not m.error()]
        if msgs:
            print("GOT", " ".join(m.value().decode() for m in msgs), flush=True)
            break
    sys.stdin.read()  # holds its records, unacknowledged, until killed
    """
)


def test_consumer_killed_mid_batch_loses_nothing(broker_factory: BrokerFactory, topic: str) -> None:
    """A consumer killed with kill -9 while holding records: once their locks expire they
    reach the other consumer."""
    broker = broker_factory({"group.share.record.lock.duration.ms": 3000})
    create_topic(broker.bootstrap, topic, partitions=1)
    victim = subprocess.Popen(
        [sys.executable, "-c", KILLED_CONSUMER, broker.bootstrap, "killed", topic],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    survivor: ShareWorker | None = None
    lines: list[str] = []
    assert victim.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(victim.stdout or []), daemon=True)
    reader.start()
    try:
        produced = 0

        def holding() -> list[str] | None:
            # The victim's first fetch decides where the group starts: produce until it holds.
            nonlocal produced
            for line in list(lines):
                if line.startswith("GOT"):
                    return line.split()[1:]
            batch = [f"k-{i}".encode() for i in range(produced, produced + 40)]
            produce_values(broker.bootstrap, topic, batch)
            produced += 40
            return None

        held: list[str] = wait_until(holding, "the victim to hold records", interval_s=1.0)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(30)
        survivor = ShareWorker(broker.bootstrap, "killed", [topic]).start()
        expected = [f"k-{i}".encode() for i in range(produced)]
        first_held = min(int(v.split("-")[1]) for v in held)
        wanted = [v for v in expected if int(v.split(b"-")[1]) >= first_held]
        wait_until(
            lambda: set(wanted) <= set(survivor.values()) if survivor else False,
            "the killed consumer's records at the survivor",
            deadline_s=LONG_S,
        )
        redelivered = [g for g in survivor.got if g.value.decode() in held]
        assert redelivered and all(g.delivery_count == 2 for g in redelivered)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(30)
        if survivor is not None:
            survivor.stop()


def test_share_group_and_consumer_group_both_read_everything(
    broker: BrokerProcess, topic: str
) -> None:
    create_topic(broker.bootstrap, topic, partitions=3)
    workers = [ShareWorker(broker.bootstrap, "sg", [topic]).start() for _ in range(2)]
    try:
        wait_members(broker, "sg", 2)
        for p in range(3):
            prime(broker.bootstrap, topic, workers, partition=p)
        expected = []
        for p in range(3):
            values = _values(f"p{p}", 50)
            produce_values(broker.bootstrap, topic, values, partition=p)
            expected += values
        wait_until(
            lambda: Counter(v for w in workers for v in w.values()) == Counter(expected),
            "the share group to receive every record once",
            deadline_s=LONG_S,
        )
    finally:
        _stop(workers)
    got = ck_consume(broker.bootstrap, topic, [0, 1, 2])
    plain = {r.value for r in got if r.value and not r.value.startswith(b"prime-")}
    assert plain == set(expected)


def test_share_group_describe_and_errors(broker: BrokerProcess, topic: str) -> None:
    create_topic(broker.bootstrap, topic, partitions=2)
    worker = ShareWorker(broker.bootstrap, "described", [topic]).start()
    try:
        described = wait_members(broker, "described", 1)
        assert described.group_state == "Stable"
        (member,) = described.members
        assert member.subscribed_topic_names == [topic]
        (assigned,) = member.assignment.topic_partitions
        assert assigned.topic_name == topic and assigned.partitions == [0, 1]
        assert described.group_epoch >= 1 and described.assignment_epoch == described.group_epoch
    finally:
        worker.stop()
    unknown = share_group_describe(broker, "no-such-group")
    assert unknown.error_code == 69  # GROUP_ID_NOT_FOUND
    consumer = ck.ShareConsumer(share_conf(broker.bootstrap, "cg-taken"))
    consumer.close()


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_broker_restart_keeps_share_state(
    broker_factory: BrokerFactory, topic: str, how: str
) -> None:
    """Accepted records are never delivered again after a restart, and records that were
    delivered but not acknowledged (or never delivered) are not lost."""
    broker = broker_factory()
    create_topic(broker.bootstrap, topic, partitions=1)
    primer = ShareWorker(broker.bootstrap, "durable", [topic]).start()
    try:
        prime(broker.bootstrap, topic, [primer])
    finally:
        primer.stop()
    expected = _values("d", 60)
    produce_values(broker.bootstrap, topic, expected)
    consumer = ck.ShareConsumer(
        share_conf(broker.bootstrap, "durable", share_acknowledgement_mode="explicit")
    )
    consumer.subscribe([topic])
    accepted: list[bytes] = []
    held: list[bytes] = []
    try:

        def poll_some() -> list[ck.Message]:
            return [m for m in consumer.poll(0.5) if not m.error()]

        first: list[ck.Message] = wait_until(poll_some, "a first batch", interval_s=0.0)
        for m in first:
            consumer.acknowledge(m, ck.AcknowledgeType.ACCEPT)
            accepted.append(m.value())
        consumer.commit_sync(30)
        second: list[ck.Message] = wait_until(poll_some, "a second batch", interval_s=0.0)
        held = [m.value() for m in second]  # delivered, never acknowledged
        if how == "kill9":
            broker.kill9()
        else:
            broker.stop()
        broker.restart()
    finally:
        consumer.close()
    accepted = [v for v in accepted if not v.startswith(b"prime-")]
    assert accepted and held
    survivor = ShareWorker(broker.bootstrap, "durable", [topic]).start()
    try:
        rest = Counter(v for v in expected if v not in accepted)
        wait_until(
            lambda: Counter(survivor.values()) == rest,
            "every record not accepted before the restart, once",
            deadline_s=LONG_S,
        )
    finally:
        survivor.stop()
    assert not set(accepted) & set(survivor.values())


def test_share_group_offsets_admin(broker: BrokerProcess, topic: str) -> None:
    """Describe (with lag), alter and delete a share group's start offsets on the wire,
    ListGroups by type, and DeleteGroups through confluent-kafka's AdminClient."""
    create_topic(broker.bootstrap, topic, partitions=1)
    group = "admin-sg"

    def describe() -> tuple[int, int, int]:
        request = DescribeShareGroupOffsetsRequest(
            groups=[
                DescribeShareGroupOffsetsRequestGroup(
                    group, [DescribeShareGroupOffsetsRequestTopic(topic, [0])]
                )
            ]
        )
        (described,) = wire(broker, 90, 1, request, DescribeShareGroupOffsetsResponse).groups
        if described.error_code:
            return described.error_code, -1, -1
        (row,) = described.topics[0].partitions
        return row.error_code, row.start_offset, row.lag

    def alter(start: int) -> tuple[int, int]:
        request = AlterShareGroupOffsetsRequest(
            group,
            [
                AlterShareGroupOffsetsRequestTopic(
                    topic, [AlterShareGroupOffsetsRequestPartition(0, start)]
                )
            ],
        )
        response = wire(broker, 91, 0, request, AlterShareGroupOffsetsResponse)
        if response.error_code:
            return response.error_code, -1
        return 0, response.responses[0].partitions[0].error_code

    worker = ShareWorker(broker.bootstrap, group, [topic]).start()
    try:
        prime(broker.bootstrap, topic, [worker])
        values = _values("a", 10)
        produce_values(broker.bootstrap, topic, values)
        wait_until(lambda: sorted(worker.values()) == sorted(values), "ten records")
        assert alter(0) == (ErrorCode.NON_EMPTY_GROUP, -1)
    finally:
        worker.stop()
    high = ck_consume(broker.bootstrap, topic, [0])[-1].offset + 1
    assert describe() == (0, high, 0)  # everything acknowledged: nothing lags
    listed = wire(broker, 16, 5, ListGroupsRequest(types_filter=["share"]), ListGroupsResponse)
    assert [(g.group_id, g.group_type) for g in listed.groups] == [(group, "share")]
    # Back to ten records before the end: they are delivered again, and lag meanwhile.
    assert alter(high - 10) == (0, 0)
    assert describe() == (0, high - 10, 10)
    again = ShareWorker(broker.bootstrap, group, [topic]).start()
    try:
        wait_until(lambda: sorted(again.values()) == sorted(values), "the ten records again")
    finally:
        again.stop()
    request = DeleteShareGroupOffsetsRequest(group, [DeleteShareGroupOffsetsRequestTopic(topic)])
    deleted = wire(broker, 92, 0, request, DeleteShareGroupOffsetsResponse)
    assert deleted.error_code == 0 and deleted.responses[0].error_code == 0
    assert describe() == (0, -1, -1)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_consumer_groups([group])[group].result(30)
    assert describe()[0] == ErrorCode.GROUP_ID_NOT_FOUND


def test_group_configs(broker: BrokerProcess, topic: str) -> None:
    """share.auto.offset.reset, share.isolation.level and share.record.lock.duration.ms set on
    GROUP resources with confluent-kafka's AdminClient, described back, and acted on."""
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    create_topic(broker.bootstrap, topic, partitions=1)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    group = "configured"

    def alter(**configs: str) -> None:
        entries = [
            ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET)
            for k, v in configs.items()
        ]
        resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)
        admin.incremental_alter_configs([resource])[resource].result(30)

    alter(share_auto_offset_reset="earliest", share_isolation_level="read_committed")
    alter(share_record_lock_duration_ms="20000")
    with pytest.raises(ck.KafkaException, match=r"INVALID_CONFIG|Invalid value"):
        alter(share_isolation_level="sometimes")
    resource = ConfigResource(ResourceType.GROUP, group)
    described = admin.describe_configs([resource])[resource].result(30)
    assert described["share.auto.offset.reset"].value == "earliest"
    assert described["share.record.lock.duration.ms"].value == "20000"
    assert described["share.isolation.level"].source == 8  # DYNAMIC_GROUP_CONFIG

    # Records written before the group exists are read (earliest); an aborted transaction's
    # records never are (read_committed).
    produce_values(broker.bootstrap, topic, [b"plain-0", b"plain-1"])
    producer = ck.Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": f"tx-{topic}"}
    )
    producer.init_transactions(30)
    for values, commit in (([b"aborted-0", b"aborted-1"], False), ([b"committed-0"], True)):
        producer.begin_transaction()
        for v in values:
            producer.produce(topic, v, partition=0)
        producer.flush(30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    produce_values(broker.bootstrap, topic, [b"plain-2"])
    worker = ShareWorker(broker.bootstrap, group, [topic]).start()
    try:
        wanted = [b"plain-0", b"plain-1", b"committed-0", b"plain-2"]
        wait_until(lambda: sorted(worker.values()) == sorted(wanted), "the committed records")
    finally:
        worker.stop()
    assert not [v for v in worker.values() if v.startswith(b"aborted")]


def test_group_max_size_refuses_one_member_too_many(
    broker_factory: BrokerFactory, topic: str
) -> None:
    """group.share.max.size (at least 10, as Kafka): the member past the bound is refused with
    GROUP_MAX_SIZE_REACHED, which confluent-kafka's ShareConsumer reports as a fatal error;
    the members in the group go on."""
    broker = broker_factory({"group.share.max.size": 10})
    create_topic(broker.bootstrap, topic, partitions=1)
    members = [ShareWorker(broker.bootstrap, "small", [topic]).start() for _ in range(10)]
    try:
        wait_members(broker, "small", 10)
        extra = ck.ShareConsumer(share_conf(broker.bootstrap, "small"))
        extra.subscribe([topic])
        errors: list[ck.KafkaError] = []

        def refused() -> bool:
            try:
                errors.extend(m.error() for m in extra.poll(0.5) if m.error())
            except ck.KafkaException as exc:
                errors.append(exc.args[0])
            return any(e.code() == ck.KafkaError.GROUP_MAX_SIZE_REACHED for e in errors)

        try:
            wait_until(refused, "GROUP_MAX_SIZE_REACHED for the eleventh member")
        finally:
            extra.close()
        assert len(share_group_describe(broker, "small").members) == 10
        prime(broker.bootstrap, topic, members)
        produce_values(broker.bootstrap, topic, [b"still-served"])
        wait_until(
            lambda: [v for w in members for v in w.values()] == [b"still-served"],
            "the members' record",
        )
    finally:
        _stop(members)


def test_auto_offset_reset_by_duration(broker: BrokerProcess, topic: str) -> None:
    """share.auto.offset.reset=by_duration:PT1H (KIP-1106), set with confluent-kafka's
    AdminClient: a new share group starts at the first record at most an hour old."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    create_topic(broker.bootstrap, topic, partitions=1)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    entry = ConfigEntry(
        "share.auto.offset.reset", "by_duration:PT1H", incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.GROUP, "recent", incremental_configs=[entry])
    admin.incremental_alter_configs([resource])[resource].result(30)
    producer = ck.Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    now_ms = int(time.time() * 1000)
    for value, age_ms in ((b"two-hours-old", 7_200_000), (b"a-minute-old", 60_000), (b"new", 0)):
        producer.produce(topic, value, partition=0, timestamp=now_ms - age_ms)
        producer.flush(30)  # one batch each
    worker = ShareWorker(broker.bootstrap, "recent", [topic]).start()
    try:
        wait_until(
            lambda: sorted(worker.values()) == [b"a-minute-old", b"new"],
            "the records of the last hour",
        )
    finally:
        worker.stop()
    assert b"two-hours-old" not in worker.values()


def test_share_sessions_bounded_by_max_groups_times_max_size(
    broker_factory: BrokerFactory, topic: str
) -> None:
    """A broker keeps at most group.share.max.groups x group.share.max.size share sessions
    (here 1 x 10, as Kafka 4.0 sized its cache): while ten ShareConsumers hold theirs, a new
    session is refused with SHARE_SESSION_LIMIT_REACHED; once they close, an eleventh
    ShareConsumer, started meanwhile, is served."""
    broker = broker_factory({"group.share.max.groups": 1, "group.share.max.size": 10})
    create_topic(broker.bootstrap, topic, partitions=1)
    full = [ShareWorker(broker.bootstrap, "ten", [topic]).start() for _ in range(10)]
    late: ShareWorker | None = None
    try:
        wait_members(broker, "ten", 10)
        prime(broker.bootstrap, topic, full)
        tid = share_group_describe(broker, "ten").members[0].assignment.topic_partitions[0]

        def open_session(member: str) -> int:
            request = ShareFetchRequest(
                group_id="eleventh",
                member_id=member,
                share_session_epoch=0,
                max_wait_ms=0,
                max_records=1,
                topics=[FetchTopic(tid.topic_id, [FetchPartition(partition_index=0)])],
            )
            return int(wire(broker, 78, 1, request, ShareFetchResponse).error_code)

        # Every one of the ten fetches (long polls renew their sessions): the cache is full.
        wait_until(
            lambda: open_session("probe") == ErrorCode.SHARE_SESSION_LIMIT_REACHED,
            "SHARE_SESSION_LIMIT_REACHED for an eleventh session",
        )
        late = ShareWorker(broker.bootstrap, "eleventh", [topic]).start()
        _stop(full)
        full = []
        prime(broker.bootstrap, topic, [late])
        produce_values(broker.bootstrap, topic, [b"served-at-last"])
        wait_until(lambda: late.values() == [b"served-at-last"], "the eleventh consumer's record")
    finally:
        _stop(full)
        if late is not None:
            late.stop()


def test_in_flight_records_bounded_per_partition(broker_factory: BrokerFactory, topic: str) -> None:
    """group.share.partition.max.record.locks (100 here): a member that fetches without ever
    acknowledging holds at most that many records of the partition and nobody acquires more;
    once it closes its session they are released and a ShareConsumer reads all of them once."""
    broker = broker_factory({"group.share.partition.max.record.locks": 100})
    create_topic(broker.bootstrap, topic, partitions=1)
    first = ShareWorker(broker.bootstrap, "window", [topic]).start()
    try:
        prime(broker.bootstrap, topic, [first])  # the group's share state starts here
        (assigned,) = wait_members(broker, "window", 1).members[0].assignment.topic_partitions
    finally:
        first.stop()
    values = _values("held", 150)
    produce_values(broker.bootstrap, topic, values)
    epochs = {"hoarder": 0, "other": 0}
    # Each member on a connection of its own, kept open: closing one ends its share session.
    connections = {member: WireConnection(broker) for member in epochs}

    def share_fetch(member: str, max_records: int = 1000) -> int:
        epoch = epochs[member]
        request = ShareFetchRequest(
            group_id="window",
            member_id=member,
            share_session_epoch=epoch,
            max_wait_ms=0,
            max_records=max_records,
            topics=[FetchTopic(assigned.topic_id, [FetchPartition(partition_index=0)])],
        )
        response = connections[member].call(78, 1, request, ShareFetchResponse)
        assert response.error_code == 0
        epochs[member] = 1 if epoch in (0, -1) else epoch + 1
        return sum(
            r.last_offset - r.first_offset + 1
            for t in response.responses
            for p in t.partitions
            for r in p.acquired_records
        )

    held = 0

    def window_full() -> bool:
        nonlocal held
        held += share_fetch("hoarder")
        return held >= 100

    wait_until(window_full, "the hoarder to hold a full window")
    assert held == 100
    assert share_fetch("other") == 0 and share_fetch("other") == 0
    second = ShareWorker(broker.bootstrap, "window", [topic]).start()
    try:
        epochs["hoarder"] = -1
        share_fetch("hoarder", max_records=0)  # closes the session: its records are released
        wait_until(
            lambda: Counter(second.values()) == Counter(values),
            "every held record read once",
            deadline_s=LONG_S,
        )
    finally:
        second.stop()
        for conn in connections.values():
            conn.sock.close()
