from __future__ import annotations

from pathlib import Path

import pytest
from storage_helpers import append, open_log, read_all, records_of

from strom.protocol.records.codec import decode_records
from strom.storage.errors import OffsetOutOfRangeError
from strom.storage.log_config import LogConfig


def test_append_and_read_round_trip(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    first = append(plog, [b"a", b"b", b"c"])
    second = append(plog, [b"d"])
    assert (first.first_offset, first.last_offset) == (0, 2)
    assert (second.first_offset, second.last_offset) == (3, 3)
    assert first.log_append_time_ms == -1
    assert first.max_timestamp == 1002
    assert plog.log_end_offset == 4
    result = plog.read(0, 1 << 20, plog.high_watermark, False)
    assert [r.value for r in records_of(result.records)] == [b"a", b"b", b"c", b"d"]
    assert [r.offset for r in records_of(result.records)] == [0, 1, 2, 3]
    assert result.first_offset == 0 and result.next_offset == 4
    # A fetch inside a batch returns the whole batch holding it.
    mid = plog.read(1, 1 << 20, plog.high_watermark, False)
    assert mid.first_offset == 0
    plog.close()


def test_read_bounds(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    for i in range(5):
        append(plog, [b"x" * 100], timestamp=i)
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(6, 100, 10, True)
    assert plog.read(5, 100, 10, True).records == b""
    one = plog.read(0, 10, 10, True)  # max_bytes below one batch: min_one_batch wins
    assert [r.offset for r in records_of(one.records)] == [0]
    assert plog.read(0, 10, 10, False).records == b""
    two = plog.read(0, 2 * len(one.records), 10, False)
    assert [r.offset for r in records_of(two.records)] == [0, 1]
    capped = plog.read(0, 1 << 20, 3, False)  # max_offset is exclusive
    assert [r.offset for r in records_of(capped.records)] == [0, 1, 2]
    assert plog.read(3, 1 << 20, 3, True).records == b""
    plog.close()


def test_log_append_time(tmp_path: Path) -> None:
    plog = open_log(tmp_path, LogConfig(message_timestamp_type="LogAppendTime"))
    result = append(plog, [b"a", b"b"], now_ms=777)
    assert result.log_append_time_ms == 777
    data = plog.read(0, 1 << 20, 10, True).records
    header, records = decode_records(memoryview(data))
    assert header.max_timestamp == 777 and header.timestamp_type == 1
    assert [r.timestamp for r in records] == [777, 777]
    plog.close()


def test_roll_by_size_and_read_across_segments(tmp_path: Path, small_config: LogConfig) -> None:
    plog = open_log(tmp_path, small_config)
    for i in range(40):
        append(plog, [f"value-{i}".encode() * 5])
    assert len(plog.segments) > 3
    assert all(s.size <= 1024 for s in plog.segments)
    assert [s.base_offset for s in plog.segments] == sorted(s.base_offset for s in plog.segments)
    assert [r.value for r in read_all(plog)] == [f"value-{i}".encode() * 5 for i in range(40)]
    names = sorted(p.name for p in (tmp_path / "t-0").iterdir() if p.suffix == ".log")
    assert names[0] == "00000000000000000000.log"
    assert all(len(n) == len("00000000000000000000.log") for n in names)
    plog.close()


def test_roll_by_time(tmp_path: Path) -> None:
    plog = open_log(tmp_path, LogConfig(segment_ms=1000))
    append(plog, [b"a"], timestamp=5_000)
    append(plog, [b"b"], timestamp=5_900)  # 900 ms after the first batch: same segment
    assert len(plog.segments) == 1
    append(plog, [b"c"], timestamp=6_100)  # more than segment.ms later
    assert [s.base_offset for s in plog.segments] == [0, 2]
    plog.close()


def test_roll_when_index_full(tmp_path: Path) -> None:
    config = LogConfig(segment_index_bytes=16, index_interval_bytes=1)  # room for 1 time entry
    plog = open_log(tmp_path, config)
    for i in range(10):
        append(plog, [b"v" * 50], timestamp=i)
    assert len(plog.segments) > 2
    assert all(len(s.offset_index) <= 2 for s in plog.segments)
    assert len(read_all(plog)) == 10
    plog.close()


def test_index_lookup_and_offset_for_timestamp(tmp_path: Path) -> None:
    plog = open_log(tmp_path, LogConfig(index_interval_bytes=200))
    for i in range(50):
        append(plog, [b"a" * 40, b"b" * 40], timestamps=[1000 + 10 * i, 1005 + 10 * i])
    segment = plog.active_segment
    assert len(segment.offset_index) > 5
    assert len(segment.time_index) > 5
    for offset in range(100):
        _position, header = segment.locate(offset)  # type: ignore[misc]
        assert header.base_offset <= offset <= header.last_offset
    assert plog.offset_for_timestamp(0) == (0, 1000)
    assert plog.offset_for_timestamp(1005) == (1, 1005)
    assert plog.offset_for_timestamp(1006) == (2, 1010)
    assert plog.offset_for_timestamp(1490) == (98, 1490)
    assert plog.offset_for_timestamp(1496) is None
    assert plog.latest_timestamp() == (99, 1495)
    plog.close()


def test_latest_timestamp_finds_the_record(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    assert plog.latest_timestamp() == (-1, -1)
    append(plog, [b"a", b"b", b"c"], timestamps=[10, 50, 20])
    append(plog, [b"d"], timestamps=[30])
    assert plog.latest_timestamp() == (1, 50)
    plog.close()


def test_delete_records_before(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    for _ in range(5):
        append(plog, [b"x", b"y"])
    assert plog.delete_records_before(3) == 3
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(2, 100, 10, True)
    assert next(r.offset for r in read_all(plog)) == 3
    assert plog.delete_records_before(1) == 3  # never moves back
    plog.update_high_watermark(8)
    with pytest.raises(OffsetOutOfRangeError):
        plog.delete_records_before(9)
    assert plog.delete_records_before(-1) == 8
    plog.close()


def test_truncate_to(tmp_path: Path, small_config: LogConfig) -> None:
    plog = open_log(tmp_path, small_config)
    for i in range(30):
        append(plog, [str(i).encode() * 30], epoch=i // 10)
    plog.truncate_to(15)
    assert plog.log_end_offset == 15
    assert plog.high_watermark == 15
    assert [r.offset for r in read_all(plog)] == list(range(15))
    assert plog.leader_epoch_cache.entries() == [(0, 0), (1, 10)]
    append(plog, [b"again"], epoch=3)
    assert plog.log_end_offset == 16
    plog.truncate_to(0)
    assert plog.log_end_offset == 0 and len(plog.segments) == 1
    plog.close()


def test_leader_epoch_cache(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    append(plog, [b"a", b"b"], epoch=1)
    append(plog, [b"c"], epoch=1)
    append(plog, [b"d"], epoch=3)
    assert plog.end_offset_for_epoch(1) == (1, 3)
    assert plog.end_offset_for_epoch(2) == (1, 3)
    assert plog.end_offset_for_epoch(3) == (3, 4)
    assert plog.end_offset_for_epoch(0) == (0, 0)
    assert plog.end_offset_for_epoch(4) == (-1, -1)
    text = (tmp_path / "t-0" / "leader-epoch-checkpoint").read_text()
    assert text == "0\n2\n1 0\n3 3\n"
    plog.close()
    reopened = open_log(tmp_path)
    assert reopened.end_offset_for_epoch(1) == (1, 3)
    reopened.close()


def test_reopen_after_clean_close(tmp_path: Path, small_config: LogConfig) -> None:
    plog = open_log(tmp_path, small_config)
    for i in range(25):
        append(plog, [f"{i}".encode() * 40], timestamp=100 * i)
    plog.flush()
    max_ts = [s.max_timestamp for s in plog.segments]
    plog.close()
    reopened = open_log(tmp_path, small_config, recovery_point=25)
    assert reopened.log_end_offset == 25
    assert [s.max_timestamp for s in reopened.segments] == max_ts
    assert [r.value for r in read_all(reopened)] == [f"{i}".encode() * 40 for i in range(25)]
    append(reopened, [b"more"])
    assert reopened.log_end_offset == 26
    reopened.close()


def test_flush_and_needs_flush(tmp_path: Path) -> None:
    plog = open_log(tmp_path, LogConfig(flush_messages=3, flush_ms=1000))
    assert not plog.needs_flush(0)
    append(plog, [b"a"])
    assert not plog.needs_flush(0)
    append(plog, [b"b", b"c"])
    assert plog.needs_flush(0)
    plog.flush(now_ms=0)
    assert plog.recovery_point == 3 and not plog.needs_flush(0)
    append(plog, [b"d"])
    assert not plog.needs_flush(999) and plog.needs_flush(1000)
    plog.close()


def test_partition_metadata_format(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    text = (tmp_path / "t-0" / "partition.metadata").read_text()
    assert text == "version: 0\ntopic_id: EjRWeBI0VngSNFZ4EjRWeA"
    plog.delete()
    assert not (tmp_path / "t-0").exists()
