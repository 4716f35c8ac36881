"""ACLs and client quotas in a three-broker cluster: kept in ZooKeeper in Kafka's layout,
applied by every broker.

- ACLs created through one broker are in `/kafka-acl/...` and `/kafka-acl-extended/...` in
  Kafka's JSON, announced under the change paths, and the other brokers describe them (and
  decide on them) once their watch fires; a deletion travels the same way;
- ACLs written straight into ZooKeeper with a change notification, as Kafka's own tools do,
  reach every broker;
- a broker started later loads every ACL;
- ACLs created through one broker decide on the others without a restart: a DENY WRITE made
  on broker 1 refuses producers at the leaders on brokers 2 and 3 and a DENY DESCRIBE hides a
  topic from their Metadata; deleted through broker 3, every leader takes the records again;
- client quotas altered through one broker are in /config/users and /config/clients in Kafka's
  format (a user's other configs kept), with /config/changes notifications, and every broker
  describes them; a quota written straight into ZooKeeper reaches them too.

Nothing is timed: every wait polls a condition up to a generous deadline.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from integration.kafka_wire import (
    ConnectionClosed,
    api_versions_request,
    frame,
    request_header,
    roundtrip,
)
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from strom.protocol.messages.alter_client_quotas_request import AlterClientQuotasRequest, OpData
from strom.protocol.messages.alter_client_quotas_request import EntityData as AlterEntity
from strom.protocol.messages.alter_client_quotas_request import EntryData as AlterEntry
from strom.protocol.messages.alter_client_quotas_response import AlterClientQuotasResponse
from strom.protocol.messages.create_acls_request import AclCreation, CreateAclsRequest
from strom.protocol.messages.create_acls_response import CreateAclsResponse
from strom.protocol.messages.delete_acls_request import DeleteAclsFilter, DeleteAclsRequest
from strom.protocol.messages.delete_acls_response import DeleteAclsResponse
from strom.protocol.messages.describe_acls_request import DescribeAclsRequest
from strom.protocol.messages.describe_acls_response import DescribeAclsResponse
from strom.protocol.messages.describe_client_quotas_request import DescribeClientQuotasRequest
from strom.protocol.messages.describe_client_quotas_response import DescribeClientQuotasResponse
from strom.protocol.messages.leader_and_isr_request import LeaderAndIsrRequest
from strom.protocol.messages.leader_and_isr_response import LeaderAndIsrResponse
from strom.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from strom.protocol.messages.metadata_response import MetadataResponse
from strom.protocol.messages.stop_replica_request import StopReplicaRequest
from strom.protocol.messages.stop_replica_response import StopReplicaResponse
from strom.protocol.messages.update_metadata_request import UpdateMetadataRequest
from strom.protocol.messages.update_metadata_response import UpdateMetadataResponse

from .test_replicated_cluster import Cluster, create_topic, full_isr, wait_for

pytestmark = pytest.mark.cluster

AUTHORIZER = {
    "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
    "super.users": "User:ANONYMOUS",
}


@pytest.fixture
def cluster(zk_hosts: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_hosts)
    for broker in c.brokers.values():
        broker.sets.update(AUTHORIZER)
    with c.running():
        yield c


def acls_seen_by(cluster: Cluster, broker_id: int) -> set[tuple[int, str, int, str, int, int]]:
    """Every ACL broker `broker_id` describes (DescribeAcls v1 on the wire, ANY filter)."""
    broker = cluster.brokers[broker_id]
    request = DescribeAclsRequest(
        resource_type_filter=1,
        resource_name_filter=None,
        pattern_type_filter=1,
        principal_filter=None,
        host_filter=None,
        operation=1,
        permission_type=1,
    )
    with socket.create_connection((broker.host, broker.port), timeout=30) as sock:
        answer = roundtrip(sock, frame(request_header(29, 1, 7, "test") + request.encode(1)))
    response = DescribeAclsResponse.decode(answer[4:], 1)
    assert response.error_code == 0
    return {
        (
            r.resource_type,
            r.resource_name,
            r.pattern_type,
            a.principal,
            a.operation,
            a.permission_type,
        )
        for r in response.resources
        for a in r.acls
    }


def test_acls_made_on_one_broker_act_on_every_broker(cluster: Cluster, zk: KazooClient) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.brokers[1].bootstrap})
    literal = AclBinding(
        ResourceType.TOPIC,
        "orders",
        ResourcePatternType.LITERAL,
        "User:alice",
        "*",
        AclOperation.WRITE,
        AclPermissionType.ALLOW,
    )
    prefixed = AclBinding(
        ResourceType.GROUP,
        "billing-",
        ResourcePatternType.PREFIXED,
        "User:bob",
        "*",
        AclOperation.READ,
        AclPermissionType.DENY,
    )
    for fut in admin.create_acls([literal, prefixed]).values():
        assert fut.result(timeout=30) is None

    data, _ = zk.get("/kafka-acl/Topic/orders")
    assert json.loads(data) == {
        "version": 1,
        "acls": [
            {
                "principal": "User:alice",
                "permissionType": "Allow",
                "operation": "Write",
                "host": "*",
            }
        ],
    }
    data, _ = zk.get("/kafka-acl-extended/prefixed/Group/billing-")
    assert json.loads(data)["acls"][0]["permissionType"] == "Deny"
    assert zk.get_children("/kafka-acl-changes")
    changes = zk.get_children("/kafka-acl-extended-changes")
    assert any(
        json.loads(zk.get(f"/kafka-acl-extended-changes/{c}")[0])["name"] == "billing-"
        for c in changes
    )

    expected = {
        (2, "orders", 3, "User:alice", 4, 3),
        (3, "billing-", 4, "User:bob", 3, 2),
    }
    for broker_id in cluster.brokers:
        wait_for(
            f"broker {broker_id} describing the new ACLs",
            lambda b=broker_id: acls_seen_by(cluster, b) == expected,
        )

    # Deleted through another broker: gone from ZooKeeper and from every broker.
    admin3 = AdminClient({"bootstrap.servers": cluster.brokers[3].bootstrap})
    everything_of_bob = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        "User:bob",
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    deleted = admin3.delete_acls([everything_of_bob])[everything_of_bob].result(timeout=30)
    assert [b.name for b in deleted] == ["billing-"]
    assert not zk.exists("/kafka-acl-extended/prefixed/Group/billing-")
    for broker_id in cluster.brokers:
        wait_for(
            f"broker {broker_id} forgetting the deleted ACL",
            lambda b=broker_id: acls_seen_by(cluster, b) == {(2, "orders", 3, "User:alice", 4, 3)},
        )


def test_acls_written_into_zookeeper_reach_every_broker(cluster: Cluster, zk: KazooClient) -> None:
    # What Kafka's kafka-acls.sh --authorizer-properties zookeeper.connect=... writes.
    zk.create(
        "/kafka-acl/TransactionalId/payments",
        json.dumps(
            {
                "version": 1,
                "acls": [
                    {
                        "host": "*",
                        "permissionType": "Allow",
                        "operation": "Write",
                        "principal": "User:svc",
                    }
                ],
            }
        ).encode(),
        makepath=True,
    )
    zk.create("/kafka-acl-changes/acl_changes_", b"TRANSACTIONAL_ID:payments", sequence=True)
    for broker_id in cluster.brokers:
        wait_for(
            f"broker {broker_id} applying the ACL written into ZooKeeper",
            lambda b=broker_id: acls_seen_by(cluster, b) == {(5, "payments", 3, "User:svc", 4, 3)},
        )
    # A broker restarted later loads it from ZooKeeper.
    cluster.brokers[2].restart()
    assert acls_seen_by(cluster, 2) == {(5, "payments", 3, "User:svc", 4, 3)}


def quotas_seen_by(
    cluster: Cluster, broker_id: int
) -> dict[tuple[tuple[str, str | None], ...], dict[str, float]]:
    broker = cluster.brokers[broker_id]
    request = DescribeClientQuotasRequest(components=[], strict=False)
    with socket.create_connection((broker.host, broker.port), timeout=30) as sock:
        answer = roundtrip(sock, frame(request_header(48, 0, 7, "test") + request.encode(0)))
    response = DescribeClientQuotasResponse.decode(answer[4:], 0)
    assert response.error_code == 0
    return {
        tuple((e.entity_type, e.entity_name) for e in entry.entity): {
            v.key: v.value for v in entry.values
        }
        for entry in response.entries or []
    }


def alter_quota(
    cluster: Cluster,
    broker_id: int,
    entity: list[tuple[str, str | None]],
    key: str,
    value: float,
    remove: bool = False,
) -> int:
    broker = cluster.brokers[broker_id]
    request = AlterClientQuotasRequest(
        entries=[
            AlterEntry(
                entity=[AlterEntity(t, n) for t, n in entity], ops=[OpData(key, value, remove)]
            )
        ]
    )
    with socket.create_connection((broker.host, broker.port), timeout=30) as sock:
        answer = roundtrip(sock, frame(request_header(49, 0, 7, "test") + request.encode(0)))
    (entry,) = AlterClientQuotasResponse.decode(answer[4:], 0).entries
    return entry.error_code


def test_quotas_are_in_zookeeper_and_reach_every_broker(cluster: Cluster, zk: KazooClient) -> None:
    # A user whose znode already holds other configs (as SCRAM credentials would be).
    zk.create(
        "/config/users/alice",
        json.dumps(
            {"version": 1, "config": {"SCRAM-SHA-256": "salt=abc,iterations=4096"}}
        ).encode(),
        makepath=True,
    )
    assert alter_quota(cluster, 1, [("user", "alice")], "producer_byte_rate", 1048576) == 0
    assert (
        alter_quota(cluster, 1, [("user", None), ("client-id", "app")], "request_percentage", 25)
        == 0
    )
    assert json.loads(zk.get("/config/users/alice")[0])["config"] == {
        "SCRAM-SHA-256": "salt=abc,iterations=4096",
        "producer_byte_rate": "1048576",
    }
    assert json.loads(zk.get("/config/users/<default>/clients/app")[0])["config"] == {
        "request_percentage": "25.0"
    }
    paths = {
        json.loads(zk.get(f"/config/changes/{c}")[0])["entity_path"]
        for c in zk.get_children("/config/changes")
    }
    assert {"users/alice", "users/<default>/clients/app"} <= paths
    expected = {
        (("user", "alice"),): {"producer_byte_rate": 1048576.0},
        (("user", None), ("client-id", "app")): {"request_percentage": 25.0},
    }
    for broker_id in cluster.brokers:
        wait_for(
            f"broker {broker_id} describing the new quotas",
            lambda b=broker_id: quotas_seen_by(cluster, b) == expected,
        )
    # Written straight into ZooKeeper with a notification, as Kafka's tools do.
    zk.create(
        "/config/clients/batch-job",
        json.dumps({"version": 1, "config": {"consumer_byte_rate": "5000"}}).encode(),
        makepath=True,
    )
    zk.create(
        "/config/changes/config_change_",
        json.dumps({"version": 2, "entity_path": "clients/batch-job"}).encode(),
        sequence=True,
    )
    for broker_id in cluster.brokers:
        wait_for(
            f"broker {broker_id} applying the quota written into ZooKeeper",
            lambda b=broker_id: (("client-id", "batch-job"),) in quotas_seen_by(cluster, b),
        )


def served_from(source: str, host: str, port: int) -> bool:
    """A connection from `source` answers ApiVersions (False: the broker closed it)."""
    with socket.socket() as sock:
        sock.bind((source, 0))
        sock.settimeout(30)
        sock.connect((host, port))
        try:
            return len(roundtrip(sock, api_versions_request())) > 0
        except (OSError, ConnectionClosed):
            return False


def test_ip_connection_rates_reach_every_broker(cluster: Cluster, zk: KazooClient) -> None:
    """connection_creation_rate of an ip entity, altered through one broker: in /config/ips,
    and every broker closes connections from that address beyond it, until it is removed."""
    assert alter_quota(cluster, 1, [("ip", "127.0.0.7")], "connection_creation_rate", 1) == 0
    assert json.loads(zk.get("/config/ips/127.0.0.7")[0])["config"] == {
        "connection_creation_rate": "1"
    }
    for broker in cluster.brokers.values():
        wait_for(
            f"{broker} closing connections from 127.0.0.7 beyond 1 a second",
            lambda b=broker: not all(served_from("127.0.0.7", b.host, b.port) for _ in range(5)),
        )
        assert all(served_from("127.0.0.8", broker.host, broker.port) for _ in range(5))
    assert alter_quota(cluster, 2, [("ip", "127.0.0.7")], "connection_creation_rate", 0, True) == 0
    for broker in cluster.brokers.values():
        wait_for(
            f"{broker} serving 127.0.0.7 again",
            lambda b=broker: all(served_from("127.0.0.7", b.host, b.port) for _ in range(10)),
        )


# Strom's own class name, and no super user: every principal (the brokers' ANONYMOUS too) may
# do what no ACL names, so the ACLs a test creates close exactly what they name.
OPEN_AUTHORIZER = {
    "authorizer.class.name": "strom.security.authorizer.AclAuthorizer",
    "allow.everyone.if.no.acl.found": "true",
}
ANONYMOUS = "User:ANONYMOUS"
ANY, TOPIC, LITERAL, WRITE, DESCRIBE, READ, DENY, ALLOW = 1, 2, 3, 4, 8, 3, 2, 3


@pytest.fixture
def open_cluster(zk_hosts: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, zk_hosts)
    for broker in c.brokers.values():
        broker.sets.update(OPEN_AUTHORIZER)
    with c.running():
        yield c


def wire(
    cluster: Cluster,
    broker_id: int,
    api_key: int,
    version: int,
    body: bytes,
    source: str = "127.0.0.1",
) -> bytes:
    """One request to one broker (not to whichever a client library picks), from `source`;
    the answer's body."""
    broker = cluster.brokers[broker_id]
    with socket.create_connection(
        (broker.host, broker.port), timeout=30, source_address=(source, 0)
    ) as sock:
        answer = roundtrip(sock, frame(request_header(api_key, version, 7, "test") + body))
    return answer[4:]


def topic_error_at(cluster: Cluster, broker_id: int, topic: str) -> int:
    """The error broker `broker_id` answers for `topic` named in a Metadata request."""
    request = MetadataRequest(topics=[MetadataRequestTopic(name=topic)])
    answer = MetadataResponse.decode(wire(cluster, broker_id, 3, 4, request.encode(4)), 4)
    (found,) = answer.topics
    return found.error_code


def produce_to_each_partition(cluster: Cluster, topic: str, partitions: int) -> dict[int, str]:
    """confluent-kafka sends one record to each partition (so to each partition's leader); the
    outcome per partition: "ok" or the error's name."""
    producer = ck.Producer(
        {
            "bootstrap.servers": cluster.bootstrap(),
            "enable.idempotence": False,
            "message.timeout.ms": 20_000,
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    outcome: dict[int, str] = {}

    def delivered(err: ck.KafkaError | None, msg: ck.Message) -> None:
        outcome[msg.partition()] = "ok" if err is None else err.name()

    for partition in range(partitions):
        producer.produce(topic, b"v", partition=partition, on_delivery=delivered)
    assert producer.flush(60) == 0
    return outcome


def test_acl_changes_decide_on_every_broker(open_cluster: Cluster) -> None:
    c = open_cluster
    create_topic(c, "guarded", 3, 3)
    create_topic(c, "secret", 1, 3)
    wait_for("guarded fully replicated", lambda: full_isr(c, "guarded", 3))
    leaders = {p.leader for p in c.partitions("guarded").values()}
    assert leaders == {1, 2, 3}
    assert produce_to_each_partition(c, "guarded", 3) == {0: "ok", 1: "ok", 2: "ok"}
    for broker_id in c.brokers:
        assert topic_error_at(c, broker_id, "secret") == 0

    # Through broker 1 only: guarded readable (so describable) but not writable; secret hidden.
    creations = [
        AclCreation(TOPIC, "guarded", LITERAL, ANONYMOUS, "*", READ, ALLOW),
        AclCreation(TOPIC, "guarded", LITERAL, ANONYMOUS, "*", WRITE, DENY),
        AclCreation(TOPIC, "secret", LITERAL, ANONYMOUS, "*", DESCRIBE, DENY),
    ]
    created = CreateAclsResponse.decode(
        wire(c, 1, 30, 1, CreateAclsRequest(creations=creations).encode(1)), 1
    )
    assert [r.error_code for r in created.results] == [0, 0, 0]

    for broker_id in c.brokers:
        wait_for(
            f"broker {broker_id} hiding secret",
            lambda b=broker_id: topic_error_at(c, b, "secret") == 29,  # TOPIC_AUTHORIZATION_FAILED
        )
    wait_for(
        "every leader refusing the producer",
        lambda: (
            set(produce_to_each_partition(c, "guarded", 3).values())
            == {"TOPIC_AUTHORIZATION_FAILED"}
        ),
    )

    # Deleted through broker 3 (guarded's READ too: a topic with any ACL is closed to what its
    # ACLs do not allow): every leader takes records again, every broker shows secret.
    delete = DeleteAclsRequest(
        filters=[
            DeleteAclsFilter(TOPIC, "guarded", LITERAL, None, None, ANY, ANY),
            DeleteAclsFilter(TOPIC, "secret", LITERAL, ANONYMOUS, "*", DESCRIBE, DENY),
        ]
    )
    deleted = DeleteAclsResponse.decode(wire(c, 3, 31, 1, delete.encode(1)), 1)
    assert [len(r.matching_acls) for r in deleted.filter_results] == [2, 1]
    for broker_id in c.brokers:
        wait_for(
            f"broker {broker_id} showing secret again",
            lambda b=broker_id: topic_error_at(c, b, "secret") == 0,
        )
    wait_for(
        "every leader taking records again",
        lambda: produce_to_each_partition(c, "guarded", 3) == {0: "ok", 1: "ok", 2: "ok"},
    )


def test_controller_requests_need_cluster_action(open_cluster: Cluster) -> None:
    """LeaderAndIsr, StopReplica and UpdateMetadata are authorized before anything else: with
    CLUSTER_ACTION denied to 127.0.0.2 (the brokers talk from 127.0.0.1), a request from there
    is refused with CLUSTER_AUTHORIZATION_FAILED by every broker, one from 127.0.0.1 gets
    past it (to the controller-epoch checks)."""
    c = open_cluster
    # Once the cluster has an ACL, allow.everyone.if.no.acl.found no longer opens it: ALL for
    # everyone, with CLUSTER_ACTION denied from 127.0.0.2 (DENY wins).
    creations = [
        AclCreation(4, "kafka-cluster", LITERAL, ANONYMOUS, "*", 2, ALLOW),
        AclCreation(4, "kafka-cluster", LITERAL, ANONYMOUS, "127.0.0.2", 9, DENY),
    ]
    created = CreateAclsResponse.decode(
        wire(c, 1, 30, 1, CreateAclsRequest(creations=creations).encode(1)), 1
    )
    assert [r.error_code for r in created.results] == [0, 0]
    requests = [
        (4, 2, LeaderAndIsrRequest(controller_id=1).encode(2), LeaderAndIsrResponse),
        (5, 1, StopReplicaRequest(controller_id=1).encode(1), StopReplicaResponse),
        (6, 5, UpdateMetadataRequest(controller_id=1).encode(5), UpdateMetadataResponse),
    ]

    def error(broker_id: int, api_key: int, source: str) -> int:
        for key, version, body, response_type in requests:
            if key == api_key:
                answer = wire(c, broker_id, key, version, body, source)
                return int(response_type.decode(answer, version).error_code)
        raise AssertionError(api_key)

    for broker_id in c.brokers:
        for api_key, _, _, _ in requests:
            wait_for(
                f"broker {broker_id} refusing API {api_key} from 127.0.0.2",
                lambda b=broker_id, k=api_key: error(b, k, "127.0.0.2") == 31,
            )
            assert error(broker_id, api_key, "127.0.0.1") != 31
    # The brokers themselves (127.0.0.1) still replicate: a new topic gets its full ISR.
    create_topic(c, "after-deny", 1, 3)
    wait_for("after-deny fully replicated", lambda: full_isr(c, "after-deny", 1))
