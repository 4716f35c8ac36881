"""The Go client of the tests (tests/integration/go/sarama_client.go, on Sarama): built from
Debian's Go packages, offline, in GOPATH mode, once by the module that uses it, and run with one
JSON command per call.

scripts/test installs golang-go, golang-github-shopify-sarama-dev and
golang-github-xdg-go-scram-dev, whose sources live under /usr/share/gocode/src.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .clients import DEADLINE_S

GO_SOURCE = Path(__file__).parent / "go" / "sarama_client.go"
DEBIAN_GOPATH = "/usr/share/gocode"


def build_sarama_client(out: Path) -> Path:
    """Compile the Go client into `out` (a skip, saying why, only where Go is not installed)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed: scripts/test installs golang-go and Sarama through apt")
    binary = out / "sarama_client"
    env = {
        **os.environ,
        "GO111MODULE": "off",  # Debian's library sources, no module proxy
        "GOPATH": DEBIAN_GOPATH,
        "GOCACHE": str(out / "cache"),
        "GOFLAGS": "",
        "CGO_ENABLED": "0",  # Sarama's pure-Go zstd instead of the cgo one
    }
    done = subprocess.run(
        [go, "build", "-o", str(binary), str(GO_SOURCE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,  # below pytest-timeout's 300 s, so a slow build says so
        check=False,
    )
    assert done.returncode == 0, f"go build failed:\n{done.stderr}"
    shutil.rmtree(out / "cache", ignore_errors=True)  # ~30 MB of objects used once
    return binary


def run_sarama(
    binary: Path,
    bootstrap: str,
    steps: list[dict[str, Any]],
    security: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Run the Go client's steps; one answer per step (an `error`/`error_code` on failure)."""
    command = {"bootstrap": bootstrap, "security": security or {}, "steps": steps}
    done = subprocess.run(
        [str(binary), json.dumps(command)],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S * 4,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(answers) == len(steps), answers
    return answers
