"""Running the `strom` command as a user would: its own process, its output and exit code.

The process is a fork of the test process's fork server (strom.testing.forkserver), which runs
`strom <args>` as `python -m strom` would without paying for the interpreter's start and
Strom's imports again (a second or more of CPU per command on a busy 2-core machine).
test_config_cli.py runs `python -m strom` itself and test_packaging.py the installed command.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strom.testing.forkserver import ForkedProcess, ForkServer

CLI_DEADLINE_S = 120.0


@dataclass
class Ran:
    code: int
    out: str
    err: str
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def strom(
    *args: str | Path,
    input: bytes | str | None = None,
    cwd: Path | None = None,
    deadline_s: float = CLI_DEADLINE_S,
) -> Ran:
    data = input.encode() if isinstance(input, str) else input
    server = ForkServer.shared()  # its environment has no STROM_* variables
    with tempfile.TemporaryDirectory(prefix="strom-cli-") as tmp:
        files = Path(tmp)
        (files / "in").write_bytes(data or b"")
        pid = server.start(
            [str(a) for a in args],
            str(files / "out"),
            cwd=str(cwd or os.getcwd()),
            env={"COLUMNS": "200"},
            stdin=str(files / "in"),
            stderr=str(files / "err"),
        )
        process = ForkedProcess(server, pid)
        try:
            code = process.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=deadline_s)
            raise
        out = (files / "out").read_bytes() if (files / "out").exists() else b""
        err = (files / "err").read_bytes() if (files / "err").exists() else b""
    return Ran(code, out.decode(errors="replace"), err.decode(errors="replace"), out)


def ok(ran: Ran) -> Ran:
    assert ran.code == 0, f"exit {ran.code}\nstdout:\n{ran.out}\nstderr:\n{ran.err}"
    assert "Traceback" not in ran.err, ran.err
    return ran


def one_line_error(ran: Ran, code: int, *needles: str) -> None:
    """The command failed with `code` and said why on one line of stderr."""
    assert ran.code == code, f"exit {ran.code}, expected {code}\n{ran.out}\n{ran.err}"
    assert "Traceback" not in ran.err, ran.err
    lines = [line for line in ran.err.splitlines() if line.strip()]
    assert len(lines) == 1, ran.err
    assert lines[0].startswith("strom: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
