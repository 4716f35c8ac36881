"""Kafka principals and the mapping of a TLS client certificate's name to one.

`ssl.principal.mapping.rules` is a comma-separated list of `DEFAULT` (the distinguished name
itself) and `RULE:<pattern>/<replacement>/[L|U]` entries, tried in order; the first whose
pattern matches the whole distinguished name (RFC 2253 form, most specific attribute first:
`CN=alice,OU=eng,O=Acme,C=US`) gives the name, with `$1`... standing for the pattern's groups
and `L`/`U` lower- or upper-casing the result. A name no rule matches is refused, as Kafka
refuses the connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

USER_TYPE = "User"


@dataclass(frozen=True, slots=True)
class KafkaPrincipal:
    """Who a connection authenticated as: `User:alice`, `User:ANONYMOUS` when nobody."""

    principal_type: str
    name: str
    # How the name was established ("PLAINTEXT", "SSL", "SASL_SSL/SCRAM-SHA-256", ...).
    source: str = ""

    def __str__(self) -> str:
        return f"{self.principal_type}:{self.name}"


ANONYMOUS = KafkaPrincipal(USER_TYPE, "ANONYMOUS")

_RULE = r"(DEFAULT)|RULE:((\\.|[^\\/])*)/((\\.|[^\\/])*)/([LU]?).*?|(.*?)"
_SPLITTER = re.compile(r"\s*(" + _RULE + r")\s*(,\s*|$)")
_PARSER = re.compile(_RULE)


class NoMatchingRule(ValueError):
    """No ssl.principal.mapping.rules entry matches a distinguished name."""


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str] | None  # None: DEFAULT
    replacement: str = ""
    lower: bool = False
    upper: bool = False

    def apply(self, dn: str) -> str | None:
        if self.pattern is None:
            return dn
        if self.pattern.fullmatch(dn) is None:
            return None
        groups = self.pattern.groups
        result = self.pattern.sub(lambda m: _expand(self.replacement, m, groups), dn)
        if self.lower:
            return result.lower()
        if self.upper:
            return result.upper()
        return result


def _expand(replacement: str, match: re.Match[str], groups: int) -> str:
    """A Java `replaceAll` replacement: `\\x` is x, `$n` is group n, where n takes as many
    digits as still name an existing group (a `$n` naming no group stays literal, as Kafka
    escapes those before handing them to Java)."""
    out: list[str] = []
    i = 0
    while i < len(replacement):
        ch = replacement[i]
        if ch == "\\" and i + 1 < len(replacement):
            out.append(replacement[i + 1])
            i += 2
            continue
        if ch == "$" and i + 1 < len(replacement) and replacement[i + 1].isdigit():
            j = i + 1
            number = int(replacement[j])
            j += 1
            while j < len(replacement) and replacement[j].isdigit():
                longer = number * 10 + int(replacement[j])
                if longer > groups:
                    break
                number = longer
                j += 1
            if number > groups:
                out.append(replacement[i:j])
            else:
                out.append(match.group(number) or "")
            i = j
            continue
        out.append(ch)
        i += 1
    return "".join(out)


class PrincipalMapper:
    """ssl.principal.mapping.rules; raises ValueError for rules Kafka would refuse."""

    def __init__(self, rules: str | None) -> None:
        parsed = [_parse_rule(r) for r in _split(rules if rules is not None else "DEFAULT")]
        self._rules = [r for r in parsed if r is not None]

    def name(self, distinguished_name: str) -> str:
        for rule in self._rules:
            name = rule.apply(distinguished_name)
            if name is not None:
                return name
        raise NoMatchingRule(
            f"no ssl.principal.mapping.rules entry applies to {distinguished_name}"
        )


def _split(rules: str) -> list[str]:
    return [m.group(1) for m in _SPLITTER.finditer(rules.strip())]


def _parse_rule(rule: str) -> _Rule | None:
    m = _PARSER.match(rule)
    if m is None or m.end() != len(rule):
        raise ValueError(f"invalid ssl.principal.mapping.rules entry {rule!r}")
    if m.group(1) is not None:
        return _Rule(None)
    if m.group(2) is not None:
        try:
            pattern = re.compile(m.group(2))
        except re.error as exc:
            raise ValueError(f"invalid pattern in ssl.principal.mapping.rules: {exc}") from None
        flag = m.group(6)
        return _Rule(pattern, m.group(4), flag == "L", flag == "U")
    if m.group(7):
        raise ValueError(f"invalid ssl.principal.mapping.rules entry {rule!r}")
    return None
