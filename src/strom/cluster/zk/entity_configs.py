"""The configs of one kind of named entity in ZooKeeper, kept current by watches.

Kafka keeps an entity's config in `/config/<kind>/<sanitized name>` as
`{"version":1,"config":{...}}` and announces a change with a sequential
`/config/changes/config_change_<seq>` naming `<kind>/<sanitized name>`. Strom's brokers watch
the znodes themselves (a children watch on `/config/<kind>`, a data watch per entity), so the
notification is written for Kafka's tools and brokers, not read. Kinds kept this way: `users`
(SCRAM credentials) and `groups` (share.* group configs, set with IncrementalAlterConfigs on
GROUP resources).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping

from strom.cluster.zk import layout as L
from strom.cluster.zk.client import (
    NodeExistsError,
    NoNodeError,
    Stat,
    WatchHandle,
    ZkClient,
    ZkError,
)

__all__ = ["EntityConfigs"]

log = logging.getLogger("strom.cluster")

Spawn = Callable[[Coroutine[object, object, object]], None]


async def write_entity_config(client: ZkClient, path: str, config: Mapping[str, str]) -> None:
    """Replace the config znode at `path` (created when missing) and write the change
    notification, as Kafka does for every entity config."""
    data = L.EntityConfig(dict(config)).to_json()
    try:
        await client.set(path, data)
    except NoNodeError:
        try:
            await client.create(path, data, make_parents=True)
        except NodeExistsError:  # created meanwhile by another broker: ours is newer
            await client.set(path, data)
    await notify_config_change(client, path.removeprefix(L.CONFIG + "/"))


async def notify_config_change(client: ZkClient, entity_path: str) -> None:
    """A sequential /config/changes notification naming `entity_path` (e.g. `topics/t`);
    best effort, as the watches on the entity znodes carry the change itself."""
    with contextlib.suppress(ZkError):
        await client.create(
            f"{L.CONFIG_CHANGES}/{L.CONFIG_CHANGE_PREFIX}",
            L.ConfigChangeNotification(entity_path).to_json(),
            sequential=True,
            make_parents=True,
        )


class EntityConfigs:
    """`configs[name]`: the config of every entity under `root` (names desanitized)."""

    def __init__(
        self, client: ZkClient, root: str, what: str, on_change: Callable[[], None], spawn: Spawn
    ) -> None:
        self.client = client
        self.root = root
        self.what = what  # for log lines: "user", "group"
        self.configs: dict[str, dict[str, str]] = {}
        self._on_change = on_change
        self._spawn = spawn
        self._children: WatchHandle | None = None
        self._watches: dict[str, WatchHandle] = {}

    def path(self, name: str) -> str:
        return f"{self.root}/{L.sanitize(name)}"

    async def start(self) -> None:
        self._children = await self.client.watch_children(self.root, self._seen)

    def stop(self) -> None:
        if self._children is not None:
            self._children.cancel()
        for handle in self._watches.values():
            handle.cancel()
        self._watches.clear()

    async def write(self, name: str, config: Mapping[str, str]) -> None:
        """Replace an entity's config (its znode created when missing) and write the change
        notification as Kafka does."""
        await write_entity_config(self.client, self.path(name), config)

    def _seen(self, children: list[str]) -> None:
        current = set(children)
        for name in set(self._watches) - current:
            self._watches.pop(name).cancel()
            self.configs.pop(L.desanitize(name), None)
        for name in sorted(current - set(self._watches)):
            self._spawn(self._watch(name))
        self._on_change()

    async def _watch(self, name: str) -> None:
        entity = L.desanitize(name)

        def changed(data: bytes | None, stat: Stat | None) -> None:
            if data is None:
                self.configs.pop(entity, None)
            else:
                try:
                    self.configs[entity] = dict(L.EntityConfig.from_json(data).config)
                except L.LayoutError as exc:
                    log.error("ignoring the config of %s %s: %s", self.what, entity, exc)
                    return
            self._on_change()

        handle = await self.client.watch_data(f"{self.root}/{name}", changed)
        if name in self._watches:  # seen twice while the first watch was being set up
            handle.cancel()
        else:
            self._watches[name] = handle
