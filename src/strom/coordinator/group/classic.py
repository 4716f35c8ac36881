"""Classic group membership: JoinGroup, SyncGroup, Heartbeat and LeaveGroup.

The rebalance protocol, as Kafka's coordinator runs it:
1. A member change (join, leave, expiry, a leader's rejoin, new metadata) moves the group to
   PreparingRebalance. Every member must send JoinGroup again; their requests are parked.
2. When every member has rejoined, or the rebalance timeout (the largest
   rebalance_timeout_ms, i.e. max.poll.interval.ms) passes, the members that did not rejoin
   are dropped, the generation is bumped, the protocol is chosen and every parked JoinGroup
   is answered; the leader's answer lists the members and their metadata.
3. The leader computes the assignment (client-side assignors) and sends it in SyncGroup; the
   group is persisted (one GroupMetadata record), becomes Stable, and every parked SyncGroup
   gets its member's assignment. Members that do not sync within the rebalance timeout are
   removed and the group rebalances again.
The first rebalance of an empty group waits group.initial.rebalance.delay.ms, extended by the
same delay each time another member joins, up to the rebalance timeout, so that a group of
consumers starting together settles in one generation.

Responses are handed to `respond` callbacks; a parked request is answered during a later call
(another member's request, or `tick()`). Class `ClassicGroups` holds no state of its own:
groups, timers and records go through the shard context.
"""

from __future__ import annotations

from collections.abc import Callable

from strom.coordinator.group.classic_group import (
    ClassicGroup,
    ClassicMember,
    ClassicState,
    JoinResponder,
)
from strom.coordinator.group.classic_rebalance import ClassicRebalance, join_error
from strom.coordinator.group.records import (
    CoordinatorRecord,
    GroupMetadataValue,
    group_metadata,
)
from strom.coordinator.share.group import ShareGroup
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.heartbeat_request import HeartbeatRequest
from strom.protocol.messages.heartbeat_response import HeartbeatResponse
from strom.protocol.messages.join_group_request import JoinGroupRequest
from strom.protocol.messages.join_group_response import JoinGroupResponse
from strom.protocol.messages.leave_group_request import LeaveGroupRequest, MemberIdentity
from strom.protocol.messages.leave_group_response import LeaveGroupResponse, MemberResponse
from strom.protocol.messages.sync_group_request import SyncGroupRequest
from strom.protocol.messages.sync_group_response import SyncGroupResponse

Records = list[CoordinatorRecord]

# JoinGroup v4+ must carry a member id: a first join gets MEMBER_ID_REQUIRED and an id.
JOIN_MEMBER_ID_REQUIRED_VERSION = 4
# JoinGroup v9+ lets a re-joining static leader skip computing the assignment.
JOIN_SKIP_ASSIGNMENT_VERSION = 9
# JoinGroup v7 made the protocol name nullable; older versions need a string.
JOIN_NULLABLE_PROTOCOL_VERSION = 7


def _join_responder(respond: Callable[[JoinGroupResponse], None], version: int) -> JoinResponder:
    if version >= JOIN_NULLABLE_PROTOCOL_VERSION:
        return respond

    def normalized(response: JoinGroupResponse) -> None:
        if response.protocol_name is None:
            response.protocol_name = ""
        respond(response)

    return normalized


def _protocol_inconsistent(requested: str | None, actual: str | None) -> bool:
    return requested is not None and actual is not None and requested != actual


class ClassicGroups(ClassicRebalance):
    """The request handlers; the rebalance machinery is inherited."""

    # -- JoinGroup ---------------------------------------------------------------------

    def join(
        self,
        request: JoinGroupRequest,
        version: int,
        client_id: str,
        client_host: str,
        respond: Callable[[JoinGroupResponse], None],
    ) -> Records:
        reply = _join_responder(respond, version)
        cfg = self.ctx.config
        if not request.group_id:
            reply(join_error(request.member_id, ErrorCode.INVALID_GROUP_ID))
            return []
        if (
            not cfg.min_session_timeout_ms
            <= request.session_timeout_ms
            <= cfg.max_session_timeout_ms
        ):
            reply(join_error(request.member_id, ErrorCode.INVALID_SESSION_TIMEOUT))
            return []
        if version == 0:
            # v0 has no rebalance timeout; Kafka uses the session timeout for both.
            request.rebalance_timeout_ms = request.session_timeout_ms
        records: Records = []
        existing = self.ctx.groups.get(request.group_id)
        if existing is not None and not isinstance(existing, ClassicGroup):
            if not existing.is_empty() or isinstance(existing, ShareGroup):
                # Mixed groups (classic members in a consumer-protocol group) are not
                # supported: the group id is taken by the other protocol.
                reply(join_error(request.member_id, ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
                return []
            records += self._delete_empty_consumer_group(request.group_id)
        group = self._group(request.group_id)
        is_new_group = group is None
        if group is None:
            if request.member_id:
                reply(join_error(request.member_id, ErrorCode.UNKNOWN_MEMBER_ID))
                return records
            group = ClassicGroup(request.group_id)
            self.ctx.groups[group.group_id] = group
        protocols = [(p.name, p.metadata) for p in request.protocols]
        result: Records
        if not self._accept_joining_member(group, request.member_id):
            group.remove(request.member_id)
            reply(join_error("", ErrorCode.GROUP_MAX_SIZE_REACHED))
            result = []
        elif not request.member_id:
            result = self._join_new_member(
                group, request, protocols, version, client_id, client_host, reply
            )
        else:
            result = self._join_existing_member(
                group, request, protocols, client_id, client_host, reply
            )
        records += result
        if is_new_group and not result:
            # Persist the group's existence, as Kafka does (an empty generation-0 record).
            value = GroupMetadataValue(
                protocol_type="",
                generation=0,
                protocol=None,
                leader=None,
                current_state_timestamp=self.ctx.now_ms(),
                members=[],
            )
            records.append(self.ctx.own(group_metadata(group.group_id, value)))
        return records

    def _delete_empty_consumer_group(self, group_id: str) -> Records:
        # Imported here: consumer.py imports this module's neighbours, not the reverse.
        from strom.coordinator.group.consumer_group import ConsumerGroup

        group = self.ctx.groups.pop(group_id)
        assert isinstance(group, ConsumerGroup)
        return group.tombstones()

    def _accept_joining_member(self, group: ClassicGroup, member_id: str) -> bool:
        max_size = self.ctx.config.max_size
        if group.is_in(ClassicState.EMPTY, ClassicState.DEAD):
            return True
        if group.is_in(ClassicState.PREPARING_REBALANCE):
            # Counting parked joins (not members) lets the last rejoiners be refused when
            # the group is over a reduced max size.
            member = group.members.get(member_id)
            return (
                member is not None and member.awaiting_join is not None
            ) or group.num_awaiting_join < max_size
        return member_id in group.members or len(group.members) < max_size

    def _join_new_member(
        self,
        group: ClassicGroup,
        request: JoinGroupRequest,
        protocols: list[tuple[str, bytes]],
        version: int,
        client_id: str,
        client_host: str,
        reply: JoinResponder,
    ) -> Records:
        if group.is_in(ClassicState.DEAD):
            reply(join_error("", ErrorCode.COORDINATOR_NOT_AVAILABLE))
            return []
        if not group.supports_protocols(request.protocol_type, protocols):
            reply(join_error("", ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
            return []
        instance_id = request.group_instance_id
        new_member_id = group.generate_member_id(client_id, instance_id)
        if instance_id is not None:
            old_member_id = group.static_members.get(instance_id)
            if old_member_id is not None:
                return self._replace_static_member(
                    group, request, protocols, version, old_member_id, new_member_id, reply
                )
            return self._add_member(
                group, request, protocols, new_member_id, client_id, client_host, reply
            )
        if version >= JOIN_MEMBER_ID_REQUIRED_VERSION:
            # The member must come back with this id (within its session timeout); until
            # then it is a pending member that the rebalance waits for.
            group.pending_join_members.add(new_member_id)
            self._schedule_heartbeat(group.group_id, new_member_id, request.session_timeout_ms)
            reply(
                JoinGroupResponse(error_code=ErrorCode.MEMBER_ID_REQUIRED, member_id=new_member_id)
            )
            return []
        return self._add_member(
            group, request, protocols, new_member_id, client_id, client_host, reply
        )

    def _join_existing_member(
        self,
        group: ClassicGroup,
        request: JoinGroupRequest,
        protocols: list[tuple[str, bytes]],
        client_id: str,
        client_host: str,
        reply: JoinResponder,
    ) -> Records:
        member_id = request.member_id
        if group.is_in(ClassicState.DEAD):
            reply(join_error(member_id, ErrorCode.COORDINATOR_NOT_AVAILABLE))
            return []
        if not group.supports_protocols(request.protocol_type, protocols):
            reply(join_error(member_id, ErrorCode.INCONSISTENT_GROUP_PROTOCOL))
            return []
        if group.is_pending_member(member_id):
            if request.group_instance_id is not None:
                # Pending members are dynamic; a static id here is a confused client.
                reply(join_error(member_id, ErrorCode.UNKNOWN_MEMBER_ID))
                return []
            return self._add_member(
                group, request, protocols, member_id, client_id, client_host, reply
            )
        error = group.validate_member(member_id, request.group_instance_id)
        if error is not None:
            reply(join_error(member_id, error))
            return []
        member = group.members[member_id]
        if group.is_in(ClassicState.PREPARING_REBALANCE):
            return self._update_member(group, member, request, protocols, reply)
        if group.is_in(ClassicState.COMPLETING_REBALANCE):
            if member.matches(protocols):
                # A retry of a join that was already answered: answer it again.
                reply(
                    self._join_response(group, member_id, with_members=group.is_leader(member_id))
                )
                return []
            return self._update_member(group, member, request, protocols, reply)
        if group.is_in(ClassicState.STABLE):
            if group.is_leader(member_id) or not member.matches(protocols):
                # A leader's rejoin forces a rebalance: that is how clients react to
                # changes the coordinator cannot see (e.g. new partitions).
                return self._update_member(group, member, request, protocols, reply)
            reply(self._join_response(group, member_id, with_members=False))
            return []
        # Empty: the member's generation is gone; it must join from scratch.
        reply(join_error(member_id, ErrorCode.UNKNOWN_MEMBER_ID))
        return []

    def _update_member(
        self,
        group: ClassicGroup,
        member: ClassicMember,
        request: JoinGroupRequest,
        protocols: list[tuple[str, bytes]],
        reply: JoinResponder,
    ) -> Records:
        group.update_member(
            member, protocols, request.rebalance_timeout_ms, request.session_timeout_ms, reply
        )
        return self._maybe_prepare_rebalance_or_complete_join(group)

    def _add_member(
        self,
        group: ClassicGroup,
        request: JoinGroupRequest,
        protocols: list[tuple[str, bytes]],
        member_id: str,
        client_id: str,
        client_host: str,
        reply: JoinResponder,
    ) -> Records:
        member = ClassicMember(
            member_id=member_id,
            group_instance_id=request.group_instance_id,
            client_id=client_id,
            client_host=client_host,
            rebalance_timeout_ms=request.rebalance_timeout_ms,
            session_timeout_ms=request.session_timeout_ms,
            protocol_type=request.protocol_type,
            protocols=protocols,
            is_new=True,
        )
        if (
            group.is_in(ClassicState.PREPARING_REBALANCE)
            and group.previous_state is ClassicState.EMPTY
        ):
            group.new_member_added = True
        group.add(member, reply)
        # A new member cannot heartbeat while its JoinGroup is parked, and a client that
        # gave up and retried would leave a defunct member behind: bound the wait.
        self._schedule_heartbeat(
            group.group_id, member_id, self.ctx.config.new_member_join_timeout_ms
        )
        return self._maybe_prepare_rebalance_or_complete_join(group)

    def _replace_static_member(
        self,
        group: ClassicGroup,
        request: JoinGroupRequest,
        protocols: list[tuple[str, bytes]],
        version: int,
        old_member_id: str,
        new_member_id: str,
        reply: JoinResponder,
    ) -> Records:
        """A static member restarted (same group.instance.id, no member id)."""
        # Pre-v9 clients must not see themselves as leader here (they would compute an
        # assignment with no members): they are told the leader as it was.
        leader_before = group.leader_id or ""
        new_member = group.replace_static_member(
            request.group_instance_id or "", old_member_id, new_member_id
        )
        self.ctx.timers.cancel(("hb", group.group_id, old_member_id))
        self._schedule_heartbeat(group.group_id, new_member_id, new_member.session_timeout_ms)
        group.update_member(
            new_member, protocols, request.rebalance_timeout_ms, request.session_timeout_ms, reply
        )
        if group.is_in(ClassicState.STABLE):
            if group.protocol_name == group.select_protocol():
                # Nothing the assignment depends on changed: keep the generation, persist
                # the new member id and give the member its old assignment back. A leader
                # on v9+ is told to skip the assignment (it already holds one); an older
                # leader gets no member list, so it will not compute one either.
                record = self.ctx.own(group_metadata(group.group_id, group.to_record_value()))
                is_leader = group.is_leader(new_member_id)
                if version >= JOIN_SKIP_ASSIGNMENT_VERSION:
                    response = self._join_response(
                        group, new_member_id, with_members=is_leader, skip=is_leader
                    )
                else:
                    response = self._join_response(group, new_member_id, with_members=False)
                    response.leader = leader_before
                group.complete_join(new_member, response)
                return [record]
            return self._maybe_prepare_rebalance_or_complete_join(group)
        if group.is_in(ClassicState.COMPLETING_REBALANCE):
            # The leader may already hold the old member id in its assignment: start over.
            return self._prepare_rebalance(group)
        return self._maybe_complete_join_phase(group)

    # -- SyncGroup -----------------------------------------------------------------------

    def sync(
        self, request: SyncGroupRequest, version: int, respond: Callable[[SyncGroupResponse], None]
    ) -> Records:
        if not request.group_id:
            respond(SyncGroupResponse(error_code=ErrorCode.INVALID_GROUP_ID))
            return []
        group = self._group(request.group_id)
        if group is None or group.is_empty():
            respond(SyncGroupResponse(error_code=ErrorCode.UNKNOWN_MEMBER_ID))
            return []
        error = self._validate_sync(group, request)
        if error is not None:
            respond(SyncGroupResponse(error_code=error))
            return []
        member_id = request.member_id
        if group.is_in(ClassicState.PREPARING_REBALANCE):
            respond(SyncGroupResponse(error_code=ErrorCode.REBALANCE_IN_PROGRESS))
            return []
        if group.is_in(ClassicState.STABLE):
            self._remove_pending_sync(group, member_id)
            member = group.members[member_id]
            respond(
                SyncGroupResponse(
                    protocol_type=group.protocol_type,
                    protocol_name=group.protocol_name,
                    assignment=member.assignment,
                )
            )
            return []
        # CompletingRebalance: park until the leader's assignment arrives.
        member = group.members[member_id]
        member.awaiting_sync = respond
        self._remove_pending_sync(group, member_id)
        if not group.is_leader(member_id):
            return []
        assignments = {a.member_id: a.assignment for a in request.assignments}
        for mid in group.members:
            assignments.setdefault(mid, b"")
        # The record is built before the state changes so that it carries this generation
        # and these assignments; the runtime must append it before the responses go out.
        record = self.ctx.own(group_metadata(group.group_id, group.to_record_value(assignments)))
        for m in group.members.values():
            m.assignment = assignments.get(m.member_id, b"")
        self._propagate_assignment(group, ErrorCode.NONE)
        group.transition_to(ClassicState.STABLE, self.ctx.now_ms())
        return [record]

    def _validate_sync(self, group: ClassicGroup, request: SyncGroupRequest) -> ErrorCode | None:
        if group.is_in(ClassicState.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        error = group.validate_member(request.member_id, request.group_instance_id)
        if error is not None:
            return error
        if request.generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if _protocol_inconsistent(request.protocol_type, group.protocol_type) or (
            _protocol_inconsistent(request.protocol_name, group.protocol_name)
        ):
            return ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        return None

    def _remove_pending_sync(self, group: ClassicGroup, member_id: str) -> None:
        group.pending_sync_members.discard(member_id)
        if not group.pending_sync_members or not group.is_in(
            ClassicState.COMPLETING_REBALANCE, ClassicState.STABLE
        ):
            self.ctx.timers.cancel(("sync", group.group_id))

    # -- Heartbeat -----------------------------------------------------------------------

    def heartbeat(
        self, request: HeartbeatRequest, version: int
    ) -> tuple[HeartbeatResponse, Records]:
        if not request.group_id:
            return HeartbeatResponse(error_code=ErrorCode.INVALID_GROUP_ID), []
        group = self._group(request.group_id)
        if group is None:
            return HeartbeatResponse(error_code=ErrorCode.UNKNOWN_MEMBER_ID), []
        if group.is_in(ClassicState.DEAD):
            return HeartbeatResponse(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE), []
        error = group.validate_member(request.member_id, request.group_instance_id)
        if error is not None:
            return HeartbeatResponse(error_code=error), []
        if request.generation_id != group.generation_id:
            return HeartbeatResponse(error_code=ErrorCode.ILLEGAL_GENERATION), []
        if group.is_in(ClassicState.EMPTY):
            return HeartbeatResponse(error_code=ErrorCode.UNKNOWN_MEMBER_ID), []
        member = group.members[request.member_id]
        self._schedule_heartbeat(group.group_id, member.member_id, member.session_timeout_ms)
        if group.is_in(ClassicState.PREPARING_REBALANCE):
            return HeartbeatResponse(error_code=ErrorCode.REBALANCE_IN_PROGRESS), []
        # Heartbeats during CompletingRebalance (after the JoinGroup answer) are normal.
        return HeartbeatResponse(), []

    # -- LeaveGroup ----------------------------------------------------------------------

    def leave(self, request: LeaveGroupRequest, version: int) -> tuple[LeaveGroupResponse, Records]:
        identities = (
            request.members if version >= 3 else [MemberIdentity(member_id=request.member_id)]
        )
        response, records = self._leave(request.group_id, identities)
        if version < 3:
            # v0-2 name one member and answer with one top-level error.
            error = response.error_code
            if error == ErrorCode.NONE and response.members:
                error = response.members[0].error_code
            return LeaveGroupResponse(error_code=error), records
        return response, records

    def _leave(
        self, group_id: str, identities: list[MemberIdentity]
    ) -> tuple[LeaveGroupResponse, Records]:
        if not group_id:
            return LeaveGroupResponse(error_code=ErrorCode.INVALID_GROUP_ID), []
        group = self._group(group_id)
        if group is None:
            return LeaveGroupResponse(error_code=ErrorCode.UNKNOWN_MEMBER_ID), []
        if group.is_in(ClassicState.DEAD):
            return LeaveGroupResponse(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE), []
        responses: list[MemberResponse] = []
        removed = 0
        for ident in identities:
            error: ErrorCode | None = None
            if not ident.member_id:
                # Admin removal by group.instance.id (kafka-consumer-groups --delete-members).
                static_id = (
                    group.static_members.get(ident.group_instance_id)
                    if ident.group_instance_id is not None
                    else None
                )
                if static_id is None:
                    error = ErrorCode.UNKNOWN_MEMBER_ID
                else:
                    self._remove_current_member(group, static_id)
            elif group.is_pending_member(ident.member_id):
                group.remove(ident.member_id)
                self.ctx.timers.cancel(("hb", group_id, ident.member_id))
            else:
                error = group.validate_member(ident.member_id, ident.group_instance_id)
                if error is None:
                    self._remove_current_member(group, ident.member_id)
            if error is None:
                removed += 1
            responses.append(
                MemberResponse(
                    member_id=ident.member_id,
                    group_instance_id=ident.group_instance_id,
                    error_code=error or ErrorCode.NONE,
                )
            )
        records: Records = []
        if removed:
            if group.is_in(ClassicState.STABLE, ClassicState.COMPLETING_REBALANCE):
                records = self._maybe_prepare_rebalance_or_complete_join(group)
            elif group.is_in(ClassicState.PREPARING_REBALANCE):
                records = self._maybe_complete_join_phase(group)
        return LeaveGroupResponse(members=responses), records

    def _remove_current_member(self, group: ClassicGroup, member_id: str) -> None:
        member = group.members[member_id]
        self.ctx.timers.cancel(("hb", group.group_id, member_id))
        group.complete_join(member, join_error("", ErrorCode.UNKNOWN_MEMBER_ID))
        group.remove(member_id)
