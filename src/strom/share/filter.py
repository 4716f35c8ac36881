r"""Server-side record filters for share groups (the group config `strom.share.filter`).

A filter is a boolean expression over a record's headers, key and timestamp, in the spirit of
RocketMQ's SQL92 filters. It is parsed once, when the config is set, into a tree of small
closures; nothing is ever handed to `eval`, and the grammar has no names beyond the ones below.

Grammar (keywords are case-insensitive)::

    expr       := and_expr ( OR and_expr )*
    and_expr   := unary ( AND unary )*
    unary      := NOT unary | primary
    primary    := '(' expr ')' | TRUE | FALSE | predicate
    predicate  := field cmp literal
                | field [NOT] IN '(' literal ( ',' literal )* ')'
                | field [NOT] BETWEEN number AND number
                | field STARTS WITH string
                | field IS [NOT] NULL
    field      := KEY | TIMESTAMP | HEADER '.' name | HEADER '[' string ']'
    cmp        := '=' | '!=' | '<>' | '<' | '<=' | '>' | '>='
    literal    := string | number
    string     := '...' or "..." (backslash escapes: \\ \' \" \n \t \xHH)
    number     := -?digits[.digits][(e|E)[+|-]digits]
    name       := a letter or '_', then letters, digits, '_', '-' and '.'

Values: `key` and header values are bytes (absent: null), `timestamp` is the record's timestamp
in epoch milliseconds. A header that occurs more than once counts by its last occurrence, as
Kafka's `Headers.lastHeader`. A string literal is its UTF-8 bytes; `=` with a string compares
bytes, with a number compares numerically (the value read as a decimal number). `<`, `<=`,
`>`, `>=` and BETWEEN take numbers only. A comparison whose value is null, or is not a number
where a number is needed, is false (so `header.x != 'a'` is false when the header is absent,
while `NOT header.x = 'a'` is true): two-valued logic, no SQL unknowns.

Limits keep a hostile expression cheap: at most `MAX_LENGTH` characters, `MAX_DEPTH` levels of
nesting and `MAX_IN_ITEMS` items in one IN list. Errors are `FilterError`, whose message names
the 1-based position where the expression stops making sense.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_DEPTH",
    "MAX_IN_ITEMS",
    "MAX_LENGTH",
    "And",
    "Between",
    "Compare",
    "Const",
    "Field",
    "FilterError",
    "FilterInput",
    "InList",
    "IsNull",
    "Node",
    "Not",
    "Or",
    "RecordFilter",
    "StartsWith",
    "compile_filter",
    "parse",
]

MAX_LENGTH: Final = 8192
MAX_DEPTH: Final = 64
MAX_IN_ITEMS: Final = 1024

Number = int | float
Literal = bytes | Number


class FilterError(ValueError):
    """A filter expression that does not parse; `position` is 0-based."""

    def __init__(self, message: str, text: str, position: int) -> None:
        self.reason = message
        self.position = position
        if position >= len(text):
            where = "at the end of the expression"
        else:
            near = text[position : position + 24]
            if len(text) - position > 24:
                near += "..."
            where = f"at position {position + 1}, near {near!r}"
        super().__init__(f"{message} {where}")


# -- the tree ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """`kind` is 'key', 'timestamp' or 'header' (then `name` is the header's key)."""

    kind: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Compare:
    field: Field
    op: str  # one of = != < <= > >=
    value: Literal


@dataclass(frozen=True, slots=True)
class InList:
    field: Field
    values: tuple[Literal, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Between:
    field: Field
    low: Number
    high: Number
    negated: bool = False


@dataclass(frozen=True, slots=True)
class StartsWith:
    field: Field
    prefix: bytes


@dataclass(frozen=True, slots=True)
class IsNull:
    field: Field
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Const:
    value: bool


Node = Compare | InList | Between | StartsWith | IsNull | Not | And | Or | Const


# -- tokens --------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![A-Za-z0-9_])
  | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[().,\[\]])
  | (?P<string>['"])
    """,
    re.VERBOSE,
)
_KEYWORDS: Final = frozenset(
    {"and", "or", "not", "in", "between", "starts", "with", "is", "null", "true", "false"}
)
_NUMBER_TEXT = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_ESCAPES: Final = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, name, keyword, op, punct, string, end
    text: str
    pos: int
    value: Literal | None = None


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FilterError(f"unexpected character {text[pos]!r}", text, pos)
        kind = m.lastgroup or ""
        if kind == "ws":
            pos = m.end()
            continue
        if kind == "string":
            token, pos = _read_string(text, pos)
            tokens.append(token)
            continue
        word = m.group()
        if kind == "name" and word.lower() in _KEYWORDS:
            tokens.append(_Token("keyword", word.lower(), pos))
        elif kind == "number":
            tokens.append(_Token("number", word, pos, _number(word)))
        else:
            tokens.append(_Token(kind, word, pos))
        pos = m.end()
    tokens.append(_Token("end", "", n))
    return tokens


def _number(text: str) -> Number:
    if "." in text or "e" in text or "E" in text:
        return float(text)
    return int(text)


def _read_string(text: str, start: int) -> tuple[_Token, int]:
    quote = text[start]
    out = bytearray()
    pos = start + 1
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch == quote:
            return _Token("string", text[start : pos + 1], start, bytes(out)), pos + 1
        if ch == "\\":
            if pos + 1 >= n:
                break
            esc = text[pos + 1]
            if esc in _ESCAPES:
                out += _ESCAPES[esc].encode()
                pos += 2
                continue
            if esc == "x":
                digits = text[pos + 2 : pos + 4]
                if len(digits) == 2 and all(c in "0123456789abcdefABCDEF" for c in digits):
                    out.append(int(digits, 16))
                    pos += 4
                    continue
                raise FilterError("\\x must be followed by two hex digits", text, pos)
            raise FilterError(f"unknown escape \\{esc}", text, pos)
        out += ch.encode("utf-8", "surrogateescape")
        pos += 1
    raise FilterError("string not closed", text, start)


# -- parser --------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def error(self, message: str, token: _Token | None = None) -> FilterError:
        return FilterError(message, self.text, (token or self.tok).pos)

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def is_keyword(self, word: str) -> bool:
        return self.tok.kind == "keyword" and self.tok.text == word

    def expect_keyword(self, word: str, context: str) -> None:
        if not self.is_keyword(word):
            raise self.error(f"expected {word.upper()} {context}")
        self.advance()

    def expect_punct(self, char: str, context: str) -> None:
        if self.tok.kind != "punct" or self.tok.text != char:
            raise self.error(f"expected '{char}' {context}")
        self.advance()

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise self.error("empty filter expression")
        node = self.expr()
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self.describe(self.tok)}")
        return node

    def describe(self, tok: _Token) -> str:
        if tok.kind == "end":
            return "nothing"
        if tok.kind == "keyword":
            return tok.text.upper()
        return repr(tok.text)

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested deeper than {MAX_DEPTH} levels")

    def expr(self) -> Node:
        self.nest()
        operands = [self.and_expr()]
        while self.is_keyword("or"):
            self.advance()
            operands.append(self.and_expr())
        self.depth -= 1
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expr(self) -> Node:
        operands = [self.unary()]
        while self.is_keyword("and"):
            self.advance()
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def unary(self) -> Node:
        if self.is_keyword("not"):
            self.advance()
            self.nest()
            node = Not(self.unary())
            self.depth -= 1
            return node
        return self.primary()

    def primary(self) -> Node:
        tok = self.tok
        if tok.kind == "punct" and tok.text == "(":
            self.advance()
            node = self.expr()
            self.expect_punct(")", "to close the '(' at position " + str(tok.pos + 1))
            return node
        if tok.kind == "keyword" and tok.text in ("true", "false"):
            self.advance()
            return Const(tok.text == "true")
        if tok.kind == "end":
            raise self.error("expected a condition")
        field = self.field()
        return self.predicate(field)

    def field(self) -> Field:
        tok = self.tok
        if tok.kind != "name":
            raise self.error(
                f"expected key, timestamp or header.<name>, found {self.describe(tok)}"
            )
        lowered = tok.text.lower()
        if lowered == "key":
            self.advance()
            return Field("key")
        if lowered == "timestamp":
            self.advance()
            return Field("timestamp")
        if lowered.startswith("header.") and len(tok.text) > len("header."):
            self.advance()
            return Field("header", tok.text[len("header.") :])
        if lowered == "header":
            self.advance()
            if self.tok.kind == "punct" and self.tok.text == "[":
                self.advance()
                name = self.tok
                if name.kind != "string":
                    raise self.error("expected a quoted header name after 'header['")
                self.advance()
                self.expect_punct("]", "after the header name")
                assert isinstance(name.value, bytes)
                return Field("header", name.value.decode("utf-8", "surrogateescape"))
            raise self.error("expected '.<name>' or '[\"<name>\"]' after 'header'")
        raise self.error(f"unknown field {tok.text!r} (fields: key, timestamp, header.<name>)")

    def predicate(self, field: Field) -> Node:
        tok = self.tok
        if tok.kind == "op":
            self.advance()
            op = "!=" if tok.text == "<>" else tok.text
            value = self.literal(f"after '{tok.text}'")
            if op in ("<", "<=", ">", ">=") and isinstance(value, bytes):
                raise self.error(f"'{tok.text}' compares numbers, not strings", self.prev())
            return Compare(field, op, value)
        negated = False
        if self.is_keyword("not"):
            self.advance()
            negated = True
            if not (self.is_keyword("in") or self.is_keyword("between")):
                raise self.error("expected IN or BETWEEN after NOT")
        if self.is_keyword("in"):
            self.advance()
            self.expect_punct("(", "after IN")
            values = [self.literal("in the IN list")]
            while self.tok.kind == "punct" and self.tok.text == ",":
                self.advance()
                values.append(self.literal("after ','"))
                if len(values) > MAX_IN_ITEMS:
                    raise self.error(f"IN list longer than {MAX_IN_ITEMS} items")
            self.expect_punct(")", "or ',' in the IN list")
            return InList(field, tuple(values), negated)
        if self.is_keyword("between"):
            self.advance()
            low = self.number("after BETWEEN")
            self.expect_keyword("and", "between the bounds of BETWEEN")
            high = self.number("after AND")
            return Between(field, low, high, negated)
        if self.is_keyword("starts"):
            self.advance()
            self.expect_keyword("with", "after STARTS")
            prefix = self.literal("after STARTS WITH")
            if not isinstance(prefix, bytes):
                raise self.error("STARTS WITH takes a string", self.prev())
            return StartsWith(field, prefix)
        if self.is_keyword("is"):
            self.advance()
            is_not = False
            if self.is_keyword("not"):
                self.advance()
                is_not = True
            self.expect_keyword("null", "after IS" + (" NOT" if is_not else ""))
            return IsNull(field, is_not)
        raise self.error(
            "expected a comparison (=, !=, <, <=, >, >=, IN, BETWEEN, STARTS WITH, IS NULL)"
            f" after the field, found {self.describe(tok)}"
        )

    def prev(self) -> _Token:
        return self.tokens[self.i - 1]

    def literal(self, context: str) -> Literal:
        tok = self.tok
        if tok.kind in ("string", "number"):
            self.advance()
            assert tok.value is not None
            return tok.value
        raise self.error(f"expected a string or a number {context}, found {self.describe(tok)}")

    def number(self, context: str) -> Number:
        tok = self.tok
        if tok.kind != "number":
            raise self.error(f"expected a number {context}, found {self.describe(tok)}")
        self.advance()
        assert isinstance(tok.value, int | float)
        return tok.value


def parse(text: str) -> Node:
    """The expression's tree; raises FilterError."""
    if len(text) > MAX_LENGTH:
        raise FilterError(f"expression longer than {MAX_LENGTH} characters", text, MAX_LENGTH)
    return _Parser(text).parse()


# -- evaluation ----------------------------------------------------------------------------


@dataclass(slots=True)
class FilterInput:
    """What a filter sees of a record: headers by key (last occurrence wins)."""

    key: bytes | None
    timestamp: int
    headers: dict[str, bytes | None]

    @classmethod
    def of(
        cls, key: bytes | None, timestamp: int, headers: Sequence[tuple[str, bytes | None]]
    ) -> FilterInput:
        return cls(key, timestamp, dict(headers))


Getter = Callable[[FilterInput], bytes | int | None]
Predicate = Callable[[FilterInput], bool]


def _getter(field: Field) -> Getter:
    if field.kind == "key":
        return lambda r: r.key
    if field.kind == "timestamp":
        return lambda r: r.timestamp
    name = field.name
    return lambda r: r.headers.get(name)


def _as_number(value: bytes | int | None) -> Number | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if len(value) > 64 or _NUMBER_TEXT.fullmatch(value) is None:
        return None
    return _number(value.decode("ascii"))


def _as_bytes(value: bytes | int | None) -> bytes | None:
    if isinstance(value, int):
        return str(value).encode()
    return value


def _equals(get: Getter, literal: Literal) -> Predicate:
    if isinstance(literal, bytes):
        return lambda r: _as_bytes(get(r)) == literal

    def numeric(r: FilterInput) -> bool:
        number = _as_number(get(r))
        return number is not None and number == literal

    return numeric


_ORDER: Final[dict[str, Callable[[Number, Number], bool]]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _compile(node: Node) -> Predicate:
    if isinstance(node, Const):
        value = node.value
        return lambda r: value
    if isinstance(node, Not):
        inner = _compile(node.operand)
        return lambda r: not inner(r)
    if isinstance(node, And):
        parts = tuple(_compile(n) for n in node.operands)
        return lambda r: all(p(r) for p in parts)
    if isinstance(node, Or):
        parts = tuple(_compile(n) for n in node.operands)
        return lambda r: any(p(r) for p in parts)
    get = _getter(node.field)
    if isinstance(node, Compare):
        if node.op == "=":
            return _equals(get, node.value)
        if node.op == "!=":
            literal = node.value
            if isinstance(literal, bytes):

                def differs(r: FilterInput) -> bool:
                    value = _as_bytes(get(r))
                    return value is not None and value != literal

                return differs

            def differs_numerically(r: FilterInput) -> bool:
                number = _as_number(get(r))
                return number is not None and number != literal

            return differs_numerically
        order = _ORDER[node.op]
        bound = node.value
        assert not isinstance(bound, bytes)

        def compare(r: FilterInput) -> bool:
            number = _as_number(get(r))
            return number is not None and order(number, bound)

        return compare
    if isinstance(node, InList):
        strings = frozenset(v for v in node.values if isinstance(v, bytes))
        numbers = frozenset(v for v in node.values if not isinstance(v, bytes))
        negated = node.negated

        def member(r: FilterInput) -> bool:
            value = get(r)
            if value is None:
                return False
            found = (bool(strings) and _as_bytes(value) in strings) or (
                bool(numbers) and _as_number(value) in numbers
            )
            return found != negated

        return member
    if isinstance(node, Between):
        low, high, negated = node.low, node.high, node.negated

        def between(r: FilterInput) -> bool:
            number = _as_number(get(r))
            if number is None:
                return False
            return (low <= number <= high) != negated

        return between
    if isinstance(node, StartsWith):
        prefix = node.prefix

        def starts(r: FilterInput) -> bool:
            value = _as_bytes(get(r))
            return value is not None and value.startswith(prefix)

        return starts
    if isinstance(node, IsNull):
        negated = node.negated
        return lambda r: (get(r) is None) != negated
    raise TypeError(f"not a filter node: {node!r}")


class RecordFilter:
    """A parsed filter: `matches` decides one record."""

    __slots__ = ("_predicate", "text", "tree")

    def __init__(self, text: str) -> None:
        self.text = text
        self.tree = parse(text)
        self._predicate = _compile(self.tree)

    def matches(
        self, key: bytes | None, timestamp: int, headers: Sequence[tuple[str, bytes | None]]
    ) -> bool:
        return self._predicate(FilterInput.of(key, timestamp, headers))

    def matches_input(self, record: FilterInput) -> bool:
        return self._predicate(record)

    def __repr__(self) -> str:
        return f"RecordFilter({self.text!r})"


def compile_filter(text: str) -> RecordFilter | None:
    """The filter for a `strom.share.filter` value; None for an empty (unset) one."""
    if not text.strip():
        return None
    return RecordFilter(text)
