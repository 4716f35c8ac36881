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
    port = free_port()
    b = broker_factory(
        {
            "strom.http.listeners": f"http://127.0.0.1:{port}",
            "group.initial.rebalance.delay.ms": 0,
            "offsets.topic.num.partitions": 2,
        }
    )
    wait_http(port)
    b.http_port = port
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
