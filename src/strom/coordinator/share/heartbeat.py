"""ShareGroupHeartbeat (KIP-932): membership and the server-side assignment of share groups.

Every member heartbeats with a member id it generated itself (v1). The coordinator:
1. records the member's subscription; a new member, a changed subscription, a change in
   the subscribed topics' metadata, or initialized partitions that the target assignment does
   not cover yet bump the group epoch;
2. when the group epoch is ahead of the assignment epoch, runs the simple assignor over all
   members and the partitions whose share state is initialized (the target assignment);
3. moves the member straight to its target: partitions of a share group are shared, so
   nothing has to be revoked first. The member epoch becomes the assignment epoch;
4. asks for the share state of subscribed partitions that have none yet (an
   `Initialization` beside the response, see state_partitions.py): they are assigned once
   the share coordinator has it, at a later heartbeat.
A member that stops heartbeating for group.share.session.timeout.ms is removed and the group
epoch bumped, so the others get its partitions.

Handlers compute records from the current state; the group changes when the runtime replays
them. Session timers are the only state changed directly.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import replace

from strom.coordinator.group.context import ShardContext
from strom.coordinator.group.records import CoordinatorRecord, DecodedRecord
from strom.coordinator.share.group import (
    Assignment,
    ShareGroup,
    ShareMember,
    current_assignment_record,
    current_assignment_tombstone,
    group_epoch_record,
    member_record,
    member_tombstone,
    replay_share_record,
    target_epoch_record,
    target_member_record,
    target_member_tombstone,
)
from strom.coordinator.share.state_partitions import (
    Initialization,
    StatePartitions,
    state_partitions_record,
)
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.share_group_describe_response import (
    Assignment as DescribedAssignment,
)
from strom.protocol.messages.share_group_describe_response import (
    DescribedGroup as DescribedShareGroup,
)
from strom.protocol.messages.share_group_describe_response import Member as DescribedMember
from strom.protocol.messages.share_group_describe_response import (
    TopicPartitions as DescribedTopicPartitions,
)
from strom.protocol.messages.share_group_heartbeat_request import ShareGroupHeartbeatRequest
from strom.protocol.messages.share_group_heartbeat_response import (
    Assignment as ResponseAssignment,
)
from strom.protocol.messages.share_group_heartbeat_response import (
    ShareGroupHeartbeatResponse,
)
from strom.protocol.messages.share_group_heartbeat_response import (
    TopicPartitions as ResponseTopicPartitions,
)

__all__ = ["HeartbeatResult", "ShareGroups", "describe_share_groups", "simple_assignment"]

Records = list[CoordinatorRecord]
HeartbeatResult = tuple[ShareGroupHeartbeatResponse, Initialization | None]
LEAVE_GROUP_MEMBER_EPOCH = -1


class _Refused(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def simple_assignment(
    members: dict[str, tuple[str, ...]], topics: dict[str, tuple[uuid.UUID, Sequence[int]]]
) -> dict[str, Assignment]:
    """Kafka's simple share assignor, for each topic over the members subscribed to it and
    the topic's assignable partitions.

    With at least as many members as partitions, each member gets one partition and every
    partition goes to at least one member (several members share it); with fewer members,
    the partitions are dealt out round-robin. Members and partitions are taken in sorted
    order, so the result depends only on the group.
    """
    out: dict[str, Assignment] = {m: {} for m in members}
    for name in sorted(topics):
        topic_id, assignable = topics[name]
        parts = sorted(assignable)
        count = len(parts)
        subscribers = sorted(m for m, names in members.items() if name in names)
        if not subscribers or count <= 0:
            continue
        chosen: dict[str, set[int]] = {m: set() for m in subscribers}
        if len(subscribers) >= count:
            for i, member in enumerate(subscribers):
                chosen[member].add(parts[i % count])
        else:
            for i, p in enumerate(parts):
                chosen[subscribers[i % len(subscribers)]].add(p)
        for member, mine in chosen.items():
            if mine:
                out[member][topic_id] = frozenset(mine)
    return out


class ShareGroups:
    def __init__(self, ctx: ShardContext) -> None:
        self.ctx = ctx

    # -- entry point ---------------------------------------------------------------------

    def heartbeat(
        self, request: ShareGroupHeartbeatRequest, client_id: str, client_host: str
    ) -> tuple[HeartbeatResult, Records]:
        try:
            self._validate(request)
            if request.member_epoch == LEAVE_GROUP_MEMBER_EPOCH:
                response, records = self._leave(request)
                return (response, None), records
            return self._heartbeat(request, client_id, client_host)
        except _Refused as e:
            refused = ShareGroupHeartbeatResponse(error_code=e.code, error_message=e.message)
            return (refused, None), []

    def _validate(self, r: ShareGroupHeartbeatRequest) -> None:
        def invalid(message: str) -> _Refused:
            return _Refused(ErrorCode.INVALID_REQUEST, message)

        if not r.group_id:
            raise invalid("GroupId can't be empty.")
        if not r.member_id:
            raise invalid("MemberId can't be empty.")
        if r.rack_id == "":
            raise invalid("RackId can't be empty.")
        if r.member_epoch == 0:
            if not r.subscribed_topic_names:
                raise invalid("SubscribedTopicNames must be set in first request.")
        elif r.member_epoch < LEAVE_GROUP_MEMBER_EPOCH:
            raise invalid(f"MemberEpoch is invalid: {r.member_epoch}.")

    def _group(self, group_id: str, create: bool) -> ShareGroup:
        group = self.ctx.groups.get(group_id)
        if isinstance(group, ShareGroup):
            return group
        if group is not None:
            raise _Refused(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a share group.")
        if not create:
            raise _Refused(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
        return ShareGroup(group_id)  # created when its records are replayed

    def _heartbeat(
        self, r: ShareGroupHeartbeatRequest, client_id: str, client_host: str
    ) -> tuple[HeartbeatResult, Records]:
        joining = r.member_epoch == 0
        group = self._group(r.group_id, joining)
        gid, mid = group.group_id, r.member_id
        member = group.members.get(mid)
        if member is None:
            if not joining:
                raise _Refused(ErrorCode.UNKNOWN_MEMBER_ID, f"Unknown member {mid}.")
            if len(group.members) >= self.ctx.config.share_max_size:
                raise _Refused(
                    ErrorCode.GROUP_MAX_SIZE_REACHED,
                    f"The share group has reached its maximum size "
                    f"({self.ctx.config.share_max_size}).",
                )
            member = ShareMember(mid)
        elif not joining and r.member_epoch != member.member_epoch:
            raise _Refused(
                ErrorCode.FENCED_MEMBER_EPOCH,
                f"The member epoch {r.member_epoch} does not match the expected "
                f"{member.member_epoch}.",
            )
        records: Records = []
        updated = replace(
            member,
            rack_id=r.rack_id if r.rack_id is not None else member.rack_id,
            client_id=client_id,
            client_host=client_host,
            subscribed_topic_names=(
                tuple(sorted(set(r.subscribed_topic_names)))
                if r.subscribed_topic_names is not None
                else member.subscribed_topic_names
            ),
        )
        members = dict(group.members)
        members[mid] = updated
        subscribed = {n for m in members.values() for n in m.subscribed_topic_names}
        topics = self._topics(subscribed)
        metadata_hash = _metadata_hash(topics)
        epoch = group.group_epoch
        if mid not in group.members or updated != member:
            records.append(member_record(gid, updated))
        state = group.state_partitions
        if (
            mid not in group.members
            or updated.subscribed_topic_names != member.subscribed_topic_names
            or metadata_hash != group.metadata_hash
            or (group.assignment_epoch >= epoch and _assignment_pending(group, topics))
        ):
            epoch += 1
            records.append(group_epoch_record(gid, epoch, metadata_hash))
        target = group.target
        if epoch > group.assignment_epoch or mid not in group.target:
            target = simple_assignment(
                {m: x.subscribed_topic_names for m, x in members.items()},
                _assignable(state, topics),
            )
            for other, assignment in sorted(target.items()):
                if group.target.get(other) != assignment:
                    records.append(target_member_record(gid, other, assignment))
            records.append(target_epoch_record(gid, epoch, self.ctx.now_ms()))
        assignment_epoch = max(epoch, group.assignment_epoch)
        mine = target.get(mid, {})
        send_assignment = joining
        if updated.member_epoch != assignment_epoch or updated.assigned != mine:
            updated = replace(
                updated,
                previous_member_epoch=updated.member_epoch,
                member_epoch=assignment_epoch,
                assigned=mine,
            )
            records.append(current_assignment_record(gid, updated))
            send_assignment = True
        self._schedule_session_timeout(gid, mid)
        initialization = None
        wanted = state.to_initialize(topics, self.ctx.now_ms())
        if wanted:
            initialization = Initialization(
                gid,
                epoch,
                tuple(
                    (topic_id, p, state.start_offset(topic_id))
                    for topic_id, init in sorted(wanted.items())
                    for p in sorted(init.partitions)
                ),
            )
            records.append(state_partitions_record(gid, state.with_initializing(wanted)))
        response = ShareGroupHeartbeatResponse(
            member_id=mid,
            member_epoch=updated.member_epoch,
            heartbeat_interval_ms=self.ctx.config.share_heartbeat_interval_ms,
        )
        if send_assignment:
            response.assignment = ResponseAssignment(
                [
                    ResponseTopicPartitions(tid, sorted(parts))
                    for tid, parts in sorted(updated.assigned.items())
                ]
            )
        return (response, initialization), records

    def _leave(self, r: ShareGroupHeartbeatRequest) -> tuple[ShareGroupHeartbeatResponse, Records]:
        group = self._group(r.group_id, False)
        if r.member_id not in group.members:
            raise _Refused(ErrorCode.UNKNOWN_MEMBER_ID, f"Unknown member {r.member_id}.")
        records = self._remove(group, r.member_id)
        return (
            ShareGroupHeartbeatResponse(
                member_id=r.member_id, member_epoch=LEAVE_GROUP_MEMBER_EPOCH
            ),
            records,
        )

    def _remove(self, group: ShareGroup, mid: str) -> Records:
        """Records removing a member and giving its partitions to the others."""
        gid = group.group_id
        self.ctx.timers.cancel(("sg-session", gid, mid))
        records = [
            current_assignment_tombstone(gid, mid),
            target_member_tombstone(gid, mid),
            member_tombstone(gid, mid),
        ]
        members = {m: x for m, x in group.members.items() if m != mid}
        topics = self._topics({n for m in members.values() for n in m.subscribed_topic_names})
        epoch = group.group_epoch + 1
        records.append(group_epoch_record(gid, epoch, _metadata_hash(topics)))
        if members:
            target = simple_assignment(
                {m: x.subscribed_topic_names for m, x in members.items()},
                _assignable(group.state_partitions, topics),
            )
            for other, assignment in sorted(target.items()):
                if group.target.get(other) != assignment:
                    records.append(target_member_record(gid, other, assignment))
        records.append(target_epoch_record(gid, epoch, self.ctx.now_ms()))
        return records

    def _topics(self, names: set[str]) -> dict[str, tuple[uuid.UUID, int]]:
        out: dict[str, tuple[uuid.UUID, int]] = {}
        for name in sorted(names):
            count = self.ctx.topics.partitions_of(name)
            topic_id = self.ctx.topics.topic_id_of(name)
            if count is not None and topic_id is not None:
                out[name] = (topic_id, count)
        return out

    # -- timers --------------------------------------------------------------------------

    def _schedule_session_timeout(self, gid: str, mid: str) -> None:
        self.ctx.timers.schedule(
            ("sg-session", gid, mid),
            self.ctx.now_ms() + self.ctx.config.share_session_timeout_ms,
            lambda: self._expire(gid, mid),
        )

    def _expire(self, gid: str, mid: str) -> Records:
        group = self.ctx.groups.get(gid)
        if not isinstance(group, ShareGroup) or mid not in group.members:
            return []
        return self._remove(group, mid)

    # -- replay and lifecycle ------------------------------------------------------------

    def replay(self, decoded: DecodedRecord) -> None:
        group = replay_share_record(self.ctx.groups, decoded, self.ctx.now_ms())
        if group is None:
            return
        # Members loaded from the log get a session, as if they had just heartbeated.
        for mid in group.members:
            if not self.ctx.timers.is_scheduled(("sg-session", group.group_id, mid)):
                self._schedule_session_timeout(group.group_id, mid)

    def member_ids(self, group_id: str) -> set[str]:
        group = self.ctx.groups.get(group_id)
        return set(group.members) if isinstance(group, ShareGroup) else set()


def _assignable(
    state: StatePartitions, topics: dict[str, tuple[uuid.UUID, int]]
) -> dict[str, tuple[uuid.UUID, Sequence[int]]]:
    """The subscribed topics' partitions whose share state is initialized."""
    return {name: (tid, state.assignable(tid, count)) for name, (tid, count) in topics.items()}


def _assignment_pending(group: ShareGroup, topics: dict[str, tuple[uuid.UUID, int]]) -> bool:
    """Whether initialized partitions of subscribed topics differ from those the target
    assignment covers (Kafka's initializedAssignmentPending)."""
    if not group.members:
        return False
    covered: dict[uuid.UUID, set[int]] = {}
    for assignment in group.target.values():
        for tid, parts in assignment.items():
            covered.setdefault(tid, set()).update(parts)
    for tid, assignable in _assignable(group.state_partitions, topics).values():
        if assignable and covered.get(tid, set()) != set(assignable):
            return True
    return False


def _metadata_hash(topics: dict[str, tuple[uuid.UUID, int]]) -> int:
    """A hash of the subscribed topics' ids and partition counts (KIP-1101's role)."""
    digest = hashlib.sha256()
    for name in sorted(topics):
        topic_id, count = topics[name]
        digest.update(f"{name}:{topic_id}:{count};".encode())
    return int.from_bytes(digest.digest()[:8], "big", signed=True)


def describe_share_groups(ctx: ShardContext, group_ids: list[str]) -> list[DescribedShareGroup]:
    """ShareGroupDescribe: members, their assignments (with topic names) and the epochs."""
    out: list[DescribedShareGroup] = []
    for group_id in group_ids:
        group = ctx.groups.get(group_id)
        if not isinstance(group, ShareGroup):
            out.append(
                DescribedShareGroup(
                    error_code=ErrorCode.GROUP_ID_NOT_FOUND,
                    error_message=f"Group {group_id} not found.",
                    group_id=group_id,
                    group_state="Dead",
                )
            )
            continue
        names = {
            topic_id: name
            for name in group.subscribed_topic_names()
            if (topic_id := ctx.topics.topic_id_of(name)) is not None
        }
        members = [
            DescribedMember(
                member_id=m.member_id,
                rack_id=m.rack_id,
                member_epoch=m.member_epoch,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topic_names=sorted(m.subscribed_topic_names),
                assignment=DescribedAssignment(
                    [
                        DescribedTopicPartitions(tid, names.get(tid, ""), sorted(parts))
                        for tid, parts in sorted(m.assigned.items())
                    ]
                ),
            )
            for m in group.members.values()
        ]
        out.append(
            DescribedShareGroup(
                group_id=group_id,
                group_state=group.state.value,
                group_epoch=group.group_epoch,
                assignment_epoch=group.assignment_epoch,
                assignor_name="simple",
                members=members,
            )
        )
    return out
