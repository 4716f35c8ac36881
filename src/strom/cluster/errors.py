"""Errors of cluster-mode metadata that layers above raise or catch without importing the
ZooKeeper code (a single broker never imports it)."""

from __future__ import annotations


class ClusterMetadataError(Exception):
    """A cluster-mode operation cannot be done (the message says why)."""


class ProducerIdsUnavailableError(ClusterMetadataError):
    """No block of producer ids has been fetched from ZooKeeper yet."""
