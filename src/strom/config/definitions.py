"""The vocabulary of configuration: types, sources, validators and one key's definition.

Values travel as strings (properties files, the wire) and are parsed here into Python values with
the same rules Kafka's `ConfigDef` applies, so a value Kafka accepts is accepted here and a value
Kafka rejects is rejected with a message that names the key, the value and the reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import IntEnum

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
SHORT_MIN, SHORT_MAX = -(2**15), 2**15 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1

ConfigValue = bool | int | float | str | list[str] | None


class ConfigError(ValueError):
    """A configuration key or value was rejected; the message says which, what and why."""

    def __init__(self, message: str, key: str | None = None, value: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.value = value


class ConfigType(IntEnum):
    """Value types; the numbers are DescribeConfigs' `config_type` ids (KIP-569)."""

    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


class ConfigSource(IntEnum):
    """Where a value came from; the numbers are DescribeConfigs' `config_source` ids."""

    UNKNOWN = 0
    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


# --- validators -------------------------------------------------------------------------------


class Validator:
    """Checks a parsed value; returns the reason it is bad, or None."""

    def check(self, value: ConfigValue) -> str | None:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Range(Validator):
    low: float | None = None
    high: float | None = None

    def check(self, value: ConfigValue) -> str | None:
        # None means "not set" (a key whose default is null); nothing to range-check.
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if self.low is not None and value < self.low:
            return f"must be at least {_num(self.low)}"
        if self.high is not None and value > self.high:
            return f"must be no more than {_num(self.high)}"
        return None

    def describe(self) -> str:
        if self.high is None:
            return f"[{_num(self.low)},...]"
        if self.low is None:
            return f"[...,{_num(self.high)}]"
        return f"[{_num(self.low)},...,{_num(self.high)}]"


@dataclass(frozen=True, slots=True)
class OneOf(Validator):
    choices: tuple[str, ...]
    case_sensitive: bool = True

    def check(self, value: ConfigValue) -> str | None:
        if value is None:
            return None
        text = str(value)
        allowed = self.choices if self.case_sensitive else tuple(c.lower() for c in self.choices)
        probe = text if self.case_sensitive else text.lower()
        return None if probe in allowed else f"must be one of {', '.join(self.choices)}"

    def describe(self) -> str:
        return "[" + ", ".join(self.choices) + "]"


@dataclass(frozen=True, slots=True)
class ListOf(Validator):
    """Every list element must be one of `choices`; duplicates and empty elements are rejected."""

    choices: tuple[str, ...]
    allow_empty: bool = True

    def check(self, value: ConfigValue) -> str | None:
        if not isinstance(value, list):
            return None
        if not value and not self.allow_empty:
            return "must not be empty"
        for item in value:
            if item not in self.choices:
                return f"contains {item!r}; each element must be one of {', '.join(self.choices)}"
        if len(set(value)) != len(value):
            return "contains duplicate elements"
        return None

    def describe(self) -> str:
        return "[" + ", ".join(self.choices) + "]"


@dataclass(frozen=True, slots=True)
class Predicate(Validator):
    """A rule that does not fit the shapes above (e.g. gzip's level: -1 or 1..9)."""

    test: Callable[[ConfigValue], bool]
    text: str

    def check(self, value: ConfigValue) -> str | None:
        return None if value is None or self.test(value) else f"must be {self.text}"

    def describe(self) -> str:
        return self.text


def at_least(low: float) -> Range:
    return Range(low=low)


def between(low: float, high: float) -> Range:
    return Range(low=low, high=high)


def _num(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else repr(x)


# --- one key ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigDef:
    """One configuration key: how to parse it, its default and what it means."""

    name: str
    type: ConfigType
    default: ConfigValue
    doc: str
    validator: Validator | None = None
    dynamic: bool = False
    # Keys that Strom parses and reports but does not act on (yet); documented as such.
    unused: bool = False
    synonyms: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        # Tables write list defaults the way a properties file would ("delete"); keep the parsed
        # form so a default and a set value look the same to readers.
        if self.type is ConfigType.LIST and isinstance(self.default, str):
            object.__setattr__(self, "default", parse_value(self.name, self.type, self.default))

    @property
    def sensitive(self) -> bool:
        # Kafka treats PASSWORD-typed keys as sensitive; their values are never described.
        return self.type is ConfigType.PASSWORD

    def parse(self, raw: str, origin: str | None = None) -> ConfigValue:
        value = parse_value(self.name, self.type, raw, origin)
        if self.validator is not None:
            reason = self.validator.check(value)
            if reason is not None:
                raise ConfigError(_bad(self.name, raw, reason, origin), self.name, raw)
        return value


def _bad(name: str, raw: str, reason: str, origin: str | None) -> str:
    where = f" (from {origin})" if origin else ""
    return f"Invalid value {raw!r} for configuration {name}{where}: {reason}"


_INTEGER = re.compile(r"[+-]?[0-9]+")
# Java's Double.parseDouble accepts decimal and exponent forms plus NaN/Infinity; Python's float()
# also takes underscores and "inf", which Kafka would reject, so the shape is checked first.
_DOUBLE = re.compile(r"[+-]?(NaN|Infinity|([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)[dDfF]?")
_INT_BOUNDS = {
    ConfigType.INT: (INT_MIN, INT_MAX, "a 32-bit integer"),
    ConfigType.SHORT: (SHORT_MIN, SHORT_MAX, "a 16-bit integer"),
    ConfigType.LONG: (LONG_MIN, LONG_MAX, "a 64-bit integer"),
}


def parse_value(name: str, ctype: ConfigType, raw: str, origin: str | None = None) -> ConfigValue:
    """Parses `raw` as Kafka's ConfigDef would (it trims everything except passwords)."""
    if ctype is ConfigType.PASSWORD:
        return raw
    text = raw.strip()
    if ctype is ConfigType.BOOLEAN:
        if text.lower() == "true":
            return True
        if text.lower() == "false":
            return False
        raise ConfigError(_bad(name, raw, "expected true or false", origin), name, raw)
    if ctype in _INT_BOUNDS:
        low, high, what = _INT_BOUNDS[ctype]
        if not _INTEGER.fullmatch(text):
            raise ConfigError(_bad(name, raw, f"expected {what}", origin), name, raw)
        number = int(text)
        if not low <= number <= high:
            raise ConfigError(_bad(name, raw, f"out of range for {what}", origin), name, raw)
        return number
    if ctype is ConfigType.DOUBLE:
        if not _DOUBLE.fullmatch(text):
            raise ConfigError(_bad(name, raw, "expected a number", origin), name, raw)
        return float(text.rstrip("dDfF").replace("Infinity", "inf"))
    if ctype is ConfigType.LIST:
        if not text:
            return []
        return [item.strip() for item in text.split(",")]
    return text  # STRING, CLASS


def format_value(ctype: ConfigType, value: ConfigValue) -> str | None:
    """The string form DescribeConfigs reports (Kafka's ConfigDef.convertToString)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, float):
        return _java_double(value)
    return str(value)


def _java_double(x: float) -> str:
    # Java prints doubles as "0.5", "1.0", "1.0E-5", "1.7976931348623157E308", "NaN", "Infinity":
    # plain notation in [1e-3, 1e7), otherwise one digit, a point and an exponent.
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0 or 1e-3 <= abs(x) < 1e7:
        return repr(x)
    exact = Decimal(repr(x))
    sign, digits, _ = exact.as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    mantissa = text[0] + "." + (text[1:] or "0")
    return f"{'-' if sign else ''}{mantissa}E{exact.adjusted()}"


def names(defs: Sequence[ConfigDef]) -> dict[str, ConfigDef]:
    table: dict[str, ConfigDef] = {}
    for d in defs:
        if d.name in table:  # a programming error in the tables, caught at import time
            raise AssertionError(f"duplicate config definition {d.name}")
        table[d.name] = d
    return table


# --- DescribeConfigs shapes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigSynonym:
    """One place a value could come from, as DescribeConfigs lists them (highest priority first)."""

    name: str
    value: str | None
    source: ConfigSource


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One row of a DescribeConfigs answer."""

    name: str
    value: str | None  # None when unset, or when sensitive
    read_only: bool
    source: ConfigSource
    is_sensitive: bool
    config_type: ConfigType
    synonyms: list[ConfigSynonym]
    documentation: str
