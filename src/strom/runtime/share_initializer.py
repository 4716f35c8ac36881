"""The group coordinator's InitializeShareGroupState: creating share-partition state before a
share group is assigned the partitions (Kafka's GroupCoordinatorService.persisterInitialize).

A heartbeat that subscribes a share group to partitions without state returns an
`Initialization` beside its response; once the heartbeat's records are committed the
initializer sends it (through `SharePersister`, to each partition's share coordinator) in the
background, the heartbeat's answer not waiting for it, and then writes the outcome to the
group (record type 15): the partitions done become assignable, the failed ones are asked for
again by a later heartbeat. AlterShareGroupOffsets waits for its initialization instead.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from strom.coordinator.share.coordinator import Outcome
from strom.coordinator.share.state_partitions import Initialization
from strom.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from strom.runtime.group_runtime import GroupCoordinatorRuntime
    from strom.runtime.share_persister import SharePersister

__all__ = ["ShareStateInitializer"]

log = logging.getLogger("strom.share")

PartitionCodes = dict[tuple[uuid.UUID, int], ErrorCode]


class ShareStateInitializer:
    def __init__(self, groups: GroupCoordinatorRuntime, persister: SharePersister) -> None:
        self.groups = groups
        self.persister = persister
        self._tasks: set[asyncio.Task[PartitionCodes]] = set()

    def start(self, init: Initialization | None) -> None:
        """Initialize in the background (the heartbeat that asked is answered already)."""
        if init is None or not init.partitions:
            return
        task = asyncio.get_running_loop().create_task(self.initialize(init))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def initialize(self, init: Initialization) -> PartitionCodes:
        """Send the initialization and record its outcome in the group; the error code per
        partition."""
        answers: list[Outcome | Awaitable[Outcome]] = [
            self.persister.initialize((init.group_id, topic_id, partition), init.state_epoch, start)
            for topic_id, partition, start in init.partitions
        ]
        codes: PartitionCodes = {}
        for (topic_id, partition, _), answer in zip(init.partitions, answers, strict=True):
            try:
                outcome = await answer if isinstance(answer, Awaitable) else answer
                codes[(topic_id, partition)] = outcome.error
            except Exception:
                log.exception("initializing share state of %s failed", init.group_id)
                codes[(topic_id, partition)] = ErrorCode.UNKNOWN_SERVER_ERROR
        done: dict[uuid.UUID, set[int]] = {}
        failed: dict[uuid.UUID, set[int]] = {}
        for (topic_id, partition), code in codes.items():
            (done if code == ErrorCode.NONE else failed).setdefault(topic_id, set()).add(partition)
        if failed:
            log.warning(
                "share state of group %s not initialized for %d partition(s): %s",
                init.group_id,
                sum(len(ps) for ps in failed.values()),
                sorted({c.name for c in codes.values() if c != ErrorCode.NONE}),
            )
        written = self.groups.run(
            init.group_id,
            lambda shard: (
                ErrorCode.NONE,
                shard.share_group_initialized(
                    init.group_id,
                    {t: frozenset(ps) for t, ps in done.items()},
                    {t: frozenset(ps) for t, ps in failed.items()},
                ),
            ),
            lambda code: code,
        )
        code = await written if isinstance(written, Awaitable) else written
        if code != ErrorCode.NONE:
            # The coordinator moved: the next one initializes the partitions again.
            log.info("share state of group %s: outcome not recorded (%s)", init.group_id, code.name)
            codes = {k: v if v != ErrorCode.NONE else code for k, v in codes.items()}
        return codes

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
