"""The producer ids a broker hands out in cluster mode: blocks claimed in ZooKeeper
(/latest_producer_id_block, through `ZkClusterStore`), the current one used up first and the
next one fetched ahead, so that InitProducerId (answered synchronously) never waits for
ZooKeeper; while no block is at hand it fails with ProducerIdsUnavailableError and the
client retries."""

from __future__ import annotations

from collections.abc import Callable, Coroutine

from strom.cluster.errors import ProducerIdsUnavailableError
from strom.cluster.zk.layout import ProducerIdBlock
from strom.cluster.zk.store import ZkClusterStore


class ProducerIdBlocks:
    def __init__(
        self,
        store: ZkClusterStore,
        broker_id: int,
        spawn: Callable[[Coroutine[object, object, object]], None],
    ) -> None:
        self._store = store
        self._broker_id = broker_id
        self._spawn = spawn
        # The current block (next, end exclusive) and the next one.
        self._next = 0
        self._end = 0
        self._spare: ProducerIdBlock | None = None
        self._fetching = False

    def reserve(self, count: int) -> int:
        """`count` ids from the blocks claimed in ZooKeeper (at most one block's worth)."""
        if self._next + count > self._end:
            spare, self._spare = self._spare, None
            if spare is None or spare.block_end - spare.block_start + 1 < count:
                self._spawn(self.fetch_ahead())
                raise ProducerIdsUnavailableError("no producer id block available yet")
            self._next, self._end = spare.block_start, spare.block_end + 1
            self._spawn(self.fetch_ahead())
        first = self._next
        self._next += count
        return first

    async def fetch_ahead(self) -> None:
        """Claim the next block unless one is at hand or on its way."""
        if self._fetching or self._spare is not None:
            return
        self._fetching = True
        try:
            block = await self._store.allocate_producer_id_block(self._broker_id)
        finally:
            self._fetching = False
        if self._next >= self._end:
            self._next, self._end = block.block_start, block.block_end + 1
            self._spawn(self.fetch_ahead())
        else:
            self._spare = block
