"""The HTTP listener of a real broker: /metrics scraped during a produce/consume load and a
consumer group (parsed with prometheus_client's parser), /health and /ready, and bad
settings refused at start."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import confluent_kafka as ck
import confluent_kafka.admin
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .broker_process import free_port
from .clients import Rec, ck_produce
from .conftest import BrokerFactory

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_http(port: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"no HTTP listener on {port}") from None
            time.sleep(0.05)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = http_get(port, "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} not scraped"
    return samples[key]


@pytest.fixture
def http_broker(broker_factory: BrokerFactory) -> Any:
    b = broker_factory(
        {
            "strom.http.listeners": "http://127.0.0.1:0",
            "group.initial.rebalance.delay.ms": 0,
            "offsets.topic.num.partitions": 2,
        }
    )
    b.http_port = b.http_listening_port()
    return b


def test_health_and_ready(http_broker: Any) -> None:
    assert http_get(http_broker.http_port, "/health") == (200, json.dumps({"status": "ok"}))
    status, body = http_get(http_broker.http_port, "/ready")
    assert (status, json.loads(body)) == (200, {"status": "ready"})
    assert http_get(http_broker.http_port, "/nope")[0] == 404


def test_metrics_follow_produce_consume_and_a_group(http_broker: Any, topic: str) -> None:
    b, port = http_broker.bootstrap, http_broker.http_port
    admin = ck.admin.AdminClient({"bootstrap.servers": b})
    admin.create_topics([ck.admin.NewTopic(topic, 2, 1)])[topic].result(30)
    before = scrape(port)
    records = [Rec(f"k{i}".encode(), b"x" * 100, partition=i % 2) for i in range(300)]
    ck_produce(b, topic, records)
    group = f"g-{topic}"
    consumer = ck.Consumer(
        {
            "bootstrap.servers": b,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got = 0
    deadline = time.monotonic() + DEADLINE_S
    while got < 200 and time.monotonic() < deadline:
        for message in consumer.consume(100, timeout=0.5):
            if message.error() is None:
                got += 1
                if got == 200:
                    break
    assert got == 200
    consumer.commit(asynchronous=False)
    committed = {
        tp.partition: tp.offset
        for tp in consumer.committed([ck.TopicPartition(topic, 0), ck.TopicPartition(topic, 1)])
    }
    samples = scrape(port)
    consumer.close()

    assert value(samples, "kafka_server_brokertopicmetrics_messagesin_total", topic=topic) == 300
    bytes_in = value(samples, "kafka_server_brokertopicmetrics_bytesin_total", topic=topic)
    assert 300 * 100 < bytes_in < 300 * 200
    assert value(samples, "kafka_server_brokertopicmetrics_bytesout_total", topic=topic) >= (
        200 * 100
    )
    produced_requests = value(
        samples, "kafka_network_requestmetrics_requests_total", request="Produce"
    ) - before.get(("kafka_network_requestmetrics_requests_total", (("request", "Produce"),)), 0)
    assert produced_requests >= 1
    fetches = value(samples, "kafka_network_requestmetrics_totaltimems_count", request="Fetch")
    assert fetches >= 1
    assert (
        value(
            samples, "kafka_network_requestmetrics_totaltimems_bucket", request="Fetch", le="+Inf"
        )
        == fetches
    )
    assert value(samples, "kafka_network_requestmetrics_totaltimems_sum", request="Fetch") > 0
    for p in (0, 1):
        assert value(samples, "kafka_log_log_logendoffset", topic=topic, partition=str(p)) == 150
        assert value(samples, "kafka_log_log_size", topic=topic, partition=str(p)) > 150 * 100
        assert (
            value(
                samples,
                "kafka_consumergroup_lag",
                consumergroup=group,
                topic=topic,
                partition=str(p),
            )
            == 150 - committed[p]
        )
        assert (
            value(
                samples,
                "kafka_consumergroup_current_offset",
                consumergroup=group,
                topic=topic,
                partition=str(p),
            )
            == committed[p]
        )
    assert (
        value(samples, "kafka_server_group_coordinator_metrics_group_count", protocol="classic")
        == 1
    )
    assert value(samples, "kafka_server_replicamanager_partitioncount") >= 2
    assert value(samples, "kafka_server_replicamanager_underreplicatedpartitions") == 0
    assert value(samples, "kafka_controller_kafkacontroller_activecontrollercount") == 1
    assert (
        value(
            samples,
            "kafka_server_socket_server_metrics_connection_creation_total",
            listener="PLAINTEXT",
        )
        >= 3
    )
    assert (
        value(samples, "kafka_server_socket_server_metrics_connection_count", listener="PLAINTEXT")
        >= 1
    )
    idle = value(samples, "kafka_network_socketserver_networkprocessoravgidlepercent")
    assert 0 <= idle <= 1
    assert value(samples, "process_resident_memory_bytes") > 10_000_000
    assert value(samples, "process_open_fds") > 5
    assert value(samples, "process_cpu_seconds_total") > 0


def test_fetch_purgatory_counts_waiting_fetches(http_broker: Any, topic: str) -> None:
    b, port = http_broker.bootstrap, http_broker.http_port
    ck_produce(b, topic, [Rec(b"k", b"v", partition=0)])
    consumer = ck.Consumer(
        {
            "bootstrap.servers": b,
            "group.id": f"g-{topic}",
            "auto.offset.reset": "latest",
            "fetch.wait.max.ms": 5000,
        }
    )
    consumer.assign([ck.TopicPartition(topic, 0, 1)])
    try:
        deadline = time.monotonic() + DEADLINE_S
        waiting = 0.0
        while time.monotonic() < deadline:
            consumer.poll(0.1)
            waiting = value(
                scrape(port),
                "kafka_server_delayedoperationpurgatory_purgatorysize",
                delayedoperation="Fetch",
            )
            if waiting >= 1:
                break
        assert waiting >= 1
    finally:
        consumer.close()


def test_share_group_lag(http_broker: Any, topic: str) -> None:
    """kafka_sharegroup_lag on the share partition's leader: records produced after a share
    group acknowledged everything are its lag, its start offset stays."""
    from .clients import wait_until
    from .share_helpers import ShareWorker, prime, produce_values

    b, port = http_broker.bootstrap, http_broker.http_port
    group = f"share-{topic}"
    labels = {"sharegroup": group, "topic": topic, "partition": "0"}
    worker = ShareWorker(b, group, [topic]).start()
    try:
        prime(b, topic, [worker])

        def acknowledged() -> float | None:
            samples = scrape(port)
            end = value(samples, "kafka_log_log_logendoffset", topic=topic, partition="0")
            start = samples.get(("kafka_sharegroup_start_offset", tuple(sorted(labels.items()))))
            lag = samples.get(("kafka_sharegroup_lag", tuple(sorted(labels.items()))))
            return start if start == end and lag == 0 else None

        start = wait_until(acknowledged, "the share group to acknowledge every record")
    finally:
        worker.stop()
    # Every record the consumer received accepted once (implicit acknowledgement).
    samples = scrape(port)
    accepted = value(
        samples, "kafka_server_share_group_metrics_record_acknowledgement_total", ack_type="accept"
    )
    assert accepted == len({g.offset for g in worker.got}) >= 1
    assert value(samples, "kafka_server_share_group_metrics_share_acknowledgement_total") >= 1
    for kind in ("release", "reject"):
        name = "kafka_server_share_group_metrics_record_acknowledgement_total"
        assert value(samples, name, ack_type=kind) == 0
    produce_values(b, topic, [b"a", b"b", b"c", b"d"])
    samples = scrape(port)
    assert value(samples, "kafka_sharegroup_lag", **labels) == 4
    assert value(samples, "kafka_sharegroup_start_offset", **labels) == start
    # Its coordinator counts it, empty now that its member left.
    shares = value(samples, "kafka_server_group_coordinator_metrics_group_count", protocol="share")
    assert shares >= 1
    empty = value(
        samples, "kafka_server_group_coordinator_metrics_share_group_count", state="empty"
    )
    assert empty >= 1


def test_throttle_times_of_a_quota(http_broker: Any, topic: str) -> None:
    """A producer over its producer_byte_rate gets throttled responses, counted per API."""
    from .cli_helpers import ok, strom

    b, port = http_broker.bootstrap, http_broker.http_port
    client_id = f"slow-{topic}"
    ok(
        strom("quota", "alter", "--name", f"client-id={client_id}", "--add",
              "producer_byte_rate=2048", "-b", b)
    )  # fmt: skip
    before = scrape(port).get(
        ("kafka_network_requestmetrics_throttletimems_count", (("request", "Produce"),)), 0
    )
    producer = ck.Producer({"bootstrap.servers": b, "client.id": client_id, "linger.ms": 0})
    for _ in range(20):
        producer.produce(topic, value=b"x" * 1024, partition=0)
        producer.poll(0)
    assert producer.flush(DEADLINE_S) == 0
    samples = scrape(port)
    throttled = value(
        samples, "kafka_network_requestmetrics_throttletimems_count", request="Produce"
    )
    assert throttled > before
    assert value(samples, "kafka_network_requestmetrics_throttletimems_sum", request="Produce") > 0
    assert (
        value(
            samples,
            "kafka_network_requestmetrics_throttletimems_bucket",
            request="Produce",
            le="+Inf",
        )
        == throttled
    )


def test_authentications_per_listener(broker_factory: BrokerFactory) -> None:
    from .secure import ck_security, start_secure

    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'user_alice="alice-secret";'
    )
    secure = start_secure(
        broker_factory,
        {"SASL_PLAINTEXT": "SASL_PLAINTEXT"},
        {
            "strom.http.listeners": "http://127.0.0.1:0",
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
            "connection.failed.authentication.delay.ms": 0,
        },
    )
    port = secure.process.http_listening_port()

    def login(password: str) -> bool:
        conf = ck_security(
            "SASL_PLAINTEXT",
            **{"sasl.mechanism": "PLAIN", "sasl.username": "alice", "sasl.password": password},
        )
        admin = ck.admin.AdminClient(
            {"bootstrap.servers": secure.bootstrap("SASL_PLAINTEXT"), **conf}
        )
        try:
            admin.list_topics(timeout=5)
        except ck.KafkaException:
            return False
        return True

    assert login("alice-secret")
    assert not login("wrong")
    samples = scrape(port)
    ok_name = "kafka_server_socket_server_metrics_successful_authentication_total"
    failed_name = "kafka_server_socket_server_metrics_failed_authentication_total"
    assert value(samples, ok_name, listener="SASL_PLAINTEXT") >= 1
    assert value(samples, failed_name, listener="SASL_PLAINTEXT") >= 1
    assert value(samples, ok_name, listener="PLAINTEXT") == 0
    assert value(samples, failed_name, listener="PLAINTEXT") == 0


def _start_fails(tmp_path: Path, setting: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "strom",
            "serve",
            "--set",
            f"listeners=PLAINTEXT://127.0.0.1:{free_port()}",
            "--set",
            f"log.dirs={tmp_path}",
            "--set",
            setting,
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )


def test_bad_http_listener_settings_stop_the_start(tmp_path: Path) -> None:
    bad = _start_fails(tmp_path / "a", "strom.http.listeners=ftp://127.0.0.1:9")
    assert bad.returncode == 2
    assert "strom.http.listeners" in bad.stderr and "http://host:port" in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _start_fails(tmp_path / "b", f"strom.http.listeners=http://127.0.0.1:{port}")
    assert busy.returncode == 1
    assert "cannot start" in busy.stderr
