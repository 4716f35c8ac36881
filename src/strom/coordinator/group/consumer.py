"""ConsumerGroupHeartbeat (KIP-848): the server-side rebalance protocol.

Every member heartbeats; each heartbeat may carry its subscription. The coordinator:
1. updates the member's subscription; a change, or a change in the subscribed topics'
   metadata (new topic, more partitions), bumps the *group epoch*;
2. when the group epoch is ahead of the *assignment epoch*, runs the server-side assignor
   (uniform by default, or range) over all members: the *target assignment*;
3. moves the member towards its target (`reconcile.py`): it first revokes what it must give
   up, then receives partitions once their previous owners have released them. The member
   epoch reaches the group epoch when the member is reconciled.
A member that stops heartbeating for group.consumer.session.timeout.ms, or that does not
revoke within its rebalance timeout, is fenced: removed, and the group epoch bumped.

Handlers never change the group: they compute records from the current state and the group
changes when the runtime replays them (`replay`), as in Kafka. Timers (session and rebalance
timeouts) are the only state changed directly.

Not implemented: subscription by regular expression (a non-empty SubscribedTopicRegex, v1;
answered with INVALID_REQUEST as Kafka 3.9 does; an empty one means none, as in Kafka 4),
rack-aware assignment, classic-protocol members inside a consumer group (upgrade/downgrade of
non-empty groups).
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import replace

from strom.coordinator.group.assignors import ASSIGNORS, AssignorError, MemberSpec
from strom.coordinator.group.classic_group import ClassicGroup
from strom.coordinator.group.consumer_group import (
    LEAVE_GROUP_MEMBER_EPOCH,
    LEAVE_GROUP_STATIC_MEMBER_EPOCH,
    Assignment,
    ConsumerGroup,
    ConsumerMember,
    MemberState,
    TopicMeta,
)
from strom.coordinator.group.context import ShardContext
from strom.coordinator.group.generated.consumer_group_member_metadata_value import (
    ConsumerGroupMemberMetadataValue,
)
from strom.coordinator.group.reconcile import FencedMember, Owned, reconcile
from strom.coordinator.group.records import (
    CoordinatorRecord,
    DecodedRecord,
    consumer_group_current_assignment,
    consumer_group_current_assignment_tombstone,
    consumer_group_epoch,
    consumer_group_member,
    consumer_group_member_tombstone,
    consumer_group_partition_metadata,
    consumer_group_target_epoch,
    consumer_group_target_member,
    consumer_group_target_member_tombstone,
    group_metadata_tombstone,
)
from strom.coordinator.group.replay_consumer import replay_consumer_record
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.consumer_group_heartbeat_request import ConsumerGroupHeartbeatRequest
from strom.protocol.messages.consumer_group_heartbeat_response import (
    Assignment as ResponseAssignment,
)
from strom.protocol.messages.consumer_group_heartbeat_response import (
    ConsumerGroupHeartbeatResponse,
)
from strom.protocol.messages.consumer_group_heartbeat_response import (
    TopicPartitions as ResponseTopicPartitions,
)

Records = list[CoordinatorRecord]


class GroupError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def new_member_id() -> str:
    # Kafka's Uuid.toString(): URL-safe base64 of the 16 bytes, without padding.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def member_record(group_id: str, m: ConsumerMember) -> CoordinatorRecord:
    return consumer_group_member(
        group_id,
        m.member_id,
        ConsumerGroupMemberMetadataValue(
            instance_id=m.instance_id,
            rack_id=m.rack_id,
            client_id=m.client_id,
            client_host=m.client_host,
            subscribed_topic_names=sorted(m.subscribed_topic_names),
            subscribed_topic_regex=m.subscribed_topic_regex,
            rebalance_timeout_ms=m.rebalance_timeout_ms,
            server_assignor=m.server_assignor,
            classic_member_metadata=None,
        ),
    )


def current_record(group_id: str, m: ConsumerMember) -> CoordinatorRecord:
    return consumer_group_current_assignment(
        group_id,
        m.member_id,
        m.member_epoch,
        m.previous_member_epoch,
        int(m.state),
        m.assigned,
        m.pending_revocation,
    )


def _owned(request: ConsumerGroupHeartbeatRequest) -> Owned:
    if request.topic_partitions is None:
        return None
    return [(tp.topic_id, list(tp.partitions)) for tp in request.topic_partitions]


def _is_subset(owned: Owned, assigned: Assignment) -> bool:
    if owned is None:
        return False
    return all(p in assigned.get(topic_id, frozenset()) for topic_id, ps in owned for p in ps)


class ConsumerGroups:
    def __init__(self, ctx: ShardContext) -> None:
        self.ctx = ctx
        names = [n for n in ctx.config.consumer_assignors if n in ASSIGNORS] or ["uniform"]
        self.assignors = {n: ASSIGNORS[n] for n in names}
        self.default_assignor = names[0]

    # -- entry point ---------------------------------------------------------------------

    def heartbeat(
        self,
        request: ConsumerGroupHeartbeatRequest,
        version: int,
        client_id: str,
        client_host: str,
    ) -> tuple[ConsumerGroupHeartbeatResponse, Records]:
        try:
            self._validate(request)
            if request.member_epoch in (LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH):
                return self._leave(request)
            return self._heartbeat(request, client_id, client_host)
        except GroupError as e:
            return ConsumerGroupHeartbeatResponse(error_code=e.code, error_message=e.message), []

    def _validate(self, r: ConsumerGroupHeartbeatRequest) -> None:
        def invalid(message: str) -> GroupError:
            return GroupError(ErrorCode.INVALID_REQUEST, message)

        if not r.group_id:
            raise invalid("GroupId can't be empty.")
        if r.instance_id == "":
            raise invalid("InstanceId can't be empty.")
        if r.rack_id == "":
            raise invalid("RackId can't be empty.")
        # librdkafka (2.16) sends an empty regex with every subscription by names; Kafka 4
        # treats an empty regex as no regex subscription, so only a non-empty one is refused.
        if r.subscribed_topic_regex:
            raise invalid("SubscribedTopicRegex is not supported yet.")
        if r.member_epoch > 0 or r.member_epoch == LEAVE_GROUP_MEMBER_EPOCH:
            if not r.member_id:
                raise invalid("MemberId can't be empty.")
        elif r.member_epoch == 0:
            if r.rebalance_timeout_ms == -1:
                raise invalid("RebalanceTimeoutMs must be provided in first request.")
            if r.topic_partitions is None or r.topic_partitions:
                raise invalid("TopicPartitions must be empty when (re-)joining.")
            if not r.subscribed_topic_names:
                raise invalid("SubscribedTopicNames must be set in first request.")
        elif r.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            if not r.member_id:
                raise invalid("MemberId can't be empty.")
            if r.instance_id is None:
                raise invalid("InstanceId can't be null.")
        else:
            raise invalid("MemberEpoch is invalid.")
        if r.server_assignor is not None and r.server_assignor not in self.assignors:
            raise GroupError(
                ErrorCode.UNSUPPORTED_ASSIGNOR,
                f"ServerAssignor {r.server_assignor} is not supported. "
                f"Supported assignors: {', '.join(self.assignors)}.",
            )

    # -- heartbeat -----------------------------------------------------------------------

    def _group_for(self, group_id: str, create: bool, records: Records) -> ConsumerGroup:
        group = self.ctx.groups.get(group_id)
        if isinstance(group, ConsumerGroup):
            return group
        if group is None:
            if not create:
                raise GroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
            return ConsumerGroup(group_id)  # created when its records are replayed
        if not isinstance(group, ClassicGroup):
            raise GroupError(
                ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group."
            )
        if create and group.is_empty():
            # An empty classic group (or a simple one) becomes a consumer group; its
            # committed offsets stay.
            records.append(group_metadata_tombstone(group_id))
            return ConsumerGroup(group_id)
        raise GroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")

    def _check_epoch(self, member: ConsumerMember, received: int, owned: Owned) -> None:
        if received > member.member_epoch or (
            received < member.member_epoch
            # The response with the new epoch may have been lost: the previous epoch is
            # accepted if the member owns no more than it was given.
            and (received != member.previous_member_epoch or not _is_subset(owned, member.assigned))
        ):
            raise GroupError(
                ErrorCode.FENCED_MEMBER_EPOCH,
                f"The member epoch {received} does not match the expected {member.member_epoch}; "
                "the member must abandon its partitions and rejoin.",
            )

    def _member_for(
        self,
        group: ConsumerGroup,
        r: ConsumerGroupHeartbeatRequest,
        member_id: str,
        records: Records,
    ) -> tuple[ConsumerMember, str | None]:
        """The member as it stands, and the id of the static member it replaces (if any)."""
        create = r.member_epoch == 0
        owned = _owned(r)
        if r.instance_id is None:
            member = group.members.get(member_id)
            if member is None:
                if not create:
                    raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID, f"Unknown member {member_id}.")
                return ConsumerMember(member_id), None
            self._check_epoch(member, r.member_epoch, owned)
            return member, None
        existing = group.static_member(r.instance_id)
        if create:
            if existing is None or existing.member_id == member_id:
                if existing is not None:
                    self._check_epoch(existing, r.member_epoch, owned)
                    return existing, None
                return group.members.get(member_id) or ConsumerMember(member_id), None
            if existing.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH:
                raise GroupError(
                    ErrorCode.UNRELEASED_INSTANCE_ID,
                    f"Instance id {r.instance_id} is still owned by member {existing.member_id}.",
                )
            # A static member restarted: it takes over the old member's assignment.
            new = replace(existing, member_id=member_id, member_epoch=0, previous_member_epoch=0)
            gid = group.group_id
            records += [
                consumer_group_current_assignment_tombstone(gid, existing.member_id),
                consumer_group_target_member_tombstone(gid, existing.member_id),
                consumer_group_member_tombstone(gid, existing.member_id),
                member_record(gid, new),
                consumer_group_target_member(
                    gid, member_id, group.target.get(existing.member_id, {})
                ),
                current_record(gid, new),
            ]
            return new, existing.member_id
        if existing is None:
            raise GroupError(
                ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {r.instance_id} is unknown."
            )
        if existing.member_id != member_id:
            raise GroupError(
                ErrorCode.FENCED_INSTANCE_ID,
                f"Instance id {r.instance_id} was fenced by member {existing.member_id}.",
            )
        self._check_epoch(existing, r.member_epoch, owned)
        return existing, None

    def _heartbeat(
        self, r: ConsumerGroupHeartbeatRequest, client_id: str, client_host: str
    ) -> tuple[ConsumerGroupHeartbeatResponse, Records]:
        records: Records = []
        gid = r.group_id
        group = self._group_for(gid, r.member_epoch == 0, records)
        if len(group.members) >= self.ctx.config.consumer_max_size and (
            not r.member_id or r.member_id not in group.members
        ):
            raise GroupError(ErrorCode.GROUP_MAX_SIZE_REACHED, "The group is full.")
        member_id = r.member_id or new_member_id()
        member, replaced = self._member_for(group, r, member_id, records)
        updated = replace(
            member,
            instance_id=r.instance_id if r.instance_id is not None else member.instance_id,
            rack_id=r.rack_id if r.rack_id is not None else member.rack_id,
            rebalance_timeout_ms=(
                r.rebalance_timeout_ms
                if r.rebalance_timeout_ms != -1
                else member.rebalance_timeout_ms
            ),
            server_assignor=r.server_assignor
            if r.server_assignor is not None
            else member.server_assignor,
            subscribed_topic_names=(
                tuple(sorted(set(r.subscribed_topic_names)))
                if r.subscribed_topic_names is not None
                else member.subscribed_topic_names
            ),
            client_id=client_id,
            client_host=client_host,
        )
        bump = False
        if updated != member:
            records.append(member_record(gid, updated))
            bump = updated.subscribed_topic_names != member.subscribed_topic_names
        # The group's members once this heartbeat's records are applied.
        members = {m.member_id: m for m in group.members.values() if m.member_id != replaced}
        members[member_id] = updated
        metadata = self._subscription_metadata(members)
        if metadata != group.subscription_metadata:
            bump = True
            records.append(
                consumer_group_partition_metadata(
                    gid, [(m.name, m.topic_id, m.partitions) for m in metadata.values()]
                )
            )
        group_epoch = group.group_epoch
        if bump:
            group_epoch += 1
            records.append(consumer_group_epoch(gid, group_epoch))
        target: Assignment | None
        if group_epoch > group.assignment_epoch:
            target = self._update_target(
                group, group_epoch, member_id, members, metadata, replaced, records
            )
        else:
            target = group.target.get(member_id)
            if target is None and replaced is not None:
                target = group.target.get(replaced, {})
        try:
            reconciled = reconcile(
                updated,
                group_epoch if group_epoch > group.assignment_epoch else group.assignment_epoch,
                target or {},
                group.current_partition_epoch,
                _owned(r),
            )
        except FencedMember as e:
            raise GroupError(ErrorCode.FENCED_MEMBER_EPOCH, str(e)) from None
        if reconciled != updated:
            records.append(current_record(gid, reconciled))
            if reconciled.state is MemberState.UNREVOKED_PARTITIONS:
                self._schedule_rebalance_timeout(gid, reconciled)
            else:
                self.ctx.timers.cancel(("cg-rebalance", gid, member_id))
        self._schedule_session_timeout(gid, member_id)
        response = ConsumerGroupHeartbeatResponse(
            member_id=member_id,
            member_epoch=reconciled.member_epoch,
            heartbeat_interval_ms=self.ctx.config.consumer_heartbeat_interval_ms,
        )
        full = r.member_epoch == 0 or (
            r.rebalance_timeout_ms != -1
            and r.subscribed_topic_names is not None
            and r.topic_partitions is not None
        )
        if full or reconciled.assigned != member.assigned:
            response.assignment = ResponseAssignment(
                [
                    ResponseTopicPartitions(tid, sorted(ps))
                    for tid, ps in sorted(reconciled.assigned.items())
                ]
            )
        return response, records

    def _subscription_metadata(self, members: dict[str, ConsumerMember]) -> dict[str, TopicMeta]:
        names: set[str] = set()
        for m in members.values():
            names.update(m.subscribed_topic_names)
        metadata: dict[str, TopicMeta] = {}
        for name in sorted(names):
            count = self.ctx.topics.partitions_of(name)
            topic_id = self.ctx.topics.topic_id_of(name)
            if count is not None and count > 0 and topic_id is not None:
                metadata[name] = TopicMeta(name, topic_id, count)
        return metadata

    def _update_target(
        self,
        group: ConsumerGroup,
        epoch: int,
        member_id: str,
        members: dict[str, ConsumerMember],
        metadata: dict[str, TopicMeta],
        replaced: str | None,
        records: Records,
    ) -> Assignment:
        """Run the assignor; records for every member whose target changed, and the epoch."""
        votes = ConsumerGroup(group.group_id, members=members)
        assignor = self.assignors[votes.preferred_assignor(self.default_assignor)]
        specs: dict[str, MemberSpec] = {}
        for mid, m in members.items():
            current = group.target.get(mid)
            if current is None and m.instance_id is not None and replaced is not None:
                current = group.target.get(replaced)
            specs[mid] = MemberSpec(
                member_id=mid,
                instance_id=m.instance_id,
                subscribed=frozenset(
                    metadata[n].topic_id for n in m.subscribed_topic_names if n in metadata
                ),
                current=current or {},
            )
        try:
            assignment = assignor.assign(
                specs, {meta.topic_id: meta.partitions for meta in metadata.values()}
            )
        except AssignorError as e:
            raise GroupError(ErrorCode.UNKNOWN_SERVER_ERROR, str(e)) from None
        gid = group.group_id
        for mid in members:
            new = assignment.get(mid, {})
            if new != group.target.get(mid):
                records.append(consumer_group_target_member(gid, mid, new))
        records.append(consumer_group_target_epoch(gid, epoch))
        return assignment.get(member_id, {})

    # -- leaving and fencing -------------------------------------------------------------

    def _leave(
        self, r: ConsumerGroupHeartbeatRequest
    ) -> tuple[ConsumerGroupHeartbeatResponse, Records]:
        group = self.ctx.groups.get(r.group_id)
        if not isinstance(group, ConsumerGroup):
            raise GroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {r.group_id} not found.")
        if r.instance_id is None:
            member = group.members.get(r.member_id)
            if member is None:
                raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID, f"Unknown member {r.member_id}.")
        else:
            member = group.static_member(r.instance_id)
            if member is None:
                raise GroupError(
                    ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {r.instance_id} is unknown."
                )
            if member.member_id != r.member_id:
                raise GroupError(
                    ErrorCode.FENCED_INSTANCE_ID,
                    f"Instance id {r.instance_id} was fenced by member {member.member_id}.",
                )
            if r.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
                # A static member that will come back: it keeps its place (and target)
                # until its session expires or a new instance replaces it.
                leaving = replace(
                    member, member_epoch=LEAVE_GROUP_STATIC_MEMBER_EPOCH, pending_revocation={}
                )
                response = ConsumerGroupHeartbeatResponse(
                    member_id=member.member_id, member_epoch=LEAVE_GROUP_STATIC_MEMBER_EPOCH
                )
                return response, [current_record(group.group_id, leaving)]
        response = ConsumerGroupHeartbeatResponse(
            member_id=r.member_id, member_epoch=r.member_epoch
        )
        return response, self._fence(group, member)

    def _fence(self, group: ConsumerGroup, member: ConsumerMember) -> Records:
        gid, mid = group.group_id, member.member_id
        records = [
            consumer_group_current_assignment_tombstone(gid, mid),
            consumer_group_target_member_tombstone(gid, mid),
            consumer_group_member_tombstone(gid, mid),
        ]
        remaining = {k: v for k, v in group.members.items() if k != mid}
        metadata = self._subscription_metadata(remaining)
        if metadata != group.subscription_metadata:
            records.append(
                consumer_group_partition_metadata(
                    gid, [(m.name, m.topic_id, m.partitions) for m in metadata.values()]
                )
            )
        records.append(consumer_group_epoch(gid, group.group_epoch + 1))
        for kind in ("cg-session", "cg-rebalance"):
            self.ctx.timers.cancel((kind, gid, mid))
        return records

    def _fence_by_id(self, gid: str, mid: str, epoch: int | None) -> Records:
        group = self.ctx.groups.get(gid)
        if not isinstance(group, ConsumerGroup):
            return []
        member = group.members.get(mid)
        if member is None or (epoch is not None and member.member_epoch != epoch):
            return []
        return self._fence(group, member)

    def _schedule_session_timeout(self, gid: str, mid: str) -> None:
        self.ctx.timers.schedule(
            ("cg-session", gid, mid),
            self.ctx.now_ms() + self.ctx.config.consumer_session_timeout_ms,
            lambda: self._fence_by_id(gid, mid, None),
        )

    def _schedule_rebalance_timeout(self, gid: str, member: ConsumerMember) -> None:
        mid, epoch = member.member_id, member.member_epoch
        self.ctx.timers.schedule(
            ("cg-rebalance", gid, mid),
            self.ctx.now_ms() + max(member.rebalance_timeout_ms, 0),
            lambda: self._fence_by_id(gid, mid, epoch),
        )

    # -- replay --------------------------------------------------------------------------

    def replay(self, decoded: DecodedRecord) -> None:
        touched = replay_consumer_record(self.ctx, decoded)
        if touched is None:
            return
        gid, member = touched
        # Members loaded from the log get a full session (and revocation window) to come
        # back. Live members already have these timers (the handler set them).
        if not self.ctx.timers.is_scheduled(("cg-session", gid, member.member_id)):
            self._schedule_session_timeout(gid, member.member_id)
        key = ("cg-rebalance", gid, member.member_id)
        if member.state is MemberState.UNREVOKED_PARTITIONS and not self.ctx.timers.is_scheduled(
            key
        ):
            self._schedule_rebalance_timeout(gid, member)
