"""The `strom` command line."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from strom.cli.main import main
from strom.config import BrokerConfig


@pytest.fixture
def fake_serve(monkeypatch: pytest.MonkeyPatch) -> list[BrokerConfig]:
    """Replaces strom.server.app with a stub that records the config it is given."""
    seen: list[BrokerConfig] = []
    module = types.ModuleType("strom.server.app")

    def serve(config: BrokerConfig) -> int:
        seen.append(config)
        return 0

    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "strom.server.app", module)
    return seen


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("strom ")


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().err


def test_serve_passes_config(fake_serve: list[BrokerConfig], tmp_path: Path) -> None:
    path = tmp_path / "server.properties"
    path.write_text("num.partitions=4\nlog.dirs=/data\n")
    assert main(["serve", "--config", str(path), "--set", "num.partitions=6"]) == 0
    (config,) = fake_serve
    assert config.num_partitions == 6
    assert config.log_dirs == [Path("/data")]


def test_serve_reads_environment(
    fake_serve: list[BrokerConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STROM_NUM_IO_THREADS", "2")
    assert main(["serve"]) == 0
    assert fake_serve[0].num_io_threads == 2


def test_invalid_configuration(
    fake_serve: list[BrokerConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--set", "num.partitions=zero"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("strom: invalid configuration: ")
    assert "num.partitions" in err and "zero" in err
    assert fake_serve == []


def test_missing_config_file(
    fake_serve: list[BrokerConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--config", str(tmp_path / "missing.properties")]) == 2
    assert "missing.properties" in capsys.readouterr().err


def test_bad_set_syntax(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--set", "novalue"])
    assert info.value.code == 2
    assert "key=value" in capsys.readouterr().err


def test_log_level(fake_serve: list[BrokerConfig]) -> None:
    import logging

    assert main(["serve", "--log-level", "debug"]) == 0
    assert logging.getLogger().level == logging.DEBUG
    assert main(["serve"]) == 0
    assert logging.getLogger().level == logging.INFO
