"""`BrokerProcess`: one `strom serve` process on a free loopback port, forked by the test
process's fork server (strom.testing.forkserver), or a `python -m strom serve` subprocess when
it needs a file limit or a tmpfs of its own.

Used by the integration tests (through the fixtures in conftest.py) and by
tests/fuzz/test_live_server_fuzz.py.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from strom.testing.forkserver import ForkedProcess, ForkServer

from .kafka_wire import api_versions_ok

HOST = "127.0.0.1"
READY_DEADLINE_S = 30.0
_HTTP_LISTENING = re.compile(r"HTTP listening on http://[^ ]+:(?P<port>\d+)")
STOP_DEADLINE_S = 20.0
LOG_TAIL_LINES = 80


def free_port() -> int:
    """A port that was free a moment ago (bind 0, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class BrokerStartError(AssertionError):
    pass


# Mounts a size-limited tmpfs on $0 in a new user and mount namespace (no root needed where
# unprivileged user namespaces are allowed), then runs the broker command in it.
_TMPFS_SCRIPT = 'mount -t tmpfs -o "size=$TMPFS_BYTES" tmpfs "$0" && exec "$@"'


@functools.cache
def tmpfs_available() -> bool:
    """Whether `unshare` can give a process a tmpfs of its own here (see BrokerProcess's
    `tmpfs_bytes`)."""
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as probe:
        done = subprocess.run(
            ["unshare", "-Urm", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$0"', probe],
            capture_output=True,
            timeout=30,
            check=False,
        )
    return done.returncode == 0


class BrokerProcess:
    """A strom broker in its own data directory, logging to a file.

    `sets` are passed as `--set key=value` (Kafka config names); `config_file` as `--config`.
    `log.dirs` and `listeners` are always set unless `with_log_dirs=False` (for testing the
    default data directory, then `cwd` matters).
    """

    def __init__(
        self,
        workdir: Path,
        sets: Mapping[str, object] | None = None,
        *,
        config_file: Path | None = None,
        port: int | None = None,
        with_log_dirs: bool = True,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        name: str = "broker",
        nofile: int | None = None,
        tmpfs_bytes: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = workdir / "data"
        self.log_path = workdir / f"{name}.log"
        self.sets: dict[str, str] = {k: _config_value(v) for k, v in (sets or {}).items()}
        self.config_file = config_file
        self.port = port if port is not None else free_port()
        self.with_log_dirs = with_log_dirs
        self.cwd = cwd if cwd is not None else workdir
        self.extra_env = dict(env or {})
        # RLIMIT_NOFILE (soft and hard) of the broker process, to run it out of descriptors.
        self.nofile = nofile
        # The data dir on a tmpfs of this size seen only by the broker process (a disk that
        # fills up; its content is gone when the process ends). Needs tmpfs_available().
        self.tmpfs_bytes = tmpfs_bytes
        self.proc: subprocess.Popen[bytes] | ForkedProcess | None = None
        self.starts = 0

    # ------------------------------------------------------------------ addresses

    @property
    def host(self) -> str:
        return HOST

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "strom", *self.arguments()]
        if self.tmpfs_bytes is not None:
            cmd = ["unshare", "-Urm", "sh", "-c", _TMPFS_SCRIPT, str(self.data_dir), *cmd]
        return cmd

    def arguments(self) -> list[str]:
        """`strom serve` and its settings (what follows `strom` on a command line)."""
        cmd = ["serve"]
        if self.config_file is not None:
            cmd += ["--config", str(self.config_file)]
        cmd += ["--set", f"listeners=PLAINTEXT://{HOST}:{self.port}"]
        if self.with_log_dirs:
            cmd += ["--set", f"log.dirs={self.data_dir}"]
        for k, v in self.sets.items():
            cmd += ["--set", f"{k}={v}"]
        return cmd

    @property
    def visible_data_dir(self) -> Path:
        """The data dir as the broker sees it, from this process (through /proc for a tmpfs
        of the broker's own)."""
        if self.tmpfs_bytes is None:
            return self.data_dir
        return Path(f"/proc/{self.pid}/root{self.data_dir}")

    def start(self) -> BrokerProcess:
        assert not self.is_alive(), "broker already running"
        self.starts += 1
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        for k in [k for k in env if k.startswith("STROM_")]:
            del env[k]  # the broker reads STROM_* as configuration
        env.update(self.extra_env)
        if self.tmpfs_bytes is not None:
            env["TMPFS_BYTES"] = str(self.tmpfs_bytes)
            self.data_dir.mkdir(parents=True, exist_ok=True)  # the mount point
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
        if self.tmpfs_bytes is None and self.nofile is None:
            # Forked from the worker's fork server, which has imported the broker already: a
            # start costs no interpreter start-up and imports (about a second of CPU each).
            server = ForkServer.shared()
            pid = server.start(self.arguments(), str(self.log_path), str(self.cwd), self.extra_env)
            self.proc = ForkedProcess(server, pid)
            return self
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal goes to pytest only
                preexec_fn=None if self.nofile is None else self._limit_files,
            )
        return self

    def _limit_files(self) -> None:
        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def open_files(self) -> int:
        """How many descriptors the broker process holds now."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def wait_ready(self, deadline_s: float = READY_DEADLINE_S) -> BrokerProcess:
        """Poll until a TCP connect succeeds and ApiVersions v0 gets a well-formed answer."""
        end = time.monotonic() + deadline_s
        while True:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise BrokerStartError(
                    f"broker exited (code {code}) before it was ready\n{self.log_tail()}"
                )
            if api_versions_ok(HOST, self.port, timeout=2.0):
                return self
            if time.monotonic() > end:
                raise BrokerStartError(
                    f"broker not ready (ApiVersions on {self.bootstrap}) after {deadline_s} s\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_exit(self, deadline_s: float = STOP_DEADLINE_S) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=deadline_s)

    def stop(self, deadline_s: float = STOP_DEADLINE_S) -> int | None:
        """SIGTERM, wait; SIGKILL when it does not exit. Returns the exit code (None if it was
        never started). Sets `self.stuck` when SIGKILL was needed."""
        self.stuck = False
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            # Marked in the log, so a shutdown that no test asked for stands out.
            self._append_log(f"===== test harness: SIGTERM to pid {self.proc.pid}")
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=deadline_s)
            except subprocess.TimeoutExpired:
                self.stuck = True
                self._append_log("===== did not exit after SIGTERM; sending SIGKILL")
                self.kill9()
        return self.proc.returncode

    def kill9(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._append_log(f"===== test harness: SIGKILL to pid {self.proc.pid}")
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_DEADLINE_S)

    def restart(self, extra_sets: Mapping[str, object] | None = None) -> BrokerProcess:
        """Stop (if running) and start again with the same data dir and port; waits ready."""
        if self.is_alive():
            self.stop()
        if extra_sets:
            self.sets.update({k: _config_value(v) for k, v in extra_sets.items()})
        self.start()
        return self.wait_ready()

    # ------------------------------------------------------------------ logs

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_text_since_last_start(self) -> str:
        text = self.log_text()
        marker = f"===== start #{self.starts}:"
        i = text.rfind(marker)
        return text if i < 0 else text[i:]

    def http_listening_port(self, deadline_s: float = READY_DEADLINE_S) -> int:
        """The port this start's HTTP listener bound (`strom.http.listeners` with port 0 lets
        the kernel choose, so no other process can take it between choosing and binding)."""
        end = time.monotonic() + deadline_s
        while True:
            found = _HTTP_LISTENING.search(self.log_text_since_last_start())
            if found is not None:
                return int(found["port"])
            if not self.is_alive() or time.monotonic() > end:
                raise BrokerStartError(f"no HTTP listener reported\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)

    def _append_log(self, line: str) -> None:
        with open(self.log_path, "a") as f:
            f.write(line + "\n")

    # ------------------------------------------------------------------ storage

    def partition_dir(self, topic: str, partition: int) -> Path:
        return self.data_dir / f"{topic}-{partition}"

    def __repr__(self) -> str:
        state = "alive" if self.is_alive() else "stopped"
        return f"BrokerProcess({self.bootstrap}, {self.workdir}, {state})"


def _config_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def start_broker(
    workdir: Path, sets: Mapping[str, object] | None = None, **kw: object
) -> BrokerProcess:
    """Start and wait until ready; the caller owns stopping it."""
    b = BrokerProcess(workdir, sets, **kw)  # type: ignore[arg-type]
    b.start()
    try:
        b.wait_ready()
    except BaseException:
        b.stop()
        raise
    return b
