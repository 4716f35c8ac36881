"""Client quotas with real clients.

- DescribeClientQuotas / AlterClientQuotas through kafka-python's client (its protocol
  classes: neither kafka-python's nor confluent-kafka's admin API has quota calls): every
  entity kind, Kafka's filters, removal, Kafka's refusals, kept across a restart;
- a producer over its producer_byte_rate and a consumer over its consumer_byte_rate get
  throttle_time_ms (confluent-kafka's throttle callback reports it) and their achieved rate is
  held near the quota, while a client without a quota is never throttled;
- request_percentage throttles too; a connection muted for a throttle reads nothing more until
  the throttle time has passed, and an old client's answer waits that time.

Nothing is timed against an upper bound: rates are asserted with generous margins over a window
of several seconds, and waits only from below (a throttled client cannot be faster).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import confluent_kafka as ck
import kafka
import kafka.errors
import pytest
from kafka.protocol.admin import AlterClientQuotasRequest, DescribeClientQuotasRequest

from strom.protocol.messages.create_topics_request import CreatableTopic, CreateTopicsRequest
from strom.protocol.messages.create_topics_response import CreateTopicsResponse
from strom.protocol.messages.metadata_request import MetadataRequest
from strom.protocol.messages.metadata_response import MetadataResponse

from .broker_process import BrokerProcess
from .clients import DEADLINE_S, ck_conf, create_topic
from .conftest import BrokerFactory
from .kafka_wire import frame, recv_frame, request_header

pytestmark = pytest.mark.integration

EXACT, DEFAULT, SPECIFIED = 0, 1, 2


class QuotaAdmin:
    """kafka-python's KafkaAdminClient sending its own DescribeClientQuotas and
    AlterClientQuotas request classes."""

    def __init__(self, bootstrap: str) -> None:
        self.admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)

    def close(self) -> None:
        self.admin.close()

    def _send(self, request: Any) -> Any:
        manager = self.admin._manager

        async def call() -> Any:
            return await manager.send(request)

        return manager.run(call)

    def alter(
        self,
        entity: dict[str, str | None],
        ops: dict[str, float | None],
        validate_only: bool = False,
    ) -> tuple[int, str | None]:
        request = AlterClientQuotasRequest(
            entries=[
                (
                    list(entity.items()),
                    [(k, 0.0 if v is None else v, v is None) for k, v in ops.items()],
                )
            ],
            validate_only=validate_only,
        )
        (entry,) = self._send(request).entries
        return entry.error_code, entry.error_message

    def describe(
        self, components: list[tuple[str, int, str | None]], strict: bool = False
    ) -> dict[tuple[tuple[str, str | None], ...], dict[str, float]]:
        response = self._send(DescribeClientQuotasRequest(components=components, strict=strict))
        assert response.error_code == 0, response
        return {
            tuple(sorted((e.entity_type, e.entity_name) for e in entry.entity)): {
                v.key: v.value for v in entry.values
            }
            for entry in response.entries
        }

    def describe_error(self, components: list[tuple[str, int, str | None]]) -> tuple[int, str]:
        response = self._send(DescribeClientQuotasRequest(components=components, strict=False))
        return response.error_code, response.error_message


@pytest.fixture
def admin_of() -> Iterator[Any]:
    made: list[QuotaAdmin] = []

    def make(b: BrokerProcess) -> QuotaAdmin:
        made.append(QuotaAdmin(b.bootstrap))
        return made[-1]

    yield make
    for a in made:
        a.close()


def test_quotas_are_set_described_and_removed(broker_factory: BrokerFactory, admin_of: Any) -> None:
    b = broker_factory()
    admin = admin_of(b)
    assert admin.alter(
        {"user": "alice"}, {"producer_byte_rate": 1024, "request_percentage": 50.5}
    ) == (0, None)
    assert admin.alter({"user": "alice", "client-id": "app"}, {"consumer_byte_rate": 2048}) == (
        0,
        None,
    )
    assert admin.alter({"user": None}, {"producer_byte_rate": 4096}) == (0, None)
    assert admin.alter({"client-id": "app"}, {"consumer_byte_rate": 100}) == (0, None)
    assert admin.alter({"client-id": None}, {"controller_mutation_rate": 3}) == (0, None)
    assert admin.alter({"ip": "10.1.2.3"}, {"connection_creation_rate": 7}) == (0, None)

    everything = admin.describe([])
    assert everything == {
        (("user", "alice"),): {"producer_byte_rate": 1024.0, "request_percentage": 50.5},
        (("client-id", "app"), ("user", "alice")): {"consumer_byte_rate": 2048.0},
        (("user", None),): {"producer_byte_rate": 4096.0},
        (("client-id", "app"),): {"consumer_byte_rate": 100.0},
        (("client-id", None),): {"controller_mutation_rate": 3.0},
        (("ip", "10.1.2.3"),): {"connection_creation_rate": 7.0},
    }
    # Kafka's filters: an exact user (with its client ids unless strict), the default user,
    # any client id, strict.
    assert set(admin.describe([("user", EXACT, "alice")])) == {
        (("user", "alice"),),
        (("client-id", "app"), ("user", "alice")),
    }
    assert set(admin.describe([("user", EXACT, "alice")], strict=True)) == {(("user", "alice"),)}
    assert set(admin.describe([("user", DEFAULT, None)])) == {(("user", None),)}
    assert set(admin.describe([("client-id", SPECIFIED, None)], strict=True)) == {
        (("client-id", "app"),),
        (("client-id", None),),
    }
    assert set(admin.describe([("ip", SPECIFIED, None)])) == {(("ip", "10.1.2.3"),)}

    # Removing a key keeps the others; removing the last one removes the entity.
    assert admin.alter({"user": "alice"}, {"request_percentage": None}) == (0, None)
    assert admin.alter({"client-id": "app"}, {"consumer_byte_rate": None}) == (0, None)
    now = admin.describe([])
    assert now[(("user", "alice"),)] == {"producer_byte_rate": 1024.0}
    assert (("client-id", "app"),) not in now

    # Kept in the data directory in Kafka's entity paths, and across a restart.
    stored = json.loads((b.data_dir / "strom-security.json").read_text())["entity_configs"]
    assert stored["users/alice"] == {"producer_byte_rate": "1024"}
    assert stored["users/<default>"] == {"producer_byte_rate": "4096"}
    assert stored["users/alice/clients/app"] == {"consumer_byte_rate": "2048"}
    b.restart()
    assert admin_of(b).describe([]) == now


def test_quota_refusals(broker_factory: BrokerFactory, admin_of: Any) -> None:
    b = broker_factory()
    admin = admin_of(b)
    code, message = admin.alter({"user": "bob"}, {"producer_byte_rate": 10.5})
    assert (code, message) == (42, "Configuration producer_byte_rate must be a LONG value")
    code, message = admin.alter({"user": "bob"}, {"no_such_quota": 1})
    assert (code, message) == (42, "Invalid configuration key no_such_quota")
    code, message = admin.alter({"user": "bob", "ip": "1.2.3.4"}, {"producer_byte_rate": 1})
    assert code == 42 and "IP entity should not be used" in (message or "")
    code, _ = admin.alter({"ip": "not an address"}, {"connection_creation_rate": 1})
    assert code == 42
    assert admin.alter({"user": "bob"}, {"producer_byte_rate": 5}, validate_only=True) == (0, None)
    assert admin.describe([]) == {}
    assert admin.describe_error([("user", EXACT, "a"), ("user", EXACT, "b")]) == (
        42,
        "Duplicate user filter component entity type",
    )
    assert admin.describe_error([("planet", EXACT, "mars")])[0] == 35  # UNSUPPORTED_VERSION


def set_quota(
    b: BrokerProcess, entity: dict[str, str | None], ops: dict[str, float | None]
) -> None:
    admin = QuotaAdmin(b.bootstrap)
    try:
        assert admin.alter(entity, ops) == (0, None)
    finally:
        admin.close()


def produce_for(
    bootstrap: str, topic: str, client_id: str, seconds: float
) -> tuple[int, list[int]]:
    """Produce 10 kB records as fast as the client goes for `seconds`; (bytes acknowledged,
    throttle times the client was told)."""
    throttles: list[int] = []
    acked = [0]

    def on_throttle(event: Any) -> None:
        throttles.append(int(event.throttle_time * 1000))

    p = ck.Producer(
        ck_conf(
            bootstrap,
            **{
                "client.id": client_id,
                "throttle_cb": on_throttle,
                "linger.ms": 5,
                "batch.size": 64 * 1024,
                "queue.buffering.max.kbytes": 256,
            },
        )
    )
    value = b"x" * 10_000

    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            acked[0] += len(value)

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            p.produce(topic, value=value, on_delivery=delivered)
        except BufferError:
            p.poll(0.05)
        p.poll(0)
    p.flush(DEADLINE_S)
    p.poll(0)
    return acked[0], throttles


def test_a_producer_over_its_quota_is_throttled(broker_factory: BrokerFactory) -> None:
    b = broker_factory()
    create_topic(b.bootstrap, "metered")
    quota = 100_000  # bytes per second
    set_quota(b, {"client-id": "slow-writer"}, {"producer_byte_rate": quota})
    seconds = 8.0
    started = time.monotonic()
    sent, throttles = produce_for(b.bootstrap, "metered", "slow-writer", seconds)
    elapsed = time.monotonic() - started
    assert throttles and max(throttles) > 0, "the producer was never told to slow down"
    # Held near the quota over the window: a burst of one window is allowed (the rate is
    # averaged over ~10 s), so allow twice the quota's worth on top.
    assert sent <= quota * (elapsed + 2 * 11), (sent, elapsed)
    # A client without a quota is not throttled.
    free_sent, free_throttles = produce_for(b.bootstrap, "metered", "free-writer", 2.0)
    assert free_throttles == [] or max(free_throttles) == 0
    assert free_sent > 0


def test_a_consumer_over_its_quota_is_throttled(broker_factory: BrokerFactory) -> None:
    b = broker_factory()
    create_topic(b.bootstrap, "metered-read")
    produce_for(b.bootstrap, "metered-read", "filler", 3.0)
    set_quota(b, {"client-id": "slow-reader"}, {"consumer_byte_rate": 50_000})
    throttles: list[int] = []
    c = ck.Consumer(
        ck_conf(
            b.bootstrap,
            **{
                "client.id": "slow-reader",
                "group.id": "metered-readers",
                "auto.offset.reset": "earliest",
                "throttle_cb": lambda event: throttles.append(int(event.throttle_time * 1000)),
            },
        )
    )
    try:
        c.subscribe(["metered-read"])
        read = 0
        end = time.monotonic() + 8.0
        while time.monotonic() < end:
            msg = c.poll(0.2)
            if msg is not None and msg.error() is None:
                read += len(msg.value())
        assert throttles and max(throttles) > 0
        assert read > 0
    finally:
        c.close()


def raw_metadata(sock: socket.socket, version: int, correlation_id: int) -> MetadataResponse:
    body = MetadataRequest(topics=[], allow_auto_topic_creation=False).encode(version)
    sock.sendall(frame(request_header(3, version, correlation_id, "busy-client") + body))
    answer = recv_frame(sock)
    return MetadataResponse.decode(answer[4:], version)


def test_request_percentage_mutes_the_connection(broker_factory: BrokerFactory) -> None:
    b = broker_factory()
    # A tiny share of a request handler's time: a burst of requests goes over it.
    set_quota(b, {"client-id": "busy-client"}, {"request_percentage": 0.001})
    with socket.create_connection((b.host, b.port), timeout=30) as sock:
        throttle = 0
        for i in range(200):
            throttle = raw_metadata(sock, 8, i).throttle_time_ms
            if throttle > 0:
                break
        assert throttle > 0, "never throttled"
        # The connection is muted: the next answer cannot come before the throttle time.
        sent = time.monotonic()
        raw_metadata(sock, 8, 1000)
        assert time.monotonic() - sent >= throttle / 1000.0 * 0.9
    # An old client (Metadata v5: Kafka does not have it throttle itself) gets its throttled
    # answer only after the throttle time.
    with socket.create_connection((b.host, b.port), timeout=30) as sock:
        for i in range(200):
            sent = time.monotonic()
            answer = raw_metadata(sock, 5, i)
            if answer.throttle_time_ms > 0:
                assert time.monotonic() - sent >= answer.throttle_time_ms / 1000.0 * 0.9
                break
        else:
            pytest.fail("never throttled")


def create_topics_v6(b: BrokerProcess, client_id: str, name: str, partitions: int) -> Any:
    """CreateTopics v6 (strict mutation quota) on its own connection; the response."""
    request = CreateTopicsRequest(
        topics=[CreatableTopic(name=name, num_partitions=partitions, replication_factor=1)],
        timeout_ms=30_000,
    )
    header = request_header(19, 6, 1, client_id) + b"\x00"  # header v2: no tagged fields
    with socket.create_connection((b.host, b.port), timeout=30) as sock:
        sock.sendall(frame(header + request.encode(6)))
        answer = recv_frame(sock)
    return CreateTopicsResponse.decode(answer[5:], 6)  # correlation id + no tagged fields


def test_controller_mutation_rate_refuses_topics_past_the_burst(
    broker_factory: BrokerFactory,
) -> None:
    b = broker_factory()
    # 1 partition per second: a burst of 11 (11 one-second samples), then nothing.
    set_quota(b, {"client-id": "creator"}, {"controller_mutation_rate": 1})
    first = create_topics_v6(b, "creator", "big-first", 20)
    # The bucket had tokens: created, leaving it in debt, which the client is told to wait.
    assert first.topics[0].error_code == 0
    assert first.throttle_time_ms > 0
    second = create_topics_v6(b, "creator", "big-second", 1)
    assert second.topics[0].error_code == 89  # THROTTLING_QUOTA_EXCEEDED
    assert second.topics[0].error_message == "The throttling quota has been exceeded."
    # kafka-python's admin client honours the throttle time itself (KIP-219).
    admin = kafka.KafkaAdminClient(bootstrap_servers=b.bootstrap, client_id="creator")
    try:
        with pytest.raises(
            (kafka.errors.ThrottlingQuotaExceededError, kafka.errors.NodeNotReadyError)
        ):
            admin.create_topics([kafka.admin.NewTopic("big-third", 1, 1)])
    finally:
        admin.close()
    # Another client id has no such quota.
    assert create_topics_v6(b, "someone-else", "big-other", 20).topics[0].error_code == 0
