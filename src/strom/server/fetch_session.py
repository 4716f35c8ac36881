"""Incremental fetch sessions (KIP-227).

A client that fetches the same partitions over and over opens a session (epoch 0); the broker
remembers the partitions and their fetch offsets, and later requests name only what changed
(new offsets, added or forgotten partitions). An incremental response carries only the
partitions that have records or whose high watermark, last stable offset or log start offset
moved since they were last sent, so an idle consumer of many partitions costs little.

Session epochs: 0 opens a session, -1 closes it (and the request is then a sessionless full
fetch), anything else must equal the epoch the broker expects next.
"""

from __future__ import annotations

import itertools
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from strom.clock import Clock

INITIAL_EPOCH = 0
FINAL_EPOCH = -1


@dataclass(slots=True)
class SessionPartition:
    topic: str
    topic_id: uuid.UUID
    partition: int
    fetch_offset: int
    max_bytes: int
    # What the client last heard about this partition; -2 means "never sent".
    sent_high_watermark: int = -2
    sent_last_stable_offset: int = -2
    sent_log_start_offset: int = -2

    def changed(self, high_watermark: int, last_stable_offset: int, log_start_offset: int) -> bool:
        return (
            self.sent_high_watermark != high_watermark
            or self.sent_last_stable_offset != last_stable_offset
            or self.sent_log_start_offset != log_start_offset
        )

    def mark_sent(
        self, high_watermark: int, last_stable_offset: int, log_start_offset: int
    ) -> None:
        self.sent_high_watermark = high_watermark
        self.sent_last_stable_offset = last_stable_offset
        self.sent_log_start_offset = log_start_offset


@dataclass(slots=True)
class FetchSession:
    session_id: int
    next_epoch: int
    last_used_ms: int
    partitions: dict[tuple[str, int], SessionPartition] = field(default_factory=dict)


class FetchSessionCache:
    """Sessions by id, least recently used first; at most `slots` of them."""

    def __init__(self, slots: int, clock: Clock) -> None:
        self._slots = slots
        self._clock = clock
        self._sessions: OrderedDict[int, FetchSession] = OrderedDict()
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self) -> FetchSession | None:
        """Open a session, evicting the least recently used one when full; None if no slots."""
        if self._slots <= 0:
            return None
        if len(self._sessions) >= self._slots:
            self._sessions.popitem(last=False)
        session_id = next(self._ids) & 0x7FFFFFFF or next(self._ids)
        session = FetchSession(session_id, 1, self._clock.monotonic_ms())
        self._sessions[session_id] = session
        return session

    def get(self, session_id: int) -> FetchSession | None:
        session = self._sessions.get(session_id)
        if session is not None:
            self._sessions.move_to_end(session_id)
            session.last_used_ms = self._clock.monotonic_ms()
        return session

    def remove(self, session_id: int) -> None:
        self._sessions.pop(session_id, None)

    def forget_topic(self, topic: str) -> None:
        for session in self._sessions.values():
            for key in [k for k in session.partitions if k[0] == topic]:
                del session.partitions[key]
