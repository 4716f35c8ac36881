"""Compaction on a real broker read by real clients: small segments and many overwrites read to
the end by confluent-kafka, kafka-python and aiokafka (past empty batches, compacted gaps and a
final transaction marker); a transactional producer's aborted records and markers removed as
Kafka removes them, across a restart, while read_committed and read_uncommitted consumers see
what Kafka shows. The segment files are read to check what the cleaner kept."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from strom.protocol.records.batch_header import BatchHeader, iter_batch_headers
from strom.protocol.records.codec import decode_records
from strom.protocol.records.control import CONTROL_ABORT, parse_control_record

from .broker_process import BrokerProcess
from .clients import (
    DEADLINE_S,
    Got,
    Rec,
    aio_consume,
    ck_admin,
    ck_conf,
    ck_consume,
    ck_produce,
    ck_watermarks,
    create_topic,
    kp_consume,
    kp_produce,
    wait_until,
)
from .conftest import BrokerFactory

pytestmark = pytest.mark.integration

COMPACTED = {
    "cleanup.policy": "compact",
    "segment.bytes": "1024",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "1500",
}
CLEANER = {"log.cleaner.backoff.ms": 100, "log.retention.check.interval.ms": 200}


@pytest.fixture(scope="module")
def cleaning_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    f = BrokerFactory(tmp_path_factory.mktemp("compaction"))
    try:
        yield f(CLEANER)
    finally:
        f.stop_all()


# -- the segment files ---------------------------------------------------------------------------


def stored_batches(partition_dir: Path) -> list[tuple[BatchHeader, list[Any]]]:
    """Every batch of the live segment files, decoded, in offset order. The cleaner swaps files
    while this reads them: a file that vanished or changed mid-read makes it start over."""
    for _ in range(50):
        try:
            out = []
            for path in sorted(partition_dir.glob("*.log")):
                data = memoryview(path.read_bytes())
                for position, header in iter_batch_headers(data):
                    out.append(decode_records(data[position : position + header.size]))
            offsets = [h.base_offset for h, _ in out]
            if offsets == sorted(set(offsets)):
                return out
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"could not read a consistent set of segments in {partition_dir}")


def abort_markers(batches: list[tuple[BatchHeader, list[Any]]]) -> list[int]:
    return [
        h.base_offset
        for h, records in batches
        if h.is_control and records and parse_control_record(records[0])[0] == CONTROL_ABORT
    ]


# -- reading to the end ----------------------------------------------------------------------------


def latest(got: list[Got]) -> dict[bytes | None, bytes | None]:
    out: dict[bytes | None, bytes | None] = {}
    for g in got:
        out[g.key] = g.value
    return out


def read_to_end(bootstrap: str, topic: str, client: str, **conf: Any) -> list[Got]:
    """Every record from the beginning until the client's own position reaches the high
    watermark (the clients step over empty batches and markers by their last offset)."""
    end = ck_watermarks(bootstrap, topic, 0)[1]
    consume = {"confluent-kafka": ck_consume, "kafka-python": kp_consume, "aiokafka": aio_consume}
    got: list[Got] = consume[client](bootstrap, topic, [0], end_offsets={0: end}, **conf)
    offsets = [g.offset for g in got]
    assert offsets == sorted(set(offsets)), f"{client}: offsets not strictly increasing"
    return got


CLIENTS = ["confluent-kafka", "kafka-python", "aiokafka"]


def test_compacted_small_segments_are_read_to_the_end_by_every_client(
    cleaning_broker: BrokerProcess, topic: str
) -> None:
    b = cleaning_broker.bootstrap
    create_topic(b, topic, 1, COMPACTED)
    keys = [b"key-%d" % i for i in range(6)]
    # An idempotent producer writes every key once; a plain one then overwrites them all many
    # times, so the idempotent producer's last batch ends up empty (kept, as Kafka keeps it).
    ck_produce(
        b,
        topic,
        [Rec(k, b"idempotent", partition=0) for k in keys],
        **{"enable.idempotence": True, "linger.ms": 0, "batch.num.messages": 1},
    )
    expected: dict[bytes | None, bytes | None] = {}
    recs = [Rec(k, b"v%d:" % v + b"." * 60, partition=0) for v in range(20) for k in keys]
    kp_produce(b, topic, recs, linger_ms=0, batch_size=1)
    for r in recs:
        expected[r.key] = r.value
    partition_dir = cleaning_broker.partition_dir(topic, 0)
    fillers = [0]

    def cleaned() -> bool:
        # One key overwritten again and again: the active segment rolls and the cleaner has
        # closed segments to clean.
        n = fillers[0]
        fillers[0] += 8
        kp_produce(b, topic, [Rec(b"filler", b"f%d" % i, partition=0) for i in range(n, n + 8)])
        expected[b"filler"] = b"f%d" % (n + 7)
        batches = stored_batches(partition_dir)
        idempotent_kept_empty = any(h.producer_id >= 0 and not rs for h, rs in batches)
        data = [r for h, rs in batches if not h.is_control for r in rs if r.key in keys]
        return idempotent_kept_empty and len(data) == len(keys)

    wait_until(cleaned, "the overwritten keys cleaned", deadline_s=120, interval_s=0.3)
    # The log ends with a transaction's COMMIT marker: no record at the high watermark - 1.
    p = ck.Producer(ck_conf(b, **{"transactional.id": f"tx-{uuid.uuid4().hex[:8]}"}))
    p.init_transactions(DEADLINE_S)
    p.begin_transaction()
    p.produce(topic, key=keys[0], value=b"in a transaction", partition=0)
    p.commit_transaction(DEADLINE_S)
    expected[keys[0]] = b"in a transaction"
    batches = stored_batches(partition_dir)
    assert batches[-1][0].is_control
    assert batches[0][0].base_offset > 0 or not batches[0][1], "nothing was compacted away"
    for client in CLIENTS:
        got = read_to_end(b, topic, client)
        assert latest(got) == expected, client
        assert len(got) < len(recs), f"{client} read superseded records"


def _alter_topic(bootstrap: str, topic: str, name: str, value: str) -> None:
    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)],
    )
    admin = ck_admin(bootstrap)  # kept referenced until the answer is in
    admin.incremental_alter_configs([res])[res].result(DEADLINE_S)


def test_aborted_transactions_leave_a_compacted_topic_across_a_restart(
    broker_factory: BrokerFactory, topic: str
) -> None:
    broker = broker_factory(CLEANER)
    b = broker.bootstrap
    # No cleaning at first (records must be an hour old), to see the log as written.
    create_topic(b, topic, 1, {**COMPACTED, "min.compaction.lag.ms": "3600000"})
    keys = [b"k%d" % i for i in range(4)]
    committed: dict[bytes | None, bytes | None] = {}
    aborted_values: set[bytes] = set()
    p = ck.Producer(
        ck_conf(b, **{"transactional.id": f"tx-{uuid.uuid4().hex[:8]}", "linger.ms": 0})
    )
    p.init_transactions(DEADLINE_S)
    for i in range(18):
        p.begin_transaction()
        values = {k: b"t%d-%s" % (i, k) + b"." * 50 for k in keys[i % 2 :: 2]}
        for k, v in values.items():
            p.produce(topic, key=k, value=v, partition=0)
        p.flush(DEADLINE_S)  # written before the abort (an abort purges unsent records)
        if i % 3 == 1:
            p.abort_transaction(DEADLINE_S)
            aborted_values.update(values.values())
        else:
            p.commit_transaction(DEADLINE_S)
            committed.update(values)
    ck_produce(b, topic, [Rec(b"plain", b"p0", partition=0)])
    committed[b"plain"] = b"p0"
    partition_dir = broker.partition_dir(topic, 0)
    assert len(abort_markers(stored_batches(partition_dir))) == 6

    def views(client: str) -> tuple[dict[Any, Any], set[bytes]]:
        """(read_committed latest values, aborted values seen by read_uncommitted)."""
        committed_view = latest(read_to_end(b, topic, client, **isolation(client, True)))
        uncommitted = read_to_end(b, topic, client, **isolation(client, False))
        return committed_view, {g.value for g in uncommitted if g.value in aborted_values}

    # As written: read_uncommitted shows the aborted records, read_committed does not.
    for client in CLIENTS:
        assert views(client) == (committed, aborted_values), client

    fillers = [0]

    def write_fillers() -> None:
        """Overwrites of one key: the active segment rolls, so the records before it become
        cleanable, and the log stays dirty, as Kafka needs for its next pass."""
        n = fillers[0]
        fillers[0] += 4
        ck_produce(b, topic, [Rec(b"filler", b"f%d" % i, partition=0) for i in range(n, n + 4)])
        committed[b"filler"] = b"f%d" % (n + 3)

    def aborted_records_gone() -> bool:
        write_fillers()
        return not views("confluent-kafka")[1]

    _alter_topic(b, topic, "min.compaction.lag.ms", "0")
    wait_until(
        aborted_records_gone,
        "the first pass to remove the aborted records",
        deadline_s=120,
        interval_s=0.3,
    )
    for client in CLIENTS:
        assert views(client) == (committed, set()), client

    # The markers outlive their records by delete.retention.ms, stored in the batches: across
    # a restart too. Later passes then remove them.
    broker.restart()

    def markers_gone() -> bool:
        write_fillers()
        return not abort_markers(stored_batches(partition_dir))

    wait_until(markers_gone, "the ABORT markers removed", deadline_s=120, interval_s=0.3)
    assert not any(path.stat().st_size for path in partition_dir.glob("*.txnindex"))
    for client in CLIENTS:
        assert views(client) == (committed, set()), client


def isolation(client: str, read_committed: bool) -> dict[str, Any]:
    if client == "confluent-kafka":
        return {"isolation.level": "read_committed" if read_committed else "read_uncommitted"}
    return {"isolation_level": "read_committed" if read_committed else "read_uncommitted"}
