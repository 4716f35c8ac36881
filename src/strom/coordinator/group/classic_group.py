"""The classic group (JoinGroup/SyncGroup protocol): members, states and protocol choice.

This module is the data model; the rebalance rules that drive it live in `classic.py`.

States (Kafka's names, as DescribeGroups and ListGroups report them):

    Empty ──join──> PreparingRebalance ──all joined / timeout──> CompletingRebalance
      ^                 ^      │                                   │ leader's SyncGroup
      │                 │      └──no member left──> Empty          v
      │                 └───────────── member change ──────────  Stable
    Dead: the group was deleted (or its partition unloaded); it never comes back.

Invariants kept by every method here:
- `leader_id` is None exactly when the group has no members; otherwise it names a member.
- `static_members` maps every member's group.instance.id to that member's id, and nothing else.
- `supported_protocols[name]` counts the members that list protocol `name`, so the protocols
  every member supports are those whose count equals the number of members.
- `num_awaiting_join` counts the members whose JoinGroup is parked (`awaiting_join` set).
- A member id is never both in `members` and in `pending_join_members`.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from strom.coordinator.group.records import GroupMetadataValue, MemberMetadata
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.consumer_protocol_subscription import ConsumerProtocolSubscription
from strom.protocol.messages.join_group_response import JoinGroupResponse, JoinGroupResponseMember
from strom.protocol.messages.sync_group_response import SyncGroupResponse
from strom.protocol.primitives import ProtocolError, Reader

CONSUMER_PROTOCOL_TYPE = "consumer"

JoinResponder = Callable[[JoinGroupResponse], None]
SyncResponder = Callable[[SyncGroupResponse], None]


class ClassicState(Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


_VALID_PREVIOUS: dict[ClassicState, frozenset[ClassicState]] = {
    ClassicState.EMPTY: frozenset({ClassicState.PREPARING_REBALANCE}),
    ClassicState.PREPARING_REBALANCE: frozenset(
        {ClassicState.STABLE, ClassicState.COMPLETING_REBALANCE, ClassicState.EMPTY}
    ),
    ClassicState.COMPLETING_REBALANCE: frozenset({ClassicState.PREPARING_REBALANCE}),
    ClassicState.STABLE: frozenset({ClassicState.COMPLETING_REBALANCE}),
    ClassicState.DEAD: frozenset(ClassicState),
}


@dataclass(eq=False)
class ClassicMember:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    # (name, metadata) in the member's order of preference
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    awaiting_join: JoinResponder | None = None
    awaiting_sync: SyncResponder | None = None
    # True from the first JoinGroup until that rebalance completes: such a member may be
    # expired while its JoinGroup is parked (it cannot heartbeat without a member id yet).
    is_new: bool = False

    def metadata(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        return self.protocols == protocols

    def vote(self, candidates: set[str]) -> str:
        """The member's most preferred protocol among those all members support."""
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise ValueError("member supports none of the candidate protocols")

    def has_satisfied_heartbeat(self) -> bool:
        # A parked JoinGroup/SyncGroup counts as a heartbeat, except for a new member,
        # which has to complete its first join within the session timeout it was given.
        if self.is_new:
            return False
        return self.awaiting_join is not None or self.awaiting_sync is not None


@dataclass(eq=False)
class ClassicGroup:
    group_id: str
    state: ClassicState = ClassicState.EMPTY
    previous_state: ClassicState = ClassicState.EMPTY
    generation_id: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    current_state_timestamp_ms: int | None = None
    members: dict[str, ClassicMember] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    pending_join_members: set[str] = field(default_factory=set)
    pending_sync_members: set[str] = field(default_factory=set)
    supported_protocols: Counter[str] = field(default_factory=Counter)
    num_awaiting_join: int = 0
    # Set when a member joins during the initial (delayed) rebalance, to extend the delay.
    new_member_added: bool = False
    # Topics the members subscribe to (consumer protocol only; None when unknown).
    subscribed_topics: set[str] | None = None

    # -- state ---------------------------------------------------------------------------

    def is_in(self, *states: ClassicState) -> bool:
        return self.state in states

    def transition_to(self, target: ClassicState, now_ms: int) -> None:
        if self.state not in _VALID_PREVIOUS[target]:
            raise AssertionError(
                f"group {self.group_id}: illegal transition {self.state.value} -> {target.value}"
            )
        self.previous_state = self.state
        self.state = target
        self.current_state_timestamp_ms = now_ms

    def can_rebalance(self) -> bool:
        return self.state in _VALID_PREVIOUS[ClassicState.PREPARING_REBALANCE]

    def is_empty(self) -> bool:
        return self.state is ClassicState.EMPTY

    # -- membership ----------------------------------------------------------------------

    def has_member(self, member_id: str) -> bool:
        return member_id in self.members

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id == member_id

    def is_pending_member(self, member_id: str) -> bool:
        return member_id in self.pending_join_members

    def add(self, member: ClassicMember, respond: JoinResponder | None = None) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        self.supported_protocols.update(name for name, _ in member.protocols)
        member.awaiting_join = respond
        if respond is not None:
            self.num_awaiting_join += 1
        self.pending_join_members.discard(member.member_id)

    def remove(self, member_id: str) -> None:
        member = self.members.pop(member_id, None)
        if member is not None:
            self.supported_protocols.subtract(name for name, _ in member.protocols)
            if member.awaiting_join is not None:
                self.num_awaiting_join -= 1
            if member.group_instance_id is not None:
                self.static_members.pop(member.group_instance_id, None)
        if self.leader_id == member_id:
            # Kafka promotes the first remaining member (in join order).
            self.leader_id = next(iter(self.members), None)
        self.pending_join_members.discard(member_id)
        self.pending_sync_members.discard(member_id)

    def update_member(
        self,
        member: ClassicMember,
        protocols: list[tuple[str, bytes]],
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
        respond: JoinResponder | None,
    ) -> None:
        self.supported_protocols.subtract(name for name, _ in member.protocols)
        member.protocols = protocols
        self.supported_protocols.update(name for name, _ in protocols)
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        if respond is not None and member.awaiting_join is None:
            self.num_awaiting_join += 1
        elif respond is None and member.awaiting_join is not None:
            self.num_awaiting_join -= 1
        member.awaiting_join = respond

    def replace_static_member(
        self, instance_id: str, old_member_id: str, new_member_id: str
    ) -> ClassicMember:
        """Hand the old member's place (and assignment) to a new member id.

        Whoever still waits under the old id is fenced at once, so two processes with the
        same instance id cannot both believe they are in the group.
        """
        old = self.members.pop(old_member_id)
        self.complete_join(
            old,
            JoinGroupResponse(
                error_code=ErrorCode.FENCED_INSTANCE_ID,
                member_id=old_member_id,
                protocol_name=None,
                protocol_type=None,
            ),
        )
        self.complete_sync(
            old,
            SyncGroupResponse(error_code=ErrorCode.FENCED_INSTANCE_ID, assignment=b""),
        )
        new = ClassicMember(
            member_id=new_member_id,
            group_instance_id=old.group_instance_id,
            client_id=old.client_id,
            client_host=old.client_host,
            rebalance_timeout_ms=old.rebalance_timeout_ms,
            session_timeout_ms=old.session_timeout_ms,
            protocol_type=old.protocol_type,
            protocols=old.protocols,
            assignment=old.assignment,
        )
        # The popped member kept its protocol votes; the new one inherits them.
        self.members[new_member_id] = new
        if self.leader_id == old_member_id:
            self.leader_id = new_member_id
        self.static_members[instance_id] = new_member_id
        self.pending_sync_members.discard(old_member_id)
        return new

    def generate_member_id(self, client_id: str, instance_id: str | None) -> str:
        prefix = instance_id if instance_id is not None else client_id
        return f"{prefix}-{uuid.uuid4()}"

    def validate_member(self, member_id: str, instance_id: str | None) -> ErrorCode | None:
        """None when the (member id, instance id) pair names a current member."""
        if instance_id is not None:
            existing = self.static_members.get(instance_id)
            if existing is None:
                return ErrorCode.UNKNOWN_MEMBER_ID
            if existing != member_id:
                return ErrorCode.FENCED_INSTANCE_ID
        if member_id not in self.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return None

    def not_yet_rejoined(self) -> list[ClassicMember]:
        return [m for m in self.members.values() if m.awaiting_join is None]

    def has_all_members_joined(self) -> bool:
        return len(self.members) == self.num_awaiting_join and not self.pending_join_members

    def maybe_elect_new_joined_leader(self) -> bool:
        """Make sure the leader is a member that rejoined; False if no member rejoined."""
        if self.leader_id is None:
            return False
        if self.members[self.leader_id].awaiting_join is not None:
            return True
        for member in self.members.values():
            if member.awaiting_join is not None:
                self.leader_id = member.member_id
                return True
        return False

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    # -- protocols -----------------------------------------------------------------------

    def _candidate_protocols(self) -> set[str]:
        n = len(self.members)
        return {name for name, count in self.supported_protocols.items() if count == n}

    def supports_protocols(self, protocol_type: str, protocols: list[tuple[str, bytes]]) -> bool:
        names = {name for name, _ in protocols}
        if self.state is ClassicState.EMPTY:
            return protocol_type != "" and bool(names)
        n = len(self.members)
        return self.protocol_type == protocol_type and any(
            self.supported_protocols.get(name, 0) == n for name in names
        )

    def select_protocol(self) -> str:
        """Each member votes for its most preferred protocol that all members support; the
        protocol with the most votes wins (ties go to the first protocol voted for)."""
        candidates = self._candidate_protocols()
        votes: Counter[str] = Counter(m.vote(candidates) for m in self.members.values())
        return votes.most_common(1)[0][0]

    def compute_subscribed_topics(self) -> set[str] | None:
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return None
        if not self.members:
            return set()
        if self.protocol_name is None:
            return None
        topics: set[str] = set()
        try:
            for member in self.members.values():
                topics.update(parse_subscription_topics(member.metadata(self.protocol_name)))
        except ProtocolError:
            return None
        return topics

    def is_subscribed_to_topic(self, topic: str) -> bool:
        if self.subscribed_topics is None:
            # Unknown subscriptions: a consumer group is assumed to use every topic.
            return self.protocol_type == CONSUMER_PROTOCOL_TYPE and bool(self.members)
        return topic in self.subscribed_topics

    # -- generations and responses -------------------------------------------------------

    def init_next_generation(self, now_ms: int) -> None:
        self.generation_id += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(ClassicState.COMPLETING_REBALANCE, now_ms)
        else:
            self.protocol_name = None
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(ClassicState.EMPTY, now_ms)
        self.pending_sync_members.clear()

    def current_members(self) -> list[JoinGroupResponseMember]:
        """The member list the leader receives to compute the assignment."""
        return [
            JoinGroupResponseMember(
                m.member_id, m.group_instance_id, m.metadata(self.protocol_name)
            )
            for m in self.members.values()
        ]

    def complete_join(self, member: ClassicMember, response: JoinGroupResponse) -> bool:
        respond = member.awaiting_join
        if respond is None:
            return False
        member.awaiting_join = None
        self.num_awaiting_join -= 1
        respond(response)
        return True

    def complete_sync(self, member: ClassicMember, response: SyncGroupResponse) -> bool:
        respond = member.awaiting_sync
        if respond is None:
            return False
        member.awaiting_sync = None
        respond(response)
        return True

    # -- persistence ---------------------------------------------------------------------

    def to_record_value(self, assignments: dict[str, bytes] | None = None) -> GroupMetadataValue:
        """The GroupMetadataValue for the group as it is (or with the given assignments)."""
        members = [
            MemberMetadata(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                rebalance_timeout=m.rebalance_timeout_ms,
                session_timeout=m.session_timeout_ms,
                subscription=m.metadata(self.protocol_name),
                assignment=(
                    m.assignment if assignments is None else assignments.get(m.member_id, b"")
                ),
            )
            for m in self.members.values()
        ]
        return GroupMetadataValue(
            protocol_type=self.protocol_type or "",
            generation=self.generation_id,
            protocol=self.protocol_name,
            leader=self.leader_id,
            current_state_timestamp=(
                -1 if self.current_state_timestamp_ms is None else self.current_state_timestamp_ms
            ),
            members=members,
        )

    @classmethod
    def from_record_value(cls, group_id: str, value: GroupMetadataValue) -> ClassicGroup:
        """A group as loaded from its last GroupMetadata record: Stable, or Empty."""
        group = cls(
            group_id=group_id,
            state=ClassicState.STABLE if value.members else ClassicState.EMPTY,
            generation_id=value.generation,
            protocol_type=value.protocol_type or None,
            protocol_name=value.protocol,
            current_state_timestamp_ms=(
                None if value.current_state_timestamp == -1 else value.current_state_timestamp
            ),
        )
        for mm in value.members:
            protocol = value.protocol or ""
            group.add(
                ClassicMember(
                    member_id=mm.member_id,
                    group_instance_id=mm.group_instance_id,
                    client_id=mm.client_id,
                    client_host=mm.client_host,
                    rebalance_timeout_ms=(
                        mm.session_timeout if mm.rebalance_timeout == -1 else mm.rebalance_timeout
                    ),
                    session_timeout_ms=mm.session_timeout,
                    protocol_type=value.protocol_type,
                    protocols=[(protocol, mm.subscription)],
                    assignment=mm.assignment,
                )
            )
        # add() elects the first member; the record names the real leader.
        group.leader_id = value.leader if value.leader in group.members else group.leader_id
        group.subscribed_topics = group.compute_subscribed_topics()
        return group


def parse_subscription_topics(metadata: bytes) -> list[str]:
    """The topics of a ConsumerProtocolSubscription (its version-0 prefix, which every
    version shares, so future versions still parse)."""
    reader = Reader(metadata)
    reader.read_int16()
    return ConsumerProtocolSubscription.read(reader, 0).topics
