"""Consumer-group members for the group integration tests (tests/integration/test_groups*.py).

A `Member` runs one real group consumer (confluent-kafka, kafka-python or aiokafka) in its own
thread: it subscribes, polls, records every (topic, partition, offset) it processes, then commits
synchronously (at-least-once), and publishes its current assignment and a count of its
assignment callbacks. `ProcMember` runs a confluent-kafka group consumer in a subprocess so that
a test can kill -9 it. `Producer` writes keyed records in the background until stopped.

Nothing here measures time: every wait is a loop with a generous deadline that fails saying
what it waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import confluent_kafka as ck
import kafka
import kafka.errors
from aiokafka import AIOKafkaConsumer
from aiokafka.abc import ConsumerRebalanceListener as AioListener

from .clients import DEADLINE_S, ck_admin, ck_conf, ck_producer, wait_until

TP = tuple[str, int]  # (topic, partition)
Seen = tuple[str, int, int]  # (topic, partition, offset)

# Broker settings that keep group tests fast: no initial rebalance delay, short sessions allowed.
GROUP_BROKER_SETS: dict[str, object] = {
    "group.initial.rebalance.delay.ms": 0,
    "group.min.session.timeout.ms": 1000,
    "group.max.session.timeout.ms": 60000,
    "group.consumer.session.timeout.ms": 4000,
    "group.consumer.min.session.timeout.ms": 1000,
    "group.consumer.heartbeat.interval.ms": 500,
    "group.consumer.min.heartbeat.interval.ms": 100,
    "offsets.topic.num.partitions": 10,
}

SESSION_MS = 4000  # a session timeout clients ask for (broker allows >= 1000)
HEARTBEAT_MS = 500
GROUP_DEADLINE_S = 60.0  # rebalances after a session timeout need a few seconds


def all_tps(topic: str, partitions: int) -> set[TP]:
    return {(topic, p) for p in range(partitions)}


class Member:
    """One group consumer running in a thread. Subclasses implement `_run`.

    Shared state (read by the test thread) is guarded by `lock`: `assignment` (current),
    `assigned_calls` (assignment callbacks so far), `seen` (processed records, in order),
    `committed` (offsets the broker acknowledged), `errors` (non-fatal client errors),
    `fatal` (the exception that ended the thread, if any).
    """

    client = "?"

    def __init__(
        self,
        name: str,
        bootstrap: str,
        group: str,
        topics: Sequence[str],
        *,
        conf: Mapping[str, Any] | None = None,
        commit: bool = True,
    ) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.group = group
        self.topics = list(topics)
        self.conf = dict(conf or {})
        self.commit = commit
        self.lock = threading.Lock()
        self.assignment: frozenset[TP] = frozenset()
        self.assigned_calls = 0
        self.revoked_calls = 0
        self.seen: list[Seen] = []
        self.committed: dict[TP, int] = {}
        self.errors: list[str] = []
        self.fatal: BaseException | None = None
        self.stop_event = threading.Event()
        self.pause_event = threading.Event()  # set: stop calling poll (the consumer idles)
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._main, name=f"member-{name}", daemon=True)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Member:
        self.thread.start()
        return self

    def stop(self, deadline_s: float = DEADLINE_S) -> None:
        """Ask the thread to close its consumer (leaving the group) and wait for it."""
        self.stop_event.set()
        self.thread.join(deadline_s)
        assert not self.thread.is_alive(), f"{self}: consumer did not close within {deadline_s} s"

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by check()
            self.fatal = e
        finally:
            self.closed.set()

    def _run(self) -> None:
        raise NotImplementedError

    def check(self) -> None:
        if self.fatal is not None:
            raise AssertionError(f"{self}: consumer thread failed: {self.fatal!r}")

    # -- state published by the consumer thread ------------------------------------------

    def _set_assignment(self, tps: Iterable[TP]) -> None:
        with self.lock:
            self.assignment = frozenset(tps)

    def _on_assigned(self) -> None:
        with self.lock:
            self.assigned_calls += 1

    def _on_revoked(self) -> None:
        with self.lock:
            self.revoked_calls += 1

    def _record(self, recs: Iterable[Seen]) -> None:
        with self.lock:
            self.seen.extend(recs)

    def _committed(self, offsets: Mapping[TP, int]) -> None:
        with self.lock:
            self.committed.update(offsets)

    def _error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)

    def snapshot(self) -> tuple[frozenset[TP], int, list[Seen], dict[TP, int]]:
        with self.lock:
            return self.assignment, self.assigned_calls, list(self.seen), dict(self.committed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, group={self.group!r})"


# ============================================================================ confluent-kafka


class CkMember(Member):
    client = "confluent-kafka"

    def _run(self) -> None:
        conf = ck_conf(
            self.bootstrap,
            **{
                "group.id": self.group,
                "client.id": self.name,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": SESSION_MS,
                "heartbeat.interval.ms": HEARTBEAT_MS,
                "fetch.wait.max.ms": 100,
                "topic.metadata.refresh.interval.ms": 2000,
            },
        )
        conf.update(self.conf)
        if conf.get("group.protocol") == "consumer":  # KIP-848: the broker sets these
            conf.pop("session.timeout.ms", None)
            conf.pop("heartbeat.interval.ms", None)
        c = ck.Consumer(conf)

        def on_assign(consumer: ck.Consumer, parts: list[ck.TopicPartition]) -> None:
            self._on_assigned()

        def on_revoke(consumer: ck.Consumer, parts: list[ck.TopicPartition]) -> None:
            self._on_revoked()

        try:
            c.subscribe(self.topics, on_assign=on_assign, on_revoke=on_revoke)
            while not self.stop_event.is_set():
                if self.pause_event.is_set():
                    time.sleep(0.05)
                    continue
                msgs = c.consume(num_messages=200, timeout=0.2)
                done: list[Seen] = []
                for m in msgs:
                    err = m.error()
                    if err is not None:
                        if err.fatal():
                            raise ck.KafkaException(err)
                        if err.code() != ck.KafkaError._PARTITION_EOF:
                            self._error(str(err))
                        continue
                    done.append((m.topic(), m.partition(), m.offset()))
                self._record(done)
                if done and self.commit:
                    try:
                        res = c.commit(asynchronous=False)
                    except ck.KafkaException as e:
                        self._error(f"commit: {e}")
                    else:
                        self._committed(
                            {
                                (tp.topic, tp.partition): tp.offset
                                for tp in res or []
                                if not tp.error
                            }
                        )
                self._set_assignment((tp.topic, tp.partition) for tp in c.assignment())
        finally:
            c.close()
            self._set_assignment(())


# =============================================================================== kafka-python


# kafka-python 3.0.12 loses a completed join when poll() times out between the leader's
# assignment and its SyncGroup response after a metadata-triggered rejoin: need_rejoin() is
# already false on the next poll, so the assignment is never applied and heartbeats stay off
# until the broker expires the member (a client bug, seen under load with 200 ms polls).
# A longer poll timeout makes that window rare.
KP_POLL_MS = 1000


class KpMember(Member):
    client = "kafka-python"

    def _run(self) -> None:
        member = self

        class Listener(kafka.ConsumerRebalanceListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                member._on_revoked()

            def on_partitions_assigned(self, assigned: Any) -> None:
                member._on_assigned()

        settings: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "group_id": self.group,
            "client_id": self.name,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": SESSION_MS,
            "heartbeat_interval_ms": HEARTBEAT_MS,
            "fetch_max_wait_ms": 100,
            "metadata_max_age_ms": 2000,
            "request_timeout_ms": 20_000,
        }
        settings.update(self.conf)
        c = kafka.KafkaConsumer(**settings)
        try:
            c.subscribe(self.topics, listener=Listener())
            while not self.stop_event.is_set():
                if self.pause_event.is_set():
                    time.sleep(0.05)
                    continue
                try:
                    batch = c.poll(timeout_ms=KP_POLL_MS)
                except kafka.errors.KafkaError as e:
                    self._error(f"poll: {e!r}")
                    time.sleep(0.1)
                    continue
                done: list[Seen] = [
                    (tp.topic, tp.partition, m.offset) for tp, msgs in batch.items() for m in msgs
                ]
                self._record(done)
                if done and self.commit:
                    positions = {}
                    for tp, msgs in batch.items():
                        positions[(tp.topic, tp.partition)] = msgs[-1].offset + 1
                    try:
                        c.commit()
                    except kafka.errors.KafkaError as e:
                        self._error(f"commit: {e!r}")
                    else:
                        self._committed(positions)
                self._set_assignment((tp.topic, tp.partition) for tp in c.assignment())
        finally:
            c.close()
            self._set_assignment(())


# =================================================================================== aiokafka


class AioMember(Member):
    client = "aiokafka"

    def _run(self) -> None:
        asyncio.run(self._arun())

    async def _arun(self) -> None:
        member = self

        class Listener(AioListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                member._on_revoked()

            def on_partitions_assigned(self, assigned: Any) -> None:
                member._on_assigned()

        settings: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "group_id": self.group,
            "client_id": self.name,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": SESSION_MS,
            "heartbeat_interval_ms": HEARTBEAT_MS,
            "fetch_max_wait_ms": 100,
            "metadata_max_age_ms": 2000,
            "request_timeout_ms": 20_000,
        }
        settings.update(self.conf)
        c = AIOKafkaConsumer(**settings)
        await c.start()
        try:
            c.subscribe(self.topics, listener=Listener())
            while not self.stop_event.is_set():
                if self.pause_event.is_set():
                    await asyncio.sleep(0.05)
                    continue
                try:
                    batch = await c.getmany(timeout_ms=200)
                except Exception as e:  # aiokafka raises its own errors; keep going
                    self._error(f"getmany: {e!r}")
                    await asyncio.sleep(0.1)
                    continue
                done: list[Seen] = [
                    (tp.topic, tp.partition, m.offset) for tp, msgs in batch.items() for m in msgs
                ]
                self._record(done)
                if done and self.commit:
                    positions = {
                        (tp.topic, tp.partition): msgs[-1].offset + 1 for tp, msgs in batch.items()
                    }
                    try:
                        await c.commit()
                    except Exception as e:
                        self._error(f"commit: {e!r}")
                    else:
                        self._committed(positions)
                self._set_assignment((tp.topic, tp.partition) for tp in c.assignment())
        finally:
            await c.stop()
            self._set_assignment(())


MEMBER_CLASSES: dict[str, type[Member]] = {
    "confluent": CkMember,
    "kafka-python": KpMember,
    "aiokafka": AioMember,
}


# ======================================================================= member in a process

_PROC_MEMBER_SCRIPT = r"""
import json, sys
import confluent_kafka as ck
conf = json.loads(sys.argv[1])
topics = json.loads(sys.argv[2])
out = sys.stdout
def emit(obj):
    out.write(json.dumps(obj) + "\n")
    out.flush()
def on_assign(c, parts):
    emit({"assign": [[p.topic, p.partition] for p in parts]})
c = ck.Consumer(conf)
c.subscribe(topics, on_assign=on_assign)
while True:
    msgs = c.consume(num_messages=200, timeout=0.2)
    done = [[m.topic(), m.partition(), m.offset()] for m in msgs if m.error() is None]
    if done:
        emit({"seen": done})  # processed (and reported) before the commit: at-least-once
        try:
            c.commit(asynchronous=False)
        except ck.KafkaException as e:
            emit({"error": str(e)})
    emit({"assignment": [[p.topic, p.partition] for p in c.assignment()]})
"""


class ProcMember:
    """A confluent-kafka group consumer in a subprocess, to be killed with SIGKILL. It reports
    each processed batch on stdout before committing it; a reader thread collects the reports."""

    client = "confluent-kafka (subprocess)"

    def __init__(
        self,
        name: str,
        bootstrap: str,
        group: str,
        topics: Sequence[str],
        *,
        conf: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        c = ck_conf(
            bootstrap,
            **{
                "group.id": group,
                "client.id": name,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": SESSION_MS,
                "heartbeat.interval.ms": HEARTBEAT_MS,
                "fetch.wait.max.ms": 100,
                "topic.metadata.refresh.interval.ms": 2000,
            },
        )
        c.update(conf or {})
        self.lock = threading.Lock()
        self.assignment: frozenset[TP] = frozenset()
        self.seen: list[Seen] = []
        self.errors: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _PROC_MEMBER_SCRIPT, json.dumps(c), json.dumps(list(topics))],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, name=f"proc-{name}", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                if "seen" in obj:
                    self.seen.extend((t, p, o) for t, p, o in obj["seen"])
                elif "assignment" in obj:
                    self.assignment = frozenset((t, p) for t, p in obj["assignment"])
                elif "error" in obj:
                    self.errors.append(obj["error"])

    def kill9(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=DEADLINE_S)
        self.reader.join(DEADLINE_S)  # the pipe is at EOF: everything reported is collected
        with self.lock:
            self.assignment = frozenset()

    stop = kill9

    def check(self) -> None:
        code = self.proc.poll()
        if code is not None and code != -signal.SIGKILL:
            raise AssertionError(f"{self.name}: consumer process exited with {code}")

    def snapshot(self) -> tuple[frozenset[TP], int, list[Seen], dict[TP, int]]:
        with self.lock:
            return self.assignment, 0, list(self.seen), {}

    def __repr__(self) -> str:
        return f"ProcMember({self.name!r})"


AnyMember = Member | ProcMember


# =============================================================================== the producer


class Producer:
    """Writes keyed records (confluent-kafka) to `topic` in small bursts until stopped; keeps
    the (topic, partition, offset) of every delivered record."""

    def __init__(self, bootstrap: str, topic: str, *, per_burst: int = 20, pause_s: float = 0.05):
        self.bootstrap = bootstrap
        self.topic = topic
        self.per_burst = per_burst
        self.pause_s = pause_s
        self.lock = threading.Lock()
        self.delivered: set[Seen] = set()
        self.failed: list[str] = []
        self.sent = 0
        self.stop_event = threading.Event()
        self.fatal: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="producer", daemon=True)

    def start(self) -> Producer:
        self.thread.start()
        return self

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as e:
            self.fatal = e

    def _run(self) -> None:
        p = ck_producer(self.bootstrap, **{"message.timeout.ms": 60_000})

        def on_delivery(err: ck.KafkaError | None, msg: ck.Message) -> None:
            with self.lock:
                if err is not None:
                    self.failed.append(str(err))
                else:
                    self.delivered.add((msg.topic(), msg.partition(), msg.offset()))

        i = 0
        while not self.stop_event.is_set():
            for _ in range(self.per_burst):
                p.produce(
                    self.topic,
                    key=f"key-{i % 97}".encode(),
                    value=f"v{i}".encode(),
                    on_delivery=on_delivery,
                )
                i += 1
            self.sent = i
            p.poll(self.pause_s)
        left = p.flush(DEADLINE_S)
        if left:
            raise AssertionError(f"producer: {left} records undelivered at the deadline")

    def count(self) -> int:
        with self.lock:
            return len(self.delivered)

    def stop(self) -> set[Seen]:
        self.stop_event.set()
        self.thread.join(DEADLINE_S + 10)
        assert not self.thread.is_alive(), "producer did not stop"
        if self.fatal is not None:
            raise AssertionError(f"producer failed: {self.fatal!r}")
        assert not self.failed, f"producer delivery errors: {self.failed[:5]}"
        with self.lock:
            return set(self.delivered)


# ==================================================================== waiting on the group


def check_all(members: Iterable[AnyMember]) -> None:
    for m in members:
        m.check()


def ownership(members: Sequence[AnyMember]) -> dict[str, frozenset[TP]]:
    return {m.name: m.snapshot()[0] for m in members}


def wait_exclusive_ownership(
    members: Sequence[AnyMember],
    partitions: set[TP],
    what: str,
    *,
    deadline_s: float = GROUP_DEADLINE_S,
    all_busy: bool = True,
    stable_polls: int = 3,
) -> dict[str, frozenset[TP]]:
    """Wait until the members' assignments are pairwise disjoint, cover `partitions` exactly
    and (with `all_busy`) every member owns something, for `stable_polls` polls in a row."""
    streak = [0]
    last: list[Any] = [None]

    def ok() -> dict[str, frozenset[TP]] | None:
        check_all(members)
        own = ownership(members)
        union: set[TP] = set()
        total = 0
        for tps in own.values():
            union |= tps
            total += len(tps)
        good = union == partitions and total == len(partitions)
        if all_busy:
            good = good and all(own.values())
        if good and own == last[0]:
            streak[0] += 1
        else:
            streak[0] = 1 if good else 0
        last[0] = own
        return own if streak[0] >= stable_polls else None

    try:
        result: dict[str, frozenset[TP]] = wait_until(ok, what, deadline_s, interval_s=0.3)
    except AssertionError as e:
        own = ownership(members)
        raise AssertionError(
            f"{e}\nassignments: { {n: sorted(t) for n, t in own.items()} }\n"
            f"errors: { {m.name: m.errors[-3:] for m in members} }"
        ) from None
    return result


def wait_consumed(
    members: Sequence[AnyMember],
    expected: set[Seen],
    what: str,
    *,
    deadline_s: float = GROUP_DEADLINE_S,
) -> set[Seen]:
    """Wait until the union of what the members processed covers `expected`."""

    def missing() -> set[Seen]:
        check_all(members)
        got: set[Seen] = set()
        for m in members:
            got.update(m.snapshot()[2])
        return expected - got

    end = time.monotonic() + deadline_s
    while True:
        left = missing()
        if not left:
            break
        if time.monotonic() > end:
            raise AssertionError(
                f"deadline ({deadline_s} s) reached waiting for {what}: {len(left)} of "
                f"{len(expected)} records never delivered, e.g. {sorted(left)[:10]}; "
                f"assignments: { {m.name: sorted(m.snapshot()[0]) for m in members} }"
            )
        time.sleep(0.2)
    got: set[Seen] = set()
    for m in members:
        got.update(m.snapshot()[2])
    return got


class MemberSet:
    """Members started by one test; `close()` stops them all (use it in a `finally`)."""

    def __init__(self) -> None:
        self.members: list[AnyMember] = []
        self.producers: list[Producer] = []

    def add(self, m: AnyMember) -> AnyMember:
        self.members.append(m)
        if isinstance(m, Member):
            m.start()
        return m

    def producer(self, p: Producer) -> Producer:
        self.producers.append(p)
        return p.start()

    def close(self) -> None:
        for p in self.producers:
            p.stop_event.set()
        for m in self.members:
            if isinstance(m, Member):
                m.stop_event.set()
        errors: list[BaseException] = []
        for m in self.members:
            try:
                if isinstance(m, ProcMember) or not m.closed.is_set():
                    m.stop()
            except BaseException as e:
                errors.append(e)
        for p in self.producers:
            p.thread.join(DEADLINE_S + 10)
        if errors:
            raise errors[0]


# ============================================================================== admin views


def ck_describe(bootstrap: str, group: str) -> Any:
    """confluent-kafka's ConsumerGroupDescription of `group` (raises on error)."""
    a = ck_admin(bootstrap)
    fut = a.describe_consumer_groups([group], request_timeout=DEADLINE_S)
    return fut[group].result(timeout=DEADLINE_S)


def ck_committed(bootstrap: str, group: str, tps: Iterable[TP]) -> dict[TP, int]:
    """Committed offsets through confluent's list_consumer_group_offsets (-1001 = none)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    a = ck_admin(bootstrap)
    req = ConsumerGroupTopicPartitions(group, [ck.TopicPartition(t, p) for t, p in tps])
    res = a.list_consumer_group_offsets([req], request_timeout=DEADLINE_S)[group].result(
        timeout=DEADLINE_S
    )
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions}


def high_watermarks(bootstrap: str, tps: Iterable[TP]) -> dict[TP, int]:
    c = ck.Consumer(ck_conf(bootstrap, **{"group.id": "strom-it-hwm", "enable.auto.commit": False}))
    try:
        return {
            (t, p): int(c.get_watermark_offsets(ck.TopicPartition(t, p), timeout=DEADLINE_S)[1])
            for t, p in tps
        }
    finally:
        c.close()
