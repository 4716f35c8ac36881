"""Random filter expressions: rendered as text with random spelling, parsed back to the same
tree, and evaluated by the compiled filter exactly as a plain reference evaluator does."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from strom.share.filter import (
    And,
    Between,
    Compare,
    Const,
    Field,
    FilterError,
    InList,
    IsNull,
    Node,
    Not,
    Or,
    RecordFilter,
    StartsWith,
    parse,
)

pytestmark = pytest.mark.property

HEADER_NAMES = ["a", "b", "trace-id", "x.y", "two words", "ü"]
VALUES = [b"", b"a", b"ab", b"abc", b"5", b"-3", b"2.5", b"10", b"1e2", b"x y", b"\x00\xff"]

# -- generating trees --------------------------------------------------------------------

fields = st.one_of(
    st.just(Field("key")),
    st.just(Field("timestamp")),
    st.sampled_from(HEADER_NAMES).map(lambda n: Field("header", n)),
)
numbers = st.one_of(st.integers(-20, 20), st.sampled_from([2.5, -0.5, 100.0, 1e2]))
strings = st.one_of(st.sampled_from(VALUES), st.binary(max_size=4))
literals = st.one_of(numbers, strings)


def leaves() -> st.SearchStrategy[Node]:
    return st.one_of(
        st.builds(Compare, fields, st.sampled_from(["=", "!="]), literals),
        st.builds(Compare, fields, st.sampled_from(["<", "<=", ">", ">="]), numbers),
        st.builds(
            InList, fields, st.lists(literals, min_size=1, max_size=4).map(tuple), st.booleans()
        ),
        st.builds(Between, fields, numbers, numbers, st.booleans()),
        st.builds(StartsWith, fields, strings),
        st.builds(IsNull, fields, st.booleans()),
        st.builds(Const, st.booleans()),
    )


trees: st.SearchStrategy[Node] = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=12,
)

# -- rendering ---------------------------------------------------------------------------


def kw(draw: st.DrawFn, word: str) -> str:
    return draw(st.sampled_from([word.upper(), word.lower(), word.capitalize()]))


def ws(draw: st.DrawFn) -> str:
    return draw(st.sampled_from([" ", "  ", "\t", "\n "]))


def render_string(draw: st.DrawFn, value: bytes) -> str:
    quote = draw(st.sampled_from(["'", '"']))
    out = []
    for b in value:
        ch = chr(b)
        if b < 0x20 or b >= 0x7F:
            out.append(f"\\x{b:02x}")
        elif ch in ("\\", "'", '"'):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return quote + "".join(out) + quote


def render_literal(draw: st.DrawFn, value: bytes | int | float) -> str:
    if isinstance(value, bytes):
        return render_string(draw, value)
    return repr(value)


def render_field(draw: st.DrawFn, field: Field) -> str:
    if field.kind != "header":
        return kw(draw, field.kind)
    simple = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*", field.name)
    if simple and draw(st.booleans()):
        return kw(draw, "header") + "." + field.name
    name = field.name.encode()
    return kw(draw, "header") + "[" + render_string(draw, name) + "]"


def render(draw: st.DrawFn, node: Node) -> str:
    s = lambda: ws(draw)  # noqa: E731
    if isinstance(node, Const):
        return kw(draw, "true" if node.value else "false")
    if isinstance(node, Not):
        return kw(draw, "not") + s() + "(" + render(draw, node.operand) + ")"
    if isinstance(node, And | Or):
        word = "and" if isinstance(node, And) else "or"
        parts = ["(" + render(draw, n) + ")" for n in node.operands]
        return (s() + kw(draw, word) + s()).join(parts)
    f = render_field(draw, node.field)
    if isinstance(node, Compare):
        op = node.op
        if op == "!=":
            op = draw(st.sampled_from(["!=", "<>"]))
        return f + draw(st.sampled_from(["", " "])) + op + s() + render_literal(draw, node.value)
    if isinstance(node, InList):
        items = ("," + s()).join(render_literal(draw, v) for v in node.values)
        neg = kw(draw, "not") + s() if node.negated else ""
        return f + s() + neg + kw(draw, "in") + s() + "(" + items + ")"
    if isinstance(node, Between):
        neg = kw(draw, "not") + s() if node.negated else ""
        return (
            f
            + s()
            + neg
            + kw(draw, "between")
            + s()
            + repr(node.low)
            + s()
            + kw(draw, "and")
            + s()
            + repr(node.high)
        )
    if isinstance(node, StartsWith):
        return (
            f
            + s()
            + kw(draw, "starts")
            + s()
            + kw(draw, "with")
            + s()
            + render_string(draw, node.prefix)
        )
    assert isinstance(node, IsNull)
    return (
        f
        + s()
        + kw(draw, "is")
        + s()
        + (kw(draw, "not") + s() if node.negated else "")
        + kw(draw, "null")
    )


@st.composite
def expressions(draw: st.DrawFn) -> tuple[Node, str]:
    tree = draw(trees)
    return tree, render(draw, tree)


# -- the reference evaluator ---------------------------------------------------------------

NUMBER = re.compile(rb"-?\d+(\.\d+)?([eE][+-]?\d+)?")


def ref_value(field: Field, key: bytes | None, ts: int, headers: list[tuple[str, bytes | None]]):
    if field.kind == "key":
        return key
    if field.kind == "timestamp":
        return ts
    found = None
    for name, value in headers:  # the last one wins
        if name == field.name:
            found = value
    return found


def ref_number(value: bytes | int | None) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if len(value) > 64 or not NUMBER.fullmatch(value):
        return None
    text = value.decode()
    return float(text) if re.search(r"[.eE]", text) else int(text)


def ref_bytes(value: bytes | int | None) -> bytes | None:
    return str(value).encode() if isinstance(value, int) else value


def ref_eq(value: bytes | int | None, literal: bytes | int | float) -> bool | None:
    """None: the value cannot be compared (null, or not a number)."""
    if isinstance(literal, bytes):
        b = ref_bytes(value)
        return None if b is None else b == literal
    n = ref_number(value)
    return None if n is None else n == literal


def evaluate(
    node: Node, key: bytes | None, ts: int, headers: list[tuple[str, bytes | None]]
) -> bool:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Not):
        return not evaluate(node.operand, key, ts, headers)
    if isinstance(node, And):
        return all(evaluate(n, key, ts, headers) for n in node.operands)
    if isinstance(node, Or):
        return any(evaluate(n, key, ts, headers) for n in node.operands)
    value = ref_value(node.field, key, ts, headers)
    if isinstance(node, IsNull):
        return (value is None) != node.negated
    if isinstance(node, Compare):
        if node.op in ("=", "!="):
            eq = ref_eq(value, node.value)
            if eq is None:
                return False
            return eq if node.op == "=" else not eq
        n = ref_number(value)
        if n is None:
            return False
        lit = node.value
        assert not isinstance(lit, bytes)
        return {"<": n < lit, "<=": n <= lit, ">": n > lit, ">=": n >= lit}[node.op]
    if isinstance(node, InList):
        if value is None:
            return False
        hit = any(ref_eq(value, lit) for lit in node.values)
        return hit != node.negated
    if isinstance(node, Between):
        n = ref_number(value)
        if n is None:
            return False
        return (node.low <= n <= node.high) != node.negated
    assert isinstance(node, StartsWith)
    b = ref_bytes(value)
    return b is not None and b.startswith(node.prefix)


records = st.tuples(
    st.one_of(st.none(), st.sampled_from(VALUES), st.binary(max_size=3)),
    st.integers(-20, 20),
    st.lists(
        st.tuples(
            st.sampled_from(HEADER_NAMES),
            st.one_of(st.none(), st.sampled_from(VALUES), st.binary(max_size=3)),
        ),
        max_size=6,
    ),
)


@settings(max_examples=400, deadline=None)
@given(expressions(), st.lists(records, min_size=1, max_size=8))
def test_compiled_filter_agrees_with_reference(
    expression: tuple[Node, str],
    sample: list[tuple[bytes | None, int, list[tuple[str, bytes | None]]]],
) -> None:
    tree, text = expression
    compiled = RecordFilter(text)
    assert compiled.tree == tree, text
    for key, ts, headers in sample:
        assert compiled.matches(key, ts, headers) == evaluate(tree, key, ts, headers), (
            text,
            key,
            ts,
            headers,
        )


@settings(max_examples=600, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("keyhader.tims=<>!'\"()[],INOTANDORBW 0123456789-\\x")),
        max_size=60,
    )
)
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        f = RecordFilter(text)
    except FilterError as exc:
        assert 0 <= exc.position <= len(text)
        assert str(exc)
        return
    f.matches(b"k", 1, [("a", b"1")])


@settings(max_examples=200, deadline=None)
@given(expressions(), st.integers(0, 200))
def test_a_cut_expression_fails_at_a_position_inside_it(
    expression: tuple[Node, str], cut: int
) -> None:
    _, text = expression
    assume(0 < cut < len(text))
    prefix = text[:cut]
    try:
        parse(prefix)
    except FilterError as exc:
        assert 0 <= exc.position <= len(prefix)
