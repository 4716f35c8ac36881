"""The process's descriptors: its open-file limit and how the broker shares it.

Segment files go through a bounded cache (storage/file_cache.py); what the limit leaves beyond
that bound is the reserve for client connections (two descriptors each: the socket and the
duplicate responses are sent on), the listening sockets, ZooKeeper, the event loop and the
files opened for a moment (snapshots, checkpoints, index writes). `strom.max.open.files` sets
the bound; by default it is three quarters of the limit. Start-up first raises the soft limit
to the hard one, as Kafka's documentation advises operators to.

Connections can still take every descriptor. Some work must not fail for lack of one: loading
the code that answers a request (a handler module and its message modules are imported on the
first request for their API key, handler_index.py), without which the request cannot even be
answered with an error. `reserve` holds a few descriptors open on /dev/null for that work and
gives them up for the moment it runs out (`DescriptorReserve.run`).
"""

from __future__ import annotations

import errno
import logging
import os
import resource
from collections.abc import Callable
from typing import TypeVar

from strom.config import BrokerConfig
from strom.storage.file_cache import open_files

log = logging.getLogger("strom.server")

# The least kept back for everything but segment files, and the share of the limit kept back.
MIN_RESERVE = 64
RESERVE_SHARE = 4
MIN_BOUND = 16
# Descriptors DescriptorReserve holds back: an import opens one file at a time.
RESERVED = 4
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})

T = TypeVar("T")


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, wanted, exc)
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def segment_file_bound(configured: int, limit: int) -> int:
    """How many segment files may be open at once under an open-file `limit`."""
    reserve = max(MIN_RESERVE, limit // RESERVE_SHARE)
    most = max(MIN_BOUND, limit - reserve)
    if configured < 0:
        return most
    if configured > most:
        log.warning(
            "strom.max.open.files=%d leaves too few of the %d descriptors the process may open "
            "for connections; using %d",
            configured,
            limit,
            most,
        )
        return most
    return max(1, configured)


def configure_open_files(config: BrokerConfig) -> None:
    """At start-up: raise the limit and bound the segment file cache under it."""
    limit = raise_open_file_limit()
    bound = segment_file_bound(config.get_int("strom.max.open.files"), limit)
    open_files.resize(bound)
    reserve.refill()
    log.info(
        "open-file limit %d: up to %d segment files open at once, the rest kept for connections",
        limit,
        bound,
    )


class DescriptorReserve:
    """A few descriptors held open on /dev/null, given up while work that must not fail for
    lack of descriptors runs when the process has none left (one thread at a time: the event
    loop's)."""

    def __init__(self, count: int = RESERVED) -> None:
        self.count = count
        self._fds: list[int] = []

    def __len__(self) -> int:
        return len(self._fds)

    def refill(self) -> None:
        """Take back what was given up, as far as descriptors are free."""
        while len(self._fds) < self.count:
            try:
                self._fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                return

    def run(self, work: Callable[[], T]) -> T:
        """`work()`; if it fails for lack of descriptors, once more with the reserve given up
        (raises that OSError when it still fails, or when the reserve is empty)."""
        if len(self._fds) < self.count:
            self.refill()
        try:
            return work()
        except OSError as exc:
            if exc.errno not in OUT_OF_DESCRIPTORS or not self._fds:
                raise
        log.warning("out of descriptors: using the reserve of %d to load code", len(self._fds))
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)
        try:
            return work()
        finally:
            self.refill()


reserve = DescriptorReserve()
