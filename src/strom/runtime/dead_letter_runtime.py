"""Copying the records share groups give up on to their dead-letter topics (KIP-1191).

One task per share partition with Archiving records, on the partition's leader, following
strom.coordinator.share.dead_letter: check the topic (creating it when the broker allows),
take a producer id for the share partition if it has none, plan a batch, persist the share
state with the plan in it, read the records from the log, build the copies and send them
through the broker's produce path (`Broker.produce_internal`: the local produce handler, or a
Produce request to the dead-letter partition's leader; acks=all), then mark them Archived. A
topic that cannot take them (deleted, not enabled for dead letters, named without the prefix,
missing without auto-creation) archives them without a copy, with a warning, as Kafka does.
Retriable failures wait and try again with the same plan, up to `MAX_RETRY_WAIT_S` apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from strom.coordinator.share.dead_letter import (
    CopyOutcome,
    CopyPlan,
    build_copy_batch,
    check_topic,
    dead_letter_partition,
    dead_letter_record,
)
from strom.protocol.errors import ErrorCode
from strom.protocol.records.batch_header import iter_batch_headers
from strom.protocol.records.codec import Record, decode_records
from strom.protocol.records.errors import RecordError
from strom.runtime.errors import ApiError
from strom.storage.errors import OffsetOutOfRangeError

if TYPE_CHECKING:
    from strom.coordinator.share.partition import SharePartition
    from strom.runtime.share_queues import ShareQueues
    from strom.runtime.share_runtime import ShareRuntime
    from strom.storage.partition_log import PartitionLog

__all__ = ["DeadLetterRuntime"]

log = logging.getLogger("strom.share")

PartitionKey = tuple[str, str, int]  # group, topic, partition
FIRST_RETRY_WAIT_S = 0.1
MAX_RETRY_WAIT_S = 5.0
ENABLE_KEY = "errors.deadletterqueue.group.enable"


class DeadLetterRuntime:
    def __init__(self, shares: ShareRuntime, queues: ShareQueues) -> None:
        self.shares = shares
        self.queues = queues
        self.broker = shares.broker
        self._tasks: dict[PartitionKey, asyncio.Task[None]] = {}
        self.copied = 0  # dead-letter records written, for metrics and tests

    def kick(self, group_id: str, topic: str, partition: int) -> None:
        key = (group_id, topic, partition)
        if key in self._tasks:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a synchronous caller; the next change on the loop kicks again
            return
        task = loop.create_task(self._run(key), name=f"dlq {key}")
        self._tasks[key] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._tasks.get(key) is finished:
                del self._tasks[key]
            if not finished.cancelled() and finished.exception() is not None:
                log.error("dead-letter copies of %s stopped", key, exc_info=finished.exception())

        task.add_done_callback(done)

    def stop(self, key: PartitionKey) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- one share partition --------------------------------------------------------------

    async def _run(self, key: PartitionKey) -> None:
        group_id, topic, partition = key
        wait = FIRST_RETRY_WAIT_S
        while True:
            sp = self.shares.partitions.get(key)
            partition_log = self.broker.partition_log(topic, partition)
            if sp is None or partition_log is None:
                return
            archiving = sp.archiving_offsets()
            if not archiving:
                return
            settings = self.queues.configure(group_id, sp)
            dlq = settings.dead_letter_topic
            partitions, problem = self._usable(group_id, dlq)
            if partitions == 0 and problem is None:
                await asyncio.sleep(wait)  # being created
                wait = min(wait * 2, MAX_RETRY_WAIT_S)
                continue
            if problem is not None:
                log.warning(
                    "share group %s: %d record(s) of %s-%d archived without a dead-letter copy: %s",
                    group_id,
                    len(archiving),
                    topic,
                    partition,
                    problem,
                )
                sp.copier.drop_plan()
                self._archived(key, sp, archiving)
                continue
            if sp.copier.needs_producer:
                try:
                    sp.copier.assign_producer(self.broker.next_producer_id())
                except ApiError as exc:
                    log.info(
                        "share group %s: no producer id for dead letters yet: %s", group_id, exc
                    )
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, MAX_RETRY_WAIT_S)
                    continue
            target = dead_letter_partition(partition, partitions)
            plan = sp.copier.plan(archiving, target)
            if plan is None:
                continue
            if plan.dead_letter_partition >= partitions:
                sp.copier.drop_plan()
                continue
            # The plan is persisted before it is sent: a restart sends the same batch again.
            if not await self._persist(key, partition_log):
                await asyncio.sleep(wait)
                wait = min(wait * 2, MAX_RETRY_WAIT_S)
                continue
            if self.shares.partitions.get(key) is not sp:
                return  # reset meanwhile
            batch = self._batch(group_id, sp, partition_log, plan, settings.copy_record)
            error = await self._send(dlq, plan.dead_letter_partition, batch)
            if self.shares.partitions.get(key) is not sp or sp.copier.in_flight != plan:
                return
            outcome = sp.copier.answered(plan, error)
            if outcome in (CopyOutcome.DONE, CopyOutcome.GIVE_UP):
                if outcome is CopyOutcome.GIVE_UP:
                    log.warning(
                        "share group %s: dead-letter copies of %s-%d offsets %s refused "
                        "by %s: %s; archived without them",
                        group_id,
                        topic,
                        partition,
                        list(plan.offsets),
                        dlq,
                        error.name,
                    )
                else:
                    self.copied += len(plan.offsets)
                self._archived(key, sp, plan.offsets)
                wait = FIRST_RETRY_WAIT_S
            elif outcome is CopyOutcome.RETRY:
                log.info(
                    "share group %s: dead-letter copy to %s failed (%s), trying again",
                    group_id,
                    dlq,
                    error.name,
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, MAX_RETRY_WAIT_S)

    def _usable(self, group_id: str, topic: str) -> tuple[int, str | None]:
        """(partition count, None) for a usable topic; (0, None) while it is being created;
        (0, why not) otherwise."""
        config = self.broker.config
        prefix = str(config.get("errors.deadletterqueue.topic.name.prefix") or "")
        auto_create = bool(config.get("errors.deadletterqueue.auto.create.topics.enable"))
        record = self.broker.metadata.get_topic(topic) if topic else None
        enabled = record is not None and record.configs.get(ENABLE_KEY, "false").lower() == "true"
        problem = check_topic(
            group_id,
            topic,
            prefix=prefix,
            exists=record is not None,
            enabled_on_topic=enabled,
            auto_create=auto_create,
        )
        if problem is not None:
            return 0, problem
        if record is None:
            try:
                # The broker's defaults for partitions and replicas; CreateTime, since the
                # copies keep the timestamps of the records they copy.
                self.broker.create_topic(
                    topic, -1, -1, {ENABLE_KEY: "true", "message.timestamp.type": "CreateTime"}
                )
                log.info("created dead-letter topic %s for share group %s", topic, group_id)
            except ApiError as exc:
                if exc.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                    return 0, f"creating the dead-letter topic {topic} failed: {exc}"
            record = self.broker.metadata.get_topic(topic)
            if record is None:
                return 0, None
        return record.num_partitions, None

    async def _persist(self, key: PartitionKey, partition_log: PartitionLog) -> bool:
        group_id, topic, partition = key
        written = self.shares.persist(group_id, (partition_log.topic_id, topic, partition))
        try:
            code = await written if isinstance(written, Awaitable) else written
        except Exception:
            log.exception("share group %s: state of %s-%d not written", group_id, topic, partition)
            return False
        return code == ErrorCode.NONE

    def _batch(
        self,
        group_id: str,
        sp: SharePartition,
        partition_log: PartitionLog,
        plan: CopyPlan,
        copy_record: bool,
    ) -> bytes:
        sources = _read_records(partition_log, plan.offsets) if copy_record else {}
        now = self.shares.now_ms()
        copies = [
            dead_letter_record(
                sources.get(offset),
                offset=offset,
                topic=partition_log.topic,
                partition=partition_log.partition,
                group_id=group_id,
                delivery_count=sp.delivery_count(offset),
                reason=sp.reason(offset),
                copy_record=copy_record,
                now_ms=now,
            )
            for offset in plan.offsets
        ]
        return build_copy_batch(copies, plan)

    async def _send(self, topic: str, partition: int, batch: bytes) -> ErrorCode:
        timeout_ms = self.broker.config.get_int("request.timeout.ms")
        try:
            return await self.broker.produce_internal(topic, partition, batch, timeout_ms)
        except (OSError, TimeoutError, ConnectionError) as exc:
            log.info("dead-letter copy to %s-%d not sent: %s", topic, partition, exc)
            return ErrorCode.NETWORK_EXCEPTION

    def _archived(self, key: PartitionKey, sp: SharePartition, offsets: object) -> None:
        assert isinstance(offsets, (list, tuple))
        sp.archive_copied(offsets)
        group_id, topic, partition = key
        self.shares.notify(topic, partition)
        self.shares.persist_soon(group_id, topic, partition)


def _read_records(partition_log: PartitionLog, offsets: tuple[int, ...]) -> dict[int, Record]:
    """The records at `offsets` that the log still has (blocking reads: off the produce
    path, and a plan is a handful of records)."""
    wanted = set(offsets)
    found: dict[int, Record] = {}
    position = min(offsets)
    last = max(offsets)
    while position <= last:
        try:
            result = partition_log.read(position, 1 << 20, partition_log.log_end_offset, True)
        except OffsetOutOfRangeError:
            position = partition_log.log_start_offset
            if position > last:
                break
            continue
        if not result.records:
            break
        data = memoryview(result.records)
        for pos, h in iter_batch_headers(data):
            if h.base_offset + h.last_offset_delta < position or h.is_control:
                continue
            if not any(h.base_offset <= o <= h.base_offset + h.last_offset_delta for o in wanted):
                continue
            try:
                _, records = decode_records(data[pos : pos + h.batch_length + 12])
            except RecordError:
                continue
            for record in records:
                if record.offset in wanted:
                    found[record.offset] = record
        position = max(position + 1, result.next_offset)
        remaining = [o for o in wanted if o >= position and o not in found]
        if not remaining:
            break
        position = max(position, min(remaining))
    return found
