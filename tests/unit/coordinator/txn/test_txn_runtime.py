"""The transaction runtime on a real broker (logs on disk, no network): producer id blocks,
markers written to data and `__consumer_offsets` partitions, and a transaction left prepared
by a crash completed when the broker opens again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from strom.cluster.errors import ProducerIdsUnavailableError
from strom.cluster.local_metadata import LocalMetadata
from strom.config import BrokerConfig
from strom.coordinator.txn import InitResult, TxnState
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.txn_offset_commit_request import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestPartition,
    TxnOffsetCommitRequestTopic,
)
from strom.protocol.records.batch_header import iter_batch_headers
from strom.protocol.records.codec import Record, build_batch
from strom.runtime.errors import ApiError
from strom.runtime.group_runtime import OFFSETS_TOPIC
from strom.runtime.txn_runtime import ProducerIdManager
from strom.server.broker import Broker


def open_broker(data: Path) -> Broker:
    return Broker.open(
        BrokerConfig.load(
            None,
            {
                "log.dirs": str(data),
                "transaction.state.log.num.partitions": "3",
                "offsets.topic.num.partitions": "3",
            },
        )
    )


def shut(broker: Broker) -> None:
    broker.txns.close()
    broker.groups.close()
    broker.logs.close()
    broker.io.shutdown(wait=True)


def test_producer_ids_never_repeat_across_restarts(tmp_path: Path) -> None:
    store = LocalMetadata.load(tmp_path)
    ids = ProducerIdManager(store.reserve_producer_ids, block_size=10)
    first = [ids.next_id() for _ in range(15)]
    assert first == list(range(15))
    again = ProducerIdManager(LocalMetadata.load(tmp_path).reserve_producer_ids, block_size=10)
    assert again.next_id() == 20  # the rest of the block in use is skipped, never reused


def test_producer_ids_while_no_block_is_available_are_retriable() -> None:
    blocks = iter([ProducerIdsUnavailableError("claiming"), 500])

    def reserve(count: int) -> int:
        outcome = next(blocks)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    ids = ProducerIdManager(reserve, block_size=10)
    with pytest.raises(ApiError) as raised:
        ids.next_id()
    assert raised.value.code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    assert ids.next_id() == 500  # the next call claims again and gets the block


def produce_transactional(broker: Broker, topic: str, pid: int, epoch: int, seq: int) -> None:
    plog = broker.partition_log(topic, 0)
    assert plog is not None
    now = broker.clock.now_ms()
    batch = bytearray(
        build_batch(
            [Record(0, now, b"k", b"v", [])],
            producer_id=pid,
            producer_epoch=epoch,
            base_sequence=seq,
            is_transactional=True,
        )
    )
    plog.append_as_leader(batch, [h for _, h in iter_batch_headers(batch)], 0, now)
    broker.after_append(topic, 0)


def failed(code: ErrorCode) -> Any:
    raise AssertionError(f"the runtime answered {code!r}")


def test_prepared_commit_left_by_a_crash_is_completed_at_startup(tmp_path: Path) -> None:
    # The runtimes arm asyncio timers, as in the server; loading itself runs without a loop.
    asyncio.run(_prepared_commit_completed_at_startup(tmp_path))


async def _prepared_commit_completed_at_startup(tmp_path: Path) -> None:
    data = tmp_path / "data"
    broker = open_broker(data)
    broker.create_topic("t", 1)
    txns = broker.txns
    init = txns.run("x", lambda s: s.init_producer_id("x", 60_000), failed)
    assert isinstance(init, InitResult)  # a single broker answers at once
    pid, epoch = init.producer_id, init.producer_epoch
    broker.groups.ensure_topic()
    offsets_tp = (OFFSETS_TOPIC, broker.groups.partition_for("g"))
    added = txns.run(
        "x", lambda s: s.add_partitions("x", pid, epoch, [("t", 0), offsets_tp]), failed
    )
    assert added == 0
    produce_transactional(broker, "t", pid, epoch, 0)
    request = TxnOffsetCommitRequest(
        "x",
        "g",
        pid,
        epoch,
        topics=[TxnOffsetCommitRequestTopic("t", [TxnOffsetCommitRequestPartition(0, 42, -1, "")])],
    )
    broker.groups.run_transactional(
        "g", pid, epoch, lambda s: s.txn_offset_commit(request, 3), failed
    )
    # EndTxn persisted PrepareCommit, then the broker died before writing any marker.
    partition, shard = txns.shard_for("x")
    code, records = shard.end_txn("x", pid, epoch, True)
    assert code == 0
    txns._append(partition, records)
    assert shard.transactions["x"].state == TxnState.PREPARE_COMMIT
    plog = broker.partition_log("t", 0)
    assert plog is not None and plog.last_stable_offset == 0
    shut(broker)

    loop = asyncio.get_running_loop()
    broker = await loop.run_in_executor(None, open_broker, data)
    try:
        _, shard = broker.txns.shard_for("x")
        assert shard.transactions["x"].state == TxnState.COMPLETE_COMMIT
        plog = broker.partition_log("t", 0)
        assert plog is not None
        assert plog.log_end_offset == 2  # the record and its COMMIT marker
        assert plog.last_stable_offset == plog.high_watermark == 2
        _, group_shard = broker.groups.shard_for("g")
        _, rows = group_shard.offset_fetch("g", [("t", [0])], require_stable=True)
        assert rows == [("t", 0, 42, -1, "", 0)]
    finally:
        shut(broker)
