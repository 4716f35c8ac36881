"""Random request sequences against the transaction shard: replaying its log into a fresh shard
rebuilds the same state, and Kafka's invariants hold after every step."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from txn_harness import TxnHarness

from strom.coordinator.txn import TxnConfig, TxnState
from strom.coordinator.txn.metadata import VALID_PREVIOUS
from strom.coordinator.txn.records import decode

IDS = ["a", "b", "c"]

op = st.one_of(
    st.tuples(st.just("init"), st.sampled_from(IDS), st.booleans()),
    st.tuples(st.just("add"), st.sampled_from(IDS), st.integers(0, 3)),
    st.tuples(st.just("end"), st.sampled_from(IDS), st.booleans()),
    st.tuples(st.just("stale"), st.sampled_from(IDS), st.booleans()),
    st.tuples(st.just("hold"), st.just(""), st.booleans()),
    st.tuples(st.just("time"), st.just(""), st.integers(0, 30_000)),
)


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=40))
def test_replay_rebuilds_the_same_state(ops: list[tuple[str, str, object]]) -> None:
    cfg = TxnConfig(
        abort_timed_out_interval_ms=2000,
        transactional_id_expiration_ms=40_000,
        remove_expired_interval_ms=5000,
    )
    h = TxnHarness(cfg)
    epochs: dict[int, int] = {}
    current: dict[str, TxnState] = {}
    for kind, txn_id, arg in ops:
        seen = len(h.log)
        meta = h.shard.transactions.get(txn_id)
        pid, epoch = (meta.producer_id, meta.producer_epoch) if meta else (1, 0)
        if kind == "init":
            h.init(txn_id, timeout=10_000, expected=(pid, epoch) if arg and meta else None)
        elif kind == "add":
            assert isinstance(arg, int)
            h.add(txn_id, pid, epoch, ("t", arg))
        elif kind == "end":
            h.end(txn_id, pid, epoch, bool(arg))
        elif kind == "stale":
            h.end(txn_id, pid, epoch - 1, bool(arg))
        elif kind == "hold":
            h.hold_markers = bool(arg)
            h.finish()
        else:
            assert isinstance(arg, int)
            h.advance(arg)
        for record in h.log[seen:]:
            # every record follows Kafka's transition table
            decoded = decode(record)
            assert decoded is not None
            txn, snap = decoded
            if snap is None:
                assert current.pop(txn).expiration_allowed
            elif txn not in current:
                assert snap.state == TxnState.EMPTY
                current[txn] = snap.state
            else:
                assert current[txn] in VALID_PREVIOUS[snap.state]
                current[txn] = snap.state
        for m in h.shard.transactions.values():
            assert m.state not in (TxnState.DEAD, TxnState.PREPARE_EPOCH_FENCE)
            if m.state in (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT):
                assert not m.partitions
            else:
                assert m.partitions
            # a producer id's epoch never goes back
            assert m.producer_epoch >= epochs.get(m.producer_id, 0)
            epochs[m.producer_id] = m.producer_epoch
        fresh = h.fresh()
        assert {k: v.snapshot() for k, v in fresh.transactions.items()} == h.state()
