"""docs/compatibility.md must say exactly which API versions the broker handles."""

from __future__ import annotations

import re
from pathlib import Path

from strom.protocol.messages import API_SPECS
from strom.server.registry import HANDLERS

LEDGER = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"
ROW = re.compile(r"^\| (\d+) \| (\w+) \| ([^|]+) \| ([^|]+) \|")


def _ledger_rows() -> dict[int, tuple[str, str]]:
    rows: dict[int, tuple[str, str]] = {}
    for line in LEDGER.read_text().splitlines():
        match = ROW.match(line)
        if match:
            rows[int(match[1])] = (match[2], match[4].strip())
    return rows


def _versions(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


def test_every_api_key_has_a_row() -> None:
    assert sorted(_ledger_rows()) == sorted(API_SPECS)


def test_strom_versions_match_the_handler_registry() -> None:
    rows = _ledger_rows()
    for api_key, spec in API_SPECS.items():
        name, strom_versions = rows[api_key]
        assert name == spec.name, f"key {api_key}"
        handler = HANDLERS.get(api_key)
        expected = (
            "none" if handler is None else _versions(handler.min_version, handler.max_version)
        )
        assert strom_versions == expected, f"{spec.name} (key {api_key})"
