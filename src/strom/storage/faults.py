"""Fault injection for tests: make I/O in chosen log directories fail as a broken disk would.

A real disk failure cannot be made on demand (and a test running as root writes through any
chmod), so the storage layer asks this module before its file operations: segment writes,
reads and fsyncs, and the atomic writes of checkpoint files. Nothing is injected unless a test
asks, and then only for the log directories it names; the check costs one global lookup
otherwise.

In-process tests call `inject(log_dir, ops)` and `clear()`. A test driving a `strom serve`
process sets the environment variable STROMTEST_FAULT_INJECTION to a file path; the broker then
reads that file whenever it changes (`FaultFile.poll`), one rule a line:

    <log dir path> <op>[,<op>...]      ops: read, write, flush, all

An empty file clears every rule. The injected error is OSError(EIO), what a failing disk gives.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("strom.storage")

ENV_VAR = "STROMTEST_FAULT_INJECTION"
OPS = frozenset({"read", "write", "flush"})

# log dir (absolute) -> ops that fail there. Replaced whole, never mutated, so readers in any
# thread see a consistent map without a lock.
_rules: dict[Path, frozenset[str]] = {}
_lock = threading.Lock()


def inject(log_dir: Path, ops: Iterable[str]) -> None:
    """From now on `ops` fail with EIO for every file under `log_dir`."""
    wanted = _parse_ops(ops)
    global _rules
    with _lock:
        rules = dict(_rules)
        rules[log_dir.absolute()] = rules.get(log_dir.absolute(), frozenset()) | wanted
        _rules = rules


def clear() -> None:
    global _rules
    with _lock:
        _rules = {}


def _parse_ops(ops: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for op in ops:
        op = op.strip().lower()
        if op == "all":
            out |= OPS
        elif op in OPS:
            out.add(op)
        elif op:
            raise ValueError(f"unknown fault injection op {op!r} (read, write, flush, all)")
    return frozenset(out)


def check(path: Path | str, op: str) -> None:
    """Raise OSError(EIO) when `op` is to fail for `path` (a file or directory in a log dir).
    A path may be given as a string: nothing is built from it unless a rule exists."""
    if not _rules:
        return
    _check(Path(path), op)


def _check(path: Path, op: str) -> None:
    absolute = path.absolute()
    for log_dir, ops in _rules.items():
        if op in ops and (absolute == log_dir or log_dir in absolute.parents):
            raise OSError(errno.EIO, f"injected {op} error", str(path))


class FaultFile:
    """The rules file named by STROMTEST_FAULT_INJECTION, re-read when its mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: int | None = None

    @classmethod
    def from_environment(cls) -> FaultFile | None:
        value = os.environ.get(ENV_VAR)
        return cls(Path(value)) if value else None

    def poll(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return
        if stat.st_mtime_ns == self._seen:
            return
        self._seen = stat.st_mtime_ns
        rules: dict[Path, frozenset[str]] = {}
        for line in self.path.read_text().splitlines():
            if not line.strip():
                continue
            where, _, ops = line.strip().rpartition(" ")
            try:
                rules[Path(where).absolute()] = _parse_ops(ops.split(","))
            except ValueError as exc:
                log.error("fault injection file %s: %s", self.path, exc)
        global _rules
        with _lock:
            _rules = rules
        log.warning(
            "fault injection rules from %s: %s",
            self.path,
            {str(k): sorted(v) for k, v in rules.items()} or "none",
        )
