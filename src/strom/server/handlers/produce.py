"""Produce (key 0), versions 0-11: validate record batches and append them unchanged.

Versions 0-2 may carry message format v0/v1 (magic 0/1 message sets): those are validated record
by record and converted to one record batch v2 before the append, as Kafka 3.x does
(protocol/records/up_conversion.py has the rules); a v2 batch in them takes the path below.
Version 3-6 refuse zstd batches (UNSUPPORTED_COMPRESSION_TYPE), as Kafka does.

Per partition: exactly one record batch v2 (as Kafka requires from v3), validated at batch
granularity by `validate_batches` (magic, lengths, CRC-32C, count, size against
max.message.bytes) and its header timestamps against message.timestamp.before/after.max.ms;
then the log assigns offsets and the partition leader epoch in place and appends the
request's own bytes. Records are only decoded where a
feature needs them: compacted topics refuse records without a key, and a topic whose
compression.type names another codec than the batch's (not `producer`) stores the batch
rebuilt in its codec at its compression.<codec>.level, as Kafka's LogValidator does
(protocol/records/recompression.py); the rebuilt batch is checked against max.message.bytes
again (MESSAGE_TOO_LARGE).

Idempotent and transactional producers (a batch with a producer id): the log checks the batch
against its producer state before assigning offsets (storage/producer_state.py has the rules):
a retry of one of the producer's last five batches is answered NONE with the original base
offset and not written again; an out-of-order sequence is OUT_OF_ORDER_SEQUENCE_NUMBER, an old
epoch INVALID_PRODUCER_EPOCH, a plain batch inside an open transaction INVALID_TXN_STATE, each
with base offset -1 and no message, as Kafka answers. Batches without a producer id (-1) skip
producer state entirely. Not done: Kafka 4.0's transaction verification (asking the
coordinator whether the partition was added to the transaction before the first transactional
batch is accepted; transaction.partition.verification.enable).

With an authorizer: transactional batches need WRITE on the transactional id (every partition
TRANSACTIONAL_ID_AUTHORIZATION_FAILED otherwise), each topic WRITE (TOPIC_AUTHORIZATION_FAILED).
A producer_byte_rate quota counts the request's bytes; over it, the answer carries
throttle_time_ms and the connection is muted for that time (server/throttle.py).

acks=0 gets no response; acks=1 is answered once the leader has appended; acks=-1 (all) waits in
the produce purgatory until the high watermark passes the batch (immediately on a single
broker, whose ISR is itself).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from strom.protocol.compression import CODEC_ZSTD
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.produce_request import PartitionProduceData, ProduceRequest
from strom.protocol.messages.produce_response import (
    BatchIndexAndErrorMessage,
    PartitionProduceResponse,
    ProduceResponse,
    TopicProduceResponse,
)
from strom.protocol.records.batch_header import BatchHeader
from strom.protocol.records.codec import Record, decode_records
from strom.protocol.records.errors import RecordError
from strom.protocol.records.legacy import is_legacy
from strom.protocol.records.recompression import TOPIC_CODECS, recompress, topic_codec_level
from strom.protocol.records.up_conversion import AppendRules, up_convert
from strom.protocol.records.validation import check_timestamps, validate_batches
from strom.security.acl import AclOperation, ResourceType
from strom.server.authz import authorize, authorized_names
from strom.server.context import RequestContext
from strom.server.registry import handles
from strom.server.throttle import client_of, user_of
from strom.storage.log_config import LogConfig
from strom.storage.partition_log import PartitionLog
from strom.storage.producer_state import ProducerStateError

VALID_ACKS = (-1, 0, 1)
NOTHING_DENIED: frozenset[str] = frozenset()
# A record batch v2's magic byte and the low byte of its attributes (transactional: 0x10).
_MAGIC_AT, _ATTRIBUTES_LOW_AT, _TRANSACTIONAL = 16, 22, 0x10


def _error(index: int, code: ErrorCode, message: str | None = None) -> PartitionProduceResponse:
    return PartitionProduceResponse(
        index=index,
        error_code=code,
        base_offset=-1,
        log_append_time_ms=-1,
        log_start_offset=-1,
        error_message=message,
    )


def _append(
    ctx: RequestContext, topic: str, data: PartitionProduceData, now_ms: int, version: int
) -> tuple[PartitionProduceResponse, PartitionLog | None, int]:
    """Append one partition's batch; returns its response, its log and its last offset."""
    broker = ctx.broker
    partition_log = broker.partition_log(topic, data.index)
    if partition_log is None:
        return _error(data.index, broker.missing_log_error(topic, data.index)), None, -1
    records = data.records
    if records is None or len(records) == 0:
        return _error(data.index, ErrorCode.INVALID_RECORD, "no record batch"), None, -1
    cfg = partition_log.config
    view = records if isinstance(records, memoryview) else memoryview(bytearray(records))
    if version < 3 and is_legacy(view):
        # Message format v0/v1: validated record by record and converted to one v2 batch.
        rules = AppendRules(
            now_ms=now_ms,
            compression_type=cfg.compression_type,
            compression_level=_topic_level(cfg, TOPIC_CODECS.get(cfg.compression_type)),
            create_time=cfg.message_timestamp_type == "CreateTime",
            timestamp_before_max_ms=cfg.message_timestamp_before_max_ms,
            timestamp_after_max_ms=cfg.message_timestamp_after_max_ms,
            compacted=cfg.compact,
            max_message_bytes=cfg.max_message_bytes,
        )
        try:
            converted = up_convert(view, rules)
        except RecordError as exc:
            return _error(data.index, ErrorCode(exc.error_code), str(exc)), None, -1
        converted_view = memoryview(converted.batch)
        return _append_batch(
            ctx, topic, data.index, partition_log, converted_view, [converted.header], now_ms
        )
    try:
        batches = validate_batches(view, max_batch_size=cfg.max_message_bytes)
    except RecordError as exc:
        return _error(data.index, ErrorCode(exc.error_code), str(exc)), None, -1
    batch = batches[0]
    if 3 <= version < 7 and batch.compression == CODEC_ZSTD:
        message = f"Produce requests with version {version} are not allowed to use ZStandard"
        return _error(data.index, ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, message), None, -1
    if cfg.message_timestamp_type == "CreateTime" and not check_timestamps(
        batch, now_ms, cfg.message_timestamp_before_max_ms, cfg.message_timestamp_after_max_ms
    ):
        return (
            _error(
                data.index,
                ErrorCode.INVALID_TIMESTAMP,
                f"Timestamp {batch.max_timestamp} of batch is out of range "
                "(message.timestamp.before.max.ms / message.timestamp.after.max.ms)",
            ),
            None,
            -1,
        )
    decoded: list[Record] | None = None
    if cfg.compact and not batch.is_control:
        try:
            _, decoded = decode_records(view)
        except RecordError as exc:
            return _error(data.index, ErrorCode(exc.error_code), str(exc)), None, -1
        if any(record.key is None for record in decoded):
            message = f"Compacted topic cannot accept message without key in topic partition {topic}-{data.index}."
            response = _error(data.index, ErrorCode.INVALID_RECORD, message)
            response.record_errors = [
                BatchIndexAndErrorMessage(batch_index=i, batch_index_error_message=message)
                for i, record in enumerate(decoded)
                if record.key is None
            ]
            return response, None, -1
    if cfg.compression_type != "producer":
        codec = TOPIC_CODECS[cfg.compression_type]
        if codec != batch.compression:
            return _append_recompressed(
                ctx, topic, data.index, partition_log, view, batch, codec, decoded, now_ms
            )
    return _append_batch(ctx, topic, data.index, partition_log, view, batches, now_ms)


def _topic_level(cfg: LogConfig, codec: int | None) -> int | None:
    if codec is None:
        return None
    return topic_codec_level(
        codec, cfg.compression_gzip_level, cfg.compression_lz4_level, cfg.compression_zstd_level
    )


def _append_recompressed(
    ctx: RequestContext,
    topic: str,
    index: int,
    partition_log: PartitionLog,
    view: memoryview,
    batch: BatchHeader,
    codec: int,
    decoded: list[Record] | None,
    now_ms: int,
) -> tuple[PartitionProduceResponse, PartitionLog | None, int]:
    """Append the batch rebuilt in the topic's codec (protocol/records/recompression.py)."""
    cfg = partition_log.config
    try:
        rebuilt = recompress(view, batch, codec, _topic_level(cfg, codec), decoded)
    except RecordError as exc:
        return _error(index, ErrorCode(exc.error_code), str(exc)), None, -1
    if len(rebuilt.batch) > cfg.max_message_bytes:
        message = (
            f"Message batch size is {len(rebuilt.batch)} bytes in append to partition "
            f"{topic}-{index} which exceeds the maximum configured size of {cfg.max_message_bytes}."
        )
        return _error(index, ErrorCode.MESSAGE_TOO_LARGE, message), None, -1
    return _append_batch(
        ctx, topic, index, partition_log, memoryview(rebuilt.batch), [rebuilt.header], now_ms
    )


def _append_batch(
    ctx: RequestContext,
    topic: str,
    index: int,
    partition_log: PartitionLog,
    view: memoryview,
    batches: list[BatchHeader],
    now_ms: int,
) -> tuple[PartitionProduceResponse, PartitionLog | None, int]:
    """Append validated batches and answer for them."""
    broker = ctx.broker
    try:
        result = partition_log.append_as_leader(
            view, batches, broker.leader_epoch(topic, index), now_ms
        )
    except ProducerStateError as exc:
        return _error(index, ErrorCode(exc.error_code)), None, -1
    except OSError as exc:  # out of descriptors or disk space, or the disk failed: nothing kept
        failure = broker.storage_failure(f"appending to {topic}-{index}", exc, partition_log)
        return _error(index, failure.code, failure.message), None, -1
    if result.duplicate:
        # Already in the log: answer as the first time (Kafka sends the batch's timestamp as
        # log_append_time_ms for a duplicate, whatever the topic's timestamp type).
        response = PartitionProduceResponse(
            index=index,
            error_code=ErrorCode.NONE,
            base_offset=result.first_offset,
            log_append_time_ms=result.log_append_time_ms,
            log_start_offset=result.log_start_offset,
        )
        return response, partition_log, result.last_offset
    broker.after_append(topic, index, partition_log)
    broker.metrics.produced(topic, len(view), sum(b.records_count for b in batches))
    if partition_log.needs_flush(now_ms):
        broker.request_flush(partition_log)
    response = PartitionProduceResponse(
        index=index,
        error_code=ErrorCode.NONE,
        base_offset=result.first_offset,
        log_append_time_ms=result.log_append_time_ms,
        log_start_offset=result.log_start_offset,
    )
    return response, partition_log, result.last_offset


def _has_transactional_records(request: ProduceRequest) -> bool:
    for topic in request.topic_data:
        for data in topic.partition_data:
            records = data.records
            if (
                records is not None
                and len(records) > _ATTRIBUTES_LOW_AT
                and records[_MAGIC_AT] == 2
                and records[_ATTRIBUTES_LOW_AT] & _TRANSACTIONAL
            ):
                return True
    return False


def _denied_topics(ctx: RequestContext, request: ProduceRequest) -> frozenset[str] | None:
    """Kafka's checks: transactional records need WRITE on the transactional id (None: the
    whole request is refused), every topic WRITE (the topics refused)."""
    if _has_transactional_records(request) and (
        request.transactional_id is None
        or not authorize(
            ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, request.transactional_id
        )
    ):
        return None
    names = [t.name for t in request.topic_data]
    return frozenset(names) - authorized_names(ctx, AclOperation.WRITE, ResourceType.TOPIC, names)


@handles(0, 0, 11)
def handle_produce(
    ctx: RequestContext, request: ProduceRequest
) -> ProduceResponse | Awaitable[ProduceResponse] | None:
    now_ms = ctx.broker.clock.now_ms()
    acks = request.acks
    quota = ctx.broker.quotas.produce
    if quota.enabled:  # producer_byte_rate: the request's bytes (server/throttle.py)
        ctx.throttle_ms = quota.record(user_of(ctx), client_of(ctx), len(ctx.frame), now_ms)
    denied = NOTHING_DENIED
    if ctx.broker.authorizer is not None:
        topics_refused = _denied_topics(ctx, request)
        if topics_refused is None:
            if acks == 0:
                return None
            return ProduceResponse(
                responses=[
                    TopicProduceResponse(
                        name=t.name,
                        partition_responses=[
                            _error(d.index, ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                            for d in t.partition_data
                        ],
                    )
                    for t in request.topic_data
                ]
            )
        denied = topics_refused
    topics: list[TopicProduceResponse] = []
    # (response, log, last offset) of each successful append, for acks=all.
    appended: list[tuple[PartitionProduceResponse, PartitionLog, int]] = []
    cluster = ctx.broker.cluster
    for topic in request.topic_data:
        partitions: list[PartitionProduceResponse] = []
        for data in topic.partition_data:
            if acks not in VALID_ACKS:
                partitions.append(_error(data.index, ErrorCode.INVALID_REQUIRED_ACKS))
                continue
            if topic.name in denied:
                partitions.append(_error(data.index, ErrorCode.TOPIC_AUTHORIZATION_FAILED))
                continue
            if cluster is not None:  # cluster mode: only the leader appends
                refused = cluster.replicas.check_produce(topic.name, data.index, acks)
                if refused != ErrorCode.NONE:
                    partitions.append(_error(data.index, refused))
                    continue
            response, partition_log, last_offset = _append(
                ctx, topic.name, data, now_ms, ctx.api_version
            )
            partitions.append(response)
            if partition_log is not None:
                appended.append((response, partition_log, last_offset))
        topics.append(TopicProduceResponse(name=topic.name, partition_responses=partitions))
    if acks == 0:
        return None
    produced = ProduceResponse(responses=topics)

    def replicated() -> bool:
        return all(log.high_watermark > last for _, log, last in appended)

    if acks != -1 or replicated():
        return produced
    if cluster is not None:  # the ISR decides when acks=all is done (runtime/replica_manager.py)
        return cluster.replicas.await_acks_all(request.timeout_ms, produced, appended)
    return _await_replication(ctx, request, produced, appended, replicated)


async def _await_replication(
    ctx: RequestContext,
    request: ProduceRequest,
    response: ProduceResponse,
    appended: list[tuple[PartitionProduceResponse, PartitionLog, int]],
    replicated: Callable[[], bool],
) -> ProduceResponse:
    keys = [(log.topic, log.partition) for _, log, _ in appended]
    await ctx.broker.produce_purgatory.wait(keys, replicated, request.timeout_ms)
    for partition_response, log, last in appended:
        if log.high_watermark <= last:
            partition_response.error_code = ErrorCode.REQUEST_TIMED_OUT
    return response
