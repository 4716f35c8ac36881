"""The oldest versions Kafka 3.9 still answers, through the handlers of a real broker on a
temporary data directory: ListOffsets v0 (segment offsets by file time), the special
timestamps' minimum versions, OffsetCommit / OffsetFetch v0 (offsets kept apart from the
group coordinator), OffsetCommit for topics and partitions that do not exist, and the admin
and replication APIs at v0 (answers encoded at the old version and read back)."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from strom.config import BrokerConfig
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.create_topics_request import CreatableTopic, CreateTopicsRequest
from strom.protocol.messages.create_topics_response import CreateTopicsResponse
from strom.protocol.messages.delete_topics_request import DeleteTopicsRequest
from strom.protocol.messages.delete_topics_response import DeleteTopicsResponse
from strom.protocol.messages.describe_configs_request import (
    DescribeConfigsRequest,
    DescribeConfigsResource,
)
from strom.protocol.messages.describe_configs_response import DescribeConfigsResponse
from strom.protocol.messages.list_offsets_request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from strom.protocol.messages.offset_commit_request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from strom.protocol.messages.offset_fetch_request import OffsetFetchRequest, OffsetFetchRequestTopic
from strom.protocol.messages.offset_for_leader_epoch_request import (
    OffsetForLeaderEpochRequest,
    OffsetForLeaderPartition,
    OffsetForLeaderTopic,
)
from strom.protocol.messages.offset_for_leader_epoch_response import OffsetForLeaderEpochResponse
from strom.protocol.records.codec import Record, build_batch
from strom.protocol.records.validation import validate_batches
from strom.server.broker import Broker
from strom.server.context import RequestContext
from strom.server.handlers.create_topics import handle_create_topics
from strom.server.handlers.delete_topics import handle_delete_topics
from strom.server.handlers.describe_configs import handle_describe_configs
from strom.server.handlers.group_offsets import handle_offset_commit, handle_offset_fetch
from strom.server.handlers.list_offsets import handle_list_offsets
from strom.server.handlers.offsets_for_leader_epoch import handle_offsets_for_leader_epoch_request
from strom.server.registry import HANDLERS

TOPIC = "t"
NOW = time.time_ns() // 1_000_000


def open_broker(data: Path) -> Broker:
    return Broker.open(BrokerConfig.load(None, {"log.dirs": str(data)}))


def shut(broker: Broker) -> None:
    broker.groups.close()
    broker.logs.close()
    broker.io.shutdown(wait=True)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = open_broker(tmp_path / "data")
    b.create_topic(TOPIC, 2)
    yield b
    shut(b)


def ctx(broker: Broker, api_key: int, version: int) -> RequestContext:
    return RequestContext(broker, api_key, version, 1, "test", "127.0.0.1:1", bytearray())


def produce(broker: Broker, count: int, partition: int = 0) -> None:
    log = broker.partition_log(TOPIC, partition)
    assert log is not None
    buf = bytearray(build_batch([Record(i, NOW, None, b"v%d" % i) for i in range(count)]))
    log.append_as_leader(buf, validate_batches(buf), 0, NOW)
    log.update_high_watermark(log.log_end_offset)


def answered(result: Any) -> Any:
    """The handler's answer, awaited on a loop when it has to wait."""
    if isinstance(result, Awaitable):
        waiting = result

        async def wait() -> Any:
            return await waiting

        return asyncio.run(wait())
    return result


def list_offsets(
    broker: Broker,
    version: int,
    timestamp: int,
    max_num_offsets: int = 1,
    partition: int = 0,
    replica_id: int = -1,
    topic: str = TOPIC,
) -> Any:
    request = ListOffsetsRequest(
        replica_id=replica_id,
        topics=[
            ListOffsetsTopic(
                name=topic,
                partitions=[
                    ListOffsetsPartition(
                        partition_index=partition,
                        timestamp=timestamp,
                        max_num_offsets=max_num_offsets,
                    )
                ],
            )
        ],
    )
    response = handle_list_offsets(ctx(broker, 2, version), request)
    return response.topics[0].partitions[0]


def set_mtime(path: Path, ms: int) -> None:
    os.utime(path, ns=(ms * 1_000_000, ms * 1_000_000))


@pytest.fixture
def three_segments(broker: Broker) -> list[int]:
    """Segments at 0, 3 and 7 (modified at NOW-30s, NOW-20s, NOW-10s) and a log end of 9.
    Returns the modification times."""
    log = broker.partition_log(TOPIC, 0)
    assert log is not None
    produce(broker, 3)
    log.roll()
    produce(broker, 4)
    log.roll()
    produce(broker, 2)
    times = [NOW - 30_000, NOW - 20_000, NOW - 10_000]
    for segment, ms in zip(log.segments, times, strict=True):
        set_mtime(segment.log_path, ms)
    assert [s.base_offset for s in log.segments] == [0, 3, 7]
    return times


# -- ListOffsets v0 ----------------------------------------------------------------------------


def test_v0_latest_lists_the_log_end_then_segment_starts(
    broker: Broker, three_segments: list[int]
) -> None:
    answer = list_offsets(broker, 0, -1, max_num_offsets=10)
    assert answer.error_code == ErrorCode.NONE
    assert answer.old_style_offsets == [9, 7, 3, 0]
    assert list_offsets(broker, 0, -1, max_num_offsets=2).old_style_offsets == [9, 7]
    assert list_offsets(broker, 0, -1, max_num_offsets=0).old_style_offsets == []


def test_v0_earliest_is_the_first_segment(broker: Broker, three_segments: list[int]) -> None:
    assert list_offsets(broker, 0, -2, max_num_offsets=10).old_style_offsets == [0]


def test_v0_timestamp_picks_segments_modified_before_it(
    broker: Broker, three_segments: list[int]
) -> None:
    first, second, third = three_segments
    assert list_offsets(broker, 0, second, max_num_offsets=10).old_style_offsets == [3, 0]
    assert list_offsets(broker, 0, second + 1, max_num_offsets=1).old_style_offsets == [3]
    assert list_offsets(broker, 0, third + 1, max_num_offsets=10).old_style_offsets == [7, 3, 0]
    assert list_offsets(broker, 0, first - 1, max_num_offsets=10).old_style_offsets == []
    # The log end counts as modified now.
    future = NOW + 3_600_000
    assert list_offsets(broker, 0, future, max_num_offsets=10).old_style_offsets == [9, 7, 3, 0]


def test_v0_offsets_start_at_the_log_start_offset(
    broker: Broker, three_segments: list[int]
) -> None:
    log = broker.partition_log(TOPIC, 0)
    assert log is not None
    log.delete_records_before(5)
    # The segments below the new start are still there until retention removes them; as in
    # Kafka, each counts with its offset raised to the log start offset.
    assert list_offsets(broker, 0, -1, max_num_offsets=10).old_style_offsets == [9, 7, 5, 5]
    assert list_offsets(broker, 0, -2, max_num_offsets=10).old_style_offsets == [5]


def test_v0_empty_active_segment_is_not_listed_twice(broker: Broker) -> None:
    log = broker.partition_log(TOPIC, 0)
    assert log is not None
    assert list_offsets(broker, 0, -1, max_num_offsets=5).old_style_offsets == [0]
    produce(broker, 4)
    log.roll()
    assert list_offsets(broker, 0, -1, max_num_offsets=5).old_style_offsets == [4, 0]


def test_v0_consumers_see_the_high_watermark_not_beyond(
    broker: Broker, three_segments: list[int]
) -> None:
    log = broker.partition_log(TOPIC, 0)
    assert log is not None
    # A leader whose followers have not caught up: the high watermark trails the log end.
    log.high_watermark = 5
    consumer = list_offsets(broker, 0, -1, max_num_offsets=10)
    assert consumer.old_style_offsets == [5, 3, 0]
    replica = list_offsets(broker, 0, -1, max_num_offsets=10, replica_id=1)
    assert replica.old_style_offsets == [9, 7, 3, 0]


def test_v0_errors(broker: Broker, three_segments: list[int]) -> None:
    for timestamp in (-3, -4, -5, -100):
        assert list_offsets(broker, 0, timestamp).error_code == ErrorCode.UNSUPPORTED_VERSION
    assert list_offsets(broker, 0, -1, partition=9).error_code == (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    )
    assert list_offsets(broker, 0, -1, topic="nope").error_code == (
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    )
    # Kafka fails a negative count on the array it cannot size.
    assert list_offsets(broker, 0, -1, max_num_offsets=-1).error_code == (
        ErrorCode.UNKNOWN_SERVER_ERROR
    )


# -- ListOffsets v1+: what each version may ask --------------------------------------------------


@pytest.mark.parametrize(
    ("timestamp", "first_version"),
    [(-1, 1), (-2, 1), (-3, 7), (-4, 8), (-5, 10)],
)
def test_special_timestamps_need_their_version(
    broker: Broker, timestamp: int, first_version: int
) -> None:
    produce(broker, 3)
    for version in range(1, 11):
        code = list_offsets(broker, version, timestamp).error_code
        expected = ErrorCode.NONE if version >= first_version else ErrorCode.UNSUPPORTED_VERSION
        assert code == expected, f"v{version}"


def test_unknown_negative_timestamp_and_repeated_partition(broker: Broker) -> None:
    assert list_offsets(broker, 10, -6).error_code == ErrorCode.UNSUPPORTED_VERSION
    part = ListOffsetsPartition(partition_index=0, timestamp=-1)
    other = ListOffsetsPartition(partition_index=1, timestamp=-1)
    request = ListOffsetsRequest(
        replica_id=-1,
        topics=[
            ListOffsetsTopic(name=TOPIC, partitions=[part, other]),
            ListOffsetsTopic(name=TOPIC, partitions=[part]),
        ],
    )
    response = handle_list_offsets(ctx(broker, 2, 5), request)
    codes = [[p.error_code for p in t.partitions] for t in response.topics]
    assert codes == [[ErrorCode.INVALID_REQUEST, 0], [ErrorCode.INVALID_REQUEST]]


def test_replicas_list_up_to_the_log_end(broker: Broker) -> None:
    produce(broker, 4)
    log = broker.partition_log(TOPIC, 0)
    assert log is not None
    log.high_watermark = 1
    assert list_offsets(broker, 5, -1).offset == 1
    assert list_offsets(broker, 5, -1, replica_id=2).offset == 4


# -- OffsetCommit / OffsetFetch v0 ---------------------------------------------------------------


def commit(
    broker: Broker,
    version: int,
    group: str,
    offsets: dict[tuple[str, int], int],
    metadata: str = "m",
) -> dict[tuple[str, int], int]:
    topics: dict[str, list[OffsetCommitRequestPartition]] = {}
    for (topic, partition), offset in offsets.items():
        topics.setdefault(topic, []).append(
            OffsetCommitRequestPartition(
                partition_index=partition, committed_offset=offset, committed_metadata=metadata
            )
        )
    request = OffsetCommitRequest(
        group_id=group,
        generation_id_or_member_epoch=-1,
        member_id="",
        topics=[OffsetCommitRequestTopic(name, parts) for name, parts in topics.items()],
    )
    response = answered(handle_offset_commit(ctx(broker, 8, version), request))
    return {
        (t.name, p.partition_index): p.error_code for t in response.topics for p in t.partitions
    }


def fetch(
    broker: Broker, version: int, group: str, partitions: list[tuple[str, int]]
) -> dict[tuple[str, int], tuple[int, str | None, int]]:
    topics: dict[str, list[int]] = {}
    for topic, partition in partitions:
        topics.setdefault(topic, []).append(partition)
    request = OffsetFetchRequest(
        group_id=group,
        topics=[OffsetFetchRequestTopic(name, parts) for name, parts in topics.items()],
    )
    response = answered(handle_offset_fetch(ctx(broker, 9, version), request))
    return {
        (t.name, p.partition_index): (p.committed_offset, p.metadata, p.error_code)
        for t in response.topics
        for p in t.partitions
    }


def test_v0_commits_are_read_back_by_v0_only(broker: Broker) -> None:
    tp0, tp1 = (TOPIC, 0), (TOPIC, 1)
    assert commit(broker, 0, "old", {tp0: 5, tp1: 7}) == {tp0: 0, tp1: 0}
    # The metadata is not kept (ZooKeeper held only the offset).
    assert fetch(broker, 0, "old", [tp0, tp1]) == {tp0: (5, "", 0), tp1: (7, "", 0)}
    # Kept apart from the group coordinator's offsets, in both directions.
    assert fetch(broker, 1, "old", [tp0]) == {tp0: (-1, "", 0)}
    assert commit(broker, 2, "old", {tp0: 9}) == {tp0: 0}
    assert fetch(broker, 2, "old", [tp0])[tp0][0] == 9
    assert fetch(broker, 0, "old", [tp0])[tp0][0] == 5
    assert fetch(broker, 0, "other", [tp0]) == {tp0: (-1, "", 0)}
    # A later commit replaces the offset.
    assert commit(broker, 0, "old", {tp0: 6}) == {tp0: 0}
    assert fetch(broker, 0, "old", [tp0])[tp0][0] == 6


def test_v0_offsets_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    broker = open_broker(data)
    try:
        broker.create_topic(TOPIC, 1)
        assert commit(broker, 0, "g", {(TOPIC, 0): 42}) == {(TOPIC, 0): 0}
    finally:
        shut(broker)
    broker = open_broker(data)
    try:
        assert fetch(broker, 0, "g", [(TOPIC, 0)]) == {(TOPIC, 0): (42, "", 0)}
    finally:
        shut(broker)


def test_v0_unknown_partitions_and_bad_input(broker: Broker) -> None:
    tp0, missing, nope = (TOPIC, 0), (TOPIC, 5), ("nope", 0)
    assert commit(broker, 0, "g", {tp0: 1, missing: 2, nope: 3}) == {
        tp0: ErrorCode.NONE,
        missing: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        nope: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    # OffsetFetch v0 answers -1 without an error for a partition that does not exist.
    assert fetch(broker, 0, "g", [missing, nope]) == {missing: (-1, "", 0), nope: (-1, "", 0)}
    too_long = "x" * 4097
    assert commit(broker, 0, "g", {tp0: 8}, metadata=too_long) == {
        tp0: ErrorCode.OFFSET_METADATA_TOO_LARGE
    }
    assert fetch(broker, 0, "g", [tp0])[tp0][0] == 1
    # A group id that is no valid ZooKeeper path fails as Kafka's ZooKeeper refused it.
    for group in ("", "a//b", "..", "tab\tgroup"):
        assert commit(broker, 0, group, {tp0: 1}) == {tp0: ErrorCode.UNKNOWN_SERVER_ERROR}
        assert fetch(broker, 0, group, [tp0]) == {tp0: (-1, "", ErrorCode.UNKNOWN_SERVER_ERROR)}
    # A "/" inside a group id is a deeper path, as in Kafka's ZooKeeper.
    assert commit(broker, 0, "a/b", {tp0: 3}) == {tp0: 0}
    assert fetch(broker, 0, "a/b", [tp0])[tp0][0] == 3


# -- OffsetCommit v1+ for topics that do not exist -------------------------------------------------


@pytest.mark.parametrize("version", [1, 2, 5, 8, 9])
def test_commit_to_unknown_topic_or_partition(broker: Broker, version: int) -> None:
    tp0, missing, nope = (TOPIC, 0), (TOPIC, 2), ("nope", 0)
    codes = commit(broker, version, f"g{version}", {tp0: 4, missing: 4, nope: 4})
    assert codes == {
        tp0: ErrorCode.NONE,
        missing: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        nope: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    fetched = fetch(broker, min(version, 7), f"g{version}", [tp0, missing, nope])
    # Nothing was stored for them.
    assert fetched[tp0][0] == 4 and fetched[missing][0] == -1 and fetched[nope][0] == -1
    # Only unknown ones: answered without the coordinator, which is not even asked for a
    # group it could not accept (an empty group id).
    assert commit(broker, version, "", {nope: 1}) == {nope: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
    assert commit(broker, version, "", {tp0: 1}) == {tp0: ErrorCode.INVALID_GROUP_ID}


# -- admin and replication APIs at v0 ---------------------------------------------------------------


def test_versions_registered_down_to_kafka_39s() -> None:
    expected = {2: 0, 7: 0, 8: 0, 9: 0, 11: 0, 19: 0, 20: 0, 23: 0, 32: 0}
    assert {key: HANDLERS[key].min_version for key in expected} == expected


def test_create_topics_v0_and_v1(broker: Broker) -> None:
    def create(version: int, name: str, validate_only: bool = False) -> Any:
        request = CreateTopicsRequest(
            topics=[CreatableTopic(name=name, num_partitions=3, replication_factor=1)],
            timeout_ms=1_000,
            validate_only=validate_only,
        )
        response = handle_create_topics(ctx(broker, 19, version), request)
        if inspect.iscoroutine(response):  # a single broker makes the logs in its worker pool
            response = asyncio.run(response)
        return CreateTopicsResponse.decode(response.encode(version), version).topics[0]

    made = create(0, "v0topic")
    assert (made.name, made.error_code) == ("v0topic", ErrorCode.NONE)
    record = broker.metadata.get_topic("v0topic")
    assert record is not None and record.num_partitions == 3
    # v0 has no error message on the wire; v1 does, and validate_only.
    again = create(0, "v0topic")
    assert (again.error_code, again.error_message) == (ErrorCode.TOPIC_ALREADY_EXISTS, "")
    again = create(1, "v0topic")
    assert again.error_code == ErrorCode.TOPIC_ALREADY_EXISTS and again.error_message
    checked = create(1, "v1topic", validate_only=True)
    assert checked.error_code == ErrorCode.NONE
    assert broker.metadata.get_topic("v1topic") is None


def test_delete_topics_v0(tmp_path: Path) -> None:
    b = Broker.open(
        BrokerConfig.load(None, {"log.dirs": str(tmp_path / "d"), "delete.topic.enable": "false"})
    )
    try:
        b.create_topic("locked", 1)
        request = DeleteTopicsRequest(topic_names=["locked", "nope"])
        response = handle_delete_topics(ctx(b, 20, 0), request)
        read = DeleteTopicsResponse.decode(response.encode(0), 0)
        # TOPIC_DELETION_DISABLED came with v3: older versions get INVALID_REQUEST.
        assert [(r.name, r.error_code) for r in read.responses] == [
            ("locked", ErrorCode.INVALID_REQUEST),
            ("nope", ErrorCode.INVALID_REQUEST),
        ]
    finally:
        shut(b)
    b = open_broker(tmp_path / "e")
    try:
        b.create_topic("gone", 1)
        request = DeleteTopicsRequest(topic_names=["gone", "nope"])
        response = handle_delete_topics(ctx(b, 20, 0), request)
        read = DeleteTopicsResponse.decode(response.encode(0), 0)
        assert [(r.name, r.error_code) for r in read.responses] == [
            ("gone", ErrorCode.NONE),
            ("nope", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ]
        assert b.metadata.get_topic("gone") is None
    finally:
        shut(b)


def test_describe_configs_v0_says_is_default(broker: Broker) -> None:
    broker.set_topic_configs(TOPIC, {"retention.ms": "1234"})
    request = DescribeConfigsRequest(
        resources=[
            DescribeConfigsResource(
                resource_type=2,
                resource_name=TOPIC,
                configuration_keys=["retention.ms", "cleanup.policy"],
            ),
            DescribeConfigsResource(resource_type=2, resource_name="nope"),
        ]
    )
    response = handle_describe_configs(ctx(broker, 32, 0), request)
    ours, missing = DescribeConfigsResponse.decode(response.encode(0), 0).results
    entries = {c.name: (c.value, c.is_default, c.read_only, c.synonyms) for c in ours.configs}
    assert entries == {
        "retention.ms": ("1234", False, False, []),
        "cleanup.policy": ("delete", True, False, []),
    }
    assert missing.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_offset_for_leader_epoch_v0_v1(broker: Broker) -> None:
    produce(broker, 4)
    request = OffsetForLeaderEpochRequest(
        topics=[
            OffsetForLeaderTopic(
                topic=TOPIC,
                partitions=[
                    OffsetForLeaderPartition(partition=0, leader_epoch=0),
                    OffsetForLeaderPartition(partition=1, leader_epoch=3),
                    OffsetForLeaderPartition(partition=7, leader_epoch=0),
                ],
            )
        ]
    )
    answers = {}
    for version in (0, 1):
        response = handle_offsets_for_leader_epoch_request(ctx(broker, 23, version), request)
        read = OffsetForLeaderEpochResponse.decode(response.encode(version), version)
        answers[version] = [
            (p.partition, p.error_code, p.leader_epoch, p.end_offset)
            for p in read.topics[0].partitions
        ]
    unknown = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    # v0's answer carries no epoch (read back as -1).
    assert answers[0] == [(0, 0, -1, 4), (1, 0, -1, -1), (7, unknown, -1, -1)]
    assert answers[1] == [(0, 0, 0, 4), (1, 0, -1, -1), (7, unknown, -1, -1)]
