"""What an installed Strom carries: the `strom` command, the pytest plugin's entry point and
the console's static files (package data, no files fetched at run time)."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata, resources


def test_strom_command_and_version() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "strom", "--version"], capture_output=True, text=True, check=True
    )
    assert re.fullmatch(r"strom \d+\.\d+\.\d+\S*\n", run.stdout)
    scripts = {e.name: e.value for e in metadata.entry_points(group="console_scripts")}
    assert scripts["strom"] == "strom.cli.main:main"


def test_pytest_plugin_entry_point() -> None:
    plugins = {e.name: e.value for e in metadata.entry_points(group="pytest11")}
    assert plugins["strom"] == "strom.testing.pytest_plugin"


def test_console_assets_are_package_data() -> None:
    static = resources.files("strom.server.http").joinpath("static")
    for name in ("console.css", "console.js"):
        assert static.joinpath(name).is_file()
    vendor = static.joinpath("vendor")
    names = {p.name for p in vendor.iterdir()}
    assert {"htmx-2.0.11.min.js", "uPlot-1.6.32.iife.min.js", "uPlot-1.6.32.min.css"} <= names
    from strom.server.http import console_pages

    for path in (console_pages.HTMX, console_pages.UPLOT_JS, console_pages.UPLOT_CSS):
        assert path.removeprefix("/static/vendor/") in names
