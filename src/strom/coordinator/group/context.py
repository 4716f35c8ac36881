"""State shared by the parts of one coordinator shard (membership, offsets, admin)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from strom.clock import Clock
from strom.coordinator.group.config import GroupConfig, TopicsView
from strom.coordinator.group.offsets_store import OffsetStore, PendingTxnOffsets
from strom.coordinator.group.records import CoordinatorRecord
from strom.coordinator.group.timers import Timers

if TYPE_CHECKING:
    from strom.coordinator.group.classic_group import ClassicGroup
    from strom.coordinator.group.consumer_group import ConsumerGroup
    from strom.coordinator.share.group import ShareGroup

    Group = ClassicGroup | ConsumerGroup | ShareGroup


@dataclass
class ShardContext:
    partition: int
    config: GroupConfig
    clock: Clock
    topics: TopicsView
    groups: dict[str, Group] = field(default_factory=dict)
    offsets: OffsetStore = field(default_factory=OffsetStore)
    pending_txn_offsets: PendingTxnOffsets = field(default_factory=PendingTxnOffsets)
    timers: Timers = field(default_factory=Timers)
    # GroupMetadata records that the classic handlers produced and already applied to the
    # in-memory group (as Kafka does: classic group state is not rebuilt from its own
    # records). Replay skips a record found here; any other GroupMetadata record comes from
    # the log (loading) and rebuilds the group.
    own_records: Counter[CoordinatorRecord] = field(default_factory=Counter)

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def own(self, record: CoordinatorRecord) -> CoordinatorRecord:
        self.own_records[record] += 1
        return record
