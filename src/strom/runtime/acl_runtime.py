"""The ACLs of a running broker: the authorizer's set, kept in step with where they are stored.

On a single broker the ACLs live in `strom-security.json` (cluster/local_security.py) and
every change is written there before the authorizer applies it. In cluster mode they live in
ZooKeeper (cluster/zk/acl_store.py): a CreateAcls or DeleteAcls writes each pattern's znode
with compare-and-set and announces it; this broker applies its own change at once, the others
when the notification reaches them (a watch: well within a second).

CreateAcls and DeleteAcls work per resource pattern, as Kafka's ZooKeeper-mode authorizer
does: one write per pattern, and a failed write fails only the bindings of that pattern.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from strom.protocol.errors import ErrorCode
from strom.security.acl import AccessControlEntry, AclBinding, AclBindingFilter, ResourcePattern
from strom.security.authorizer import (
    AclAuthorizer,
    apply_deletions,
    creations_by_pattern,
    deletion_candidates,
)

if TYPE_CHECKING:
    from strom.cluster.local_security import LocalSecurityStore
    from strom.cluster.zk.acl_store import ZkAclStore

log = logging.getLogger("strom.acl")

Entries = frozenset[AccessControlEntry]
Change = Callable[[Entries], Entries]


class AclBackend(Protocol):
    async def update(self, pattern: ResourcePattern, change: Change) -> tuple[Entries, Entries]:
        """Apply `change` to the stored entries of `pattern`; (before, after)."""
        ...


class LocalAclBackend:
    def __init__(self, store: LocalSecurityStore) -> None:
        self.store = store

    async def update(self, pattern: ResourcePattern, change: Change) -> tuple[Entries, Entries]:
        before = self.store.all_acls().get(pattern, frozenset())
        return before, self.store.update_acls(pattern, change)


@dataclass
class AclFailure:
    code: ErrorCode
    message: str


@dataclass
class DeletionResult:
    deleted: list[AclBinding] = field(default_factory=list)
    # Bindings that matched but whose pattern could not be written.
    failed: list[tuple[AclBinding, AclFailure]] = field(default_factory=list)


class AclRuntime:
    def __init__(
        self, authorizer: AclAuthorizer, backend: AclBackend, write_timeout_s: float = 30.0
    ) -> None:
        self.authorizer = authorizer
        self.backend = backend
        self.write_timeout_s = write_timeout_s
        self._zk: ZkAclStore | None = None

    # --- cluster mode -----------------------------------------------------------------------

    @classmethod
    async def open_zk(
        cls, authorizer: AclAuthorizer, store: ZkAclStore, write_timeout_s: float
    ) -> AclRuntime:
        """Load every ACL from ZooKeeper and follow the change notifications from then on."""
        await store.ensure_paths()
        positions = await store.change_positions()
        authorizer.replace_all(await store.load_all())
        runtime = cls(authorizer, store, write_timeout_s)
        runtime._zk = store
        await store.watch_changes(runtime._reread, positions)
        log.info("loaded %d ACL(s) from ZooKeeper", sum(1 for _ in authorizer.bindings()))
        return runtime

    async def _reread(self, pattern: ResourcePattern) -> None:
        assert self._zk is not None
        try:
            entries, _ = await self._zk.read(pattern)
        except ValueError as exc:
            log.error("ignoring the ACLs of %s: %s", pattern, exc)
            return
        if self.authorizer.set_acls(pattern, entries):
            log.info("ACLs of %s changed: %d entr(ies)", pattern, len(entries))

    def stop(self) -> None:
        if self._zk is not None:
            self._zk.stop()

    # --- CreateAcls and DeleteAcls ----------------------------------------------------------

    async def create(self, bindings: list[AclBinding]) -> dict[AclBinding, AclFailure]:
        """Add the bindings; the failures (by binding) of patterns that could not be written."""
        failures: dict[AclBinding, AclFailure] = {}
        for pattern, added in creations_by_pattern(bindings).items():
            try:
                _, after = await self._write(pattern, functools.partial(_with, added))
            except Exception as exc:  # reported per binding, as Kafka does
                failure = self._failure(exc)
                for entry in added:
                    failures[AclBinding(pattern, entry)] = failure
                continue
            self.authorizer.set_acls(pattern, after)
        return failures

    async def delete(self, filters: list[AclBindingFilter]) -> list[DeletionResult]:
        results = [DeletionResult() for _ in filters]
        for pattern in deletion_candidates(self.authorizer.patterns, filters):
            deleted: list[tuple[int, AclBinding]] = []

            def change(
                current: Entries,
                p: ResourcePattern = pattern,
                out: list[tuple[int, AclBinding]] = deleted,
            ) -> Entries:
                # May run more than once (a compare-and-set retried): the last run counts.
                remaining, gone = apply_deletions(p, current, filters)
                out[:] = gone
                return remaining

            try:
                _, after = await self._write(pattern, change)
            except Exception as exc:
                failure = self._failure(exc)
                for index, binding in deleted:
                    results[index].failed.append((binding, failure))
                continue
            self.authorizer.set_acls(pattern, after)
            for index, binding in deleted:
                results[index].deleted.append(binding)
        return results

    async def _write(self, pattern: ResourcePattern, change: Change) -> tuple[Entries, Entries]:
        async with asyncio.timeout(self.write_timeout_s):
            return await self.backend.update(pattern, change)

    @staticmethod
    def _failure(exc: BaseException) -> AclFailure:
        if isinstance(exc, TimeoutError):
            return AclFailure(ErrorCode.REQUEST_TIMED_OUT, "Timed out writing the ACLs.")
        log.error("writing ACLs failed: %r", exc)
        return AclFailure(ErrorCode.UNKNOWN_SERVER_ERROR, f"Writing the ACLs failed: {exc}")


def _with(added: set[AccessControlEntry], current: Entries) -> Entries:
    return current | added
