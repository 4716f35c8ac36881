"""The log directories themselves: checking them at start-up and their `meta.properties`.

Every directory of `log.dirs` gets Kafka's `meta.properties` (a Java properties file, version 0
as ZooKeeper-mode brokers write it):

    #
    #<date>
    cluster.id=<22-char base64 cluster id>
    version=0
    broker.id=<broker id>

On start-up each directory is created if missing and must be a readable directory; one that is
not, or whose `meta.properties` cannot be read, starts offline (the broker serves the others, as
Kafka does). A file that names another cluster id or broker id stops the broker: those
directories belong to another broker (Kafka's check, with its messages). Two entries of
log.dirs naming the same directory stop it too.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from strom.storage.checkpoint import write_atomically

log = logging.getLogger("strom.storage")

META_PROPERTIES = "meta.properties"


class LogDirConfigError(Exception):
    """The log directories cannot be used at all (the broker must not start)."""


@dataclass(frozen=True, slots=True)
class MetaProperties:
    version: int = 0
    cluster_id: str | None = None
    broker_id: int | None = None
    extra: tuple[tuple[str, str], ...] = ()  # other keys (directory.id, ...) kept as they are


def parse_properties(text: str) -> dict[str, str]:
    """The `key=value` lines of a Java properties file (comments and blanks skipped)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, _, value = line.partition(":")
        out[key.strip().replace("\\:", ":")] = value.strip()
    return out


def read_meta_properties(log_dir: Path) -> MetaProperties | None:
    """The directory's meta.properties; None when it has none. OSError when unreadable;
    ValueError when malformed."""
    try:
        text = (log_dir / META_PROPERTIES).read_text("utf-8")
    except FileNotFoundError:
        return None
    props = parse_properties(text)
    version = int(props.pop("version", "0"))
    cluster_id = props.pop("cluster.id", None)
    broker = props.pop("broker.id" if version == 0 else "node.id", None)
    return MetaProperties(
        version,
        cluster_id,
        None if broker is None else int(broker),
        tuple(sorted(props.items())),
    )


def write_meta_properties(log_dir: Path, meta: MetaProperties) -> None:
    stamp = time.strftime("%a %b %d %H:%M:%S %Z %Y")
    lines = ["#", f"#{stamp}"]
    if meta.cluster_id is not None:
        lines.append(f"cluster.id={meta.cluster_id}")
    lines.append(f"version={meta.version}")
    if meta.broker_id is not None:
        lines.append(f"{'broker.id' if meta.version == 0 else 'node.id'}={meta.broker_id}")
    lines.extend(f"{key}={value}" for key, value in meta.extra)
    write_atomically(log_dir / META_PROPERTIES, ("\n".join(lines) + "\n").encode())


def prepare_log_dirs(
    log_dirs: Iterable[Path], cluster_id: str | None, broker_id: int | None
) -> dict[Path, str]:
    """Create and check every log dir and write its meta.properties; returns the directories
    that start offline, with the reason. Raises LogDirConfigError when a directory belongs to
    another cluster or broker, or is listed twice."""
    offline: dict[Path, str] = {}
    seen: dict[str, Path] = {}
    metas: dict[Path, MetaProperties | None] = {}
    for log_dir in log_dirs:
        try:
            if not log_dir.exists():
                log.info("Log directory %s not found, creating it.", log_dir)
                log_dir.mkdir(parents=True)
            if not log_dir.is_dir() or not os.access(log_dir, os.R_OK | os.X_OK):
                raise OSError(f"{log_dir} is not a readable log directory.")
            canonical = os.path.realpath(log_dir)
            if canonical in seen:
                raise LogDirConfigError(
                    f"Duplicate log directory found: {seen[canonical]} and {log_dir} are the "
                    "same directory"
                )
            seen[canonical] = log_dir
            metas[log_dir] = read_meta_properties(log_dir)
        except (OSError, ValueError) as exc:
            offline[log_dir] = f"Failed to create or validate data directory {log_dir}: {exc}"
    _verify(metas, cluster_id, broker_id)
    for log_dir, meta in metas.items():
        wanted = MetaProperties(
            0,
            cluster_id if cluster_id is not None else (meta.cluster_id if meta else None),
            broker_id if broker_id is not None else (meta.broker_id if meta else None),
            meta.extra if meta else (),
        )
        if meta == wanted:
            continue
        try:
            write_meta_properties(log_dir, wanted)
        except OSError as exc:
            offline[log_dir] = f"Error while writing meta.properties to {log_dir}: {exc}"
    return offline


def _verify(
    metas: dict[Path, MetaProperties | None], cluster_id: str | None, broker_id: int | None
) -> None:
    expected_cluster, expected_broker = cluster_id, broker_id
    for log_dir, meta in metas.items():
        if meta is None:
            continue
        path = log_dir / META_PROPERTIES
        if meta.version != 0:
            raise LogDirConfigError(
                f"Found unexpected version in {path}. ZK-based brokers that are not migrating "
                "only support version 0 (which is implicit when the `version` field is missing)."
            )
        if meta.cluster_id is not None:
            if expected_cluster is None:
                expected_cluster = meta.cluster_id
            elif meta.cluster_id != expected_cluster:
                raise LogDirConfigError(
                    f"Invalid cluster.id in: {path}. Expected {expected_cluster}, but read "
                    f"{meta.cluster_id}"
                )
        if meta.broker_id is not None:
            if expected_broker is None:
                expected_broker = meta.broker_id
            elif meta.broker_id != expected_broker:
                raise LogDirConfigError(
                    f"Stored node id {meta.broker_id} doesn't match previous node id "
                    f"{expected_broker} in {path}. If you moved your data, make sure your "
                    "configured node id matches. If you intend to create a new node, you should "
                    "remove all data in your data directories."
                )
