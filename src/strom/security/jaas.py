"""JAAS login configurations as Kafka reads them from `sasl.jaas.config`.

    org.apache.kafka.common.security.plain.PlainLoginModule required
        username="admin" password="admin-secret" user_alice="alice-secret";

One or more entries, each a login module class, a control flag (required, requisite,
sufficient, optional) and `key=value` options, ended by `;`. Values are quoted strings or bare
words (letters, digits after the first character, `-`, `_`, `$`, `.`); a bare number is not a
value, as in Kafka. `//` and `/* */` comments are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FLAGS = ("REQUIRED", "REQUISITE", "SUFFICIENT", "OPTIONAL")


class JaasError(ValueError):
    """A JAAS configuration Kafka would refuse; the message says why."""


@dataclass(frozen=True)
class JaasEntry:
    login_module: str
    flag: str
    options: dict[str, str] = field(default_factory=dict)


def _is_word_start(ch: str) -> bool:
    return ch.isalpha() or ch in "-_$" or ord(ch) >= 160


def _is_word_part(ch: str) -> bool:
    return _is_word_start(ch) or ch.isdigit() or ch == "."


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "a": "\a", "v": "\v"}


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text): kind is word, string, number or the character itself (=, ;)."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise JaasError("unterminated comment in JAAS config")
            i = end + 2
        elif ch in "\"'":
            quote, i = ch, i + 1
            value: list[str] = []
            while i < n and text[i] != quote and text[i] != "\n":
                if text[i] == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    value.append(_ESCAPES.get(nxt, nxt))
                    i += 2
                else:
                    value.append(text[i])
                    i += 1
            if i >= n or text[i] != quote:
                raise JaasError("unterminated quoted value in JAAS config")
            i += 1
            out.append(("string", "".join(value)))
        elif _is_word_start(ch):
            start = i
            while i < n and _is_word_part(text[i]):
                i += 1
            out.append(("word", text[start:i]))
        elif ch.isdigit() or ch == ".":
            start = i
            while i < n and (text[i].isdigit() or text[i] == "."):
                i += 1
            out.append(("number", text[start:i]))
        else:
            out.append((ch, ch))
            i += 1
    return out


def parse_jaas(text: str) -> list[JaasEntry]:
    tokens = _tokens(text)
    entries: list[JaasEntry] = []
    i = 0
    while i < len(tokens):
        kind, module = tokens[i]
        if kind != "word":
            raise JaasError(f"expected a login module class in JAAS config, found {module!r}")
        i += 1
        if i >= len(tokens):
            raise JaasError("Login module control flag not specified in JAAS config")
        flag = tokens[i][1].upper()
        if tokens[i][0] != "word" or flag not in FLAGS:
            raise JaasError(f"Invalid login module control flag {tokens[i][1]!r} in JAAS config")
        i += 1
        options: dict[str, str] = {}
        while i < len(tokens) and tokens[i][0] != ";":
            key = tokens[i][1]
            if (
                tokens[i][0] not in ("word", "string")
                or i + 2 >= len(tokens)
                or tokens[i + 1][0] != "="
                or tokens[i + 2][0] not in ("word", "string")
            ):
                raise JaasError(f"Value not specified for key {key!r} in JAAS config")
            options[key] = tokens[i + 2][1]
            i += 3
        if i >= len(tokens):
            raise JaasError("JAAS config entry not terminated by semi-colon")
        i += 1  # the ;
        entries.append(JaasEntry(module, flag, options))
    if not entries:
        raise JaasError("Login module not specified in JAAS config")
    return entries
