"""A stand-in for the runtime around a TransactionCoordinatorShard: a log, a manual clock, a
producer id counter, and a marker writer that records what it was asked to write.

Every handler's records are appended to `log` and replayed before the next call, as the real
runtime does; prepared transactions are completed right away unless `hold_markers` is set
(a broker that crashed, or a partition that cannot take the marker yet).
"""

from __future__ import annotations

import itertools
from typing import Any

from strom.clock import ManualClock
from strom.coordinator.txn import (
    InitResult,
    MarkerJob,
    TransactionCoordinatorShard,
    TxnConfig,
    TxnRecord,
)
from strom.coordinator.txn.metadata import TxnSnapshot
from strom.protocol.errors import ErrorCode

TIMEOUT = 60_000


class TxnHarness:
    def __init__(self, config: TxnConfig | None = None, first_pid: int = 1000) -> None:
        self.clock = ManualClock()
        self.config = config or TxnConfig()
        self._pids = itertools.count(first_pid)
        self.shard = self._new_shard()
        self.log: list[TxnRecord] = []
        self.markers: list[MarkerJob] = []
        self.hold_markers = False

    def _new_shard(self) -> TransactionCoordinatorShard:
        return TransactionCoordinatorShard(0, self.config, self.clock, lambda: next(self._pids))

    def apply(self, records: list[TxnRecord]) -> None:
        for record in records:
            self.log.append(record)
            self.shard.replay(record)

    def finish(self) -> None:
        if self.hold_markers:
            return
        for job in self.shard.pending_markers():
            self.markers.append(job)
            self.apply(self.shard.markers_written(job))

    def _run(self, result: tuple[Any, list[TxnRecord]]) -> Any:
        value, records = result
        self.apply(records)
        if records:
            self.finish()
        return value

    # -- requests -----------------------------------------------------------------------------

    def init(
        self, txn_id: str, timeout: int = TIMEOUT, expected: tuple[int, int] | None = None
    ) -> InitResult:
        result: InitResult = self._run(self.shard.init_producer_id(txn_id, timeout, expected))
        return result

    def add(self, txn_id: str, pid: int, epoch: int, *tps: tuple[str, int]) -> ErrorCode:
        code: ErrorCode = self._run(
            self.shard.add_partitions(txn_id, pid, epoch, tps or [("t", 0)])
        )
        return code

    def end(self, txn_id: str, pid: int, epoch: int, commit: bool) -> ErrorCode:
        code: ErrorCode = self._run(self.shard.end_txn(txn_id, pid, epoch, commit))
        return code

    def advance(self, ms: int) -> None:
        self.clock.advance(ms)
        while (deadline := self.shard.next_deadline_ms()) is not None and (
            deadline <= self.clock.now_ms()
        ):
            records = self.shard.tick()
            self.apply(records)
            self.finish()

    # -- inspection ---------------------------------------------------------------------------

    def snap(self, txn_id: str) -> TxnSnapshot:
        return self.shard.transactions[txn_id].snapshot()

    def state(self) -> dict[str, TxnSnapshot]:
        return {k: v.snapshot() for k, v in sorted(self.shard.transactions.items())}

    def fresh(self) -> TransactionCoordinatorShard:
        """A new shard loaded by replaying the whole log."""
        shard = self._new_shard()
        for record in self.log:
            shard.replay(record)
        return shard
