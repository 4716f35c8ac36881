"""Writing transaction markers on the partitions this broker leads.

One path for both users of it: the transaction coordinator (its own partitions, and every
partition on a single broker) and the WriteTxnMarkers handler (markers another broker's
coordinator sends). A marker on a user partition goes through the partition log; on a
`__consumer_offsets` partition through the group runtime, whose shard turns the producer's
pending transactional offsets into committed ones (or drops them). In cluster mode the writer
then waits, like an acks=all produce, until the ISR has the marker.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.runtime.group_runtime import OFFSETS_TOPIC
from strom.storage.producer_append import ProducerStateError

if TYPE_CHECKING:
    from strom.runtime.host import BrokerHost

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class TxnMarker:
    """One transaction's COMMIT or ABORT marker, for some partitions."""

    producer_id: int
    producer_epoch: int
    commit: bool
    coordinator_epoch: int
    partitions: tuple[TopicPartition, ...]


def append_marker(
    broker: BrokerHost, marker: TxnMarker, topic: str, index: int
) -> tuple[ErrorCode, int]:
    """Append `marker` to one partition: (NONE, log end after it) or (error, -1). Errors:
    UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER and NOT_ENOUGH_REPLICAS (cluster mode),
    INVALID_PRODUCER_EPOCH and TRANSACTION_COORDINATOR_FENCED (the partition already saw a
    newer producer epoch or coordinator epoch)."""
    record = broker.metadata.get_topic(topic)
    if record is None or not 0 <= index < record.num_partitions:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1
    cluster = broker.cluster
    if cluster is not None:
        code = cluster.replicas.check_produce(topic, index, -1)
        if code != ErrorCode.NONE:
            return code, -1
    args = (marker.producer_id, marker.producer_epoch, marker.coordinator_epoch, marker.commit)
    try:
        if topic == OFFSETS_TOPIC:
            end = broker.groups.write_marker(index, *args)
            if end is None:
                return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1
            return ErrorCode.NONE, end
        partition_log = broker.partition_log(topic, index)
        if partition_log is None:
            offline = broker.logs.is_offline(topic, index)
            return (
                ErrorCode.KAFKA_STORAGE_ERROR if offline else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            ), -1
        partition_log.append_marker(*args, broker.leader_epoch(topic, index), broker.clock.now_ms())
    except ProducerStateError as exc:
        return ErrorCode(exc.error_code), -1
    except OSError as exc:
        failed = broker.partition_log(topic, index)
        if failed is not None:
            broker.logs.io_failed(failed, exc)
        return ErrorCode.KAFKA_STORAGE_ERROR, -1
    end = partition_log.log_end_offset
    broker.after_append(topic, index)
    return ErrorCode.NONE, end


async def write_markers(
    broker: BrokerHost, markers: list[TxnMarker], timeout_ms: int
) -> list[dict[TopicPartition, ErrorCode]]:
    """Append every marker, then (cluster mode) wait until the ISR has them: one code per
    partition of each marker. A marker the ISR did not take in time answers REQUEST_TIMED_OUT
    (or NOT_ENOUGH_REPLICAS_AFTER_APPEND, NOT_LEADER_OR_FOLLOWER), and the coordinator
    writes it again."""
    results: list[dict[TopicPartition, ErrorCode]] = []
    appended: list[tuple[dict[TopicPartition, ErrorCode], TopicPartition, int]] = []
    for marker in markers:
        codes: dict[TopicPartition, ErrorCode] = {}
        for topic, index in marker.partitions:
            code, end = append_marker(broker, marker, topic, index)
            codes[(topic, index)] = code
            if code == ErrorCode.NONE:
                appended.append((codes, (topic, index), end))
        results.append(codes)
    cluster = broker.cluster
    if cluster is not None and appended:
        outcomes = await asyncio.gather(
            *(
                cluster.replicas.await_replicated(topic, index, end, timeout_ms)
                for _, (topic, index), end in appended
            )
        )
        for (codes, tp, _), code in zip(appended, outcomes, strict=True):
            codes[tp] = code
    return results
