"""The consumer group of KIP-848 (ConsumerGroupHeartbeat): the data model and its replay.

Everything here is persisted: the group epoch, the subscribed topics' metadata, each member's
subscription, the target assignment (what the server-side assignor decided, with its epoch)
and each member's current assignment (epoch, state, owned and pending-revocation partitions).
The group changes only through `replay_*`; `consumer.py` computes records from a read-only view.

Invariants:
- `partition_epochs[(topic_id, p)]` is the epoch of the member that owns p, counting partitions
  pending revocation (not yet given up); a partition is in the map at most once, so no two
  members own one partition at any instant.
- `static_members` maps each member's instance id to its member id.
- The state is derived, as in Kafka: Empty without members, Assigning while the group epoch
  is ahead of the assignment epoch, Reconciling while a member is not yet Stable at the
  assignment epoch, Stable otherwise.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from enum import Enum, IntEnum

from strom.coordinator.group.records import (
    CoordinatorRecord,
    consumer_group_current_assignment_tombstone,
    consumer_group_epoch_tombstone,
    consumer_group_member_tombstone,
    consumer_group_partition_metadata_tombstone,
    consumer_group_target_epoch_tombstone,
    consumer_group_target_member_tombstone,
)

Assignment = dict[uuid.UUID, frozenset[int]]


class MemberState(IntEnum):
    """A member's reconciliation state (the int8 persisted in its current assignment)."""

    STABLE = 0
    UNREVOKED_PARTITIONS = 1  # must give up partitions before moving to the next epoch
    UNRELEASED_PARTITIONS = 2  # waits for partitions that another member still owns
    UNKNOWN = 127


class ConsumerGroupState(Enum):
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


LEAVE_GROUP_MEMBER_EPOCH = -1
LEAVE_GROUP_STATIC_MEMBER_EPOCH = -2


@dataclass(frozen=True)
class ConsumerMember:
    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: tuple[str, ...] = ()
    subscribed_topic_regex: str | None = None
    rebalance_timeout_ms: int = -1
    server_assignor: str | None = None
    member_epoch: int = 0
    previous_member_epoch: int = 0
    state: MemberState = MemberState.STABLE
    assigned: Assignment = field(default_factory=dict)
    pending_revocation: Assignment = field(default_factory=dict)

    def is_reconciled_to(self, epoch: int) -> bool:
        return self.state is MemberState.STABLE and self.member_epoch == epoch

    def with_epoch(self, epoch: int) -> ConsumerMember:
        return replace(self, previous_member_epoch=self.member_epoch, member_epoch=epoch)


@dataclass(frozen=True)
class TopicMeta:
    name: str
    topic_id: uuid.UUID
    partitions: int


@dataclass(eq=False)
class ConsumerGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    # name -> metadata of every topic some member subscribes to (and that exists)
    subscription_metadata: dict[str, TopicMeta] = field(default_factory=dict)
    target: dict[str, Assignment] = field(default_factory=dict)
    partition_epochs: dict[tuple[uuid.UUID, int], int] = field(default_factory=dict)
    dead: bool = False

    # -- derived -------------------------------------------------------------------------

    @property
    def state(self) -> ConsumerGroupState:
        if self.dead:
            return ConsumerGroupState.DEAD
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        for member in self.members.values():
            if not member.is_reconciled_to(self.assignment_epoch):
                return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    def is_empty(self) -> bool:
        return not self.members

    def subscribed_topic_names(self) -> set[str]:
        names: set[str] = set()
        for member in self.members.values():
            names.update(member.subscribed_topic_names)
        return names

    def is_subscribed_to_topic(self, topic: str) -> bool:
        return any(topic in m.subscribed_topic_names for m in self.members.values())

    def topic_name(self, topic_id: uuid.UUID) -> str | None:
        for meta in self.subscription_metadata.values():
            if meta.topic_id == topic_id:
                return meta.name
        return None

    def current_partition_epoch(self, topic_id: uuid.UUID, partition: int) -> int:
        return self.partition_epochs.get((topic_id, partition), -1)

    def preferred_assignor(self, default: str) -> str:
        """The server assignor most members ask for (ties: by name), else the default."""
        votes: dict[str, int] = {}
        for member in self.members.values():
            if member.server_assignor:
                votes[member.server_assignor] = votes.get(member.server_assignor, 0) + 1
        if not votes:
            return default
        return min(votes, key=lambda name: (-votes[name], name))

    def static_member(self, instance_id: str) -> ConsumerMember | None:
        member_id = self.static_members.get(instance_id)
        return None if member_id is None else self.members.get(member_id)

    # -- replay --------------------------------------------------------------------------

    def put_member(self, member: ConsumerMember) -> None:
        old = self.members.get(member.member_id)
        if old is not None:
            self._release_partitions(old)
            if old.instance_id is not None and old.instance_id != member.instance_id:
                self.static_members.pop(old.instance_id, None)
        self.members[member.member_id] = member
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id
        self._claim_partitions(member)

    def remove_member(self, member_id: str) -> None:
        old = self.members.pop(member_id, None)
        if old is None:
            return
        self._release_partitions(old)
        if old.instance_id is not None and self.static_members.get(old.instance_id) == member_id:
            del self.static_members[old.instance_id]

    def _release_partitions(self, member: ConsumerMember) -> None:
        for assignment in (member.assigned, member.pending_revocation):
            for topic_id, partitions in assignment.items():
                for p in partitions:
                    if self.partition_epochs.get((topic_id, p)) == member.member_epoch:
                        del self.partition_epochs[(topic_id, p)]

    def _claim_partitions(self, member: ConsumerMember) -> None:
        for assignment in (member.assigned, member.pending_revocation):
            for topic_id, partitions in assignment.items():
                for p in partitions:
                    self.partition_epochs[(topic_id, p)] = member.member_epoch

    # -- deletion ------------------------------------------------------------------------

    def tombstones(self) -> list[CoordinatorRecord]:
        """Records that delete the whole group (members first, the epoch record last)."""
        gid = self.group_id
        records: list[CoordinatorRecord] = []
        for member_id in self.members:
            records.append(consumer_group_current_assignment_tombstone(gid, member_id))
        for member_id in self.target:
            records.append(consumer_group_target_member_tombstone(gid, member_id))
        records.append(consumer_group_target_epoch_tombstone(gid))
        for member_id in self.members:
            records.append(consumer_group_member_tombstone(gid, member_id))
        records.append(consumer_group_partition_metadata_tombstone(gid))
        records.append(consumer_group_epoch_tombstone(gid))
        return records
