"""Creating a new topic's logs off the event loop (a single broker's CreateTopics).

Creating a log is five file-system operations (its directory, `partition.metadata`, `.log`,
`.index`, `.timeindex`), up to a few milliseconds each on a busy disk: a topic of 10,000
partitions would hold the event loop for up to a minute. The topic is recorded first with its
partitions pending (`LogManager.pending`: Metadata answers LEADER_NOT_AVAILABLE for them,
Produce and Fetch NOT_LEADER_OR_FOLLOWER, so clients retry), then its logs are made in the
worker pool a chunk at a time and served as each chunk is done, while the loop answers other
requests. One creation runs at a time (a topic deleted and created again must not have two
creations making the same directories).

As the synchronous path (Broker._create_logs), a creation is all or nothing: running out of
descriptors or disk space removes the logs made and the topic, and the request gets the error;
a log dir that fails on the way goes offline and the rest go to the other directories. A topic
deleted meanwhile has the logs made for it removed and the rest never made.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from strom.cluster.local_metadata import LocalMetadata, TopicRecord
from strom.protocol.errors import ErrorCode
from strom.runtime.errors import ApiError
from strom.storage.errors import KafkaStorageError, is_dir_failure

if TYPE_CHECKING:
    from strom.server.broker import Broker

log = logging.getLogger("strom.broker")

# Logs made per trip to the worker pool: the loop serves requests between trips.
CHUNK = 200


async def create_pending_logs(broker: Broker, name: str, record: TopicRecord) -> None:
    """Make the logs of a topic `broker.create_topic(..., logs_later=True)` recorded. Raises
    ApiError (the topic is removed again) when they cannot all be made."""
    logs = broker.logs
    keys = [(name, partition) for partition in range(record.num_partitions)]
    made: list[int] = []
    try:
        async with broker.log_creation_lock:
            await _make_all(broker, name, record, keys, made)
    except (OSError, KafkaStorageError) as exc:
        broker.remove_created_logs(name, made)
        _forget_topic(broker, name, record)
        doing = f"creating {record.num_partitions} partition(s) of {name}"
        if isinstance(exc, KafkaStorageError):
            raise ApiError(ErrorCode.KAFKA_STORAGE_ERROR, f"{doing} failed: {exc}") from exc
        raise broker.storage_failure(doing, exc) from exc
    finally:
        for key in keys:
            if logs.pending.get(key) == record.topic_id:
                del logs.pending[key]
    log.info("created topic %s with %d partition(s)", name, record.num_partitions)


async def _make_all(
    broker: Broker, name: str, record: TopicRecord, keys: list[tuple[str, int]], made: list[int]
) -> None:
    logs = broker.logs
    loop = asyncio.get_running_loop()
    config = broker.log_config(name)
    position = 0
    while position < len(keys):
        placed = logs.place(keys[position : position + CHUNK])
        done, failure = await loop.run_in_executor(
            broker.io, logs.make_logs, placed, record.topic_id, config
        )
        current = broker.metadata.get_topic(name)
        if current is None or current.topic_id != record.topic_id:
            for plog in done:  # deleted meanwhile
                logs.discard(plog)
            return
        for plog in done:
            logs.adopt(plog)
            del logs.pending[(plog.topic, plog.partition)]
            made.append(plog.partition)
        position += len(done)
        if failure is not None:
            log_dir, exc = failure
            if not is_dir_failure(exc, len(logs.log_dirs)):
                raise exc
            logs.io_failed(log_dir, exc)  # the next place() leaves the directory out


def _forget_topic(broker: Broker, name: str, record: TopicRecord) -> None:
    metadata = broker.metadata
    assert isinstance(metadata, LocalMetadata)
    current = metadata.get_topic(name)
    if current is None or current.topic_id != record.topic_id:
        return
    try:
        metadata.delete_topic(name)
    except OSError as exc:  # the next start-up creates the missing logs instead
        log.error("topic %s is kept without all its logs: %s", name, exc)
