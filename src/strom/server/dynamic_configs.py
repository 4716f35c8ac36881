"""Dynamic configs that the broker keeps (AlterConfigs, IncrementalAlterConfigs): this broker's
and the cluster-wide default broker configs, and group configs. On a single broker they are
written to the metadata file and applied at once; in cluster mode they go to ZooKeeper and
every broker concerned applies them from its watch. Applying a broker config reaches every
log and whatever else registered as `Reconfigurable` (TLS listeners).

A part of `Broker` (strom.server.broker): the attributes declared here are the broker's."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from strom.cluster.local_metadata import LocalMetadata
from strom.config import (
    BrokerConfig,
    ConfigError,
    decode_passwords,
    encode_passwords,
    log_no_effect,
)
from strom.config.broker_keys import DYNAMIC_ONLY
from strom.replication.alter_log_dirs import UNTHROTTLED

if TYPE_CHECKING:
    from strom.runtime.cluster_runtime import ClusterRuntime
    from strom.runtime.host import Metadata
    from strom.storage.log_config import LogConfig
    from strom.storage.log_manager import LogManager

log = logging.getLogger("strom.broker")

ALTER_LOG_DIRS_RATE = "replica.alter.log.dirs.io.max.bytes.per.second"


def broker_config_write_name(broker_id: int | None) -> str:
    """How a dynamic broker config write is named among a cluster's pending admin writes
    (topic config writes are named by their topic)."""
    return f"broker:{'' if broker_id is None else broker_id}"


def group_config_write_name(group_id: str) -> str:
    """How a group config write is named among a cluster's pending admin writes."""
    return f"group:{group_id}"


class Reconfigurable(Protocol):
    def check(self, config: BrokerConfig) -> object: ...

    def reconfigure(self, config: BrokerConfig) -> object: ...


class DynamicConfigs:
    config: BrokerConfig
    metadata: Metadata
    logs: LogManager
    cluster: ClusterRuntime | None
    reconfigurables: list[Reconfigurable]

    if TYPE_CHECKING:

        def log_config(self, topic: str) -> LogConfig: ...

    def set_group_configs(self, group_id: str, configs: dict[str, str]) -> None:
        """Replace a group's configs (already validated). In cluster mode they go to ZooKeeper
        (/config/groups/<group>) and every broker reads them from its watch."""
        if self.cluster is not None:
            zk = self.cluster.metadata
            self.cluster.start_write(
                group_config_write_name(group_id), lambda: zk.set_group_configs(group_id, configs)
            )
            return
        assert isinstance(self.metadata, LocalMetadata)
        self.metadata.set_group_configs(group_id, configs)

    def set_dynamic_broker_configs(self, broker_id: int | None, configs: dict[str, str]) -> None:
        """Replace the dynamic values of this broker (its id) or of the cluster-wide defaults
        (None), already validated; persist them and apply them to the config and every log.
        In cluster mode they go to ZooKeeper, and every broker concerned applies them from
        its watch (`apply_dynamic_broker_configs`)."""
        stored = encode_passwords(configs, self.config)
        if self.cluster is not None:
            zk = self.cluster.metadata
            self.cluster.start_write(
                broker_config_write_name(broker_id),
                lambda: zk.set_dynamic_broker_configs(broker_id, stored),
            )
            return
        assert isinstance(self.metadata, LocalMetadata)
        if broker_id is None:
            updated = self.config.with_dynamic(cluster_default=configs)
        else:
            updated = self.config.with_dynamic(per_broker=configs)
        self.metadata.set_dynamic_broker_configs(broker_id, stored)
        self._use_config(updated)

    def apply_dynamic_broker_configs(
        self, per_broker: dict[str, str], default: dict[str, str]
    ) -> None:
        """Cluster mode: the dynamic configs in ZooKeeper changed. Values this version cannot
        take (written by another tool) are refused whole, with a log line."""
        try:
            updated = self.config.with_dynamic(
                per_broker=decode_passwords(per_broker, self.config),
                cluster_default=decode_passwords(default, self.config),
            )
        except ConfigError as exc:
            log.error("ignoring dynamic broker configs from ZooKeeper: %s", exc)
            return
        self._use_config(updated)

    def check_reconfiguration(self, updated: BrokerConfig) -> None:
        """Raises ConfigError when a dynamic change cannot be applied (a key store that does
        not load, a certificate whose name changed)."""
        for part in self.reconfigurables:
            part.check(updated)

    def _use_config(self, updated: BrokerConfig) -> None:
        old, self.config = self.config, updated
        changed = [
            key
            for new_layer, old_layer in (
                (updated.dynamic_broker_configs, old.dynamic_broker_configs),
                (updated.dynamic_default_configs, old.dynamic_default_configs),
            )
            for key, value in new_layer.items()
            if old_layer.get(key) != value
        ]
        log_no_effect(changed)
        if updated.producer_id_expiration_ms != old.producer_id_expiration_ms:
            self.logs.set_producer_id_expiration(updated.producer_id_expiration_ms)
        for part in self.reconfigurables:
            part.reconfigure(updated)
        for name in self.metadata.topics:
            self.logs.update_config(name, self.log_config(name))

    def _alter_log_dirs_rate(self) -> int:
        """replica.alter.log.dirs.io.max.bytes.per.second: a dynamic-only key (as Kafka's, it
        is read from this broker's dynamic configs, then the cluster-wide default)."""
        for layer in (self.config.dynamic_broker_configs, self.config.dynamic_default_configs):
            value = layer.get(ALTER_LOG_DIRS_RATE)
            if value is not None:
                rate = DYNAMIC_ONLY[ALTER_LOG_DIRS_RATE].parse(value, None)
                if isinstance(rate, int):
                    return rate
        return UNTHROTTLED
