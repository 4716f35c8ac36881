"""Reads as the fetch path does them: from the page cache without blocking, and sequentially."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from storage_helpers import append, open_log, records_of

from strom.storage.errors import NotCachedError


def _drop_from_page_cache(plog_dir: Path) -> None:
    for path in plog_dir.glob("*.log"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # only clean pages can be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def test_nowait_read_matches_a_blocking_read(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    for i in range(20):
        append(plog, [f"v{i}-{j}".encode() * 50 for j in range(5)])
    for offset in (0, 7, 50, 99):
        for max_bytes in (1, 700, 1 << 20):
            blocking = plog.read(offset, max_bytes, plog.high_watermark, True)
            cached = plog.read(offset, max_bytes, plog.high_watermark, True, nowait=True)
            assert bytes(cached.records) == bytes(blocking.records)
            assert cached.next_offset == blocking.next_offset
    plog.close()


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="needs preadv RWF_NOWAIT")
def test_nowait_read_of_data_not_in_the_page_cache_raises(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    append(plog, [os.urandom(1000) for _ in range(300)])
    plog.flush()
    _drop_from_page_cache(plog.directory)
    try:
        plog.read(0, 1 << 20, plog.high_watermark, True, nowait=True)
    except NotCachedError:
        pass
    else:  # pragma: no cover - a kernel that read ahead anyway: nothing to check
        pytest.skip("the page cache kept the data")
    # The blocking read (what the worker pool does) still returns it all.
    result = plog.read(0, 1 << 20, plog.high_watermark, True)
    assert len(records_of(result.records)) == 300
    plog.close()


def test_sequential_reads_continue_where_the_last_one_ended(tmp_path: Path) -> None:
    plog = open_log(tmp_path)
    for i in range(50):
        append(plog, [f"{i}-{j}".encode() for j in range(3)])
    offset, seen = 0, []
    while offset < plog.high_watermark:
        result = plog.read(offset, 200, plog.high_watermark, True)
        seen += [r.offset for r in records_of(result.records)]
        offset = result.next_offset
    assert seen == list(range(150))
    # Truncation forgets where the last read ended; a read there then finds the new batch.
    plog.truncate_to(60)
    append(plog, [b"new"])
    result = plog.read(60, 1 << 20, plog.high_watermark, True)
    assert [r.value for r in records_of(result.records)] == [b"new"]
    plog.close()
