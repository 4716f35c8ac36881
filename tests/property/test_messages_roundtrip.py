"""Every generated message class round-trips at every valid version.

Strategies are derived from the `FIELDS` descriptors the generator emits, so a
new spec needs no new test code: only fields present in the version get a
value, None appears only where the version allows it, tagged fields included.
"""

from __future__ import annotations

import warnings
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strom.coordinator.group.generated import message_classes as group_records
from strom.coordinator.share.generated import message_classes as share_records
from strom.coordinator.txn.generated import message_classes as txn_records
from strom.protocol.messages import FieldSpec, message_classes

pytestmark = pytest.mark.property

INT_RANGES = {
    "int8": (-(1 << 7), (1 << 7) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "uint16": (0, (1 << 16) - 1),
    "uint32": (0, (1 << 32) - 1),
}

# Mostly small payloads, sometimes one large enough to become its own chunk
# in the Writer (the zero-copy path).
_RECORDS = st.one_of(
    st.binary(max_size=12),
    st.binary(min_size=1024, max_size=1100),
)


def scalar(kind: str) -> st.SearchStrategy[Any]:
    if kind in INT_RANGES:
        lo, hi = INT_RANGES[kind]
        return st.integers(lo, hi)
    if kind == "bool":
        return st.booleans()
    if kind == "float64":
        return st.floats(allow_nan=False)
    if kind == "string":
        return st.text(max_size=6)
    if kind == "bytes":
        return st.binary(max_size=8)
    if kind == "records":
        return _RECORDS
    if kind == "uuid":
        return st.uuids()
    raise AssertionError(f"no strategy for {kind}")


def field_strategy(spec: FieldSpec, version: int) -> st.SearchStrategy[Any]:
    kind = spec.kind
    if kind == "struct":
        assert spec.struct is not None
        base = instance_strategy(spec.struct, version)
    elif kind == "[]struct":
        assert spec.struct is not None
        base = st.lists(instance_strategy(spec.struct, version), max_size=2)
    elif kind.startswith("[]"):
        base = st.lists(scalar(kind[2:]), max_size=3)
    else:
        base = scalar(kind)
    if spec.nullable_in(version):
        return st.none() | base
    return base


@cache
def instance_strategy(cls: type[Any], version: int) -> st.SearchStrategy[Any]:
    fields = {
        spec.name: field_strategy(spec, version) for spec in cls.FIELDS if spec.present_in(version)
    }
    return st.builds(cls, **fields)


CLASSES = sorted(message_classes(), key=lambda c: c.__name__)
# The records of __consumer_offsets, __transaction_state and __share_group_state.
RECORD_CLASSES = sorted(
    (*group_records(), *txn_records(), *share_records()), key=lambda c: c.__module__
)


@pytest.mark.parametrize("cls", CLASSES + RECORD_CLASSES, ids=lambda c: c.__module__)
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_roundtrip_every_version(cls: type[Any], data: st.DataObject) -> None:
    for version in range(cls.MIN_VERSION, cls.MAX_VERSION + 1):
        message = data.draw(instance_strategy(cls, version), label=f"v{version}")
        encoded = message.encode(version)
        decoded = cls.decode(encoded, version)
        assert decoded == message, f"v{version}"
        assert decoded.encode(version) == encoded, f"v{version}"


def test_every_spec_generated() -> None:
    # 188 request/response specs, 2 headers and 13 data records at the time of writing.
    kinds = {c.__name__.endswith(("Request", "Response")) for c in CLASSES}
    assert len(CLASSES) >= 203
    assert len(RECORD_CLASSES) >= 48
    assert kinds == {True, False}


def _kafka_python_classes() -> dict[str, type[Any]]:
    """kafka-python 3.x's own spec-driven message classes, by name (if installed)."""
    import importlib
    import pkgutil

    # kafka-python loads its schemas through a deprecated importlib API.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import kafka.protocol
            from kafka.protocol.api_message import ApiMessage
        except ImportError:
            return {}
        for info in pkgutil.walk_packages(kafka.protocol.__path__, "kafka.protocol."):
            try:
                importlib.import_module(info.name)
            except Exception:
                continue
    found: dict[str, type[Any]] = {}
    pending = list(ApiMessage.__subclasses__())
    while pending:
        sub = pending.pop()
        found.setdefault(sub.__name__, sub)
        pending.extend(sub.__subclasses__())
    return found


THEIRS = _kafka_python_classes()
SHARED = [c for c in CLASSES if c.__name__ in THEIRS]


@pytest.mark.skipif(not SHARED, reason="kafka-python 3.x protocol classes not available")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("cls", SHARED, ids=lambda c: c.__name__)
@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_kafka_python_reads_what_we_write(cls: type[Any], data: st.DataObject) -> None:
    """An independent codec decodes our bytes and re-encodes them identically."""
    theirs = THEIRS[cls.__name__]
    for version in range(cls.MIN_VERSION, min(cls.MAX_VERSION, theirs.max_version) + 1):
        message = data.draw(instance_strategy(cls, version), label=f"v{version}")
        if cls.__name__ == "ApiVersionsResponse":
            # kafka-python reads any ApiVersions error response as v0.
            message.error_code = 0
        encoded = message.encode(version)
        decoded = theirs.decode(encoded, version=version)
        if not hasattr(decoded, "_header"):
            decoded._header = None  # kafka-python only sets it when decoding a header
        assert bytes(decoded.encode(version=version)) == encoded, f"v{version}"
