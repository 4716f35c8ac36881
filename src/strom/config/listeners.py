"""Listener endpoints (`NAME://host:port`) and the listener-to-protocol map."""

from __future__ import annotations

import re
from dataclasses import dataclass

from strom.config.definitions import ConfigError

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_LISTENER = re.compile(
    r"(?P<name>[A-Za-z0-9_]+)://(?P<host>\[[^\]]*\]|[^:\[\]/]*):(?P<port>[0-9]+)"
)


@dataclass(frozen=True, slots=True)
class Listener:
    """An endpoint: listener name (e.g. PLAINTEXT), host (may be empty: every interface), port."""

    name: str
    host: str
    port: int  # 0: any free port (tests); the server reports the port it actually bound

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.name}://{host}:{self.port}"


def parse_listeners(key: str, raw: str, origin: str | None = None) -> list[Listener]:
    out: list[Listener] = []
    where = f" (from {origin})" if origin else ""
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        m = _LISTENER.fullmatch(item)
        if m is None:
            raise ConfigError(
                f"Invalid value {raw!r} for configuration {key}{where}: {item!r} is not of the "
                "form NAME://host:port",
                key,
                raw,
            )
        port = int(m["port"])
        if port > 65535:
            raise ConfigError(
                f"Invalid value {raw!r} for configuration {key}{where}: port {port} is out of range",
                key,
                raw,
            )
        out.append(Listener(m["name"].upper(), m["host"].strip("[]"), port))
    names = [x.name for x in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"Invalid value {raw!r} for configuration {key}{where}: listener name "
            f"{dupes[0]} appears more than once",
            key,
            raw,
        )
    return out


def parse_http_listeners(raw: str) -> list[Listener]:
    """`strom.http.listeners`: http://host:port entries; ValueError says what is wrong."""
    out = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        m = _LISTENER.fullmatch(item)
        if m is None or m["name"].lower() != "http":
            raise ValueError(f"{item!r} is not of the form http://host:port")
        port = int(m["port"])
        if port > 65535:
            raise ValueError(f"port {port} is out of range")
        out.append(Listener("HTTP", m["host"].strip("[]"), port))
    return out


def protocol_map(raw: str) -> dict[str, str]:
    """listener.security.protocol.map as listener name -> protocol (both upper case)."""
    out: dict[str, str] = {}
    for item in raw.split(","):
        name, sep, protocol = item.strip().partition(":")
        if sep:
            out[name.strip().upper()] = protocol.strip().upper()
    return out
