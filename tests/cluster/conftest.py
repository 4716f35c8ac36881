"""Fixtures for tests against a real ZooKeeper.

- `zk_server`: one ZooKeeper for the whole session (started on first use, ~1 s).
- `zk_hosts`: a connect string into a fresh chroot of that server, so tests never see each
  other's znodes (`127.0.0.1:port/strom-<random>`).
- `zk`: a kazoo client on that chroot, to look at (and poke) the cluster's znodes.
- `zk_server_factory(max_session_timeout_ms=None)`: a private server for tests that stop, kill
  or restart ZooKeeper;
  every server it starts is stopped at teardown.

Every test in this directory is marked `cluster`; without Java or the zookeeper package the
tests are skipped with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from .helpers import kazoo_session
from .zk_server import ZooKeeperServer, zookeeper_available


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def zk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    reason = zookeeper_available()
    if reason:
        pytest.skip(reason)
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def zk_hosts(zk_server: ZooKeeperServer) -> str:
    chroot = f"/strom-{uuid.uuid4().hex[:12]}"
    client = KazooClient(hosts=zk_server.hosts)
    client.start(timeout=30)
    try:
        client.ensure_path(chroot)
    finally:
        client.stop()
        client.close()
    return zk_server.hosts + chroot


@pytest.fixture
def zk(zk_hosts: str) -> Iterator[KazooClient]:
    """A kazoo client on the test's chroot, to look at (and poke) the cluster's znodes."""
    with kazoo_session(zk_hosts) as client:
        yield client


@pytest.fixture
def zk_server_factory(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., ZooKeeperServer]]:
    reason = zookeeper_available()
    if reason:
        pytest.skip(reason)
    servers: list[ZooKeeperServer] = []

    def make(max_session_timeout_ms: int | None = None) -> ZooKeeperServer:
        server = ZooKeeperServer(tmp_path / f"zk{len(servers)}", 200, max_session_timeout_ms)
        servers.append(server)  # registered before start: teardown covers a failed start
        server.start()
        return server

    yield make
    failed = getattr(request.node, "rep_call", None)
    for server in servers:
        if failed is not None and failed.failed:
            print(f"--- ZooKeeper log ({server.root}) ---\n{server.log_tail()}")
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
