from __future__ import annotations

import pytest

from strom.storage.log_config import LogConfig


@pytest.fixture
def small_config() -> LogConfig:
    return LogConfig(segment_bytes=1024, index_interval_bytes=100, retention_ms=-1)
