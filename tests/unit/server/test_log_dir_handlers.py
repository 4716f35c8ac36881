"""AlterReplicaLogDirs and DescribeLogDirs answers that need a particular broker state: a
replica not hosted yet, an offline directory or partition, a future log mid-move."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_admin_handlers import append, create, ctx, new_topic, open_broker, shut

from strom.protocol.errors import ErrorCode
from strom.protocol.messages.alter_replica_log_dirs_request import (
    AlterReplicaLogDir,
    AlterReplicaLogDirsRequest,
    AlterReplicaLogDirTopic,
)
from strom.protocol.messages.describe_log_dirs_request import DescribeLogDirsRequest
from strom.server.broker import Broker
from strom.server.handlers.alter_replica_log_dirs import handle_alter_replica_log_dirs
from strom.server.handlers.describe_log_dirs import handle_describe_log_dirs


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = open_broker(tmp_path / "a", **{"log.dirs": f"{tmp_path / 'a'},{tmp_path / 'b'}"})
    yield b
    shut(b)


def alter(broker: Broker, path: Path | str, topic: str, partition: int) -> int:
    request = AlterReplicaLogDirsRequest(
        dirs=[AlterReplicaLogDir(str(path), [AlterReplicaLogDirTopic(topic, [partition])])]
    )
    [result] = handle_alter_replica_log_dirs(ctx(broker, 34, 2), request).results
    [answer] = result.partitions
    return int(answer.error_code)


def other_dir(broker: Broker, topic: str, partition: int) -> Path:
    home = broker.logs.log_dir_of[(topic, partition)]
    return next(d for d in broker.logs.log_dirs if d != home)


def test_replica_not_hosted_yet_is_created_in_the_named_dir(broker: Broker) -> None:
    create(broker, new_topic("later"))
    target = other_dir(broker, "later", 0)
    broker.logs.delete_partition("later", 0)  # as on a broker a reassignment adds later
    assert alter(broker, target, "later", 0) == ErrorCode.REPLICA_NOT_AVAILABLE
    assert alter(broker, target, "ghost", 0) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    record = broker.metadata.get_topic("later")
    assert record is not None
    plog = broker.logs.create("later", 0, record.topic_id, broker.log_config("later"))
    assert plog.directory.parent == target


def test_refusals(broker: Broker, tmp_path: Path) -> None:
    create(broker, new_topic("t", 2))
    target = other_dir(broker, "t", 0)
    assert alter(broker, "x" * 240, "y" * 240, 0) == ErrorCode.INVALID_TOPIC_EXCEPTION
    assert alter(broker, tmp_path / "c", "t", 0) == ErrorCode.LOG_DIR_NOT_FOUND
    assert alter(broker, "a", "t", 0) == ErrorCode.LOG_DIR_NOT_FOUND  # not absolute
    home1 = broker.logs.log_dir_of[("t", 1)]
    broker.logs.take_offline(home1, "test")
    # The offline directory, and any move while a directory is offline.
    assert alter(broker, home1, "t", 0) == ErrorCode.KAFKA_STORAGE_ERROR
    assert alter(broker, target, "t", 1) == ErrorCode.KAFKA_STORAGE_ERROR
    if target != home1:
        assert alter(broker, target, "t", 0) == ErrorCode.KAFKA_STORAGE_ERROR


def test_describe_shows_a_future_log_and_an_offline_dir(broker: Broker) -> None:
    create(broker, new_topic("m"))
    append(broker, "m", 0, 10)
    target = other_dir(broker, "m", 0)
    future = broker.logs.create_future("m", 0, target)  # the copier is not running here
    response = handle_describe_log_dirs(ctx(broker, 35, 4), DescribeLogDirsRequest(topics=None))
    by_dir = {r.log_dir: r for r in response.results}
    [fut] = by_dir[str(target)].topics[0].partitions
    assert fut.is_future_key and fut.offset_lag == 10 and fut.partition_size == 0
    home = broker.logs.log_dir_of[("m", 0)]
    [cur] = by_dir[str(home)].topics[0].partitions
    assert not cur.is_future_key and cur.offset_lag == 0 and cur.partition_size > 0
    # Naming the current dir again cancels the move and removes the future log.
    assert alter(broker, home, "m", 0) == ErrorCode.NONE
    assert broker.logs.get_future("m", 0) is None and not future.directory.exists()
    broker.logs.take_offline(target, "test")
    response = handle_describe_log_dirs(ctx(broker, 35, 0), DescribeLogDirsRequest(topics=None))
    by_dir = {r.log_dir: r for r in response.results}
    assert by_dir[str(target)].error_code == ErrorCode.KAFKA_STORAGE_ERROR
    assert by_dir[str(target)].topics == []
    assert by_dir[str(home)].error_code == ErrorCode.NONE
