"""`strom acl`, `strom user` and `strom quota` run as a user runs them (a subprocess) against a
real broker with the ACL authorizer and a SASL/SCRAM listener: tables compared line by line,
JSON parsed, exit codes and one-line errors; what the CLI did checked through another client
(confluent-kafka's AdminClient, a SCRAM login) and the broker's stored state."""

from __future__ import annotations

import json
from collections.abc import Iterator

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from .broker_process import BrokerProcess
from .cli_helpers import Ran, ok, one_line_error, strom
from .clients import DEADLINE_S
from .conftest import BrokerFactory
from .secure import SecureBroker, ck_security, start_secure

pytestmark = pytest.mark.integration

SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
SECURED = {
    "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
    # The CLI connects on the PLAINTEXT listener as User:ANONYMOUS.
    "super.users": "User:ANONYMOUS",
    "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
    "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": SCRAM_JAAS,
    "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": SCRAM_JAAS,
}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    factory = BrokerFactory(tmp_path_factory.mktemp("cli-security"))
    try:
        yield start_secure(factory, {"SASL_PLAINTEXT": "SASL_PLAINTEXT"}, SECURED)
    finally:
        factory.stop_all()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    factory = BrokerFactory(tmp_path_factory.mktemp("cli-plain"))
    try:
        yield factory()
    finally:
        factory.stop_all()


def _table(ran: Ran) -> list[str]:
    return ran.out.rstrip("\n").splitlines()


def _expected(header: str, *rows: str) -> list[str]:
    """A table as the CLI prints it: header, a rule as wide as the widest line, rows."""
    return [header, "─" * max(map(len, (header, *rows))), *rows]


# -- ACLs -----------------------------------------------------------------------------------


def _acls_seen_by_confluent_kafka(bootstrap: str) -> set[tuple[str, str, str, str, str, str]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    every = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    return {
        (b.principal, b.host, b.restype.name, b.name, b.operation.name, b.permission_type.name)
        for b in admin.describe_acls(every).result(timeout=DEADLINE_S)
    }


def test_acl_create_list_delete(secured: SecureBroker, topic: str) -> None:
    b = secured.plaintext
    created = ok(
        strom(
            "acl", "create", "--allow-principal", "User:alice", "--operation", "read,describe",
            "--topic", topic, "--group", f"g-{topic}", "-b", b,
        )
    )  # fmt: skip
    assert _table(created)[0].split() == [
        "PRINCIPAL", "HOST", "RESOURCE-TYPE", "RESOURCE-NAME", "PATTERN", "OPERATION",
        "PERMISSION", "ERROR",
    ]  # fmt: skip
    assert len(_table(created)) == 2 + 4
    ok(
        strom(
            "acl", "create", "--deny-principal", "User:mallory", "--deny-host", "10.0.0.9",
            "--operation", "all", "--topic", f"{topic}-", "--resource-pattern-type", "prefixed",
            "-b", b,
        )
    )  # fmt: skip

    mine = {
        ("User:alice", "*", "TOPIC", topic, "READ", "ALLOW"),
        ("User:alice", "*", "TOPIC", topic, "DESCRIBE", "ALLOW"),
        ("User:alice", "*", "GROUP", f"g-{topic}", "READ", "ALLOW"),
        ("User:alice", "*", "GROUP", f"g-{topic}", "DESCRIBE", "ALLOW"),
        ("User:mallory", "10.0.0.9", "TOPIC", f"{topic}-", "ALL", "DENY"),
    }
    assert mine <= _acls_seen_by_confluent_kafka(b)

    listed = ok(strom("acl", "list", "--topic", topic, "--format", "json", "-b", b)).json()
    assert listed == [
        {
            "principal": "User:alice",
            "host": "*",
            "resource_type": "TOPIC",
            "resource_name": topic,
            "pattern_type": "LITERAL",
            "operation": op,
            "permission": "ALLOW",
        }
        for op in ("READ", "DESCRIBE")
    ]
    # MATCH: every pattern that applies to a topic of that name, the prefixed one too.
    matched = ok(
        strom(
            "acl", "list", "--topic", f"{topic}-x", "--resource-pattern-type", "match",
            "--format", "json", "-b", b,
        )
    ).json()  # fmt: skip
    assert [(a["principal"], a["pattern_type"], a["operation"]) for a in matched] == [
        ("User:mallory", "PREFIXED", "ALL")
    ]
    table = ok(strom("acl", "list", "--principal", "User:mallory", "-b", b))
    name_width = max(len("RESOURCE-NAME"), len(f"{topic}-"))
    assert _table(table) == _expected(
        "PRINCIPAL      HOST       RESOURCE-TYPE   "
        + "RESOURCE-NAME".ljust(name_width)
        + "   PATTERN    OPERATION   PERMISSION",
        "User:mallory   10.0.0.9   TOPIC           "
        + f"{topic}-".ljust(name_width)
        + "   PREFIXED   ALL         DENY",
    )

    deleted = ok(
        strom(
            "acl", "delete", "--principal", "User:alice", "--topic", topic, "--format", "json",
            "-b", b,
        )
    ).json()  # fmt: skip
    assert sorted(a["operation"] for a in deleted) == ["DESCRIBE", "READ"]
    left = _acls_seen_by_confluent_kafka(b)
    assert ("User:alice", "*", "TOPIC", topic, "READ", "ALLOW") not in left
    assert ("User:alice", "*", "GROUP", f"g-{topic}", "READ", "ALLOW") in left
    ok(strom("acl", "delete", "--group", f"g-{topic}", "-b", b))
    ok(strom("acl", "delete", "--principal", "User:mallory", "-b", b))
    assert not {a for a in _acls_seen_by_confluent_kafka(b) if topic in a[3]}


def test_acl_errors_are_one_line(secured: SecureBroker, plain: BrokerProcess) -> None:
    b = secured.plaintext
    one_line_error(
        strom("acl", "create", "--allow-principal", "User:a", "--operation", "fly", "--topic",
              "t", "-b", b),
        2,
        "unknown operation 'fly'",
    )  # fmt: skip
    one_line_error(
        strom("acl", "create", "--allow-principal", "alice", "--operation", "read", "--topic",
              "t", "-b", b),
        2,
        "TYPE:NAME",
    )  # fmt: skip
    one_line_error(
        strom("acl", "create", "--allow-principal", "User:a", "--operation", "read", "-b", b),
        2,
        "name a resource",
    )
    one_line_error(strom("acl", "delete", "-b", b), 2, "name what to delete")
    # Refused by the broker: the binding is shown with its error, exit 1.
    refused = strom(
        "acl", "create", "--allow-principal", "User:a", "--operation", "read", "--topic", "a/b",
        "--format", "json", "-b", b,
    )  # fmt: skip
    one_line_error(refused, 1, "INVALID_REQUEST", "invalid resource name")
    (row,) = json.loads(refused.out)
    assert row["resource_name"] == "a/b" and "INVALID_REQUEST" in row["error"]

    # A broker without an authorizer.
    p = plain.bootstrap
    one_line_error(strom("acl", "list", "-b", p), 1, "SECURITY_DISABLED")
    one_line_error(
        strom("acl", "create", "--allow-principal", "User:a", "--operation", "read,write",
              "--topic", "t", "-b", p),
        1,
        "SECURITY_DISABLED",
    )  # fmt: skip
    one_line_error(strom("acl", "delete", "--topic", "t", "-b", p), 1, "SECURITY_DISABLED")


# -- SCRAM users ----------------------------------------------------------------------------


def _scram_login(broker: SecureBroker, mechanism: str, user: str, password: str) -> bool:
    conf = ck_security(
        "SASL_PLAINTEXT",
        **{"sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password},
    )
    admin = AdminClient({"bootstrap.servers": broker.bootstrap("SASL_PLAINTEXT"), **conf})
    try:
        admin.list_topics(timeout=5)
    except ck.KafkaException:
        return False
    return True


def test_user_create_list_delete(secured: SecureBroker) -> None:
    b = secured.plaintext
    created = ok(strom("user", "create", "carol", "--password", "carol-secret", "-b", b))
    assert _table(created) == _expected(
        "USER    MECHANISM       ITERATIONS", "carol   SCRAM-SHA-256   4096"
    )
    assert _scram_login(secured, "SCRAM-SHA-256", "carol", "carol-secret")
    assert not _scram_login(secured, "SCRAM-SHA-256", "carol", "wrong")
    # The password from stdin; another mechanism and iteration count.
    ok(
        strom(
            "user", "create", "dave", "--mechanism", "scram-sha-512", "--iterations", "8192",
            "-b", b, input="dave-secret\n",
        )
    )  # fmt: skip
    assert _scram_login(secured, "SCRAM-SHA-512", "dave", "dave-secret")
    # The broker keeps salted hashes only.
    stored = (secured.process.data_dir / "strom-metadata.json").read_text()
    assert "carol-secret" not in stored and "dave-secret" not in stored

    listed = ok(strom("user", "list", "--format", "json", "-b", b)).json()
    assert {"user": "carol", "mechanism": "SCRAM-SHA-256", "iterations": 4096} in listed
    assert {"user": "dave", "mechanism": "SCRAM-SHA-512", "iterations": 8192} in listed
    table = _table(ok(strom("user", "list", "-b", b)))
    assert table[0] == "USER    MECHANISM       ITERATIONS"
    assert "carol   SCRAM-SHA-256         4096" in table
    assert "dave    SCRAM-SHA-512         8192" in table

    deleted = ok(strom("user", "delete", "carol", "-b", b))
    assert _table(deleted) == _expected(
        "USER    MECHANISM       STATUS", "carol   SCRAM-SHA-256   deleted"
    )
    assert not _scram_login(secured, "SCRAM-SHA-256", "carol", "carol-secret")
    one_line_error(strom("user", "delete", "carol", "-b", b), 1, "RESOURCE_NOT_FOUND", "carol")
    ok(strom("user", "delete", "dave", "--mechanism", "SCRAM-SHA-512", "-b", b))
    assert not _scram_login(secured, "SCRAM-SHA-512", "dave", "dave-secret")


def test_user_errors_are_one_line(secured: SecureBroker) -> None:
    b = secured.plaintext
    one_line_error(
        strom("user", "create", "eve", "--password", "pw", "--iterations", "100", "-b", b),
        1,
        "UNACCEPTABLE_CREDENTIAL",
    )
    one_line_error(strom("user", "create", "eve", "-b", b, input="\n"), 2, "password is empty")
    one_line_error(strom("user", "list", "-b", "127.0.0.1:1"), 3)


# -- quotas ---------------------------------------------------------------------------------


def test_quota_alter_and_describe(secured: SecureBroker) -> None:
    b = secured.plaintext
    alice = ok(
        strom(
            "quota", "alter", "--name", "user=alice", "--add", "producer_byte_rate=1048576",
            "--add", "request_percentage=50.5", "-b", b,
        )
    )  # fmt: skip
    assert _table(alice) == _expected(
        "ENTITY       QUOTA                VALUE     STATUS",
        "user=alice   producer_byte_rate   1048576   set",
        "user=alice   request_percentage   50.5      set",
    )
    ok(
        strom(
            "quota", "alter", "--name", "client-id=app", "--name", "user=alice", "--add",
            "consumer_byte_rate=2048", "-b", b,
        )
    )  # fmt: skip
    ok(strom("quota", "alter", "--default", "client-id", "--add", "request_percentage=25", "-b", b))
    dry = ok(
        strom("quota", "alter", "--name", "ip=10.1.2.3", "--add", "connection_creation_rate=7",
              "--dry-run", "-b", b)
    )  # fmt: skip
    assert "set (dry run)" in dry.out

    everything = ok(strom("quota", "describe", "--format", "json", "-b", b)).json()
    assert everything == [
        {
            "entity": [{"type": "client-id", "name": None}],
            "quotas": {"request_percentage": 25.0},
        },
        {
            "entity": [{"type": "user", "name": "alice"}],
            "quotas": {"producer_byte_rate": 1048576.0, "request_percentage": 50.5},
        },
        {
            "entity": [{"type": "client-id", "name": "app"}, {"type": "user", "name": "alice"}],
            "quotas": {"consumer_byte_rate": 2048.0},
        },
    ]
    table = ok(strom("quota", "describe", "--name", "user=alice", "-b", b))
    assert _table(table) == _expected(
        "ENTITY                     QUOTA                  VALUE",
        "user=alice                 producer_byte_rate   1048576",
        "user=alice                 request_percentage      50.5",
        "user=alice,client-id=app   consumer_byte_rate      2048",
    )
    strict = ok(
        strom("quota", "describe", "--name", "user=alice", "--strict", "--format", "json", "-b", b)
    ).json()
    assert [e["entity"] for e in strict] == [[{"type": "user", "name": "alice"}]]
    assert [e["entity"] for e in ok(
        strom("quota", "describe", "--default", "client-id", "--format", "json", "-b", b)
    ).json()] == [[{"type": "client-id", "name": None}]]  # fmt: skip

    # Kept by the broker in Kafka's entity paths.
    stored = json.loads((secured.process.data_dir / "strom-security.json").read_text())
    assert stored["entity_configs"]["users/alice"] == {
        "producer_byte_rate": "1048576",
        "request_percentage": "50.5",
    }
    assert "ips/10.1.2.3" not in stored["entity_configs"]

    removed = ok(
        strom("quota", "alter", "--name", "user=alice", "--delete", "request_percentage", "-b", b)
    )
    assert "removed" in removed.out
    now = ok(
        strom("quota", "describe", "--name", "user=alice", "--strict", "--format", "json", "-b", b)
    ).json()
    assert now == [
        {"entity": [{"type": "user", "name": "alice"}], "quotas": {"producer_byte_rate": 1048576.0}}
    ]
    for args in (
        ("--name", "user=alice", "--delete", "producer_byte_rate"),
        ("--name", "client-id=app", "--name", "user=alice", "--delete", "consumer_byte_rate"),
        ("--default", "client-id", "--delete", "request_percentage"),
    ):
        ok(strom("quota", "alter", *args, "-b", b))
    assert ok(strom("quota", "describe", "--format", "json", "-b", b)).json() == []


def test_quota_errors_are_one_line(secured: SecureBroker) -> None:
    b = secured.plaintext
    one_line_error(
        strom("quota", "alter", "--name", "user=bob", "--add", "producer_byte_rate=10.5", "-b", b),
        1,
        "producer_byte_rate must be a LONG value",
    )
    one_line_error(
        strom("quota", "alter", "--name", "user=bob", "--add", "no_such_quota=1", "-b", b),
        1,
    )
    one_line_error(
        strom("quota", "alter", "--name", "user=bob", "--add", "producer_byte_rate=lots", "-b", b),
        2,
        "not a number",
    )
    one_line_error(strom("quota", "alter", "--name", "bob", "--add", "x=1", "-b", b), 2, "--name")
    one_line_error(strom("quota", "alter", "--add", "x=1", "-b", b), 2, "name the entity")
