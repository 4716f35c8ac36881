"""docs/compatibility.md must say exactly which API versions the broker handles, and the broker
must handle every version a Kafka 3.9 broker in ZooKeeper mode answers (issue #10)."""

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


# What a Kafka 3.9 broker in ZooKeeper mode advertises: the keys whose specs (3.9.0) list the
# zkBroker listener, at their valid versions without a last version marked unstable.
KAFKA_39_ZOOKEEPER: dict[int, tuple[int, int]] = {
    0: (0, 11), 1: (0, 17), 2: (0, 9), 3: (0, 12), 4: (0, 7), 5: (0, 4), 6: (0, 8), 7: (0, 3),
    8: (0, 9), 9: (0, 9), 10: (0, 6), 11: (0, 9), 12: (0, 4), 13: (0, 5), 14: (0, 5),
    15: (0, 5), 16: (0, 5), 17: (0, 1), 18: (0, 4), 19: (0, 7), 20: (0, 6), 21: (0, 2),
    22: (0, 5), 23: (0, 4), 24: (0, 5), 25: (0, 4), 26: (0, 4), 27: (0, 1), 28: (0, 4),
    29: (0, 3), 30: (0, 3), 31: (0, 3), 32: (0, 4), 33: (0, 2), 34: (0, 2), 35: (0, 4),
    36: (0, 2), 37: (0, 3), 38: (0, 3), 39: (0, 2), 40: (0, 2), 41: (0, 3), 42: (0, 2),
    43: (0, 2), 44: (0, 1), 45: (0, 0), 46: (0, 0), 47: (0, 0), 48: (0, 1), 49: (0, 1),
    50: (0, 0), 51: (0, 0), 56: (0, 3), 57: (0, 1), 58: (0, 0), 60: (0, 1), 61: (0, 0),
    65: (0, 0), 66: (0, 1), 67: (0, 0), 68: (0, 0), 69: (0, 0),
}  # fmt: skip
# Still to come from other issues: delegation tokens (38-41), client quotas (48, 49). Their
# ledger rows say so.
NOT_YET = frozenset({38, 39, 40, 41, 48, 49})


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


def test_kafka_versions_are_those_of_the_codecs() -> None:
    """The "Kafka" column: the versions of Kafka 3.9 and of Kafka's current specs together,
    which the generated codecs cover."""
    rows = LEDGER.read_text().splitlines()
    for line in rows:
        match = ROW.match(line)
        if match:
            spec = API_SPECS[int(match[1])]
            expected = _versions(spec.request.MIN_VERSION, spec.request.MAX_VERSION)
            assert match[3].strip() == expected, f"{spec.name}"


def test_every_version_kafka_39_answers_is_handled() -> None:
    for api_key, (low, high) in sorted(KAFKA_39_ZOOKEEPER.items()):
        handler = HANDLERS.get(api_key)
        if api_key in NOT_YET and handler is None:
            continue
        name = API_SPECS[api_key].name
        assert handler is not None, f"{name} (key {api_key}) is not handled"
        assert handler.min_version <= low and high <= handler.max_version, (
            f"{name}: Kafka 3.9 answers {low}-{high}, Strom "
            f"{handler.min_version}-{handler.max_version}"
        )
