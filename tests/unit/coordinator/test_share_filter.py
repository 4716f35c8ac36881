"""strom.share.filter expressions: what they accept, what they mean, how they refuse."""

from __future__ import annotations

import pytest

from strom.share.filter import (
    MAX_DEPTH,
    MAX_IN_ITEMS,
    MAX_LENGTH,
    FilterError,
    RecordFilter,
    compile_filter,
)

HEADERS = [("type", b"order"), ("region", b"eu-west"), ("amount", b"250"), ("type", b"refund")]


def match(expr: str, key: bytes | None = b"k-17", ts: int = 1_700_000_000_000) -> bool:
    return RecordFilter(expr).matches(key, ts, HEADERS)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("header.type = 'refund'", True),  # the last occurrence counts
        ("header.type = 'order'", False),
        ("header.region STARTS WITH 'eu-'", True),
        ('header.region starts with "us-"', False),
        ("header.amount > 100 AND header.amount <= 250", True),
        ("header.amount = 250.0", True),
        ("header.amount = '250.0'", False),  # a string compares bytes
        ("header.amount BETWEEN 1 AND 249", False),
        ("header.amount NOT BETWEEN 1 AND 249", True),
        ("header.region IN ('eu-west', 'eu-north')", True),
        ("header.region NOT IN ('eu-west')", False),
        ("header.amount IN (1, 250)", True),
        ("header.missing = 'x'", False),
        ("header.missing != 'x'", False),
        ("NOT header.missing = 'x'", True),
        ("header.missing IS NULL", True),
        ("header.region IS NOT NULL", True),
        ("header.region > 5", False),  # not a number: false, not an error
        ("key = 'k-17'", True),
        ("key STARTS WITH 'k-' AND NOT key IN ('k-1', 'k-2')", True),
        ("timestamp >= 1700000000000", True),
        ("timestamp = '1700000000000'", True),
        ("header['region'] = 'eu-west'", True),
        ("TRUE", True),
        ("false OR (header.type = 'refund' and key <> 'other')", True),
        ("header.a = 1 OR header.b = 2 OR header.region = 'eu-west'", True),
        ("NOT NOT header.region = 'eu-west'", True),
        ("header.type = 'x' OR header.region = 'eu-west' AND header.amount < 0", False),
    ],
)
def test_semantics(expr: str, expected: bool) -> None:
    assert match(expr) is expected


def test_null_key_and_binary_values() -> None:
    f = RecordFilter("key IS NULL AND header.bin = '\\x00\\xffz'")
    assert f.matches(None, 0, [("bin", b"\x00\xffz")])
    assert not f.matches(b"", 0, [("bin", b"\x00\xffz")])
    assert not RecordFilter("header.v = ''").matches(None, 0, [("v", None)])
    assert RecordFilter("header.v IS NULL").matches(None, 0, [("v", None)])


def test_unicode_strings_are_utf8() -> None:
    assert RecordFilter("header.city = 'Zürich'").matches(None, 0, [("city", "Zürich".encode())])
    assert RecordFilter("header[\"ünï\"] = 'x'").matches(None, 0, [("ünï", b"x")])


def test_empty_filter_is_no_filter() -> None:
    assert compile_filter("") is None
    assert compile_filter("   ") is None
    assert compile_filter("key = 'a'") is not None


@pytest.mark.parametrize(
    ("expr", "message", "position"),
    [
        ("header.type = ", "expected a string or a number after '='", None),
        ("header.type == 'a'", "expected a string or a number after '='", 14),
        ("header.x IN ('a' 'b')", "expected ')' or ',' in the IN list", 18),
        ("foo = 1", "unknown field 'foo'", 1),
        ("header.a < 'x'", "'<' compares numbers, not strings", 12),
        ("header.a = 'x", "string not closed", 12),
        ("(header.a = 1", "expected ')' to close the '(' at position 1", None),
        ("header.a = 1 AND", "expected a condition", None),
        ("header.a = 1 header.b = 2", "unexpected 'header.b'", 14),
        ("header.a LIKE 'x%'", "expected a comparison", 10),
        ("header.a NOT 'x'", "expected IN or BETWEEN after NOT", 14),
        ("header.a STARTS WITH 5", "STARTS WITH takes a string", 22),
        ("header.a BETWEEN 'a' AND 'b'", "expected a number after BETWEEN", 18),
        ("header.a BETWEEN 1 2", "expected AND between the bounds of BETWEEN", 20),
        ("header.a IS 5", "expected NULL after IS", 13),
        ("header.a = 'a\\q'", "unknown escape \\q", 14),
        ("header.a = '\\x4'", "\\x must be followed by two hex digits", 13),
        ("header.a = 1 ; drop", "unexpected character ';'", 14),
        ("header = 1", "expected '.<name>' or '[\"<name>\"]' after 'header'", 8),
        ("header[1] = 1", "expected a quoted header name", 8),
        ("", "empty filter expression", None),
        ("__import__('os')", "unknown field '__import__'", 1),
    ],
)
def test_errors_say_where(expr: str, message: str, position: int | None) -> None:
    with pytest.raises(FilterError) as caught:
        RecordFilter(expr)
    text = str(caught.value)
    assert message in text
    if position is None:
        assert "at the end of the expression" in text or "at position" in text
    else:
        assert caught.value.position == position - 1
        assert f"at position {position}," in text


def test_limits() -> None:
    deep = "(" * (MAX_DEPTH + 1) + "key = 'a'" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(FilterError, match="nested deeper"):
        RecordFilter(deep)
    nots = "NOT " * (MAX_DEPTH + 1) + "key = 'a'"
    with pytest.raises(FilterError, match="nested deeper"):
        RecordFilter(nots)
    ok = "(" * (MAX_DEPTH - 1) + "key = 'a'" + ")" * (MAX_DEPTH - 1)
    assert RecordFilter(ok).matches(b"a", 0, [])
    items = ", ".join(str(i) for i in range(MAX_IN_ITEMS + 1))
    with pytest.raises(FilterError, match="IN list longer"):
        RecordFilter(f"header.n IN ({items})")
    with pytest.raises(FilterError, match="longer than"):
        RecordFilter("key = '" + "a" * MAX_LENGTH + "'")
