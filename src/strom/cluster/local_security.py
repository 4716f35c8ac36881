"""Single-broker storage of ACLs and client quotas: `strom-security.json` in the first log dir.

What a cluster keeps in ZooKeeper (`/kafka-acl...`, `/config/users`, `/config/clients`) a
single broker keeps here, in the same shapes:

    {"version": 1,
     "acls": [{"resourceType": "Topic", "name": "orders", "patternType": "LITERAL",
               "acls": [{"principal": "User:alice", "permissionType": "Allow",
                         "operation": "Write", "host": "*"}]}],
     "entity_configs": {"users/alice": {"producer_byte_rate": "1048576"},
                        "users/<default>/clients/app": {"request_percentage": "50"}}}

`entity_configs` is keyed by the entity path of ZooKeeper's `/config/<path>` (user and
client-id names sanitized as Kafka does). Every change rewrites the file atomically and is
durable before it returns; a failed write leaves memory as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from strom.cluster.atomic_file import write_atomically
from strom.security.acl import (
    UNKNOWN_CODE,
    AccessControlEntry,
    PatternType,
    ResourcePattern,
    ResourceType,
    parse_enum,
    pascal_name,
)
from strom.security.acl_json import entry_from_json

FILE_NAME = "strom-security.json"
FORMAT_VERSION = 1


class CorruptSecurityFileError(Exception):
    """The file exists but cannot be read: the broker must not start and lose its ACLs."""


class LocalSecurityStore:
    def __init__(
        self,
        path: Path,
        acls: dict[ResourcePattern, frozenset[AccessControlEntry]],
        entity_configs: dict[str, dict[str, str]],
    ) -> None:
        self._path = path
        self._acls = acls
        self._entity_configs = entity_configs

    @classmethod
    def load(cls, directory: Path) -> LocalSecurityStore:
        path = directory / FILE_NAME
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            return cls(path, {}, {})
        except (OSError, UnicodeDecodeError) as exc:
            raise CorruptSecurityFileError(f"cannot read {path}: {exc}") from exc
        try:
            return cls._decode(path, json.loads(text))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptSecurityFileError(
                f"{path} is corrupt ({exc}); refusing to start so that no ACL or quota is "
                "lost. Restore it from a backup or move it away to start without them."
            ) from exc

    @classmethod
    def _decode(cls, path: Path, doc: Any) -> LocalSecurityStore:
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"expected a version {FORMAT_VERSION} object")
        acls: dict[ResourcePattern, frozenset[AccessControlEntry]] = {}
        for item in doc.get("acls", []):
            resource_type = parse_enum(ResourceType, str(item["resourceType"]))
            pattern_type = parse_enum(PatternType, str(item["patternType"]))
            if resource_type == UNKNOWN_CODE or pattern_type not in (
                PatternType.LITERAL,
                PatternType.PREFIXED,
            ):
                raise ValueError(f"unknown resource {item!r}")
            pattern = ResourcePattern(resource_type, str(item["name"]), pattern_type)
            entries = frozenset(entry_from_json(e) for e in item["acls"])
            if entries:
                acls[pattern] = entries
        configs: dict[str, dict[str, str]] = {}
        for entity, values in doc.get("entity_configs", {}).items():
            if not isinstance(values, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in values.items()
            ):
                raise ValueError(f"entity config {entity!r} must map strings to strings")
            configs[str(entity)] = dict(values)
        return cls(path, acls, configs)

    def _encode(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "acls": [
                {
                    "resourceType": pascal_name(p.resource_type),
                    "name": p.name,
                    "patternType": p.pattern_type.name,
                    "acls": [
                        {
                            "principal": e.principal,
                            "permissionType": pascal_name(e.permission_type),
                            "operation": pascal_name(e.operation),
                            "host": e.host,
                        }
                        for e in sorted(
                            entries,
                            key=lambda e: (e.principal, e.host, e.operation, e.permission_type),
                        )
                    ],
                }
                for p, entries in sorted(
                    self._acls.items(),
                    key=lambda item: (item[0].resource_type, item[0].pattern_type, item[0].name),
                )
            ],
            "entity_configs": {
                k: dict(sorted(v.items())) for k, v in sorted(self._entity_configs.items()) if v
            },
        }

    def _save(self) -> None:
        write_atomically(self._path, (json.dumps(self._encode(), indent=2) + "\n").encode())

    # --- ACLs -----------------------------------------------------------------------------

    def all_acls(self) -> dict[ResourcePattern, frozenset[AccessControlEntry]]:
        return dict(self._acls)

    def update_acls(
        self,
        pattern: ResourcePattern,
        change: Callable[[frozenset[AccessControlEntry]], frozenset[AccessControlEntry]],
    ) -> frozenset[AccessControlEntry]:
        before = self._acls.get(pattern, frozenset())
        after = change(before)
        if after == before:
            return after
        self._set(self._acls, pattern, after or None)
        try:
            self._save()
        except BaseException:
            self._set(self._acls, pattern, before or None)
            raise
        return after

    # --- entity configs (client quotas) ---------------------------------------------------

    def entity_configs(self) -> dict[str, dict[str, str]]:
        return {k: dict(v) for k, v in self._entity_configs.items()}

    def set_entity_configs(self, changes: Mapping[str, Mapping[str, str]]) -> None:
        """Replace the configs of the given entity paths (an empty mapping removes one),
        all in one write."""
        before = {k: self._entity_configs.get(k) for k in changes}
        for entity, values in changes.items():
            self._set(self._entity_configs, entity, dict(values) or None)
        try:
            self._save()
        except BaseException:
            for entity, old in before.items():
                self._set(self._entity_configs, entity, old)
            raise

    @staticmethod
    def _set(table: dict[Any, Any], key: Any, value: Any) -> None:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
