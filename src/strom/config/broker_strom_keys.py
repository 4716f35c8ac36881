"""Strom's own broker keys, for what Kafka has no key for; every name starts with `strom.`."""

from __future__ import annotations

from strom.config.definitions import ConfigDef
from strom.config.shorthand import S, define

# fmt: off
STROM_BROKER_DEFS: list[ConfigDef] = [
    define("strom.http.listeners", S, None, "Comma-separated http://host:port endpoints of the "
       "HTTP listener: /metrics (Prometheus), /health, /ready and the web console. Unset: no "
       "HTTP listener."),
]
# fmt: on
