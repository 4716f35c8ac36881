"""Broker keys of Kafka releases after 3.9 that Strom acts on (the tables otherwise hold Kafka
3.9's keys and Strom's own `strom.` ones)."""

from __future__ import annotations

from strom.config.definitions import ConfigDef
from strom.config.shorthand import CW, B, S, define

# fmt: off
BROKER_NEWER_DEFS: list[ConfigDef] = [
    define("errors.deadletterqueue.auto.create.topics.enable", B, False, "Whether a share "
       "group's dead-letter topic (the group config errors.deadletterqueue.topic.name) that "
       "does not exist is created on its first copy, with errors.deadletterqueue.group.enable "
       "set (KIP-1191, Kafka 4.4).", mode=CW),
    define("errors.deadletterqueue.topic.name.prefix", S, "dlq.", "The prefix every share "
       "group's dead-letter topic name must start with; empty: any name (KIP-1191, Kafka 4.4).",
       mode=CW),
]
# fmt: on

NEWER_TOPIC_KEYS = frozenset({"errors.deadletterqueue.group.enable"})
