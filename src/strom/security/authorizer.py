"""The ACL authorizer: Kafka's decision as a function of (principal, host, operation, resource)
and the ACL set, without I/O.

Kafka's rule (AclAuthorizer, StandardAuthorizer): a super user may do everything. Otherwise
the ACLs that apply to a resource are those of its LITERAL pattern, of the LITERAL `*` of its
type and of every PREFIXED pattern its name starts with. With none of them, the answer is
`allow.everyone.if.no.acl.found`. With some, the operation is allowed when no DENY entry
matches (principal or `User:*`, host or `*`, the operation or ALL) and an ALLOW entry does
(the same, where the operation may also be one that implies it: see `allowing_operations`).

The ACLs are kept per resource pattern, as ZooKeeper keeps them (one znode per pattern), and
indexed so that a check looks up the literal name, the wildcard and the name's prefixes of the
lengths that PREFIXED patterns of that type have, instead of scanning every ACL. Decisions are
cached per (principal, host, operation, resource) until the ACLs change, so the produce and
fetch paths pay a dictionary lookup per topic.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from strom.security.acl import (
    SUPPORTED_OPERATIONS,
    WILDCARD_HOST,
    WILDCARD_PRINCIPAL,
    WILDCARD_RESOURCE,
    AccessControlEntry,
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourcePattern,
    ResourceType,
    allowing_operations,
)

NO_ENTRIES: frozenset[AccessControlEntry] = frozenset()
# Decisions remembered at most; past it the cache starts over (a scan of many distinct
# resources must not grow memory without bound).
CACHE_LIMIT = 1 << 16

CacheKey = tuple[str, str, AclOperation, ResourceType, str]


class _TypeIndex:
    """The ACLs of one resource type."""

    __slots__ = ("literal", "prefix_lengths", "prefixed")

    def __init__(self) -> None:
        self.literal: dict[str, frozenset[AccessControlEntry]] = {}
        self.prefixed: dict[str, frozenset[AccessControlEntry]] = {}
        # The distinct lengths of the PREFIXED names, so a name is cut only at those.
        self.prefix_lengths: tuple[int, ...] = ()

    def entries_for(self, name: str) -> list[frozenset[AccessControlEntry]]:
        found: list[frozenset[AccessControlEntry]] = []
        literal = self.literal.get(name)
        if literal:
            found.append(literal)
        if name != WILDCARD_RESOURCE:
            wildcard = self.literal.get(WILDCARD_RESOURCE)
            if wildcard:
                found.append(wildcard)
        prefixed = self.prefixed
        for length in self.prefix_lengths:
            if length > len(name):
                break
            entries = prefixed.get(name[:length])
            if entries:
                found.append(entries)
        return found


class AclAuthorizer:
    def __init__(
        self, super_users: Iterable[str] = (), allow_everyone_if_no_acl_found: bool = False
    ) -> None:
        self.super_users = frozenset(super_users)
        self.allow_everyone_if_no_acl_found = allow_everyone_if_no_acl_found
        self._acls: dict[ResourcePattern, frozenset[AccessControlEntry]] = {}
        self._types: dict[ResourceType, _TypeIndex] = {}
        self._cache: dict[CacheKey, bool] = {}
        # Bumped on every change, so that callers can tell their view is stale.
        self.version = 0

    # --- the ACL set ----------------------------------------------------------------------

    def acls_of(self, pattern: ResourcePattern) -> frozenset[AccessControlEntry]:
        return self._acls.get(pattern, NO_ENTRIES)

    @property
    def patterns(self) -> list[ResourcePattern]:
        return list(self._acls)

    def bindings(self) -> Iterator[AclBinding]:
        for pattern, entries in self._acls.items():
            for entry in entries:
                yield AclBinding(pattern, entry)

    def set_acls(self, pattern: ResourcePattern, entries: Iterable[AccessControlEntry]) -> bool:
        """Replace the ACLs of one pattern (empty: it has none); True when they changed."""
        new = frozenset(entries)
        if self._acls.get(pattern, NO_ENTRIES) == new:
            return False
        if new:
            self._acls[pattern] = new
        else:
            self._acls.pop(pattern, None)
        index = self._types.setdefault(pattern.resource_type, _TypeIndex())
        table = index.literal if pattern.pattern_type == PatternType.LITERAL else index.prefixed
        if new:
            table[pattern.name] = new
        else:
            table.pop(pattern.name, None)
        if pattern.pattern_type == PatternType.PREFIXED:
            index.prefix_lengths = tuple(sorted({len(name) for name in index.prefixed}))
        self._changed()
        return True

    def replace_all(self, acls: Mapping[ResourcePattern, Iterable[AccessControlEntry]]) -> None:
        """Load a whole ACL set (start-up, a reload after a lost ZooKeeper session)."""
        wanted = {p: frozenset(e) for p, e in acls.items() if e}
        for pattern in list(self._acls):
            if pattern not in wanted:
                self.set_acls(pattern, ())
        for pattern, entries in wanted.items():
            self.set_acls(pattern, entries)

    def _changed(self) -> None:
        self._cache.clear()
        self.version += 1

    def acls(self, binding_filter: AclBindingFilter) -> list[AclBinding]:
        """Every binding the filter matches (DescribeAcls)."""
        return [b for b in self.bindings() if binding_filter.matches(b)]

    # --- decisions ------------------------------------------------------------------------

    def authorize(
        self,
        principal: str,
        host: str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: str,
    ) -> bool:
        key = (principal, host, operation, resource_type, name)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        allowed = self._decide(principal, host, operation, resource_type, name)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = allowed
        return allowed

    def _decide(
        self,
        principal: str,
        host: str,
        operation: AclOperation,
        resource_type: ResourceType,
        name: str,
    ) -> bool:
        if principal in self.super_users:
            return True
        index = self._types.get(resource_type)
        groups = index.entries_for(name) if index is not None else []
        if not groups:
            return self.allow_everyone_if_no_acl_found
        granting = allowing_operations(operation)
        allowed = False
        for entries in groups:
            for entry in entries:
                if entry.principal != principal and entry.principal != WILDCARD_PRINCIPAL:
                    continue
                if entry.host != host and entry.host != WILDCARD_HOST:
                    continue
                if entry.permission_type == AclPermissionType.DENY:
                    if entry.operation == operation or entry.operation == AclOperation.ALL:
                        return False
                elif entry.operation in granting:
                    allowed = True
        return allowed

    def authorized_operations(
        self, principal: str, host: str, resource_type: ResourceType, name: str
    ) -> frozenset[AclOperation]:
        """The operations of `resource_type` the principal may perform on `name`."""
        return frozenset(
            op
            for op in SUPPORTED_OPERATIONS.get(resource_type, ())
            if self.authorize(principal, host, op, resource_type, name)
        )

    def authorize_by_resource_type(
        self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType
    ) -> bool:
        """Whether the principal may perform `operation` on at least one resource of the type
        that no DENY covers (Kafka's authorizeByResourceType: an idempotent producer without
        IDEMPOTENT_WRITE on the cluster needs WRITE on some topic). Implications do not apply
        here, as in Kafka."""
        if principal in self.super_users:
            return True
        deny_literal: set[str] = set()
        deny_prefixed: set[str] = set()
        allow_literal: set[str] = set()
        allow_prefixed: set[str] = set()
        index = self._types.get(resource_type)
        if index is not None:
            for literal, table in ((True, index.literal), (False, index.prefixed)):
                for name, entries in table.items():
                    for entry in entries:
                        if entry.principal not in (principal, WILDCARD_PRINCIPAL):
                            continue
                        if entry.host not in (host, WILDCARD_HOST):
                            continue
                        if entry.operation not in (operation, AclOperation.ALL):
                            continue
                        deny = entry.permission_type == AclPermissionType.DENY
                        target = (
                            (deny_literal if deny else allow_literal)
                            if literal
                            else (deny_prefixed if deny else allow_prefixed)
                        )
                        target.add(name)
        if WILDCARD_RESOURCE in deny_literal:
            return False
        if self.allow_everyone_if_no_acl_found:
            return True
        if not deny_literal and not deny_prefixed:
            return bool(allow_literal or allow_prefixed)

        def dominated(name: str) -> bool:
            return any(name[:n] in deny_prefixed for n in range(1, len(name) + 1))

        return any(not dominated(p) for p in allow_prefixed) or any(
            n == WILDCARD_RESOURCE or (n not in deny_literal and not dominated(n))
            for n in allow_literal
        )


# --- CreateAcls and DeleteAcls as changes to the per-pattern sets ------------------------------


def creations_by_pattern(
    bindings: Iterable[AclBinding],
) -> dict[ResourcePattern, set[AccessControlEntry]]:
    """The entries to add, per pattern (Kafka writes each pattern's znode once)."""
    out: dict[ResourcePattern, set[AccessControlEntry]] = {}
    for binding in bindings:
        out.setdefault(binding.pattern, set()).add(binding.entry)
    return out


def deletion_candidates(
    known: Iterable[ResourcePattern], filters: Iterable[AclBindingFilter]
) -> list[ResourcePattern]:
    """The patterns DeleteAcls must look at: every pattern known and matched by a filter, and
    the exact patterns of filters that name at most one (those may hold ACLs this broker has
    not heard of yet)."""
    filters = list(filters)
    candidates = set(known)
    for f in filters:
        if f.pattern_filter.indefinite_field() is None:
            candidates.update(f.pattern_filter.exact_patterns())
    return sorted(
        (p for p in candidates if any(f.pattern_filter.matches(p) for f in filters)),
        key=lambda p: (p.resource_type, p.pattern_type, p.name),
    )


def apply_deletions(
    pattern: ResourcePattern,
    current: frozenset[AccessControlEntry],
    filters: list[AclBindingFilter],
) -> tuple[frozenset[AccessControlEntry], list[tuple[int, AclBinding]]]:
    """The entries left after the filters, and each deleted binding with the index of the first
    filter that matched it (a binding is reported under one filter only, as Kafka does)."""
    matching = [(i, f) for i, f in enumerate(filters) if f.pattern_filter.matches(pattern)]
    deleted: list[tuple[int, AclBinding]] = []
    kept: set[AccessControlEntry] = set()
    for entry in sorted(current, key=_entry_order):
        for i, f in matching:
            if f.entry_filter.matches(entry):
                deleted.append((i, AclBinding(pattern, entry)))
                break
        else:
            kept.add(entry)
    return frozenset(kept), deleted


def _entry_order(entry: AccessControlEntry) -> tuple[str, str, int, int]:
    return (entry.principal, entry.host, entry.operation, entry.permission_type)
