"""A timer index: delayed records kept on disk in a hierarchical timing wheel.

RocketMQ keeps timer messages in a timer log (entries chained per time slot) and a timing
wheel (per slot: first entry, last entry, count); Kafka's purgatory uses a hierarchical
timing wheel. This is both: the entries live in a `TimerLog` (strom.storage.timer_log), the
wheel holds only `LEVELS` x `SLOTS` slots, so memory does not grow with the number of pending
records (a million delayed records are 24 MB of timer log; the wheel is 120 KB whatever the
number).

The wheel. Level L has `SLOTS` slots of `SLOTS**L` milliseconds each; the wheel's position `W`
is a time in milliseconds. An entry due at `d >= W` sits at the lowest level L on which `d`
and `W` agree above the level (`d >> (BITS*(L+1)) == W >> (BITS*(L+1))`), in slot
`(d >> (BITS*L)) % SLOTS`. With 1024 slots a level, level 0 holds the exact milliseconds of
W's current 1.024 s, level 1 the 1.024 s buckets of W's current 17.5 minutes, level 2 the
17.5-minute buckets of 12.4 days, level 3 12.4-day buckets of 35 years; five levels cover 2**50
ms (due times past that are clamped to it). When W moves into a new bucket of level L >= 1, that bucket's slot is
cascaded: its entries are appended again at their place below (a chain is never edited in
place, only appended to). On any level, the slot of W's own bucket is empty above level 0.

Order. Records are taken in (due, offset) order: level 0 slots hold one exact millisecond
each, and every chain lists the entries of one due time in increasing offset order, because
entries are added in increasing offset order and a chain receives cascaded entries (older,
smaller offsets) only before any entry added directly. The cursor `(W, offset)` is the last
position taken (offset -1 after a move): an entry `(d, o)` is pending exactly when
`(d, o) > cursor`. This is what makes the index a cache of its partition's log: the pending
entries of a share partition are the delayed records it has passed whose `(due, offset)` is
beyond the cursor, so the index can always be rebuilt from the log and the cursor alone.

The checkpoint. `timer.checkpoint` is written by `close` (after the timer log's pages were
msynced) and removed by `open`, so it exists only while the files are exactly as it says:

    magic        4 bytes  b"STMR"
    version      int16    1
    token        int16 length, then bytes (the owner's name for the state the files match)
    wheel_ms     int64    W
    cursor_off   int64    the offset part of the cursor
    last_added   int64    the largest offset added (adds must grow)
    next_index   int64    the timer log's next entry index
    segments     int32 count, then per segment: base int64, live int64, min_offset int64
    levels       int16, slots int16, then per slot (level-major): head, tail, count (int64 each)
    crc          uint32   CRC-32C of every byte before it

Without a checkpoint that matches (a crash, a different token or cursor), the owner creates
the index afresh and adds its pending records again (`create`, then `add` in offset order).
Not thread-safe: one owner, on the event loop.
"""

from __future__ import annotations

import shutil
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from crc32c import crc32c

from strom.storage.checkpoint import write_atomically
from strom.storage.timer_log import NO_ENTRY, SegmentInfo, TimerLog

__all__ = ["BITS", "LEVELS", "MAX_DUE", "SLOTS", "TimerCursor", "TimerIndex"]

BITS: Final = 10
SLOTS: Final = 1 << BITS
MASK: Final = SLOTS - 1
LEVELS: Final = 5
MAX_DUE: Final = (1 << (BITS * LEVELS)) - 1
CHECKPOINT: Final = "timer.checkpoint"
CASCADE_CHUNK: Final = 4096
MAGIC: Final = b"STMR"
VERSION: Final = 1
_HEAD = struct.Struct(">4sh")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_STATE = struct.Struct(">qqqq")
_SEGMENT = struct.Struct(">qqq")
_CRC = struct.Struct(">I")


class TimerIndexError(ValueError):
    """An add that breaks the index's order rules (a bug in its owner)."""


@dataclass(frozen=True, slots=True, order=True)
class TimerCursor:
    """The last (due, offset) taken; entries at or before it are no longer pending."""

    due_ms: int
    offset: int = -1


class TimerIndex:
    def __init__(self, directory: Path, log: TimerLog, cursor: TimerCursor) -> None:
        self.directory = directory
        self._log = log
        self._w = min(max(cursor.due_ms, 0), MAX_DUE)
        self._cursor_offset = cursor.offset
        self._last_added = -1
        n = LEVELS * SLOTS
        self._heads = array("q", [NO_ENTRY]) * n
        self._tails = array("q", [NO_ENTRY]) * n
        self._counts = array("q", [0]) * n
        self._masks = [0] * LEVELS  # bit s of level L: slot s holds entries

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, cursor: TimerCursor) -> TimerIndex:
        """An empty index in `directory` (whatever was there goes)."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CHECKPOINT).unlink(missing_ok=True)
        return cls(directory, TimerLog.create(directory), cursor)

    @classmethod
    def open(cls, directory: Path, token: bytes, cursor: TimerCursor) -> TimerIndex | None:
        """The index a clean `close(token)` left at `cursor`; None when there is none (then
        `create` and add the pending records again)."""
        path = directory / CHECKPOINT
        try:
            data = path.read_bytes()
        except OSError:
            return None
        path.unlink(missing_ok=True)  # from here on the files change: no stale checkpoint
        try:
            parsed = _parse_checkpoint(data)
        except (ValueError, struct.error):
            return None
        if parsed is None:
            return None
        saved_token, state, segments, slots = parsed
        w, cursor_offset, last_added, next_index = state
        if saved_token != token or TimerCursor(w, cursor_offset) != cursor:
            return None
        try:
            log = TimerLog.reopen(directory, next_index, segments)
        except OSError:
            return None
        index = cls(directory, log, cursor)
        index._last_added = last_added
        for k, (head, tail, count) in enumerate(slots):
            index._heads[k], index._tails[k], index._counts[k] = head, tail, count
            if count:
                index._masks[k // SLOTS] |= 1 << (k % SLOTS)
        return index

    def close(self, token: bytes) -> None:
        """Flush the timer log and write the checkpoint that lets `open(token)` reuse it."""
        self._log.flush()
        out = bytearray(_HEAD.pack(MAGIC, VERSION))
        out += _I16.pack(len(token)) + token
        out += _STATE.pack(self._w, self._cursor_offset, self._last_added, self._log.next_index)
        segments = self._log.segments
        out += _I32.pack(len(segments))
        for seg in segments:
            out += _SEGMENT.pack(seg.base, seg.live, seg.min_offset)
        out += _I16.pack(LEVELS) + _I16.pack(SLOTS)
        for k in range(LEVELS * SLOTS):
            out += _SEGMENT.pack(self._heads[k], self._tails[k], self._counts[k])
        out += _CRC.pack(crc32c(bytes(out)))
        self._log.close()
        write_atomically(self.directory / CHECKPOINT, bytes(out))

    def abandon(self) -> None:
        """Close without a checkpoint (the files are not reused)."""
        self._log.close()

    def destroy(self) -> None:
        """Close and remove the index's directory."""
        self._log.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- views ---------------------------------------------------------------------------

    @property
    def cursor(self) -> TimerCursor:
        return TimerCursor(self._w, self._cursor_offset)

    @property
    def pending(self) -> int:
        return sum(self._counts)

    @property
    def last_added(self) -> int:
        return self._last_added

    def scan_from(self) -> int | None:
        """No pending entry names an offset below this (None: nothing pending)."""
        return self._log.min_live_offset() if self.pending else None

    def disk_bytes(self) -> int:
        return self._log.disk_bytes()

    def is_after_cursor(self, due_ms: int, offset: int) -> bool:
        """Whether a record due at `due_ms` must wait in the index (else it is due now)."""
        return (min(due_ms, MAX_DUE), offset) > (self._w, self._cursor_offset)

    def next_due(self) -> int | None:
        """A time at or before which `take` has nothing to give (None: nothing pending).

        Exact when the next entry is in level 0, else the start of its bucket: a `take` at
        that time moves the wheel there, and `next_due` is then exact."""
        if self._counts[self._w & MASK]:
            return self._w
        return self._next_time()

    # -- changes -------------------------------------------------------------------------

    def add(self, due_ms: int, offset: int) -> None:
        """Keep a record until `due_ms`; offsets must grow from one add to the next, and
        `(due_ms, offset)` must be after the cursor (`is_after_cursor`)."""
        due = min(due_ms, MAX_DUE)
        if offset <= self._last_added:
            raise TimerIndexError(f"offset {offset} added after {self._last_added}")
        if (due, offset) <= (self._w, self._cursor_offset):
            raise TimerIndexError(f"({due}, {offset}) is not after the cursor {self.cursor}")
        self._last_added = offset
        self._place(self._log.append(due, offset), due)

    def take(self, now_ms: int, limit: int) -> list[tuple[int, int]]:
        """Up to `limit` pending (due, offset) with due <= now_ms, in (due, offset) order;
        they are no longer pending (the cursor moves past them)."""
        out: list[tuple[int, int]] = []
        log = self._log
        counts, heads, tails = self._counts, self._heads, self._tails
        while len(out) < limit:
            w = self._w
            k = w & MASK
            if counts[k]:
                if w > now_ms:
                    break
                chain = log.read_chain(heads[k], limit - len(out))
                out.extend((due, offset) for _, due, offset, _ in chain)
                heads[k] = chain[-1][3]
                counts[k] -= len(chain)
                if not counts[k]:
                    tails[k] = NO_ENTRY
                    self._masks[0] &= ~(1 << k)
                log.kill_many([entry[0] for entry in chain])
                self._cursor_offset = chain[-1][2]
                continue
            t = self._next_time()
            if t is None or t > now_ms:
                break
            self._move_to(t)
        return out

    # -- the wheel -----------------------------------------------------------------------

    def _place(self, index: int, due: int) -> None:
        x = due ^ self._w
        level = (x.bit_length() - 1) // BITS if x >= SLOTS else 0
        slot = (due >> (BITS * level)) & MASK
        k = level * SLOTS + slot
        tail = self._tails[k]
        if tail == NO_ENTRY:
            self._heads[k] = index
        else:
            self._log.link(tail, index)
        self._tails[k] = index
        self._counts[k] += 1
        self._masks[level] |= 1 << slot

    def _next_time(self) -> int | None:
        """The earliest time after W at which a slot holds entries (a bucket's start above
        level 0)."""
        w = self._w
        for level in range(LEVELS):
            shift = BITS * level
            idx = (w >> shift) & MASK
            later = self._masks[level] >> (idx + 1)
            if later:
                slot = idx + (later & -later).bit_length()
                high = (w >> (shift + BITS)) << (shift + BITS)
                return high | (slot << shift)
        return None

    def _move_to(self, t: int) -> None:
        old = self._w
        self._w = t
        self._cursor_offset = -1
        changed = old ^ t
        top = (changed.bit_length() - 1) // BITS if changed >= SLOTS else 0
        for level in range(top, 0, -1):
            self._cascade(level, (t >> (BITS * level)) & MASK)

    def _cascade(self, level: int, slot: int) -> None:
        """Move a bucket's entries to their places below (appended again, in chain order)."""
        k = level * SLOTS + slot
        head = self._heads[k]
        self._heads[k] = self._tails[k] = NO_ENTRY
        self._counts[k] = 0
        self._masks[level] &= ~(1 << slot)
        log = self._log
        w = self._w
        while head != NO_ENTRY:
            chain = log.read_chain(head, CASCADE_CHUNK)
            head = chain[-1][3]
            # Where each entry goes, then its `next`: the following entry of the same slot.
            targets = []
            for _, due, _, _ in chain:
                x = due ^ w
                lv = (x.bit_length() - 1) // BITS if x >= SLOTS else 0
                targets.append(lv * SLOTS + ((due >> (BITS * lv)) & MASK))
            first = log.next_index
            nexts = [NO_ENTRY] * len(chain)
            following: dict[int, int] = {}
            for j in range(len(chain) - 1, -1, -1):
                t = targets[j]
                nexts[j] = following.get(t, NO_ENTRY)
                following[t] = first + j
            log.append_many(
                [(due, offset, nexts[j]) for j, (_, due, offset, _) in enumerate(chain)]
            )
            for t, first_new in following.items():
                tail = self._tails[t]
                if tail == NO_ENTRY:
                    self._heads[t] = first_new
                else:
                    log.link(tail, first_new)
            for j, t in enumerate(targets):
                self._tails[t] = first + j
                self._counts[t] += 1
                self._masks[t // SLOTS] |= 1 << (t % SLOTS)
            log.kill_many([entry[0] for entry in chain])


def _parse_checkpoint(
    data: bytes,
) -> tuple[bytes, tuple[int, int, int, int], list[SegmentInfo], list[tuple[int, int, int]]] | None:
    if len(data) < _HEAD.size + _CRC.size:
        return None
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if crc32c(data[: -_CRC.size]) != crc:
        return None
    magic, version = _HEAD.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION:
        return None
    pos = _HEAD.size
    (token_len,) = _I16.unpack_from(data, pos)
    pos += _I16.size
    token = data[pos : pos + token_len]
    pos += token_len
    state = _STATE.unpack_from(data, pos)
    pos += _STATE.size
    (nseg,) = _I32.unpack_from(data, pos)
    pos += _I32.size
    segments = []
    for _ in range(nseg):
        base, live, min_offset = _SEGMENT.unpack_from(data, pos)
        pos += _SEGMENT.size
        segments.append(SegmentInfo(base, live, min_offset))
    levels, slots = _I16.unpack_from(data, pos)[0], _I16.unpack_from(data, pos + 2)[0]
    pos += 4
    if levels != LEVELS or slots != SLOTS:
        return None
    table = [_SEGMENT.unpack_from(data, pos + k * _SEGMENT.size) for k in range(levels * slots)]
    pos += levels * slots * _SEGMENT.size
    if pos != len(data) - _CRC.size:
        return None
    return token, state, segments, table
