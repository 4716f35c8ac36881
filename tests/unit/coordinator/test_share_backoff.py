"""The retry backoff schedule of share groups."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strom.coordinator.share.backoff import RetryBackoff


def test_exponential_then_capped() -> None:
    b = RetryBackoff(100, 1000)
    assert [b.delay_ms(n) for n in range(0, 8)] == [0, 100, 200, 400, 800, 1000, 1000, 1000]
    assert b.available_at(5_000, 3) == 5_400


def test_off_by_default_and_with_zero() -> None:
    assert not RetryBackoff().enabled
    assert RetryBackoff().delay_ms(4) == 0
    assert RetryBackoff(0, 1000).delay_ms(4) == 0
    assert RetryBackoff(100, 0).delay_ms(4) == 0


def test_cap_below_base_caps() -> None:
    assert RetryBackoff(500, 200).delay_ms(1) == 200


def test_huge_delivery_counts_stay_at_the_cap() -> None:
    assert RetryBackoff(1, 86_400_000).delay_ms(32_767) == 86_400_000


def test_negative_refused() -> None:
    with pytest.raises(ValueError):
        RetryBackoff(-1, 10)


@given(st.integers(1, 10_000), st.integers(1, 10_000_000), st.integers(1, 40))
def test_never_shrinks_never_passes_the_cap(base: int, cap: int, n: int) -> None:
    b = RetryBackoff(base, cap)
    assert b.delay_ms(n) <= b.delay_ms(n + 1) <= cap
    assert b.delay_ms(n) == min(base * 2 ** (n - 1), cap)
