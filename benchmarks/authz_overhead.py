"""What authorization and quotas cost per request, measured in-process:

    .venv/bin/python benchmarks/authz_overhead.py

Times the checks the produce and fetch paths make for one topic: the authorizer's decision the
first time (an index lookup over 10, 1,000 and 10,000 ACLs, of which 1,000 are PREFIXED with
50 distinct prefix lengths) and once cached, the `authorized_names` helper as a handler calls it
(principal and host read from the request context), the same helper without an authorizer (the
default), and a quota manager's `record` with and without a quota. Not part of the test run.
"""

from __future__ import annotations

import timeit
from types import SimpleNamespace

from strom.quota.entities import QuotaEntity
from strom.quota.manager import ClientQuotaManager
from strom.security.acl import (
    AccessControlEntry,
    AclOperation,
    AclPermissionType,
    PatternType,
    ResourcePattern,
    ResourceType,
)
from strom.security.authorizer import AclAuthorizer
from strom.security.principal import KafkaPrincipal
from strom.server.authz import authorized_names

N = 200_000


def per_call_ns(statement: str, namespace: dict[str, object], number: int = N) -> float:
    best = min(timeit.repeat(statement, globals=namespace, number=number, repeat=5))
    return best / number * 1e9


def authorizer_with(count: int) -> AclAuthorizer:
    authorizer = AclAuthorizer()
    entry = AccessControlEntry("User:app", "*", AclOperation.WRITE, AclPermissionType.ALLOW)
    for i in range(count):
        if i % 10 == 0:
            pattern = ResourcePattern(
                ResourceType.TOPIC, f"team-{i % 50:02d}{'x' * (i % 50)}", PatternType.PREFIXED
            )
        else:
            pattern = ResourcePattern(ResourceType.TOPIC, f"topic-{i}", PatternType.LITERAL)
        authorizer.set_acls(pattern, {entry})
    authorizer.set_acls(ResourcePattern(ResourceType.TOPIC, "orders", PatternType.LITERAL), {entry})
    return authorizer


def main() -> int:
    rows: dict[str, float] = {}
    for count in (10, 1_000, 10_000):
        authorizer = authorizer_with(count)
        ns: dict[str, object] = {
            "a": authorizer,
            "W": AclOperation.WRITE,
            "T": ResourceType.TOPIC,
        }
        # Uncached: every decision is made again (the cache is cleared before each).
        rows[f"decision, uncached, {count} ACLs"] = per_call_ns(
            "a._cache.clear(); a.authorize('User:app', '10.0.0.1', W, T, 'orders')", ns, 20_000
        )
        rows[f"decision, cached, {count} ACLs"] = per_call_ns(
            "a.authorize('User:app', '10.0.0.1', W, T, 'orders')", ns
        )
    broker = SimpleNamespace(authorizer=authorizer_with(1_000))
    ctx = SimpleNamespace(
        broker=broker,
        principal=KafkaPrincipal("User", "app"),
        peer="10.0.0.1:50000",
        api_key=0,
    )
    ns = {"names": authorized_names, "ctx": ctx, "W": AclOperation.WRITE, "T": ResourceType.TOPIC}
    rows["authorized_names(1 topic), authorizer on"] = per_call_ns(
        "names(ctx, W, T, ['orders'])", ns
    )
    off = SimpleNamespace(broker=SimpleNamespace(authorizer=None))
    ns["off"] = off
    rows["authorized_names(1 topic), no authorizer"] = per_call_ns(
        "names(off, W, T, ['orders'])", ns
    )
    manager = ClientQuotaManager("producer_byte_rate", 11, 1000)
    ns["m"] = manager
    rows["quota record, no quota configured"] = per_call_ns("m.record('app', 'c', 1000, 0)", ns)
    manager.update({QuotaEntity(user="app"): {"producer_byte_rate": 1e12}})
    rows["quota record, a quota for the user"] = per_call_ns("m.record('app', 'c', 1000, 0)", ns)
    ns["nothing"] = lambda: None
    rows["empty call (floor)"] = per_call_ns("nothing()", ns)
    for name, value in rows.items():
        print(f"{name:48s} {value:9.0f} ns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
