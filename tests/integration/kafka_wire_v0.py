"""Hand-encoded requests of the oldest group and offset API versions (Kafka 0.8-0.10 clients).

Like `kafka_wire`, written from Kafka's protocol guide and independent of `strom.protocol`:
ListOffsets v0, OffsetCommit v0-2, OffsetFetch v0-1, FindCoordinator v0, JoinGroup v0-1,
SyncGroup v0, Heartbeat v0, LeaveGroup v0, and the consumer protocol's subscription and
assignment (version 0).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from .kafka_wire import Cursor, frame, i16, i32, i64, nbytes, recv_frame, request_header, string

API_LIST_OFFSETS = 2
API_OFFSET_COMMIT = 8
API_OFFSET_FETCH = 9
API_FIND_COORDINATOR = 10
API_JOIN_GROUP = 11
API_HEARTBEAT = 12
API_LEAVE_GROUP = 13
API_SYNC_GROUP = 14

ERR_UNKNOWN_TOPIC_OR_PARTITION = 3
ERR_ILLEGAL_GENERATION = 22
ERR_UNKNOWN_MEMBER_ID = 25
ERR_REBALANCE_IN_PROGRESS = 27

CLIENT_ID = "strom-it-v0"


def _request(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    return frame(request_header(api_key, version, correlation_id, CLIENT_ID) + body)


def _array(items: list[bytes]) -> bytes:
    return i32(len(items)) + b"".join(items)


def read_bytes(c: Cursor) -> bytes:
    n = c.i32()
    if n <= 0:
        return b""
    if c.pos + n > len(c.data):
        raise ValueError(f"response truncated: need {n} bytes at {c.pos} of {len(c.data)}")
    c.pos += n
    return c.data[c.pos - n : c.pos]


def call(sock: socket.socket, request: bytes) -> Cursor:
    """Send one request and return a cursor past the response's correlation id."""
    sock.sendall(request)
    return answer(sock)


def answer(sock: socket.socket) -> Cursor:
    c = Cursor(recv_frame(sock))
    c.i32()  # correlation id
    return c


# --------------------------------------------------------------------------- ListOffsets v0


def list_offsets_v0(
    topic: str,
    partitions: list[tuple[int, int, int]],
    replica_id: int = -1,
    correlation_id: int = 1,
) -> bytes:
    """`partitions`: (partition, timestamp, max_num_offsets)."""
    parts = [i32(p) + i64(ts) + i32(n) for p, ts, n in partitions]
    body = i32(replica_id) + _array([string(topic) + _array(parts)])
    return _request(API_LIST_OFFSETS, 0, correlation_id, body)


def parse_list_offsets_v0(c: Cursor) -> dict[tuple[str, int], tuple[int, list[int]]]:
    """{(topic, partition): (error, offsets)}"""
    out: dict[tuple[str, int], tuple[int, list[int]]] = {}
    for _ in range(c.i32()):
        name = c.string() or ""
        for _ in range(c.i32()):
            p = c.i32()
            err = c.i16()
            out[(name, p)] = (err, [c.i64() for _ in range(c.i32())])
    return out


# --------------------------------------------------------------------------- offsets


def offset_commit(
    version: int,
    group: str,
    offsets: dict[tuple[str, int], int],
    generation: int = -1,
    member_id: str = "",
    metadata: str | None = "",
    commit_timestamp: int = -1,
    retention_ms: int = -1,
    correlation_id: int = 1,
) -> bytes:
    """OffsetCommit v0 (group only), v1 (+ generation, member, per-partition timestamp) or v2
    (+ retention time, no timestamp)."""
    by_topic: dict[str, list[bytes]] = {}
    for (topic, p), offset in offsets.items():
        part = i32(p) + i64(offset)
        if version == 1:
            part += i64(commit_timestamp)
        by_topic.setdefault(topic, []).append(part + string(metadata))
    body = string(group)
    if version >= 1:
        body += i32(generation) + string(member_id)
    if version >= 2:
        body += i64(retention_ms)
    body += _array([string(t) + _array(parts) for t, parts in by_topic.items()])
    return _request(API_OFFSET_COMMIT, version, correlation_id, body)


def parse_offset_commit(c: Cursor) -> dict[tuple[str, int], int]:
    """{(topic, partition): error} of OffsetCommit v0-2."""
    out: dict[tuple[str, int], int] = {}
    for _ in range(c.i32()):
        name = c.string() or ""
        for _ in range(c.i32()):
            p = c.i32()
            out[(name, p)] = c.i16()
    return out


def offset_fetch(
    version: int, group: str, partitions: list[tuple[str, int]], correlation_id: int = 1
) -> bytes:
    """OffsetFetch v0 or v1 (the same request)."""
    by_topic: dict[str, list[bytes]] = {}
    for topic, p in partitions:
        by_topic.setdefault(topic, []).append(i32(p))
    body = string(group) + _array([string(t) + _array(ps) for t, ps in by_topic.items()])
    return _request(API_OFFSET_FETCH, version, correlation_id, body)


def parse_offset_fetch(c: Cursor) -> dict[tuple[str, int], tuple[int, str | None, int]]:
    """{(topic, partition): (offset, metadata, error)} of OffsetFetch v0-1."""
    out: dict[tuple[str, int], tuple[int, str | None, int]] = {}
    for _ in range(c.i32()):
        name = c.string() or ""
        for _ in range(c.i32()):
            p = c.i32()
            offset = c.i64()
            metadata = c.string()
            out[(name, p)] = (offset, metadata, c.i16())
    return out


# --------------------------------------------------------------------------- groups


def find_coordinator_v0(group: str, correlation_id: int = 1) -> bytes:
    return _request(API_FIND_COORDINATOR, 0, correlation_id, string(group))


def parse_find_coordinator_v0(c: Cursor) -> tuple[int, int, str, int]:
    """(error, node id, host, port)"""
    err = c.i16()
    return err, c.i32(), c.string() or "", c.i32()


def subscription(topics: list[str]) -> bytes:
    """ConsumerProtocolSubscription version 0."""
    return i16(0) + _array([string(t) for t in topics]) + nbytes(b"")


def assignment(partitions: dict[str, list[int]]) -> bytes:
    """ConsumerProtocolAssignment version 0."""
    topics = [string(t) + _array([i32(p) for p in ps]) for t, ps in partitions.items()]
    return i16(0) + _array(topics) + nbytes(b"")


def parse_assignment(data: bytes) -> dict[str, list[int]]:
    if not data:
        return {}
    c = Cursor(data)
    c.i16()
    out: dict[str, list[int]] = {}
    for _ in range(c.i32()):
        name = c.string() or ""
        out[name] = [c.i32() for _ in range(c.i32())]
    return out


def join_group(
    version: int,
    group: str,
    member_id: str,
    topics: list[str],
    session_timeout_ms: int = 10_000,
    rebalance_timeout_ms: int = 10_000,
    correlation_id: int = 1,
) -> bytes:
    """JoinGroup v0 (no rebalance timeout) or v1, consumer protocol "range"."""
    body = string(group) + i32(session_timeout_ms)
    if version >= 1:
        body += i32(rebalance_timeout_ms)
    body += string(member_id) + string("consumer")
    body += _array([string("range") + nbytes(subscription(topics))])
    return _request(API_JOIN_GROUP, version, correlation_id, body)


@dataclass
class JoinResult:
    error: int
    generation: int
    protocol: str
    leader: str
    member_id: str
    members: dict[str, bytes]


def parse_join_group(c: Cursor) -> JoinResult:
    """JoinGroup v0-1 response (the same layout)."""
    err = c.i16()
    generation = c.i32()
    protocol = c.string() or ""
    leader = c.string() or ""
    member_id = c.string() or ""
    members: dict[str, bytes] = {}
    for _ in range(c.i32()):
        mid = c.string() or ""
        members[mid] = read_bytes(c)
    return JoinResult(err, generation, protocol, leader, member_id, members)


def sync_group_v0(
    group: str,
    generation: int,
    member_id: str,
    assignments: dict[str, bytes] | None = None,
    correlation_id: int = 1,
) -> bytes:
    items = [string(m) + nbytes(a) for m, a in (assignments or {}).items()]
    body = string(group) + i32(generation) + string(member_id) + _array(items)
    return _request(API_SYNC_GROUP, 0, correlation_id, body)


def parse_sync_group_v0(c: Cursor) -> tuple[int, dict[str, list[int]]]:
    err = c.i16()
    return err, parse_assignment(read_bytes(c))


def heartbeat_v0(group: str, generation: int, member_id: str, correlation_id: int = 1) -> bytes:
    body = string(group) + i32(generation) + string(member_id)
    return _request(API_HEARTBEAT, 0, correlation_id, body)


def leave_group_v0(group: str, member_id: str, correlation_id: int = 1) -> bytes:
    return _request(API_LEAVE_GROUP, 0, correlation_id, string(group) + string(member_id))


def parse_error_only(c: Cursor) -> int:
    return c.i16()


# --------------------------------------------------------------------------- OffsetForLeaderEpoch


API_OFFSET_FOR_LEADER_EPOCH = 23


def offset_for_leader_epoch(
    version: int, topic: str, epochs: list[tuple[int, int]], correlation_id: int = 1
) -> bytes:
    """OffsetForLeaderEpoch v0 or v1 (the same request): `epochs` is (partition, epoch)."""
    parts = [i32(p) + i32(epoch) for p, epoch in epochs]
    body = _array([string(topic) + _array(parts)])
    return _request(API_OFFSET_FOR_LEADER_EPOCH, version, correlation_id, body)


def parse_offset_for_leader_epoch(
    version: int, c: Cursor
) -> dict[tuple[str, int], tuple[int, int | None, int]]:
    """{(topic, partition): (error, leader epoch (v1; None in v0), end offset)}"""
    out: dict[tuple[str, int], tuple[int, int | None, int]] = {}
    for _ in range(c.i32()):
        name = c.string() or ""
        for _ in range(c.i32()):
            err = c.i16()
            p = c.i32()
            epoch = c.i32() if version >= 1 else None
            out[(name, p)] = (err, epoch, c.i64())
    if c.remaining():
        raise ValueError(f"{c.remaining()} bytes after an OffsetForLeaderEpoch v{version} answer")
    return out


# --------------------------------------------------------------------------- ControlledShutdown v0


API_CONTROLLED_SHUTDOWN = 7


def controlled_shutdown_v0(broker_id: int, correlation_id: int = 1) -> bytes:
    """ControlledShutdown v0 behind request header v0: api key, version and correlation id
    only (no client id), the one request of the protocol without it."""
    header = i16(API_CONTROLLED_SHUTDOWN) + i16(0) + i32(correlation_id)
    return frame(header + i32(broker_id))


def parse_controlled_shutdown(c: Cursor) -> tuple[int, list[tuple[str, int]]]:
    err = c.i16()
    remaining = []
    for _ in range(c.i32()):
        topic = c.string() or ""
        remaining.append((topic, c.i32()))
    return err, remaining
