"""What the ACL authorizer lets real clients do.

Plaintext clients are User:ANONYMOUS. The brokers here run with
`allow.everyone.if.no.acl.found=true`, Kafka's way of opening everything that has no ACL, so
the ACLs a test creates (through the admin API) close exactly the resources they name:
- a producer without WRITE on its topic gets TOPIC_AUTHORIZATION_FAILED, a consumer without
  READ on its group GROUP_AUTHORIZATION_FAILED, with confluent-kafka, kafka-python, aiokafka;
- PREFIXED ACLs and DENY over ALLOW; a super user passes every ACL;
- Metadata hides the topics a principal may not describe, auto-creation needs CREATE, and the
  authorized operations clients ask for are the principal's;
- the requests brokers send each other need CLUSTER_ACTION (checked with raw requests from a
  second loopback address, which a host-specific ACL tells apart);
- each denial is logged once a minute per principal, resource and operation.
"""

from __future__ import annotations

import asyncio
import socket
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
    ResourcePatternType,
    ResourceType,
)

from strom.protocol.messages.consumer_group_describe_request import ConsumerGroupDescribeRequest
from strom.protocol.messages.consumer_group_describe_response import (
    ConsumerGroupDescribeResponse,
)
from strom.protocol.messages.controlled_shutdown_request import ControlledShutdownRequest
from strom.protocol.messages.controlled_shutdown_response import ControlledShutdownResponse
from strom.protocol.messages.describe_groups_request import DescribeGroupsRequest
from strom.protocol.messages.describe_groups_response import DescribeGroupsResponse
from strom.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic
from strom.protocol.messages.fetch_response import FetchResponse
from strom.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from strom.protocol.messages.metadata_response import MetadataResponse
from strom.protocol.messages.write_txn_markers_request import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
)
from strom.protocol.messages.write_txn_markers_response import WriteTxnMarkersResponse

from .broker_process import BrokerProcess
from .clients import (
    DEADLINE_S,
    ProduceError,
    Rec,
    aio_produce,
    ck_admin,
    ck_conf,
    ck_consume,
    ck_produce,
    create_topic,
    kp_produce,
    make_recs,
    wait_until,
)
from .conftest import BrokerFactory
from .kafka_wire import frame, recv_frame, request_header
from .share_helpers import ShareWorker, prime, share_conf

pytestmark = pytest.mark.integration

AUTHORIZER = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "allow.everyone.if.no.acl.found": "true",
    "group.initial.rebalance.delay.ms": 0,
}
ANON = "User:ANONYMOUS"
TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
CLUSTER_AUTHORIZATION_FAILED = 31


@pytest.fixture(scope="module")
def open_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    factory = BrokerFactory(tmp_path_factory.mktemp("authz"))
    try:
        yield factory(AUTHORIZER)
    finally:
        factory.stop_all()


def acl(
    rtype: ResourceType,
    name: str,
    op: AclOperation,
    perm: AclPermissionType = AclPermissionType.ALLOW,
    ptype: ResourcePatternType = ResourcePatternType.LITERAL,
    principal: str = ANON,
    host: str = "*",
) -> AclBinding:
    return AclBinding(rtype, name, ptype, principal, host, op, perm)


def grant(broker: BrokerProcess, *bindings: AclBinding) -> None:
    admin = ck_admin(broker.bootstrap)
    for fut in admin.create_acls(list(bindings)).values():
        assert fut.result(timeout=DEADLINE_S) is None


def produce_errors(bootstrap: str, topic: str) -> dict[str, str]:
    """The error each client's producer reports for one record to `topic`."""
    out: dict[str, str] = {}
    rec = [Rec(b"k", b"v")]
    for name, produce in (
        ("confluent-kafka", lambda: ck_produce(bootstrap, topic, rec, deadline_s=20)),
        ("kafka-python", lambda: kp_produce(bootstrap, topic, rec, deadline_s=20)),
        ("aiokafka", lambda: aio_produce(bootstrap, topic, rec, deadline_s=20)),
    ):
        try:
            produce()
        except (ProduceError, kafka.errors.KafkaError, aiokafka.errors.KafkaError) as exc:
            out[name] = repr(exc) + repr(exc.__cause__)
        else:
            out[name] = "delivered"
    return out


def test_producer_without_write_is_refused_by_every_client(open_broker: BrokerProcess) -> None:
    b = open_broker
    create_topic(b.bootstrap, "ledger")
    ck_produce(b.bootstrap, "ledger", make_recs(2))
    grant(
        b,
        acl(ResourceType.TOPIC, "ledger", AclOperation.READ),
        acl(ResourceType.TOPIC, "ledger", AclOperation.WRITE, AclPermissionType.DENY),
    )
    for client, error in produce_errors(b.bootstrap, "ledger").items():
        assert "TOPIC_AUTHORIZATION_FAILED" in error or "TopicAuthorizationFailed" in error, (
            client,
            error,
        )
    # Reading is still allowed (READ implies DESCRIBE, so the topic is in Metadata too).
    assert len(ck_consume(b.bootstrap, "ledger")) == 2


def test_prefixed_acls_and_deny_over_allow(open_broker: BrokerProcess) -> None:
    b = open_broker
    for t in ("team-a", "team-locked"):
        create_topic(b.bootstrap, t)
    grant(
        b,
        acl(ResourceType.TOPIC, "team-", AclOperation.ALL, ptype=ResourcePatternType.PREFIXED),
        acl(ResourceType.TOPIC, "team-locked", AclOperation.WRITE, AclPermissionType.DENY),
    )
    assert len(ck_produce(b.bootstrap, "team-a", make_recs(3))) == 3
    assert set(produce_errors(b.bootstrap, "team-a").values()) == {"delivered"}
    errors = produce_errors(b.bootstrap, "team-locked")
    assert all("AUTHORIZATION_FAILED" in e or "AuthorizationFailed" in e for e in errors.values())


def test_consumer_without_read_on_its_group_is_refused(open_broker: BrokerProcess) -> None:
    b = open_broker
    create_topic(b.bootstrap, "orders-g")
    ck_produce(b.bootstrap, "orders-g", make_recs(2))
    grant(
        b,
        acl(
            ResourceType.GROUP,
            "closed-",
            AclOperation.READ,
            AclPermissionType.DENY,
            ResourcePatternType.PREFIXED,
        ),
    )

    # confluent-kafka: the group's error comes as a consumer error.
    c = ck.Consumer(
        ck_conf(b.bootstrap, **{"group.id": "closed-ck", "auto.offset.reset": "earliest"})
    )
    try:
        c.subscribe(["orders-g"])
        seen = None
        end = time.monotonic() + DEADLINE_S
        while seen is None and time.monotonic() < end:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is not None:
                seen = msg.error().code()
        assert seen == ck.KafkaError.GROUP_AUTHORIZATION_FAILED
    finally:
        c.close()

    # kafka-python raises it from poll.
    kc = kafka.KafkaConsumer(
        "orders-g",
        bootstrap_servers=b.bootstrap,
        group_id="closed-kp",
        auto_offset_reset="earliest",
    )
    try:
        with pytest.raises(kafka.errors.GroupAuthorizationFailedError):
            end = time.monotonic() + DEADLINE_S
            while time.monotonic() < end:
                kc.poll(timeout_ms=500)
    finally:
        kc.close()

    # aiokafka raises it from getone.
    async def aio() -> None:
        consumer = AIOKafkaConsumer(
            "orders-g",
            bootstrap_servers=b.bootstrap,
            group_id="closed-aio",
            auto_offset_reset="earliest",
        )
        try:
            with pytest.raises(aiokafka.errors.GroupAuthorizationFailedError):
                await consumer.start()
                await asyncio.wait_for(consumer.getone(), DEADLINE_S)
        finally:
            await consumer.stop()

    asyncio.run(aio())
    # A group no ACL names still works (allow.everyone.if.no.acl.found).
    c = ck.Consumer(
        ck_conf(b.bootstrap, **{"group.id": "open-group", "auto.offset.reset": "earliest"})
    )
    try:
        c.subscribe(["orders-g"])
        values = []
        end = time.monotonic() + DEADLINE_S
        while len(values) < 2 and time.monotonic() < end:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                values.append(msg.value())
        assert len(values) == 2
    finally:
        c.close()


def metadata(
    broker: BrokerProcess, topics: list[str] | None, version: int = 8, **flags: Any
) -> MetadataResponse:
    request = MetadataRequest(
        topics=None if topics is None else [MetadataRequestTopic(name=t) for t in topics],
        allow_auto_topic_creation=flags.get("auto", False),
        include_cluster_authorized_operations=flags.get("cluster_ops", False),
        include_topic_authorized_operations=flags.get("topic_ops", False),
    )
    return MetadataResponse.decode(raw(broker, 3, version, request.encode(version)), version)


def raw(
    broker: BrokerProcess, api_key: int, version: int, body: bytes, source: str = "127.0.0.1"
) -> bytes:
    """One request on its own connection from `source`; the response body."""
    with socket.create_connection(
        (broker.host, broker.port), timeout=30, source_address=(source, 0)
    ) as sock:
        sock.sendall(frame(request_header(api_key, version, 7, "authz-test") + body))
        answer = recv_frame(sock)
    return answer[4:]


def test_metadata_hides_what_may_not_be_described(open_broker: BrokerProcess) -> None:
    b = open_broker
    for t in ("visible-1", "hidden-1"):
        create_topic(b.bootstrap, t)
    grant(b, acl(ResourceType.TOPIC, "hidden-1", AclOperation.READ, principal="User:bob"))
    everything = metadata(b, None)
    names = {t.name for t in everything.topics}
    assert "visible-1" in names and "hidden-1" not in names
    named = {t.name: t for t in metadata(b, ["hidden-1", "visible-1", "never-created"]).topics}
    assert named["hidden-1"].error_code == TOPIC_AUTHORIZATION_FAILED
    assert named["hidden-1"].partitions == []
    assert named["visible-1"].error_code == 0
    assert named["never-created"].error_code == 3  # UNKNOWN_TOPIC_OR_PARTITION
    # The clients see the same.
    listed = ck_admin(b.bootstrap).list_topics(timeout=DEADLINE_S).topics
    assert "visible-1" in listed and "hidden-1" not in listed
    kc = kafka.KafkaConsumer(bootstrap_servers=b.bootstrap)
    try:
        assert "hidden-1" not in kc.topics() and "visible-1" in kc.topics()
    finally:
        kc.close()


def test_authorized_operations_are_the_principals(open_broker: BrokerProcess) -> None:
    b = open_broker
    create_topic(b.bootstrap, "ops-t")
    grant(
        b,
        acl(ResourceType.TOPIC, "ops-t", AclOperation.READ),
        acl(ResourceType.TOPIC, "ops-t", AclOperation.DESCRIBE_CONFIGS),
    )
    from confluent_kafka import TopicCollection

    admin = ck_admin(b.bootstrap)
    described = admin.describe_topics(
        TopicCollection(["ops-t"]), include_authorized_operations=True
    )["ops-t"].result(timeout=DEADLINE_S)
    assert set(described.authorized_operations) == {
        AclOperation.READ,
        AclOperation.DESCRIBE,
        AclOperation.DESCRIBE_CONFIGS,
    }
    # No ACL on the cluster: every cluster operation (allow.everyone.if.no.acl.found).
    cluster = admin.describe_cluster(include_authorized_operations=True).result(timeout=DEADLINE_S)
    assert AclOperation.ALTER in set(cluster.authorized_operations)
    assert AclOperation.CLUSTER_ACTION in set(cluster.authorized_operations)
    raw_answer = metadata(b, ["ops-t"], topic_ops=True, cluster_ops=True)
    # READ (3), DESCRIBE (8), DESCRIBE_CONFIGS (10).
    assert raw_answer.topics[0].topic_authorized_operations == (1 << 3) | (1 << 8) | (1 << 10)
    assert raw_answer.cluster_authorized_operations > 0


def test_auto_creation_needs_create(broker_factory: BrokerFactory) -> None:
    b = broker_factory(AUTHORIZER, auto_create_topics_enable="true")
    grant(
        b,
        # Once the cluster has an ACL, it is closed but for what the ACLs allow.
        acl(ResourceType.BROKER, "kafka-cluster", AclOperation.ALTER),
        acl(
            ResourceType.TOPIC, "auto-ok-", AclOperation.CREATE, ptype=ResourcePatternType.PREFIXED
        ),
        # Every auto- topic may be described, only auto-ok- ones created.
        acl(
            ResourceType.TOPIC,
            "auto-",
            AclOperation.DESCRIBE,
            ptype=ResourcePatternType.PREFIXED,
        ),
    )
    answer = {
        t.name: t.error_code for t in metadata(b, ["auto-ok-1", "auto-no-1"], auto=True).topics
    }
    assert answer == {"auto-ok-1": 0, "auto-no-1": TOPIC_AUTHORIZATION_FAILED}
    assert "auto-no-1" not in (b.data_dir / "strom-metadata.json").read_text()


def test_a_super_user_passes_every_acl(broker_factory: BrokerFactory) -> None:
    b = broker_factory(AUTHORIZER)
    create_topic(b.bootstrap, "guarded")
    grant(b, acl(ResourceType.TOPIC, "guarded", AclOperation.ALL, AclPermissionType.DENY))
    assert set(produce_errors(b.bootstrap, "guarded").values()) != {"delivered"}
    b.restart({"super.users": f"User:admin;{ANON}"})
    assert len(ck_produce(b.bootstrap, "guarded", make_recs(2))) == 2
    assert len(ck_consume(b.bootstrap, "guarded")) == 2


def test_broker_requests_need_cluster_action(broker_factory: BrokerFactory) -> None:
    b = broker_factory(AUTHORIZER)
    create_topic(b.bootstrap, "replicated")
    # Only 127.0.0.1 may act as a broker (or alter the cluster, which Kafka also accepts for
    # transaction markers); the same principal from 127.0.0.2 may not.
    grant(
        b,
        acl(ResourceType.BROKER, "kafka-cluster", AclOperation.CLUSTER_ACTION, host="127.0.0.1"),
        acl(ResourceType.BROKER, "kafka-cluster", AclOperation.ALTER, host="127.0.0.1"),
    )
    shutdown = ControlledShutdownRequest(broker_id=0, broker_epoch=-1).encode(2)
    here = ControlledShutdownResponse.decode(raw(b, 7, 2, shutdown), 2)
    assert here.error_code == 41  # NOT_CONTROLLER: authorized, but there is no controller
    there = ControlledShutdownResponse.decode(raw(b, 7, 2, shutdown, source="127.0.0.2"), 2)
    assert there.error_code == CLUSTER_AUTHORIZATION_FAILED

    # Transaction markers (what a transaction coordinator sends the partitions' leaders):
    # refused from 127.0.0.2 only. (The controller's requests are refused by a single broker
    # whoever sends them: tests/cluster/test_cluster_acls.py checks them.)
    markers = WriteTxnMarkersRequest(
        markers=[
            WritableTxnMarker(
                producer_id=1,
                producer_epoch=0,
                transaction_result=True,
                topics=[WritableTxnMarkerTopic(name="replicated", partition_indexes=[0])],
                coordinator_epoch=0,
            )
        ]
    ).encode(0)

    def marker_error(source: str) -> int:
        answer = WriteTxnMarkersResponse.decode(raw(b, 27, 0, markers, source), 0)
        return answer.markers[0].topics[0].partitions[0].error_code

    assert marker_error("127.0.0.2") == CLUSTER_AUTHORIZATION_FAILED
    assert marker_error("127.0.0.1") != CLUSTER_AUTHORIZATION_FAILED

    # A follower's fetch (replica_id >= 0) from 127.0.0.2: every partition refused.
    fetch = FetchRequest(
        replica_id=1,
        max_wait_ms=0,
        min_bytes=0,
        topics=[
            FetchTopic(topic="replicated", partitions=[FetchPartition(partition=0, fetch_offset=0)])
        ],
    )
    refused = FetchResponse.decode(raw(b, 1, 11, fetch.encode(11), source="127.0.0.2"), 11)
    assert refused.responses[0].partitions[0].error_code == TOPIC_AUTHORIZATION_FAILED
    # A consumer's fetch from there is a READ, which no ACL closes.
    fetch.replica_id = -1
    read = FetchResponse.decode(raw(b, 1, 11, fetch.encode(11), source="127.0.0.2"), 11)
    assert read.responses[0].partitions[0].error_code == 0


def test_denials_are_logged_once_per_minute(broker_factory: BrokerFactory) -> None:
    b = broker_factory(AUTHORIZER)
    create_topic(b.bootstrap, "quiet")
    grant(
        b,
        acl(ResourceType.TOPIC, "quiet", AclOperation.DESCRIBE),
        acl(ResourceType.TOPIC, "quiet", AclOperation.WRITE, AclPermissionType.DENY),
    )
    for _ in range(3):
        produce_errors(b.bootstrap, "quiet")
    lines = [
        line
        for line in b.log_text().splitlines()
        if "is Denied operation = Write" in line and "Topic:LITERAL:quiet" in line
    ]
    assert len(lines) == 1, lines
    assert "Principal = User:ANONYMOUS" in lines[0] and "from host = 127.0.0.1" in lines[0]


def test_group_authorized_operations_are_the_principals(open_broker: BrokerProcess) -> None:
    """DescribeGroups (a classic group) and ConsumerGroupDescribe (a KIP-848 group) report
    what the principal may do to each group, through confluent-kafka and on the wire."""
    b = open_broker
    create_topic(b.bootstrap, "ops-groups-t")
    ck_produce(b.bootstrap, "ops-groups-t", make_recs(2))
    grant(
        b,
        acl(ResourceType.GROUP, "ops-classic", AclOperation.READ),
        acl(ResourceType.GROUP, "ops-848", AclOperation.READ),
        acl(ResourceType.GROUP, "ops-848", AclOperation.DELETE),
    )
    consumers = []
    try:
        for group, protocol in (("ops-classic", "classic"), ("ops-848", "consumer")):
            c = ck.Consumer(
                ck_conf(
                    b.bootstrap,
                    **{
                        "group.id": group,
                        "group.protocol": protocol,
                        "auto.offset.reset": "earliest",
                    },
                )
            )
            consumers.append(c)
            c.subscribe(["ops-groups-t"])
            read = 0
            end = time.monotonic() + DEADLINE_S
            while read < 2 and time.monotonic() < end:
                msg = c.poll(0.5)
                if msg is not None and msg.error() is None:
                    read += 1
            assert read == 2, group
        admin = ck_admin(b.bootstrap)
        described = admin.describe_consumer_groups(
            ["ops-classic", "ops-848"], include_authorized_operations=True
        )
        ops = {
            group: set(future.result(timeout=DEADLINE_S).authorized_operations)
            for group, future in described.items()
        }
        assert ops == {
            "ops-classic": {AclOperation.READ, AclOperation.DESCRIBE},
            "ops-848": {AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE},
        }
        # DescribeGroups v3 and ConsumerGroupDescribe v0 themselves (the latter flexible:
        # request header v2, response header v1).
        classic = DescribeGroupsRequest(groups=["ops-classic"], include_authorized_operations=True)
        answer = DescribeGroupsResponse.decode(raw(b, 15, 3, classic.encode(3)), 3)
        assert answer.groups[0].error_code == 0
        assert answer.groups[0].authorized_operations == (1 << 3) | (1 << 8)
        request = ConsumerGroupDescribeRequest(
            group_ids=["ops-848"], include_authorized_operations=True
        )
        with socket.create_connection((b.host, b.port), timeout=30) as sock:
            sock.sendall(frame(request_header(69, 0, 9, "authz") + b"\x00" + request.encode(0)))
            answer = recv_frame(sock)
        (group,) = ConsumerGroupDescribeResponse.decode(answer[5:], 0).groups
        assert group.error_code == 0
        # READ (3), DELETE (6), DESCRIBE (8).
        assert group.authorized_operations == (1 << 3) | (1 << 6) | (1 << 8)
    finally:
        for c in consumers:
            c.close()


def share_refusal(bootstrap: str, group: str, topic: str) -> int | None:
    """The error a ShareConsumer of `group` on `topic` raises from poll (None: none before
    the deadline)."""
    consumer = ck.ShareConsumer(share_conf(bootstrap, group))
    try:
        consumer.subscribe([topic])
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            try:
                for m in consumer.poll(0.5):
                    if m.error() is not None:
                        return int(m.error().code())
            except ck.KafkaException as exc:
                return int(exc.args[0].code())
        return None
    finally:
        consumer.close()


def test_share_groups_need_read_on_the_group_and_the_topic(open_broker: BrokerProcess) -> None:
    """confluent-kafka's ShareConsumer, as Kafka authorizes share groups: READ on the group
    (FindCoordinator, ShareGroupHeartbeat) and on each topic (ShareFetch)."""
    b = open_broker
    for t in ("share-open", "share-closed"):
        create_topic(b.bootstrap, t)
    grant(
        b,
        acl(ResourceType.GROUP, "share-denied", AclOperation.READ, AclPermissionType.DENY),
        acl(ResourceType.TOPIC, "share-closed", AclOperation.DESCRIBE),
        acl(ResourceType.TOPIC, "share-closed", AclOperation.READ, AclPermissionType.DENY),
    )
    assert share_refusal(b.bootstrap, "share-denied", "share-open") == GROUP_AUTHORIZATION_FAILED
    assert share_refusal(b.bootstrap, "share-other", "share-closed") == TOPIC_AUTHORIZATION_FAILED
    # A group and a topic no ACL closes: records are delivered.
    allowed = ShareWorker(b.bootstrap, "share-allowed", ["share-open"]).start()
    try:
        prime(b.bootstrap, "share-open", [allowed])
        ck_produce(b.bootstrap, "share-open", [Rec(b"k", b"after-prime")])
        wait_until(lambda: b"after-prime" in allowed.values(), "the allowed share consumer")
        assert allowed.errors == []
    finally:
        allowed.stop()
