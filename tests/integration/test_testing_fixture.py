"""`strom.testing`: the pytest plugin's fixtures and the context manager, used as a Python
developer would use them in place of testcontainers-kafka."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import confluent_kafka as ck
import confluent_kafka.admin
import pytest

import strom.testing
from strom.testing import StromBroker

from .clients import Rec, ck_consume, ck_produce

pytestmark = pytest.mark.integration


def test_strom_broker_fixture(strom_broker: StromBroker, topic: str) -> None:
    ck_produce(strom_broker.bootstrap, topic, [Rec(b"k", b"hello", partition=0)])
    got = ck_consume(strom_broker.bootstrap, topic, [0])
    assert [(g.key, g.value) for g in got] == [(b"k", b"hello")]
    assert "started" in strom_broker.log_text()
    assert (Path(strom_broker.data_dir) / "data" / f"{topic}-0").is_dir()


def test_session_broker_is_shared(strom_broker_session: StromBroker, topic: str) -> None:
    ck_produce(strom_broker_session.bootstrap, topic, [Rec(None, b"x", partition=0)])
    assert strom_broker_session.process is not None
    assert strom_broker_session.process.poll() is None


def test_context_manager_starts_and_stops(tmp_path: Path, topic: str) -> None:
    with strom.testing.broker(config={"num.partitions": 3}) as b:
        data_dir = b.data_dir
        ck_produce(b.bootstrap, topic, [Rec(b"a", b"1")])  # auto-created with 3 partitions
        metadata = ck.admin.AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(
            topic, timeout=30
        )
        assert len(metadata.topics[topic].partitions) == 3
        process = b.process
    assert process is not None and process.poll() == 0  # a clean stop
    assert not data_dir.exists()  # its own temporary directory is gone
    with strom.testing.broker(tmp_path / "kept") as b:
        pass
    assert (tmp_path / "kept" / "strom.log").exists()


def test_without_the_fork_server(tmp_path: Path, topic: str) -> None:
    with strom.testing.broker(tmp_path / "plain", fork=False) as b:
        assert isinstance(b.process, subprocess.Popen)
        ck_produce(b.bootstrap, topic, [Rec(b"a", b"1", partition=0)])
        assert [g.value for g in ck_consume(b.bootstrap, topic, [0])] == [b"1"]
    assert b.process.returncode == 0


def test_two_forked_brokers_at_once(topic: str) -> None:
    with strom.testing.broker() as first, strom.testing.broker() as second:
        assert first.port != second.port
        for b in (first, second):
            ck_produce(b.bootstrap, topic, [Rec(b"k", b.bootstrap.encode(), partition=0)])
            assert [g.value for g in ck_consume(b.bootstrap, topic, [0])] == [b.bootstrap.encode()]
        pid = first.process.pid if first.process else 0
    assert pid and first.process is not None and first.process.poll() == 0


def test_a_failed_start_says_why(tmp_path: Path) -> None:
    with (
        pytest.raises(strom.testing.BrokerStartError, match=r"num\.partitions"),
        strom.testing.broker(tmp_path, {"num.partitions": "many"}),
    ):
        pass


def test_the_plugin_is_registered_for_other_projects(tmp_path: Path) -> None:
    """A test file of some other project, run by pytest with only Strom installed: the
    entry point brings the fixtures, no conftest needed."""
    (tmp_path / "test_app.py").write_text(
        textwrap.dedent(
            """
            import confluent_kafka

            def test_roundtrip(strom_broker):
                p = confluent_kafka.Producer({"bootstrap.servers": strom_broker.bootstrap})
                p.produce("events", b"hi")
                assert p.flush(30) == 0
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
