"""The audit trail of denials (server/authz.py AuditLog) and how `authorizer.class.name`,
`super.users` and `allow.everyone.if.no.acl.found` make the authorizer: each denial logged
once per principal, resource and operation per interval, with the principal and host, on a
clock the test moves."""

from __future__ import annotations

import logging

import pytest

from strom.config import BrokerConfig, ConfigError
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import AuditLog, authorizer_from_config

PRODUCE, FETCH = 0, 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def denials(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "strom.authorizer"]


def test_a_denial_is_logged_once_per_minute(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="strom.authorizer")
    clock = Clock()
    audit = AuditLog(60.0, clock)
    for _ in range(5):
        audit.denied(
            "User:bob", "10.0.0.7", AclOperation.WRITE, ResourceType.TOPIC, "orders", PRODUCE
        )
        clock.now += 10.0
    # Five refusals over 50 s: one line, with Kafka's wording, the principal and the host.
    assert denials(caplog) == [
        "Principal = User:bob is Denied operation = Write from host = 10.0.0.7 on resource = "
        "Topic:LITERAL:orders for request = Produce"
    ]
    clock.now += 9.9  # 59.9 s after the line
    audit.denied("User:bob", "10.0.0.8", AclOperation.WRITE, ResourceType.TOPIC, "orders", PRODUCE)
    assert len(denials(caplog)) == 1
    clock.now += 0.1  # a minute after it: logged again, with the host of this request
    audit.denied("User:bob", "10.0.0.8", AclOperation.WRITE, ResourceType.TOPIC, "orders", PRODUCE)
    assert len(denials(caplog)) == 2
    assert "from host = 10.0.0.8" in denials(caplog)[1]


def test_principal_resource_and_operation_each_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="strom.authorizer")
    audit = AuditLog(60.0, Clock())
    asked = [
        ("User:bob", AclOperation.WRITE, ResourceType.TOPIC, "orders"),
        ("User:eve", AclOperation.WRITE, ResourceType.TOPIC, "orders"),
        ("User:bob", AclOperation.READ, ResourceType.TOPIC, "orders"),
        ("User:bob", AclOperation.WRITE, ResourceType.TOPIC, "payments"),
        ("User:bob", AclOperation.READ, ResourceType.GROUP, "orders"),
    ]
    for _ in range(3):
        for principal, op, rtype, name in asked:
            audit.denied(principal, "10.0.0.7", op, rtype, name, FETCH)
    lines = denials(caplog)
    assert len(lines) == len(asked)
    assert "Principal = User:eve" in lines[1]
    assert "Denied operation = Read" in lines[2] and "Topic:LITERAL:orders" in lines[2]
    assert "Group:LITERAL:orders for request = Fetch" in lines[4]


def test_the_keys_remembered_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="strom.authorizer")
    clock = Clock()
    audit = AuditLog(60.0, clock, keys_limit=100)
    for i in range(1000):
        audit.denied("User:bob", "h", AclOperation.WRITE, ResourceType.TOPIC, f"t{i}", PRODUCE)
        assert len(audit._last) <= 100
    # The most recent ones are the ones remembered.
    audit.denied("User:bob", "h", AclOperation.WRITE, ResourceType.TOPIC, "t999", PRODUCE)
    assert len(denials(caplog)) == 1000
    # Keys a minute old are forgotten as new ones come.
    clock.now += 60.0
    audit.denied("User:bob", "h", AclOperation.WRITE, ResourceType.TOPIC, "fresh", PRODUCE)
    assert len(audit._last) == 1


@pytest.mark.parametrize(
    "class_name",
    [
        "kafka.security.authorizer.AclAuthorizer",
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "strom.security.authorizer.AclAuthorizer",
    ],
)
def test_kafkas_and_stroms_class_names_make_the_acl_authorizer(class_name: str) -> None:
    config = BrokerConfig.load(
        None, {"authorizer.class.name": class_name, "super.users": "User:admin; User:broker"}
    )
    authorizer = authorizer_from_config(config)
    assert authorizer is not None
    assert authorizer.super_users == {"User:admin", "User:broker"}
    # allow.everyone.if.no.acl.found is false unless set: a resource without ACLs is closed.
    assert not authorizer.allow_everyone_if_no_acl_found
    assert not authorizer.authorize("User:x", "h", AclOperation.READ, ResourceType.TOPIC, "t")
    assert authorizer.authorize("User:broker", "h", AclOperation.READ, ResourceType.TOPIC, "t")
    opened = BrokerConfig.load(
        None, {"authorizer.class.name": class_name, "allow.everyone.if.no.acl.found": "true"}
    )
    authorizer = authorizer_from_config(opened)
    assert authorizer is not None
    assert authorizer.authorize("User:x", "h", AclOperation.READ, ResourceType.TOPIC, "t")


def test_no_class_name_no_authorizer_and_an_unknown_one_refused() -> None:
    assert authorizer_from_config(BrokerConfig.load(None, {})) is None
    with pytest.raises(ConfigError) as err:
        BrokerConfig.load(None, {"authorizer.class.name": "com.example.OwnAuthorizer"})
    assert "authorizer.class.name" in str(err.value)
    with pytest.raises(ConfigError) as err:
        BrokerConfig.load(
            None,
            {
                "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
                "super.users": "admin",
            },
        )
    assert "super.users" in str(err.value)
