"""JBOD against a real `strom serve` with several log.dirs: placement of new partitions,
AlterReplicaLogDirs moving a partition under a producer and a consumer (kafka-python's
alter_replica_log_dirs), DescribeLogDirs (kafka-python and raw v0-v4), and log dirs failing at
start-up and at run time (the fault-injection seam, STROMTEST_FAULT_INJECTION)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import kafka
import kafka.admin as kpa
import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from kafka import TopicPartitionReplica

from .broker_process import BrokerProcess
from .clients import (
    Got,
    ck_admin,
    ck_conf,
    ck_consume,
    ck_produce,
    create_topic,
    make_recs,
    wait_until,
)
from .conftest import BrokerFactory
from .log_dirs_wire import (
    ERR_KAFKA_STORAGE_ERROR,
    ERR_LOG_DIR_NOT_FOUND,
    ERR_UNKNOWN_TOPIC_OR_PARTITION,
    alter_replica_log_dirs,
    describe_log_dirs,
)

pytestmark = pytest.mark.integration

FUTURE_DIR = re.compile(r"^(?P<tp>.+-\d+)\.[0-9a-f]{32}-future$")


def _dirs(tmp_path: Path, n: int) -> list[Path]:
    return [(tmp_path / "disks" / f"d{i}").absolute() for i in range(n)]


def _start(
    factory: BrokerFactory, dirs: list[Path], env: dict[str, str] | None = None, **sets: Any
) -> BrokerProcess:
    conf: dict[str, Any] = {
        "log.dirs": ",".join(map(str, dirs)),
        "log.flush.offset.checkpoint.interval.ms": 500,
        **sets,
    }
    return factory(conf, with_log_dirs=False, env=env)


def _partition_dirs(d: Path, topic: str) -> set[str]:
    return {p.name for p in d.iterdir() if p.is_dir() and p.name.startswith(topic + "-")}


def _home(dirs: list[Path], topic: str, partition: int) -> Path:
    [home] = [d for d in dirs if (d / f"{topic}-{partition}").is_dir()]
    return home


def _kp_admin(b: BrokerProcess) -> kpa.KafkaAdminClient:
    return kpa.KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=20_000)


def _kp_log_dirs(admin: kpa.KafkaAdminClient) -> dict[str, dict[str, Any]]:
    [per_broker] = admin.describe_log_dirs()
    return {d["log_dir"]: d for d in per_broker["log_dirs"]}


def _placement(described: dict[str, dict[str, Any]], topic: str) -> dict[str, list[Any]]:
    """log dir -> [(partition, is_future)] of `topic`."""
    out: dict[str, list[Any]] = {}
    for path, d in described.items():
        for t in d["topics"]:
            if t["name"] == topic:
                out[path] = sorted(
                    (p["partition_index"], p["is_future_key"]) for p in t["partitions"]
                )
    return out


@pytest.fixture
def admin_for() -> Iterator[Any]:
    made: list[kpa.KafkaAdminClient] = []

    def make(b: BrokerProcess) -> kpa.KafkaAdminClient:
        made.append(_kp_admin(b))
        return made[-1]

    yield make
    for a in made:
        a.close()


# --------------------------------------------------------------------------- placement


def test_new_partitions_go_to_the_log_dir_with_the_fewest(
    broker_factory: BrokerFactory, tmp_path: Path, topic: str, admin_for: Any
) -> None:
    dirs = _dirs(tmp_path, 3)
    b = _start(broker_factory, dirs)
    create_topic(b.bootstrap, topic, 6)
    assert [len(_partition_dirs(d, topic)) for d in dirs] == [2, 2, 2]
    # A directory emptied by a move gets the next partitions.
    admin = admin_for(b)
    moved = sorted(_partition_dirs(dirs[0], topic))
    errors = admin.alter_replica_log_dirs(
        {
            TopicPartitionReplica(topic, int(name.rsplit("-", 1)[1]), 0): str(dirs[1])
            for name in moved
        }
    )
    assert set(errors.values()) == {kafka.errors.NoError}
    wait_until(lambda: not _partition_dirs(dirs[0], topic), "both partitions moved away")
    create_topic(b.bootstrap, topic + "-more", 2)
    assert len(_partition_dirs(dirs[0], topic + "-more")) == 2
    described = _placement(_kp_log_dirs(admin), topic)
    assert {path: len(parts) for path, parts in described.items()} == {
        str(dirs[1]): 4,
        str(dirs[2]): 2,
    }
    for d in dirs:
        meta = (d / "meta.properties").read_text()
        assert "version=0" in meta and "broker.id=0" in meta and "cluster.id=" in meta


# --------------------------------------------------------------------------- moving


def _throttle_moves(b: BrokerProcess, rate: int | None) -> None:
    """Set (or with None remove) replica.alter.log.dirs.io.max.bytes.per.second, a dynamic-only
    broker config, with IncrementalAlterConfigs."""
    op = AlterConfigOpType.SET if rate is not None else AlterConfigOpType.DELETE
    entry = ConfigEntry(
        "replica.alter.log.dirs.io.max.bytes.per.second",
        None if rate is None else str(rate),
        incremental_operation=op,
    )
    res = ConfigResource(ResourceType.BROKER, "0", incremental_configs=[entry])
    admin = ck_admin(b.bootstrap)  # kept alive until the answer is in
    admin.incremental_alter_configs([res])[res].result(timeout=30)


class _Writer(threading.Thread):
    """Produces batches of records to partition 0 until stopped."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.acked: list[bytes | None] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            p = ck.Producer(ck_conf(self.bootstrap, **{"enable.idempotence": True, "linger.ms": 5}))
            n = 0
            while not self.stop.is_set():
                batch = [f"live-{i}".encode() for i in range(n, n + 50)]
                for value in batch:
                    p.produce(self.topic, value=value, partition=0)
                assert p.flush(30) == 0, "undelivered records"
                self.acked.extend(batch)
                n += 50
                time.sleep(0.01)
        except BaseException as exc:
            self.error = exc


class _Reader(threading.Thread):
    """Reads partition 0 from the beginning until it has `total` records (set at the end)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.got: list[Got] = []
        self.total: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        c = kafka.KafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=200
        )
        try:
            tp = kafka.TopicPartition(self.topic, 0)
            c.assign([tp])
            c.seek_to_beginning(tp)
            end = time.monotonic() + 180
            while self.total is None or len(self.got) < self.total:
                assert time.monotonic() < end, f"read {len(self.got)} of {self.total}"
                for msgs in c.poll(timeout_ms=500).values():
                    self.got.extend(Got(0, m.offset, m.key, m.value) for m in msgs)
        except BaseException as exc:
            self.error = exc
        finally:
            c.close()


def _values(got: list[Got]) -> list[bytes | None]:
    return [g.value for g in got]


def test_move_under_a_producer_and_a_consumer_keeps_every_record_once(
    broker_factory: BrokerFactory, tmp_path: Path, topic: str, admin_for: Any
) -> None:
    dirs = _dirs(tmp_path, 2)
    b = _start(broker_factory, dirs)
    # Throttled to take a few seconds, so that the producer and the consumer work throughout.
    _throttle_moves(b, 2_000_000)
    create_topic(b.bootstrap, topic, 1, {"segment.bytes": str(256 * 1024)})
    first = make_recs(20_000, prefix="old", size=200, partition=0)
    ck_produce(b.bootstrap, topic, first)
    source = _home(dirs, topic, 0)
    target = next(d for d in dirs if d != source)
    writer = _Writer(b.bootstrap, topic)
    reader = _Reader(b.bootstrap, topic)
    writer.start()
    reader.start()
    wait_until(lambda: len(writer.acked) >= 100, "the producer to be writing")
    admin = admin_for(b)
    acked_at_start = len(writer.acked)
    result = admin.alter_replica_log_dirs({TopicPartitionReplica(topic, 0, 0): str(target)})
    assert result == {TopicPartitionReplica(topic, 0, 0): kafka.errors.NoError}
    wait_until(
        lambda: _placement(_kp_log_dirs(admin), topic) == {str(target): [(0, False)]},
        "the partition to live in the target log dir only",
        deadline_s=120,
    )
    assert len(writer.acked) > acked_at_start, "records were acknowledged during the move"
    time.sleep(0.5)  # and some after it
    writer.stop.set()
    writer.join(60)
    assert writer.error is None, writer.error
    expected = [r.value for r in first] + writer.acked
    reader.total = len(expected)
    reader.join(180)
    assert reader.error is None, reader.error
    assert _values(reader.got) == expected
    assert [g.offset for g in reader.got] == list(range(len(expected)))
    assert _partition_dirs(source, topic) == set()
    assert _partition_dirs(target, topic) == {f"{topic}-0"}
    b.restart()
    again = ck_consume(b.bootstrap, topic, [0])
    assert _values(again) == expected
    assert [g.offset for g in again] == list(range(len(expected)))


def test_future_replica_is_described_and_the_move_survives_kill_9(
    broker_factory: BrokerFactory, tmp_path: Path, topic: str, admin_for: Any
) -> None:
    """Throttled so the move is still running: DescribeLogDirs shows the future replica and
    its lag; kill -9 mid-move; the restarted broker resumes the move from the future log."""
    dirs = _dirs(tmp_path, 2)
    b = _start(broker_factory, dirs)
    _throttle_moves(b, 100_000)
    create_topic(b.bootstrap, topic, 1, {"segment.bytes": "65536"})
    recs = make_recs(6_000, size=200, partition=0)
    ck_produce(b.bootstrap, topic, recs)
    source = _home(dirs, topic, 0)
    target = next(d for d in dirs if d != source)
    admin = admin_for(b)
    assert admin.alter_replica_log_dirs({(topic, 0, 0): str(target)}) == {
        TopicPartitionReplica(topic, 0, 0): kafka.errors.NoError
    }

    def future_lag() -> int | None:
        for t in _kp_log_dirs(admin)[str(target)]["topics"]:
            for p in t["partitions"]:
                if t["name"] == topic and p["is_future_key"] and p["partition_size"] > 0:
                    return int(p["offset_lag"])
        return None

    lag = wait_until(lambda: (future_lag() or 0) > 0, "a future replica copying")
    assert 0 < lag < len(recs)
    _, raw = describe_log_dirs(b.host, b.port, 0, {topic: [0]})
    by_path = {d.path: d for d in raw}
    [fut] = by_path[str(target)].topics[topic]
    assert fut.is_future and fut.offset_lag > 0
    [cur] = by_path[str(source)].topics[topic]
    assert not cur.is_future and cur.offset_lag == 0 and cur.size > 0
    [future_dir] = [p for p in target.iterdir() if FUTURE_DIR.match(p.name)]
    assert FUTURE_DIR.match(future_dir.name)["tp"] == f"{topic}-0"  # type: ignore[index]
    b.kill9()
    b.restart()
    _throttle_moves(b, None)  # the throttle is a dynamic config: it outlived the restart
    wait_until(
        lambda: (
            _partition_dirs(target, topic) == {f"{topic}-0"}
            and _partition_dirs(source, topic) == set()
        ),
        "the move to finish and the old copy to be removed",
    )
    more = make_recs(100, prefix="after", partition=0)
    ck_produce(b.bootstrap, topic, more)
    got = ck_consume(b.bootstrap, topic, [0])
    assert _values(got) == [r.value for r in recs + more]


def test_alter_and_describe_on_the_wire_every_version(
    broker_factory: BrokerFactory, tmp_path: Path, topic: str
) -> None:
    dirs = _dirs(tmp_path, 2)
    b = _start(broker_factory, dirs)
    create_topic(b.bootstrap, topic, 2)
    ck_produce(b.bootstrap, topic, make_recs(10, partition=1))
    home = _home(dirs, topic, 1)
    other = next(d for d in dirs if d != home)
    for version in (0, 1, 2):
        answers = alter_replica_log_dirs(
            b.host,
            b.port,
            version,
            {
                str(tmp_path / "not-a-log-dir"): {topic: [0]},
                "relative/path": {topic: [1]},
                str(home): {topic: [1], "no-such-topic": [0]},
            },
        )
        assert answers == {
            (topic, 0): ERR_LOG_DIR_NOT_FOUND,
            (topic, 1): 0,  # already there
            ("no-such-topic", 0): ERR_UNKNOWN_TOPIC_OR_PARTITION,
        }, version
    assert alter_replica_log_dirs(b.host, b.port, 2, {str(other): {topic: [1]}}) == {(topic, 1): 0}
    wait_until(lambda: (other / f"{topic}-1").is_dir(), "the move")
    for version in range(5):
        error, described = describe_log_dirs(b.host, b.port, version)
        assert error == 0
        assert [d.path for d in described] == [str(d) for d in dirs], version
        assert all(d.error_code == 0 for d in described)
        [p] = [
            p
            for p in dict((d.path, d) for d in described)[str(other)].topics[topic]
            if p.partition == 1
        ]
        assert p.size > 0 and not p.is_future
        if version >= 4:
            assert all(d.total_bytes > 0 and d.usable_bytes >= 0 for d in described)
        else:
            assert all(d.total_bytes == -1 for d in described)
        _, only = describe_log_dirs(b.host, b.port, version, {topic: [1]})
        assert {d.path: list(d.topics) for d in only} == {str(dirs[0]): [], str(dirs[1]): []} | {
            str(other): [topic]
        }


# --------------------------------------------------------------------------- failures


def _faults(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    rules = tmp_path / "faults"
    rules.write_text("")
    return rules, {"STROMTEST_FAULT_INJECTION": str(rules)}


def _inject(b: BrokerProcess, rules: Path, log_dir: Path, ops: str) -> None:
    rules.write_text(f"{log_dir} {ops}\n")
    wait_until(lambda: f"'{log_dir}': [" in b.log_text(), "the broker to read the rules")


def _produce_error(bootstrap: str, topic: str, partition: int) -> ck.KafkaError | None:
    p = ck.Producer(ck_conf(bootstrap, **{"message.timeout.ms": 3000, "retries": 0}))
    box: list[ck.KafkaError | None] = []
    p.produce(topic, value=b"x", partition=partition, on_delivery=lambda e, m: box.append(e))
    p.flush(30)
    assert box
    return box[0]


def test_failed_log_dir_goes_offline_while_the_other_serves(
    broker_factory: BrokerFactory, tmp_path: Path, topic: str, admin_for: Any
) -> None:
    dirs = _dirs(tmp_path, 2)
    rules, env = _faults(tmp_path)
    b = _start(broker_factory, dirs, env=env)
    create_topic(b.bootstrap, topic, 2)
    for p in (0, 1):
        ck_produce(b.bootstrap, topic, make_recs(50, prefix=f"p{p}", partition=p))
    broken = _home(dirs, topic, 1)
    healthy = _home(dirs, topic, 0)
    assert broken != healthy
    _inject(b, rules, broken, "write")
    error = _produce_error(b.bootstrap, topic, 1)
    assert error is not None
    wait_until(
        lambda: re.search(
            rf"Log directory {re.escape(str(broken))} failed .* is offline", b.log_text()
        ),
        "the failure line",
    )
    assert len(re.findall(rf"Log directory {re.escape(str(broken))} failed", b.log_text())) == 1
    # The healthy directory keeps serving writes and reads.
    ck_produce(b.bootstrap, topic, make_recs(50, prefix="p0-after", partition=0))
    got = ck_consume(b.bootstrap, topic, [0])
    assert _values(got) == [
        r.value for r in make_recs(50, prefix="p0") + make_recs(50, prefix="p0-after")
    ]
    # The broken one answers KAFKA_STORAGE_ERROR, DescribeLogDirs says so.
    _, described = describe_log_dirs(b.host, b.port, 4)
    by_path = {d.path: d for d in described}
    assert by_path[str(broken)].error_code == ERR_KAFKA_STORAGE_ERROR
    assert by_path[str(broken)].topics == {}
    assert by_path[str(healthy)].error_code == 0
    kp = _kp_log_dirs(admin_for(b))
    assert kp[str(broken)]["error_code"] == ERR_KAFKA_STORAGE_ERROR
    md = ck_admin(b.bootstrap).list_topics(topic, timeout=20)
    p1 = md.topics[topic].partitions[1]
    assert p1.leader == -1 and p1.error is not None
    # Back after a restart, with what it had.
    rules.write_text("")
    b.restart()
    got = ck_consume(b.bootstrap, topic, [1])
    assert _values(got)[:50] == [r.value for r in make_recs(50, prefix="p1")]


@pytest.mark.parametrize(
    ("count", "message"),
    [
        (1, "Shutdown broker because all log dirs in"),
        (2, "Shutdown broker because the metadata log dir"),
    ],
)
def test_failed_last_or_metadata_log_dir_stops_the_broker(
    broker_factory: BrokerFactory, tmp_path: Path, topic: str, count: int, message: str
) -> None:
    """With one log dir its failure halts the broker (Kafka: "all log dirs have failed"); a
    single broker halts too when its first log dir, holding the topic metadata, fails."""
    dirs = _dirs(tmp_path, count)
    rules, env = _faults(tmp_path)
    b = _start(broker_factory, dirs, env=env)
    create_topic(b.bootstrap, topic, count)
    _inject(b, rules, dirs[0], "all")
    _produce_error(b.bootstrap, topic, _partitions_in(dirs[0], topic)[0])
    assert b.wait_exit() == 1
    assert message in b.log_text()


def _partitions_in(d: Path, topic: str) -> list[int]:
    return sorted(int(name.rsplit("-", 1)[1]) for name in _partition_dirs(d, topic))


def test_log_dir_unusable_at_start_up_is_offline_and_its_partitions_are_not_recreated(
    broker_factory: BrokerFactory, tmp_path: Path, topic: str
) -> None:
    dirs = _dirs(tmp_path, 2)
    b = _start(broker_factory, dirs)
    create_topic(b.bootstrap, topic, 2)
    for p in (0, 1):
        ck_produce(b.bootstrap, topic, make_recs(20, prefix=f"p{p}", partition=p))
    b.stop()
    lost = _home(dirs, topic, 1)
    kept = _home(dirs, topic, 0)
    assert lost == dirs[1]  # the first log dir holds the broker's metadata: it must stay
    aside = lost.with_name(lost.name + ".aside")
    lost.rename(aside)
    lost.write_text("a disk that does not mount")
    b.start()
    b.wait_ready()
    assert "the log directory is offline" in b.log_text_since_last_start()
    _, described = describe_log_dirs(b.host, b.port, 4)
    assert {d.path: d.error_code for d in described} == {
        str(lost): ERR_KAFKA_STORAGE_ERROR,
        str(kept): 0,
    }
    error = _produce_error(b.bootstrap, topic, 1)
    assert error is not None
    assert not any(p.name.startswith(f"{topic}-1") for p in kept.iterdir())
    ck_produce(b.bootstrap, topic, make_recs(5, prefix="more", partition=0))
    assert len(ck_consume(b.bootstrap, topic, [0])) == 25
    b.stop()
    lost.unlink()
    aside.rename(lost)
    b.start()
    b.wait_ready()
    assert _values(ck_consume(b.bootstrap, topic, [1])) == [
        r.value for r in make_recs(20, prefix="p1")
    ]
