"""Kafka's textual form of a UUID, shared by metadata, storage (partition.metadata) and the server.

Kafka writes a 128-bit id (topic id, cluster id) as URL-safe base64 without padding: 22 chars.
"""

from __future__ import annotations

import base64
import binascii
import uuid

ZERO_UUID = uuid.UUID(int=0)
# Kafka reserves 0...01 for its own metadata topic and never hands it out as a topic id.
METADATA_TOPIC_ID = uuid.UUID(int=1)


def kafka_uuid_str(value: uuid.UUID) -> str:
    """`uuid.UUID` -> Kafka's 22-character URL-safe base64 text."""
    return base64.urlsafe_b64encode(value.bytes).decode("ascii").rstrip("=")


def parse_kafka_uuid(text: str) -> uuid.UUID:
    """Kafka's 22-character text -> `uuid.UUID`; ValueError if it is not one."""
    if len(text) != 22:
        raise ValueError(f"{text!r} is not a Kafka UUID (expected 22 base64url characters)")
    try:
        raw = base64.urlsafe_b64decode(text + "==")
    except (binascii.Error, ValueError):
        raise ValueError(f"{text!r} is not a Kafka UUID (invalid base64url)") from None
    if len(raw) != 16 or kafka_uuid_str(uuid.UUID(bytes=raw)) != text:
        raise ValueError(f"{text!r} is not a Kafka UUID")
    return uuid.UUID(bytes=raw)


def random_kafka_uuid() -> uuid.UUID:
    """A random id Kafka would also accept.

    Like Kafka's Uuid.randomUuid it skips the two reserved ids and ids whose text starts with
    '-', which command-line tools would mistake for an option.
    """
    while True:
        value = uuid.uuid4()
        if value not in (ZERO_UUID, METADATA_TOPIC_ID) and not kafka_uuid_str(value).startswith(
            "-"
        ):
            return value


def new_cluster_id() -> str:
    return kafka_uuid_str(random_kafka_uuid())
