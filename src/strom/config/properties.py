"""Reading and writing `.properties` files with the rules of `java.util.Properties`.

Users copy `server.properties` from Kafka installations, so the same syntax must mean the same
thing here: `key=value`, `key: value` and `key value`; `#` and `!` comments; a backslash at the end
of a line joins the next line (whose leading blanks are dropped); `\\t \\n \\r \\f \\uXXXX` escapes;
any other escaped character stands for itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from strom.config.definitions import ConfigError

_BLANK = " \t\f"
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _logical_lines(text: str) -> list[str]:
    """Joins continued lines; comment and blank lines are dropped."""
    natural = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    pending: str | None = None
    for line in natural:
        stripped = line.lstrip(_BLANK)
        # Only a line that starts a logical line can be a comment; a continued line cannot.
        if pending is None and (not stripped or stripped[0] in "#!"):
            continue
        line = stripped
        # An odd number of trailing backslashes escapes the line break; an even number is a
        # run of escaped backslashes that belongs to the value.
        trailing = len(line) - len(line.rstrip("\\"))
        continued = trailing % 2 == 1
        if continued:
            line = line[:-1]
        pending = line if pending is None else pending + line
        if not continued:
            out.append(pending)
            pending = None
    if pending is not None:  # a backslash at the end of the file continues into nothing
        out.append(pending)
    return out


def _unescape(text: str, where: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        i += 1
        if i >= len(text):
            break
        ch = text[i]
        if ch == "u":
            digits = text[i + 1 : i + 5]
            if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise ConfigError(f"{where}: malformed \\uXXXX escape near {text[i - 1 : i + 5]!r}")
            out.append(chr(int(digits, 16)))
            i += 5
            continue
        out.append(_ESCAPES.get(ch, ch))
        i += 1
    joined = "".join(out)
    # \uXXXX escapes are UTF-16 code units: a pair of surrogates stands for one character.
    if any("\ud800" <= c <= "\udfff" for c in joined):
        joined = joined.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return joined


def _split(line: str) -> tuple[str, str]:
    """Splits a logical line at the first unescaped '=', ':' or blank (Properties.load rules)."""
    i = 0
    n = len(line)
    while i < n:
        ch = line[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "=:" or ch in _BLANK:
            break
        i += 1
    key = line[: min(i, n)]
    j = i
    while j < n and line[j] in _BLANK:
        j += 1
    if j < n and line[j] in "=:":
        j += 1
        while j < n and line[j] in _BLANK:
            j += 1
    return key, line[j:]


def parse_properties(text: str, source: str = "<string>") -> dict[str, str]:
    """Parses properties text; later duplicates win, as in java.util.Properties."""
    result: dict[str, str] = {}
    for number, line in enumerate(_logical_lines(text), start=1):
        raw_key, raw_value = _split(line)
        where = f"{source} (entry {number})"
        result[_unescape(raw_key, where)] = _unescape(raw_value, where)
    return result


def load_properties(path: Path) -> dict[str, str]:
    """Reads a properties file; a missing or unreadable file is a ConfigError naming it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Java reads properties as ISO-8859-1; files written that way still load.
        text = data.decode("latin-1")
    return parse_properties(text, str(path))


def _escape(text: str, is_key: bool) -> str:
    out: list[str] = []
    for index, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\t\n\r\f":
            out.append("\\" + {"\t": "t", "\n": "n", "\r": "r", "\f": "f"}[ch])
        elif ch == " " and (is_key or index == 0):
            out.append("\\ ")  # a value's leading blank would otherwise be skipped
        elif ch in "=:#!":
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            for unit in range(0, len(ch.encode("utf-16-le", "surrogatepass")), 2):
                code = int.from_bytes(
                    ch.encode("utf-16-le", "surrogatepass")[unit : unit + 2], "little"
                )
                out.append(f"\\u{code:04X}")
    return "".join(out)


def dump_properties(values: Mapping[str, str]) -> str:
    """Writes values as properties text that `parse_properties` (and Java) reads back exactly."""
    return "".join(f"{_escape(k, True)}={_escape(v, False)}\n" for k, v in values.items())
