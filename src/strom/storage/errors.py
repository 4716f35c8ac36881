"""Exceptions raised by the storage layer.

Each carries the Kafka error code the server should answer with, so handlers can map a storage
failure to a response without knowing storage internals. The codes are Kafka's numbers; they are
repeated here (rather than imported from `strom.protocol.errors`) so that storage stays usable
on its own in tests and tools.
"""

from __future__ import annotations

import errno

# Running short of something for a while, not a failing disk: the operation fails, its log
# directory stays online, and the same operation succeeds once the resource is back.
SHORTAGE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_dir_failure(exc: BaseException, log_dirs: int) -> bool:
    """Whether an I/O error takes its log directory offline. A full disk does only where
    other log directories can take over (Kafka's failed log directory); with one, produces
    fail until space is freed and everything else goes on."""
    code = getattr(exc, "errno", None)
    if code in SHORTAGE_ERRNOS:
        return False
    if code in DISK_FULL_ERRNOS:
        return log_dirs > 1
    return True


class StorageError(Exception):
    """Base class; `error_code` is UNKNOWN_SERVER_ERROR unless a subclass says otherwise."""

    error_code: int = -1


class OffsetOutOfRangeError(StorageError):
    """A fetch or DeleteRecords offset outside [log_start_offset, log_end_offset]."""

    error_code = 1


class KafkaStorageError(StorageError):
    """The log directory or a file in it failed (I/O error); maps to KAFKA_STORAGE_ERROR."""

    error_code = 56


class CorruptLogError(StorageError):
    """A segment holds bytes that are not a valid batch where one was expected."""

    error_code = 2  # CORRUPT_MESSAGE


class LogClosedError(StorageError):
    """An operation on a PartitionLog after close() or delete()."""

    error_code = 56


class InconsistentTopicIdError(StorageError):
    """partition.metadata names a different topic id than the caller expects."""

    error_code = 103


class NotCachedError(Exception):
    """A read asked not to block (`nowait`) found data that is not in the page cache.

    Not a StorageError: nothing is wrong; the caller repeats the read where blocking is fine
    (the broker's worker pool).
    """


class CleaningAbortedError(Exception):
    """A cleaning pass stopped because its log is being truncated, moved, closed or deleted.

    Not a StorageError: nothing failed; the pass is simply not finished (cleaning_pass.py).
    """
