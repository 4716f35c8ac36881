"""A fork server for test brokers: one process that has imported the broker once and forks a
broker per request, so a test's broker starts without paying Python's start-up and Strom's
imports again (about a second of CPU on a 2-core machine; a fork and the broker's own start
take a few tens of milliseconds).

The test process starts the server once (`ForkServer.shared()`, a `python -c` running
`serve()`) and talks to it over its stdin/stdout, a JSON object a line:

    {"op": "start", "argv": [...], "log": "/path/strom.log",
     "cwd": "/path", "env": {"NAME": "value"},
     "stdin": "/path/in", "stderr": "/path/err"}             -> {"pid": 1234}
    {"op": "wait", "pid": 1234, "timeout": 20.0}           -> {"code": 0} or {"code": null}
    {"op": "kill", "pid": 1234, "signal": 15}              -> {"sent": true}

The server answers one request at a time. It signals only children it has not reaped yet: until
`waitpid` reaps a child, its pid (running or a zombie) cannot be given to another process, but
once reaped the kernel may reuse it for anything, so a late kill of a broker that has exited is
answered `"sent": false` instead of reaching a stranger. A reaped child's exit code is kept, so
waiting for it again answers the same code. A forked broker is a new session (a Ctrl-C in the
terminal reaches the test runner only) whose stdin is /dev/null (or the file "stdin" names) and
whose stdout and stderr go to its log file (stderr to its own file when "stderr" names one); it
runs `strom <argv>` as the command line would and exits with its code. "cwd", "env" (added to
the server's environment), "stdin" and "stderr" are optional. The
server never starts threads or an event loop, so forking it is safe. It exits when its stdin
closes (the test process ended), after stopping the brokers it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become `strom <argv>`."""
    try:
        os.setsid()
        if request.get("cwd") is not None:
            os.chdir(request["cwd"])
        os.environ.update(request.get("env") or {})
        stdin = os.open(request.get("stdin") or os.devnull, os.O_RDONLY)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        log = os.open(request["log"], flags, 0o644)
        err = os.open(request["stderr"], flags, 0o644) if request.get("stderr") else log
        os.dup2(stdin, 0)
        os.dup2(log, 1)
        os.dup2(err, 2)
        for fd in {stdin, log, err}:
            os.close(fd)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own fds, kept open
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        # The dispositions a fresh interpreter starts with.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        from strom.cli.main import main

        code = main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    os._exit(code)


class _Gone(Exception):
    """waitpid knows no such child: it was never ours or was reaped already."""


def _wait(pid: int, timeout_s: float) -> int | None:
    """The exit code once the child has exited (reaping it), or None at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            raise _Gone(pid) from None
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)


def serve() -> int:
    # Import what a broker imports before the first fork, so that no child imports it again.
    import strom.cli.main
    import strom.server.app  # noqa: F401
    from strom.server.registry import import_all_handlers

    import_all_handlers()  # a broker imports them on first use; children share these

    children: set[int] = set()  # forked and not reaped: these pids are still ours
    exited: dict[int, int] = {}  # reaped children's exit codes
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        answer: dict[str, Any] = {}
        if op == "start":
            out.flush()
            pid = os.fork()
            if pid == 0:
                _child(request)
            children.add(pid)
            answer = {"pid": pid}
        elif op == "wait":
            pid = int(request["pid"])
            code = exited.get(pid)
            if code is None and pid in children:
                try:
                    code = _wait(pid, float(request["timeout"]))
                except _Gone:
                    children.discard(pid)
                if code is not None:
                    children.discard(pid)
                    exited[pid] = code
            answer = {"code": code}
        elif op == "kill":
            pid = int(request["pid"])
            answer = {"sent": pid in children}
            if pid in children:
                os.kill(pid, int(request["signal"]))
        out.write(json.dumps(answer) + "\n")
        out.flush()
    for pid in children:
        os.kill(pid, signal.SIGTERM)
    for pid in children:
        with contextlib.suppress(_Gone):
            _wait(pid, 20.0)
    return 0


class ForkServer:
    """The test process's side: one server per process, started on first use."""

    _shared: ForkServer | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STROM_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            # -c rather than -m: `-m strom.testing.forkserver` would import this module twice.
            [sys.executable, "-c", "from strom.testing.forkserver import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            start_new_session=True,
        )
        self._requests = threading.Lock()

    @classmethod
    def shared(cls) -> ForkServer:
        with cls._lock:
            server = cls._shared
            if server is None or server.process.poll() is not None:
                server = cls._shared = ForkServer()
            return server

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._requests:
            stdin: IO[str] | None = self.process.stdin
            stdout: IO[str] | None = self.process.stdout
            assert stdin is not None and stdout is not None
            stdin.write(json.dumps(request) + "\n")
            stdin.flush()
            line = stdout.readline()
        if not line:
            raise RuntimeError("the strom test fork server exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def start(
        self,
        argv: list[str],
        log_path: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        stderr: str | None = None,
    ) -> int:
        request = {"op": "start", "argv": argv, "log": log_path, "cwd": cwd, "env": env or {}}
        request |= {"stdin": stdin, "stderr": stderr}
        return int(self._ask(request)["pid"])

    def kill(self, pid: int, sig: int) -> bool:
        """Signals a child not reaped yet; False (nothing sent) for one that was."""
        return bool(self._ask({"op": "kill", "pid": pid, "signal": sig})["sent"])

    def wait(self, pid: int, timeout_s: float) -> int | None:
        code = self._ask({"op": "wait", "pid": pid, "timeout": timeout_s})["code"]
        return None if code is None else int(code)


class ForkedProcess:
    """A broker forked by the server, with the part of `subprocess.Popen`'s interface the
    tests use (`pid`, `poll`, `wait`, `send_signal`, `kill`, `returncode`)."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.wait(self.pid, 0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        # In short slices: the server answers one request at a time, and another thread may
        # want to start or poll a broker meanwhile.
        deadline = time.monotonic() + (3600.0 if timeout is None else timeout)
        while self.returncode is None:
            remaining = deadline - time.monotonic()
            self.returncode = self.server.wait(self.pid, max(0.0, min(0.2, remaining)))
            if remaining <= 0:
                break
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"strom serve (pid {self.pid})", timeout or 0.0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            self.server.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
