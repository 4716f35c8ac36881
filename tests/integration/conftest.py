"""Fixtures that start strom brokers as subprocesses and always stop them.

- `broker`: a fresh broker for one test (function scope).
- `shared_broker`: one broker per test module, for cheap tests that use their own topics.
- `broker_factory(sets=None, **kw)`: start brokers with special settings; `kw` keys use `_` for
  `.` (`broker_factory(message_max_bytes=100000)`), or pass a dict of Kafka names.
- `topic`: a topic name unique to the test.

On a failed test the tail of every involved broker's log is attached to the report.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from .broker_process import BrokerProcess


class BrokerFactory:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.brokers: list[BrokerProcess] = []

    def __call__(
        self,
        sets: Mapping[str, object] | None = None,
        *,
        config_file: Path | None = None,
        with_log_dirs: bool = True,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
        port: int | None = None,
        nofile: int | None = None,
        tmpfs_bytes: int | None = None,
        **kw: object,
    ) -> BrokerProcess:
        merged: dict[str, object] = dict(sets or {})
        merged.update({k.replace("_", "."): v for k, v in kw.items()})
        n = len(self.brokers)
        b = BrokerProcess(
            self.root / f"broker{n}",
            merged,
            config_file=config_file,
            with_log_dirs=with_log_dirs,
            cwd=cwd,
            env=env,
            name=f"broker{n}",
            port=port,
            nofile=nofile,
            tmpfs_bytes=tmpfs_bytes,
        )
        self.brokers.append(b)  # registered before start: teardown covers a failed start
        b.start()
        if wait:
            b.wait_ready()
        return b

    def stop_all(self) -> None:
        errors = []
        for b in self.brokers:
            try:
                b.stop()
            except Exception as e:  # keep stopping the others
                errors.append(e)
        if errors:
            raise errors[0]


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[BrokerFactory]:
    f = BrokerFactory(tmp_path / "brokers")
    yield f
    f.stop_all()


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> BrokerProcess:
    return broker_factory()


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    f = BrokerFactory(tmp_path_factory.mktemp("shared"))
    try:
        b = f()
        yield b
    finally:
        f.stop_all()


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A legal, unique topic name derived from the test name."""
    base = re.sub(r"[^a-zA-Z0-9._-]", "_", request.node.name)[:180]
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def new_topic(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Make further unique topic names within one test."""

    def make(suffix: str = "t") -> str:
        base = re.sub(r"[^a-zA-Z0-9._-]", "_", request.node.name)[:150]
        return f"{base}-{suffix}-{uuid.uuid4().hex[:8]}"

    return make


# ------------------------------------------------------------------------- failure reporting


def _involved_brokers(item: pytest.Item) -> list[BrokerProcess]:
    found: list[BrokerProcess] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, BrokerProcess):
            found.append(value)
        elif isinstance(value, BrokerFactory):
            found.extend(value.brokers)
    unique: list[BrokerProcess] = []
    for b in found:
        if all(b is not u for u in unique):
            unique.append(b)
    return unique


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, Any, Any]:
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for b in _involved_brokers(item):
            state = (
                "alive" if b.is_alive() else f"exited with {b.proc.returncode if b.proc else None}"
            )
            report.sections.append((f"strom broker {b.bootstrap} ({state})", b.log_tail()))
    return report
