"""Validators of parsed configuration values, with Kafka's rules and messages.

Each validator raises ConfigError with the text Kafka's validator of the same rule gives, and
`describe()` is Kafka's "Valid Values" text for the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from strom.config.definitions import ConfigError, ConfigValue, Validator, invalid, java_str


def _number(x: float) -> str:
    # Bounds print as Java prints the Number they were given: 1 for an int, 0.5 for a double.
    return java_str(x)


@dataclass(frozen=True, slots=True)
class Range(Validator):
    low: float | None = None
    high: float | None = None

    def validate(self, name: str, value: ConfigValue) -> None:
        if value is None:
            raise invalid(name, None, "Value must be non-null")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        if self.low is not None and value < self.low:
            raise invalid(name, value, f"Value must be at least {_number(self.low)}")
        if self.high is not None and value > self.high:
            raise invalid(name, value, f"Value must be no more than {_number(self.high)}")

    def describe(self) -> str:
        low = "" if self.low is None else _number(self.low)
        if self.high is None:
            return f"[{low},...]" if low else "[...]"
        return f"[{low},...,{_number(self.high)}]" if low else f"[...,{_number(self.high)}]"


def at_least(low: float) -> Range:
    return Range(low=low)


def between(low: float, high: float) -> Range:
    return Range(low=low, high=high)


@dataclass(frozen=True, slots=True)
class OneOf(Validator):
    """A string from a fixed set (Kafka's ValidString, or CaseInsensitiveValidString)."""

    choices: tuple[str, ...]
    case_sensitive: bool = True

    def validate(self, name: str, value: ConfigValue) -> None:
        text = str(value)
        if self.case_sensitive:
            if text in self.choices:
                return
            raise invalid(name, value, "String must be one of: " + ", ".join(self.choices))
        if text.upper() in (c.upper() for c in self.choices):
            return
        raise invalid(
            name, value, "String must be one of (case insensitive): " + ", ".join(self.choices)
        )

    def describe(self) -> str:
        listed = "[" + ", ".join(self.choices) + "]"
        return listed if self.case_sensitive else f"(case insensitive) {listed}"


@dataclass(frozen=True, slots=True)
class ListOf(Validator):
    """Every element of a list from a fixed set (Kafka's ValidList)."""

    choices: tuple[str, ...]

    def validate(self, name: str, value: ConfigValue) -> None:
        for item in value if isinstance(value, list) else []:
            OneOf(self.choices).validate(name, item)

    def describe(self) -> str:
        return "[" + ", ".join(self.choices) + "]"


@dataclass(frozen=True, slots=True)
class NonEmptyString(Validator):
    def validate(self, name: str, value: ConfigValue) -> None:
        if value == "":
            raise invalid(name, value, "String must be non-empty")

    def describe(self) -> str:
        return "non-empty string"


@dataclass(frozen=True, slots=True)
class NonNullString(Validator):
    # A value from a file or the wire is never null; the rule only shows in the documentation.
    def validate(self, name: str, value: ConfigValue) -> None:
        if value is None:
            raise invalid(name, "null", "entry must be non null")

    def describe(self) -> str:
        return "non-null string"


@dataclass(frozen=True, slots=True)
class GzipLevel(Validator):
    def validate(self, name: str, value: ConfigValue) -> None:
        if isinstance(value, int) and (value == -1 or 1 <= value <= 9):
            return
        raise invalid(name, value, "Value must be between 1 and 9 or equal to -1")

    def describe(self) -> str:
        return "[1,...,9] or -1"


@dataclass(frozen=True, slots=True)
class PoolSizeOrFallback(Validator):
    """-1 (take another key's value) or a positive count."""

    fallback_text: str

    def validate(self, name: str, value: ConfigValue) -> None:
        if isinstance(value, int) and (value == -1 or value > 0):
            return
        raise invalid(name, value, "Value can be -1 or greater than 0")

    def describe(self) -> str:
        return self.fallback_text


@dataclass(frozen=True, slots=True)
class ThrottledReplicas(Validator):
    """`*` or partition:broker pairs (leader/follower.replication.throttled.replicas)."""

    def validate(self, name: str, value: ConfigValue) -> None:
        items = [item.strip() for item in value] if isinstance(value, list) else []
        if all(re.fullmatch(r"([0-9]+:[0-9]+)?", item) for item in items):
            return
        if "".join(items) == "*":
            return
        raise invalid(
            name,
            value,
            f"{name} must be the literal '*' or a list of replicas in the following format: "
            "[partitionId]:[brokerId],[partitionId]:[brokerId],...",
        )

    def describe(self) -> str:
        return "[partitionId]:[brokerId],[partitionId]:[brokerId],..."


# Kafka 3.9's MetadataVersion values (inter.broker.protocol.version, message formats): each
# "release-IVn" names one; a release alone ("2.8", "0.10.2") names its last production version.
METADATA_VERSIONS: tuple[str, ...] = tuple(
    """
    0.8.0 0.8.1 0.8.2 0.9.0 0.10.0-IV0 0.10.0-IV1 0.10.1-IV0 0.10.1-IV1 0.10.1-IV2 0.10.2-IV0
    0.11.0-IV0 0.11.0-IV1 0.11.0-IV2 1.0-IV0 1.1-IV0 2.0-IV0 2.0-IV1 2.1-IV0 2.1-IV1 2.1-IV2
    2.2-IV0 2.2-IV1 2.3-IV0 2.3-IV1 2.4-IV0 2.4-IV1 2.5-IV0 2.6-IV0 2.7-IV0 2.7-IV1 2.7-IV2
    2.8-IV0 2.8-IV1 3.0-IV0 3.0-IV1 3.1-IV0 3.2-IV0 3.3-IV0 3.3-IV1 3.3-IV2 3.3-IV3 3.4-IV0
    3.5-IV0 3.5-IV1 3.5-IV2 3.6-IV0 3.6-IV1 3.6-IV2 3.7-IV0 3.7-IV1 3.7-IV2 3.7-IV3 3.7-IV4
    3.8-IV0 3.9-IV0 4.0-IV0 4.0-IV1
    """.split()  # noqa: SIM905 - a word list is easier to scan than quoted strings
)
LATEST_PRODUCTION_METADATA_VERSION = "3.9-IV0"
_PRODUCTION = METADATA_VERSIONS[: METADATA_VERSIONS.index(LATEST_PRODUCTION_METADATA_VERSION) + 1]
_METADATA_KEYS = frozenset(METADATA_VERSIONS) | {v.split("-")[0] for v in _PRODUCTION}


def metadata_version_known(text: str) -> bool:
    # Kafka looks up the first three dotted parts of a 0.x version, two otherwise.
    parts = text.split(".")
    keep = 3 if text.startswith("0.") else 2
    key = text if keep >= len(parts) else ".".join(parts[:keep])
    return key in _METADATA_KEYS


@dataclass(frozen=True, slots=True)
class MetadataVersion(Validator):
    def validate(self, name: str, value: ConfigValue) -> None:
        text = java_str(value)
        if not metadata_version_known(text):
            raise invalid(name, text, f"Version {text} is not a valid version")

    def describe(self) -> str:
        return "[" + ", ".join(METADATA_VERSIONS) + "]"


_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]*\]|[^:\[\]]+):(?P<port>[0-9]+)")


@dataclass(frozen=True, slots=True)
class QuorumVoters(Validator):
    """controller.quorum.voters: `{id}@{host}:{port}` entries (KRaft; Strom only checks them)."""

    def validate(self, name: str, value: ConfigValue) -> None:
        form = "Each entry should be in the form `{id}@{host}:{port}`."
        for entry in value if isinstance(value, list) else []:
            node, at, address = entry.partition("@")
            if not at:
                raise ConfigError(f"Invalid configuration value for {name}. {form}", name, entry)
            if not re.fullmatch(r"[+-]?[0-9]+", node.strip()):
                raise ConfigError(f"Failed to parse voter ID as an integer from {node}", name)
            m = _HOST_PORT.fullmatch(address)
            if m is None or ":" not in address:
                raise ConfigError(
                    f"Failed to parse host name from entry {entry} for the configuration {name}. "
                    + form,
                    name,
                    entry,
                )

    def describe(self) -> str:
        return "non-empty list"


@dataclass(frozen=True, slots=True)
class BootstrapServers(Validator):
    """controller.quorum.bootstrap.servers: `{host}:{port}` entries."""

    def validate(self, name: str, value: ConfigValue) -> None:
        for entry in value if isinstance(value, list) else []:
            if _HOST_PORT.fullmatch(entry) is None:
                raise ConfigError(
                    f"Failed to parse host name from {entry} for the configuration {name}. Each "
                    'entry should be in the form "{host}:{port}"',
                    name,
                    entry,
                )

    def describe(self) -> str:
        return "non-empty list"
