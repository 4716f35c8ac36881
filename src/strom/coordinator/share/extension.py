"""What Strom keeps of a share partition beyond Kafka's ShareSnapshot: the `__share_group_state`
record of type 1000 (Kafka's types there are 0, ShareSnapshot, and 1, ShareUpdate; Kafka's
loader skips types it does not know).

Written in the same batch as the partition's ShareSnapshot whenever the partition uses a
feature of issue #16, replaced by a tombstone when it no longer does, compacted like the
snapshots. Key: int16 type (1000) then the ShareSnapshotKey struct (group id, topic id,
partition; version 0). Value: int16 version (0) then, big-endian:

    timer present      int8 (0 or 1), then when 1:
      cursor_due       int64    the delay index's cursor: last due time taken
      cursor_offset    int64    ... and offset (2^63-1: nothing due at cursor_due waits)
      scan_from        int64    no pending delayed record is below this offset (-1: none)
      pending          int64    delayed records waiting (for describing the group)
      token            int16 length + bytes: names the timer files a clean close left
    due records        int32 count, then per run: first int64, last int64, state int8,
                       delivery count int16 (records given back by the delay index after the
                       start offset passed them: Available or Archiving)
    backoff            int32 count, then per run: first int64, last int64, available_at int64
    rejected           int32 count, then per run: first int64, last int64 (Archiving records a
                       consumer rejected; the others reached the delivery-count limit)
    copier             producer_id int64 (-1: none yet), producer_epoch int16,
                       dead-letter partition int32, next_sequence int32, then
      plan present     int8, then when 1: base_sequence int32, partition int32, and the
                       plan's offsets as int32 count + runs of (first int64, last int64)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from strom.coordinator.share.dead_letter import CopyPlan, DeadLetterCopier
from strom.coordinator.share.states import RecordState, StateBatch
from strom.protocol.errors import ProtocolError
from strom.protocol.primitives import Reader, Writer

__all__ = ["EXTENSION_RECORD_TYPE", "ShareExtension", "TimerState"]

EXTENSION_RECORD_TYPE: Final = 1000
VERSION: Final = 0


@dataclass(frozen=True, slots=True)
class TimerState:
    cursor_due: int
    cursor_offset: int
    scan_from: int  # -1: nothing pending
    pending: int
    token: bytes = b""


@dataclass(slots=True)
class ShareExtension:
    timer: TimerState | None = None
    due: list[StateBatch] = field(default_factory=list)
    backoff: list[tuple[int, int, int]] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    copier: DeadLetterCopier = field(default_factory=DeadLetterCopier)

    @property
    def empty(self) -> bool:
        c = self.copier
        return (
            self.timer is None
            and not self.due
            and not self.backoff
            and not self.rejected
            and c.producer_id < 0
            and c.in_flight is None
        )

    def encode(self) -> bytes:
        w = Writer()
        w.write_int16(VERSION)
        timer = self.timer
        w.write_int8(1 if timer is not None else 0)
        if timer is not None:
            w.write_int64(timer.cursor_due)
            w.write_int64(timer.cursor_offset)
            w.write_int64(timer.scan_from)
            w.write_int64(timer.pending)
            w.write_int16(len(timer.token))
            w.write_raw(timer.token)
        w.write_int32(len(self.due))
        for b in self.due:
            w.write_int64(b.first_offset)
            w.write_int64(b.last_offset)
            w.write_int8(int(b.state))
            w.write_int16(b.delivery_count)
        w.write_int32(len(self.backoff))
        for first, last, at in self.backoff:
            w.write_int64(first)
            w.write_int64(last)
            w.write_int64(at)
        _write_runs(w, self.rejected)
        c = self.copier
        w.write_int64(c.producer_id)
        w.write_int16(c.producer_epoch)
        w.write_int32(c.dead_letter_partition)
        w.write_int32(c.next_sequence)
        plan = c.in_flight
        w.write_int8(1 if plan is not None else 0)
        if plan is not None:
            w.write_int32(plan.base_sequence)
            w.write_int32(plan.dead_letter_partition)
            _write_runs(w, list(plan.offsets))
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes | memoryview) -> ShareExtension:
        r = Reader(data)
        version = r.read_int16()
        if version != VERSION:
            raise ProtocolError(f"share state extension version {version} is not known")
        timer = None
        if r.read_int8():
            due, offset, scan_from, pending = (r.read_int64() for _ in range(4))
            token = bytes(r.read_raw(r.read_int16()))
            timer = TimerState(due, offset, scan_from, pending, token)
        runs = []
        for _ in range(_count(r)):
            first, last = r.read_int64(), r.read_int64()
            state, count = r.read_int8(), r.read_int16()
            try:
                runs.append(StateBatch(first, last, RecordState(state), count))
            except ValueError:
                raise ProtocolError(f"unknown record state {state}") from None
        backoff = []
        for _ in range(_count(r)):
            backoff.append((r.read_int64(), r.read_int64(), r.read_int64()))
        rejected = _read_runs(r)
        copier = DeadLetterCopier(
            producer_id=r.read_int64(),
            producer_epoch=r.read_int16(),
            dead_letter_partition=r.read_int32(),
            next_sequence=r.read_int32(),
        )
        if r.read_int8():
            base, partition = r.read_int32(), r.read_int32()
            offsets = tuple(_read_runs(r))
            copier.in_flight = CopyPlan(
                copier.producer_id, copier.producer_epoch, base, partition, offsets
            )
        return cls(timer, runs, backoff, rejected, copier)


def _count(r: Reader) -> int:
    n = r.read_int32()
    if n < 0 or n > r.remaining:
        raise ProtocolError(f"bad count {n} in a share state extension")
    return n


def _write_runs(w: Writer, offsets: list[int]) -> None:
    runs: list[list[int]] = []
    for offset in sorted(offsets):
        if runs and runs[-1][1] + 1 == offset:
            runs[-1][1] = offset
        else:
            runs.append([offset, offset])
    w.write_int32(len(runs))
    for first, last in runs:
        w.write_int64(first)
        w.write_int64(last)


def _read_runs(r: Reader) -> list[int]:
    out: list[int] = []
    for _ in range(_count(r)):
        first, last = r.read_int64(), r.read_int64()
        if last < first or last - first > 1 << 20:
            raise ProtocolError(f"bad offset run {first}..{last} in a share state extension")
        out.extend(range(first, last + 1))
    return out
