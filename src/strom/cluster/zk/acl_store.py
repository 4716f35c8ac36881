"""ACLs in ZooKeeper, where Kafka's ZooKeeper-mode authorizer keeps them:

    /kafka-acl/<Type>/<name>                        LITERAL patterns (Type: Topic, Group, ...)
    /kafka-acl-extended/prefixed/<Type>/<name>      PREFIXED patterns
    /kafka-acl-changes/acl_changes_<seq>            "TOPIC:<name>": re-read a LITERAL pattern
    /kafka-acl-extended-changes/acl_changes_<seq>   {"version":1,...}: re-read another one

(security/acl_json.py has the payloads). A change is a compare-and-set of the pattern's znode
(created when it had none, deleted when none is left), then a change notification; every
broker watches both notification parents and re-reads the patterns they name, in sequence
order, and deletes notifications older than 15 minutes, as Kafka's
ZkNodeChangeNotificationListener does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable

from strom.cluster.zk.client import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    WatchHandle,
    ZkClient,
    ZkError,
)
from strom.cluster.zk.layout import LayoutError, validate_path
from strom.security.acl import (
    AccessControlEntry,
    PatternType,
    ResourcePattern,
    ResourceType,
    parse_enum,
    pascal_name,
)
from strom.security.acl_json import (
    decode_acls,
    decode_extended_change,
    decode_literal_change,
    encode_acls,
    encode_extended_change,
    encode_literal_change,
)

log = logging.getLogger("strom.acl")

LITERAL_ROOT = "/kafka-acl"
EXTENDED_ROOT = "/kafka-acl-extended"
LITERAL_CHANGES = "/kafka-acl-changes"
EXTENDED_CHANGES = "/kafka-acl-extended-changes"
CHANGE_PREFIX = "acl_changes_"
CHANGE_EXPIRATION_MS = 15 * 60 * 1000
MAX_UPDATE_TRIES = 10

Entries = frozenset[AccessControlEntry]


def pattern_root(pattern_type: PatternType) -> str:
    if pattern_type == PatternType.LITERAL:
        return LITERAL_ROOT
    return f"{EXTENDED_ROOT}/{pattern_type.name.lower()}"


def acl_path(pattern: ResourcePattern) -> str:
    path = (
        f"{pattern_root(pattern.pattern_type)}/{pascal_name(pattern.resource_type)}/{pattern.name}"
    )
    validate_path(path)
    return path


class ZkAclStore:
    def __init__(self, client: ZkClient) -> None:
        self.client = client
        self._last_change: dict[str, int] = {LITERAL_CHANGES: -1, EXTENDED_CHANGES: -1}
        self._watches: list[WatchHandle] = []
        self._processing: dict[str, bool] = {}
        self._dirty: dict[str, bool] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def ensure_paths(self) -> None:
        for path in (
            LITERAL_ROOT,
            f"{EXTENDED_ROOT}/prefixed",
            LITERAL_CHANGES,
            EXTENDED_CHANGES,
        ):
            await self.client.ensure_path(path)

    async def read(self, pattern: ResourcePattern) -> tuple[Entries, int | None]:
        """The pattern's entries and its znode version (None: no znode)."""
        found = await self.client.get_or_none(acl_path(pattern))
        if found is None:
            return frozenset(), None
        return decode_acls(found[0]), found[1].version

    async def load_all(self) -> dict[ResourcePattern, Entries]:
        acls: dict[ResourcePattern, Entries] = {}
        for pattern_type in (PatternType.LITERAL, PatternType.PREFIXED):
            root = pattern_root(pattern_type)
            for type_name in await self._children(root):
                resource_type = parse_enum(ResourceType, type_name)
                if resource_type in (ResourceType.UNKNOWN, ResourceType.ANY):
                    log.warning("ignoring ACLs of unknown resource type %s/%s", root, type_name)
                    continue
                for name in await self._children(f"{root}/{type_name}"):
                    pattern = ResourcePattern(resource_type, name, pattern_type)
                    try:
                        entries, _ = await self.read(pattern)
                    except (ValueError, LayoutError) as exc:
                        log.error("ignoring the ACLs of %s: %s", pattern, exc)
                        continue
                    if entries:
                        acls[pattern] = entries
        return acls

    async def _children(self, path: str) -> list[str]:
        try:
            return await self.client.children(path)
        except NoNodeError:
            return []

    async def update(
        self, pattern: ResourcePattern, change: Callable[[Entries], Entries]
    ) -> tuple[Entries, Entries]:
        """Apply `change` to the pattern's znode with compare-and-set, retrying on conflicts;
        returns (before, after) and announces a change to the other brokers."""
        path = acl_path(pattern)
        for _ in range(MAX_UPDATE_TRIES):
            current, version = await self.read(pattern)
            wanted = change(current)
            if wanted == current:
                return current, current
            try:
                if not wanted:
                    assert version is not None
                    await self.client.delete(path, version)
                elif version is None:
                    await self.client.create(path, encode_acls(wanted), make_parents=True)
                else:
                    await self.client.set(path, encode_acls(wanted), version)
            except (BadVersionError, NodeExistsError, NoNodeError, NotEmptyError):
                await asyncio.sleep(0.05)
                continue
            await self.notify(pattern)
            return current, wanted
        raise ZkError(f"could not update the ACLs of {pattern} after {MAX_UPDATE_TRIES} tries")

    async def notify(self, pattern: ResourcePattern) -> None:
        if pattern.pattern_type == PatternType.LITERAL:
            parent, data = LITERAL_CHANGES, encode_literal_change(pattern)
        else:
            parent, data = EXTENDED_CHANGES, encode_extended_change(pattern)
        await self.client.create(
            f"{parent}/{CHANGE_PREFIX}", data, sequential=True, make_parents=True
        )

    # --- change notifications --------------------------------------------------------------

    async def change_positions(self) -> dict[str, int]:
        """The newest notification of each parent now: taken before the ACLs are loaded, so
        that a change made meanwhile is still processed (a second read does no harm)."""
        positions = {}
        for parent in (LITERAL_CHANGES, EXTENDED_CHANGES):
            numbers = [_change_number(c) for c in await self._children(parent)]
            positions[parent] = max((n for n in numbers if n is not None), default=-1)
        return positions

    async def watch_changes(
        self, changed: Callable[[ResourcePattern], object], positions: dict[str, int]
    ) -> None:
        """`changed(pattern)` (awaited if it returns an awaitable) for every notification
        after `positions`, in order, now and whenever new ones come."""
        self._last_change.update(positions)
        for parent in (LITERAL_CHANGES, EXTENDED_CHANGES):
            self._watches.append(
                await self.client.watch_children(
                    parent, functools.partial(self._seen, parent, changed)
                )
            )

    def _seen(
        self, parent: str, changed: Callable[[ResourcePattern], object], _children: list[str]
    ) -> None:
        self._dirty[parent] = True
        if self._processing.get(parent):
            return
        self._processing[parent] = True
        task = asyncio.ensure_future(self._process(parent, changed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, parent: str, changed: Callable[[ResourcePattern], object]) -> None:
        try:
            while self._dirty.get(parent):
                self._dirty[parent] = False
                try:
                    await self._process_once(parent, changed)
                except ZkError as exc:
                    log.warning("reading ACL change notifications failed: %r", exc)
        finally:
            self._processing[parent] = False

    async def _process_once(
        self, parent: str, changed: Callable[[ResourcePattern], object]
    ) -> None:
        decode = decode_literal_change if parent == LITERAL_CHANGES else decode_extended_change
        now_ms = int(time.time() * 1000)
        for child in await self._children(parent):
            number = _change_number(child)
            if number is None:
                continue
            found = await self.client.get_or_none(f"{parent}/{child}")
            if found is None:
                continue
            data, stat = found
            if number > self._last_change[parent]:
                self._last_change[parent] = number
                try:
                    pattern = decode(data)
                except ValueError as exc:
                    log.error("ignoring ACL change notification %s/%s: %s", parent, child, exc)
                else:
                    result = changed(pattern)
                    if asyncio.iscoroutine(result):
                        await result
            if stat.ctime and now_ms - stat.ctime > CHANGE_EXPIRATION_MS:
                with contextlib.suppress(NoNodeError):
                    await self.client.delete(f"{parent}/{child}")

    def stop(self) -> None:
        for handle in self._watches:
            handle.cancel()
        for task in list(self._tasks):
            task.cancel()


def _change_number(child: str) -> int | None:
    if not child.startswith(CHANGE_PREFIX):
        return None
    try:
        return int(child[len(CHANGE_PREFIX) :])
    except ValueError:
        return None
