"""The process's descriptors: its open-file limit and how the broker shares it.

Segment files go through a bounded cache (storage/file_cache.py); what the limit leaves beyond
that bound is the reserve for client connections (two descriptors each: the socket and the
duplicate responses are sent on), the listening sockets, ZooKeeper, the event loop and the
files opened for a moment (snapshots, checkpoints, index writes). `strom.max.open.files` sets
the bound; by default it is three quarters of the limit. Start-up first raises the soft limit
to the hard one, as Kafka's documentation advises operators to.
"""

from __future__ import annotations

import logging
import resource

from strom.config import BrokerConfig
from strom.storage.file_cache import open_files

log = logging.getLogger("strom.server")

# The least kept back for everything but segment files, and the share of the limit kept back.
MIN_RESERVE = 64
RESERVE_SHARE = 4
MIN_BOUND = 16


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
    log.info(
        "open-file limit %d: up to %d segment files open at once, the rest kept for connections",
        limit,
        bound,
    )
