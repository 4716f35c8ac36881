"""A transactional id's state: Kafka's TransactionMetadata, as Strom keeps it in memory.

States and the transitions the coordinator makes (the ids are those Kafka writes in
TransactionLogValue.TransactionStatus, so the two read each other's `__transaction_state`):

| state             | id | entered from                   | by                                   |
|-------------------|----|--------------------------------|--------------------------------------|
| Empty             | 0  | Empty, CompleteCommit/Abort    | InitProducerId (epoch bump)          |
| Ongoing           | 1  | Empty, Ongoing, Complete*      | AddPartitionsToTxn, AddOffsetsToTxn  |
| PrepareCommit     | 2  | Ongoing                        | EndTxn(commit)                       |
| PrepareAbort      | 3  | Ongoing                        | EndTxn(abort), fencing, timeout      |
| CompleteCommit    | 4  | PrepareCommit                  | every marker written                 |
| CompleteAbort     | 5  | PrepareAbort                   | every marker written                 |
| Dead              | 6  | Empty, Complete*               | expiry (only ever a tombstone here)  |
| PrepareEpochFence | 7  | Ongoing                        | never written by Strom               |

Kafka keeps PrepareEpochFence and Dead as in-memory "pending" states while a write is in
flight. Strom's runtime appends a shard's records before the next call, so no write is ever
in flight between calls: fencing writes PrepareAbort with the bumped epoch directly, and an
expired id is written as a tombstone directly. The two ids are still decoded, so a Kafka log
that holds them can be read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
# Clients never get an epoch at or above this: the coordinator must always be able to bump
# the epoch once more to fence a producer (Kafka's isEpochExhausted).
EPOCH_EXHAUSTED = 32767 - 1

TopicPartition = tuple[str, int]


class TxnState(IntEnum):
    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def display_name(self) -> str:
        """The name DescribeTransactions / ListTransactions use (Kafka's TransactionState.name)."""
        return _NAMES[self]

    @classmethod
    def from_name(cls, name: str) -> TxnState | None:
        return _BY_NAME.get(name)

    @property
    def expiration_allowed(self) -> bool:
        return self in (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)

    @property
    def is_prepare(self) -> bool:
        return self in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)


_NAMES = {
    TxnState.EMPTY: "Empty",
    TxnState.ONGOING: "Ongoing",
    TxnState.PREPARE_COMMIT: "PrepareCommit",
    TxnState.PREPARE_ABORT: "PrepareAbort",
    TxnState.COMPLETE_COMMIT: "CompleteCommit",
    TxnState.COMPLETE_ABORT: "CompleteAbort",
    TxnState.DEAD: "Dead",
    TxnState.PREPARE_EPOCH_FENCE: "PrepareEpochFence",
}
_BY_NAME = {name: state for state, name in _NAMES.items()}

# target state -> states it may be entered from (Kafka's validPreviousStates)
VALID_PREVIOUS: dict[TxnState, frozenset[TxnState]] = {
    TxnState.EMPTY: frozenset({TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT}),
    TxnState.ONGOING: frozenset(
        {TxnState.ONGOING, TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT}
    ),
    TxnState.PREPARE_COMMIT: frozenset({TxnState.ONGOING}),
    TxnState.PREPARE_ABORT: frozenset({TxnState.ONGOING, TxnState.PREPARE_EPOCH_FENCE}),
    TxnState.COMPLETE_COMMIT: frozenset({TxnState.PREPARE_COMMIT}),
    TxnState.COMPLETE_ABORT: frozenset({TxnState.PREPARE_ABORT}),
    TxnState.DEAD: frozenset({TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT}),
    TxnState.PREPARE_EPOCH_FENCE: frozenset({TxnState.ONGOING}),
}


@dataclass(frozen=True, slots=True)
class TxnSnapshot:
    """What one TransactionLogValue record says about a transactional id."""

    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState
    partitions: frozenset[TopicPartition]
    start_ms: int  # -1 while no transaction has started
    last_update_ms: int
    previous_producer_id: int = NO_PRODUCER_ID


@dataclass(slots=True)
class TransactionMetadata:
    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState
    partitions: set[TopicPartition] = field(default_factory=set)
    start_ms: int = -1
    last_update_ms: int = -1
    previous_producer_id: int = NO_PRODUCER_ID
    # The epoch before the last bump made for a producer that named its current epoch
    # (KIP-360): a retry of that InitProducerId gets the current epoch back instead of being
    # fenced. Not in the record (as in Kafka), so it is -1 after loading.
    last_producer_epoch: int = NO_PRODUCER_EPOCH

    @property
    def epoch_exhausted(self) -> bool:
        return self.producer_epoch >= EPOCH_EXHAUSTED

    def snapshot(self) -> TxnSnapshot:
        return TxnSnapshot(
            producer_id=self.producer_id,
            producer_epoch=self.producer_epoch,
            timeout_ms=self.timeout_ms,
            state=self.state,
            partitions=frozenset(self.partitions),
            start_ms=self.start_ms,
            last_update_ms=self.last_update_ms,
            previous_producer_id=self.previous_producer_id,
        )

    def apply(self, snap: TxnSnapshot) -> None:
        self.producer_id = snap.producer_id
        self.producer_epoch = snap.producer_epoch
        self.timeout_ms = snap.timeout_ms
        self.state = snap.state
        self.partitions = set(snap.partitions)
        self.start_ms = snap.start_ms
        self.last_update_ms = snap.last_update_ms
        self.previous_producer_id = snap.previous_producer_id
