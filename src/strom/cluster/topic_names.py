"""Kafka's rules for topic names.

A name becomes a directory name (`<topic>-<partition>`) and a metric tag, which is where the rules
come from: ASCII letters, digits, '.', '_' and '-', at most 249 characters (255, the usual file
name limit, minus room for the partition suffix), and not "." or "..".
"""

from __future__ import annotations

import re

MAX_NAME_LENGTH = 249
INTERNAL_TOPICS: frozenset[str] = frozenset(
    {"__consumer_offsets", "__transaction_state", "__share_group_state"}
)
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")


def validate_topic_name(name: str) -> str | None:
    """Returns why `name` is not a legal topic name, or None when it is."""
    if not name:
        return "topic name must not be empty"
    if name in (".", ".."):
        return f"topic name {name!r} is not allowed"
    if len(name) > MAX_NAME_LENGTH:
        return f"topic name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
    if not _LEGAL.fullmatch(name):
        return (
            f"topic name {name!r} contains characters other than ASCII letters, digits, "
            "'.', '_' and '-'"
        )
    return None


def is_internal(name: str) -> bool:
    return name in INTERNAL_TOPICS


def has_collision_chars(name: str) -> bool:
    """Metric names turn '.' into '_', so names that contain either may collide."""
    return "." in name or "_" in name


def unify_collision_chars(name: str) -> str:
    return name.replace(".", "_")


def collides_with(name: str, existing: str) -> bool:
    """Whether two different names would map to the same metric name (Kafka warns about this)."""
    return name != existing and unify_collision_chars(name) == unify_collision_chars(existing)
