"""Dead-letter copies: the topic rules, the copied record, the batch, the copier's answers."""

from __future__ import annotations

import pytest

from strom.coordinator.share.dead_letter import (
    CopyOutcome,
    DeadLetterCopier,
    DeadLetterReason,
    build_copy_batch,
    check_topic,
    dead_letter_partition,
    dead_letter_record,
)
from strom.protocol.errors import ErrorCode
from strom.protocol.records.codec import Record, decode_records


def test_partition_follows_the_source_partition() -> None:
    assert [dead_letter_partition(p, 3) for p in range(7)] == [0, 1, 2, 0, 1, 2, 0]


@pytest.mark.parametrize(
    ("topic", "kwargs", "expected"),
    [
        ("dlq.orders", {"exists": True, "enabled_on_topic": True, "auto_create": False}, None),
        ("dlq.orders", {"exists": False, "enabled_on_topic": False, "auto_create": True}, None),
        ("", {"exists": False, "enabled_on_topic": False, "auto_create": True}, "is empty"),
        (
            "__consumer_offsets",
            {"exists": True, "enabled_on_topic": True, "auto_create": False},
            "cannot start with __",
        ),
        (
            "dlq.orders",
            {"exists": True, "enabled_on_topic": False, "auto_create": True},
            "DLQ is not enabled on configured DLQ topic",
        ),
        (
            "dlq.orders",
            {"exists": False, "enabled_on_topic": False, "auto_create": False},
            "does not exist and auto create is disabled",
        ),
        (
            "orders-dlq",
            {"exists": True, "enabled_on_topic": True, "auto_create": False},
            "does not comply with the DLQ topic prefix",
        ),
    ],
)
def test_topic_rules(topic: str, kwargs: dict[str, bool], expected: str | None) -> None:
    error = check_topic("g", topic, prefix="dlq.", **kwargs)
    if expected is None:
        assert error is None
    else:
        assert error is not None and expected in error


def test_no_prefix_means_any_name() -> None:
    assert (
        check_topic("g", "x", prefix="", exists=True, enabled_on_topic=True, auto_create=False)
        is None
    )


def test_copy_keeps_the_record_and_says_where_from() -> None:
    source = Record(41, 1_700_000_000_000, b"k", b"v", [("trace", b"t1"), ("n", None)])
    copy = dead_letter_record(
        source,
        offset=41,
        topic="orders",
        partition=2,
        group_id="billing",
        delivery_count=5,
        reason=DeadLetterReason.DELIVERY_COUNT_EXCEEDED,
        copy_record=True,
        now_ms=1,
    )
    assert (copy.key, copy.value, copy.timestamp) == (b"k", b"v", 1_700_000_000_000)
    assert copy.headers == [
        ("trace", b"t1"),
        ("n", None),
        ("__dlq.errors.topic", b"orders"),
        ("__dlq.errors.partition", b"2"),
        ("__dlq.errors.offset", b"41"),
        ("__dlq.errors.group", b"billing"),
        ("__dlq.errors.delivery.count", b"5"),
        ("__dlq.errors.message", b"Offset delivery count exceeded the threshold."),
    ]
    bare = dead_letter_record(
        source,
        offset=41,
        topic="orders",
        partition=2,
        group_id="billing",
        delivery_count=1,
        reason=DeadLetterReason.REJECTED,
        copy_record=False,
        now_ms=1,
    )
    assert (bare.key, bare.value) == (None, None)
    assert bare.headers[-1] == ("__dlq.errors.message", b"Offset rejected by client.")
    gone = dead_letter_record(
        None,
        offset=3,
        topic="orders",
        partition=0,
        group_id="g",
        delivery_count=1,
        reason=DeadLetterReason.REJECTED,
        copy_record=True,
        now_ms=77,
    )
    assert (gone.key, gone.value, gone.timestamp) == (None, None, 77)


def test_batch_carries_the_plan_identity() -> None:
    copier = DeadLetterCopier()
    assert copier.needs_producer
    assert copier.plan([1, 2], 0) is None
    copier.assign_producer(4242)
    plan = copier.plan([5, 9], 1)
    assert plan is not None and plan.offsets == (5, 9) and plan.base_sequence == 0
    records = [Record(5, 10, b"a", b"1", []), Record(9, 12, None, b"2", [])]
    header, decoded = decode_records(build_copy_batch(records, plan))
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (4242, 0, 0)
    assert [(r.offset, r.timestamp, r.value) for r in decoded] == [(0, 10, b"1"), (1, 12, b"2")]


def test_answers() -> None:
    copier = DeadLetterCopier()
    copier.assign_producer(7)
    plan = copier.plan([1, 2, 3], 0)
    assert plan is not None
    assert copier.plan([1, 2, 3, 4], 0) is plan  # in flight: the same plan again
    assert copier.answered(plan, ErrorCode.NOT_LEADER_OR_FOLLOWER) is CopyOutcome.RETRY
    assert copier.answered(plan, ErrorCode.NONE) is CopyOutcome.DONE
    assert copier.next_sequence == 3
    plan = copier.plan([4], 0)
    assert plan is not None and plan.base_sequence == 3
    assert copier.answered(plan, ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER) is CopyOutcome.NEW_PRODUCER
    assert copier.needs_producer
    copier.assign_producer(8)
    plan = copier.plan([4], 0)
    assert plan is not None and (plan.producer_id, plan.base_sequence) == (8, 0)
    assert copier.answered(plan, ErrorCode.MESSAGE_TOO_LARGE) is CopyOutcome.GIVE_UP
    assert copier.in_flight is None
    assert copier.plan([5], 2) is None  # another partition: another identity
    assert copier.needs_producer
    with pytest.raises(ValueError):
        copier.answered(plan, ErrorCode.NONE)


def test_sequences_wrap() -> None:
    copier = DeadLetterCopier()
    copier.assign_producer(1)
    copier.next_sequence = (1 << 31) - 2
    plan = copier.plan([1, 2, 3], 0)
    assert plan is not None
    copier.answered(plan, ErrorCode.NONE)
    assert copier.next_sequence == 1
