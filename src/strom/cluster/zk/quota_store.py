"""Client quotas in ZooKeeper, where Kafka's ZooKeeper mode keeps them:

    /config/users/<user>                       {"version":1,"config":{"producer_byte_rate":"1024"}}
    /config/users/<user>/clients/<client-id>   (also <default> for either name)
    /config/clients/<client-id>
    /config/ips/<ip>
    /config/changes/config_change_<seq>        {"version":2,"entity_path":"users/alice"}

A user's znode may hold other configs than quotas (its SCRAM credentials): a change is a
compare-and-set of the whole znode that keeps them. Every broker loads all entities at start
and then re-reads the entities that change notifications name, in sequence order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping

from strom.cluster.zk import layout as L
from strom.cluster.zk.client import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    WatchHandle,
    ZkClient,
    ZkError,
)

log = logging.getLogger("strom.quota")

ENTITY_ROOTS = ("users", "clients", "ips")
MAX_UPDATE_TRIES = 10

Configs = dict[str, str]


def _znode(entity_path: str) -> str:
    path = f"{L.CONFIG}/{entity_path}"
    L.validate_path(path)
    return path


class ZkQuotaStore:
    def __init__(self, client: ZkClient) -> None:
        self.client = client
        self._last_change = -1
        self._watch: WatchHandle | None = None
        self._dirty = False
        self._processing = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def _children(self, path: str) -> list[str]:
        try:
            return await self.client.children(path)
        except NoNodeError:
            return []

    async def read(self, entity_path: str) -> tuple[Configs, int | None]:
        found = await self.client.get_or_none(_znode(entity_path))
        if found is None:
            return {}, None
        return dict(L.EntityConfig.from_json(found[0]).config), found[1].version

    async def load_all(self) -> dict[str, Configs]:
        paths: list[str] = []
        for root in ENTITY_ROOTS:
            for name in await self._children(f"{L.CONFIG}/{root}"):
                paths.append(f"{root}/{name}")
                if root == "users":
                    for client in await self._children(f"{L.CONFIG}/users/{name}/clients"):
                        paths.append(f"users/{name}/clients/{client}")
        out: dict[str, Configs] = {}
        for path in paths:
            try:
                configs, _ = await self.read(path)
            except (L.LayoutError, ValueError) as exc:
                log.error("ignoring the configs of %s: %s", path, exc)
                continue
            if configs:
                out[path] = configs
        return out

    async def update(self, entity_path: str, change: Callable[[Configs], Configs]) -> Configs:
        """Apply `change` to the entity's configs with compare-and-set; a node left empty and
        childless is removed. Then a change notification is written."""
        path = _znode(entity_path)
        for _ in range(MAX_UPDATE_TRIES):
            current, version = await self.read(entity_path)
            wanted = change(dict(current))
            if wanted == current and version is not None:
                return wanted
            data = L.EntityConfig(wanted).to_json()
            try:
                if version is None:
                    if not wanted:
                        return wanted
                    await self.client.create(path, data, make_parents=True)
                elif wanted:
                    await self.client.set(path, data, version)
                else:
                    try:
                        await self.client.delete(path, version)
                    except NotEmptyError:  # a user with client-id entities under it
                        await self.client.set(path, data, version)
            except (BadVersionError, NodeExistsError, NoNodeError):
                await asyncio.sleep(0.05)
                continue
            await self._notify(entity_path)
            return wanted
        raise ZkError(f"could not update {path} after {MAX_UPDATE_TRIES} tries")

    async def _notify(self, entity_path: str) -> None:
        with contextlib.suppress(ZkError):
            await self.client.create(
                f"{L.CONFIG_CHANGES}/{L.CONFIG_CHANGE_PREFIX}",
                L.ConfigChangeNotification(entity_path).to_json(),
                sequential=True,
                make_parents=True,
            )

    # --- change notifications --------------------------------------------------------------

    async def change_position(self) -> int:
        numbers = [_number(c) for c in await self._children(L.CONFIG_CHANGES)]
        return max((n for n in numbers if n is not None), default=-1)

    async def watch_changes(self, changed: Callable[[str, Configs], None], position: int) -> None:
        """`changed(entity path, configs)` for every user, client-id or IP entity a newer
        notification names."""
        self._last_change = position
        self._watch = await self.client.watch_children(
            L.CONFIG_CHANGES, functools.partial(self._seen, changed)
        )

    def _seen(self, changed: Callable[[str, Configs], None], _children: list[str]) -> None:
        self._dirty = True
        if self._processing:
            return
        self._processing = True
        task = asyncio.ensure_future(self._process(changed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, changed: Callable[[str, Configs], None]) -> None:
        try:
            while self._dirty:
                self._dirty = False
                try:
                    await self._process_once(changed)
                except ZkError as exc:
                    log.warning("reading config change notifications failed: %r", exc)
        finally:
            self._processing = False

    async def _process_once(self, changed: Callable[[str, Configs], None]) -> None:
        for child in await self._children(L.CONFIG_CHANGES):
            number = _number(child)
            if number is None or number <= self._last_change:
                continue
            self._last_change = number
            found = await self.client.get_or_none(f"{L.CONFIG_CHANGES}/{child}")
            if found is None:
                continue
            try:
                entity_path = L.ConfigChangeNotification.from_json(found[0]).entity_path
            except L.LayoutError:
                continue
            if entity_path.split("/", 1)[0] not in ENTITY_ROOTS:
                continue
            try:
                configs, _ = await self.read(entity_path)
            except (L.LayoutError, ValueError) as exc:
                log.error("ignoring the configs of %s: %s", entity_path, exc)
                continue
            changed(entity_path, configs)

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for task in list(self._tasks):
            task.cancel()


def _number(child: str) -> int | None:
    if not child.startswith(L.CONFIG_CHANGE_PREFIX):
        return None
    try:
        return int(child[len(L.CONFIG_CHANGE_PREFIX) :])
    except ValueError:
        return None


def as_mapping(configs: Mapping[str, Mapping[str, str]]) -> dict[str, Configs]:
    return {k: dict(v) for k, v in configs.items()}
