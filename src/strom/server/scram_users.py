"""SCRAM credentials (DescribeUserScramCredentials, AlterUserScramCredentials, SASL/SCRAM
logins): kept among the user configs of the metadata file on a single broker, of
/config/users/<user> in ZooKeeper in cluster mode.

A part of `Broker` (strom.server.broker): the attributes declared here are the broker's."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from strom.cluster.local_metadata import LocalMetadata
from strom.protocol.errors import ErrorCode
from strom.security.scram import MECHANISMS as SCRAM_MECHANISMS
from strom.security.scram import ScramCredential

if TYPE_CHECKING:
    from strom.runtime.cluster_runtime import ClusterRuntime
    from strom.runtime.host import Metadata

log = logging.getLogger("strom.broker")


class ScramUsers:
    metadata: Metadata
    cluster: ClusterRuntime | None

    def scram_users(self) -> dict[str, dict[str, str]]:
        """User -> SCRAM mechanism -> credential in Kafka's form (salted and hashed)."""
        return {
            user: {m: v for m, v in config.items() if m in SCRAM_MECHANISMS}
            for user, config in self.metadata.users.items()
        }

    def scram_credential(self, user: str, mechanism: str) -> ScramCredential | None:
        text = self.metadata.users.get(user, {}).get(mechanism)
        if text is None:
            return None
        try:
            return ScramCredential.from_kafka(text)
        except ValueError as exc:
            log.error("ignoring the %s credential of user %s: %s", mechanism, user, exc)
            return None

    def set_scram_users(
        self, changed: dict[str, dict[str, str]]
    ) -> dict[str, tuple[ErrorCode, str]] | Awaitable[dict[str, tuple[ErrorCode, str]]]:
        """Replaces the SCRAM credentials of these users (user -> mechanism -> credential;
        the user's other config entries stay). Single broker: written to the metadata file at
        once; cluster mode: to /config/users/<user> in ZooKeeper, answered once this broker's
        watch has it. Returns the users that failed, with the error to answer."""

        def merged(user: str) -> dict[str, str]:
            config = {
                k: v
                for k, v in self.metadata.users.get(user, {}).items()
                if k not in SCRAM_MECHANISMS
            }
            config.update(changed[user])
            return config

        metadata = self.metadata
        if isinstance(metadata, LocalMetadata):
            for user in changed:
                metadata.set_user_config(user, merged(user))
            return {}
        cluster = self.cluster
        assert cluster is not None
        names = {}
        for user in changed:
            config = merged(user)
            name = f"user:{user}"
            names[name] = user
            cluster.start_write(
                name,
                lambda u=user, c=config: metadata.set_user_config(u, c),  # type: ignore[misc]
            )

        async def settle() -> dict[str, tuple[ErrorCode, str]]:
            errors = await cluster.settle(set(names))
            return {names[n]: (e.code, e.message or e.code.name) for n, e in errors.items()}

        return settle()
