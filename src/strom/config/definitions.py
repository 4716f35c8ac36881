"""The vocabulary of configuration: types, sources, update modes and one key's definition.

Values travel as strings (properties files, the wire) and are parsed here into Python values with
the rules of Kafka's `ConfigDef`: a value Kafka accepts is accepted, a value Kafka rejects is
rejected, and the message is the one Kafka gives ("Invalid value abc for configuration
retention.ms: Not a number of type LONG").
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum, IntEnum

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
SHORT_MIN, SHORT_MAX = -(2**15), 2**15 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1

ConfigValue = bool | int | float | str | list[str] | None


class ConfigError(ValueError):
    """A configuration value was refused (Kafka's ConfigException).

    The admin APIs answer INVALID_CONFIG and, as Kafka does, put "Invalid config value for
    resource ...: " before the message.
    """

    def __init__(self, message: str, key: str | None = None, value: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.value = value


class Validator:
    """Checks a parsed value of key `name`; raises ConfigError when Kafka would refuse it."""

    def validate(self, name: str, value: ConfigValue) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError


class InvalidConfigurationError(ConfigError):
    """A request named configuration that cannot be taken at all (Kafka's
    InvalidConfigurationException: an unknown topic key, a null value); answered INVALID_CONFIG
    with the message as it is."""


class ConfigType(IntEnum):
    """Value types; the numbers are DescribeConfigs' `config_type` ids (KIP-569)."""

    UNKNOWN = 0
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
    DYNAMIC_BROKER_LOGGER_CONFIG = 6
    DYNAMIC_CLIENT_METRICS_CONFIG = 7
    DYNAMIC_GROUP_CONFIG = 8


class UpdateMode(Enum):
    """Which AlterConfigs may change a broker key at run time (Kafka's "Update Mode")."""

    READ_ONLY = "read-only"
    PER_BROKER = "per-broker"  # only on a broker's own resource (its id)
    CLUSTER_WIDE = "cluster-wide"  # on a broker's resource or the cluster default (empty name)


# --- one key ----------------------------------------------------------------------------------

NO_EFFECT_NOTE = "Strom accepts, stores and describes this setting but does not act on it."


@dataclass(frozen=True, slots=True)
class ConfigDef:
    """One configuration key: how to parse it, its default and what it means."""

    name: str
    type: ConfigType
    default: ConfigValue
    doc: str
    validator: Validator | None = None
    mode: UpdateMode = UpdateMode.READ_ONLY
    # A key Strom parses, validates, stores and describes but does not act on (a Kafka feature
    # Strom lacks, or a tuning knob of Kafka's implementation). Setting it logs one line saying so.
    unused: bool = False
    # Topic keys: the broker keys whose value a topic inherits, highest priority first.
    synonyms: tuple[str, ...] = field(default=())
    # Kafka's internal keys: accepted, but described only when set.
    internal: bool = False

    def __post_init__(self) -> None:
        # Tables write list defaults the way a properties file would ("delete"); keep the parsed
        # form so a default and a set value look the same to readers.
        if self.type is ConfigType.LIST and isinstance(self.default, str):
            object.__setattr__(self, "default", parse_value(self.name, self.type, self.default))

    @property
    def dynamic(self) -> bool:
        return self.mode is not UpdateMode.READ_ONLY

    @property
    def sensitive(self) -> bool:
        # Kafka treats PASSWORD-typed keys as sensitive; their values are never described.
        return self.type is ConfigType.PASSWORD

    @property
    def documentation(self) -> str:
        return f"{self.doc} {NO_EFFECT_NOTE}" if self.unused else self.doc

    def parse(self, raw: str, origin: str | None = None, name: str | None = None) -> ConfigValue:
        """The value `raw` stands for; ConfigError (Kafka's message) when Kafka would refuse it.

        `origin` (a file, "command line") is added to the message for start-up errors; `name`
        is the key the value was given under when that is not this key's own name (a
        listener-level key).
        """
        key = name or self.name
        try:
            value = parse_value(key, self.type, raw)
            if self.validator is not None:
                self.validator.validate(key, value)
        except ConfigError as exc:
            if origin is None:
                raise
            raise ConfigError(f"{exc} (from {origin})", exc.key, exc.value) from None
        return value


def invalid(name: str, value: object, reason: str | None) -> ConfigError:
    """Kafka's ConfigException(name, value, message)."""
    text = java_str(value)
    tail = f": {reason}" if reason is not None else ""
    return ConfigError(f"Invalid value {text} for configuration {name}{tail}", name, text)


def java_str(value: object) -> str:
    """How Java prints a parsed value in messages (String.valueOf)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _java_double(value)
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return str(value)


_INTEGER = re.compile(r"[+-]?[0-9]+")
# Java's Double.parseDouble accepts decimal and exponent forms plus NaN/Infinity; Python's float()
# also takes underscores and "inf", which Kafka would reject, so the shape is checked first.
_DOUBLE = re.compile(r"[+-]?(NaN|Infinity|([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)[dDfF]?")
_INT_BOUNDS = {
    ConfigType.INT: (INT_MIN, INT_MAX),
    ConfigType.SHORT: (SHORT_MIN, SHORT_MAX),
    ConfigType.LONG: (LONG_MIN, LONG_MAX),
}
# A Java binary class name: dotted identifiers, `$` for nested classes.
_CLASS_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*")
_LIST_SEPARATOR = re.compile(r"\s*,\s*")


def parse_value(name: str, ctype: ConfigType, raw: str) -> ConfigValue:
    """Parses `raw` as Kafka's ConfigDef.parseType does (it trims every type first)."""
    text = raw.strip()
    if ctype in (ConfigType.STRING, ConfigType.PASSWORD, ConfigType.UNKNOWN):
        return text
    if ctype is ConfigType.BOOLEAN:
        if text.lower() == "true":
            return True
        if text.lower() == "false":
            return False
        raise invalid(name, raw, "Expected value to be either true or false")
    if ctype in _INT_BOUNDS:
        low, high = _INT_BOUNDS[ctype]
        if not _INTEGER.fullmatch(text) or not low <= int(text) <= high:
            raise invalid(name, raw, f"Not a number of type {ctype.name}")
        return int(text)
    if ctype is ConfigType.DOUBLE:
        if not _DOUBLE.fullmatch(text):
            raise invalid(name, raw, "Not a number of type DOUBLE")
        return float(text.rstrip("dDfF").replace("Infinity", "inf"))
    if ctype is ConfigType.LIST:
        # Kafka splits on commas with any blanks around them and keeps empty elements, which
        # validators then see (a trailing comma makes an empty element).
        return [] if not text else _LIST_SEPARATOR.split(text)
    if ctype is ConfigType.CLASS:
        # Kafka loads the class; Strom has no JVM, so a name that could be a class is taken.
        if not _CLASS_NAME.fullmatch(text):
            raise invalid(name, raw, f"Class {raw} could not be found.")
        return text
    raise AssertionError(f"unhandled config type {ctype}")


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
    documentation: str | None
