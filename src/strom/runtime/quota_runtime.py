"""Client quotas of a running broker: the stored entity configs, the managers that enforce
them, and DescribeClientQuotas / AlterClientQuotas against the store.

A single broker keeps the entity configs in `strom-security.json` (written before the answer);
a cluster in ZooKeeper under /config/users, /config/clients and /config/ips
(cluster/zk/quota_store.py), where every broker picks changes up from the notifications.
Quotas are enforced per broker, as in Kafka: each broker measures the traffic it serves.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from strom.protocol.errors import ErrorCode
from strom.quota.admin import FilterComponent, QuotaRequestError, altered, describe, entity_of
from strom.quota.entities import (
    CONNECTION_CREATION_RATE,
    CONSUMER_BYTE_RATE,
    PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    QuotaEntity,
    quota_values,
)
from strom.quota.manager import ClientQuotaManager, ControllerMutationQuotaManager

if TYPE_CHECKING:
    from strom.cluster.local_security import LocalSecurityStore
    from strom.cluster.zk.quota_store import ZkQuotaStore
    from strom.config import BrokerConfig

log = logging.getLogger("strom.quota")

Configs = dict[str, str]


class QuotaBackend(Protocol):
    async def update(self, entity_path: str, change: Callable[[Configs], Configs]) -> Configs:
        """Apply `change` to the stored configs of the entity; the configs stored after."""
        ...


class LocalQuotaBackend:
    def __init__(self, store: LocalSecurityStore) -> None:
        self.store = store

    async def update(self, entity_path: str, change: Callable[[Configs], Configs]) -> Configs:
        after = change(self.store.entity_configs().get(entity_path, {}))
        self.store.set_entity_configs({entity_path: after})
        return after


class MemoryQuotaBackend:
    """Configs kept in memory only (a broker built without a data directory's store)."""

    def __init__(self) -> None:
        self.configs: dict[str, Configs] = {}

    async def update(self, entity_path: str, change: Callable[[Configs], Configs]) -> Configs:
        after = change(dict(self.configs.get(entity_path, {})))
        self.configs[entity_path] = after
        return after


class QuotaRuntime:
    def __init__(
        self,
        config: BrokerConfig,
        backend: QuotaBackend,
        configs: Mapping[str, Mapping[str, str]],
        write_timeout_s: float = 30.0,
    ) -> None:
        samples = config.get_int("quota.window.num")
        window_ms = config.get_int("quota.window.size.seconds") * 1000
        self.produce = ClientQuotaManager(PRODUCER_BYTE_RATE, samples, window_ms)
        self.fetch = ClientQuotaManager(CONSUMER_BYTE_RATE, samples, window_ms)
        # Kafka caps a request-quota throttle at one window.
        self.request = ClientQuotaManager(REQUEST_PERCENTAGE, samples, window_ms, window_ms)
        self.controller = ControllerMutationQuotaManager(
            config.get_int("controller.quota.window.num"),
            config.get_int("controller.quota.window.size.seconds") * 1000,
        )
        self.backend = backend
        self.write_timeout_s = write_timeout_s
        self._configs: dict[str, Configs] = {k: dict(v) for k, v in configs.items()}
        self._zk: ZkQuotaStore | None = None
        # connection_creation_rate of the ip entities (address or <default> -> rate), enforced
        # by the listeners' acceptors, which watch it.
        self.connection_rates: dict[str, int] = {}
        self._rate_watchers: list[Callable[[Mapping[str, int]], None]] = []
        self._apply()

    @classmethod
    async def open_zk(
        cls, config: BrokerConfig, store: ZkQuotaStore, write_timeout_s: float
    ) -> QuotaRuntime:
        position = await store.change_position()
        runtime = cls(config, store, await store.load_all(), write_timeout_s)
        runtime._zk = store
        await store.watch_changes(runtime.entity_changed, position)
        return runtime

    def stop(self) -> None:
        if self._zk is not None:
            self._zk.stop()

    def entity_changed(self, entity_path: str, configs: Configs) -> None:
        if self._configs.get(entity_path, {}) == configs:
            return
        if configs:
            self._configs[entity_path] = dict(configs)
        else:
            self._configs.pop(entity_path, None)
        log.info("client quota configs of %s: %s", entity_path, configs or "none")
        self._apply()

    def _apply(self) -> None:
        quotas: dict[QuotaEntity, dict[str, float]] = {}
        for path, stored in self._configs.items():
            try:
                entity = QuotaEntity.from_path(path)
            except ValueError:
                continue
            values = quota_values(stored, ip=entity.ip is not None)
            if values:
                quotas[entity] = values
        for manager in (self.produce, self.fetch, self.request, self.controller):
            manager.update(quotas)
        rates = {
            entity.ip: round(values[CONNECTION_CREATION_RATE])
            for entity, values in quotas.items()
            if entity.ip is not None and CONNECTION_CREATION_RATE in values
        }
        if rates != self.connection_rates:
            self.connection_rates = rates
            for watcher in self._rate_watchers:
                watcher(rates)

    def watch_connection_rates(self, watcher: Callable[[Mapping[str, int]], None]) -> None:
        """`watcher` gets the ip entities' connection creation rates now and at each change."""
        self._rate_watchers.append(watcher)
        watcher(self.connection_rates)

    def expire(self, now_ms: int) -> None:
        for manager in (self.produce, self.fetch, self.request):
            manager.expire(now_ms)

    # --- admin ------------------------------------------------------------------------------

    def describe(
        self, components: list[FilterComponent], strict: bool
    ) -> list[tuple[QuotaEntity, dict[str, float]]]:
        return describe(self._configs, components, strict)

    async def alter(
        self,
        entries: list[tuple[list[tuple[str, str | None]], list[tuple[str, float, bool]]]],
        validate_only: bool,
    ) -> list[tuple[ErrorCode, str | None]]:
        """Each entry's (error, message), in order; entries are applied one by one."""
        results: list[tuple[ErrorCode, str | None]] = []
        for parts, ops in entries:
            try:
                entity = entity_of(parts)
                # Checked against what this broker knows first, so a bad entry fails before
                # anything is written; the write re-applies the ops to what is stored then.
                altered(entity, self._configs.get(entity.path, {}), ops)
                if not validate_only:
                    async with asyncio.timeout(self.write_timeout_s):
                        after = await self.backend.update(
                            entity.path, functools.partial(_altered, entity, ops)
                        )
                    self.entity_changed(entity.path, after)
            except QuotaRequestError as exc:
                results.append((exc.code, exc.message))
                continue
            except TimeoutError:
                results.append((ErrorCode.REQUEST_TIMED_OUT, "Timed out writing the quotas."))
                continue
            except Exception as exc:  # reported per entry, as Kafka does
                log.error("writing client quotas failed: %r", exc)
                results.append((ErrorCode.UNKNOWN_SERVER_ERROR, str(exc)))
                continue
            results.append((ErrorCode.NONE, None))
        return results


def _altered(entity: QuotaEntity, ops: list[tuple[str, float, bool]], current: Configs) -> Configs:
    return altered(entity, current, ops)
