"""`strom log dump`: what is on disk, read offline (no broker needed), like kafka-dump-log.

Reads the files of a data directory in Kafka's formats: segments (`.log`: batches, and with
`--records` their records), offset and time indexes (checked against the segment), transaction
indexes, producer snapshots, `leader-epoch-checkpoint`, `partition.metadata` and the offset
checkpoints of a log directory. Records of `__consumer_offsets` and `__transaction_state` are
decoded into their keys and values (`--decode`). A path may be a file, a partition directory
(every file in it) or a log directory (its checkpoints and a summary of its partitions).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strom.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from strom.cli.output import Output
    from strom.protocol.records.batch_header import BatchHeader

EXAMPLES = """\
examples:
  strom log dump strom-data/orders-0/00000000000000000000.log
  strom log dump strom-data/orders-0 --records --max-batches 20
  strom log dump strom-data/__consumer_offsets-7 --records      # decoded group records
  strom log dump strom-data/orders-0/00000000000000000000.index  # checked against the .log
  strom log dump strom-data                                      # checkpoints, partitions
  strom log dump strom-data/orders-0 --format json | jq '.[0].batches[0]'
"""

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")
_STEM = re.compile(r"^(\d{20})\.")
_OFFSET_CHECKPOINTS = (
    "recovery-point-offset-checkpoint",
    "replication-offset-checkpoint",
    "log-start-offset-checkpoint",
    "cleaner-offset-checkpoint",
)


def register(commands: Any) -> None:
    log = commands.add_parser(
        "log",
        help="read a data directory offline (segments, indexes, checkpoints)",
        description="Read Strom's (or Kafka's) data directory offline.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = log.add_subparsers(dest="log_command", metavar="COMMAND", required=True)
    dump = sub.add_parser(
        "dump",
        help="print segments, indexes and checkpoints, like kafka-dump-log",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dump.add_argument(
        "paths", nargs="+", metavar="PATH", help="files, partition directories or log directories"
    )
    dump.add_argument(
        "--records", action="store_true", help="print every record, not only the batches"
    )
    dump.add_argument(
        "--decode",
        choices=("auto", "offsets", "transactions", "none"),
        default="auto",
        help="decode record keys and values of the internal topics (auto: by "
        "the directory's topic name)",
    )
    dump.add_argument(
        "--max-batches", type=int, metavar="N", help="stop after N batches of each segment"
    )
    dump.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table for people (default), json for scripts",
    )
    dump.set_defaults(offline=log_dump)


def log_dump(args: argparse.Namespace) -> int:
    from strom.cli.common import error
    from strom.cli.output import Output

    out = Output(args.format)
    documents = []
    failed = False
    for raw in args.paths:
        path = Path(raw)
        if not path.exists():
            error(f"{raw}: no such file or directory")
            return EXIT_USAGE
        for file_path in _expand(path):
            try:
                documents.append(dump_file(file_path, args))
            except (OSError, ValueError) as exc:
                failed = True
                documents.append({"file": str(file_path), "error": str(exc)})
    if out.json:
        out.emit_json(documents)
    else:
        for i, doc in enumerate(documents):
            if i:
                out.line()
            _render(out, doc)
    return EXIT_FAILED if failed else EXIT_OK


def _expand(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file())
    if any(p.suffix == ".log" for p in files):
        return files  # a partition directory
    summary = [path]  # a log directory: its summary, then its checkpoint files
    return summary + [p for p in files if p.name in _OFFSET_CHECKPOINTS]


def _topic_of(path: Path) -> str:
    directory = path if path.is_dir() else path.parent
    name, _, partition = directory.name.rpartition("-")
    return name if partition.isdigit() else ""


def dump_file(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    if path.is_dir():
        return _log_dir(path)
    name = path.name
    if name.endswith(".log"):
        return _segment(path, args)
    if name.endswith(".index"):
        return _offset_index(path)
    if name.endswith(".timeindex"):
        return _time_index(path)
    if name.endswith(".txnindex"):
        return _txn_index(path)
    if name.endswith(".snapshot"):
        return _snapshot(path)
    if name == "leader-epoch-checkpoint":
        return _leader_epochs(path)
    if name == "partition.metadata":
        return _partition_metadata(path)
    if name in _OFFSET_CHECKPOINTS:
        return _offset_checkpoint(path)
    return {"file": str(path), "kind": "unknown", "bytes": path.stat().st_size}


# -- segments -------------------------------------------------------------------------------


def _base_offset(path: Path) -> int:
    match = _STEM.match(path.name)
    if match is None:
        raise ValueError(f"{path.name} is not named by a 20-digit base offset")
    return int(match.group(1))


def _iter_file_batches(data: memoryview) -> Iterator[tuple[int, BatchHeader, memoryview | None]]:
    """(position, header, whole batch or None when it runs past the end) per batch."""
    from strom.protocol.records.batch_header import (
        BATCH_HEADER_SIZE,
        HEADER_STRUCT,
        LOG_OVERHEAD,
        BatchHeader,
    )

    pos = 0
    while len(data) - pos >= BATCH_HEADER_SIZE:
        header = BatchHeader._make(HEADER_STRUCT.unpack_from(data, pos))
        size = LOG_OVERHEAD + header.batch_length
        if header.batch_length < BATCH_HEADER_SIZE - LOG_OVERHEAD or pos + size > len(data):
            yield pos, header, None
            return
        yield pos, header, data[pos : pos + size]
        pos += size


def _segment(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    from crc32c import crc32c

    from strom.protocol.records.batch_header import ATTRIBUTES_OFFSET, MAGIC

    decode = args.decode
    if decode == "auto":
        decode = {"__consumer_offsets": "offsets", "__transaction_state": "transactions"}.get(
            _topic_of(path), "none"
        )
    doc: dict[str, Any] = {"file": str(path), "kind": "segment", "base_offset": _base_offset(path)}
    batches: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    doc["bytes"] = path.stat().st_size
    problems: list[str] = []
    data = memoryview(path.read_bytes())
    for pos, header, batch in _iter_file_batches(data):
        if args.max_batches is not None and len(batches) >= args.max_batches:
            doc["truncated"] = True
            break
        if batch is None:
            problems.append(f"torn batch at byte {pos}: {len(data) - pos} bytes left")
            break
        valid = header.magic == MAGIC and crc32c(batch[ATTRIBUTES_OFFSET:]) == header.crc
        batches.append(_batch_doc(pos, header, valid))
        if not valid:
            problems.append(f"batch at byte {pos} fails its CRC or magic check")
        elif args.records:
            records.extend(_record_docs(header, batch, decode))
    doc["batches"] = batches
    if args.records:
        doc["records"] = records
    doc["problems"] = problems
    return doc


def _batch_doc(pos: int, h: BatchHeader, valid: bool) -> dict[str, Any]:
    return {
        "position": pos,
        "base_offset": h.base_offset,
        "last_offset": h.last_offset,
        "count": h.records_count,
        "size": h.size,
        "magic": h.magic,
        "compression": CODECS.get(h.compression, str(h.compression)),
        "timestamp_type": "LogAppendTime" if h.timestamp_type else "CreateTime",
        "first_timestamp": h.first_timestamp,
        "max_timestamp": h.max_timestamp,
        "producer_id": h.producer_id,
        "producer_epoch": h.producer_epoch,
        "base_sequence": h.base_sequence,
        "partition_leader_epoch": h.partition_leader_epoch,
        "transactional": h.is_transactional,
        "control": h.is_control,
        "crc": h.crc,
        "valid": valid,
    }


def _text(data: bytes | bytearray | memoryview | None) -> str | None:
    if data is None:
        return None
    raw = bytes(data)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + raw.hex()


def _record_docs(header: BatchHeader, batch: memoryview, decode: str) -> list[dict[str, Any]]:
    from strom.protocol.records.codec import decode_records
    from strom.protocol.records.errors import RecordError

    try:
        _, decoded = decode_records(batch)
    except RecordError as exc:
        return [{"offset": header.base_offset, "error": f"records do not decode: {exc}"}]
    docs = []
    for r in decoded:
        doc: dict[str, Any] = {
            "offset": r.offset,
            "timestamp": r.timestamp,
            "key": _text(r.key),
            "value": _text(r.value),
            "headers": [[k, _text(v)] for k, v in r.headers],
        }
        if header.is_control:
            doc["control"] = _control(r.key)
        elif decode == "offsets":
            doc["decoded"] = _decode_group_record(r.key, r.value)
        elif decode == "transactions":
            doc["decoded"] = _decode_txn_record(r.key, r.value)
        docs.append(doc)
    return docs


def _control(key: bytes | None) -> str:
    if key is None or len(key) < 4:
        return "unknown control record"
    _version, kind = struct.unpack_from(">hh", key)
    return {0: "ABORT", 1: "COMMIT"}.get(kind, f"control type {kind}")


def _plain(value: Any) -> Any:
    """Generated message structs as JSON-able values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple | frozenset | set):
        return [_plain(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return _text(value)
    if isinstance(value, uuid.UUID):
        from strom.storage.partition_metadata import kafka_uuid_string

        return kafka_uuid_string(value)
    if hasattr(value, "name") and hasattr(value, "value") and not isinstance(value, str | int):
        return value.name
    return value


def _decode_group_record(key: bytes | None, value: bytes | None) -> dict[str, Any]:
    from strom.coordinator.group.records import CoordinatorRecord, decode
    from strom.protocol.errors import ProtocolError

    if key is None:
        return {"error": "no key"}
    try:
        decoded = decode(CoordinatorRecord(bytes(key), None if value is None else bytes(value)))
    except ProtocolError as exc:
        return {"error": str(exc)}
    if decoded is None:
        return {"type": f"key version {struct.unpack_from('>h', key)[0]} (not known)"}
    return {
        "type": type(decoded.key).__name__.removesuffix("Key"),
        "key": _plain(decoded.key),
        "value": None if decoded.value is None else _plain(decoded.value),
    }


def _decode_txn_record(key: bytes | None, value: bytes | None) -> dict[str, Any]:
    from strom.coordinator.txn.records import TxnRecord, decode
    from strom.protocol.errors import ProtocolError

    if key is None:
        return {"error": "no key"}
    try:
        decoded = decode(TxnRecord(bytes(key), None if value is None else bytes(value)))
    except ProtocolError as exc:
        return {"error": str(exc)}
    if decoded is None:
        return {"type": "unknown key version"}
    transactional_id, snapshot = decoded
    return {
        "type": "TransactionLog",
        "key": {"transactional_id": transactional_id},
        "value": None if snapshot is None else _plain(snapshot),
    }


# -- indexes and the other files ------------------------------------------------------------


def _segment_headers(log_path: Path) -> dict[int, BatchHeader]:
    """Batch headers of the segment next to an index, by position (empty if it is missing)."""
    if not log_path.exists():
        return {}
    data = memoryview(log_path.read_bytes())
    return {pos: header for pos, header, _ in _iter_file_batches(data)}


def _offset_index(path: Path) -> dict[str, Any]:
    base = _base_offset(path)
    raw = path.read_bytes()
    headers = _segment_headers(path.with_suffix(".log"))
    entries, problems = [], []
    for i in range(len(raw) // _OFFSET_ENTRY.size):
        relative, position = _OFFSET_ENTRY.unpack_from(raw, i * _OFFSET_ENTRY.size)
        entry = {"offset": base + relative, "position": position}
        if headers:
            header = headers.get(position)
            if header is None:
                problems.append(f"entry {i}: no batch starts at byte {position}")
            elif header.last_offset != base + relative:
                problems.append(
                    f"entry {i}: offset {base + relative}, but the batch at byte {position} "
                    f"ends at offset {header.last_offset}"
                )
        entries.append(entry)
    if len(raw) % _OFFSET_ENTRY.size:
        problems.append(f"{len(raw) % _OFFSET_ENTRY.size} trailing bytes")
    return {
        "file": str(path),
        "kind": "offset index",
        "base_offset": base,
        "entries": entries,
        "problems": problems,
    }


def _time_index(path: Path) -> dict[str, Any]:
    base = _base_offset(path)
    raw = path.read_bytes()
    entries, problems = [], []
    previous = -1
    for i in range(len(raw) // _TIME_ENTRY.size):
        timestamp, relative = _TIME_ENTRY.unpack_from(raw, i * _TIME_ENTRY.size)
        if timestamp < previous:
            problems.append(f"entry {i}: timestamp {timestamp} below the previous {previous}")
        previous = timestamp
        entries.append({"timestamp": timestamp, "offset": base + relative})
    if len(raw) % _TIME_ENTRY.size:
        problems.append(f"{len(raw) % _TIME_ENTRY.size} trailing bytes")
    return {
        "file": str(path),
        "kind": "time index",
        "base_offset": base,
        "entries": entries,
        "problems": problems,
    }


def _txn_index(path: Path) -> dict[str, Any]:
    from strom.storage.txn_index import decode_entries

    entries = [dataclasses.asdict(e) for e in decode_entries(path.read_bytes())]
    return {"file": str(path), "kind": "transaction index", "entries": entries, "problems": []}


def _snapshot(path: Path) -> dict[str, Any]:
    from strom.storage.producer_snapshot import read_snapshot

    entries = [row._asdict() for row in read_snapshot(path)]
    return {"file": str(path), "kind": "producer snapshot", "entries": entries, "problems": []}


def _leader_epochs(path: Path) -> dict[str, Any]:
    from strom.storage.checkpoint import parse_lines

    entries = [
        {"epoch": int(e), "start_offset": int(o)} for e, o in parse_lines(path.read_bytes(), 2)
    ]
    return {"file": str(path), "kind": "leader epochs", "entries": entries, "problems": []}


def _partition_metadata(path: Path) -> dict[str, Any]:
    from strom.storage.partition_metadata import kafka_uuid_string, read_partition_metadata

    topic_id = read_partition_metadata(path.parent)
    entries = [{"topic_id": kafka_uuid_string(topic_id) if topic_id else None}]
    return {"file": str(path), "kind": "partition metadata", "entries": entries, "problems": []}


def _offset_checkpoint(path: Path) -> dict[str, Any]:
    from strom.storage.checkpoint import parse_lines

    entries = [
        {"topic": t, "partition": int(p), "offset": int(o)}
        for t, p, o in parse_lines(path.read_bytes(), 3)
    ]
    entries.sort(key=lambda e: (e["topic"], e["partition"]))
    return {"file": str(path), "kind": "offset checkpoint", "entries": entries, "problems": []}


def _log_dir(path: Path) -> dict[str, Any]:
    entries = []
    for directory in sorted(p for p in path.iterdir() if p.is_dir()):
        topic = _topic_of(directory)
        if not topic:
            continue
        segments = sorted(directory.glob("*.log"))
        entries.append(
            {
                "partition": directory.name,
                "segments": len(segments),
                "bytes": sum(s.stat().st_size for s in segments),
                "first_base_offset": _base_offset(segments[0]) if segments else None,
                "last_base_offset": _base_offset(segments[-1]) if segments else None,
            }
        )
    return {"file": str(path), "kind": "log directory", "entries": entries, "problems": []}


# -- rendering ------------------------------------------------------------------------------


def _render(out: Output, doc: dict[str, Any]) -> None:
    kind = doc.get("kind", "")
    out.line(f"{doc['file']} ({kind})" if kind else doc["file"])
    if "error" in doc:
        out.line(f"  error: {doc['error']}")
        return
    if kind == "segment":
        out.table(
            [
                "POSITION",
                "BASE",
                "LAST",
                "COUNT",
                "SIZE",
                "CODEC",
                "MAX-TIMESTAMP",
                "PRODUCER",
                "EPOCH",
                "SEQ",
                "LEADER-EPOCH",
                "TXN",
                "CTRL",
                "CRC-OK",
            ],
            [
                [
                    b["position"],
                    b["base_offset"],
                    b["last_offset"],
                    b["count"],
                    b["size"],
                    b["compression"],
                    b["max_timestamp"],
                    b["producer_id"],
                    b["producer_epoch"],
                    b["base_sequence"],
                    b["partition_leader_epoch"],
                    _yes(b["transactional"]),
                    _yes(b["control"]),
                    _yes(b["valid"]),
                ]
                for b in doc["batches"]
            ],
            right=[
                "POSITION",
                "BASE",
                "LAST",
                "COUNT",
                "SIZE",
                "MAX-TIMESTAMP",
                "PRODUCER",
                "EPOCH",
                "SEQ",
                "LEADER-EPOCH",
            ],
        )
        if "records" in doc:
            out.line()
            out.table(
                ["OFFSET", "TIMESTAMP", "KEY", "VALUE", "HEADERS"],
                [[r["offset"], r.get("timestamp", ""), *_record_cells(r)] for r in doc["records"]],
                right=["OFFSET", "TIMESTAMP"],
            )
        if doc.get("truncated"):
            out.line("  (stopped at --max-batches)")
    elif doc.get("entries"):
        columns = list(doc["entries"][0])
        out.table(
            [c.upper().replace("_", "-") for c in columns],
            [[e[c] for c in columns] for e in doc["entries"]],
        )
    elif "entries" in doc:
        out.line("  (no entries)")
    else:
        out.line(f"  {doc.get('bytes', 0)} bytes, format not known")
    for problem in doc.get("problems", []):
        out.line(f"  problem: {problem}")


def _record_cells(r: dict[str, Any]) -> list[str]:
    if "error" in r:
        return ["", r["error"], ""]
    if "control" in r:
        return ["", f"{r['control']} marker", ""]
    if "decoded" in r:
        d = r["decoded"]
        return [
            f"{d.get('type', '')} {_compact(d.get('key'))}",
            _compact(d.get("value")) if "value" in d else d.get("error", ""),
            "",
        ]
    headers = ",".join(f"{k}={v}" for k, v in r["headers"])
    return ["" if r["key"] is None else r["key"], "" if r["value"] is None else r["value"], headers]


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
