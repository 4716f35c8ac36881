"""Placement of tests on pytest-xdist workers (scripts/test runs them with --dist loadgroup).

Every test gets an xdist group: its module, so that module-scoped brokers start once per
module; the cluster tests (tests/cluster/) all share one group, so they run one after another
on a single worker.
"""

from __future__ import annotations

import pytest

CLUSTER_GROUP = "cluster"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        path = item.path.as_posix()
        group = CLUSTER_GROUP if "/tests/cluster/" in path else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
