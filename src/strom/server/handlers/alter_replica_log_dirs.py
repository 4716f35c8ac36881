"""AlterReplicaLogDirs (key 34), versions 0-2: move replicas between this broker's log dirs.

Per partition, as Kafka's ReplicaManager.alterReplicaLogDirs answers it:
- INVALID_TOPIC_EXCEPTION when the future directory's name would pass 255 characters;
- LOG_DIR_NOT_FOUND when the path (absolute) is not one of log.dirs; KAFKA_STORAGE_ERROR when
  that directory, or the partition's own, is offline, or the future log cannot be created
  (also while any log dir is offline);
- REPLICA_NOT_AVAILABLE when the topic exists but this broker has no replica of the partition
  yet: the directory is remembered, and the replica is created there when it comes (a
  reassignment to this broker); UNKNOWN_TOPIC_OR_PARTITION when the partition does not exist;
- NONE otherwise: the partition already lives there, or its move has begun. The move itself
  (a future log filled in the background, then swapped in) goes on after the answer; a second
  request naming another directory replaces a move in progress, and naming the current
  directory cancels it. DescribeLogDirs shows the future log and its lag meanwhile.
Needs ALTER on the cluster (CLUSTER_AUTHORIZATION_FAILED for every partition), as in Kafka.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.alter_replica_log_dirs_request import AlterReplicaLogDirsRequest
from strom.protocol.messages.alter_replica_log_dirs_response import (
    AlterReplicaLogDirPartitionResult,
    AlterReplicaLogDirsResponse,
    AlterReplicaLogDirTopicResult,
)
from strom.security.acl import AclOperation
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles
from strom.storage.errors import KafkaStorageError
from strom.storage.log_manager import LogDirNotFoundError
from strom.storage.log_moves import future_name_too_long

if TYPE_CHECKING:
    from strom.server.broker import Broker

log = logging.getLogger("strom.broker")


def _partition_exists(broker: Broker, topic: str, partition: int) -> bool:
    record = broker.metadata.get_topic(topic)
    return record is not None and 0 <= partition < record.num_partitions


def alter_replica_log_dir(broker: Broker, topic: str, partition: int, path: str) -> ErrorCode:
    logs = broker.logs
    key = (topic, partition)
    if future_name_too_long(topic, partition):
        return ErrorCode.INVALID_TOPIC_EXCEPTION
    target = Path(path)
    try:
        if not target.is_absolute():
            raise LogDirNotFoundError(f"Log dir {path} is not found in the config.")
        if not logs.is_online(target):
            return ErrorCode.KAFKA_STORAGE_ERROR
    except LogDirNotFoundError:
        return ErrorCode.LOG_DIR_NOT_FOUND
    if logs.is_offline(topic, partition):
        return ErrorCode.KAFKA_STORAGE_ERROR
    current = logs.get(topic, partition)
    future = logs.get_future(topic, partition)
    if future is not None and future.directory.parent != target:
        log.info("%s-%d: the move to %s is replaced", topic, partition, future.directory.parent)
        logs.delete_future(topic, partition)
        future = None
    if current is None:
        # Created later in the named directory (Kafka's preferred log dir).
        logs.preferred_dirs[key] = target
        if _partition_exists(broker, topic, partition):
            return ErrorCode.REPLICA_NOT_AVAILABLE
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    logs.preferred_dirs.pop(key, None)
    if logs.log_dir_of[key] == target:
        return ErrorCode.NONE
    if future is not None:
        broker.log_dir_moves.start(key)  # (still) moving there
        return ErrorCode.NONE
    try:
        logs.create_future(topic, partition, target)
    except KafkaStorageError as exc:
        log.warning("Unable to alter log dirs for %s-%d: %s", topic, partition, exc)
        return ErrorCode.KAFKA_STORAGE_ERROR
    log.info("%s-%d: moving from %s to %s", topic, partition, logs.log_dir_of[key], target)
    broker.log_dir_moves.start(key)
    return ErrorCode.NONE


@handles(34, 0, 2)
def handle_alter_replica_log_dirs(
    ctx: RequestContext, request: AlterReplicaLogDirsRequest
) -> AlterReplicaLogDirsResponse:
    results: dict[str, list[AlterReplicaLogDirPartitionResult]] = {}
    allowed = authorize_cluster(ctx, AclOperation.ALTER)
    for wanted in request.dirs:
        for topic in wanted.topics:
            for partition in topic.partitions:
                code = (
                    alter_replica_log_dir(ctx.broker, topic.name, partition, wanted.path)
                    if allowed
                    else ErrorCode.CLUSTER_AUTHORIZATION_FAILED
                )
                results.setdefault(topic.name, []).append(
                    AlterReplicaLogDirPartitionResult(partition_index=partition, error_code=code)
                )
    return AlterReplicaLogDirsResponse(
        results=[
            AlterReplicaLogDirTopicResult(topic_name=name, partitions=partitions)
            for name, partitions in results.items()
        ]
    )
