"""`StromBroker`: one `strom serve` subprocess for a test, and the `broker()` context manager."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from strom.testing.forkserver import ForkedProcess, ForkServer

# What tests want unless they say otherwise: no 3 s wait before a group's first rebalance, and
# internal topics of one partition (created on first use, 50 partitions would take a moment).
TEST_DEFAULTS: dict[str, object] = {
    "group.initial.rebalance.delay.ms": 0,
    "offsets.topic.num.partitions": 1,
    "transaction.state.log.num.partitions": 1,
}

# "listening on HOST:PORT (LISTENER, SECURITY_PROTOCOL)"
_LISTENING = re.compile(
    r"listening on (?P<host>[^ ]+):(?P<port>\d+) \((?P<name>[A-Z0-9_]+)(, [A-Z0-9_]+)?\)"
)
_STARTED = re.compile(r"strom broker -?\d+ started")
_HTTP = re.compile(r"HTTP listening on http://(?P<host>[^ ]+):(?P<port>\d+)")


class BrokerStartError(RuntimeError):
    """The broker exited or did not start serving in time; the message has its log."""


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class StromBroker:
    """A broker process. `bootstrap` ("127.0.0.1:<port>") once `start()` has returned."""

    def __init__(
        self,
        data_dir: Path | str | None = None,
        config: Mapping[str, object] | None = None,
        *,
        host: str = "127.0.0.1",
        fork: bool = True,
    ) -> None:
        self._owns_dir = data_dir is None
        # Start through the fork server (fast after the first start); False: a plain
        # `python -m strom serve` subprocess.
        self.fork = fork and hasattr(os, "fork")
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="strom-test-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.config: dict[str, str] = {k: _value(v) for k, v in TEST_DEFAULTS.items()}
        self.config.update({k: _value(v) for k, v in (config or {}).items()})
        self.log_path = self.data_dir / "strom.log"
        self.port = 0
        self.http_port: int | None = None
        self.process: subprocess.Popen[bytes] | ForkedProcess | None = None

    @property
    def bootstrap(self) -> str:
        if not self.port:
            raise RuntimeError("the broker has not started")
        return f"{self.host}:{self.port}"

    @property
    def http_url(self) -> str | None:
        """The HTTP listener's base URL, when `strom.http.listeners` was set."""
        return None if self.http_port is None else f"http://{self.host}:{self.http_port}"

    def arguments(self) -> list[str]:
        """`strom serve` and its settings (what follows `strom` on a command line)."""
        settings = {
            "listeners": f"PLAINTEXT://{self.host}:0",
            "log.dirs": str(self.data_dir / "data"),
            **self.config,
        }
        args = ["serve"]
        for key, value in settings.items():
            args += ["--set", f"{key}={value}"]
        return args

    def command(self) -> list[str]:
        return [sys.executable, "-m", "strom", *self.arguments()]

    def start(self, timeout_s: float = 30.0) -> StromBroker:
        """Start and wait until the broker serves; `BrokerStartError` when it does not."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the broker is already running")
        env = {k: v for k, v in os.environ.items() if not k.startswith("STROM_")}
        env["PYTHONUNBUFFERED"] = "1"
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        if self.fork:
            server = ForkServer.shared()
            self.process = ForkedProcess(server, server.start(self.arguments(), str(self.log_path)))
        else:
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # a Ctrl-C in the terminal reaches the runner only
                )
        deadline = time.monotonic() + timeout_s
        while True:
            text = self._log_since(log_start)
            if _STARTED.search(text):
                self._read_ports(text)
                return self
            if self.process.poll() is not None:
                # Read again: it may have written its last lines after the read above.
                text = self._log_since(log_start)
                raise BrokerStartError(
                    f"strom serve exited with code {self.process.returncode}:\n{text}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerStartError(f"strom serve did not start in {timeout_s} s:\n{text}")
            time.sleep(0.01)

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _read_ports(self, text: str) -> None:
        for match in _LISTENING.finditer(text):
            if match["name"] == "PLAINTEXT":
                self.port = int(match["port"])
                break
        http = _HTTP.search(text)
        if http is not None:
            self.http_port = int(http["port"])

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit. Returns the exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout=timeout_s)
        return process.returncode

    def log_text(self) -> str:
        return self._log_since(0)

    def cleanup(self) -> None:
        """Stop, and delete the data directory if this object made it."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __repr__(self) -> str:
        running = self.process is not None and self.process.poll() is None
        return (
            f"StromBroker({self.bootstrap if self.port else 'not started'}, {self.data_dir}, "
            + ("running)" if running else "stopped)")
        )


@contextlib.contextmanager
def broker(
    data_dir: Path | str | None = None,
    config: Mapping[str, object] | None = None,
    *,
    timeout_s: float = 30.0,
    fork: bool = True,
) -> Iterator[StromBroker]:
    """A started broker for the `with` block; stopped (and its temporary data directory
    deleted, unless `data_dir` was given) when the block ends. `fork=False` starts it as a
    plain subprocess instead of through the fork server."""
    b = StromBroker(data_dir, config, fork=fork)
    try:
        b.start(timeout_s)
        yield b
    finally:
        b.cleanup()
