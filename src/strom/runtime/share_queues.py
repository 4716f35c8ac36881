"""Issue #16's features on the broker's share partitions: filters, delays, backoff, wake-ups.

`ShareQueues` sits beside `ShareRuntime` (strom.runtime.share_runtime) and gives each
`SharePartition` what its state machine needs from outside:

- settings from the group configs, read on every use (`configure`): the compiled filter
  (`strom.share.filter`, compiled once per text), the retry backoff
  (`strom.share.retry.backoff.ms`, `.max.ms`) and whether given-up records wait for a
  dead-letter copy (`errors.deadletterqueue.topic.name`);
- marks for the records a read passes (strom.coordinator.share.inspect), with the topic's
  `strom.delivery.delay.ms`;
- the delay index: a `TimerIndex` in `<partition dir>/strom-share-timers/<sha-256 of the group,
  32 hex>/`, created when the first record must wait, reopened from its checkpoint after a
  clean stop, else rebuilt from the log (the share partition takes no new records meanwhile);
- due records: read from the log one run of offsets at a time (`read_due`);
- wake-ups: a timer per share partition at its next event (a lock expiring, a backoff ending,
  a delayed record coming due) notifies the fetch purgatory, so a waiting ShareFetch gets a
  record within milliseconds of its time;
- the extension record persisted beside the partition's ShareSnapshot (`extension`), and at a
  clean stop, or when the share partition is dropped here (its group's last session closed),
  the checkpoint that lets the timer files be reused (`close`, `detach`).

It is the `ShareExtras` of the share partition store (strom.runtime.share_partition_store).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import logging
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from strom.coordinator.share.backoff import DEFAULT_BACKOFF_MAX_MS, RetryBackoff
from strom.coordinator.share.extension import ShareExtension, TimerState
from strom.coordinator.share.inspect import batch_marks
from strom.coordinator.share.partition import (
    AcquiredRange,
    DelayIndex,
    Mark,
    RecordState,
    SharePartition,
)
from strom.protocol.errors import ErrorCode
from strom.protocol.records.batch_header import BatchHeader, iter_batch_headers
from strom.runtime.dead_letter_runtime import DeadLetterRuntime
from strom.share.filter import FilterError, RecordFilter, compile_filter
from strom.storage.errors import OffsetOutOfRangeError
from strom.storage.timer_index import TimerCursor, TimerIndex
from strom.storage.txn_index import AbortedTxn

if TYPE_CHECKING:
    from strom.coordinator.share.coordinator import ShareState
    from strom.runtime.share_runtime import ShareRuntime
    from strom.storage.partition_log import PartitionLog

__all__ = ["TIMERS_DIR", "QueueSettings", "ShareQueues"]

log = logging.getLogger("strom.share")

TIMERS_DIR = "strom-share-timers"
REBUILD_CHUNK = 1 << 20
PartitionKey = tuple[str, str, int]  # group, topic, partition


@dataclass(frozen=True, slots=True)
class QueueSettings:
    record_filter: RecordFilter | None
    backoff: RetryBackoff
    dead_letter_topic: str
    copy_record: bool


def timer_directory(log_dir: Path, group_id: str) -> Path:
    return log_dir / TIMERS_DIR / hashlib.sha256(group_id.encode()).hexdigest()[:32]


class ShareQueues:
    def __init__(self, shares: ShareRuntime) -> None:
        self.shares = shares
        self.broker = shares.broker
        self._filters: dict[str, RecordFilter | None] = {}
        self._wakeups: dict[PartitionKey, asyncio.TimerHandle] = {}
        self._rebuilding: dict[PartitionKey, asyncio.Task[None]] = {}
        # The timer state a share partition was loaded with, kept in its writes while its
        # index is being rebuilt (by id of the SharePartition).
        self._loaded_timers: dict[int, TimerState] = {}
        self.dead_letters = DeadLetterRuntime(shares, self)

    # -- settings ------------------------------------------------------------------------

    def settings(self, group_id: str) -> QueueSettings:
        setting = self.shares.group_setting
        text = setting(group_id, "strom.share.filter", "")
        if text not in self._filters:
            try:
                self._filters[text] = compile_filter(text)
            except FilterError as exc:  # refused when set; an old stored value, say
                log.error("share group %s: ignoring its filter: %s", group_id, exc)
                self._filters[text] = None
        return QueueSettings(
            self._filters[text],
            RetryBackoff(
                _int(setting(group_id, "strom.share.retry.backoff.ms", "0"), 0),
                _int(
                    setting(group_id, "strom.share.retry.backoff.max.ms", ""),
                    DEFAULT_BACKOFF_MAX_MS,
                ),
            ),
            setting(group_id, "errors.deadletterqueue.topic.name", ""),
            setting(group_id, "errors.deadletterqueue.copy.record.enable", "true").lower()
            != "false",
        )

    def configure(self, group_id: str, sp: SharePartition) -> QueueSettings:
        settings = self.settings(group_id)
        sp.backoff = settings.backoff
        sp.dead_letter = bool(settings.dead_letter_topic)
        return settings

    def topic_delay_ms(self, topic: str) -> int:
        record = self.broker.metadata.get_topic(topic)
        if record is None:
            return 0
        return _int(record.configs.get("strom.delivery.delay.ms", "0"), 0)

    # -- share partitions ----------------------------------------------------------------

    def attach(
        self,
        pk: PartitionKey,
        sp: SharePartition,
        state: ShareState | None,
        partition_log: PartitionLog,
    ) -> None:
        """Give a share partition just loaded (or created) its settings and extra state."""
        group_id = pk[0]
        extension = state.extension if state is not None else None
        self.configure(group_id, sp)
        directory = timer_directory(partition_log.directory, group_id)

        def open_delays(due_ms: int, offset: int) -> DelayIndex:
            return TimerIndex.create(directory, TimerCursor(due_ms, offset))

        key = (group_id, partition_log.topic, partition_log.partition)
        sp.open_delays = open_delays
        if extension is None:
            if directory.exists():  # a delay index of a share partition since reset
                with contextlib.suppress(OSError):
                    TimerIndex.create(directory, TimerCursor(0)).destroy()
            return
        sp.restore_extras(extension.due, extension.backoff, extension.rejected)
        sp.copier = copy.deepcopy(extension.copier)  # the coordinator's copy stays its own
        plan = sp.copier.in_flight
        if plan is not None and plan.offsets:
            log.info(
                "share group %s: sending the dead-letter copies of %s-%d offsets %d..%d again "
                "(producer id %d, sequence %d): they may have been written already",
                *key,
                plan.offsets[0],
                plan.offsets[-1],
                plan.producer_id,
                plan.base_sequence,
            )
        self.after_change(group_id, partition_log.topic, partition_log.partition, sp)
        timer = extension.timer
        if timer is None:
            return
        cursor = TimerCursor(timer.cursor_due, timer.cursor_offset)
        reopened = TimerIndex.open(directory, timer.token, cursor) if timer.token else None
        if reopened is not None:
            sp.delays = reopened
            return
        task = asyncio.get_running_loop().create_task(
            self._rebuild(key, sp, partition_log, directory, cursor, timer.scan_from)
        )
        self._rebuilding[key] = task
        self._loaded_timers[id(sp)] = timer

        def rebuilt(finished: asyncio.Task[None]) -> None:
            if self._rebuilding.get(key) is finished:
                del self._rebuilding[key]
            self._loaded_timers.pop(id(sp), None)

        task.add_done_callback(rebuilt)

    def detach(self, pk: PartitionKey, sp: SharePartition) -> ShareExtension | None:
        """The share partition is dropped here: stop its wake-up, rebuild and copies, and
        checkpoint its timer files under a new token; the extension naming that token is
        returned for a last write. Copies still to write load it again at once."""
        handle = self._wakeups.pop(pk, None)
        if handle is not None:
            handle.cancel()
        task = self._rebuilding.pop(pk, None)
        if task is not None:
            task.cancel()
        self.dead_letters.stop(pk)
        if sp.dead_letter and sp.archiving_offsets():
            with contextlib.suppress(RuntimeError):  # no loop: a synchronous caller
                asyncio.get_running_loop().call_soon(self.shares.load_soon, *pk)
        delays = sp.delays
        if not isinstance(delays, TimerIndex):
            return None
        token = os.urandom(8).hex().encode()
        final = self.extension(sp, token)
        try:
            delays.close(token)
        except OSError as exc:
            log.warning("share group %s: delay index of %s-%d not checkpointed: %s", *pk, exc)
            with contextlib.suppress(OSError):
                delays.abandon()
            return None
        return final

    def ready(self, group_id: str, topic: str, partition: int) -> bool:
        """False while the share partition's delay index is being rebuilt."""
        return (group_id, topic, partition) not in self._rebuilding

    async def _rebuild(
        self,
        key: PartitionKey,
        sp: SharePartition,
        partition_log: PartitionLog,
        directory: Path,
        cursor: TimerCursor,
        scan_from: int,
    ) -> None:
        """Add again every delayed record the share partition passed that is after the
        cursor: the log from `scan_from` to the end offset, read in chunks off the loop."""
        group_id = key[0]
        index = TimerIndex.create(directory, cursor)
        end = sp.end_offset
        settings = self.settings(group_id)
        topic_delay = self.topic_delay_ms(partition_log.topic)
        read_committed = self._read_committed(group_id)
        added: set[int] = set()
        position = max(scan_from, partition_log.log_start_offset) if scan_from >= 0 else end
        loop = asyncio.get_running_loop()
        try:
            while position < end:
                try:
                    result = await loop.run_in_executor(
                        self.broker.io, partition_log.read, position, REBUILD_CHUNK, end, True
                    )
                except OffsetOutOfRangeError:
                    position = partition_log.log_start_offset
                    continue
                if not result.records:
                    break
                data = memoryview(result.records)
                aborted = (
                    partition_log.collect_aborted_txns(position, result.next_offset)
                    if read_committed
                    else []
                )
                for pos, h in iter_batch_headers(data):
                    first = h.base_offset
                    if read_committed and h.is_transactional and _aborted(aborted, h, first):
                        continue
                    marks: dict[int, Mark] = {}
                    batch_marks(
                        data[pos : pos + h.batch_length + 12],
                        settings.record_filter,
                        topic_delay,
                        marks,
                    )
                    for offset in sorted(marks):
                        mark = marks[offset]
                        if offset < position or offset >= end or mark.filtered:
                            continue
                        if index.is_after_cursor(mark.due_ms, offset):
                            index.add(mark.due_ms, offset)
                            added.add(offset)
                position = max(position + 1, result.next_offset)
        except BaseException:
            index.abandon()
            raise
        sp.delays = index
        # A record waiting in the window that the log no longer says is delayed (its topic's
        # delay changed while the broker was down) is delivered rather than lost.
        sp.undelay([o for o, state, _ in sp if state == RecordState.DELAYED and o not in added])
        log.info(
            "share group %s: rebuilt the delay index of %s-%d (%d records waiting)",
            group_id,
            partition_log.topic,
            partition_log.partition,
            index.pending,
        )
        self.shares.notify(partition_log.topic, partition_log.partition)
        self.wake_later(group_id, partition_log.topic, partition_log.partition, sp)

    def _read_committed(self, group_id: str) -> bool:
        return self.shares.group_setting(group_id, "share.isolation.level", "") == "read_committed"

    # -- reading -------------------------------------------------------------------------

    def marks(
        self,
        group_id: str,
        topic: str,
        data: memoryview | bytes,
        batches: list[tuple[int, int, int, int]],
        end_offset: int,
        settings: QueueSettings,
    ) -> dict[int, Mark] | None:
        """The marks of the records of `batches` (base, last, position, size) at or after
        `end_offset`, the ones the acquisition may pass."""
        topic_delay = self.topic_delay_ms(topic)
        view = memoryview(data)
        marks: dict[int, Mark] = {}
        for _, last, pos, size in batches:
            if last < end_offset:
                continue
            batch_marks(view[pos : pos + size], settings.record_filter, topic_delay, marks)
        return marks or None

    def read_due(
        self,
        member_id: str,
        sp: SharePartition,
        partition_log: PartitionLog,
        max_records: int,
        max_bytes: int,
        limit: int,
        nowait: bool,
    ) -> tuple[dict[int, bytes], list[AcquiredRange]]:
        """Acquire due records (before the start offset) and the batches holding them, by
        base offset. Raises NotCachedError when `nowait` and a batch is not in memory."""
        now = self.shares.now_ms()
        offsets = sp.due_offsets(now, max_records)
        chunks: dict[int, bytes] = {}
        found: list[int] = []
        gone: list[int] = []
        budget = max(max_bytes, 1)
        i = 0
        while i < len(offsets) and budget > 0:
            first = offsets[i]
            try:
                result = partition_log.read(first, budget, limit, True, nowait=nowait)
            except OffsetOutOfRangeError:
                gone.extend(o for o in offsets[i:] if o < partition_log.log_start_offset)
                break
            data = memoryview(result.records)
            covered = False
            for pos, h in iter_batch_headers(data):
                base, last = h.base_offset, h.base_offset + h.last_offset_delta
                inside = [o for o in offsets[i:] if base <= o <= last]
                if not inside:
                    if base > offsets[i]:
                        break
                    continue
                covered = True
                if base not in chunks:
                    chunks[base] = bytes(data[pos : pos + h.batch_length + 12])
                    budget -= h.batch_length + 12
                found.extend(inside)
                i = offsets.index(inside[-1]) + 1
                if i >= len(offsets):
                    break
            if not covered:
                # The log has no batch holding it (retention, compaction): nothing to deliver.
                gone.append(offsets[i])
                i += 1
        if gone:
            sp.drop_due(gone)
        acquired = sp.acquire_due(member_id, found, now)
        keep = {b: c for b, c in chunks.items() if _holds(acquired, b, c)}
        return keep, acquired

    # -- persistence ---------------------------------------------------------------------

    def extension(self, sp: SharePartition, token: bytes = b"") -> ShareExtension | None:
        """The extension record of a share partition's state (None: nothing beyond Kafka's)."""
        now = self.shares.now_ms()
        timer = self._loaded_timers.get(id(sp))
        if sp.delays is not None:
            cursor = sp.delays.cursor if isinstance(sp.delays, TimerIndex) else TimerCursor(0)
            scan_from = sp.delays.scan_from() if isinstance(sp.delays, TimerIndex) else None
            timer = TimerState(
                cursor.due_ms,
                cursor.offset,
                -1 if scan_from is None else scan_from,
                sp.delays.pending,
                token,
            )
        ext = ShareExtension(
            timer, sp.due_batches(), sp.backoff_runs(now), sp.rejected_offsets(), sp.copier
        )
        return None if ext.empty else ext

    # -- events --------------------------------------------------------------------------

    def after_change(self, group_id: str, topic: str, partition: int, sp: SharePartition) -> None:
        """Something changed: re-arm the wake-up, start copying dead letters if any wait."""
        self.wake_later(group_id, topic, partition, sp)
        if sp.dead_letter and sp.archiving_offsets():
            self.dead_letters.kick(group_id, topic, partition)

    def wake_later(self, group_id: str, topic: str, partition: int, sp: SharePartition) -> None:
        key = (group_id, topic, partition)
        old = self._wakeups.pop(key, None)
        if old is not None:
            old.cancel()
        now = self.shares.now_ms()
        when = sp.next_event(now)
        if when is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a synchronous caller (in-process tests): fetches expire lazily
            return
        self._wakeups[key] = loop.call_later(
            max(when - now, 0) / 1000.0, self._wake, group_id, topic, partition
        )

    def _wake(self, group_id: str, topic: str, partition: int) -> None:
        self._wakeups.pop((group_id, topic, partition), None)
        sp = self.shares.partitions.get((group_id, topic, partition))
        if sp is None:
            return
        now = self.shares.now_ms()
        expired = sp.expire_locks(now)
        sp.pull_due(now)
        self.shares.notify(topic, partition)
        if expired:
            self.shares.persist_soon(group_id, topic, partition)
        self.after_change(group_id, topic, partition, sp)

    # -- stopping ------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the wake-ups and copies, persist every share partition with a delay index
        and checkpoint its files, so a restart reuses them instead of rebuilding."""
        for handle in self._wakeups.values():
            handle.cancel()
        self._wakeups.clear()
        for task in list(self._rebuilding.values()):
            task.cancel()
        await self.dead_letters.close()
        for (group_id, topic, partition), sp in list(self.shares.partitions.items()):
            delays = sp.delays
            partition_log = self.broker.partition_log(topic, partition)
            if not isinstance(delays, TimerIndex) or partition_log is None:
                continue
            key = (partition_log.topic_id, topic, partition)
            token = os.urandom(8).hex().encode()
            code = ErrorCode.UNKNOWN_SERVER_ERROR
            written = self.shares.persist(group_id, key, token=token)
            try:
                code = await written if isinstance(written, Awaitable) else written
            except Exception:
                log.exception(
                    "share group %s: state of %s-%d not written", group_id, topic, partition
                )
            try:
                if code == ErrorCode.NONE:
                    delays.close(token)
                else:
                    delays.abandon()
            except OSError as exc:
                log.warning(
                    "share group %s: delay index of %s-%d not checkpointed: %s",
                    group_id,
                    topic,
                    partition,
                    exc,
                )


def _holds(acquired: list[AcquiredRange], base: int, chunk: bytes) -> bool:
    last = base + int.from_bytes(chunk[23:27], "big", signed=True)
    return any(r.first_offset <= last and base <= r.last_offset for r in acquired)


def _aborted(aborted: list[AbortedTxn], header: BatchHeader, offset: int) -> bool:
    return any(
        t.producer_id == header.producer_id and t.first_offset <= offset <= t.last_offset
        for t in aborted
    )


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default
