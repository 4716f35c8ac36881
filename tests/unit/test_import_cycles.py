"""Import cycles (tools/import_cycles.py, TYPE_CHECKING imports included) that were removed
stay removed: the ZooKeeper controller's steps depend on `ControllerHost`, not on the
controller, the request dispatcher and the network layer import one way, as do the CLI's
commands and its entry point, the config definitions and their validators, and the broker's
config and its cross-key checks (`config.requirements` reads it through a protocol). The
broker's parts (topic administration, dynamic configs, SCRAM users, log-dir failures, disk
work, background jobs, cluster start-up), the HTTP side and producer state are in no cycle
either. And the layers below the server never import it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from import_cycles import import_cycles  # noqa: E402

KEPT_APART = (
    "strom.cluster.zk.",
    "strom.server.dispatch",
    "strom.server.network",
    "strom.cli.",
    "strom.config.definitions",
    "strom.config.validators",
    "strom.config.broker",
    "strom.config.requirements",
    "strom.server.topic_admin",
    "strom.server.dynamic_configs",
    "strom.server.scram_users",
    "strom.server.log_dir_failures",
    "strom.server.disk_io",
    "strom.server.background_jobs",
    "strom.server.cluster_startup",
    "strom.server.http.",
    "strom.storage.producer_",
)


def test_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n"
    )
    (pkg / "b.py").write_text("from pkg import a\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    assert import_cycles(tmp_path) == [["pkg.a", "pkg.b"]]


def test_no_cycle_through_the_modules_kept_apart() -> None:
    cycles = import_cycles(ROOT / "src")
    involved = [c for c in cycles if any(m.startswith(KEPT_APART) for m in c)]
    assert involved == []


# Packages below the request layer: none of them may import `strom.server` or `strom.cli`
# (the runtimes see the broker through the protocols of `strom.runtime.host`).
BELOW_SERVER = (
    "clock",
    "protocol",
    "storage",
    "cluster",
    "replication",
    "coordinator",
    "runtime",
    "config",
    "security",
    "client",
)


def test_layers_below_the_server_do_not_import_it() -> None:
    src = ROOT / "src" / "strom"
    upward: list[str] = []
    for package in BELOW_SERVER:
        paths = [src / f"{package}.py"] if (src / f"{package}.py").exists() else []
        paths += sorted((src / package).rglob("*.py")) if (src / package).is_dir() else []
        for path in paths:
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                upward += [
                    f"{path.relative_to(src)}: {name}"
                    for name in names
                    if name in ("strom.server", "strom.cli")
                    or name.startswith(("strom.server.", "strom.cli."))
                ]
    assert upward == []
