"""The transaction coordinator shard: Kafka's state machine, fencing, timeouts, expiry, replay."""

from __future__ import annotations

import pytest
from txn_harness import TIMEOUT, TxnHarness

from strom.coordinator.txn import TxnConfig, TxnState
from strom.coordinator.txn.metadata import TxnSnapshot
from strom.coordinator.txn.records import decode, transaction_record
from strom.protocol.errors import ErrorCode

S = TxnState
E = ErrorCode


def in_state(state: TxnState) -> tuple[TxnHarness, int, int]:
    """A harness whose id "x" is in `state`; returns it with the producer id and epoch."""
    h = TxnHarness()
    r = h.init("x")
    pid, epoch = r.producer_id, r.producer_epoch
    if state == S.EMPTY:
        return h, pid, epoch
    assert h.add("x", pid, epoch, ("t", 0)) == E.NONE
    if state == S.ONGOING:
        return h, pid, epoch
    if state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
        h.hold_markers = True
    assert h.end("x", pid, epoch, state in (S.PREPARE_COMMIT, S.COMPLETE_COMMIT)) == E.NONE
    assert h.snap("x").state == state
    return h, pid, epoch


ALL = [S.EMPTY, S.ONGOING, S.PREPARE_COMMIT, S.PREPARE_ABORT, S.COMPLETE_COMMIT, S.COMPLETE_ABORT]

# (state, request) -> (error, state after, epoch change); requests use the current producer.
TABLE = {
    (S.EMPTY, "init"): (E.NONE, S.EMPTY, 1),
    (S.ONGOING, "init"): (E.CONCURRENT_TRANSACTIONS, S.COMPLETE_ABORT, 1),
    (S.PREPARE_COMMIT, "init"): (E.CONCURRENT_TRANSACTIONS, S.PREPARE_COMMIT, 0),
    (S.PREPARE_ABORT, "init"): (E.CONCURRENT_TRANSACTIONS, S.PREPARE_ABORT, 0),
    (S.COMPLETE_COMMIT, "init"): (E.NONE, S.EMPTY, 1),
    (S.COMPLETE_ABORT, "init"): (E.NONE, S.EMPTY, 1),
    (S.EMPTY, "add"): (E.NONE, S.ONGOING, 0),
    (S.ONGOING, "add"): (E.NONE, S.ONGOING, 0),
    (S.PREPARE_COMMIT, "add"): (E.CONCURRENT_TRANSACTIONS, S.PREPARE_COMMIT, 0),
    (S.PREPARE_ABORT, "add"): (E.CONCURRENT_TRANSACTIONS, S.PREPARE_ABORT, 0),
    (S.COMPLETE_COMMIT, "add"): (E.NONE, S.ONGOING, 0),
    (S.COMPLETE_ABORT, "add"): (E.NONE, S.ONGOING, 0),
    (S.EMPTY, "commit"): (E.INVALID_TXN_STATE, S.EMPTY, 0),
    (S.ONGOING, "commit"): (E.NONE, S.COMPLETE_COMMIT, 0),
    (S.PREPARE_COMMIT, "commit"): (E.CONCURRENT_TRANSACTIONS, S.PREPARE_COMMIT, 0),
    (S.PREPARE_ABORT, "commit"): (E.INVALID_TXN_STATE, S.PREPARE_ABORT, 0),
    (S.COMPLETE_COMMIT, "commit"): (E.NONE, S.COMPLETE_COMMIT, 0),
    (S.COMPLETE_ABORT, "commit"): (E.INVALID_TXN_STATE, S.COMPLETE_ABORT, 0),
    (S.EMPTY, "abort"): (E.INVALID_TXN_STATE, S.EMPTY, 0),
    (S.ONGOING, "abort"): (E.NONE, S.COMPLETE_ABORT, 0),
    (S.PREPARE_COMMIT, "abort"): (E.INVALID_TXN_STATE, S.PREPARE_COMMIT, 0),
    (S.PREPARE_ABORT, "abort"): (E.CONCURRENT_TRANSACTIONS, S.PREPARE_ABORT, 0),
    (S.COMPLETE_COMMIT, "abort"): (E.INVALID_TXN_STATE, S.COMPLETE_COMMIT, 0),
    (S.COMPLETE_ABORT, "abort"): (E.NONE, S.COMPLETE_ABORT, 0),
}


@pytest.mark.parametrize(("state", "request_kind"), sorted(TABLE, key=str))
def test_state_machine(state: TxnState, request_kind: str) -> None:
    h, pid, epoch = in_state(state)
    error, after, bump = TABLE[(state, request_kind)]
    if request_kind == "init":
        got = h.init("x").error
    elif request_kind == "add":
        got = h.add("x", pid, epoch, ("t", 1))
    else:
        got = h.end("x", pid, epoch, request_kind == "commit")
    assert got == error
    snap = h.snap("x")
    assert snap.state == after
    assert snap.producer_epoch == epoch + bump
    assert h.fresh().transactions["x"].snapshot() == snap


@pytest.mark.parametrize("state", ALL)
def test_stale_epoch_and_wrong_producer_id_in_every_state(state: TxnState) -> None:
    h, pid, epoch = in_state(state)
    before = h.snap("x")
    assert h.add("x", pid, epoch + 1) == E.PRODUCER_FENCED
    assert h.end("x", pid, epoch - 1, True) == E.PRODUCER_FENCED
    assert h.add("x", pid + 1, epoch) == E.INVALID_PRODUCER_ID_MAPPING
    assert h.end("x", pid + 1, epoch, False) == E.INVALID_PRODUCER_ID_MAPPING
    assert h.snap("x") == before


def test_unknown_id_and_bad_requests() -> None:
    h = TxnHarness()
    assert h.add("nope", 1, 0) == E.INVALID_PRODUCER_ID_MAPPING
    assert h.end("nope", 1, 0, True) == E.INVALID_PRODUCER_ID_MAPPING
    assert h.init("").error == E.INVALID_REQUEST
    assert h.init("x", timeout=0).error == E.INVALID_TRANSACTION_TIMEOUT
    assert h.init("x", timeout=h.config.max_timeout_ms + 1).error == E.INVALID_TRANSACTION_TIMEOUT
    assert h.log == []


def test_new_id_gets_a_fresh_producer_id_at_epoch_0() -> None:
    h = TxnHarness(first_pid=7)
    a, b = h.init("a"), h.init("b")
    assert (a.producer_id, a.producer_epoch, b.producer_id) == (7, 0, 8)
    assert h.snap("a") == TxnSnapshot(7, 0, TIMEOUT, S.EMPTY, frozenset(), -1, h.clock.now_ms())
    again = h.init("a", timeout=5000)
    assert (again.producer_id, again.producer_epoch) == (7, 1)
    assert h.snap("a").timeout_ms == 5000


def test_commit_writes_markers_to_every_partition_then_completes() -> None:
    h = TxnHarness()
    r = h.init("x")
    h.clock.advance(5)
    start = h.clock.now_ms()
    assert h.add("x", r.producer_id, 0, ("a", 0), ("b", 3)) == E.NONE
    h.clock.advance(5)
    assert h.add("x", r.producer_id, 0, ("a", 1)) == E.NONE
    assert h.snap("x").start_ms == start  # later additions keep the start time
    assert h.end("x", r.producer_id, 0, True) == E.NONE
    (job,) = h.markers
    assert job.commit and job.producer_epoch == 0
    assert job.partitions == {("a", 0), ("a", 1), ("b", 3)}
    snap = h.snap("x")
    assert snap.state == S.COMPLETE_COMMIT and snap.partitions == frozenset()
    kinds = [decode(rec)[1].state for rec in h.log]  # type: ignore[index, union-attr]
    assert kinds == [S.EMPTY, S.ONGOING, S.ONGOING, S.PREPARE_COMMIT, S.COMPLETE_COMMIT]


def test_adding_known_partitions_writes_nothing() -> None:
    h = TxnHarness()
    r = h.init("x")
    h.add("x", r.producer_id, 0, ("a", 0))
    n = len(h.log)
    assert h.add("x", r.producer_id, 0, ("a", 0)) == E.NONE
    assert len(h.log) == n


def test_check_partition_is_the_verification_for_txn_offset_commit() -> None:
    h = TxnHarness()
    r = h.init("x")
    tp = ("__consumer_offsets", 3)
    assert h.shard.check_partition("x", r.producer_id, 0, tp) == E.INVALID_TXN_STATE
    h.add("x", r.producer_id, 0, tp)
    assert h.shard.check_partition("x", r.producer_id, 0, tp) == E.NONE
    assert h.shard.check_partition("x", r.producer_id, 1, tp) == E.PRODUCER_FENCED
    assert h.shard.check_partition("x", 5, 0, tp) == E.INVALID_PRODUCER_ID_MAPPING
    h.hold_markers = True
    h.end("x", r.producer_id, 0, True)
    assert h.shard.check_partition("x", r.producer_id, 0, tp) == E.CONCURRENT_TRANSACTIONS


# -- fencing ------------------------------------------------------------------------------------


def test_second_producer_fences_the_first_and_aborts_its_transaction() -> None:
    h = TxnHarness()
    first = h.init("x")
    pid = first.producer_id
    h.add("x", pid, 0, ("t", 0))
    # The new producer's first attempt aborts the open transaction with a bumped epoch...
    assert h.init("x").error == E.CONCURRENT_TRANSACTIONS
    (job,) = h.markers
    assert (job.commit, job.producer_epoch, job.partitions) == (False, 1, {("t", 0)})
    # ...its retry bumps again.
    second = h.init("x")
    assert (second.error, second.producer_id, second.producer_epoch) == (E.NONE, pid, 2)
    # The old producer is fenced everywhere.
    assert h.add("x", pid, 0) == E.PRODUCER_FENCED
    assert h.end("x", pid, 0, True) == E.PRODUCER_FENCED
    assert h.init("x", expected=(pid, 0)).error == E.PRODUCER_FENCED


def test_fencing_while_markers_are_outstanding_waits() -> None:
    h = TxnHarness()
    r = h.init("x")
    h.add("x", r.producer_id, 0)
    h.hold_markers = True
    assert h.init("x").error == E.CONCURRENT_TRANSACTIONS
    assert h.snap("x").state == S.PREPARE_ABORT
    assert h.init("x").error == E.CONCURRENT_TRANSACTIONS  # still prepared: no second bump
    assert h.snap("x").producer_epoch == 1
    h.hold_markers = False
    h.finish()
    assert h.init("x").producer_epoch == 2


def test_kip360_retry_of_a_bump_gets_the_same_epoch() -> None:
    h = TxnHarness()
    r = h.init("x")
    pid = r.producer_id
    bumped = h.init("x", expected=(pid, 0))
    assert bumped.producer_epoch == 1
    retry = h.init("x", expected=(pid, 0))  # the answer to the first was lost
    assert (retry.error, retry.producer_epoch) == (E.NONE, 1)
    assert h.init("x", expected=(pid, 1)).producer_epoch == 2
    # A producer without an expected epoch fences everybody: no retry gets an old epoch.
    assert h.init("x").producer_epoch == 3
    assert h.init("x", expected=(pid, 2)).error == E.PRODUCER_FENCED
    assert h.init("x", expected=(pid + 100, 3)).error == E.PRODUCER_FENCED


def test_exhausted_epoch_rotates_the_producer_id() -> None:
    h = TxnHarness(first_pid=50)
    snap = TxnSnapshot(7, 32765, TIMEOUT, S.EMPTY, frozenset(), -1, h.clock.now_ms())
    h.apply([transaction_record("x", snap)])
    assert h.init("x").producer_epoch == 32766  # the last epoch a client may hold
    rotated = h.init("x", expected=(7, 32766))
    assert (rotated.producer_id, rotated.producer_epoch) == (50, 0)
    assert h.snap("x").previous_producer_id == 7
    # The answer was lost: the retry names the old producer id and its exhausted epoch.
    retry = h.init("x", expected=(7, 32766))
    assert retry.error == E.NONE and retry.producer_id == 50
    assert h.fresh().transactions["x"].snapshot() == h.snap("x")


# -- timeouts and expiry ------------------------------------------------------------------------


def test_timed_out_transaction_is_aborted_with_a_bumped_epoch() -> None:
    h = TxnHarness(TxnConfig(abort_timed_out_interval_ms=1000))
    r = h.init("x", timeout=5000)
    h.add("x", r.producer_id, 0, ("t", 0))
    h.advance(5000)
    assert h.snap("x").state == S.ONGOING  # not older than its timeout yet
    h.advance(1000)
    snap = h.snap("x")
    assert (snap.state, snap.producer_epoch) == (S.COMPLETE_ABORT, 1)
    assert [(j.commit, j.producer_epoch) for j in h.markers] == [(False, 1)]
    assert h.end("x", r.producer_id, 0, True) == E.PRODUCER_FENCED
    assert h.init("x").producer_epoch == 2


def test_idle_transactional_ids_expire_but_open_ones_do_not() -> None:
    cfg = TxnConfig(
        transactional_id_expiration_ms=10_000,
        remove_expired_interval_ms=1000,
        abort_timed_out_interval_ms=10**9,
    )
    h = TxnHarness(cfg)
    h.init("idle")
    r = h.init("open", timeout=cfg.max_timeout_ms)
    h.add("open", r.producer_id, 0)
    h.advance(11_000)
    assert set(h.shard.transactions) == {"open"}
    assert h.log[-1].value is None  # a tombstone
    assert set(h.fresh().transactions) == {"open"}


def test_prepared_transactions_survive_a_restart_and_are_completed() -> None:
    h = TxnHarness()
    a, b = h.init("a"), h.init("b")
    h.add("a", a.producer_id, 0, ("t", 0))
    h.add("b", b.producer_id, 0, ("t", 1))
    h.hold_markers = True
    h.end("a", a.producer_id, 0, True)
    h.clock.advance(10)
    # Crash: a fresh shard loads the log and finds "a" prepared, "b" still open.
    shard = h.fresh()
    jobs = shard.pending_markers()
    assert [(j.transactional_id, j.commit, j.partitions) for j in jobs] == [("a", True, {("t", 0)})]
    (done,) = shard.markers_written(jobs[0])
    shard.replay(done)
    assert shard.transactions["a"].state == S.COMPLETE_COMMIT
    assert shard.transactions["b"].state == S.ONGOING
    assert shard.transactions["b"].start_ms == h.snap("b").start_ms  # keeps its timeout


# -- admin ----------------------------------------------------------------------------------------


def test_describe_and_list() -> None:
    h = TxnHarness()
    a, b = h.init("a"), h.init("b")
    h.add("a", a.producer_id, 0, ("t", 1), ("t", 0), ("u", 2))
    h.clock.advance(1000)
    d = h.shard.describe("a")
    assert (d.error_code, d.transaction_state, d.producer_id) == (0, "Ongoing", a.producer_id)
    assert [(t.topic, t.partitions) for t in d.topics] == [("t", [0, 1]), ("u", [2])]
    assert h.shard.describe("zz").error_code == E.TRANSACTIONAL_ID_NOT_FOUND
    assert h.shard.describe("").error_code == E.INVALID_REQUEST

    def names(**kw: object) -> list[str]:
        kw.setdefault("states", set())
        kw.setdefault("producer_ids", set())
        return sorted(t.transactional_id for t in h.shard.list_transactions(**kw))  # type: ignore[arg-type]

    assert names() == ["a", "b"]
    assert names(states={S.ONGOING}) == ["a"]
    assert names(producer_ids={b.producer_id}) == ["b"]
    assert names(min_duration_ms=999) == ["a", "b"]  # b never started: -1 is long ago
    assert names(states={S.ONGOING}, min_duration_ms=1000) == []
