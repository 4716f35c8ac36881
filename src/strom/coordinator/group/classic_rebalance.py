"""The classic group's rebalance machinery: generations, timeouts, loading and unloading.

`ClassicRebalance` moves a group through PreparingRebalance -> CompletingRebalance -> Stable
(see `classic.py` for the protocol as a whole) and owns its timers:
- ("join", group): the end of the join phase (initial delay, or the rebalance timeout);
- ("sync", group): members that got their JoinGroup answer must SyncGroup by the rebalance
  timeout, or they are removed and the group rebalances again;
- ("hb", group, member): the member's session (a new member's first join is bounded by
  `new_member_join_timeout_ms` instead).
Timer actions look the group up again by id: the group may have been deleted or replaced.
"""

from __future__ import annotations

from strom.coordinator.group.classic_group import ClassicGroup, ClassicMember, ClassicState
from strom.coordinator.group.context import ShardContext
from strom.coordinator.group.records import CoordinatorRecord, GroupMetadataValue, group_metadata
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.join_group_response import JoinGroupResponse
from strom.protocol.messages.sync_group_response import SyncGroupResponse

Records = list[CoordinatorRecord]


def join_error(member_id: str, error: ErrorCode) -> JoinGroupResponse:
    return JoinGroupResponse(
        error_code=error, member_id=member_id, protocol_type=None, protocol_name=None
    )


class ClassicRebalance:
    def __init__(self, ctx: ShardContext) -> None:
        self.ctx = ctx

    def _group(self, group_id: str) -> ClassicGroup | None:
        group = self.ctx.groups.get(group_id)
        return group if isinstance(group, ClassicGroup) else None

    def _join_response(
        self, group: ClassicGroup, member_id: str, with_members: bool, skip: bool = False
    ) -> JoinGroupResponse:
        return JoinGroupResponse(
            error_code=ErrorCode.NONE,
            generation_id=group.generation_id,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
            leader=group.leader_id or "",
            skip_assignment=skip,
            member_id=member_id,
            members=group.current_members() if with_members else [],
        )

    # -- rebalance -----------------------------------------------------------------------

    def _maybe_prepare_rebalance_or_complete_join(self, group: ClassicGroup) -> Records:
        if group.can_rebalance():
            return self._prepare_rebalance(group)
        return self._maybe_complete_join_phase(group)

    def _maybe_complete_join_phase(self, group: ClassicGroup) -> Records:
        if (
            group.is_in(ClassicState.PREPARING_REBALANCE)
            and group.previous_state is not ClassicState.EMPTY  # initial rebalance waits
            and group.has_all_members_joined()
        ):
            return self._complete_join(group)
        return []

    def _prepare_rebalance(self, group: ClassicGroup) -> Records:
        if group.is_in(ClassicState.COMPLETING_REBALANCE):
            # Members waiting in SyncGroup must rejoin instead.
            for member in group.members.values():
                member.assignment = b""
            self._propagate_assignment(group, ErrorCode.REBALANCE_IN_PROGRESS)
        group.pending_sync_members.clear()
        self.ctx.timers.cancel(("sync", group.group_id))
        initial = group.is_in(ClassicState.EMPTY)
        if initial:
            delay = self.ctx.config.initial_rebalance_delay_ms
            remaining = max(group.rebalance_timeout_ms() - delay, 0)
            self._schedule_initial_join(group.group_id, delay, delay, remaining)
        group.transition_to(ClassicState.PREPARING_REBALANCE, self.ctx.now_ms())
        if initial:
            return []
        if group.has_all_members_joined():
            return self._complete_join(group)
        self._schedule_join(group)
        return []

    def _schedule_join(self, group: ClassicGroup) -> None:
        gid = group.group_id
        self.ctx.timers.schedule(
            ("join", gid),
            self.ctx.now_ms() + group.rebalance_timeout_ms(),
            lambda: self._complete_join_by_id(gid),
        )

    def _schedule_initial_join(self, gid: str, after_ms: int, delay: int, remaining: int) -> None:
        self.ctx.timers.schedule(
            ("join", gid),
            self.ctx.now_ms() + after_ms,
            lambda: self._initial_join_due(gid, delay, remaining),
        )

    def _initial_join_due(self, gid: str, delay: int, remaining: int) -> Records:
        group = self._group(gid)
        if group is None:
            return []
        if group.new_member_added and remaining != 0:
            # Another member arrived during the delay: wait once more (within the
            # rebalance timeout) rather than start a generation that is about to change.
            group.new_member_added = False
            new_delay = min(self.ctx.config.initial_rebalance_delay_ms, remaining)
            new_remaining = max(remaining - delay, 0)
            self._schedule_initial_join(gid, new_delay, new_delay, new_remaining)
            return []
        return self._complete_join(group)

    def _complete_join_by_id(self, gid: str) -> Records:
        group = self._group(gid)
        return [] if group is None else self._complete_join(group)

    def _complete_join(self, group: ClassicGroup) -> Records:
        gid = group.group_id
        self.ctx.timers.cancel(("join", gid))
        # Dynamic members that did not rejoin in time are gone; static members stay (their
        # session timeout decides).
        for member in group.not_yet_rejoined():
            if member.group_instance_id is None:
                group.remove(member.member_id)
                self.ctx.timers.cancel(("hb", gid, member.member_id))
        if group.is_in(ClassicState.DEAD):
            return []
        if not group.maybe_elect_new_joined_leader() and group.members:
            # Nobody rejoined (only static members remain): wait for session timeouts.
            self._schedule_join(group)
            return []
        now = self.ctx.now_ms()
        group.init_next_generation(now)
        if group.is_in(ClassicState.EMPTY):
            return [self.ctx.own(group_metadata(gid, group.to_record_value({})))]
        for member in list(group.members.values()):
            is_leader = group.is_leader(member.member_id)
            group.complete_join(
                member, self._join_response(group, member.member_id, with_members=is_leader)
            )
            self._schedule_heartbeat(gid, member.member_id, member.session_timeout_ms)
            member.is_new = False
            group.pending_sync_members.add(member.member_id)
        generation = group.generation_id
        self.ctx.timers.schedule(
            ("sync", gid),
            now + group.rebalance_timeout_ms(),
            lambda: self._expire_pending_sync(gid, generation),
        )
        return []

    def _expire_pending_sync(self, gid: str, generation: int) -> Records:
        group = self._group(gid)
        if group is None or group.generation_id != generation:
            return []
        if not group.is_in(ClassicState.COMPLETING_REBALANCE, ClassicState.STABLE):
            return []
        if not group.pending_sync_members:
            return []
        for member_id in list(group.pending_sync_members):
            group.remove(member_id)
            self.ctx.timers.cancel(("hb", gid, member_id))
        return self._prepare_rebalance(group)

    def _propagate_assignment(self, group: ClassicGroup, error: ErrorCode) -> None:
        ok = error == ErrorCode.NONE
        for member in list(group.members.values()):
            response = SyncGroupResponse(
                error_code=error,
                protocol_type=group.protocol_type if ok else None,
                protocol_name=group.protocol_name if ok else None,
                assignment=member.assignment,
            )
            if group.complete_sync(member, response):
                # A session that expired while the member waited was ignored; restart it.
                self._schedule_heartbeat(
                    group.group_id, member.member_id, member.session_timeout_ms
                )

    # -- heartbeats and expiry -----------------------------------------------------------

    def _schedule_heartbeat(self, gid: str, member_id: str, timeout_ms: int) -> None:
        self.ctx.timers.schedule(
            ("hb", gid, member_id),
            self.ctx.now_ms() + timeout_ms,
            lambda: self._expire_heartbeat(gid, member_id),
        )

    def _expire_heartbeat(self, gid: str, member_id: str) -> Records:
        group = self._group(gid)
        if group is None or group.is_in(ClassicState.DEAD):
            return []
        if group.is_pending_member(member_id):
            group.remove(member_id)
            if group.is_in(ClassicState.PREPARING_REBALANCE) and group.has_all_members_joined():
                return self._complete_join(group)
            return []
        member = group.members.get(member_id)
        if member is None or member.has_satisfied_heartbeat():
            return []
        return self._remove_member_and_update(group, member)

    def _remove_member_and_update(self, group: ClassicGroup, member: ClassicMember) -> Records:
        # A new member may time out with its JoinGroup parked: answer it so that a live
        # client retries.
        group.complete_join(member, join_error("", ErrorCode.UNKNOWN_MEMBER_ID))
        group.remove(member.member_id)
        if group.is_in(ClassicState.STABLE, ClassicState.COMPLETING_REBALANCE):
            return self._maybe_prepare_rebalance_or_complete_join(group)
        if group.is_in(ClassicState.PREPARING_REBALANCE) and group.has_all_members_joined():
            return self._complete_join(group)
        return []

    def touch_member(self, group: ClassicGroup, member_id: str) -> None:
        """An offset commit keeps a member's session alive (Stable/PreparingRebalance)."""
        member = group.members.get(member_id)
        if member is not None:
            self._schedule_heartbeat(group.group_id, member_id, member.session_timeout_ms)

    # -- loading and unloading -----------------------------------------------------------

    def replay(self, group_id: str, value: GroupMetadataValue | None) -> None:
        """Apply a GroupMetadata record that came from the log (not one we produced)."""
        current = self.ctx.groups.get(group_id)
        if value is None:
            if isinstance(current, ClassicGroup):
                self._drop(current, ErrorCode.COORDINATOR_NOT_AVAILABLE)
            return
        if current is not None and not isinstance(current, ClassicGroup):
            # The log holds the other protocol's tombstones before this record; a group of
            # the other type here means those were compacted away. The newest record wins.
            self.ctx.groups.pop(group_id)
        elif isinstance(current, ClassicGroup):
            self._cancel_timers(current)
        group = ClassicGroup.from_record_value(group_id, value)
        self.ctx.groups[group_id] = group
        # Members get a full session to reappear after a (re)load, as in Kafka.
        for member in group.members.values():
            self._schedule_heartbeat(group_id, member.member_id, member.session_timeout_ms)
        if len(group.members) > self.ctx.config.max_size:
            self._prepare_rebalance(group)

    def delete(self, group: ClassicGroup) -> None:
        """The group's tombstone was replayed: it is gone for good."""
        self._drop(group, ErrorCode.COORDINATOR_NOT_AVAILABLE)

    def _drop(self, group: ClassicGroup, error: ErrorCode) -> None:
        self._fail_waiters(group, error)
        self._cancel_timers(group)
        group.state = ClassicState.DEAD
        if self.ctx.groups.get(group.group_id) is group:
            del self.ctx.groups[group.group_id]

    def _fail_waiters(self, group: ClassicGroup, error: ErrorCode) -> None:
        for member in list(group.members.values()):
            group.complete_join(member, join_error(member.member_id, error))
            group.complete_sync(member, SyncGroupResponse(error_code=error))

    def _cancel_timers(self, group: ClassicGroup) -> None:
        gid = group.group_id
        self.ctx.timers.cancel(("join", gid))
        self.ctx.timers.cancel(("sync", gid))
        for member_id in [*group.members, *group.pending_join_members]:
            self.ctx.timers.cancel(("hb", gid, member_id))

    def unload(self) -> None:
        for group in [g for g in self.ctx.groups.values() if isinstance(g, ClassicGroup)]:
            self._fail_waiters(group, ErrorCode.NOT_COORDINATOR)
            group.state = ClassicState.DEAD
