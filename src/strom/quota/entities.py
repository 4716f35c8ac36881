"""Kafka's client-quota entities, their storage paths and which one applies to a client.

An entity is a user, a client id, or both, each either named or `<default>` (the default for
every user, or every client id). They are stored where Kafka's ZooKeeper mode keeps them, by
entity path under `/config`:

    users/<user>                 users/<user>/clients/<client-id>      clients/<client-id>
    users/<default>              users/<default>/clients/<default>     clients/<default>
    users/<user>/clients/<default>                 users/<default>/clients/<client-id>

with names sanitized as Kafka's Sanitizer does (URL-encoded; `*` and space included). The
quota that applies to a connection of user U with client id C is the first of that order
(Kafka's ClientQuotaManager) that sets the quota's key:

    1 U/C   2 U/<default>   3 U   4 <default>/C   5 <default>/<default>   6 <default>
    7 C     8 <default> client id

and usage is counted per the entity level that matched: at levels 1, 2, 4 and 5 each (user,
client id) has its own allowance, at 3 and 6 each user (all its client ids together), at 7
and 8 each client id (all users together).

Unauthenticated connections are the user ANONYMOUS.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT = "<default>"
USER = "user"
CLIENT_ID = "client-id"
IP = "ip"

PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
REQUEST_PERCENTAGE = "request_percentage"
CONTROLLER_MUTATION_RATE = "controller_mutation_rate"
CONNECTION_CREATION_RATE = "connection_creation_rate"

# Kafka's types of the user and client-id quota keys (QuotaConfigs): LONG keys take whole
# numbers only.
USER_CLIENT_KEYS: dict[str, str] = {
    PRODUCER_BYTE_RATE: "LONG",
    CONSUMER_BYTE_RATE: "LONG",
    REQUEST_PERCENTAGE: "DOUBLE",
    CONTROLLER_MUTATION_RATE: "DOUBLE",
}
IP_KEYS: dict[str, str] = {CONNECTION_CREATION_RATE: "INT"}


def sanitize(name: str) -> str:
    """Kafka's Sanitizer.sanitize: Java's URLEncoder with `+` (space) as %20 and `*` as %2A;
    only letters, digits, `.`, `-` and `_` stay as they are."""
    return urllib.parse.quote(name, safe="").replace("~", "%7E")


def desanitize(name: str) -> str:
    return urllib.parse.unquote(name)


@dataclass(frozen=True, slots=True)
class QuotaEntity:
    """`user`/`client_id`: None when the entity has no such part, DEFAULT for `<default>`,
    else the name (not sanitized). `ip` entities stand alone."""

    user: str | None = None
    client_id: str | None = None
    ip: str | None = None

    @property
    def path(self) -> str:
        """The entity path under /config (names sanitized)."""

        def part(name: str) -> str:
            return DEFAULT if name == DEFAULT else sanitize(name)

        if self.ip is not None:
            return f"ips/{part(self.ip)}"
        if self.user is not None and self.client_id is not None:
            return f"users/{part(self.user)}/clients/{part(self.client_id)}"
        if self.user is not None:
            return f"users/{part(self.user)}"
        assert self.client_id is not None
        return f"clients/{part(self.client_id)}"

    @classmethod
    def from_path(cls, path: str) -> QuotaEntity:
        """The entity of an entity path; ValueError for anything else."""
        parts = path.split("/")

        def name(raw: str) -> str:
            if not raw:
                raise ValueError(f"empty name in entity path {path!r}")
            return DEFAULT if raw == DEFAULT else desanitize(raw)

        if len(parts) == 2 and parts[0] == "users":
            return cls(user=name(parts[1]))
        if len(parts) == 4 and parts[0] == "users" and parts[2] == "clients":
            return cls(user=name(parts[1]), client_id=name(parts[3]))
        if len(parts) == 2 and parts[0] == "clients":
            return cls(client_id=name(parts[1]))
        if len(parts) == 2 and parts[0] == "ips":
            return cls(ip=name(parts[1]))
        raise ValueError(f"not a quota entity path: {path!r}")

    def components(self) -> list[tuple[str, str | None]]:
        """(entity type, name) pairs as DescribeClientQuotas answers them (None: default)."""
        out: list[tuple[str, str | None]] = []
        for entity_type, value in ((USER, self.user), (CLIENT_ID, self.client_id), (IP, self.ip)):
            if value is not None:
                out.append((entity_type, None if value == DEFAULT else value))
        return out


def quota_values(configs: Mapping[str, str], ip: bool = False) -> dict[str, float]:
    """The quota keys among an entity's stored configs (a user's znode also holds SCRAM
    credentials), as numbers; values that do not parse are left out."""
    keys = IP_KEYS if ip else USER_CLIENT_KEYS
    out: dict[str, float] = {}
    for key, text in configs.items():
        if key in keys:
            try:
                value = float(text)
            except ValueError:
                continue
            if math.isfinite(value):
                out[key] = value
    return out


def format_value(key: str, value: float) -> str:
    """How Kafka stores a quota value: LONG and INT keys as whole numbers, DOUBLE ones as Java
    prints a double (`50.0`)."""
    kind = USER_CLIENT_KEYS.get(key) or IP_KEYS.get(key)
    if kind in ("LONG", "INT"):
        return str(round(value))
    return repr(float(value))


# (entity, sensor key) at each precedence level, for a user U and client id C: the sensor key
# says who shares an allowance ("" = every value of that part).
def precedence(user: str, client_id: str) -> list[tuple[QuotaEntity, tuple[str, str]]]:
    both = (user, client_id)
    # A connection without a client id (or a user) only has the levels of the other part,
    # as in Kafka's quota callback.
    if not client_id:
        return [(QuotaEntity(user=user), (user, "")), (QuotaEntity(user=DEFAULT), (user, ""))]
    if not user:
        return [
            (QuotaEntity(client_id=client_id), ("", client_id)),
            (QuotaEntity(client_id=DEFAULT), ("", client_id)),
        ]
    return [
        (QuotaEntity(user, client_id), both),
        (QuotaEntity(user, DEFAULT), both),
        (QuotaEntity(user=user), (user, "")),
        (QuotaEntity(DEFAULT, client_id), both),
        (QuotaEntity(DEFAULT, DEFAULT), both),
        (QuotaEntity(user=DEFAULT), (user, "")),
        (QuotaEntity(client_id=client_id), ("", client_id)),
        (QuotaEntity(client_id=DEFAULT), ("", client_id)),
    ]


def applicable(
    quotas: Mapping[QuotaEntity, Mapping[str, float]], key: str, user: str, client_id: str
) -> tuple[tuple[str, str], float] | None:
    """(sensor key, limit) of the quota `key` for user U and client id C, or None."""
    for entity, sensor in precedence(user, client_id):
        values = quotas.get(entity)
        if values is not None and key in values:
            return sensor, values[key]
    return None
