"""Server-side assignors (uniform, range): properties over random groups."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.coordinator.group.assignors import (
    Assignment,
    AssignorError,
    MemberSpec,
    RangeAssignor,
    UniformAssignor,
)

TOPICS = [uuid.UUID(int=i + 1) for i in range(4)]


@st.composite
def groups(
    draw: st.DrawFn, homogeneous: bool
) -> tuple[dict[str, MemberSpec], dict[uuid.UUID, int]]:
    n_topics = draw(st.integers(1, 4))
    partitions = {t: draw(st.integers(0, 24)) for t in TOPICS[:n_topics]}
    ids = draw(
        st.lists(st.text("abcdefgh", min_size=1, max_size=4), min_size=1, max_size=9, unique=True)
    )
    members: dict[str, MemberSpec] = {}
    for mid in ids:
        if homogeneous:
            subscribed = frozenset(partitions)
        else:
            subscribed = frozenset(draw(st.sets(st.sampled_from(sorted(partitions)), min_size=1)))
        instance = draw(st.none() | st.just(f"i-{mid}"))
        members[mid] = MemberSpec(mid, subscribed, instance)
    return members, partitions


def check_valid(
    members: dict[str, MemberSpec], partitions: dict[uuid.UUID, int], result: dict[str, Assignment]
) -> None:
    owners: Counter[tuple[uuid.UUID, int]] = Counter()
    for mid, assignment in result.items():
        for t, ps in assignment.items():
            assert t in members[mid].subscribed
            for p in ps:
                owners[(t, p)] += 1
    wanted = {
        (t, p)
        for t in set().union(*(m.subscribed for m in members.values()))
        for p in range(partitions[t])
    }
    assert set(owners) == wanted
    assert all(count == 1 for count in owners.values())


def loads(result: dict[str, Assignment], members: dict[str, MemberSpec]) -> list[int]:
    return [sum(len(ps) for ps in result.get(m, {}).values()) for m in members]


def with_current(
    members: dict[str, MemberSpec], result: dict[str, Assignment]
) -> dict[str, MemberSpec]:
    return {
        mid: MemberSpec(mid, spec.subscribed, spec.instance_id, result.get(mid, {}))
        for mid, spec in members.items()
    }


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(groups(homogeneous=True))
def test_uniform_homogeneous_balanced_and_stable(
    group: tuple[dict[str, MemberSpec], dict[uuid.UUID, int]],
) -> None:
    members, partitions = group
    result = UniformAssignor().assign(members, partitions)
    check_valid(members, partitions, result)
    counts = loads(result, members)
    assert max(counts) - min(counts) <= 1
    # Unchanged membership and topics: the same assignment again.
    assert UniformAssignor().assign(with_current(members, result), partitions) == result


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(groups(homogeneous=True), st.data())
def test_uniform_sticky_when_a_member_leaves(
    group: tuple[dict[str, MemberSpec], dict[uuid.UUID, int]], data: st.DataObject
) -> None:
    members, partitions = group
    first = UniformAssignor().assign(members, partitions)
    if len(members) < 2:
        return
    leaving = data.draw(st.sampled_from(sorted(members)))
    rest = {m: s for m, s in with_current(members, first).items() if m != leaving}
    second = UniformAssignor().assign(rest, partitions)
    check_valid(rest, partitions, second)
    counts = loads(second, rest)
    assert max(counts) - min(counts) <= 1
    # Survivors keep what they had, up to their new (lower) quota.
    floor = sum(partitions.values()) // len(rest)
    for mid in rest:
        kept = sum(len(first[mid].get(t, frozenset()) & ps) for t, ps in second[mid].items())
        had = loads(first, {mid: members[mid]})[0]
        assert kept >= min(had, floor)


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(groups(homogeneous=False))
def test_uniform_heterogeneous_valid_and_stable(
    group: tuple[dict[str, MemberSpec], dict[uuid.UUID, int]],
) -> None:
    members, partitions = group
    result = UniformAssignor().assign(members, partitions)
    check_valid(members, partitions, result)
    assert UniformAssignor().assign(with_current(members, result), partitions) == result


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(groups(homogeneous=False))
def test_range_valid_balanced_per_topic_deterministic(
    group: tuple[dict[str, MemberSpec], dict[uuid.UUID, int]],
) -> None:
    members, partitions = group
    result = RangeAssignor().assign(members, partitions)
    check_valid(members, partitions, result)
    for t, n in partitions.items():
        subscribers = [m for m, s in members.items() if t in s.subscribed]
        if not subscribers:
            continue
        counts = [len(result[m].get(t, frozenset())) for m in subscribers]
        assert max(counts) - min(counts) <= 1 and sum(counts) == n
        for m in subscribers:  # ranges are contiguous
            ps = sorted(result[m].get(t, frozenset()))
            assert ps == list(range(ps[0], ps[0] + len(ps))) if ps else True
    assert RangeAssignor().assign(with_current(members, result), partitions) == result


def test_range_orders_static_members_first() -> None:
    t = TOPICS[0]
    members = {
        "a": MemberSpec("a", frozenset({t})),
        "b": MemberSpec("b", frozenset({t}), "z-instance"),
    }
    result = RangeAssignor().assign(members, {t: 3})
    assert result["b"] == {t: frozenset({0, 1})} and result["a"] == {t: frozenset({2})}


def test_unknown_topic_is_an_error() -> None:
    members = {"a": MemberSpec("a", frozenset({TOPICS[0]}))}
    with pytest.raises(AssignorError):
        UniformAssignor().assign(members, {})
    with pytest.raises(AssignorError):
        RangeAssignor().assign(members, {})
