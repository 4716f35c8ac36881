"""What the broker does about log directories that fail (JBOD): a failed directory goes
offline and its partitions stop being served while the others go on, the coordinators resign
the shards that lived there, and the broker halts when no directory is left (or, on a single
broker, when the first one, holding the metadata file, fails), as Kafka does.

A part of `Broker` (strom.server.broker): the attributes declared here are the broker's."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.runtime.group_runtime import OFFSETS_TOPIC
from strom.runtime.txn_runtime import TRANSACTION_STATE_TOPIC

if TYPE_CHECKING:
    from strom.runtime.cluster_runtime import ClusterRuntime
    from strom.runtime.group_runtime import GroupCoordinatorRuntime
    from strom.runtime.purgatory import Purgatory
    from strom.runtime.txn_runtime import TransactionCoordinatorRuntime
    from strom.storage.log_manager import LogManager

log = logging.getLogger("strom.broker")


class LogDirFailures:
    logs: LogManager
    cluster: ClusterRuntime | None
    groups: GroupCoordinatorRuntime
    txns: TransactionCoordinatorRuntime
    fetch_purgatory: Purgatory
    produce_purgatory: Purgatory

    def missing_log_error(self, topic: str, partition: int) -> ErrorCode:
        """Why a partition has no log here: its log dir is offline or its log cannot be
        opened now (KAFKA_STORAGE_ERROR), its new log is still being made
        (NOT_LEADER_OR_FOLLOWER), or this broker does not have it (UNKNOWN_TOPIC_OR_PARTITION)."""
        if self.logs.is_unavailable(topic, partition):
            return ErrorCode.KAFKA_STORAGE_ERROR
        if (topic, partition) in self.logs.pending:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER  # its log is being created
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION

    def handle_log_dir_failure(self, log_dir: Path, reason: str) -> None:
        """A log dir failed (I/O error): take it offline and stop serving its partitions;
        the other directories go on. With none left the broker halts, as Kafka does, and on a
        single broker also when it is the first one (which holds the topic metadata)."""
        offline = self.logs.take_offline(log_dir, reason)
        if not self.logs.live_log_dirs:
            self._halt(
                "Shutdown broker because all log dirs in "
                f"{', '.join(map(str, self.logs.log_dirs))} have failed"
            )
        if self.cluster is None and log_dir == self.logs.log_dirs[0]:
            # It holds strom-metadata.json: as Kafka's metadata log dir, it cannot be lost.
            self._halt(f"Shutdown broker because the metadata log dir {log_dir} has failed")
        for topic, partition in offline:
            if self.cluster is None and topic == OFFSETS_TOPIC:
                self.groups.resign(partition)
            elif self.cluster is None and topic == TRANSACTION_STATE_TOPIC:
                self.txns.resign(partition)
            self.fetch_purgatory.notify((topic, partition))
            self.produce_purgatory.notify((topic, partition))
        if self.cluster is not None:
            self.cluster.log_dir_failed(log_dir, offline)

    @staticmethod
    def _halt(message: str) -> None:
        """Stop at once, as Kafka's Exit.halt: nothing more is written anywhere."""
        log.critical("%s", message)
        logging.shutdown()
        os._exit(1)

    def _replica_moved(self, key: tuple[str, int]) -> None:
        self.fetch_purgatory.notify(key)
