"""Dead-letter copies of share groups (KIP-1191): what is written, where, and exactly once.

A share group with the group config `errors.deadletterqueue.topic.name` copies every record it
gives up on (rejected by a consumer, or archived at the delivery-count limit) to that topic,
on partition `source partition % partitions of the dead-letter topic` (Kafka's choice). The
copy has the record's key, value, headers and timestamp, and Kafka's context headers:

    __dlq.errors.topic           source topic
    __dlq.errors.partition       source partition
    __dlq.errors.offset          source offset
    __dlq.errors.group           share group
    __dlq.errors.delivery.count  delivery count when it was given up
    __dlq.errors.message         why: "Offset rejected by client." or
                                 "Offset delivery count exceeded the threshold."

(With the group config `errors.deadletterqueue.copy.record.enable=false` only the context
headers are written, key and value null, as Kafka's default does; Strom copies by default.)

The topic must be usable (Kafka's rules, `check_topic`): not internal (`__`), named with the
broker's `errors.deadletterqueue.topic.name.prefix` (default `dlq.`) when that is set, and
either existing with the topic config `errors.deadletterqueue.group.enable=true` or created
on first use when the broker has `errors.deadletterqueue.auto.create.topics.enable`.

Exactly once. Records given up on wait in the share partition's state as Archiving (Kafka's
state 3, persisted). Each share partition copies with an idempotent producer identity of its
own (a producer id, epoch 0, sequences from 0), one batch at a time, following
`DeadLetterCopier`:

  1. `plan` picks the first Archiving offsets and the batch's base sequence: the plan.
  2. The owner persists the share state with the plan in it, and only then sends the batch
     through the broker's produce path.
  3. The answer: `done` (also for a duplicate) advances the sequence and the offsets become
     Archived; a retriable error sends the same plan again.

A broker killed anywhere in between restarts from its persisted state: if the plan was not
persisted nothing was sent; if it was, the same batch (same producer id, epoch and sequences)
is sent again, and the dead-letter partition's producer state answers it as a duplicate when
the first one was appended (it is that producer's last batch, which Kafka and Strom always
remember, also in snapshots). So a copy is never lost and never written twice. A producer
whose sequence the partition no longer accepts (OUT_OF_ORDER_SEQUENCE_NUMBER after its state
was truncated away, or a dead-letter topic deleted and created again) gets a new producer id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Final

from strom.protocol.errors import ErrorCode
from strom.protocol.records.codec import Record, build_batch

__all__ = [
    "CAUSE_DELIVERY_COUNT_EXCEEDED",
    "CAUSE_REJECTED",
    "CopyOutcome",
    "CopyPlan",
    "DeadLetterCopier",
    "DeadLetterReason",
    "build_copy_batch",
    "check_topic",
    "dead_letter_partition",
    "dead_letter_record",
]

HEADER_TOPIC: Final = "__dlq.errors.topic"
HEADER_PARTITION: Final = "__dlq.errors.partition"
HEADER_OFFSET: Final = "__dlq.errors.offset"
HEADER_GROUP: Final = "__dlq.errors.group"
HEADER_DELIVERY_COUNT: Final = "__dlq.errors.delivery.count"
HEADER_MESSAGE: Final = "__dlq.errors.message"
CAUSE_REJECTED: Final = "Offset rejected by client."
CAUSE_DELIVERY_COUNT_EXCEEDED: Final = "Offset delivery count exceeded the threshold."

MAX_PLAN_RECORDS: Final = 500
SEQUENCE_WRAP: Final = 1 << 31


class DeadLetterReason(IntEnum):
    REJECTED = 1
    DELIVERY_COUNT_EXCEEDED = 2

    @property
    def message(self) -> str:
        return (
            CAUSE_REJECTED if self is DeadLetterReason.REJECTED else (CAUSE_DELIVERY_COUNT_EXCEEDED)
        )


def dead_letter_partition(source_partition: int, partitions: int) -> int:
    return source_partition % partitions


def check_topic(
    group_id: str,
    topic: str,
    *,
    prefix: str,
    exists: bool,
    enabled_on_topic: bool,
    auto_create: bool,
) -> str | None:
    """Why `topic` cannot take the group's dead letters (Kafka's messages), or None."""
    if not topic:
        return f"Configured DLQ topic name in share group: {group_id} is empty."
    if topic.startswith("__"):
        return (
            f"Configured DLQ topic name in share group: {group_id} cannot start with __, "
            f"topic: {topic}."
        )
    if exists and not enabled_on_topic:
        return f"DLQ is not enabled on configured DLQ topic for share group: {group_id}, topic: {topic}."
    if not exists and not auto_create:
        return (
            "DLQ topic does not exist and auto create is disabled on cluster for share group: "
            f"{group_id}, topic: {topic}."
        )
    if prefix and not topic.startswith(prefix):
        return (
            "Configured DLQ topic name does not comply with the DLQ topic prefix in share "
            f"group: {group_id}, topic: {topic}, prefix: {prefix}."
        )
    return None


def dead_letter_record(
    source: Record | None,
    *,
    offset: int,
    topic: str,
    partition: int,
    group_id: str,
    delivery_count: int,
    reason: DeadLetterReason,
    copy_record: bool,
    now_ms: int,
) -> Record:
    """The copy of one record (`source` None: the log no longer has it, context only).

    `Record.offset` is the source offset; `build_copy_batch` renumbers."""
    context: list[tuple[str, bytes | None]] = [
        (HEADER_TOPIC, topic.encode()),
        (HEADER_PARTITION, str(partition).encode()),
        (HEADER_OFFSET, str(offset).encode()),
        (HEADER_GROUP, group_id.encode()),
        (HEADER_DELIVERY_COUNT, str(delivery_count).encode()),
        (HEADER_MESSAGE, reason.message.encode()),
    ]
    if source is None or not copy_record:
        timestamp = source.timestamp if source is not None else now_ms
        return Record(offset, timestamp, None, None, context)
    return Record(offset, source.timestamp, source.key, source.value, [*source.headers, *context])


def build_copy_batch(records: Sequence[Record], plan: CopyPlan) -> bytes:
    """The idempotent batch of a plan's copies (offsets from 0; the log assigns them)."""
    renumbered = [Record(i, r.timestamp, r.key, r.value, r.headers) for i, r in enumerate(records)]
    return build_batch(
        renumbered,
        base_offset=0,
        producer_id=plan.producer_id,
        producer_epoch=plan.producer_epoch,
        base_sequence=plan.base_sequence,
    )


# -- exactly once ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CopyPlan:
    """One batch of copies: these source offsets, under this identity and base sequence."""

    producer_id: int
    producer_epoch: int
    base_sequence: int
    dead_letter_partition: int
    offsets: tuple[int, ...]


class CopyOutcome(Enum):
    DONE = "done"  # the offsets are copied: Archived
    RETRY = "retry"  # send the same plan again later
    NEW_PRODUCER = "new producer"  # the partition refuses the identity: get another, re-plan
    GIVE_UP = "give up"  # cannot be copied (too large, refused): archive without a copy


_RETRIABLE: Final = frozenset(
    {
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorCode.REQUEST_TIMED_OUT,
        ErrorCode.NETWORK_EXCEPTION,
        ErrorCode.KAFKA_STORAGE_ERROR,
        ErrorCode.CONCURRENT_TRANSACTIONS,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.UNKNOWN_SERVER_ERROR,
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.THROTTLING_QUOTA_EXCEEDED,
    }
)
_NEW_PRODUCER: Final = frozenset(
    {
        ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
        ErrorCode.UNKNOWN_PRODUCER_ID,
        ErrorCode.INVALID_PRODUCER_EPOCH,
        ErrorCode.PRODUCER_FENCED,
        ErrorCode.INVALID_PRODUCER_ID_MAPPING,
    }
)


@dataclass(slots=True)
class DeadLetterCopier:
    """A share partition's copying identity and the plan in flight (all of it persisted)."""

    producer_id: int = -1
    producer_epoch: int = 0
    dead_letter_partition: int = -1
    next_sequence: int = 0
    in_flight: CopyPlan | None = None
    _wants_producer: bool = field(default=False, repr=False)

    @property
    def needs_producer(self) -> bool:
        """A producer id must be allocated (`assign_producer`) before the next plan."""
        return self.producer_id < 0 or self._wants_producer

    def assign_producer(self, producer_id: int, producer_epoch: int = 0) -> None:
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.next_sequence = 0
        self.dead_letter_partition = -1
        self._wants_producer = False
        if self.in_flight is not None:
            # Sent under the refused identity: it was not appended (else it would have been a
            # duplicate, not refused), so the same offsets go again under the new one.
            self.in_flight = None

    def plan(self, archiving: Iterable[int], partition: int) -> CopyPlan | None:
        """The plan to persist and send: the one in flight, else a new one over the first
        Archiving offsets. None: nothing to copy, or a producer id is needed first."""
        if self.in_flight is not None:
            return self.in_flight
        if self.needs_producer:
            return None
        if partition != self.dead_letter_partition:
            if self.dead_letter_partition >= 0:
                # Sequences are per partition: a new partition (the topic was recreated
                # or grew) gets a fresh identity.
                self._wants_producer = True
                return None
            self.dead_letter_partition = partition
        offsets: list[int] = []
        for offset in archiving:
            offsets.append(offset)
            if len(offsets) >= MAX_PLAN_RECORDS:
                break
        if not offsets:
            return None
        self.in_flight = CopyPlan(
            self.producer_id,
            self.producer_epoch,
            self.next_sequence,
            self.dead_letter_partition,
            tuple(offsets),
        )
        return self.in_flight

    def answered(self, plan: CopyPlan, error: ErrorCode) -> CopyOutcome:
        """The produce answer for `plan` (the one in flight)."""
        if plan != self.in_flight:
            raise ValueError("answer for a plan that is not in flight")
        if error == ErrorCode.NONE or error == ErrorCode.DUPLICATE_SEQUENCE_NUMBER:
            self.next_sequence = (self.next_sequence + len(plan.offsets)) % SEQUENCE_WRAP
            self.in_flight = None
            return CopyOutcome.DONE
        if error in _RETRIABLE:
            return CopyOutcome.RETRY
        if error in _NEW_PRODUCER:
            self._wants_producer = True
            return CopyOutcome.NEW_PRODUCER
        self.in_flight = None
        return CopyOutcome.GIVE_UP

    def drop_plan(self) -> CopyPlan | None:
        """Abandon the plan in flight (the topic became unusable); returns it."""
        plan, self.in_flight = self.in_flight, None
        return plan
