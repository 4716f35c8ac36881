"""`strom serve` configuration: properties file, --set, environment, bad input, defaults."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

from .broker_process import HOST, BrokerProcess, free_port
from .clients import Rec, ck_admin, ck_consume, ck_produce, topic_partition_count
from .conftest import BrokerFactory

pytestmark = pytest.mark.integration

EXIT_DEADLINE_S = 30.0


def write_properties(path: Path, lines: list[str]) -> Path:
    path.write_text("# written by the strom integration tests\n" + "\n".join(lines) + "\n")
    return path


def test_config_file_is_honoured(broker_factory: BrokerFactory, tmp_path: Path, topic: str) -> None:
    props = write_properties(
        tmp_path / "server.properties", ["num.partitions=3", "message.max.bytes = 200000"]
    )
    b = broker_factory(config_file=props)
    ck_produce(b.bootstrap, topic, [Rec(b"k", b"v")])
    assert topic_partition_count(b.bootstrap, topic) == 3


def test_set_overrides_config_file(
    broker_factory: BrokerFactory, tmp_path: Path, topic: str
) -> None:
    # The file names a listener on another port and a data dir elsewhere; --set wins for both
    # (BrokerProcess always passes listeners and log.dirs with --set).
    wrong_port = free_port()
    props = write_properties(
        tmp_path / "server.properties",
        [
            "num.partitions=3",
            f"listeners=PLAINTEXT://{HOST}:{wrong_port}",
            f"log.dirs={tmp_path / 'file-data'}",
        ],
    )
    b = broker_factory(config_file=props, num_partitions=5)
    ck_produce(b.bootstrap, topic, [Rec(b"k", b"v")])
    assert topic_partition_count(b.bootstrap, topic) == 5
    assert b.partition_dir(topic, 0).is_dir()
    assert not (tmp_path / "file-data" / f"{topic}-0").exists()


def test_environment_between_file_and_set(
    broker_factory: BrokerFactory, tmp_path: Path, topic: str, new_topic: Callable[[str], str]
) -> None:
    props = write_properties(tmp_path / "server.properties", ["num.partitions=3"])
    b = broker_factory(config_file=props, env={"STROM_NUM_PARTITIONS": "4"})
    ck_produce(b.bootstrap, topic, [Rec(b"k", b"v")])
    assert topic_partition_count(b.bootstrap, topic) == 4, (
        "STROM_NUM_PARTITIONS should beat the file"
    )
    b.stop()
    b2 = broker_factory(config_file=props, env={"STROM_NUM_PARTITIONS": "4"}, num_partitions=6)
    t2 = new_topic("set")
    ck_produce(b2.bootstrap, t2, [Rec(b"k", b"v")])
    assert topic_partition_count(b2.bootstrap, t2) == 6, "--set should beat STROM_NUM_PARTITIONS"


@pytest.mark.parametrize("where", ["set", "file"])
def test_unknown_key_is_a_warning(
    broker_factory: BrokerFactory, tmp_path: Path, where: str
) -> None:
    key = "no.such.strom.setting"
    if where == "set":
        b = broker_factory({key: "1"})
    else:
        props = write_properties(tmp_path / "server.properties", [f"{key}=1"])
        b = broker_factory(config_file=props)
    assert b.is_alive()
    lines = [ln for ln in b.log_text().splitlines() if key in ln]
    assert lines, f"no log line names the unknown key {key!r}"
    assert any(re.search(r"WARN", ln, re.IGNORECASE) for ln in lines), lines


def test_kafka_key_strom_ignores_is_logged_as_no_effect(broker_factory: BrokerFactory) -> None:
    """A key Kafka 3.9 knows but Strom does not act on is not warned about as unknown; one log
    line says it has no effect, and the broker describes it back as set."""
    key = "sasl.kerberos.min.time.before.relogin"
    b = broker_factory({key: "120000", "no.such.strom.setting": "1"})
    lines = [ln for ln in b.log_text().splitlines() if key in ln and "=====" not in ln]
    assert len(lines) == 1, lines
    assert "has no effect in Strom" in lines[0]
    unknown = [ln for ln in b.log_text().splitlines() if "unknown configuration keys" in ln]
    assert len(unknown) == 1 and key not in unknown[0] and "no.such.strom.setting" in unknown[0]
    admin = ck_admin(b.bootstrap)
    res = ConfigResource(ResourceType.BROKER, "0")
    entry = admin.describe_configs([res])[res].result(timeout=30)[key]
    assert (entry.value, entry.source) == ("120000", ConfigSource.STATIC_BROKER_CONFIG.value)


def wait_for_exit(b: BrokerProcess) -> int:
    """The exit code of a broker expected to refuse to start."""
    try:
        return b.wait_exit(EXIT_DEADLINE_S)
    except subprocess.TimeoutExpired:
        b.stop()
        raise AssertionError(f"the broker kept running\n{b.log_tail()}") from None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("num.partitions", "abc"),
        ("num.partitions", "0"),
        ("log.retention.ms", "forever"),
        ("auto.create.topics.enable", "maybe"),
    ],
)
def test_bad_value_exits_nonzero_naming_key_and_value(
    broker_factory: BrokerFactory, key: str, value: str
) -> None:
    b = broker_factory({key: value}, wait=False)
    code = wait_for_exit(b)
    assert code != 0
    out = b.log_text_since_last_start()
    assert key in out and value in out, f"the error does not name {key}={value}:\n{out}"
    assert "Traceback" not in out, "a configuration error should be a message, not a traceback"


def test_missing_config_file_exits_nonzero(broker_factory: BrokerFactory, tmp_path: Path) -> None:
    b = broker_factory(config_file=tmp_path / "absent.properties", wait=False)
    assert wait_for_exit(b) != 0
    assert "absent.properties" in b.log_text_since_last_start()


def test_default_data_dir_in_cwd(broker_factory: BrokerFactory, tmp_path: Path, topic: str) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    b = broker_factory(with_log_dirs=False, cwd=cwd)
    ck_produce(b.bootstrap, topic, [Rec(b"k", b"v", partition=0)])
    assert (cwd / "strom-data" / f"{topic}-0").is_dir()
    b.restart()
    assert ck_consume(b.bootstrap, topic, count=1)[0].kv() == (b"k", b"v")


def test_port_in_use_exits_nonzero(
    broker_factory: BrokerFactory, shared_broker: BrokerProcess, tmp_path: Path
) -> None:
    b = BrokerProcess(tmp_path / "dup", port=shared_broker.port)
    broker_factory.brokers.append(b)  # stopped at teardown whatever happens
    b.start()
    assert wait_for_exit(b) != 0
    assert shared_broker.is_alive()


def test_version_and_help() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STROM_")}
    r = subprocess.run(
        [sys.executable, "-m", "strom", "--version"], capture_output=True, timeout=60, env=env
    )
    assert r.returncode == 0 and b"strom" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "strom", "serve", "--help"], capture_output=True, timeout=60, env=env
    )
    assert r.returncode == 0 and b"--config" in r.stdout and b"--set" in r.stdout
