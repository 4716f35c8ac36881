"""What an installed Strom carries: the `strom` command, the pytest plugin's entry point and
the console's static files (package data, no files fetched at run time)."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from importlib import metadata, resources
from pathlib import Path

import pytest


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


@pytest.mark.slow
def test_a_built_wheel_installs_the_command_plugin_and_console(tmp_path: Path) -> None:
    """`pip wheel .` and the wheel installed in a fresh venv: `strom --version` runs from its
    script, the pytest11 entry point is there, and the console's assets are in the package."""
    repo = Path(__file__).resolve().parents[2]
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(repo), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0 and "No matching distribution found for setuptools" in built.stderr:
        pytest.skip("no index to fetch the build backend (setuptools) from")
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("strom-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for asset in (
        "console.css",
        "console.js",
        "vendor/htmx-2.0.11.min.js",
        "vendor/uPlot-1.6.32.iife.min.js",
        "vendor/uPlot-1.6.32.min.css",
    ):
        assert f"strom/server/http/static/{asset}" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        check=True,
    )
    version = subprocess.run(
        [str(venv / "bin" / "strom"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout == f"strom {metadata.version('strom')}\n"
    probe = (
        "from importlib import metadata, resources\n"
        "static = resources.files('strom.server.http').joinpath('static')\n"
        "print(static.joinpath('vendor', 'htmx-2.0.11.min.js').is_file())\n"
        "print([e.value for e in metadata.entry_points(group='pytest11')])\n"
        "import strom; print(strom.__file__)\n"
    )
    seen = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout.splitlines()
    assert seen[0] == "True"
    assert seen[1] == "['strom.testing.pytest_plugin']"
    assert seen[2].startswith(str(venv))  # the installed copy, not the source tree
