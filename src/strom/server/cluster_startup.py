"""Start-up of a broker in cluster mode (zookeeper.connect): connect to ZooKeeper, register or
read the cluster, apply the dynamic configs kept there, open the logs (the blocking part in a
thread) and attach the cluster runtime and the ACL and quota stores in ZooKeeper. The
ZooKeeper client is imported here only, so that a single broker never loads it."""

from __future__ import annotations

import asyncio
import logging

from strom.config import BrokerConfig, ConfigError, decode_passwords
from strom.runtime.acl_runtime import AclRuntime
from strom.runtime.quota_runtime import QuotaRuntime
from strom.security.client import InterBrokerSecurityReload
from strom.server.broker import Broker

log = logging.getLogger("strom.broker")


async def open_cluster_broker(config: BrokerConfig) -> Broker:
    from strom.cluster.ids import new_cluster_id
    from strom.cluster.zk.client import ZkClient
    from strom.cluster.zk.zk_tls import zookeeper_tls_context
    from strom.cluster.zk_metadata import ZkMetadata
    from strom.runtime.cluster_runtime import ClusterRuntime

    assert config.zookeeper_connect
    client = ZkClient(
        config.zookeeper_connect,
        session_timeout_ms=config.get_int("zookeeper.session.timeout.ms"),
        connection_timeout_ms=config.get("zookeeper.connection.timeout.ms"),  # type: ignore[arg-type]
        tls=zookeeper_tls_context(config),
    )
    await client.start()
    try:
        metadata = ZkMetadata(client, config.broker_id)
        await metadata.start(new_cluster_id())
        await metadata.load()
        try:
            config = config.with_dynamic(
                decode_passwords(metadata.dynamic_configs_for(config.broker_id), config),
                decode_passwords(metadata.dynamic_configs_for(None), config),
            )
        except ConfigError as exc:
            log.error("ignoring dynamic broker configs from ZooKeeper: %s", exc)
        loop = asyncio.get_running_loop()
        broker = await loop.run_in_executor(None, Broker.open_cluster, config, metadata)
        broker.cluster = ClusterRuntime(broker, client, metadata)
        broker.reconfigurables.append(InterBrokerSecurityReload(broker.cluster.replicas.security))
        if broker.authorizer is not None:
            from strom.cluster.zk.acl_store import ZkAclStore

            broker.acls = await AclRuntime.open_zk(
                broker.authorizer, ZkAclStore(client), client.connection_timeout_ms / 1000
            )
        from strom.cluster.zk.quota_store import ZkQuotaStore

        broker.quotas = await QuotaRuntime.open_zk(
            config, ZkQuotaStore(client), client.connection_timeout_ms / 1000
        )
        return broker
    except BaseException:
        await client.close()
        raise
