"""Group configs of share groups: names, validation and the by_duration reset."""

from __future__ import annotations

from strom.config.definitions import ConfigSource
from strom.config.group import describe_group_configs, duration_ms, validate_group_config

BROKER = {
    "group.share.record.lock.duration.ms": "30000",
    "group.share.min.record.lock.duration.ms": "15000",
    "group.share.max.record.lock.duration.ms": "60000",
}


def test_validation() -> None:
    assert validate_group_config("share.auto.offset.reset", "earliest", BROKER) is None
    assert validate_group_config("share.auto.offset.reset", "by_duration:PT1H", BROKER) is None
    assert validate_group_config("share.auto.offset.reset", "soon", BROKER) is not None
    assert validate_group_config("share.isolation.level", "read_committed", BROKER) is None
    assert validate_group_config("share.isolation.level", "x", BROKER) is not None
    assert validate_group_config("share.record.lock.duration.ms", "20000", BROKER) is None
    assert validate_group_config("share.record.lock.duration.ms", "1000", BROKER) is not None
    assert validate_group_config("share.record.lock.duration.ms", "ten", BROKER) is not None
    assert validate_group_config("no.such.key", "1", BROKER) is not None
    assert validate_group_config("share.isolation.level", None, BROKER) is None  # delete


def test_durations() -> None:
    assert duration_ms("by_duration:PT1H") == 3_600_000
    assert duration_ms("by_duration:P1DT30M") == 86_400_000 + 1_800_000
    assert duration_ms("by_duration:PT0.5S") == 500
    assert duration_ms("by_duration:P") is None
    assert duration_ms("latest") is None


def test_describe_sources() -> None:
    entries = {
        e.name: e
        for e in describe_group_configs({"share.isolation.level": "read_committed"}, BROKER, None)
    }
    assert entries["share.isolation.level"].source == ConfigSource.DYNAMIC_GROUP_CONFIG
    assert entries["share.auto.offset.reset"].value == "latest"
    assert entries["share.record.lock.duration.ms"].value == "30000"
    assert entries["share.record.lock.duration.ms"].source == ConfigSource.DEFAULT_CONFIG
