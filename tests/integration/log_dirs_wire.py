"""Hand-encoded AlterReplicaLogDirs (key 34) and DescribeLogDirs (key 35), every version.

Like kafka_wire.py, written from Kafka's protocol guide and message specs, independent of
`strom.protocol`. Versions 2+ of both are flexible: request header v2 (a tagged-field section
after the client id), compact strings and arrays, a tagged-field section after each struct;
the response header then carries a tagged-field section after the correlation id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .kafka_wire import Cursor, connect, frame, i16, i32, roundtrip, string, uvarint

API_ALTER_REPLICA_LOG_DIRS = 34
API_DESCRIBE_LOG_DIRS = 35
ERR_KAFKA_STORAGE_ERROR = 56
ERR_LOG_DIR_NOT_FOUND = 57
ERR_UNKNOWN_TOPIC_OR_PARTITION = 3


def _cstring(s: str) -> bytes:
    b = s.encode()
    return uvarint(len(b) + 1) + b


def _array(items: list[bytes], flexible: bool) -> bytes:
    return (uvarint(len(items) + 1) if flexible else i32(len(items))) + b"".join(items)


def _str(s: str, flexible: bool) -> bytes:
    return _cstring(s) if flexible else string(s)


def _tags(flexible: bool) -> bytes:
    return uvarint(0) if flexible else b""


def _header(api_key: int, version: int, correlation_id: int, flexible: bool) -> bytes:
    head = i16(api_key) + i16(version) + i32(correlation_id) + string("strom-it")
    return head + _tags(flexible)


class FlexCursor(Cursor):
    def uvarint(self) -> int:
        shift = result = 0
        while True:
            byte = self.i8() & 0xFF
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    def array_len(self, flexible: bool) -> int:
        return self.uvarint() - 1 if flexible else self.i32()

    def str_(self, flexible: bool) -> str | None:
        if not flexible:
            return self.string()
        n = self.uvarint() - 1
        return None if n < 0 else self._take(n).decode()

    def skip_tags(self, flexible: bool) -> None:
        if not flexible:
            return
        for _ in range(self.uvarint()):
            self.uvarint()
            self._take(self.uvarint())

    def boolean(self) -> bool:
        return self.i8() != 0


def _call(host: str, port: int, api_key: int, version: int, body: bytes) -> FlexCursor:
    flexible = version >= 2
    with connect(host, port) as s:
        payload = roundtrip(s, frame(_header(api_key, version, 11, flexible) + body))
    cur = FlexCursor(payload)
    assert cur.i32() == 11, "correlation id"
    cur.skip_tags(flexible)
    return cur


def alter_replica_log_dirs(
    host: str, port: int, version: int, moves: dict[str, dict[str, list[int]]]
) -> dict[tuple[str, int], int]:
    """{path: {topic: [partitions]}} -> {(topic, partition): error code}."""
    flexible = version >= 2
    dirs = [
        _str(path, flexible)
        + _array(
            [
                _str(topic, flexible) + _array([i32(p) for p in parts], flexible) + _tags(flexible)
                for topic, parts in topics.items()
            ],
            flexible,
        )
        + _tags(flexible)
        for path, topics in moves.items()
    ]
    cur = _call(
        host, port, API_ALTER_REPLICA_LOG_DIRS, version, _array(dirs, flexible) + _tags(flexible)
    )
    cur.i32()  # throttle time
    out: dict[tuple[str, int], int] = {}
    for _ in range(cur.array_len(flexible)):
        topic = cur.str_(flexible)
        assert topic is not None
        for _ in range(cur.array_len(flexible)):
            partition = cur.i32()
            out[(topic, partition)] = cur.i16()
            cur.skip_tags(flexible)
        cur.skip_tags(flexible)
    cur.skip_tags(flexible)
    assert cur.remaining() == 0
    return out


@dataclass
class LogDirPartition:
    partition: int
    size: int
    offset_lag: int
    is_future: bool


@dataclass
class LogDir:
    error_code: int
    path: str
    topics: dict[str, list[LogDirPartition]] = field(default_factory=dict)
    total_bytes: int = -1
    usable_bytes: int = -1


def describe_log_dirs(
    host: str, port: int, version: int, topics: dict[str, list[int]] | None = None
) -> tuple[int, list[LogDir]]:
    """(top-level error code, or 0 before v3; every log dir the broker reports)."""
    flexible = version >= 2
    if topics is None:
        body = uvarint(0) if flexible else i32(-1)
    else:
        body = _array(
            [
                _str(t, flexible) + _array([i32(p) for p in ps], flexible) + _tags(flexible)
                for t, ps in topics.items()
            ],
            flexible,
        )
    cur = _call(host, port, API_DESCRIBE_LOG_DIRS, version, body + _tags(flexible))
    cur.i32()  # throttle time
    top_error = cur.i16() if version >= 3 else 0
    dirs: list[LogDir] = []
    for _ in range(cur.array_len(flexible)):
        error = cur.i16()
        path = cur.str_(flexible)
        assert path is not None
        entry = LogDir(error, path)
        for _ in range(cur.array_len(flexible)):
            name = cur.str_(flexible)
            assert name is not None
            parts = entry.topics.setdefault(name, [])
            for _ in range(cur.array_len(flexible)):
                parts.append(LogDirPartition(cur.i32(), cur.i64(), cur.i64(), cur.boolean()))
                cur.skip_tags(flexible)
            cur.skip_tags(flexible)
        if version >= 4:
            entry.total_bytes, entry.usable_bytes = cur.i64(), cur.i64()
        cur.skip_tags(flexible)
        dirs.append(entry)
    cur.skip_tags(flexible)
    assert cur.remaining() == 0
    return top_error, dirs
