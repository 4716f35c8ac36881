"""pytest fixtures of a real Strom broker (registered through the `pytest11` entry point, so
installing Strom is enough):

- `strom_broker`: a fresh broker for one test, its data in the test's `tmp_path`;
- `strom_broker_session`: one broker for the whole session (use topic names of your own);
- `strom_broker_config`: the settings both start with (Kafka's names); override this fixture
  in a conftest.py to change them, e.g. `return {"num.partitions": 3}`.

Each is a `strom.testing.StromBroker`: `.bootstrap` for clients, `.log_text()` for the log.
A test that fails gets the broker's log in its report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from strom.testing.broker import StromBroker


@pytest.fixture(scope="session")
def strom_broker_config() -> dict[str, object]:
    return {}


@pytest.fixture
def strom_broker(
    tmp_path: Path, strom_broker_config: dict[str, object], request: pytest.FixtureRequest
) -> Iterator[StromBroker]:
    b = StromBroker(tmp_path / "strom", strom_broker_config)
    b.start()
    try:
        yield b
    finally:
        b.stop()
        _attach_log(request, b)


@pytest.fixture(scope="session")
def strom_broker_session(
    tmp_path_factory: pytest.TempPathFactory, strom_broker_config: dict[str, object]
) -> Iterator[StromBroker]:
    b = StromBroker(tmp_path_factory.mktemp("strom"), strom_broker_config)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def _attach_log(request: pytest.FixtureRequest, b: StromBroker) -> None:
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        tail = "\n".join(b.log_text().splitlines()[-60:])
        report.sections.append((f"strom broker {b.bootstrap}", tail))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, Any]:
    report = yield
    if call.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
