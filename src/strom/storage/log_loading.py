"""Loading a log dir at start-up: what is in it, which logs open now and which later.

Names in a log dir (Kafka's layout; see log_manager.py for what each holds) and the rules of
loading: a `<topic>-<partition>.<id>-delete` directory is removed; a `-future` one (a move
between log dirs, log_moves.py) is opened at once as the future log of its partition, with its
current log; a partition in two directories stops start-up. Every other log becomes a
`DeferredLog` (deferred_logs.py), read only when it is first used or by the broker's warm-up:
as it was left by a clean shutdown, or recovered past its recovery point after a crash (no
`.kafka_cleanshutdown`).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from strom.protocol.primitives import ZERO_UUID
from strom.storage.checkpoint import fsync_dir, read_offsets
from strom.storage.deferred_logs import DeferredLog
from strom.storage.errors import is_dir_failure
from strom.storage.log_dirs import LogDirConfigError
from strom.storage.partition_log import PartitionLog, partition_dir_name
from strom.storage.partition_metadata import read_partition_metadata

if TYPE_CHECKING:
    from strom.storage.log_manager import LogManager

log = logging.getLogger("strom.storage")

CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_FILE = "log-start-offset-checkpoint"
HIGH_WATERMARK_FILE = "replication-offset-checkpoint"
DELETE_SUFFIX = "-delete"
FUTURE_SUFFIX = "-future"
PARTITION_DIR = re.compile(r"^(?P<topic>.+)-(?P<partition>\d+)$")
# "<topic>-<partition>.<unique id>-delete|-future|-stray" (Kafka's unique id: a uuid's hex)
SUFFIXED_DIR = re.compile(
    r"^(?P<topic>.+)-(?P<partition>\d+)\.[0-9A-Za-z]+-(?P<kind>delete|future|stray)$"
)
# Kafka's marker content since 3.x; older Kafka wrote an empty file. Readers only test existence.
CLEAN_SHUTDOWN_CONTENT = b'{"version":0,"brokerEpoch":-1}'

TopicPartition = tuple[str, int]


def load_dir(manager: LogManager, log_dir: Path) -> None:
    """List a log dir's logs into `manager`, deferred (deferred_logs.py) except the future
    logs and their current logs. Raises OSError when the directory itself cannot be read."""
    marker = log_dir / CLEAN_SHUTDOWN_FILE
    clean = marker.exists()
    recovery_points = read_offsets(log_dir / RECOVERY_POINT_FILE)
    entries = sorted(os.scandir(log_dir), key=lambda e: e.name)
    if not clean and any(entry.is_dir() for entry in entries):
        log.warning(
            "no clean shutdown marker in %s: each partition's segments past its recovery "
            "point are recovered when it is opened",
            log_dir,
        )
    start_offsets = read_offsets(log_dir / LOG_START_OFFSET_FILE)
    high_watermarks = read_offsets(log_dir / HIGH_WATERMARK_FILE)
    for entry in entries:
        if not entry.is_dir():
            continue
        path = Path(entry.path)
        future = False
        suffixed = SUFFIXED_DIR.match(entry.name)
        if suffixed is not None:
            if suffixed["kind"] == DELETE_SUFFIX[1:]:
                log.info("finishing the deletion of %s", path)
                shutil.rmtree(path, ignore_errors=True)
                continue
            if suffixed["kind"] != FUTURE_SUFFIX[1:]:
                log.warning("ignoring %s: not a partition directory Strom uses", path)
                continue
            future = True
            match: re.Match[str] | None = suffixed
        else:
            match = PARTITION_DIR.match(entry.name)
        if match is None or (not future and "." in entry.name.rsplit("-", 1)[1]):
            log.warning("ignoring %s: not a <topic>-<partition> directory", path)
            continue
        key = (sys.intern(match["topic"]), int(match["partition"]))
        check_duplicate(manager, key, path, future)
        if not future:
            manager.deferred[key] = DeferredLog(
                log_dir,
                recovery_points.get(key),
                start_offsets.get(key),
                high_watermarks.get(key),
                clean,
            )
            continue
        try:
            plog = PartitionLog.open(
                path,
                key[0],
                key[1],
                read_partition_metadata(path) or ZERO_UUID,
                manager.topic_config(key[0]),
                recovery_points.get(key),
                clean,
                start_offsets.get(key),
                producer_id_expiration_ms=manager.producer_id_expiration_ms,
            )
        except OSError:
            raise  # the directory fails
        except Exception:
            log.exception("could not load %s; its partition is offline", path)
            if not future:
                manager.offline_partitions[key] = log_dir
            continue
        manager.register(key, plog, log_dir, future)
    for key in [k for k in manager.future_logs if k in manager.deferred]:
        manager.get(*key)  # a move in progress needs its current log
    if clean:
        # From now on a crash must be recognised as unclean.
        marker.unlink()
        fsync_dir(log_dir)


def check_duplicate(manager: LogManager, key: TopicPartition, path: Path, future: bool) -> None:
    if future and key in manager.future_logs:
        raise LogDirConfigError(
            f"Duplicate log directories found: {path}, {manager.future_logs[key].directory}"
        )
    if not future and (key in manager.logs or key in manager.deferred):
        other = (
            manager.logs[key].directory
            if key in manager.logs
            else manager.deferred[key].log_dir / partition_dir_name(*key)
        )
        raise LogDirConfigError(
            f"Duplicate log directories for {key[0]}-{key[1]} are found in both {path} and "
            f"{other}. It is likely because log directory failure happened "
            "while broker was replacing current replica with future replica. Recover broker "
            "from this failure by manually deleting one of the two directories for this "
            "partition. It is recommended to delete the partition in the log directory that "
            "is known to have failed recently."
        )


def open_deferred_log(manager: LogManager, key: TopicPartition) -> PartitionLog | None:
    """Open a deferred log now (see LogManager.get)."""
    entry = manager.deferred.get(key)
    if entry is None:
        return None
    path = entry.log_dir / partition_dir_name(*key)
    try:
        plog = PartitionLog.open(
            path,
            key[0],
            key[1],
            read_partition_metadata(path) or ZERO_UUID,
            manager.topic_config(key[0]),
            entry.recovery_point,
            entry.clean,
            entry.log_start_offset,
            producer_id_expiration_ms=manager.producer_id_expiration_ms,
        )
    except OSError as exc:
        if not is_dir_failure(exc, len(manager.log_dirs)):
            log.warning("could not open %s now: %s", path, exc)
            return None  # still deferred: the next use tries again
        del manager.deferred[key]
        manager.io_failed(entry.log_dir, exc)
        return None
    except Exception:
        log.exception("could not load %s; its partition is offline", path)
        del manager.deferred[key]
        manager.offline_partitions[key] = entry.log_dir
        return None
    del manager.deferred[key]
    manager.register(key, plog, entry.log_dir, future=False)
    return plog
