"""The test brokers' fork server (strom.testing.forkserver): it signals only children it has not
reaped, since a reaped child's pid may already belong to another process."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from strom.testing.broker import StromBroker
from strom.testing.forkserver import ForkedProcess, ForkServer


@pytest.fixture(scope="module")
def server() -> Iterator[ForkServer]:
    server = ForkServer()
    try:
        yield server
    finally:
        assert server.process.stdin is not None
        server.process.stdin.close()
        assert server.process.wait(timeout=30) == 0


def test_a_reaped_child_is_never_signalled(server: ForkServer, tmp_path: Path) -> None:
    log = tmp_path / "version.log"
    pid = server.start(["--version"], str(log))
    child = ForkedProcess(server, pid)
    assert child.wait(timeout=60) == 0
    assert log.read_text().startswith("strom ")
    # Reaped: the pid is free for the kernel to hand out again, so nothing is sent to it.
    assert server.kill(pid, signal.SIGTERM) is False
    # The exit code is remembered, not lost with the reaping.
    assert server.wait(pid, 0.0) == 0


def test_a_running_child_is_signalled(server: ForkServer, tmp_path: Path) -> None:
    # A broker runs until signalled.
    pid = server.start(StromBroker(data_dir=tmp_path).arguments(), str(tmp_path / "strom.log"))
    assert server.wait(pid, 0.0) is None
    assert server.kill(pid, signal.SIGKILL) is True
    assert server.wait(pid, 60.0) == -signal.SIGKILL
    assert server.kill(pid, signal.SIGKILL) is False


def test_an_unknown_pid_is_neither_waited_for_nor_signalled(server: ForkServer) -> None:
    assert server.wait(1, 0.0) is None
    assert server.kill(1, 0) is False
