"""DescribeLogDirs (key 35), versions 1-4: each log directory and the partitions stored in it.

Every directory of log.dirs is reported with its absolute path; each partition with its size
on disk and its offset lag (log end offset minus high watermark). `topics` null means every
partition; otherwise only the named partitions that exist are listed (unknown ones are left
out, as in Kafka). v4 adds the total and usable bytes of the volume holding the directory. A
directory that cannot be read answers KAFKA_STORAGE_ERROR. Not done: future logs (there is no
AlterReplicaLogDirs, so `is_future_key` is always false); v0 (deprecated).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.describe_log_dirs_request import DescribeLogDirsRequest
from strom.protocol.messages.describe_log_dirs_response import (
    DescribeLogDirsPartition,
    DescribeLogDirsResponse,
    DescribeLogDirsResult,
    DescribeLogDirsTopic,
)
from strom.server.context import RequestContext
from strom.server.registry import handles

if TYPE_CHECKING:
    from strom.storage.partition_log import PartitionLog


def _wanted(ctx: RequestContext, request: DescribeLogDirsRequest) -> list[tuple[str, int]]:
    broker = ctx.broker
    if request.topics is None:
        return sorted(broker.logs.log_dir_of)
    wanted: list[tuple[str, int]] = []
    for topic in request.topics:
        for partition in topic.partitions:
            if broker.partition_log(topic.topic, partition) is not None:
                wanted.append((topic.topic, partition))
    return sorted(set(wanted))


def _describe(log: PartitionLog, partition: int) -> DescribeLogDirsPartition:
    return DescribeLogDirsPartition(
        partition_index=partition,
        partition_size=log.size_bytes,
        offset_lag=max(0, log.log_end_offset - log.high_watermark),
        is_future_key=False,
    )


@handles(35, 1, 4)
def handle_describe_log_dirs(
    ctx: RequestContext, request: DescribeLogDirsRequest
) -> DescribeLogDirsResponse:
    broker = ctx.broker
    by_dir: dict[Path, dict[str, list[DescribeLogDirsPartition]]] = {}
    dirs = [d.absolute() for d in broker.data_dirs()]
    for directory in dirs:
        by_dir[directory] = {}
    for topic, partition in _wanted(ctx, request):
        log = broker.partition_log(topic, partition)
        if log is None:
            continue
        home = broker.logs.log_dir_of[(topic, partition)].absolute()
        by_dir.setdefault(home, {}).setdefault(topic, []).append(_describe(log, partition))
    results: list[DescribeLogDirsResult] = []
    for directory, topics in by_dir.items():
        result = DescribeLogDirsResult(
            error_code=ErrorCode.NONE,
            log_dir=str(directory),
            topics=[
                DescribeLogDirsTopic(name=name, partitions=parts)
                for name, parts in sorted(topics.items())
            ],
        )
        try:
            usage = shutil.disk_usage(directory)
        except OSError:
            result.error_code = ErrorCode.KAFKA_STORAGE_ERROR
            result.topics = []
        else:
            result.total_bytes = usage.total
            result.usable_bytes = usage.free
        results.append(result)
    return DescribeLogDirsResponse(error_code=ErrorCode.NONE, results=results)
