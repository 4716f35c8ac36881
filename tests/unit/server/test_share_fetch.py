"""ShareFetch and ShareAcknowledge against an in-process broker: share sessions, bad
acknowledgements (an error, never a crash), redelivery and the persisted state."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strom.clock import ManualClock
from strom.config import BrokerConfig
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.share_acknowledge_request import (
    AcknowledgementBatch as AckBatch,
)
from strom.protocol.messages.share_acknowledge_request import (
    AcknowledgePartition,
    AcknowledgeTopic,
    ShareAcknowledgeRequest,
)
from strom.protocol.messages.share_fetch_request import (
    AcknowledgementBatch,
    FetchPartition,
    FetchTopic,
    ShareFetchRequest,
)
from strom.protocol.records.codec import Record, build_batch
from strom.protocol.records.validation import validate_batches
from strom.security.acl import (
    AccessControlEntry,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourcePattern,
    ResourceType,
)
from strom.security.principal import KafkaPrincipal
from strom.server.broker import Broker
from strom.server.context import RequestContext
from strom.server.handlers.share_fetch import handle_share_acknowledge, handle_share_fetch

TOPIC = "jobs"
G = "workers"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker.open(
        BrokerConfig.load(
            None,
            {"log.dirs": str(tmp_path / "data"), "group.share.delivery.count.limit": "2"},
        )
    )
    b.create_topic(TOPIC, 1)
    # As the group coordinator does before assigning the partition: its share state exists,
    # the start offset left to the share partition leader.
    outcome = b.share_state.initialize((G, topic_id(b), 0), 0, -1)
    assert not hasattr(outcome, "__await__") and outcome.error == ErrorCode.NONE
    yield b
    b.txns.close()
    b.groups.close()
    b.share_state.close()
    b.logs.close()
    b.io.shutdown(wait=True)


def topic_id(b: Broker) -> uuid.UUID:
    record = b.metadata.get_topic(TOPIC)
    assert record is not None
    return record.topic_id


def append(b: Broker, *values: bytes) -> None:
    plog = b.partition_log(TOPIC, 0)
    assert plog is not None
    for v in values:
        data = build_batch([Record(0, 1_000, None, v)])
        plog.append_as_leader(bytearray(data), validate_batches(data), 0, 10_000)
    plog.update_high_watermark(plog.log_end_offset)


def ctx(b: Broker, api_key: int, version: int = 1) -> RequestContext:
    return RequestContext(b, api_key, version, 1, "test", "127.0.0.1:1", bytearray())


def fetch(
    b: Broker,
    member: str,
    epoch: int,
    acks: list[tuple[int, int, list[int]]] = (),  # type: ignore[assignment]
    max_records: int = 10,
) -> Any:
    partition = FetchPartition(
        partition_index=0,
        acknowledgement_batches=[
            AcknowledgementBatch(first, last, types) for first, last, types in acks
        ],
    )
    request = ShareFetchRequest(
        group_id=G,
        member_id=member,
        share_session_epoch=epoch,
        max_wait_ms=0,
        max_records=max_records,
        topics=[FetchTopic(topic_id(b), [partition])],
    )
    response = handle_share_fetch(ctx(b, 78), request)
    assert not hasattr(response, "__await__")
    return response


def acquired(response: Any) -> list[tuple[int, int, int]]:
    return [
        (r.first_offset, r.last_offset, r.delivery_count)
        for t in response.responses
        for p in t.partitions
        for r in p.acquired_records
    ]


def ack_error(response: Any) -> int:
    (topic,) = response.responses
    (partition,) = topic.partitions
    return int(partition.acknowledge_error_code)


def test_sessions_and_acknowledgements(broker: Broker) -> None:
    b = broker
    first = fetch(b, "m1", 0)  # opens the session and sets the start: the end of the log
    assert first.error_code == 0 and acquired(first) == []
    append(b, b"a", b"b", b"c")
    got = fetch(b, "m1", 1)
    assert acquired(got) == [(0, 2, 1)]
    assert fetch(b, "m1", 5).error_code == ErrorCode.INVALID_SHARE_SESSION_EPOCH
    assert fetch(b, "nobody", 1).error_code == ErrorCode.SHARE_SESSION_NOT_FOUND
    assert fetch(b, "m1", 0, [(0, 0, [1])]).error_code == ErrorCode.INVALID_REQUEST
    # Bad acknowledgements: an error for the partition, nothing changes, the session goes on.
    assert ack_error(fetch(b, "m1", 2, [(2, 1, [1])], max_records=0)) == ErrorCode.INVALID_REQUEST
    assert ack_error(fetch(b, "m1", 3, [(0, 2, [7])], max_records=0)) == ErrorCode.INVALID_REQUEST
    assert ack_error(fetch(b, "m1", 4, [(0, 2, [1, 1])], max_records=0)) == (
        ErrorCode.INVALID_REQUEST
    )
    assert ack_error(fetch(b, "m1", 5, [(0, 9, [1])], max_records=0)) == (
        ErrorCode.INVALID_RECORD_STATE
    )
    fetch(b, "m2", 0)
    assert ack_error(fetch(b, "m2", 1, [(0, 0, [1])], max_records=0)) == (
        ErrorCode.INVALID_RECORD_STATE
    )
    # Accept a, release b, reject c: only b comes back, to whoever fetches.
    assert ack_error(fetch(b, "m1", 6, [(0, 2, [1, 2, 3])], max_records=0)) == 0
    assert acquired(fetch(b, "m2", 2)) == [(1, 1, 2)]
    # Past the delivery-count limit (2) a released record is archived.
    ack = ShareAcknowledgeRequest(
        group_id=G,
        member_id="m2",
        share_session_epoch=3,
        topics=[AcknowledgeTopic(topic_id(b), [AcknowledgePartition(0, [AckBatch(1, 1, [2])])])],
    )
    answer = handle_share_acknowledge(ctx(b, 79), ack)
    assert not hasattr(answer, "__await__")
    assert answer.responses[0].partitions[0].error_code == 0
    assert acquired(fetch(b, "m1", 7)) == []
    sp = b.shares.partitions[(G, TOPIC, 0)]
    assert sp.start_offset == 3 and sp.in_flight == 0
    # The state is in __share_group_state.
    summary = b.share_state.summary((G, topic_id(b), 0))
    assert not hasattr(summary, "__await__")
    assert summary.state is not None and summary.state.start_offset == 3
    assert summary.state.delivery_complete_count == 0


def test_uninitialized_state_is_an_error_for_the_partition(broker: Broker) -> None:
    b = broker
    request = ShareFetchRequest(
        group_id="never-initialized",
        member_id="m1",
        share_session_epoch=0,
        max_wait_ms=0,
        max_records=10,
        topics=[FetchTopic(topic_id(b), [FetchPartition(partition_index=0)])],
    )
    response = handle_share_fetch(ctx(b, 78), request)
    assert not hasattr(response, "__await__")
    (topic,) = response.responses
    (partition,) = topic.partitions
    assert partition.error_code == ErrorCode.UNKNOWN_SERVER_ERROR


def test_final_epoch_releases(broker: Broker) -> None:
    b = broker
    fetch(b, "m1", 0)
    append(b, b"x", b"y")
    assert acquired(fetch(b, "m1", 1)) == [(0, 1, 1)]
    closing = fetch(b, "m1", -1, [(0, 0, [1])])
    assert ack_error(closing) == 0 and acquired(closing) == []
    assert fetch(b, "m1", 2).error_code == ErrorCode.SHARE_SESSION_NOT_FOUND
    assert acquired(fetch(b, "m2", 0)) == [(1, 1, 2)]  # y, released when m1 left


def test_a_partition_added_before_its_topic_was_known_is_read_once_it_is(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker's metadata can lag the client's (in a cluster each broker hears of a new topic
    on its own): the partition stays in the session, unnamed by the client's later requests,
    and is read as soon as the broker knows the topic."""
    b = broker
    known = b.metadata.topic_by_id
    monkeypatch.setattr(b.metadata, "topic_by_id", lambda _topic_id: None)
    first = fetch(b, "m1", 0)
    (topic,) = first.responses
    assert [p.error_code for p in topic.partitions] == [ErrorCode.UNKNOWN_TOPIC_ID]
    monkeypatch.setattr(b.metadata, "topic_by_id", known)

    def incremental(epoch: int) -> Any:
        request = ShareFetchRequest(
            group_id=G, member_id="m1", share_session_epoch=epoch, max_wait_ms=0, max_records=10
        )
        response = handle_share_fetch(ctx(b, 78), request)
        assert not hasattr(response, "__await__")
        return response

    assert acquired(incremental(1)) == []  # loaded now, starting at the end of the log
    append(b, b"a", b"b")
    assert acquired(incremental(2)) == [(0, 1, 1)]


def test_renew_extends_a_lock(tmp_path: Path) -> None:
    """Renew (KIP-1222, ShareFetch v2 with is_renew_ack): the record stays locked to its
    member for another lock duration from the renewal; a renew request carrying another type
    is INVALID_REQUEST for the partition."""
    clock = ManualClock()
    b = Broker.open(
        BrokerConfig.load(
            None,
            {"log.dirs": str(tmp_path / "data"), "group.share.record.lock.duration.ms": "30000"},
        ),
        clock,
    )
    try:
        b.create_topic(TOPIC, 1)
        b.share_state.initialize((G, topic_id(b), 0), 0, -1)
        fetch(b, "m1", 0)
        append(b, b"slow")
        assert acquired(fetch(b, "m1", 1)) == [(0, 0, 1)]

        def renew(epoch: int, ack_type: int) -> int:
            request = ShareFetchRequest(
                group_id=G,
                member_id="m1",
                share_session_epoch=epoch,
                max_wait_ms=0,
                max_records=10,
                is_renew_ack=True,
                topics=[
                    FetchTopic(
                        topic_id(b),
                        [
                            FetchPartition(
                                0, acknowledgement_batches=[AcknowledgementBatch(0, 0, [ack_type])]
                            )
                        ],
                    )
                ],
            )
            response = handle_share_fetch(ctx(b, 78, 2), request)
            assert not hasattr(response, "__await__")
            assert acquired(response) == []  # a renew request fetches nothing
            return ack_error(response)

        clock.advance(20_000)
        assert renew(2, 1) == ErrorCode.INVALID_REQUEST  # accept in a renew request
        assert renew(3, 4) == 0
        clock.advance(20_000)  # 40 s after the delivery, 20 s after the renewal
        fetch(b, "m2", 0)
        assert acquired(fetch(b, "m2", 1)) == []
        clock.advance(15_000)  # the renewed lock has passed
        assert acquired(fetch(b, "m2", 2)) == [(0, 0, 2)]
    finally:
        b.txns.close()
        b.groups.close()
        b.share_state.close()
        b.logs.close()
        b.io.shutdown(wait=True)


def test_a_new_session_keeps_the_members_records(broker: Broker) -> None:
    """A member opening a new session (epoch 0, as librdkafka does after a session error)
    keeps the records it holds, as in Kafka: it acknowledges them in the new session, and
    nobody else gets them meanwhile."""
    b = broker
    fetch(b, "m1", 0)
    append(b, b"a", b"b")
    assert acquired(fetch(b, "m1", 1)) == [(0, 1, 1)]
    fetch(b, "m1", 0, max_records=0)
    fetch(b, "m2", 0)
    assert acquired(fetch(b, "m2", 1)) == []
    assert ack_error(fetch(b, "m1", 1, [(0, 1, [1])], max_records=0)) == 0
    sp = b.shares.partitions[(G, TOPIC, 0)]
    assert sp.start_offset == 2 and sp.in_flight == 0


def test_a_topic_resolved_late_is_authorized_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition whose topic the broker learns of after the session named it is authorized
    (READ on the topic) before anything of it is read: a member with READ on the group only
    gets nothing."""
    b = Broker.open(
        BrokerConfig.load(
            None,
            {
                "log.dirs": str(tmp_path / "data"),
                "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
            },
        )
    )
    try:
        b.create_topic(TOPIC, 1)
        b.share_state.initialize((G, topic_id(b), 0), 0, -1)
        assert b.authorizer is not None
        group_read = AccessControlEntry(
            "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW
        )
        b.authorizer.replace_all(
            {ResourcePattern(ResourceType.GROUP, G, PatternType.LITERAL): [group_read]}
        )
        alice = RequestContext(
            b,
            78,
            1,
            1,
            "test",
            "127.0.0.1:1",
            bytearray(),
            principal=KafkaPrincipal("User", "alice"),
        )

        def share_fetch(epoch: int, name_it: bool) -> Any:
            topics = (
                [FetchTopic(topic_id(b), [FetchPartition(partition_index=0)])] if name_it else []
            )
            request = ShareFetchRequest(
                group_id=G,
                member_id="m1",
                share_session_epoch=epoch,
                max_wait_ms=0,
                max_records=10,
                topics=topics,
            )
            response = handle_share_fetch(alice, request)
            assert not hasattr(response, "__await__")
            return response

        known = b.metadata.topic_by_id
        monkeypatch.setattr(b.metadata, "topic_by_id", lambda _topic_id: None)
        share_fetch(0, name_it=True)
        monkeypatch.setattr(b.metadata, "topic_by_id", known)
        append(b, b"secret")
        assert acquired(share_fetch(1, name_it=False)) == []
        assert acquired(share_fetch(2, name_it=False)) == []
        assert (G, TOPIC, 0) not in b.shares.partitions
    finally:
        b.txns.close()
        b.groups.close()
        b.share_state.close()
        b.logs.close()
        b.io.shutdown(wait=True)
