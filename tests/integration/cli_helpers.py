"""Running the `strom` command as a user would: a subprocess, its output and exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    env = {k: v for k, v in os.environ.items() if not k.startswith("STROM_")}
    env["COLUMNS"] = "200"
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(
        [sys.executable, "-m", "strom", *map(str, args)],
        input=data,
        capture_output=True,
        timeout=deadline_s,
        cwd=cwd,
        env=env,
        check=False,
    )
    return Ran(
        proc.returncode,
        proc.stdout.decode(errors="replace"),
        proc.stderr.decode(errors="replace"),
        proc.stdout,
    )


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
