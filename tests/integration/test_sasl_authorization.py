"""ACLs and quotas for SASL users, with confluent-kafka, kafka-python and aiokafka.

One broker: a PLAINTEXT listener (User:ANONYMOUS, a super user here, manages the ACLs) and a
SASL_PLAINTEXT listener with PLAIN users. alice may write `ledger-` topics, bob may read them
as the group `readers` but not write, carol has no ACL at all (and nothing is open without
one: allow.everyone.if.no.acl.found is false). A user-level quota throttles alice whatever
her client id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiokafka.errors
import confluent_kafka as ck
import kafka
import kafka.errors
import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from .clients import DEADLINE_S, ProduceError, Rec, aio_produce, ck_conf, ck_produce, kp_produce
from .conftest import BrokerFactory
from .secure import SecureBroker, start_secure
from .test_client_quotas import QuotaAdmin

pytestmark = pytest.mark.integration

USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
PLAIN_JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    + " ".join(f'user_{u}="{p}"' for u, p in USERS.items())
    + ";"
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    factory = BrokerFactory(tmp_path_factory.mktemp("sasl-authz"))
    try:
        b = start_secure(
            factory,
            {"SASL_PLAINTEXT": "SASL_PLAINTEXT"},
            {
                "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
                "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
                "super.users": "User:ANONYMOUS",
                "group.initial.rebalance.delay.ms": 0,
            },
        )
        admin = AdminClient({"bootstrap.servers": b.plaintext})
        from confluent_kafka.admin import NewTopic

        admin.create_topics([NewTopic("ledger-main", 1, 1)])["ledger-main"].result(DEADLINE_S)

        def acl(
            rtype: ResourceType,
            name: str,
            principal: str,
            op: AclOperation,
            perm: AclPermissionType = AclPermissionType.ALLOW,
            ptype: ResourcePatternType = ResourcePatternType.LITERAL,
        ) -> AclBinding:
            return AclBinding(rtype, name, ptype, principal, "*", op, perm)

        bindings = [
            acl(
                ResourceType.TOPIC,
                "ledger-",
                "User:alice",
                AclOperation.WRITE,
                ptype=ResourcePatternType.PREFIXED,
            ),
            acl(
                ResourceType.TOPIC,
                "ledger-",
                "User:bob",
                AclOperation.READ,
                ptype=ResourcePatternType.PREFIXED,
            ),
            acl(ResourceType.GROUP, "readers", "User:bob", AclOperation.READ),
            acl(
                ResourceType.TOPIC,
                "ledger-main",
                "User:bob",
                AclOperation.WRITE,
                AclPermissionType.DENY,
            ),
        ]
        for fut in admin.create_acls(bindings).values():
            fut.result(timeout=DEADLINE_S)
        yield b
    finally:
        factory.stop_all()


def ck_user(user: str) -> dict[str, Any]:
    return {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": user,
        "sasl.password": USERS[user],
    }


def py_user(user: str) -> dict[str, Any]:
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": user,
        "sasl_plain_password": USERS[user],
    }


def produce_results(bootstrap: str, user: str, topic: str) -> dict[str, str]:
    rec = [Rec(b"k", user.encode())]
    out: dict[str, str] = {}
    for name, produce in (
        (
            "confluent-kafka",
            lambda: ck_produce(bootstrap, topic, rec, deadline_s=20, **ck_user(user)),
        ),
        ("kafka-python", lambda: kp_produce(bootstrap, topic, rec, deadline_s=20, **py_user(user))),
        ("aiokafka", lambda: aio_produce(bootstrap, topic, rec, deadline_s=20, **py_user(user))),
    ):
        try:
            produce()
        except (ProduceError, kafka.errors.KafkaError, aiokafka.errors.KafkaError) as exc:
            out[name] = repr(exc) + repr(exc.__cause__)
        else:
            out[name] = "delivered"
    return out


def test_a_user_with_write_produces_and_one_without_is_refused(broker: SecureBroker) -> None:
    bootstrap = broker.bootstrap("SASL_PLAINTEXT")
    assert set(produce_results(bootstrap, "alice", "ledger-main").values()) == {"delivered"}
    for user in ("carol", "bob"):  # carol: no ACL; bob: READ allowed, WRITE denied
        for client, result in produce_results(bootstrap, user, "ledger-main").items():
            assert "TOPIC_AUTHORIZATION_FAILED" in result or "TopicAuthorizationFailed" in result, (
                user,
                client,
                result,
            )


def ck_group_read(bootstrap: str, user: str, group: str) -> ck.KafkaError | int:
    """Subscribe as `group`; the first consumer error, or the number of records read."""
    c = ck.Consumer(
        ck_conf(bootstrap, **ck_user(user), **{"group.id": group, "auto.offset.reset": "earliest"})
    )
    try:
        c.subscribe(["ledger-main"])
        got = 0
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end and got < 3:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                return msg.error()
            got += 1
        return got
    finally:
        c.close()


def test_a_consumer_needs_read_on_its_group(broker: SecureBroker) -> None:
    bootstrap = broker.bootstrap("SASL_PLAINTEXT")
    assert set(produce_results(bootstrap, "alice", "ledger-main").values()) == {"delivered"}
    assert ck_group_read(bootstrap, "bob", "readers") == 3
    refused = ck_group_read(bootstrap, "bob", "strangers")
    assert isinstance(refused, ck.KafkaError)
    assert refused.code() == ck.KafkaError.GROUP_AUTHORIZATION_FAILED

    kc = kafka.KafkaConsumer(
        "ledger-main", bootstrap_servers=bootstrap, group_id="strangers", **py_user("bob")
    )
    try:
        with pytest.raises(kafka.errors.GroupAuthorizationFailedError):
            end = time.monotonic() + DEADLINE_S
            while time.monotonic() < end:
                kc.poll(timeout_ms=500)
    finally:
        kc.close()

    async def aio() -> None:
        consumer = AIOKafkaConsumer(
            "ledger-main", bootstrap_servers=bootstrap, group_id="strangers", **py_user("bob")
        )
        try:
            with pytest.raises(aiokafka.errors.GroupAuthorizationFailedError):
                await consumer.start()
                await asyncio.wait_for(consumer.getone(), DEADLINE_S)
        finally:
            await consumer.stop()

    asyncio.run(aio())


def test_metadata_shows_each_user_its_own_topics(broker: SecureBroker) -> None:
    bootstrap = broker.bootstrap("SASL_PLAINTEXT")
    seen = {}
    for user in ("alice", "carol"):
        admin = AdminClient({"bootstrap.servers": bootstrap, **ck_user(user)})
        seen[user] = set(admin.list_topics(timeout=DEADLINE_S).topics)
    assert "ledger-main" in seen["alice"]  # WRITE implies DESCRIBE
    assert "ledger-main" not in seen["carol"]


def test_a_user_quota_throttles_every_client_id_of_the_user(broker: SecureBroker) -> None:
    admin = QuotaAdmin(broker.plaintext)
    try:
        assert admin.alter({"user": "alice"}, {"producer_byte_rate": 50_000}) == (0, None)
    finally:
        admin.close()
    bootstrap = broker.bootstrap("SASL_PLAINTEXT")
    throttles: list[float] = []
    for client_id in ("alice-1", "alice-2"):
        p = ck.Producer(
            ck_conf(
                bootstrap,
                **ck_user("alice"),
                **{
                    "client.id": client_id,
                    "throttle_cb": lambda event: throttles.append(event.throttle_time),
                },
            )
        )
        for _ in range(60):
            p.produce("ledger-main", b"x" * 10_000)
            p.poll(0)
        assert p.flush(DEADLINE_S) == 0
    # 1.2 MB against 50 kB/s, shared by both client ids of the user.
    assert throttles and max(throttles) > 0
