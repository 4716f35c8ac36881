"""DescribeLogDirs (key 35), versions 0-4: each log directory and the logs stored in it.

As Kafka's ReplicaManager.describeLogDirs: every directory of log.dirs is reported, by its
absolute path. An offline one (failed at start-up or since) answers KAFKA_STORAGE_ERROR and
nothing else. An online one lists its logs of the asked partitions (`topics` null: every log on
the broker), grouped by topic, topics without any left out: the size of the log's segments, its
offset lag and whether it is a future log (a replica being moved here by AlterReplicaLogDirs).
The lag of a current log is max(high watermark - log end offset, 0); that of a future log is
how far it is behind the current log's end (-1 when the current log is not available). v4 adds
the total and usable bytes of the volume (OSError reading them: KAFKA_STORAGE_ERROR). v0-2 are
the same answers without the top-level error code (v3) and the byte counts (v4).
Needs DESCRIBE on the cluster (CLUSTER_AUTHORIZATION_FAILED and no directories, as Kafka).
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.describe_log_dirs_request import DescribeLogDirsRequest
from strom.protocol.messages.describe_log_dirs_response import (
    DescribeLogDirsPartition,
    DescribeLogDirsResponse,
    DescribeLogDirsResult,
    DescribeLogDirsTopic,
)
from strom.security.acl import AclOperation
from strom.server.authz import authorize_cluster
from strom.server.context import RequestContext
from strom.server.registry import handles

if TYPE_CHECKING:
    from strom.storage.log_manager import LogManager
    from strom.storage.partition_log import PartitionLog

INVALID_OFFSET_LAG = -1


def _lag(logs: LogManager, plog: PartitionLog, future: bool) -> int:
    current = logs.get(plog.topic, plog.partition)
    if current is None:
        return INVALID_OFFSET_LAG
    if future:
        return current.log_end_offset - plog.log_end_offset
    return max(current.high_watermark - current.log_end_offset, 0)


@handles(35, 0, 4)
def handle_describe_log_dirs(
    ctx: RequestContext, request: DescribeLogDirsRequest
) -> DescribeLogDirsResponse:
    if not authorize_cluster(ctx, AclOperation.DESCRIBE):
        return DescribeLogDirsResponse(error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED)
    logs = ctx.broker.logs
    wanted: set[tuple[str, int]] | None = None
    if request.topics is not None:
        wanted = {(t.topic, p) for t in request.topics for p in t.partitions}
    results: list[DescribeLogDirsResult] = []
    for log_dir in logs.log_dirs:
        result = DescribeLogDirsResult(error_code=ErrorCode.NONE, log_dir=str(log_dir))
        results.append(result)
        if log_dir in logs.offline_dirs:
            result.error_code = ErrorCode.KAFKA_STORAGE_ERROR
            continue
        try:
            usage = shutil.disk_usage(log_dir)
        except OSError:
            result.error_code = ErrorCode.KAFKA_STORAGE_ERROR
            continue
        result.total_bytes = usage.total
        result.usable_bytes = usage.free
        found: list[tuple[tuple[str, int], DescribeLogDirsPartition]] = []
        for key, plog in logs.logs_in(log_dir).items():
            if wanted is not None and key not in wanted:
                continue
            future = logs.future_logs.get(key) is plog
            found.append(
                (
                    key,
                    DescribeLogDirsPartition(
                        partition_index=key[1],
                        partition_size=plog.size_bytes,
                        offset_lag=_lag(logs, plog, future),
                        is_future_key=future,
                    ),
                )
            )
        # Partitions not opened since start-up: sized from their directory listing.
        for key, size in logs.deferred_sizes(log_dir).items():
            if wanted is None or key in wanted:
                found.append(
                    (key, DescribeLogDirsPartition(partition_index=key[1], partition_size=size))
                )
        by_topic: dict[str, list[DescribeLogDirsPartition]] = {}
        for key, entry in sorted(found, key=lambda item: (item[0], item[1].is_future_key)):
            by_topic.setdefault(key[0], []).append(entry)
        result.topics = [
            DescribeLogDirsTopic(name=name, partitions=partitions)
            for name, partitions in by_topic.items()
        ]
    return DescribeLogDirsResponse(error_code=ErrorCode.NONE, results=results)
