"""`partition.metadata`: the topic id a partition directory belongs to.

Kafka's format, two lines (no trailing newline):
    version: 0
    topic_id: <Kafka Uuid: url-safe base64 of the 16 bytes, without '=' padding>
A directory whose file names another topic id belongs to a deleted-and-recreated topic.
"""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

from strom.storage.checkpoint import write_atomically
from strom.storage.file_cache import open_fd, read_file

FILE_NAME = "partition.metadata"


def kafka_uuid_string(topic_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(topic_id.bytes).decode().rstrip("=")


def parse_kafka_uuid(text: str) -> uuid.UUID:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if len(raw) != 16:
        raise ValueError(f"not a 16-byte uuid: {text!r}")
    return uuid.UUID(bytes=raw)


def write_partition_metadata(
    directory: Path, topic_id: uuid.UUID, *, sync: bool = True, new: bool = False
) -> None:
    """`sync=False`: no fsyncs (the log's first flush makes it durable). `new`: the file does
    not exist yet, so it is written in place (one file creation, not a temporary file and a
    rename: creating a topic of many partitions pays this per partition); a crash may leave it
    torn, which reads as missing and is written again."""
    text = f"version: 0\ntopic_id: {kafka_uuid_string(topic_id)}".encode()
    if not new:
        write_atomically(directory / FILE_NAME, text, sync=sync)
        return
    fd = open_fd(directory / FILE_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        os.write(fd, text)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_partition_metadata(directory: Path) -> uuid.UUID | None:
    """The stored topic id, or None when the file is missing or unreadable."""
    try:
        text = read_file(directory / FILE_NAME).decode()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    if fields.get("version") != "0" or "topic_id" not in fields:
        return None
    try:
        return parse_kafka_uuid(fields["topic_id"])
    except ValueError:
        return None
