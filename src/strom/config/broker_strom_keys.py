"""Strom's own broker keys, for what Kafka has no key for; every name starts with `strom.`."""

from __future__ import annotations

from strom.config.definitions import ConfigDef
from strom.config.shorthand import I, S, define
from strom.config.validators import at_least

# fmt: off
STROM_BROKER_DEFS: list[ConfigDef] = [
    define("strom.http.listeners", S, None, "Comma-separated http://host:port endpoints of the "
       "HTTP listener: /metrics (Prometheus), /health, /ready and the web console. Unset: no "
       "HTTP listener."),
    define("strom.max.open.files", I, -1, "The most segment files the broker keeps open at "
       "once: a least-recently-used cache of descriptors, so that a partition neither written "
       "nor read holds none. -1: three quarters of the process's open-file limit (which "
       "start-up raises to the hard limit), the rest kept for connections and other files. A "
       "larger value is lowered to what the limit leaves after that reserve.", at_least(-1)),
]
# fmt: on
