"""Group configs (KIP-848/KIP-932): per-group settings of share groups, set with
IncrementalAlterConfigs and read with DescribeConfigs on GROUP resources (type 32).

Each key falls back to a broker setting or to Kafka's default when the group does not set it.
Values are validated as Kafka does: unknown keys and bad values are INVALID_CONFIG.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from strom.config.definitions import ConfigEntry, ConfigSource, ConfigType
from strom.share.filter import FilterError, compile_filter

__all__ = ["GROUP_DEFS", "GroupConfigDef", "describe_group_configs", "validate_group_config"]

# by_duration:<ISO-8601 duration>, e.g. by_duration:PT1H (KIP-1106)
_DURATION = re.compile(
    r"^by_duration:P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


def duration_ms(value: str) -> int | None:
    """Milliseconds of a `by_duration:` reset, None when the value is not one."""
    m = _DURATION.match(value)
    if m is None or value in ("by_duration:P", "by_duration:PT"):
        return None
    days, hours, minutes, seconds = m.groups()
    total = (
        int(days or 0) * 86_400.0
        + int(hours or 0) * 3600.0
        + int(minutes or 0) * 60.0
        + float(seconds or 0)
    )
    return int(total * 1000)


@dataclass(frozen=True)
class GroupConfigDef:
    name: str
    config_type: ConfigType
    broker_key: str | None  # the broker setting it falls back to
    default: str
    check: Callable[[str, Mapping[str, str]], str | None]  # an error message, or None
    doc: str


def _int_between(lo_key: str, hi_key: str) -> Callable[[str, Mapping[str, str]], str | None]:
    def check(value: str, broker: Mapping[str, str]) -> str | None:
        try:
            n = int(value)
        except ValueError:
            return "must be an integer"
        lo, hi = int(broker.get(lo_key, "0")), int(broker.get(hi_key, str(2**31 - 1)))
        if not lo <= n <= hi:
            return f"must be between {lo} ({lo_key}) and {hi} ({hi_key})"
        return None

    return check


def _one_of(*allowed: str) -> Callable[[str, Mapping[str, str]], str | None]:
    def check(value: str, broker: Mapping[str, str]) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(allowed)}"

    return check


def _at_least_zero(value: str, broker: Mapping[str, str]) -> str | None:
    try:
        n = int(value)
    except ValueError:
        return "must be an integer"
    return None if 0 <= n <= 2**31 - 1 else "must be between 0 and 2147483647"


def _boolean(value: str, broker: Mapping[str, str]) -> str | None:
    return None if value.lower() in ("true", "false") else "must be true or false"


def _anything(value: str, broker: Mapping[str, str]) -> str | None:
    return None


def _filter(value: str, broker: Mapping[str, str]) -> str | None:
    try:
        compile_filter(value)
    except FilterError as exc:
        return str(exc)
    return None


def _reset(value: str, broker: Mapping[str, str]) -> str | None:
    if value in ("latest", "earliest") or duration_ms(value) is not None:
        return None
    return "must be latest, earliest or by_duration:<ISO-8601 duration>"


GROUP_DEFS: dict[str, GroupConfigDef] = {
    d.name: d
    for d in (
        GroupConfigDef(
            "share.auto.offset.reset",
            ConfigType.STRING,
            None,
            "latest",
            _reset,
            "Where a share group starts reading a partition it has no state for.",
        ),
        GroupConfigDef(
            "share.isolation.level",
            ConfigType.STRING,
            None,
            "read_uncommitted",
            _one_of("read_committed", "read_uncommitted"),
            "Whether a share group reads records of open and aborted transactions.",
        ),
        GroupConfigDef(
            "share.record.lock.duration.ms",
            ConfigType.INT,
            "group.share.record.lock.duration.ms",
            "30000",
            _int_between(
                "group.share.min.record.lock.duration.ms",
                "group.share.max.record.lock.duration.ms",
            ),
            "How long a record delivered to a share consumer stays locked to it.",
        ),
        GroupConfigDef(
            "errors.deadletterqueue.topic.name",
            ConfigType.STRING,
            None,
            "",
            _anything,
            "The topic a share group copies the records it gives up on to (rejected, or "
            "archived at the delivery-count limit); empty: none (KIP-1191).",
        ),
        GroupConfigDef(
            "errors.deadletterqueue.copy.record.enable",
            ConfigType.BOOLEAN,
            None,
            "true",
            _boolean,
            "Whether a dead-letter record carries the original key, value and headers (Strom's "
            "default; Kafka's is false) or only the context headers.",
        ),
        GroupConfigDef(
            "strom.share.filter",
            ConfigType.STRING,
            None,
            "",
            _filter,
            "Strom: an expression over record headers, key and timestamp; the group receives "
            "only the records it matches, the others are acknowledged for it without being "
            "delivered. Empty: every record.",
        ),
        GroupConfigDef(
            "strom.share.retry.backoff.ms",
            ConfigType.INT,
            None,
            "0",
            _at_least_zero,
            "Strom: how long a released record (or one whose lock expired) waits before it is "
            "delivered again after its first delivery; doubled for each further one. 0: no wait.",
        ),
        GroupConfigDef(
            "strom.share.retry.backoff.max.ms",
            ConfigType.INT,
            None,
            "60000",
            _at_least_zero,
            "Strom: the longest retry backoff.",
        ),
    )
}


def validate_group_config(name: str, value: str | None, broker: Mapping[str, str]) -> str | None:
    """An error message for setting `name` to `value` (None deletes it), or None."""
    d = GROUP_DEFS.get(name)
    if d is None:
        return f"Unknown group config name: {name}"
    if value is None:
        return None
    problem = d.check(value, broker)
    return None if problem is None else f"Invalid value {value} for {name}: {problem}"


def describe_group_configs(
    overrides: Mapping[str, str], broker: Mapping[str, str], names: list[str] | None
) -> list[ConfigEntry]:
    out: list[ConfigEntry] = []
    for name, d in sorted(GROUP_DEFS.items()):
        if names is not None and name not in names:
            continue
        if name in overrides:
            value, source = overrides[name], ConfigSource.DYNAMIC_GROUP_CONFIG
        elif d.broker_key is not None and d.broker_key in broker:
            value, source = broker[d.broker_key], ConfigSource.DEFAULT_CONFIG
        else:
            value, source = d.default, ConfigSource.DEFAULT_CONFIG
        out.append(
            ConfigEntry(
                name=name,
                value=value,
                read_only=False,
                source=source,
                is_sensitive=False,
                config_type=d.config_type,
                synonyms=[],
                documentation=d.doc,
            )
        )
    return out
