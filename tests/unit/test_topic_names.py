"""Kafka's topic name rules."""

from __future__ import annotations

import pytest

from strom.cluster.topic_names import (
    INTERNAL_TOPICS,
    MAX_NAME_LENGTH,
    collides_with,
    has_collision_chars,
    is_internal,
    validate_topic_name,
)


@pytest.mark.parametrize(
    "name", ["a", "topic-1", "my_topic.v2", "A.B-C_d", "x" * MAX_NAME_LENGTH, "__consumer_offsets"]
)
def test_legal_names(name: str) -> None:
    assert validate_topic_name(name) is None


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        (".", "not allowed"),
        ("..", "not allowed"),
        ("x" * (MAX_NAME_LENGTH + 1), "250 characters"),
        ("has space", "characters other than"),
        ("slash/name", "characters other than"),
        ("caf\u00e9", "characters other than"),
        ("tab\t", "characters other than"),
        ("new\nline", "characters other than"),
    ],
)
def test_illegal_names(name: str, fragment: str) -> None:
    problem = validate_topic_name(name)
    assert problem is not None and fragment in problem


def test_internal_topics() -> None:
    assert {"__consumer_offsets", "__transaction_state", "__share_group_state"} == INTERNAL_TOPICS
    assert is_internal("__consumer_offsets") and not is_internal("orders")


def test_collisions() -> None:
    assert has_collision_chars("a.b") and has_collision_chars("a_b")
    assert not has_collision_chars("ab")
    assert collides_with("a.b", "a_b")
    assert not collides_with("a.b", "a.b")
    assert not collides_with("a.b", "a-b")
