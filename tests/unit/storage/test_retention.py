from __future__ import annotations

from pathlib import Path

from storage_helpers import append, open_log, read_all

from strom.storage.log_config import LogConfig
from strom.storage.retention import delete_expired_segments


def _filled(tmp_path: Path, config: LogConfig, count: int = 30):  # type: ignore[no-untyped-def]
    plog = open_log(tmp_path, config)
    for i in range(count):
        append(plog, [f"{i:04d}".encode() * 40], timestamp=1000 * i)
    return plog


def test_retention_by_time(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=1024, retention_ms=10_000)
    plog = _filled(tmp_path, config)
    segments = len(plog.segments)
    assert delete_expired_segments(plog, now_ms=0) == 0
    # now - largest timestamp > 10 s for segments whose records are all below 15 000
    deleted = delete_expired_segments(plog, now_ms=25_000)
    assert deleted > 0 and len(plog.segments) == segments - deleted
    assert plog.log_start_offset == plog.segments[0].base_offset
    assert all(s.max_timestamp >= 15_000 for s in plog.segments)
    first = read_all(plog)[0].offset
    assert first == plog.log_start_offset
    deleted_files = list((tmp_path / "t-0").glob("*.deleted"))
    assert deleted_files == []
    plog.close()


def test_retention_of_everything_rolls_first(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=1024, retention_ms=10)
    plog = _filled(tmp_path, config)
    end = plog.log_end_offset
    delete_expired_segments(plog, now_ms=10_000_000)
    assert len(plog.segments) == 1
    assert plog.active_segment.size == 0 and plog.active_segment.base_offset == end
    assert plog.log_start_offset == end == plog.log_end_offset
    append(plog, [b"after"])
    assert [r.offset for r in read_all(plog)] == [end]
    plog.close()


def test_retention_by_bytes(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=1024, retention_ms=-1, retention_bytes=2500)
    plog = _filled(tmp_path, config)
    delete_expired_segments(plog, now_ms=0)
    assert plog.size_bytes >= 2500
    assert plog.size_bytes - plog.segments[0].size < 2500
    plog.close()


def test_retention_by_log_start_offset(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=1024, retention_ms=-1, cleanup_policy=frozenset({"compact"}))
    plog = _filled(tmp_path, config)
    bases = [s.base_offset for s in plog.segments]
    plog.delete_records_before(bases[2] + 1)
    assert delete_expired_segments(plog, now_ms=0) == 2
    assert plog.segments[0].base_offset == bases[2]
    assert plog.log_start_offset == bases[2] + 1
    plog.close()


def test_nothing_above_high_watermark_is_deleted(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=1024, retention_ms=10)
    plog = _filled(tmp_path, config)
    plog.update_high_watermark(plog.segments[1].base_offset)
    assert delete_expired_segments(plog, now_ms=10_000_000) == 1
    plog.close()
