"""Produce-N and consume-back helpers for each real client.

Every consumer uses manual assignment (no consumer group APIs: the broker does not offer them
yet). Every loop has a generous deadline and fails with a message saying what was missing;
nothing here measures time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import confluent_kafka as ck
import kafka
import kafka.errors
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTP

DEADLINE_S = 30.0

# Keep the clients' own logging out of the way of pytest's output unless something fails.
for _name in ("kafka", "aiokafka"):
    logging.getLogger(_name).setLevel(logging.WARNING)

Header = tuple[str, bytes | None]


@dataclass(frozen=True)
class Rec:
    """A record to produce."""

    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()
    timestamp: int | None = None  # CreateTime in ms; None lets the client stamp it
    partition: int | None = None  # None lets the client's partitioner choose


@dataclass(frozen=True)
class Got:
    """A consumed record, normalised across clients."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()
    timestamp: int | None = None
    timestamp_type: str | None = None  # "create" | "logappend" | None (unknown)

    def kv(self) -> tuple[bytes | None, bytes | None]:
        return self.key, self.value


@dataclass(frozen=True)
class Delivered:
    partition: int
    offset: int


@dataclass
class ConsumeError(Exception):
    client: str
    error: Any
    got: list[Got] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.client} consumer error: {self.error!r} (after {len(self.got)} records)"


class ProduceError(AssertionError):
    pass


def make_recs(
    n: int, *, prefix: str = "k", size: int = 0, partition: int | None = None
) -> list[Rec]:
    """n keyed records with distinct, checkable values; values padded to `size` bytes."""
    out = []
    for i in range(n):
        v = f"value-{i}".encode()
        if size > len(v):
            v = v + b"." * (size - len(v))
        out.append(Rec(key=f"{prefix}-{i}".encode(), value=v, partition=partition))
    return out


def _stop_reached(
    got: Sequence[Got],
    count: int | None,
    end_offsets: Mapping[int, int] | None,
    positions: Mapping[int, int],
) -> bool:
    if count is not None and len(got) >= count:
        return True
    if end_offsets is not None:
        return all(positions.get(p, -1) >= end for p, end in end_offsets.items())
    return False


def _note_position(positions: dict[int, int], partition: int, position: int | None) -> None:
    """Take the client's own position (the offset of the next record it will return) when it
    is ahead of the last record seen: clients step over offsets that hold no record (markers,
    batches emptied by compaction, aborted transactions) by the batches' last offsets, so a
    reader counting records alone would wait forever at such offsets before the end."""
    if position is not None and position >= 0:
        positions[partition] = max(positions.get(partition, -1), position)


def _deadline_message(
    client: str, topic: str, got: Sequence[Got], count: int | None, end_offsets: Any
) -> str:
    return (
        f"{client}: deadline reached consuming {topic!r}: got {len(got)} records, wanted "
        f"{'count=' + str(count) if count is not None else 'end offsets ' + repr(end_offsets)}; "
        f"last: {got[-3:]!r}"
    )


# =============================================================================== confluent-kafka


def ck_conf(bootstrap: str, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "socket.connection.setup.timeout.ms": 10_000,
        "api.version.request.timeout.ms": 10_000,
    }
    conf.update(extra)
    return conf


def ck_producer(bootstrap: str, **extra: Any) -> ck.Producer:
    conf = ck_conf(
        bootstrap, **{"enable.idempotence": False, "linger.ms": 5, "message.timeout.ms": 20_000}
    )
    conf.update(extra)
    return ck.Producer(conf)


def ck_produce(
    bootstrap: str, topic: str, recs: Sequence[Rec], *, deadline_s: float = DEADLINE_S, **conf: Any
) -> list[Delivered]:
    """Produce `recs` in order; returns (partition, offset) per record; raises ProduceError with
    the first delivery error."""
    p = ck_producer(bootstrap, **conf)
    results: list[Delivered | ck.KafkaError | None] = [None] * len(recs)

    def on_delivery(i: int) -> Any:
        def cb(err: ck.KafkaError | None, msg: ck.Message) -> None:
            results[i] = err if err is not None else Delivered(msg.partition(), msg.offset())

        return cb

    end = time.monotonic() + deadline_s
    for i, r in enumerate(recs):
        kwargs: dict[str, Any] = {"key": r.key, "value": r.value, "on_delivery": on_delivery(i)}
        if r.headers:
            kwargs["headers"] = list(r.headers)
        if r.timestamp is not None:
            kwargs["timestamp"] = r.timestamp
        if r.partition is not None:
            kwargs["partition"] = r.partition
        while True:
            try:
                p.produce(topic, **kwargs)
                break
            except BufferError:
                p.poll(0.1)
                if time.monotonic() > end:
                    raise ProduceError(
                        "confluent-kafka: local queue full until the deadline"
                    ) from None
        p.poll(0)
    left = p.flush(max(1.0, end - time.monotonic()))
    if left:
        raise ProduceError(f"confluent-kafka: {left} records undelivered at the deadline")
    out: list[Delivered] = []
    for i, res in enumerate(results):
        if not isinstance(res, Delivered):
            raise ProduceError(f"confluent-kafka: record {i} failed: {res!r}")
        out.append(res)
    return out


def ck_produce_one_error(bootstrap: str, topic: str, rec: Rec, **conf: Any) -> ck.KafkaError | None:
    """Produce one record, return its delivery error (None on success)."""
    p = ck_producer(bootstrap, **conf)
    box: list[ck.KafkaError | None] = []
    p.produce(topic, key=rec.key, value=rec.value, on_delivery=lambda err, msg: box.append(err))
    left = p.flush(DEADLINE_S)
    assert not left and box, "confluent-kafka: no delivery report before the deadline"
    return box[0]


_CK_TS_TYPES = {ck.TIMESTAMP_CREATE_TIME: "create", ck.TIMESTAMP_LOG_APPEND_TIME: "logappend"}


def ck_watermarks(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    c = ck.Consumer(
        ck_conf(bootstrap, **{"group.id": "strom-it-watermarks", "enable.auto.commit": False})
    )
    try:
        lo, hi = c.get_watermark_offsets(ck.TopicPartition(topic, partition), timeout=DEADLINE_S)
        return int(lo), int(hi)
    finally:
        c.close()


def ck_consume(
    bootstrap: str,
    topic: str,
    partitions: Iterable[int] | Mapping[int, int] = (0,),
    *,
    count: int | None = None,
    end_offsets: Mapping[int, int] | None = None,
    deadline_s: float = DEADLINE_S,
    raise_on_error: bool = True,
    **conf: Any,
) -> list[Got]:
    """Manually assign `partitions` (a list: from the beginning; a mapping: partition -> start
    offset) and read until `count` records or every partition's position reaches `end_offsets`
    (default: the high watermarks at the start). A group.id is set because librdkafka insists,
    but offsets are never committed and no group API is needed for absolute offsets."""
    starts = (
        dict(partitions)
        if isinstance(partitions, Mapping)
        else dict.fromkeys(partitions, ck.OFFSET_BEGINNING)
    )
    if count is None and end_offsets is None:
        end_offsets = {p: ck_watermarks(bootstrap, topic, p)[1] for p in starts}
    c = ck.Consumer(
        ck_conf(
            bootstrap,
            **{
                "group.id": "strom-it-manual",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 200,
                **conf,
            },
        )
    )
    got: list[Got] = []
    positions: dict[int, int] = {}
    try:
        c.assign([ck.TopicPartition(topic, p, off) for p, off in starts.items()])
        end = time.monotonic() + deadline_s
        while not _stop_reached(got, count, end_offsets, positions):
            if time.monotonic() > end:
                raise AssertionError(
                    _deadline_message("confluent-kafka", topic, got, count, end_offsets)
                )
            for m in c.consume(num_messages=500, timeout=0.5):
                err = m.error()
                if err is not None:
                    if err.code() == ck.KafkaError._PARTITION_EOF:
                        continue
                    if raise_on_error:
                        raise ConsumeError("confluent-kafka", err, got)
                    continue
                ts_type, ts = m.timestamp()
                got.append(
                    Got(
                        partition=m.partition(),
                        offset=m.offset(),
                        key=m.key(),
                        value=m.value(),
                        headers=tuple(m.headers() or ()),
                        timestamp=ts,
                        timestamp_type=_CK_TS_TYPES.get(ts_type),
                    )
                )
                positions[m.partition()] = m.offset() + 1
            for tp in c.position([ck.TopicPartition(topic, p) for p in starts]):
                _note_position(positions, tp.partition, tp.offset)
    finally:
        c.close()
    return got


# =============================================================================== kafka-python


def kp_produce(
    bootstrap: str, topic: str, recs: Sequence[Rec], *, deadline_s: float = DEADLINE_S, **conf: Any
) -> list[Delivered]:
    settings: dict[str, Any] = {
        "enable_idempotence": False,
        "linger_ms": 5,
        "request_timeout_ms": 20_000,
    }
    settings.update(conf)
    p = kafka.KafkaProducer(bootstrap_servers=bootstrap, **settings)
    try:
        futures = [
            p.send(
                topic,
                key=r.key,
                value=r.value,
                headers=list(r.headers) if r.headers else None,
                timestamp_ms=r.timestamp,
                partition=r.partition,
            )
            for r in recs
        ]
        p.flush(timeout=deadline_s)
        out = []
        for i, f in enumerate(futures):
            try:
                md = f.get(timeout=deadline_s)
            except kafka.errors.KafkaError as e:
                raise ProduceError(f"kafka-python: record {i} failed: {e!r}") from e
            out.append(Delivered(md.partition, md.offset))
        return out
    finally:
        p.close(timeout=10)


def kp_consume(
    bootstrap: str,
    topic: str,
    partitions: Iterable[int] | Mapping[int, int] = (0,),
    *,
    count: int | None = None,
    end_offsets: Mapping[int, int] | None = None,
    deadline_s: float = DEADLINE_S,
    **conf: Any,
) -> list[Got]:
    starts = (
        dict(partitions) if isinstance(partitions, Mapping) else dict.fromkeys(partitions, None)
    )
    c = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset=conf.pop("auto_offset_reset", "earliest"),
        fetch_max_wait_ms=200,
        **conf,
    )
    got: list[Got] = []
    positions: dict[int, int] = {}
    try:
        tps = {p: kafka.TopicPartition(topic, p) for p in starts}
        c.assign(list(tps.values()))
        for p, off in starts.items():
            if off is None:
                c.seek_to_beginning(tps[p])
            else:
                c.seek(tps[p], off)
        if count is None and end_offsets is None:
            ends = c.end_offsets(list(tps.values()))
            end_offsets = {tp.partition: off for tp, off in ends.items()}
        end = time.monotonic() + deadline_s
        while not _stop_reached(got, count, end_offsets, positions):
            if time.monotonic() > end:
                raise AssertionError(
                    _deadline_message("kafka-python", topic, got, count, end_offsets)
                )
            try:
                batch = c.poll(timeout_ms=500)
            except kafka.errors.KafkaError as e:
                raise ConsumeError("kafka-python", e, got) from e
            for tp, msgs in sorted(batch.items(), key=lambda kv: kv[0].partition):
                for m in msgs:
                    got.append(
                        Got(
                            partition=tp.partition,
                            offset=m.offset,
                            key=m.key,
                            value=m.value,
                            headers=tuple((k, v) for k, v in (m.headers or ())),
                            timestamp=m.timestamp,
                            timestamp_type={0: "create", 1: "logappend"}.get(m.timestamp_type),
                        )
                    )
                    positions[tp.partition] = m.offset + 1
            for p, tp in tps.items():
                _note_position(positions, p, c.position(tp))
    finally:
        c.close()
    return got


# =============================================================================== aiokafka


def aio_produce(
    bootstrap: str, topic: str, recs: Sequence[Rec], *, deadline_s: float = DEADLINE_S, **conf: Any
) -> list[Delivered]:
    async def run() -> list[Delivered]:
        settings: dict[str, Any] = {
            "enable_idempotence": False,
            "linger_ms": 5,
            "request_timeout_ms": 20_000,
        }
        settings.update(conf)
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, **settings)
        await p.start()
        try:
            futs = [
                await p.send(
                    topic,
                    key=r.key,
                    value=r.value,
                    headers=list(r.headers) if r.headers else None,
                    timestamp_ms=r.timestamp,
                    partition=r.partition,
                )
                for r in recs
            ]
            out = []
            for i, f in enumerate(futs):
                try:
                    md = await asyncio.wait_for(f, deadline_s)
                except Exception as e:
                    raise ProduceError(f"aiokafka: record {i} failed: {e!r}") from e
                if md is None:  # acks=0: aiokafka resolves the future with no metadata
                    out.append(Delivered(-1, -1))
                else:
                    out.append(Delivered(md.partition, md.offset))
            return out
        finally:
            await p.stop()

    return asyncio.run(run())


def aio_consume(
    bootstrap: str,
    topic: str,
    partitions: Iterable[int] | Mapping[int, int] = (0,),
    *,
    count: int | None = None,
    end_offsets: Mapping[int, int] | None = None,
    deadline_s: float = DEADLINE_S,
    **conf: Any,
) -> list[Got]:
    starts = (
        dict(partitions) if isinstance(partitions, Mapping) else dict.fromkeys(partitions, None)
    )

    async def run() -> list[Got]:
        nonlocal end_offsets
        c = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset=conf.pop("auto_offset_reset", "earliest"),
            fetch_max_wait_ms=200,
            **conf,
        )
        await c.start()
        got: list[Got] = []
        positions: dict[int, int] = {}
        try:
            tps = {p: AioTP(topic, p) for p in starts}
            c.assign(list(tps.values()))
            for p, off in starts.items():
                if off is None:
                    await c.seek_to_beginning(tps[p])
                else:
                    c.seek(tps[p], off)
            if count is None and end_offsets is None:
                ends = await c.end_offsets(list(tps.values()))
                end_offsets = {tp.partition: off for tp, off in ends.items()}
            end = time.monotonic() + deadline_s
            while not _stop_reached(got, count, end_offsets, positions):
                if time.monotonic() > end:
                    raise AssertionError(
                        _deadline_message("aiokafka", topic, got, count, end_offsets)
                    )
                try:
                    batch = await c.getmany(timeout_ms=500)
                except Exception as e:
                    raise ConsumeError("aiokafka", e, got) from e
                for tp, msgs in sorted(batch.items(), key=lambda kv: kv[0].partition):
                    for m in msgs:
                        got.append(
                            Got(
                                partition=tp.partition,
                                offset=m.offset,
                                key=m.key,
                                value=m.value,
                                headers=tuple((k, v) for k, v in (m.headers or ())),
                                timestamp=m.timestamp,
                                timestamp_type={0: "create", 1: "logappend"}.get(m.timestamp_type),
                            )
                        )
                        positions[tp.partition] = m.offset + 1
                for p, tp in tps.items():
                    _note_position(positions, p, await c.position(tp))
        finally:
            await c.stop()
        return got

    return asyncio.run(run())


# =============================================================================== kcat

KCAT = "/usr/bin/kcat"
KCAT_KEY_DELIM = "\x1f"
KCAT_MSG_DELIM = "\x1e"


def kcat_produce(
    bootstrap: str,
    topic: str,
    recs: Sequence[Rec],
    *,
    headers: Sequence[tuple[str, str]] = (),
    partition: int | None = None,
    extra: Sequence[str] = (),
    deadline_s: float = DEADLINE_S,
) -> subprocess.CompletedProcess[bytes]:
    """kcat -P with per-message keys (-K) and empty values sent as NULL (-Z). Keys and values
    must not contain the delimiters; a record with key None is sent without a key delimiter,
    which kcat sends with a null key. Headers (-H) apply to every message. kcat cannot set
    timestamps."""
    lines = []
    for r in recs:
        assert r.timestamp is None and not r.headers, (
            "kcat cannot set per-record timestamps or headers"
        )
        v = r.value or b""
        lines.append(v if r.key is None else r.key + KCAT_KEY_DELIM.encode() + v)
    data = KCAT_MSG_DELIM.encode().join(lines) + KCAT_MSG_DELIM.encode()
    cmd = [KCAT, "-b", bootstrap, "-P", "-t", topic, "-K", r"\x1f", "-D", r"\x1e", "-Z", "-m", "20"]
    cmd += ["-X", "enable.idempotence=false", "-X", "api.version.request.timeout.ms=10000"]
    if partition is not None:
        cmd += ["-p", str(partition)]
    for hk, hv in headers:
        cmd += ["-H", f"{hk}={hv}"]
    cmd += list(extra)
    res = subprocess.run(cmd, input=data, capture_output=True, timeout=deadline_s + 30)
    if res.returncode != 0:
        raise ProduceError(
            f"kcat -P exited {res.returncode}: {res.stderr.decode(errors='replace')}"
        )
    return res


def kcat_consume(
    bootstrap: str,
    topic: str,
    *,
    partition: int | None = None,
    offset: str = "beginning",
    count: int | None = None,
    extra: Sequence[str] = (),
    deadline_s: float = DEADLINE_S,
) -> list[Got]:
    """kcat -C -J (JSON envelope, nulls as null) until the end (-e) or `count` (-c)."""
    cmd = [KCAT, "-b", bootstrap, "-C", "-t", topic, "-o", offset, "-J", "-q", "-m", "20"]
    cmd += ["-X", "api.version.request.timeout.ms=10000"]
    if partition is not None:
        cmd += ["-p", str(partition)]
    cmd += ["-c", str(count)] if count is not None else ["-e"]
    cmd += list(extra)
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=deadline_s)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"kcat -C did not finish before the deadline; stdout so far: {e.stdout!r:.2000}; stderr: {e.stderr!r:.2000}"
        ) from None
    if res.returncode != 0:
        raise AssertionError(
            f"kcat -C exited {res.returncode}: {res.stderr.decode(errors='replace')}"
        )
    out = []
    for line in res.stdout.decode().splitlines():
        if not line.strip():
            continue
        j = json.loads(line)
        hdrs = j.get("headers") or []
        if isinstance(hdrs, dict):
            pairs = list(hdrs.items())
        else:  # kcat 1.7: a flat list [name, value, name, value, ...]
            pairs = list(zip(hdrs[0::2], hdrs[1::2], strict=True))
        out.append(
            Got(
                partition=j["partition"],
                offset=j["offset"],
                key=None if j.get("key") is None else j["key"].encode(),
                value=None if j.get("payload") is None else j["payload"].encode(),
                headers=tuple((k, None if v is None else v.encode()) for k, v in pairs),
                timestamp=j.get("ts"),
                timestamp_type={"create": "create", "logappend": "logappend"}.get(j.get("tstype")),
            )
        )
    return out


# =============================================================================== misc


PRODUCERS = {"confluent": ck_produce, "kafka-python": kp_produce, "aiokafka": aio_produce}
CONSUMERS = {"confluent": ck_consume, "kafka-python": kp_consume, "aiokafka": aio_consume}


def by_partition(got: Iterable[Got]) -> dict[int, list[Got]]:
    out: dict[int, list[Got]] = {}
    for g in got:
        out.setdefault(g.partition, []).append(g)
    return out


def wait_until(
    predicate: Any, what: str, deadline_s: float = DEADLINE_S, interval_s: float = 0.2
) -> Any:
    """Poll `predicate()` until it returns a truthy value (returned); fail naming `what`."""
    end = time.monotonic() + deadline_s
    last: Any = None
    while True:
        try:
            last = predicate()
        except Exception as e:  # keep polling through transient client errors
            last = e
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > end:
            raise AssertionError(
                f"deadline ({deadline_s} s) reached waiting for {what}; last result: {last!r}"
            )
        time.sleep(interval_s)


# =============================================================================== admin


def ck_admin(bootstrap: str, **extra: Any) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient(ck_conf(bootstrap, **extra))


def create_topic(
    bootstrap: str, name: str, partitions: int = 1, config: Mapping[str, str] | None = None
) -> None:
    """CreateTopics through confluent-kafka's AdminClient; raises on any error."""
    from confluent_kafka.admin import NewTopic

    a = ck_admin(bootstrap)
    fut = a.create_topics(
        [
            NewTopic(
                name, num_partitions=partitions, replication_factor=1, config=dict(config or {})
            )
        ],
        request_timeout=DEADLINE_S,
    )
    fut[name].result(timeout=DEADLINE_S)
    wait_until(lambda: _has_leaders(a, name, partitions), f"metadata for new topic {name!r}")


def _has_leaders(admin: Any, name: str, partitions: int) -> bool:
    md = admin.list_topics(topic=name, timeout=10)  # it exists: naming it cannot auto-create
    t = md.topics.get(name)
    return bool(
        t is not None
        and t.error is None
        and len(t.partitions) == partitions
        and all(p.leader >= 0 for p in t.partitions.values())
    )


def topic_partition_count(bootstrap: str, name: str) -> int | None:
    """Partitions of an existing topic, None when the topic does not exist (asks for all topics,
    so the question itself cannot auto-create it)."""
    md = ck_admin(bootstrap).list_topics(timeout=DEADLINE_S)
    t = md.topics.get(name)
    if t is None or t.error is not None:
        return None
    return len(t.partitions)


def list_topic_names(bootstrap: str) -> set[str]:
    return set(ck_admin(bootstrap).list_topics(timeout=DEADLINE_S).topics)
