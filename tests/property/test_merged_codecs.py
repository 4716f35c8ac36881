"""The merged codecs speak every legacy version exactly as codecs of the legacy specs alone.

`strom.protocol.messages` is generated from Kafka's current specs merged with the older set
that still defines the versions Kafka 3.9 serves (tools/spec_merge.py). This test generates
the older set on its own into a scratch package and checks, for every message and every
version the older set defines, that bytes written by either codec are read and rewritten
identically by the other. It needs the reference specs beside the repository
(../shared/kafka) and is skipped without them.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_messages_roundtrip import instance_strategy

import strom.protocol.messages as merged

pytestmark = pytest.mark.property

ROOT = Path(__file__).resolve().parents[2]
LEGACY_SPECS = ROOT.parent / "shared" / "kafka" / "message-legacy"
PACKAGE = "strom_legacy_codecs"
# The API the current specs renamed (key 74).
RENAMED_CLASSES = {
    "ListClientMetricsResourcesRequest": "ListConfigResourcesRequest",
    "ListClientMetricsResourcesResponse": "ListConfigResourcesResponse",
}


def _legacy_classes(out: Path) -> list[type[Any]]:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import generate_messages
    finally:
        sys.path.pop(0)
    files = generate_messages.render(LEGACY_SPECS, PACKAGE)
    pkg = out / PACKAGE
    pkg.mkdir(parents=True)
    for name, text in files.items():
        (pkg / name).write_text(text, encoding="utf-8")
    sys.path.insert(0, str(out))
    module = importlib.import_module(PACKAGE)
    return sorted((getattr(module, name) for name in module._MODULES), key=lambda c: c.__name__)


def _collect() -> list[type[Any]]:
    if not LEGACY_SPECS.is_dir():
        return []
    import tempfile

    return _legacy_classes(Path(tempfile.mkdtemp(prefix="strom-legacy-")))


LEGACY = _collect()


def _counterpart(legacy_cls: type[Any]) -> type[Any]:
    name = RENAMED_CLASSES.get(legacy_cls.__name__, legacy_cls.__name__)
    cls: type[Any] = getattr(merged, name)
    return cls


@pytest.mark.skipif(not LEGACY, reason="Kafka's legacy specs (../shared/kafka) not present")
@pytest.mark.parametrize("legacy_cls", LEGACY, ids=lambda c: c.__name__)
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_legacy_versions_unchanged(legacy_cls: type[Any], data: st.DataObject) -> None:
    merged_cls = _counterpart(legacy_cls)
    assert merged_cls.MIN_VERSION <= legacy_cls.MIN_VERSION
    assert merged_cls.MAX_VERSION >= legacy_cls.MAX_VERSION
    assert merged_cls.DEPRECATED_MAX == legacy_cls.DEPRECATED_MAX
    for version in range(legacy_cls.MIN_VERSION, legacy_cls.MAX_VERSION + 1):
        old = data.draw(instance_strategy(legacy_cls, version), label=f"legacy v{version}")
        old_bytes = old.encode(version)
        assert merged_cls.decode(old_bytes, version).encode(version) == old_bytes, version
        new = data.draw(instance_strategy(merged_cls, version), label=f"merged v{version}")
        new_bytes = new.encode(version)
        assert legacy_cls.decode(new_bytes, version).encode(version) == new_bytes, version


@pytest.mark.skipif(not LEGACY, reason="Kafka's legacy specs (../shared/kafka) not present")
def test_field_names_kept() -> None:
    """Every attribute of a legacy class (and of its structs) exists in the merged one."""

    def names(cls: type[Any], seen: set[type[Any]]) -> set[str]:
        out = set()
        for spec in cls.FIELDS:
            out.add(f"{cls.__name__}.{spec.name}")
            if spec.struct is not None and spec.struct not in seen:
                seen.add(spec.struct)
                out |= names(spec.struct, seen)
        return out

    for legacy_cls in LEGACY:
        if legacy_cls.__name__ in RENAMED_CLASSES:
            continue
        missing = names(legacy_cls, set()) - names(_counterpart(legacy_cls), set())
        assert not missing, legacy_cls.__name__
